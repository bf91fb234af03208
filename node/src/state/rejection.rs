//! Why the replicated state refused a command: one typed reason per rule, so
//! callers (the API, a forwarding peer, `batonctl`) tell them apart by kind,
//! never by their text. Each kind's text is what users see.

use crate::state::member::NodeId;

/// The write a stale owner made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedWrite {
    /// A tick's commit.
    Commit,
    /// An owner yielding a task it hands off.
    Yield,
}

impl std::fmt::Display for OwnedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OwnedWrite::Commit => "commit",
            OwnedWrite::Yield => "hand-off",
        })
    }
}

/// A command the state machine refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no task named {task}")]
    NoSuchTask { task: String },
    #[error("task {task} already exists; remove it first or pick another name")]
    TaskExists { task: String },
    #[error("no module named {module}; deploy it first with `batonctl modules deploy`")]
    NoSuchModule { module: String },
    #[error(
        "module {module} already has version {version} ({hash}); new versions are rolled out by the hot code \
         swap, not by deploy"
    )]
    ModuleNameTaken { module: String, version: u32, hash: String },
    /// A write from a node that no longer owns the task at that epoch.
    #[error(
        "stale owner: task {task} is at epoch {epoch} owned by {}; the {write} came from node {from_node} at \
         epoch {from_epoch}", owner.map_or("no node".to_string(), |n| format!("node {n}"))
    )]
    StaleOwner {
        task: String,
        epoch: u64,
        owner: Option<NodeId>,
        from_node: NodeId,
        from_epoch: u64,
        write: OwnedWrite,
    },
    /// A tick commit that is not the next tick (a retry of one that did
    /// commit, or one from a worker that fell behind).
    #[error("out of order: task {task} has committed tick {committed}, the commit is for tick {proposed}")]
    OutOfOrder {
        task: String,
        committed: u64,
        proposed: u64,
    },
    #[error("task {task} is not running ({status})")]
    NotRunning { task: String, status: String },
    #[error("task {task} is not being handed off")]
    NotHandedOff { task: String },
    #[error("stale epoch {proposed}; task {task} is at epoch {current}")]
    StaleEpoch { task: String, proposed: u64, current: u64 },
    #[error(
        "a rollout of {module} to version {version} is {state}; wait for it to finish, or `batonctl rollout abort \
         {module}`"
    )]
    RolloutUnderWay {
        module: String,
        version: u32,
        state: String,
    },
    #[error(
        "the next version of {module} is {next}, but this deploy was prepared as version {prepared}: another \
         deploy came first; try again"
    )]
    VersionRaced { module: String, next: u32, prepared: u32 },
    #[error("no rollout of {module} is under way")]
    NoRollout { module: String },
    #[error("the rollout of {module} is to version {live}, not {asked}")]
    RolloutOfOtherVersion { module: String, live: u32, asked: u32 },
    #[error("the rollout of {module} is {state}")]
    RolloutNotRunning { module: String, state: String },
    #[error("the rollout of {module} is {state}; cannot {action}")]
    RolloutActionRefused {
        module: String,
        state: String,
        action: String,
    },
    #[error("cannot abort the rollout of {module}: {why}")]
    CannotAbort { module: String, why: String },
    #[error(
        "node binary {version} supports cluster versions {min} to {max}, but the cluster runs version \
         {cluster_version}; build or pick a binary that supports it"
    )]
    BinaryUnsupported {
        version: String,
        min: u32,
        max: u32,
        cluster_version: u32,
    },
    #[error("an upgrade to node binary {version} is {state}; wait for it to finish, or `batonctl upgrade abort`")]
    UpgradeUnderWay { version: String, state: String },
    #[error("no upgrade of the node binary {hash} is under way")]
    NoUpgrade { hash: String },
    #[error("the upgrade to node binary {version} is {state}; cannot {action}")]
    UpgradeActionRefused {
        version: String,
        state: String,
        action: String,
    },
    /// A rejection this release does not know: from a newer release, or from
    /// one before typed rejections, which sent only the text.
    #[error("{message}")]
    Unrecognized { message: String },
}

impl Rejection {
    /// A stable name for the kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::NoSuchTask { .. } => "no-such-task",
            Rejection::TaskExists { .. } => "task-exists",
            Rejection::NoSuchModule { .. } => "no-such-module",
            Rejection::ModuleNameTaken { .. } => "module-name-taken",
            Rejection::StaleOwner { .. } => "stale-owner",
            Rejection::OutOfOrder { .. } => "out-of-order",
            Rejection::NotRunning { .. } => "not-running",
            Rejection::NotHandedOff { .. } => "not-handed-off",
            Rejection::StaleEpoch { .. } => "stale-epoch",
            Rejection::RolloutUnderWay { .. } => "rollout-under-way",
            Rejection::VersionRaced { .. } => "version-raced",
            Rejection::NoRollout { .. } => "no-rollout",
            Rejection::RolloutOfOtherVersion { .. } => "rollout-of-other-version",
            Rejection::RolloutNotRunning { .. } => "rollout-not-running",
            Rejection::RolloutActionRefused { .. } => "rollout-action-refused",
            Rejection::CannotAbort { .. } => "cannot-abort",
            Rejection::BinaryUnsupported { .. } => "binary-unsupported",
            Rejection::UpgradeUnderWay { .. } => "upgrade-under-way",
            Rejection::NoUpgrade { .. } => "no-upgrade",
            Rejection::UpgradeActionRefused { .. } => "upgrade-action-refused",
            Rejection::Unrecognized { .. } => "unrecognized",
        }
    }
}

/// The JSON form of a rejection inside a [`crate::types::CommandResponse`]:
/// its text, as releases before typed rejections wrote and read it (so they
/// still read what this one sends). The kind travels beside it, typed (see
/// [`crate::codec::rejection`]); read alone, the text is `Unrecognized`.
pub mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Rejection;

    pub fn serialize<S: Serializer>(rejection: &Rejection, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(rejection)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Rejection, D::Error> {
        Ok(Rejection::Unrecognized {
            message: String::deserialize(deserializer)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_owner_says_who_owns_the_task_and_who_wrote() {
        let stale = Rejection::StaleOwner {
            task: "t".into(),
            epoch: 4,
            owner: Some(2),
            from_node: 3,
            from_epoch: 3,
            write: OwnedWrite::Commit,
        };
        assert_eq!(
            stale.to_string(),
            "stale owner: task t is at epoch 4 owned by node 2; the commit came from node 3 at epoch 3"
        );
        let unowned = Rejection::StaleOwner {
            task: "t".into(),
            epoch: 4,
            owner: None,
            from_node: 3,
            from_epoch: 3,
            write: OwnedWrite::Yield,
        };
        assert!(
            unowned.to_string().contains("owned by no node; the hand-off came"),
            "{unowned}"
        );
    }

    #[test]
    fn the_texts_users_see_are_kept() {
        let texts = [
            (Rejection::NoSuchTask { task: "x".into() }, "no task named x"),
            (
                Rejection::OutOfOrder {
                    task: "t".into(),
                    committed: 4,
                    proposed: 6,
                },
                "out of order: task t has committed tick 4, the commit is for tick 6",
            ),
            (
                Rejection::NoRollout {
                    module: "counter".into(),
                },
                "no rollout of counter is under way",
            ),
        ];
        for (rejection, text) in texts {
            assert_eq!(rejection.to_string(), text);
        }
    }
}
