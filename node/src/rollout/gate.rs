//! The leader's pure decision of a rollout's next move, given what it
//! observes: which nodes may run tasks, which have compiled the new version,
//! and how the new and old versions' ticks have fared since the step began.

use std::collections::{BTreeMap, BTreeSet};

use crate::rollout::{Rollout, RolloutState};
use crate::types::NodeId;

/// Ticks that succeeded and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }

    /// Whether this failure rate is worse than `other`'s (no ticks: rate 0).
    pub fn worse_than(&self, other: &Counts) -> bool {
        // failed/total > other.failed/other.total, without division.
        let mine = u128::from(self.failed) * u128::from(other.total().max(1));
        let theirs = u128::from(other.failed) * u128::from(self.total().max(1));
        self.failed > 0 && mine > theirs
    }

    pub fn add(&mut self, other: Counts) {
        self.ok += other.ok;
        self.failed += other.failed;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} ticks failed", self.failed, self.total())
    }
}

/// What the leader sees of a rollout's module.
#[derive(Debug, Clone, Default)]
pub struct GateView {
    pub now_ms: u64,
    /// Members that may run tasks (up, not draining).
    pub eligible: BTreeSet<NodeId>,
    /// Nodes that have the new version compiled.
    pub ready: BTreeSet<NodeId>,
    /// Tasks of the module each node owns (canaries are the busiest nodes,
    /// so the gate sees ticks).
    pub tasks_on: BTreeMap<NodeId, usize>,
    /// Since `gate_since_ms`: the new version's ticks on switched nodes and
    /// the old version's ticks elsewhere.
    pub new: Counts,
    pub old: Counts,
    /// When the current step's gate began counting: the step's start, or
    /// later if this leader began watching it later (a new leader gates the
    /// step anew rather than skip it).
    pub gate_since_ms: u64,
}

/// The rollout's next move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do yet.
    Wait,
    /// Begin a step: switch these nodes to the new version.
    Switch(Vec<NodeId>),
    /// Every eligible node runs the new version and the last gate passed.
    Complete,
    /// The gate failed (or the step missed its deadline): go back.
    Fail(String),
}

/// Decides a running rollout's next move.
pub fn decide(rollout: &Rollout, view: &GateView) -> Decision {
    if rollout.state != RolloutState::Running {
        return Decision::Wait;
    }
    let settings = &rollout.settings;
    let version = rollout.release.version;
    let since_step = view.now_ms.saturating_sub(rollout.step_started_ms);
    let live_switched: Vec<NodeId> = rollout.switched.intersection(&view.eligible).copied().collect();
    // No live node runs the new version (not begun, or the canaries were
    // lost): start (again) with canaries.
    let gated = rollout.steps > 0 && !live_switched.is_empty();
    if gated {
        let elapsed = view
            .now_ms
            .saturating_sub(view.gate_since_ms.max(rollout.step_started_ms));
        if view.new.worse_than(&view.old) && elapsed >= settings.min_healthy_ms.min(1_000) {
            return Decision::Fail(format!(
                "version {version} is failing on node(s) {}: {} (version {}: {})",
                list(&live_switched),
                view.new,
                rollout.from,
                view.old
            ));
        }
        // Switched nodes that own none of the module's tasks have nothing to
        // show: their step passes on time alone.
        let idle = live_switched
            .iter()
            .all(|n| view.tasks_on.get(n).is_none_or(|t| *t == 0));
        let healthy = elapsed >= settings.min_healthy_ms && (view.new.ok > 0 || idle);
        if !healthy {
            if since_step >= settings.healthy_deadline_ms {
                let why = match view.new.ok {
                    0 => "no tick of it succeeded".to_string(),
                    _ => format!("it was not healthy for {} ms", settings.min_healthy_ms),
                };
                return Decision::Fail(format!(
                    "version {version} on node(s) {}: {why} within the healthy deadline of {} ms",
                    list(&live_switched),
                    settings.healthy_deadline_ms
                ));
            }
            return Decision::Wait;
        }
    }
    let remaining: Vec<NodeId> = view.eligible.difference(&rollout.switched).copied().collect();
    if gated && remaining.is_empty() {
        return Decision::Complete;
    }
    let batch = match gated {
        true => settings.max_parallel,
        false => settings.canary,
    } as usize;
    let mut candidates: Vec<NodeId> = remaining.into_iter().filter(|n| view.ready.contains(n)).collect();
    // The busiest nodes first (ties by id), so the canary's gate sees ticks.
    candidates.sort_by_key(|n| (std::cmp::Reverse(view.tasks_on.get(n).copied().unwrap_or(0)), *n));
    candidates.truncate(batch);
    if candidates.is_empty() {
        if gated || since_step < settings.healthy_deadline_ms {
            // Passed gates wait for a node to be ready (or to come back).
            return Decision::Wait;
        }
        return Decision::Fail(format!(
            "no node had version {version} compiled within the healthy deadline of {} ms",
            settings.healthy_deadline_ms
        ));
    }
    Decision::Switch(candidates)
}

fn list(nodes: &[NodeId]) -> String {
    nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::RolloutSettings;
    use crate::types::ModuleVersion;

    fn rollout(switched: &[NodeId], steps: u32) -> Rollout {
        Rollout {
            from: 1,
            release: ModuleVersion {
                name: "counter".into(),
                version: 2,
                hash: "bb".into(),
                size: 1,
                migrates: true,
                down_to: vec![1],
                deployed_at_ms: 0,
                signer: String::new(),
                signature: String::new(),
            },
            settings: RolloutSettings {
                canary: 1,
                max_parallel: 2,
                min_healthy_ms: 1_000,
                healthy_deadline_ms: 5_000,
                auto_revert: true,
            },
            state: RolloutState::Running,
            switched: switched.iter().copied().collect(),
            steps,
            step_started_ms: 10_000,
            started_at_ms: 10_000,
            finished_at_ms: None,
        }
    }

    fn view(now_ms: u64, new: Counts, old: Counts) -> GateView {
        GateView {
            now_ms,
            eligible: [1, 2, 3, 4].into(),
            ready: [1, 2, 3, 4].into(),
            tasks_on: [(1, 5), (2, 9), (3, 9), (4, 0)].into(),
            new,
            old,
            gate_since_ms: 0,
        }
    }

    const OK: Counts = Counts { ok: 40, failed: 0 };

    #[test]
    fn the_canary_is_the_busiest_ready_node() {
        assert_eq!(
            decide(&rollout(&[], 0), &view(10_000, Counts::default(), OK)),
            Decision::Switch(vec![2])
        );
        let mut v = view(10_000, Counts::default(), OK);
        v.ready.remove(&2);
        assert_eq!(decide(&rollout(&[], 0), &v), Decision::Switch(vec![3]));
    }

    #[test]
    fn a_step_waits_for_its_healthy_time_then_the_next_batch_goes() {
        let r = rollout(&[2], 1);
        assert_eq!(decide(&r, &view(10_500, OK, OK)), Decision::Wait);
        assert_eq!(decide(&r, &view(11_000, OK, OK)), Decision::Switch(vec![3, 1]));
        let r = rollout(&[1, 2, 3], 2);
        assert_eq!(decide(&r, &view(11_000, OK, OK)), Decision::Switch(vec![4]));
        let r = rollout(&[1, 2, 3, 4], 3);
        assert_eq!(decide(&r, &view(11_000, OK, OK)), Decision::Complete);
    }

    #[test]
    fn a_new_leader_gates_the_step_from_when_it_began_watching() {
        let r = rollout(&[2], 1);
        let mut v = view(11_000, OK, OK);
        v.gate_since_ms = 10_500;
        assert_eq!(decide(&r, &v), Decision::Wait);
        v.now_ms = 11_500;
        assert_eq!(decide(&r, &v), Decision::Switch(vec![3, 1]));
    }

    #[test]
    fn failing_worse_than_the_old_version_fails_the_gate() {
        let r = rollout(&[2], 1);
        let bad = Counts { ok: 0, failed: 4 };
        assert_eq!(decide(&r, &view(10_500, bad, OK)), Decision::Wait);
        let Decision::Fail(why) = decide(&r, &view(11_000, bad, OK)) else {
            panic!("the gate passed")
        };
        assert!(
            why.contains("version 2 is failing on node(s) 2: 4 of 4 ticks failed"),
            "{why}"
        );
        // As bad as the old version is not worse.
        let old = Counts { ok: 36, failed: 4 };
        assert_eq!(
            decide(&r, &view(11_000, Counts { ok: 36, failed: 4 }, old)),
            Decision::Switch(vec![3, 1])
        );
    }

    #[test]
    fn no_successful_tick_by_the_deadline_fails_the_gate() {
        let r = rollout(&[2], 1);
        assert_eq!(decide(&r, &view(12_000, Counts::default(), OK)), Decision::Wait);
        let Decision::Fail(why) = decide(&r, &view(15_000, Counts::default(), OK)) else {
            panic!("the gate passed")
        };
        assert!(why.contains("no tick of it succeeded"), "{why}");
    }

    #[test]
    fn lost_canaries_are_replaced_and_lost_nodes_do_not_hold_the_rollout() {
        // The canary (2) is down: start again with another.
        let r = rollout(&[2], 1);
        let mut v = view(10_100, Counts::default(), OK);
        v.eligible.remove(&2);
        assert_eq!(decide(&r, &v), Decision::Switch(vec![3]));
        // Node 4 is down after the others passed: done without it.
        let r = rollout(&[1, 2, 3], 2);
        let mut v = view(11_000, OK, OK);
        v.eligible.remove(&4);
        assert_eq!(decide(&r, &v), Decision::Complete);
    }

    #[test]
    fn a_canary_without_tasks_of_the_module_passes_on_time_alone() {
        let r = rollout(&[4], 1);
        assert_eq!(decide(&r, &view(10_500, Counts::default(), OK)), Decision::Wait);
        assert_eq!(
            decide(&r, &view(11_000, Counts::default(), OK)),
            Decision::Switch(vec![2, 3])
        );
    }

    #[test]
    fn nobody_ready_waits_until_the_deadline() {
        let r = rollout(&[], 0);
        let mut v = view(12_000, Counts::default(), OK);
        v.ready.clear();
        assert_eq!(decide(&r, &v), Decision::Wait);
        v.now_ms = 15_000;
        assert!(matches!(decide(&r, &v), Decision::Fail(why) if why.contains("compiled")));
    }

    #[test]
    fn a_paused_rollout_does_nothing() {
        let mut r = rollout(&[2], 1);
        r.state = RolloutState::Paused;
        assert_eq!(decide(&r, &view(20_000, OK, OK)), Decision::Wait);
    }
}
