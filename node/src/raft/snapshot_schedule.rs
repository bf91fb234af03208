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
//! and ticks started late on every node (BENCHMARKS.md, "Snapshots at
//! each node's own index").
//!
//! So each node builds at the indexes congruent to its *phase* modulo the
//! interval, and the members' phases are spread evenly over it: with `n`
//! members, the member whose id has k smaller ones beside it builds at
//! `k/n` of the interval. Builds are so `every / n` entries apart: while
//! one takes less than that, at most one voter holds its log writer at a
//! time, and the quorum commits through the others. When the membership
//! changes, the phases move with it.
//!
//! [`SnapshotSchedule`] is the decision, fed the applied and snapshot
//! indexes and the members; [`spawn_snapshot_schedule`] drives it from
//! openraft's metrics and asks openraft for the build (its own policy is
//! then `Never`).

use std::time::{Duration, Instant};

use crate::types::{NodeId, Raft};

/// How often the schedule looks at the applied index.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// How long to wait for a build asked for before asking again: openraft
/// drops a request made while a build is running (a build that fails stops
/// Raft, and with it this schedule).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// The index, modulo `every`, at which node `node` builds its snapshots,
/// among `members` (node ids, in any order; `node` counts as one of them).
pub fn phase_of(node: NodeId, members: &[NodeId], every: u64) -> u64 {
    let mut ids: Vec<NodeId> = members.iter().copied().chain([node]).collect();
    ids.sort_unstable();
    ids.dedup();
    let rank = ids.iter().position(|id| *id == node).unwrap_or(0);
    (u128::from(every) * rank as u128 / ids.len() as u128) as u64
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
    node: NodeId,
    every: u64,
    /// The snapshot index when a build was last asked for, and when.
    asked: Option<(u64, Instant)>,
}

impl SnapshotSchedule {
    /// The schedule of node `node`, building about every `every` entries.
    pub fn new(node: NodeId, every: u64) -> SnapshotSchedule {
        SnapshotSchedule {
            node,
            every,
            asked: None,
        }
    }

    /// Whether to ask for a build, given the applied index, the last
    /// snapshot's (0 for none) and the members, at `now`: once the applied
    /// index reaches the next build's, and not again while that build is on
    /// its way.
    pub fn ask(&mut self, applied: u64, snapshot: u64, members: &[NodeId], now: Instant) -> bool {
        let phase = phase_of(self.node, members, self.every);
        if applied < next_build_at(snapshot, self.every, phase) {
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
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            look.tick().await;
            let (applied, snapshot, members) = crate::types::with_metrics(&raft, |m| {
                (
                    m.last_applied.as_ref().map_or(0, |l| l.index),
                    m.snapshot.as_ref().map_or(0, |l| l.index),
                    m.membership_config
                        .membership()
                        .nodes()
                        .map(|(id, _)| *id)
                        .collect::<Vec<_>>(),
                )
            });
            if schedule.ask(applied, snapshot, &members, Instant::now()) {
                tracing::debug!(
                    applied,
                    phase = phase_of(node, &members, every),
                    every,
                    "asking for a snapshot at this node's index"
                );
                if let Err(e) = raft.trigger().snapshot().await {
                    tracing::debug!("the snapshot schedule stops: Raft has stopped ({e})");
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_members_phases_are_spread_evenly_whatever_their_ids() {
        let every = 20_000;
        let members = [7, 3, 120, 40];
        let phases: Vec<u64> = [3, 7, 40, 120].iter().map(|n| phase_of(*n, &members, every)).collect();
        assert_eq!(phases, [0, 5_000, 10_000, 15_000]);
        // A node not (yet) among the members counts itself in.
        assert_eq!(phase_of(5, &[1, 2, 3], 3_000), 2_250);
        assert_eq!(phase_of(1, &[], 3_000), 0);
        assert_eq!(phase_of(2, &[1, 2, 3], 3_000), 1_000);
        assert_eq!(phase_of(3, &[1, 2, 3], u64::MAX), u64::MAX / 3 * 2);
        assert_eq!(phase_of(2, &[1, 2], 1), 0);
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
        let members = [1, 2, 3];
        let mut schedule = SnapshotSchedule::new(2, 1_200);
        // Node 2 of 3: at 400 modulo 1,200.
        let at = next_build_at(0, 1_200, 400);
        assert_eq!(at, 1_600);
        assert!(!schedule.ask(at - 1, 0, &members, start));
        assert!(schedule.ask(at, 0, &members, start));
        assert!(!schedule.ask(at + 10, 0, &members, start + Duration::from_secs(1)));
        // Built: the next one at its own index.
        let next = next_build_at(at + 3, 1_200, 400);
        assert_eq!(next, 2_800);
        assert!(!schedule.ask(at + 20, at + 3, &members, start + Duration::from_secs(2)));
        assert!(schedule.ask(next, at + 3, &members, start + Duration::from_secs(3)));
        // A request openraft dropped is made again after a while.
        assert!(!schedule.ask(next + 5, at + 3, &members, start + Duration::from_secs(30)));
        assert!(schedule.ask(next + 5, at + 3, &members, start + Duration::from_secs(64)));
        // A fourth member: node 2 is now at 300 modulo 1,200.
        let with_four = [1, 2, 3, 4];
        assert!(!schedule.ask(3_899, 2_805, &with_four, start + Duration::from_secs(70)));
        assert!(schedule.ask(3_900, 2_805, &with_four, start + Duration::from_secs(70)));
    }
}
