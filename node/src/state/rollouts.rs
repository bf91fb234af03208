//! A module rollout and a module's releases, as they are replicated in Raft.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::state::command::ModuleVersion;
use crate::state::member::NodeId;

/// How a rollout proceeds: `batonctl modules deploy` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSettings {
    /// Nodes switched first, on their own, and gated.
    pub canary: u32,
    /// Nodes switched together in each later step.
    pub max_parallel: u32,
    /// How long the new version's ticks must succeed on the switched nodes
    /// before the next step.
    pub min_healthy_ms: u64,
    /// How long a step may take to become healthy before it fails.
    pub healthy_deadline_ms: u64,
    /// Revert by itself when a gate fails (otherwise halt and wait).
    pub auto_revert: bool,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            canary: 1,
            max_parallel: 1,
            min_healthy_ms: 10_000,
            healthy_deadline_ms: 60_000,
            auto_revert: true,
        }
    }
}

impl RolloutSettings {
    /// Checks the settings a user gave; the message says what to change.
    pub fn check(&self) -> Result<(), String> {
        if self.canary == 0 || self.max_parallel == 0 {
            return Err("--canary and --max-parallel must be at least 1".into());
        }
        if self.healthy_deadline_ms < self.min_healthy_ms {
            return Err(format!(
                "--healthy-deadline ({} ms) must be at least --min-healthy ({} ms)",
                self.healthy_deadline_ms, self.min_healthy_ms
            ));
        }
        if self.healthy_deadline_ms > 24 * 3600 * 1000 {
            return Err("--healthy-deadline must be at most 24h".into());
        }
        Ok(())
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RolloutState {
    /// Switching nodes step by step, each step gated.
    Running,
    /// Paused by an operator: no step starts until `rollout resume`.
    Paused,
    /// Stopped by a failed gate that could not (or was told not to) revert:
    /// waits for `rollout resume` or `rollout abort`.
    Halted { reason: String },
    /// Every node runs the new version; it is now the module's current one.
    Done,
    /// A gate failed and every node went back to the old version.
    Reverted { reason: String },
    /// An operator aborted it; every node went back to the old version.
    Aborted,
}

impl RolloutState {
    /// Whether the rollout still has nodes on the new version, or may get
    /// some (so no other rollout of the module may start).
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            RolloutState::Running | RolloutState::Paused | RolloutState::Halted { .. }
        )
    }

    /// The short name `rollout status` prints.
    pub fn name(&self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Halted { .. } => "halted",
            RolloutState::Done => "done",
            RolloutState::Reverted { .. } => "reverted",
            RolloutState::Aborted => "aborted",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            RolloutState::Halted { reason } | RolloutState::Reverted { reason } => reason,
            _ => "",
        }
    }
}

/// One module's rollout from its current version to a new release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// The version every node ran before (the module's current version).
    pub from: u32,
    /// The release being rolled out.
    pub release: ModuleVersion,
    pub settings: RolloutSettings,
    #[serde(flatten)]
    pub state: RolloutState,
    /// Nodes that run the new version.
    pub switched: BTreeSet<NodeId>,
    /// Steps begun (the canary is step 1).
    pub steps: u32,
    /// When the current step began (the leader's clock, ms since the epoch).
    pub step_started_ms: u64,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
}

/// How a release fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseOutcome {
    /// The module's first version: current at once.
    Deployed,
    /// Its rollout is under way (running, paused or halted).
    RollingOut,
    /// Rolled out to every node.
    RolledOut,
    /// Its rollout was reverted.
    Reverted { reason: String },
    /// Its rollout was aborted.
    Aborted,
}

impl ReleaseOutcome {
    pub fn describe(&self) -> String {
        match self {
            ReleaseOutcome::Deployed => "deployed".into(),
            ReleaseOutcome::RollingOut => "rolling out".into(),
            ReleaseOutcome::RolledOut => "rolled out".into(),
            ReleaseOutcome::Reverted { reason } => format!("reverted: {reason}"),
            ReleaseOutcome::Aborted => "aborted".into(),
        }
    }
}

/// One version of a module, for `batonctl modules history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub module: ModuleVersion,
    pub outcome: ReleaseOutcome,
}

/// What a rollout finishes with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// Every eligible node runs the new version and its gate passed.
    Done,
    /// A gate failed: go back to the old version.
    Revert { reason: String },
    /// An operator's `rollout abort`.
    Abort,
}

/// An operator's (or the gate's) change to a running rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutAction {
    Pause,
    /// Continue a paused or halted rollout; its current step is gated anew.
    Resume,
    /// A gate failed and the rollout may not revert by itself.
    Halt {
        reason: String,
    },
}
