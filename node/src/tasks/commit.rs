//! Committing a tick through the leader, and telling apart, when the answer
//! was lost, a commit that landed from one that did not.

use std::time::Duration;

use super::forwarder::propose_on_leader;
use crate::api::NodeContext;
use crate::raft::ProposeError;
use crate::state::tasks::{TaskRecord, TickCommit};
use crate::types::{Command, CommandResponse};

/// What the committed state says of a commit whose answer may have been lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// This very commit is the task's latest tick: it landed.
    Landed,
    /// The task is still at the tick before, at this epoch: it may be retried.
    Pending,
    /// Anything else: another owner or epoch, or a tick at this epoch that is
    /// not provably this one. The worker must stop, and a new one start from
    /// the committed state, so the chain never mixes two runs of a tick.
    Unknown,
}

/// The fate of `commit` as `task` (the committed record) shows it.
///
/// Only the latest tick can be matched for sure: the record holds its state,
/// and a commit of the same (tick, epoch, node) with a different state is
/// another run of that tick (a retry after an earlier attempt did land).
pub(crate) fn fate(task: Option<&TaskRecord>, commit: &TickCommit) -> Fate {
    let Some(task) = task.filter(|t| t.epoch == commit.epoch) else {
        return Fate::Unknown;
    };
    let last = task.history.back();
    let ours = last.is_some_and(|h| h.tick == commit.tick && h.epoch == commit.epoch && h.node == commit.node);
    if task.tick == commit.tick && ours && task.state == commit.state {
        Fate::Landed
    } else if task.tick + 1 == commit.tick {
        Fate::Pending
    } else {
        Fate::Unknown
    }
}

/// Commits `commit`, retrying while no leader answers. False when the
/// state machine refused it or its fate cannot be told: this worker stops.
pub(crate) async fn commit_tick(context: &NodeContext, commit: &TickCommit) -> bool {
    let fate_now = || context.state_machine.read(|s| fate(s.tasks.get(&commit.task), commit));
    loop {
        match propose_on_leader(context, Command::CommitTick(commit.clone())).await {
            Ok(committed) => match committed.response {
                CommandResponse::Done => return true,
                // A retry of a commit that did land the first time: refused
                // as out of order, or as from a stale owner when the task
                // has been handed on since. The committed record decides.
                CommandResponse::Rejected(_) if fate_now() == Fate::Landed => return true,
                other => {
                    tracing::info!(task = %commit.task, "stopping: {other:?}");
                    return false;
                }
            },
            // Cannot happen while `[limits] max_state_bytes` holds (config
            // validation sees to it); never retried.
            Err(e @ ProposeError::TooLarge { .. }) => {
                tracing::error!(task = %commit.task, "stopping: {e}");
                return false;
            }
            Err(e) => {
                tracing::debug!(task = %commit.task, "commit not confirmed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                match fate_now() {
                    Fate::Landed => return true,
                    Fate::Pending => {}
                    Fate::Unknown => {
                        tracing::info!(task = %commit.task, "stopping: the fate of tick {} cannot be told", commit.tick);
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tasks::{TaskSpec, TaskTable, TickRecord};

    fn commit(tick: u64, state: &[u8]) -> TickCommit {
        TickCommit {
            task: "t".into(),
            epoch: 3,
            tick,
            node: 2,
            state: state.to_vec(),
            next_due_ms: 0,
            committed_at_ms: 0,
            version: 1,
        }
    }

    fn record(tick: u64, state: &[u8], node: u64) -> TaskRecord {
        let mut table = TaskTable::default();
        table.add(TaskSpec::counter_every_second("t"));
        let mut task = table["t"].clone();
        task.epoch = 3;
        task.tick = tick;
        task.state = state.to_vec();
        task.history.push(TickRecord {
            tick,
            epoch: 3,
            node,
            committed_at_ms: 0,
            version: 1,
        });
        task
    }

    #[test]
    fn a_commit_landed_only_when_the_latest_tick_is_it_state_and_all() {
        assert_eq!(fate(Some(&record(5, b"a", 2)), &commit(5, b"a")), Fate::Landed);
        assert_eq!(fate(Some(&record(4, b"a", 2)), &commit(5, b"b")), Fate::Pending);
    }

    #[test]
    fn another_run_of_a_tick_that_landed_is_not_taken_for_it() {
        // The first attempt of tick 5 committed "a"; this run made "b".
        assert_eq!(fate(Some(&record(5, b"a", 2)), &commit(5, b"b")), Fate::Unknown);
        // Later ticks at this epoch: this commit cannot be matched any more.
        assert_eq!(fate(Some(&record(7, b"a", 2)), &commit(5, b"a")), Fate::Unknown);
        assert_eq!(fate(None, &commit(5, b"a")), Fate::Unknown);
    }
}
