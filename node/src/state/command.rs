//! The commands the replicated state applies, and what applying one
//! produced.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state::cluster_version::ClusterVersion;
use crate::state::member::NodeId;
use crate::state::rejection::Rejection;
use crate::state::rollouts::{Finish, RolloutAction, RolloutSettings};
use crate::state::secrets::{Resealed, SealedSecret};
use crate::state::tasks::{Assignment, TaskSpec, TaskStatus, TickCommit};
use crate::state::upgrades::{NodeBinary, Phase, UpgradeAction, UpgradeSettings};

/// A change to the cluster's replicated state, proposed through Raft.
///
/// Only additive changes: nodes of two versions read each other's log during
/// a rolling upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Set `key` to `value` in the replicated key-value space.
    Put { key: String, value: Vec<u8> },
    /// Remove `key` from the replicated key-value space.
    Delete { key: String },
    /// Several commands in one entry, applied in order (see `Proposer`).
    /// Shared, so that the copies of an entry (in the log's tail, one for
    /// each follower it is sent to, and the one applied) cost no copy of
    /// the commands.
    Batch(Arc<[Command]>),
    /// Add a task (its module must be deployed).
    AddTask(TaskSpec),
    /// Remove a task.
    RemoveTask { name: String },
    /// Pause, resume or fail a task; raises its epoch.
    SetTaskStatus { name: String, status: TaskStatus },
    /// Ask a running task for one tick now, outside its schedule
    /// (`batonctl tasks run-now`), at `now_ms` on the leader's clock: its
    /// owner ticks it at once, fenced like any tick, and the request ends
    /// with the next tick committed. Introduced by cluster version 8
    /// (`RUN_NOW`).
    RunNow { name: String, now_ms: u64 },
    /// Put task secrets sealed again under another key in place of the
    /// ones they were sealed from (`batonctl secrets rotate`), each only if
    /// unchanged since. Introduced by cluster version 11 (`SECRETS`).
    ResealSecrets(Vec<Resealed>),
    /// Give task `task`'s secrets in `set` their new sealed values (or add
    /// them) and remove those named in `remove` (`batonctl tasks
    /// set-secrets`). Its epoch stays: a secret is read when asked for.
    /// Introduced by cluster version 11 (`SECRETS`).
    SetSecrets {
        task: String,
        set: Vec<SealedSecret>,
        remove: Vec<String>,
    },
    /// Give tasks new owners at once (the leader's placement; the old owner
    /// is gone).
    AssignOwners(Vec<Assignment>),
    /// Move every running task of `from` (`None`: those not placed yet) at
    /// once to the least loaded of `to`, decided as it is applied (see
    /// `TaskTable::reassign_all`): one small entry however many tasks move.
    /// Introduced by cluster version 5 (`REASSIGN_ALL`).
    ReassignAll { from: Option<NodeId>, to: Vec<NodeId> },
    /// Move tasks off live owners after their current tick (drain, shutdown,
    /// rebalancing).
    HandOff(Vec<Assignment>),
    /// The owner yields a task being handed off, between ticks. (Named
    /// `release_task` in the log, as before.)
    #[serde(rename = "release_task")]
    YieldTask { name: String, epoch: u64, node: NodeId },
    /// Drain a node (no tasks, its tasks handed off) or undrain it.
    SetDrained { node: NodeId, drained: bool },
    /// Commit one tick of a task (the fence is in `TaskTable::commit_tick`).
    CommitTick(TickCommit),
    /// Mark a task failed after too many failed ticks, at its current epoch,
    /// of module version `version` (a revert resumes the tasks its new
    /// version failed).
    MarkTaskFailed {
        name: String,
        epoch: u64,
        reason: String,
        #[serde(default)]
        version: u32,
    },
    /// Record the first version of a task module (its bytes are already in
    /// the proposing node's module store; other nodes fetch them). Kept for
    /// logs written before releases; new deploys propose `AddRelease`.
    DeployModule(ModuleVersion),
    /// Release a module version: the first becomes current, a later one
    /// starts a rollout with `settings`. (Named `release` in the log, as
    /// before.)
    #[serde(rename = "release")]
    AddRelease {
        module: ModuleVersion,
        settings: RolloutSettings,
        now_ms: u64,
    },
    /// Begin a rollout step: `switch` run version `version` of `module`.
    RolloutStep {
        module: String,
        version: u32,
        switch: Vec<NodeId>,
        now_ms: u64,
    },
    /// Pause, resume or halt a rollout.
    RolloutControl {
        module: String,
        action: RolloutAction,
        now_ms: u64,
    },
    /// End a rollout: done, reverted or aborted.
    RolloutFinish {
        module: String,
        version: u32,
        finish: Finish,
        now_ms: u64,
    },
    /// Raise the cluster version (never lowers it): the leader proposes it
    /// once every member supports `version` (see
    /// [`crate::state::cluster_version`]). Introduced by version 2: a
    /// release before cluster versions does not know this kind.
    SetClusterVersion { version: ClusterVersion },
    /// Start a rolling upgrade of `nodes` to a signed node binary (see
    /// [`crate::state::upgrades`]). Introduced by cluster version 6
    /// (`NODE_UPGRADES`), as are the two below.
    StartUpgrade {
        binary: NodeBinary,
        settings: UpgradeSettings,
        nodes: Vec<NodeId>,
        now_ms: u64,
    },
    /// Move a node of the upgrade to binary `hash` to its next phase.
    UpgradePhase {
        hash: String,
        node: NodeId,
        phase: Phase,
        now_ms: u64,
    },
    /// Pause, resume, halt or abort the upgrade to binary `hash`.
    UpgradeControl {
        hash: String,
        action: UpgradeAction,
        now_ms: u64,
    },
}

impl Command {
    /// The highest cluster version this command (or any command of a
    /// batch) raises to, if it raises one: a node that does not support it
    /// must apply nothing of the entry.
    pub fn raises_version_to(&self) -> Option<ClusterVersion> {
        match self {
            Command::SetClusterVersion { version } => Some(*version),
            Command::Batch(commands) => commands.iter().filter_map(Command::raises_version_to).max(),
            _ => None,
        }
    }
}

/// A deployed task module: name, version and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleVersion {
    pub name: String,
    /// 1 for the first version; set by the state machine.
    pub version: u32,
    /// sha256 of the component, hex.
    pub hash: String,
    pub size: u64,
    /// Whether it exports `migrate` (its state format differs from other
    /// versions', and it converts them).
    pub migrates: bool,
    /// Older versions it converts its states back to (asked of the module
    /// with `can-downgrade` at deploy): a rollback to any other needs none
    /// or is refused.
    #[serde(default)]
    pub down_to: Vec<u32>,
    pub deployed_at_ms: u64,
    /// The public key that signed it, hex.
    #[serde(default)]
    pub signer: String,
    /// Its ed25519 signature over the name and hash, hex (see
    /// `modules::signing`), so any node can check it again.
    #[serde(default)]
    pub signature: String,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put { key, value } => write!(f, "put {key} ({} bytes)", value.len()),
            Command::Delete { key } => write!(f, "delete {key}"),
            Command::Batch(commands) => write!(f, "batch of {}", commands.len()),
            Command::DeployModule(m) => write!(f, "deploy module {} ({})", m.name, m.hash),
            Command::AddRelease { module: m, .. } => write!(f, "release {} version {} ({})", m.name, m.version, m.hash),
            Command::RolloutStep {
                module,
                version,
                switch,
                ..
            } => write!(f, "switch node(s) {switch:?} to {module} version {version}"),
            Command::RolloutControl { module, action, .. } => write!(f, "rollout of {module}: {action:?}"),
            Command::RolloutFinish {
                module,
                version,
                finish,
                ..
            } => write!(f, "finish the rollout of {module} version {version}: {finish:?}"),
            Command::AddTask(spec) => write!(f, "add task {}", spec.name),
            Command::RemoveTask { name } => write!(f, "remove task {name}"),
            Command::SetTaskStatus { name, status } => write!(f, "set task {name} {status:?}"),
            Command::RunNow { name, .. } => write!(f, "run task {name} now"),
            Command::ResealSecrets(r) => write!(f, "reseal {} task secret(s)", r.len()),
            Command::SetSecrets { task, set, remove } => {
                write!(
                    f,
                    "set {} and remove {} secret(s) of task {task}",
                    set.len(),
                    remove.len()
                )
            }
            Command::AssignOwners(a) => write!(f, "assign {} task(s)", a.len()),
            Command::ReassignAll { from: Some(node), to } => write!(f, "move every task of node {node} to {to:?}"),
            Command::ReassignAll { from: None, to } => write!(f, "place every task without an owner on {to:?}"),
            Command::HandOff(a) => write!(f, "hand off {} task(s)", a.len()),
            Command::YieldTask { name, epoch, node } => write!(f, "node {node} yields {name} at epoch {epoch}"),
            Command::SetDrained { node, drained } => write!(f, "set node {node} drained={drained}"),
            Command::CommitTick(c) => write!(f, "commit tick {} of {} at epoch {}", c.tick, c.task, c.epoch),
            Command::MarkTaskFailed { name, .. } => write!(f, "mark task {name} failed"),
            Command::SetClusterVersion { version } => write!(f, "raise the cluster version to {version}"),
            Command::StartUpgrade { binary, nodes, .. } => {
                write!(
                    f,
                    "upgrade node(s) {nodes:?} to binary {} ({})",
                    binary.version, binary.hash
                )
            }
            Command::UpgradePhase { node, phase, .. } => write!(f, "upgrade: node {node} {}", phase.name()),
            Command::UpgradeControl { action, .. } => write!(f, "upgrade: {}", action.name()),
        }
    }
}

/// What applying a [`Command`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandResponse {
    /// Applied, nothing to report (blank and membership entries).
    #[default]
    Done,
    /// A key-value change: the value the key held before, if any.
    Previous(Option<Vec<u8>>),
    /// The module as recorded.
    Module(ModuleVersion),
    /// How many items the command changed.
    Count(u64),
    /// The state machine refused the command; nothing changed. In JSON as
    /// its text (see [`crate::state::rejection::as_text`]).
    Rejected(#[serde(with = "crate::state::rejection::as_text")] Rejection),
    /// A batch: each command's response, in order.
    Batch(Vec<CommandResponse>),
}
