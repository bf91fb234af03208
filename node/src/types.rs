//! The Raft type configuration and the commands the replicated state machine
//! applies.

use serde::{Deserialize, Serialize};

use crate::rollout::{Finish, RolloutAction, RolloutSettings};
use crate::task_table::{Assignment, TaskSpec, TaskStatus, TickCommit};

/// A node's id: a positive integer, unique in the cluster and never reused.
pub type NodeId = u64;

pub use crate::state::member::Member;
pub use crate::state::rejection::{OwnedWrite, Rejection};

openraft::declare_raft_types!(
    /// Baton's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
);

/// The `Raft` handle for Baton's type configuration.
pub type Raft = openraft::Raft<TypeConfig, crate::store::StateMachineStore>;

/// The latest Raft metrics of `raft`.
pub fn metrics(raft: &Raft) -> typ::Metrics {
    with_metrics(raft, Clone::clone)
}

/// The current leader, if known, and its address.
pub fn leader(raft: &Raft) -> (Option<NodeId>, Option<String>) {
    with_metrics(raft, |m| {
        let addr = m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.addr.clone()));
        (m.current_leader, addr)
    })
}

/// Milliseconds since the Unix epoch, by this node's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// As of when node `self_id`, as leader, is confirmed by a quorum: the send
/// time of the last Raft heartbeat a quorum acknowledged, on this process's
/// monotonic clock (rounded earlier, never later); now for a sole voter.
pub fn leadership_confirmed_at(metrics: &typ::Metrics, self_id: NodeId) -> Option<std::time::Instant> {
    use openraft::Instant as _;
    let now = std::time::Instant::now();
    if metrics.membership_config.membership().voter_ids().eq([self_id]) {
        return Some(now);
    }
    let acked = metrics.last_quorum_acked.as_ref()?;
    Some(now.checked_sub(acked.elapsed()).unwrap_or(now))
}

/// The highest log index known committed (0 before any).
pub fn committed_index(metrics: &typ::Metrics) -> u64 {
    metrics
        .cluster_committed
        .as_ref()
        .or(metrics.local_committed.as_ref())
        .map_or(0, |l| l.index)
}

/// What a leader tells the nodes it renews to apply before they tick: its
/// committed index, once it has committed an entry of its own term. From
/// then on, whatever a predecessor appended (such as moving a frozen node's
/// tasks) is committed and at or below it; what this leader itself decides
/// about a node whose lease ran out is committed before it renews that node
/// again (`LeaseTable`'s lapsed rule). `None` until then: no renewal yet.
pub fn renewal_index(metrics: &typ::Metrics) -> Option<u64> {
    let committed = metrics
        .cluster_committed
        .as_ref()
        .or(metrics.local_committed.as_ref())?;
    (committed.leader_id.term == metrics.current_term).then_some(committed.index)
}

/// Reads the latest Raft metrics of `raft` without copying them.
pub fn with_metrics<T>(raft: &Raft, f: impl FnOnce(&typ::Metrics) -> T) -> T {
    use openraft::async_runtime::watch::WatchReceiver;
    f(&raft.metrics().borrow_watched())
}

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
    Batch(Vec<Command>),
    /// Add a task (its module must be deployed).
    AddTask(TaskSpec),
    /// Remove a task.
    RemoveTask { name: String },
    /// Pause, resume or fail a task; raises its epoch.
    SetTaskStatus { name: String, status: TaskStatus },
    /// Give tasks new owners at once (the leader's placement; the old owner
    /// is gone).
    AssignOwners(Vec<Assignment>),
    /// Move tasks off live owners after their current tick (drain, shutdown,
    /// rebalancing).
    HandOff(Vec<Assignment>),
    /// The owner releases a task being handed off, between ticks.
    ReleaseTask { name: String, epoch: u64, node: NodeId },
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
    /// logs written before releases; new deploys propose `Release`.
    DeployModule(ModuleRecord),
    /// Record a module version: the first becomes current, a later one
    /// starts a rollout with `settings`.
    Release {
        module: ModuleRecord,
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
}

/// A deployed task module: name, version and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRecord {
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
            Command::Release { module: m, .. } => write!(f, "release {} version {} ({})", m.name, m.version, m.hash),
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
            Command::AssignOwners(a) => write!(f, "assign {} task(s)", a.len()),
            Command::HandOff(a) => write!(f, "hand off {} task(s)", a.len()),
            Command::ReleaseTask { name, epoch, node } => write!(f, "node {node} releases {name} at epoch {epoch}"),
            Command::SetDrained { node, drained } => write!(f, "set node {node} drained={drained}"),
            Command::CommitTick(c) => write!(f, "commit tick {} of {} at epoch {}", c.tick, c.task, c.epoch),
            Command::MarkTaskFailed { name, .. } => write!(f, "mark task {name} failed"),
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
    Module(ModuleRecord),
    /// How many items the command changed.
    Count(u64),
    /// The state machine refused the command; nothing changed. In JSON as
    /// its text (see [`crate::state::rejection::as_text`]).
    Rejected(#[serde(with = "crate::state::rejection::as_text")] Rejection),
    /// A batch: each command's response, in order.
    Batch(Vec<CommandResponse>),
}

/// Short aliases for openraft's generic types.
pub mod typ {
    use super::TypeConfig;

    pub type Entry = openraft::alias::EntryOf<TypeConfig>;
    pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
    pub type Vote = openraft::alias::VoteOf<TypeConfig>;
    pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
    pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
    pub type SnapshotData = std::io::Cursor<Vec<u8>>;
    pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
    pub type RaftError<E = openraft::errors::Infallible> = openraft::errors::RaftError<TypeConfig, E>;
    pub type RpcError<E = openraft::errors::Infallible> = openraft::errors::RPCError<TypeConfig, E>;
    pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
    pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
    pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
    pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
    pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
    pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;
    pub type Metrics = openraft::RaftMetrics<TypeConfig>;
}
