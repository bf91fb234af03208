//! Whether Raft is making progress: a stall is never silent.
//!
//! A leader that cannot commit (its followers time out on every
//! AppendEntries, or they are all gone) still answers `status`, and a
//! follower whose matched index stands still (it lost its disk, or every
//! call to it fails) still looks "up" to its lease. [`ProgressWatch`] is fed
//! a [`Sample`] of the Raft metrics every so often and remembers since when
//! each figure has stood still while it should have moved; [`ProgressWatch::stalls`]
//! names what has stood still for [`STALL_AFTER_MS`] or longer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::types::{NodeId, Raft};

/// How long a figure that should move may stand still before it is a
/// stall: several election timeouts, and far longer than any healthy
/// commit or replication call on a loaded machine.
pub const STALL_AFTER_MS: u64 = 5_000;

/// How often the watch samples the metrics.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// The figures the watch looks at, as one node sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// The commit index.
    pub committed: u64,
    /// The index of the last entry applied to the state machine.
    pub applied: u64,
    /// The index of the last entry in this node's log.
    pub last_log: u64,
    /// While this node leads: each other member's matched index (0 when
    /// nothing is known to match yet).
    pub matched: BTreeMap<NodeId, u64>,
}

/// What stands still.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftStall {
    /// Entries wait in the log, and the commit index has not moved for
    /// `for_ms`.
    Commits { committed: u64, last_log: u64, for_ms: u64 },
    /// Committed entries wait to be applied, and the applied index has not
    /// moved for `for_ms`.
    Apply { applied: u64, committed: u64, for_ms: u64 },
    /// Member `node`'s matched index has stood still behind the log for
    /// `for_ms`.
    Replication {
        node: NodeId,
        matched: u64,
        last_log: u64,
        for_ms: u64,
    },
}

/// A figure and since when it has had its value (or had nothing to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    value: u64,
    since_ms: u64,
}

impl Mark {
    /// Moves the mark on to `value` at `now_ms` if the figure moved, or if
    /// it is where it should be (then standing still is no stall). A stall
    /// so counts from the last sample that saw the figure move or caught
    /// up: at most one sampling interval early.
    fn observe(mark: Option<Mark>, value: u64, caught_up: bool, now_ms: u64) -> Mark {
        match mark {
            Some(mark) if mark.value == value && !caught_up => mark,
            _ => Mark {
                value,
                since_ms: now_ms,
            },
        }
    }

    fn stalled_for(&self, now_ms: u64) -> Option<u64> {
        let for_ms = now_ms.saturating_sub(self.since_ms);
        (for_ms >= STALL_AFTER_MS).then_some(for_ms)
    }
}

/// Since when the commit index and each follower's matched index have
/// stood still while they should have moved.
#[derive(Debug, Default)]
pub struct ProgressWatch {
    last: Sample,
    commit: Option<Mark>,
    apply: Option<Mark>,
    matched: BTreeMap<NodeId, Mark>,
}

impl ProgressWatch {
    /// Takes in the figures as they are at `now_ms` (a monotonic clock).
    pub fn observe(&mut self, now_ms: u64, sample: Sample) {
        let caught_up = sample.committed >= sample.last_log;
        self.commit = Some(Mark::observe(self.commit, sample.committed, caught_up, now_ms));
        let applied_all = sample.applied >= sample.committed;
        self.apply = Some(Mark::observe(self.apply, sample.applied, applied_all, now_ms));
        // Only while leading is anything known of the followers; a member
        // no longer listed is forgotten.
        self.matched = sample
            .matched
            .iter()
            .map(|(&node, &matched)| {
                let caught_up = matched >= sample.last_log;
                (
                    node,
                    Mark::observe(self.matched.get(&node).copied(), matched, caught_up, now_ms),
                )
            })
            .collect();
        self.last = sample;
    }

    /// What has stood still for [`STALL_AFTER_MS`] or longer at `now_ms`.
    pub fn stalls(&self, now_ms: u64) -> Vec<RaftStall> {
        let last_log = self.last.last_log;
        let behind = |value: u64| value < last_log;
        let commits = self.commit.filter(|m| behind(m.value));
        let commits = commits
            .and_then(|m| m.stalled_for(now_ms))
            .map(|for_ms| RaftStall::Commits {
                committed: self.last.committed,
                last_log,
                for_ms,
            });
        let committed = self.last.committed;
        let apply = self.apply.filter(|m| m.value < committed);
        let apply = apply.and_then(|m| {
            m.stalled_for(now_ms).map(|for_ms| RaftStall::Apply {
                applied: m.value,
                committed,
                for_ms,
            })
        });
        let followers = self.matched.iter().filter(|(_, mark)| behind(mark.value));
        let followers = followers.filter_map(|(&node, mark)| {
            mark.stalled_for(now_ms).map(|for_ms| RaftStall::Replication {
                node,
                matched: mark.value,
                last_log,
                for_ms,
            })
        });
        commits.into_iter().chain(apply).chain(followers).collect()
    }
}

/// The node's [`ProgressWatch`], shared with `status`, with the clock it
/// reads.
#[derive(Debug)]
pub struct Progress {
    watch: Mutex<ProgressWatch>,
    started: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            watch: Mutex::default(),
            started: Instant::now(),
        }
    }
}

impl Progress {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Takes in what `raft`'s metrics say now.
    pub fn sample(&self, raft: &Raft) {
        let metrics = crate::types::metrics(raft);
        let leads = metrics.current_leader == Some(metrics.id);
        let matched = match (&metrics.replication, leads) {
            (Some(replication), true) => replication
                .iter()
                .filter(|(node, _)| **node != metrics.id)
                .map(|(node, log_id)| (*node, log_id.as_ref().map_or(0, |l| l.index)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let sample = Sample {
            committed: crate::types::committed_index(&metrics),
            applied: metrics.last_applied.as_ref().map_or(0, |l| l.index),
            last_log: metrics.last_log_index.unwrap_or(0),
            matched,
        };
        let now_ms = self.now_ms();
        self.watch
            .lock()
            .expect("progress lock poisoned")
            .observe(now_ms, sample);
    }

    /// What stands still now.
    pub fn stalls(&self) -> Vec<RaftStall> {
        let now_ms = self.now_ms();
        self.watch.lock().expect("progress lock poisoned").stalls(now_ms)
    }
}

/// Samples `raft`'s metrics into `progress` until aborted.
pub fn spawn_progress_watch(raft: Raft, progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            progress.sample(&raft);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(committed: u64, last_log: u64, matched: &[(NodeId, u64)]) -> Sample {
        Sample {
            committed,
            applied: committed,
            last_log,
            matched: matched.iter().copied().collect(),
        }
    }

    #[test]
    fn an_applied_index_that_stands_still_behind_the_commit_index_is_a_stall() {
        let mut watch = ProgressWatch::default();
        let stuck = |committed| Sample {
            applied: 20,
            ..sample(committed, committed, &[])
        };
        watch.observe(0, stuck(20));
        watch.observe(1_000, stuck(25));
        watch.observe(6_000, stuck(30));
        assert_eq!(
            watch.stalls(6_000),
            vec![RaftStall::Apply {
                applied: 20,
                committed: 30,
                for_ms: 6_000
            }]
        );
        watch.observe(6_500, sample(30, 30, &[]));
        assert_eq!(watch.stalls(20_000), vec![]);
    }

    #[test]
    fn a_commit_index_that_stands_still_behind_the_log_is_a_stall_after_the_threshold() {
        let mut watch = ProgressWatch::default();
        watch.observe(0, sample(10, 12, &[]));
        watch.observe(STALL_AFTER_MS - 1, sample(10, 20, &[]));
        assert_eq!(watch.stalls(STALL_AFTER_MS - 1), vec![]);
        watch.observe(STALL_AFTER_MS, sample(10, 25, &[]));
        assert_eq!(
            watch.stalls(STALL_AFTER_MS + 500),
            vec![RaftStall::Commits {
                committed: 10,
                last_log: 25,
                for_ms: STALL_AFTER_MS + 500
            }]
        );
        // One commit clears it.
        watch.observe(STALL_AFTER_MS + 600, sample(11, 25, &[]));
        assert_eq!(watch.stalls(STALL_AFTER_MS + 700), vec![]);
    }

    #[test]
    fn an_idle_cluster_is_no_stall() {
        let mut watch = ProgressWatch::default();
        for t in 0..30 {
            watch.observe(t * 1_000, sample(40, 40, &[(2, 40), (3, 40)]));
        }
        assert_eq!(watch.stalls(30_000), vec![]);
    }

    #[test]
    fn the_stall_counts_from_the_last_sample_that_saw_nothing_waiting() {
        let mut watch = ProgressWatch::default();
        watch.observe(0, sample(40, 40, &[]));
        watch.observe(60_000, sample(40, 40, &[]));
        assert_eq!(watch.stalls(90_000), vec![], "nothing waits");
        watch.observe(60_500, sample(40, 41, &[]));
        assert_eq!(watch.stalls(62_000), vec![]);
        assert!(matches!(
            watch.stalls(60_000 + STALL_AFTER_MS)[..],
            [RaftStall::Commits {
                for_ms: STALL_AFTER_MS,
                ..
            }]
        ));
    }

    #[test]
    fn a_follower_whose_matched_index_stands_still_behind_the_log_is_named() {
        let mut watch = ProgressWatch::default();
        watch.observe(0, sample(50, 50, &[(2, 50), (3, 50)]));
        // Node 3 lost its disk: the quorum (1, 2) commits on without it.
        for (t, index) in [(1_000, 60), (3_000, 80), (6_500, 95)] {
            watch.observe(t, sample(index, index, &[(2, index), (3, 0)]));
        }
        assert_eq!(
            watch.stalls(6_500),
            vec![RaftStall::Replication {
                node: 3,
                matched: 0,
                last_log: 95,
                for_ms: 5_500
            }]
        );
        // It catches up: cleared; it leaves the membership: forgotten.
        watch.observe(7_000, sample(95, 95, &[(2, 95), (3, 95)]));
        assert_eq!(watch.stalls(20_000), vec![]);
        watch.observe(21_000, sample(96, 99, &[(2, 97)]));
        assert_eq!(watch.stalls(21_000), vec![]);
    }

    #[test]
    fn a_follower_that_moves_slowly_is_no_stall() {
        let mut watch = ProgressWatch::default();
        for t in 0..20u64 {
            watch.observe(t * 1_000, sample(100 + t * 10, 100 + t * 10, &[(2, 100 + t * 5)]));
        }
        assert_eq!(watch.stalls(19_000), vec![]);
    }
}
