//! The replicated state as a snapshot takes it, under the state machine's
//! lock and in microseconds per thousand tasks: every part but the task
//! records copied, the records shared. Encoding it, which takes far longer,
//! happens after the lock is released, while the live state goes on
//! changing: a record changed meanwhile is copied then (see
//! [`TaskTable::share`]), so the snapshot still sees the state at its index.
//!
//! Before, a snapshot copied the whole state, about 2.5 KiB per task: at
//! 100,000 tasks each node's resident memory grew by that copy, and glibc
//! kept it after.

use std::sync::Arc;

use crate::state::cluster::ClusterState;
use crate::state::tasks::{TaskRecord, TaskTable};

/// A state frozen for a snapshot: `rest` is the state with an empty task
/// table, `tasks` its records by name.
#[derive(Debug, Clone)]
pub struct FrozenState {
    pub rest: ClusterState,
    pub tasks: Vec<Arc<TaskRecord>>,
}

impl FrozenState {
    /// Freezes `state`.
    pub fn of(state: &ClusterState) -> FrozenState {
        FrozenState {
            rest: ClusterState {
                kv: state.kv.clone(),
                modules: state.modules.clone(),
                releases: state.releases.clone(),
                rollouts: state.rollouts.clone(),
                tasks: TaskTable::default(),
                drained: state.drained.clone(),
                cluster_version: state.cluster_version,
                upgrade: state.upgrade.clone(),
            },
            tasks: state.tasks.share(),
        }
    }

    /// The whole state again, its records copied (for the JSON snapshots of
    /// clusters below the binary formats, and for tests).
    pub fn thaw(&self) -> ClusterState {
        ClusterState {
            tasks: TaskTable::from_records(self.tasks.iter().map(|task| (**task).clone())),
            ..self.rest.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::cluster::Rules;
    use crate::state::command::Command;
    use crate::state::tasks::{Assignment, TaskSpec, TickCommit};

    #[test]
    fn a_frozen_state_stays_as_it_was_while_the_live_one_changes() {
        let mut live = ClusterState::default();
        live.tasks.add(TaskSpec::counter_every_second("a"));
        live.tasks.add(TaskSpec::counter_every_second("b"));
        live.tasks.assign(&[Assignment {
            task: "a".into(),
            owner: Some(1),
            expected_epoch: 0,
        }]);
        let frozen = FrozenState::of(&live);
        let before = live.clone();
        let tick = TickCommit {
            task: "a".into(),
            epoch: 1,
            tick: 1,
            node: 1,
            state: vec![1],
            next_due_ms: 2000,
            committed_at_ms: 1000,
            version: 1,
        };
        live.apply(&Command::CommitTick(tick), &Rules::FENCED);
        live.apply(&Command::RemoveTask { name: "b".into() }, &Rules::FENCED);
        live.apply(
            &Command::Put {
                key: "k".into(),
                value: vec![1],
            },
            &Rules::FENCED,
        );
        assert_eq!(frozen.thaw(), before);
        assert_eq!(
            crate::codec::snapshot::encode_frozen(&frozen),
            crate::codec::snapshot::encode_state(&before)
        );
        assert_ne!(live, before);
        assert_eq!(live.tasks["a"].tick, 1);
    }
}
