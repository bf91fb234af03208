//! The leader's next move in a rolling upgrade, decided from the replicated
//! upgrade and what the leader sees of the nodes now. Pure; the driver
//! (`driver.rs`) gathers the view and carries the move out.
//!
//! One node at a time, workers and followers first and the leader last:
//! 1. Preflight: the node has a heart that holds the new binary (fetched
//!    ahead, so that no fetch falls between its stop and its start), and
//!    every other voter is up and caught up (a swap must never leave two
//!    voters down; checked again before every swap). Waiting longer than
//!    the healthy deadline halts the upgrade.
//! 2. Drain it, and wait until it owns no task.
//! 3. Swap: record the commit index, then ask the node to try the binary
//!    through its heart (the heart stops it; a leader hands leadership off
//!    as it stops).
//! 4. It must come back on the new binary, up and caught up to that index,
//!    within the healthy deadline; its heart reverting the trial, or the
//!    deadline passing, reverts it and halts the upgrade.
//! 5. Undrained, it must stay up on the new binary with no failed tick for
//!    `min_healthy`; then its heart makes the binary permanent.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::upgrades::{Phase, Upgrade, UpgradeState};
use crate::types::NodeId;

/// What the leader sees of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSeen {
    /// Its lease is fresh (or it is the leader).
    pub up: bool,
    /// It has applied the log up to the commit index it last heard.
    pub caught_up: bool,
    /// The leader knows it has replicated the log up to here.
    pub matched: u64,
    /// The binary it reports running ("installed", a hash, or empty).
    pub binary: String,
    /// It runs under a heart.
    pub has_heart: bool,
    /// Its heart holds the new binary (None: not asked, or a heart that
    /// does not say).
    pub holds_binary: Option<bool>,
    /// Tasks it owns or is being handed.
    pub tasks: usize,
    /// Ticks since the current phase began (as this leader counted).
    pub ticks_ok: u64,
    pub ticks_failed: u64,
}

/// A trial the node's heart reverted: the hash, how long ago (by the
/// heart's own clock, so no two machines' clocks are compared), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartRevert {
    pub hash: String,
    pub age_ms: u64,
    pub reason: String,
}

/// Everything `decide` looks at.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub now_ms: u64,
    pub leader: NodeId,
    pub commit_index: u64,
    pub voters: BTreeSet<NodeId>,
    pub nodes: BTreeMap<NodeId, NodeSeen>,
    /// What the current node's heart last reverted, if the driver asked.
    pub heart_revert: Option<HeartRevert>,
    /// Since when this leader has watched the current phase (a new leader
    /// watches a gate from its own start).
    pub watched_since_ms: u64,
}

/// The leader's next move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    Wait,
    /// Mark it `Draining` (which drains it).
    Begin(NodeId),
    /// Mark it `Swapping` at `gate_index`, then ask it to swap.
    Swap {
        node: NodeId,
        gate_index: u64,
    },
    /// Ask it (again) to swap: it is `Swapping` but not on the binary yet.
    AskSwap(NodeId),
    /// Mark it `Gating` (which undrains it).
    Gate(NodeId),
    /// Ask its heart to make the binary permanent, then mark it `Done`.
    MakePermanent(NodeId),
    /// Put it back on its binary before (through its heart, if
    /// `ask_heart`), and mark it `Reverted` (which undrains it and halts).
    Revert {
        node: NodeId,
        reason: String,
        ask_heart: bool,
    },
    /// Halt, leaving the node as it is.
    Halt(String),
}

/// The next move for `upgrade`. A paused upgrade finishes the node it is
/// working on and begins no other.
pub fn decide(upgrade: &Upgrade, view: &View) -> Move {
    if !matches!(upgrade.state, UpgradeState::Running | UpgradeState::Paused) {
        return Move::Wait;
    }
    let hash = &upgrade.binary.hash;
    let settings = &upgrade.settings;
    let in_phase = view.now_ms.saturating_sub(upgrade.phase_started_ms);
    let watched = view
        .now_ms
        .saturating_sub(view.watched_since_ms.max(upgrade.phase_started_ms));
    let Some(node) = upgrade.current() else {
        return match upgrade.state {
            UpgradeState::Running => next_node(upgrade, view, in_phase),
            _ => Move::Wait,
        };
    };
    let seen = view.nodes.get(&node).cloned().unwrap_or_default();
    let on_new = seen.binary == *hash;
    let deadline = format!("{} s", settings.healthy_deadline_ms / 1000);
    // A revert by the node's heart since this phase began.
    let reverted = view
        .heart_revert
        .as_ref()
        .filter(|r| r.hash == *hash && r.age_ms <= in_phase);
    let others_down = voters_not_ready(view, node);
    match &upgrade.phases[&node] {
        Phase::Draining if seen.tasks == 0 && others_down.is_empty() => Move::Swap {
            node,
            gate_index: view.commit_index,
        },
        Phase::Draining if seen.tasks == 0 && in_phase > settings.healthy_deadline_ms => Move::Revert {
            node,
            reason: format!("not swapped: {}", others_down.join("; ")),
            ask_heart: false,
        },
        Phase::Draining if in_phase > settings.healthy_deadline_ms => Move::Revert {
            node,
            reason: format!("its {} task(s) were not handed off within {deadline}", seen.tasks),
            ask_heart: false,
        },
        Phase::Draining => Move::Wait,
        Phase::Swapping { gate_index } => {
            if on_new && seen.up && seen.caught_up && seen.matched >= *gate_index {
                return Move::Gate(node);
            }
            if let Some(revert) = reverted {
                return Move::Revert {
                    node,
                    reason: format!("its heart went back to the binary before: {}", revert.reason),
                    ask_heart: false,
                };
            }
            if in_phase > settings.healthy_deadline_ms {
                return Move::Revert {
                    node,
                    reason: format!("it did not come back on the new binary, caught up, within {deadline}"),
                    ask_heart: true,
                };
            }
            match on_new || !others_down.is_empty() {
                true => Move::Wait,
                false => Move::AskSwap(node),
            }
        }
        Phase::Gating => {
            if let Some(revert) = reverted.filter(|_| !on_new) {
                return Move::Revert {
                    node,
                    reason: format!("its heart went back to the binary before: {}", revert.reason),
                    ask_heart: false,
                };
            }
            if seen.up && !on_new {
                return Move::Revert {
                    node,
                    reason: format!("it went back to another binary ({})", seen.binary),
                    ask_heart: false,
                };
            }
            if seen.ticks_failed > 0 {
                let reason = format!("{} tick(s) failed on the new binary", seen.ticks_failed);
                return match settings.auto_revert {
                    true => Move::Revert {
                        node,
                        reason,
                        ask_heart: true,
                    },
                    false => Move::Halt(format!("node {node}: {reason} (left on trial: --no-auto-revert)")),
                };
            }
            if !seen.up {
                return match in_phase > settings.healthy_deadline_ms {
                    true => Move::Revert {
                        node,
                        reason: format!("it has been down for most of {deadline} on the new binary"),
                        ask_heart: true,
                    },
                    false => Move::Wait,
                };
            }
            let ticked = seen.ticks_ok > 0 || seen.tasks == 0;
            match watched >= settings.min_healthy_ms && ticked {
                true => Move::MakePermanent(node),
                false => Move::Wait,
            }
        }
        Phase::Waiting | Phase::Done | Phase::Reverted { .. } => Move::Wait,
    }
}

/// The node the upgrade begins next: the waiting node of lowest id, the
/// leader last (it hands leadership off as it stops).
pub fn next_in_line(upgrade: &Upgrade, leader: NodeId) -> Option<NodeId> {
    upgrade
        .phases
        .iter()
        .filter(|(_, p)| **p == Phase::Waiting)
        .map(|(n, _)| *n)
        .min_by_key(|n| (*n == leader, *n))
}

/// The next node to begin, once the preflight holds.
fn next_node(upgrade: &Upgrade, view: &View, in_phase: u64) -> Move {
    let Some(node) = next_in_line(upgrade, view.leader) else {
        return Move::Wait;
    };
    let seen = view.nodes.get(&node).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    if !seen.up {
        problems.push(format!("node {node} is not up"));
    } else if !seen.has_heart {
        return Move::Halt(format!(
            "node {node} runs without a heart (baton-heart); it cannot be swapped"
        ));
    }
    if seen.holds_binary == Some(false) {
        problems.push(format!(
            "node {node}'s heart does not hold the binary yet (it fetches it from a peer)"
        ));
    }
    problems.extend(voters_not_ready(view, node));
    if problems.is_empty() {
        return Move::Begin(node);
    }
    match in_phase > upgrade.settings.healthy_deadline_ms {
        true => Move::Halt(format!("preflight for node {node}: {}", problems.join("; "))),
        false => Move::Wait,
    }
}

/// The voters other than `node` that are not up and caught up: with any,
/// taking `node` down could leave the cluster without a quorum.
fn voters_not_ready(view: &View, node: NodeId) -> Vec<String> {
    view.voters
        .iter()
        .filter(|v| **v != node)
        .filter(|v| view.nodes.get(v).is_none_or(|other| !other.up || !other.caught_up))
        .map(|v| format!("voter {v} is not up and caught up"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::upgrades::{NodeBinary, UpgradeSettings};

    const HASH: &str = "aa";

    fn upgrade() -> Upgrade {
        let binary = NodeBinary::sample(HASH, 6);
        let settings = UpgradeSettings {
            min_healthy_ms: 1_000,
            healthy_deadline_ms: 10_000,
            auto_revert: true,
            hold_version: false,
        };
        Upgrade::start(binary, settings, &[1, 2, 3], 6, 0).unwrap()
    }

    fn healthy(binary: &str) -> NodeSeen {
        NodeSeen {
            up: true,
            caught_up: true,
            matched: 100,
            binary: binary.into(),
            has_heart: true,
            ..Default::default()
        }
    }

    fn view(now_ms: u64) -> View {
        View {
            now_ms,
            leader: 1,
            commit_index: 100,
            voters: [1, 2, 3].into(),
            nodes: (1..=3).map(|n| (n, healthy("installed"))).collect(),
            heart_revert: None,
            watched_since_ms: 0,
        }
    }

    #[test]
    fn followers_go_first_and_the_leader_last() {
        let mut up = upgrade();
        assert_eq!(decide(&up, &view(1)), Move::Begin(2));
        for node in [2, 3] {
            up.set_phase(node, Phase::Draining, 1).unwrap();
            up.set_phase(node, Phase::Swapping { gate_index: 1 }, 1).unwrap();
            up.set_phase(node, Phase::Gating, 1).unwrap();
            up.set_phase(node, Phase::Done, 1).unwrap();
        }
        assert_eq!(decide(&up, &view(1)), Move::Begin(1));
    }

    #[test]
    fn preflight_waits_for_every_other_voter_and_halts_after_the_deadline() {
        let up = upgrade();
        let mut v = view(1);
        v.nodes.get_mut(&3).unwrap().caught_up = false;
        assert_eq!(decide(&up, &v), Move::Wait);
        v.now_ms = 20_000;
        assert!(matches!(decide(&up, &v), Move::Halt(reason) if reason.contains("voter 3")));
        let mut v = view(1);
        v.nodes.get_mut(&2).unwrap().has_heart = false;
        assert!(matches!(decide(&up, &v), Move::Halt(reason) if reason.contains("without a heart")));
    }

    #[test]
    fn preflight_waits_for_the_nodes_heart_to_hold_the_binary() {
        let up = upgrade();
        assert_eq!(next_in_line(&up, 1), Some(2));
        assert_eq!(next_in_line(&up, 2), Some(1));
        let mut v = view(1);
        v.nodes.get_mut(&2).unwrap().holds_binary = Some(false);
        assert_eq!(decide(&up, &v), Move::Wait);
        v.now_ms = 20_000;
        assert!(matches!(decide(&up, &v), Move::Halt(reason) if reason.contains("does not hold the binary")));
        // Held, or a heart that does not say: the node begins.
        for holds in [Some(true), None] {
            v.nodes.get_mut(&2).unwrap().holds_binary = holds;
            assert_eq!(decide(&up, &v), Move::Begin(2));
        }
    }

    #[test]
    fn a_node_is_drained_swapped_gated_and_made_permanent() {
        let mut up = upgrade();
        up.set_phase(2, Phase::Draining, 0).unwrap();
        let mut v = view(10);
        v.nodes.get_mut(&2).unwrap().tasks = 3;
        assert_eq!(decide(&up, &v), Move::Wait, "tasks still on it");
        v.nodes.get_mut(&2).unwrap().tasks = 0;
        assert_eq!(
            decide(&up, &v),
            Move::Swap {
                node: 2,
                gate_index: 100
            }
        );

        up.set_phase(2, Phase::Swapping { gate_index: 100 }, 20).unwrap();
        assert_eq!(decide(&up, &v), Move::AskSwap(2), "still on the old binary");
        let node = v.nodes.get_mut(&2).unwrap();
        node.binary = HASH.into();
        node.matched = 90;
        assert_eq!(decide(&up, &v), Move::Wait, "not caught up to the gate index");
        v.nodes.get_mut(&2).unwrap().matched = 100;
        assert_eq!(decide(&up, &v), Move::Gate(2));

        up.set_phase(2, Phase::Gating, 30).unwrap();
        v.now_ms = 500;
        v.nodes.get_mut(&2).unwrap().ticks_ok = 5;
        assert_eq!(decide(&up, &v), Move::Wait, "not healthy for long enough");
        v.now_ms = 1_030;
        assert_eq!(decide(&up, &v), Move::MakePermanent(2));
        v.watched_since_ms = 900;
        assert_eq!(decide(&up, &v), Move::Wait, "a new leader watches the gate anew");
    }

    #[test]
    fn a_heart_that_reverted_or_a_deadline_reverts_the_node() {
        let mut up = upgrade();
        up.set_phase(2, Phase::Draining, 0).unwrap();
        up.set_phase(2, Phase::Swapping { gate_index: 100 }, 50).unwrap();
        let mut v = view(100);
        // In phase for 50 ms; the heart reverted 70 ms ago, by its clock.
        v.heart_revert = Some(HeartRevert {
            hash: HASH.into(),
            age_ms: 70,
            reason: "old".into(),
        });
        assert_eq!(decide(&up, &v), Move::AskSwap(2), "a revert from before this swap");
        v.heart_revert.as_mut().unwrap().age_ms = 30;
        assert!(matches!(
            decide(&up, &v),
            Move::Revert { node: 2, ask_heart: false, reason } if reason.contains("old")
        ));
        v.heart_revert = None;
        v.now_ms = 20_000;
        assert!(matches!(
            decide(&up, &v),
            Move::Revert {
                node: 2,
                ask_heart: true,
                ..
            }
        ));
    }

    #[test]
    fn a_failed_tick_on_the_new_binary_reverts_or_halts() {
        let mut up = upgrade();
        up.set_phase(2, Phase::Draining, 0).unwrap();
        up.set_phase(2, Phase::Swapping { gate_index: 1 }, 0).unwrap();
        up.set_phase(2, Phase::Gating, 0).unwrap();
        let mut v = view(100);
        let node = v.nodes.get_mut(&2).unwrap();
        node.binary = HASH.into();
        node.ticks_failed = 2;
        assert!(matches!(
            decide(&up, &v),
            Move::Revert {
                node: 2,
                ask_heart: true,
                ..
            }
        ));
        up.settings.auto_revert = false;
        assert!(matches!(decide(&up, &v), Move::Halt(reason) if reason.contains("left on trial")));
        v.nodes.get_mut(&2).unwrap().ticks_failed = 0;
        v.nodes.get_mut(&2).unwrap().binary = "installed".into();
        assert!(
            matches!(decide(&up, &v), Move::Revert { ask_heart: false, .. }),
            "it went back"
        );
    }

    #[test]
    fn a_paused_upgrade_finishes_its_node_and_begins_no_other() {
        let mut up = upgrade();
        up.control(&crate::state::upgrades::UpgradeAction::Pause, 1).unwrap();
        assert_eq!(decide(&up, &view(1)), Move::Wait);
        let mut up = upgrade();
        up.set_phase(2, Phase::Draining, 0).unwrap();
        up.control(&crate::state::upgrades::UpgradeAction::Pause, 1).unwrap();
        assert_eq!(
            decide(&up, &view(1)),
            Move::Swap {
                node: 2,
                gate_index: 100
            }
        );
    }

    #[test]
    fn no_swap_while_another_voter_is_down() {
        let mut up = upgrade();
        up.set_phase(2, Phase::Draining, 0).unwrap();
        let mut v = view(10);
        v.nodes.get_mut(&3).unwrap().up = false;
        assert_eq!(decide(&up, &v), Move::Wait, "drained, but voter 3 went down");
        up.set_phase(2, Phase::Swapping { gate_index: 100 }, 10).unwrap();
        assert_eq!(decide(&up, &v), Move::Wait, "no second ask to swap either");
        v.nodes.get_mut(&3).unwrap().up = true;
        assert_eq!(decide(&up, &v), Move::AskSwap(2));
    }
}
