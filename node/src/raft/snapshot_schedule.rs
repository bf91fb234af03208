//! When this node builds a snapshot: about every
//! `timing.snapshot_after_entries` applied entries, at an index of its own.
//!
//! openraft's `LogsSinceLast` counts from the last snapshot, and every node
//! starts counting at the same index, so every node built each snapshot at
//! the same index, within a second of the others. A build encodes the whole
//! state and then writes it in the store's one write transaction, which the
//! Raft log's writer waits for meanwhile. With 10,000 tasks ticking every
//! second, four nodes building an 18 MB snapshot at once on two cores held
//! every voter's log writer at once: nothing committed for up to 700 ms,
//! and ticks started late on every node (BENCHMARKS.md, "Snapshots built
//! at a node's own index").
//!
//! So each node builds at the indexes congruent to its *phase* modulo the
//! interval: the phases of nodes 1, 2, 3, ... are spread over the interval
//! by the golden ratio, so any few nodes are far apart, and at most one
//! voter of a small cluster holds its log writer at a time. The quorum
//! commits through it.
//!
//! [`SnapshotSchedule`] is the decision, fed the applied and snapshot
//! indexes; [`spawn_snapshot_schedule`] drives it from openraft's metrics
//! and asks openraft for the build (its own policy is then `Never`).

use std::time::{Duration, Instant};

use crate::types::{NodeId, Raft};

/// How often the schedule looks at the applied index.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// How long a build asked for may take before it is asked for again (a
/// build that failed leaves the snapshot index where it was).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// 2^64 divided by the golden ratio: multiples of it, modulo 2^64, spread
/// evenly over the range for any count of consecutive multipliers.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The index, modulo `every`, at which node `node` builds its snapshots.
pub fn phase_of(node: NodeId, every: u64) -> u64 {
    let fraction = node.wrapping_mul(GOLDEN);
    ((u128::from(fraction) * u128::from(every)) >> 64) as u64
}

/// The applied index at which a node whose last snapshot is at `last` (0
/// for none) builds its next one: the first index at `phase` modulo
/// `every` that is at least half an interval past `last`. Builds are so
/// `every` entries apart once in step, and never closer than half of it
/// (the first one, or after a snapshot installed from the leader).
pub fn next_build_at(last: u64, every: u64, phase: u64) -> u64 {
    let every = every.max(1);
    let phase = phase % every;
    let earliest = last.saturating_add(every.div_ceil(2)).max(last.saturating_add(1));
    // The first index >= earliest that is congruent to phase.
    let rest = earliest % every;
    let offset = match phase >= rest {
        true => phase - rest,
        false => every - (rest - phase),
    };
    earliest.saturating_add(offset)
}

/// The decision: whether to ask for a build now.
#[derive(Debug, Clone)]
pub struct SnapshotSchedule {
    every: u64,
    phase: u64,
    /// The snapshot index when a build was last asked for, and when.
    asked: Option<(u64, Instant)>,
}

impl SnapshotSchedule {
    /// The schedule of node `node`, building about every `every` entries.
    pub fn new(node: NodeId, every: u64) -> SnapshotSchedule {
        SnapshotSchedule {
            every,
            phase: phase_of(node, every),
            asked: None,
        }
    }

    /// Whether to ask for a build, given the applied index and the last
    /// snapshot's (0 for none), at `now`: once the applied index reaches
    /// the next build's, and not again while that build is on its way.
    pub fn ask(&mut self, applied: u64, snapshot: u64, now: Instant) -> bool {
        if applied < next_build_at(snapshot, self.every, self.phase) {
            return false;
        }
        match self.asked {
            Some((at, when)) if at == snapshot && now.duration_since(when) < ASK_AGAIN_AFTER => false,
            _ => {
                self.asked = Some((snapshot, now));
                true
            }
        }
    }
}

/// Asks `raft` for a snapshot whenever node `node`'s schedule says so,
/// until aborted.
pub fn spawn_snapshot_schedule(raft: Raft, node: NodeId, every: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut schedule = SnapshotSchedule::new(node, every);
        tracing::debug!(
            every,
            phase = schedule.phase,
            "this node builds its snapshots at its own indexes"
        );
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            look.tick().await;
            let (applied, snapshot) = crate::types::with_metrics(&raft, |m| {
                (
                    m.last_applied.as_ref().map_or(0, |l| l.index),
                    m.snapshot.as_ref().map_or(0, |l| l.index),
                )
            });
            if schedule.ask(applied, snapshot, Instant::now())
                && let Err(e) = raft.trigger().snapshot().await
            {
                tracing::debug!("the snapshot schedule stops: Raft has stopped ({e})");
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phases_of_a_few_nodes_are_far_apart() {
        let every = 20_000;
        for nodes in 2..=7u64 {
            let mut phases: Vec<u64> = (1..=nodes).map(|n| phase_of(n, every)).collect();
            phases.sort();
            let gaps = phases.windows(2).map(|w| w[1] - w[0]);
            let wrap = phases[0] + every - phases[phases.len() - 1];
            let smallest = gaps.chain([wrap]).min().unwrap();
            // Golden-ratio points: no gap below a third of an even share.
            assert!(smallest * 3 * nodes >= every, "{nodes} nodes: {phases:?}");
        }
        assert!((0..100).all(|n| phase_of(n, every) < every));
        assert_eq!(phase_of(5, 1), 0);
    }

    #[test]
    fn builds_come_at_the_phase_and_at_least_half_an_interval_apart() {
        // The first build: at the phase, at least half an interval in.
        assert_eq!(next_build_at(0, 20_000, 4_000), 24_000);
        assert_eq!(next_build_at(0, 20_000, 12_000), 12_000);
        // Then every interval.
        assert_eq!(next_build_at(24_000, 20_000, 4_000), 44_000);
        // A build asked for at the index lands a little later: the next
        // one is still at the phase.
        assert_eq!(next_build_at(24_150, 20_000, 4_000), 44_000);
        // A snapshot installed from the leader just before the phase: the
        // build after it waits half an interval, then comes at the phase.
        assert_eq!(next_build_at(43_000, 20_000, 4_000), 64_000);
        for (last, every, phase) in [(0, 1, 0), (7, 1, 0), (7, 2, 1), (9, 3, 2), (u64::MAX - 1, 10, 3)] {
            let at = next_build_at(last, every, phase);
            assert!(at > last, "{last} {every} {phase}: {at}");
        }
        for last in 0..200 {
            let at = next_build_at(last, 50, 17);
            assert_eq!(at % 50, 17);
            assert!(at >= last + 25 && at < last + 75, "{last}: {at}");
        }
    }

    #[test]
    fn a_build_is_asked_for_once_until_the_snapshot_moves_or_a_minute_passes() {
        let start = Instant::now();
        let mut schedule = SnapshotSchedule::new(1, 1_000);
        let at = next_build_at(0, 1_000, schedule.phase);
        assert!(!schedule.ask(at - 1, 0, start));
        assert!(schedule.ask(at, 0, start));
        assert!(!schedule.ask(at + 10, 0, start + Duration::from_secs(1)));
        // Built: the next one at its own index.
        let next = next_build_at(at + 3, 1_000, schedule.phase);
        assert!(!schedule.ask(at + 20, at + 3, start + Duration::from_secs(2)));
        assert!(schedule.ask(next, at + 3, start + Duration::from_secs(3)));
        // A build that never came is asked for again after a while.
        assert!(!schedule.ask(next + 5, at + 3, start + Duration::from_secs(30)));
        assert!(schedule.ask(next + 5, at + 3, start + Duration::from_secs(64)));
    }
}
