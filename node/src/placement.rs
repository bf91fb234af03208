//! Where tasks run: the leader's pure placement decision.
//!
//! - A running task whose owner is missing or lost (neither eligible nor
//!   draining) is assigned at once to the eligible node with the fewest
//!   tasks: its old owner is gone, so nobody has a tick in flight to wait for.
//!   From cluster version 5 all the tasks of one such owner move by one
//!   [`MoveAll`], which names the owner and the nodes to take them, and the
//!   state machine picks each task's node as it applies it (the tasks of a
//!   lost node are many, the entry stays small); before, one assignment per
//!   task.
//! - A task on a draining node (drained by an operator, or shutting down) is
//!   handed off: it moves after its current tick commits.
//! - When nothing else is moving, tasks are handed off from the most to the
//!   least loaded eligible node, a few per round, until no node has more than
//!   one task above another: new and returning nodes get their fair share.
//! - A node still catching up on the log (it just started, or came back from
//!   a partition) could not tick a task before it has caught up: it gets
//!   tasks only when no other node is eligible, and no hand-offs.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::cluster_version::{ClusterVersion, REASSIGN_ALL};
use crate::state::tasks::{Assignment, TaskRecord, TaskTable};
use crate::types::NodeId;

/// The nodes as the leader sees them when it places tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Alive and accepting tasks.
    pub eligible: BTreeSet<NodeId>,
    /// Alive, but their tasks must move (drained, or shutting down).
    pub draining: BTreeSet<NodeId>,
    /// Perhaps alive (renewals late, lease not over): they keep their tasks
    /// and get no new ones.
    pub suspect: BTreeSet<NodeId>,
    /// Eligible nodes that are still applying the log: they keep their
    /// tasks and get new ones only when no other node is eligible.
    pub catching_up: BTreeSet<NodeId>,
}

/// Every running task of `from` (`None`: those not placed yet) moves at
/// once to the least loaded of `to` (`Command::ReassignAll`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveAll {
    pub from: Option<NodeId>,
    pub to: Vec<NodeId>,
}

/// What the leader proposes this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Moves at once (`Command::AssignOwners`).
    pub assign: Vec<Assignment>,
    /// Moves at once of whole owners' tasks (`Command::ReassignAll`), from
    /// cluster version 5.
    pub move_all: Vec<MoveAll>,
    /// Moves after the owner's current tick (`Command::HandOff`).
    pub hand_off: Vec<Assignment>,
}

impl NodeView {
    /// How `batonctl status` names node `id`: draining, suspect, up, or down
    /// (in no set: its lease ended or its process is gone).
    pub fn state_of(&self, id: NodeId) -> &'static str {
        if self.draining.contains(&id) {
            "draining"
        } else if self.suspect.contains(&id) {
            "suspect"
        } else if self.eligible.contains(&id) {
            "up"
        } else {
            "down"
        }
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.assign.is_empty() && self.move_all.is_empty() && self.hand_off.is_empty()
    }
}

/// How the leader may write its moves: what the cluster's version allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRules {
    /// Hand-offs per round to even out the load.
    pub max_rebalance: usize,
    /// Whether the tasks of a lost owner move by one [`MoveAll`] (cluster
    /// version 5 and later) rather than one assignment each.
    pub move_all: bool,
}

impl PlanRules {
    /// The rules at cluster version `version`.
    pub fn at(version: ClusterVersion, max_rebalance: usize) -> PlanRules {
        PlanRules {
            max_rebalance,
            move_all: version >= REASSIGN_ALL,
        }
    }
}

/// The moves that give every running task a live owner, empty the draining
/// nodes, and (when nothing else moves) even out the load by at most
/// `rules.max_rebalance` hand-offs.
pub fn plan(table: &TaskTable, nodes: &NodeView, rules: PlanRules) -> Plan {
    let mut plan = Plan::default();
    if nodes.eligible.is_empty() {
        return plan;
    }
    // Only the tasks that may move are looked at: those of owners that are
    // gone or draining, and those being handed off (the index keeps them).
    let index = table.index();
    let alive = |id: &NodeId| nodes.eligible.contains(id) || nodes.draining.contains(id) || nodes.suspect.contains(id);
    // Where each task will be once the moves in flight complete: with its
    // hand-off's target if that is eligible, else with its owner.
    let mut load: BTreeMap<NodeId, usize> = nodes.eligible.iter().map(|id| (*id, 0)).collect();
    for (owner, tasks) in index.running_by_owner() {
        if let Some(n) = owner.and_then(|node| load.get_mut(&node)) {
            *n += tasks.len();
        }
    }
    for task in index.handing_off().iter().map(|name| &table[name.as_str()]) {
        if let Some(to) = task.handoff_to.filter(|to| nodes.eligible.contains(to)) {
            if let Some(n) = task.owner.and_then(|owner| load.get_mut(&owner)) {
                *n -= 1;
            }
            *load.get_mut(&to).expect("eligible") += 1;
        }
    }
    // The least loaded node that has caught up, or the least loaded of all.
    let take_least_loaded = |load: &mut BTreeMap<NodeId, usize>| {
        let (&node, n) = load
            .iter_mut()
            .min_by_key(|(id, n)| (nodes.catching_up.contains(id), **n, **id))
            .expect("eligible is not empty");
        *n += 1;
        node
    };
    // Where a lost owner's tasks go by a `MoveAll`: the nodes that have
    // caught up, or all eligible ones if none has (as `take_least_loaded`).
    let targets: Vec<NodeId> = match nodes.eligible.iter().any(|id| !nodes.catching_up.contains(id)) {
        true => nodes.eligible.difference(&nodes.catching_up).copied().collect(),
        false => nodes.eligible.iter().copied().collect(),
    };
    let to_move = |task: &TaskRecord, owner: NodeId| Assignment {
        task: task.spec.name.clone(),
        owner: Some(owner),
        expected_epoch: task.epoch,
    };
    for (owner, names) in index.running_by_owner() {
        let tasks = names.iter().map(|name| &table[name.as_str()]);
        match owner {
            Some(owner) if nodes.draining.contains(owner) => {
                for task in tasks {
                    let pending = task.handoff_to.is_some_and(|to| nodes.eligible.contains(&to));
                    if !pending {
                        plan.hand_off.push(to_move(task, take_least_loaded(&mut load)));
                    }
                }
            }
            Some(owner) if alive(owner) => {}
            _ if rules.move_all => {
                // The state machine spreads them as `take_least_loaded`
                // would; the load here follows, for the rest of the plan.
                for _ in 0..names.len() {
                    take_least_loaded(&mut load);
                }
                plan.move_all.push(MoveAll {
                    from: *owner,
                    to: targets.clone(),
                });
            }
            _ => {
                for task in tasks {
                    plan.assign.push(to_move(task, take_least_loaded(&mut load)));
                }
            }
        }
    }
    let moving = !index.handing_off().is_empty();
    if plan.is_empty() && !moving {
        plan.hand_off = rebalance(table, &mut load, &nodes.catching_up, rules.max_rebalance);
    }
    plan
}

/// Up to `max` hand-offs from the most to the least loaded eligible node
/// that is not catching up (none is being handed off).
fn rebalance(
    table: &TaskTable,
    load: &mut BTreeMap<NodeId, usize>,
    catching_up: &BTreeSet<NodeId>,
    max: usize,
) -> Vec<Assignment> {
    // How many of each node's tasks (the last by name first) are moving.
    let mut taken: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut moves = Vec::new();
    while moves.len() < max {
        let (&most, &high) = load
            .iter()
            .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
            .expect("not empty");
        let Some((&least, &low)) = load
            .iter()
            .filter(|(id, _)| !catching_up.contains(id))
            .min_by_key(|(id, n)| (**n, **id))
        else {
            break;
        };
        if high <= low + 1 {
            break;
        }
        let skip = taken.entry(most).or_default();
        let Some(name) = table.index().running_on(Some(most)).rev().nth(*skip) else {
            break;
        };
        *skip += 1;
        let task = &table[name];
        *load.get_mut(&most).expect("in load") -= 1;
        *load.get_mut(&least).expect("in load") += 1;
        moves.push(Assignment {
            task: task.spec.name.clone(),
            owner: Some(least),
            expected_epoch: task.epoch,
        });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tasks::{CatchUp, RestartPolicy, Schedule, TaskSpec, TaskStatus};

    fn table(tasks: &[(&str, Option<NodeId>)]) -> TaskTable {
        let mut table = TaskTable::default();
        for (name, owner) in tasks {
            table.add(TaskSpec {
                name: name.to_string(),
                module: "m".into(),
                schedule: Schedule::EveryMs(1000),
                catch_up: CatchUp::Skip,
                restart: RestartPolicy::default(),
                config: Vec::new(),
                allow_net: Vec::new(),
                allow_http: Vec::new(),
                http_ca: Vec::new(),
                secrets: Vec::new(),
            });
            if owner.is_some() {
                table.assign(&[Assignment {
                    task: name.to_string(),
                    owner: *owner,
                    expected_epoch: 0,
                }]);
            }
        }
        table
    }

    fn owners(assignments: &[Assignment]) -> Vec<(String, NodeId)> {
        assignments.iter().map(|a| (a.task.clone(), a.owner.unwrap())).collect()
    }

    /// The rules below cluster version 5: one assignment per task.
    fn per_task(max_rebalance: usize) -> PlanRules {
        PlanRules {
            max_rebalance,
            move_all: false,
        }
    }

    fn eligible(ids: &[NodeId]) -> NodeView {
        NodeView {
            eligible: ids.iter().copied().collect(),
            ..NodeView::default()
        }
    }

    #[test]
    fn new_tasks_are_spread_evenly_over_the_eligible_nodes() {
        let t = table(&[("a", None), ("b", None), ("c", None), ("d", None)]);
        let placed = plan(&t, &eligible(&[1, 2, 3]), per_task(10));
        let per_node = placed.assign.iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a.owner.unwrap()).or_insert(0) += 1;
            m
        });
        assert_eq!(per_node, BTreeMap::from([(1, 2), (2, 1), (3, 1)]));
        assert!(placed.assign.iter().all(|a| a.expected_epoch == 0));
        assert!(placed.hand_off.is_empty());
    }

    #[test]
    fn tasks_of_a_lost_node_move_at_once_to_the_least_loaded_nodes() {
        let t = table(&[("a", Some(1)), ("b", Some(2)), ("c", Some(3)), ("d", Some(3))]);
        let placed = plan(&t, &eligible(&[1, 2]), per_task(10));
        assert_eq!(owners(&placed.assign), vec![("c".into(), 1), ("d".into(), 2)]);
        assert!(
            placed.assign.iter().all(|a| a.expected_epoch == 1),
            "the fence is the epoch they were read at"
        );
        assert!(placed.hand_off.is_empty());
    }

    #[test]
    fn a_draining_node_hands_its_tasks_off_and_gets_none() {
        let t = table(&[("a", Some(1)), ("b", Some(1)), ("c", Some(2)), ("n", None)]);
        let view = NodeView {
            eligible: BTreeSet::from([2, 3]),
            draining: BTreeSet::from([1]),
            ..NodeView::default()
        };
        let placed = plan(&t, &view, per_task(10));
        // The unplaced task first (it has no owner), then the draining
        // node's, each to the least loaded node at its turn.
        assert_eq!(owners(&placed.assign), vec![("n".into(), 3)]);
        assert_eq!(owners(&placed.hand_off), vec![("a".into(), 2), ("b".into(), 3)]);
    }

    #[test]
    fn a_hand_off_in_flight_is_not_started_again_and_holds_back_rebalancing() {
        let mut t = table(&[("a", Some(1)), ("b", Some(1)), ("c", Some(1))]);
        t.hand_off(&[Assignment {
            task: "a".into(),
            owner: Some(2),
            expected_epoch: 1,
        }]);
        let view = NodeView {
            eligible: BTreeSet::from([2]),
            draining: BTreeSet::from([1]),
            ..NodeView::default()
        };
        assert_eq!(
            owners(&plan(&t, &view, per_task(10)).hand_off),
            vec![("b".into(), 2), ("c".into(), 2)]
        );
        assert!(
            plan(&t, &eligible(&[1, 2, 3]), per_task(10)).is_empty(),
            "one move at a time"
        );
    }

    #[test]
    fn a_node_still_catching_up_gets_no_hand_offs_and_new_tasks_only_as_a_last_resort() {
        let t = table(&[("a", Some(1)), ("b", Some(1)), ("c", Some(1)), ("d", Some(1))]);
        let mut view = eligible(&[1, 2]);
        view.catching_up.insert(2);
        assert!(
            plan(&t, &view, per_task(10)).is_empty(),
            "no rebalancing onto a node that cannot tick yet"
        );
        view.catching_up.clear();
        assert_eq!(
            plan(&t, &view, per_task(10)).hand_off.len(),
            2,
            "caught up: it gets its share"
        );
        // Lost tasks go to a node that has caught up, even a busier one...
        let t = table(&[("a", Some(9)), ("b", Some(1)), ("c", Some(1))]);
        let view = NodeView {
            eligible: BTreeSet::from([1, 2]),
            catching_up: BTreeSet::from([2]),
            ..NodeView::default()
        };
        assert_eq!(owners(&plan(&t, &view, per_task(10)).assign), vec![("a".into(), 1)]);
        // ... and to one catching up when it is the only one left.
        let view = NodeView {
            eligible: BTreeSet::from([2]),
            catching_up: BTreeSet::from([2]),
            ..NodeView::default()
        };
        assert_eq!(owners(&plan(&t, &view, per_task(10)).assign).len(), 3);
    }

    #[test]
    fn a_new_node_receives_its_fair_share_a_few_tasks_at_a_time() {
        let names: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
        let tasks: Vec<(&str, Option<NodeId>)> = names
            .iter()
            .map(|n| (n.as_str(), Some(1 + (n.len() as u64 % 2))))
            .collect();
        let mut t = table(&tasks);
        // All nine on nodes 1 and 2 (names of equal length: all on node 2).
        let view = eligible(&[1, 2, 3]);
        let first = plan(&t, &view, per_task(2));
        assert_eq!(first.hand_off.len(), 2, "at most two per round");
        assert!(first.assign.is_empty());
        let mut rounds = 0;
        loop {
            let round = plan(&t, &view, per_task(2));
            if round.is_empty() {
                break;
            }
            t.hand_off(&round.hand_off);
            for a in &round.hand_off {
                let epoch = t[a.task.as_str()].epoch;
                t.yield_task(&a.task, epoch, t[a.task.as_str()].owner.unwrap());
            }
            rounds += 1;
            assert!(rounds < 10);
        }
        let mut per_node = BTreeMap::new();
        for task in t.values() {
            *per_node.entry(task.owner.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(per_node, BTreeMap::from([(1, 3), (2, 3), (3, 3)]));
    }

    #[test]
    fn a_suspect_node_keeps_its_tasks_and_gets_no_new_ones() {
        let t = table(&[("a", Some(1)), ("n", None)]);
        let view = NodeView {
            eligible: BTreeSet::from([2]),
            suspect: BTreeSet::from([1]),
            ..NodeView::default()
        };
        let placed = plan(&t, &view, per_task(10));
        assert_eq!(owners(&placed.assign), vec![("n".into(), 2)]);
        assert!(placed.hand_off.is_empty(), "no rebalancing onto or off a suspect node");
    }

    #[test]
    fn healthy_tasks_stay_and_paused_ones_are_left_alone() {
        let mut t = table(&[("a", Some(1)), ("b", Some(2)), ("p", None)]);
        t.set_status("p", TaskStatus::Paused);
        assert!(plan(&t, &eligible(&[1, 2, 3]), per_task(10)).is_empty());
    }

    #[test]
    fn nothing_is_placed_when_no_node_is_eligible() {
        assert!(plan(&table(&[("a", None)]), &eligible(&[]), per_task(10)).is_empty());
    }

    #[test]
    fn from_version_5_a_lost_nodes_tasks_move_by_one_small_entry_to_the_nodes_that_caught_up() {
        let t = table(&[("a", Some(9)), ("b", Some(9)), ("n", None), ("x", Some(1))]);
        let view = NodeView {
            eligible: BTreeSet::from([1, 2, 3]),
            catching_up: BTreeSet::from([3]),
            ..NodeView::default()
        };
        let rules = PlanRules::at(REASSIGN_ALL, 10);
        assert!(
            !PlanRules::at(REASSIGN_ALL - 1, 10).move_all,
            "an older release could not read it"
        );
        let placed = plan(&t, &view, rules);
        assert_eq!(
            placed.move_all,
            vec![
                MoveAll {
                    from: None,
                    to: vec![1, 2]
                },
                MoveAll {
                    from: Some(9),
                    to: vec![1, 2]
                },
            ]
        );
        assert!(placed.assign.is_empty() && placed.hand_off.is_empty());
        // Only a node still catching up is left: it takes them.
        let view = NodeView {
            eligible: BTreeSet::from([3]),
            catching_up: BTreeSet::from([3]),
            ..NodeView::default()
        };
        assert_eq!(plan(&t, &view, rules).move_all[1].to, vec![3]);
    }

    #[test]
    fn a_move_all_applied_places_every_task_where_one_assignment_each_would() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(15);
        for round in 0..200 {
            let names: Vec<String> = (0..rng.random_range(0..60)).map(|i| format!("t{i:02}")).collect();
            let tasks: Vec<(&str, Option<NodeId>)> = names
                .iter()
                .map(|n| (n.as_str(), rng.random_range(0..7u64).checked_sub(1)))
                .collect();
            let view = eligible(&(1..=rng.random_range(1..=4)).collect::<Vec<_>>());
            let mut one_each = table(&tasks);
            let mut whole = one_each.clone();
            one_each.assign(&plan(&one_each, &view, per_task(0)).assign);
            let rules = PlanRules {
                max_rebalance: 0,
                move_all: true,
            };
            for m in plan(&whole, &view, rules).move_all {
                whole.reassign_all(m.from, &m.to);
            }
            let owners = |t: &TaskTable| {
                t.values()
                    .map(|r| (r.spec.name.clone(), r.owner, r.epoch))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                owners(&whole),
                owners(&one_each),
                "round {round}: {tasks:?} on {view:?}"
            );
            assert!(whole.index().agrees_with(whole.values()));
        }
    }
}
