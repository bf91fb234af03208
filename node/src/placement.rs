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
//! - The leader carries a lighter share: each of its tasks counts
//!   [`LEADER_WEIGHT`] times against it, because its cores also carry the
//!   cluster's Raft work (proposing, appending, sending to every follower,
//!   answering forwarded writes) and its ticks are the first to start late.
//!   A [`MoveAll`] leaves the leader out of its targets (the state machine
//!   spreads by plain counts, and the entry stays a few bytes): the leader
//!   gets its share of new tasks and of a lost node's by hand-offs, as a
//!   returning node does.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::cluster_version::{ClusterVersion, REASSIGN_ALL};
use crate::state::tasks::{Assignment, TaskRecord, TaskTable};
use crate::types::NodeId;

/// How many times each task on the leader counts against it: with four
/// nodes it ticks a seventh of the tasks rather than a quarter. See
/// `docs/plans/issue-15-leader-share.md` for the measurements behind it.
pub const LEADER_WEIGHT: usize = 2;

/// The leader's share of `tasks` on `nodes` eligible nodes once placement
/// has settled (rounded down): each follower holds [`LEADER_WEIGHT`] times
/// as many.
pub fn leader_share(tasks: usize, nodes: usize) -> usize {
    tasks / (1 + LEADER_WEIGHT * nodes.saturating_sub(1))
}

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
    /// The node that plans, whose tasks count [`LEADER_WEIGHT`] times
    /// (None: every task counts once, as for `batonctl status`).
    pub leader: Option<NodeId>,
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

impl NodeView {
    /// What `tasks` tasks on node `id` weigh when placing: the leader's
    /// count [`LEADER_WEIGHT`] times, and between equal weights the plain
    /// count decides (three tasks on three nodes: one each).
    fn weight(&self, id: NodeId, tasks: usize) -> (usize, usize) {
        match self.leader == Some(id) {
            true => (tasks * LEADER_WEIGHT, tasks),
            false => (tasks, tasks),
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
    // The node that has caught up whose load, with one more task, weighs
    // least; or the least of all. `leader`: whether the leader may take it.
    let take_least_loaded = |load: &mut BTreeMap<NodeId, usize>, leader: bool| {
        let (&node, n) = load
            .iter_mut()
            .filter(|(id, _)| leader || nodes.leader != Some(**id))
            .min_by_key(|(id, n)| (nodes.catching_up.contains(id), nodes.weight(**id, **n + 1), **id))
            .expect("an eligible node other than the leader");
        *n += 1;
        node
    };
    // Where a lost owner's tasks go by a `MoveAll`: the nodes that have
    // caught up, or all eligible ones if none has (as `take_least_loaded`);
    // not the leader when another is among them.
    let mut targets: Vec<NodeId> = match nodes.eligible.iter().any(|id| !nodes.catching_up.contains(id)) {
        true => nodes.eligible.difference(&nodes.catching_up).copied().collect(),
        false => nodes.eligible.iter().copied().collect(),
    };
    let leader_apart = targets.len() > 1 && nodes.leader.is_some_and(|leader| targets.contains(&leader));
    if leader_apart {
        targets.retain(|id| nodes.leader != Some(*id));
    }
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
                        plan.hand_off.push(to_move(task, take_least_loaded(&mut load, true)));
                    }
                }
            }
            Some(owner) if alive(owner) => {}
            _ if rules.move_all => {
                // The state machine spreads them over `targets` as
                // `take_least_loaded` would; the load here follows, for the
                // rest of the plan.
                for _ in 0..names.len() {
                    take_least_loaded(&mut load, !leader_apart);
                }
                plan.move_all.push(MoveAll {
                    from: *owner,
                    to: targets.clone(),
                });
            }
            _ => {
                for task in tasks {
                    plan.assign.push(to_move(task, take_least_loaded(&mut load, true)));
                }
            }
        }
    }
    let moving = !index.handing_off().is_empty();
    if plan.is_empty() && !moving {
        plan.hand_off = rebalance(table, &mut load, nodes, rules.max_rebalance);
    }
    plan
}

/// Up to `max` hand-offs from the most to the least loaded eligible node
/// that is not catching up (none is being handed off), by weight: a move is
/// made while it leaves the two nodes' heavier weight lighter than it was.
/// Each move lowers the heaviest weights in order, so the rounds settle.
fn rebalance(table: &TaskTable, load: &mut BTreeMap<NodeId, usize>, nodes: &NodeView, max: usize) -> Vec<Assignment> {
    // How many of each node's tasks (the last by name first) are moving.
    let mut taken: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut moves = Vec::new();
    while moves.len() < max {
        let (&most, &high) = load
            .iter()
            .max_by_key(|(id, n)| (nodes.weight(**id, **n), std::cmp::Reverse(**id)))
            .expect("not empty");
        let Some((&least, &low)) = load
            .iter()
            .filter(|(id, _)| !nodes.catching_up.contains(id))
            .min_by_key(|(id, n)| (nodes.weight(**id, **n + 1), **id))
        else {
            break;
        };
        if nodes.weight(least, low + 1) >= nodes.weight(most, high) {
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
            let count = rng.random_range(1..=4);
            let mut view = eligible(&(1..=count).collect::<Vec<_>>());
            // Now and then a node catching up (never the leader), and a
            // leader, which a `MoveAll` leaves out while another can take them.
            view.catching_up = view.eligible.iter().copied().filter(|_| rng.random_bool(0.2)).collect();
            view.leader = rng.random_range(0..=count).checked_sub(1).map(|i| i + 1);
            view.leader = view.leader.filter(|id| !view.catching_up.contains(id));
            let leader_apart = view.leader.is_some() && view.eligible.len() - view.catching_up.len() > 1;
            // As if the leader kept its tasks and took no new ones.
            let mut without_leader = NodeView {
                leader: None,
                ..view.clone()
            };
            if let Some(leader) = view.leader.filter(|_| leader_apart) {
                without_leader.eligible.remove(&leader);
                without_leader.suspect.insert(leader);
            }
            let mut one_each = table(&tasks);
            let mut whole = one_each.clone();
            one_each.assign(&plan(&one_each, &without_leader, per_task(0)).assign);
            let rules = PlanRules {
                max_rebalance: 0,
                move_all: true,
            };
            let placed = plan(&whole, &view, rules);
            assert!(placed.assign.is_empty());
            for m in placed.move_all {
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

    /// Tasks per node once every move is made: hand-offs complete at once.
    fn settle(t: &mut TaskTable, view: &NodeView, rules: PlanRules) -> BTreeMap<NodeId, usize> {
        for _ in 0..1000 {
            let round = plan(t, view, rules);
            if round.is_empty() {
                break;
            }
            t.assign(&round.assign);
            for m in &round.move_all {
                t.reassign_all(m.from, &m.to);
            }
            t.hand_off(&round.hand_off);
            for a in &round.hand_off {
                let task = &t[a.task.as_str()];
                let (epoch, owner) = (task.epoch, task.owner.unwrap());
                t.yield_task(&a.task, epoch, owner);
            }
        }
        assert!(plan(t, view, rules).is_empty(), "settled");
        let mut per_node = BTreeMap::new();
        for task in t.values() {
            *per_node.entry(task.owner.unwrap()).or_insert(0) += 1;
        }
        per_node
    }

    fn named(count: usize, owner: Option<NodeId>) -> Vec<(String, Option<NodeId>)> {
        (0..count).map(|i| (format!("t{i:04}"), owner)).collect()
    }

    fn table_of(tasks: &[(String, Option<NodeId>)]) -> TaskTable {
        table(&tasks.iter().map(|(n, o)| (n.as_str(), *o)).collect::<Vec<_>>())
    }

    #[test]
    fn the_leader_takes_half_a_followers_share_of_new_and_lost_tasks() {
        let view = NodeView {
            leader: Some(1),
            ..eligible(&[1, 2, 3, 4])
        };
        for rules in [per_task(16), PlanRules::at(REASSIGN_ALL, 16)] {
            // New tasks: one by one below version 5, each to the node it
            // weighs least on; from 5, all on the followers by one `MoveAll`
            // and the leader's share by hand-offs after.
            let mut t = table_of(&named(700, None));
            let first = plan(&t, &view, rules);
            match rules.move_all {
                true => assert_eq!(first.move_all[0].to, vec![2, 3, 4]),
                false => assert_eq!(first.assign.iter().filter(|a| a.owner == Some(1)).count(), 100),
            }
            let placed = settle(&mut t, &view, rules);
            assert_eq!(placed, BTreeMap::from([(1, 100), (2, 200), (3, 200), (4, 200)]));
            assert_eq!(leader_share(700, 4), 100);
            // Node 4 is lost: the leader ends with its lighter share of them.
            let lost = NodeView {
                leader: Some(1),
                ..eligible(&[1, 2, 3])
            };
            let placed = settle(&mut t, &lost, rules);
            assert_eq!(placed, BTreeMap::from([(1, 140), (2, 280), (3, 280)]));
        }
    }

    #[test]
    fn a_new_leader_hands_off_tasks_until_it_weighs_as_a_follower_and_stops_there() {
        let mut tasks = named(300, None);
        for (i, task) in tasks.iter_mut().enumerate() {
            task.1 = Some(1 + i as u64 % 3);
        }
        let mut t = table_of(&tasks);
        let view = NodeView {
            leader: Some(2),
            ..eligible(&[1, 2, 3])
        };
        let first = plan(&t, &view, per_task(16));
        assert_eq!(first.hand_off.len(), 16, "a few per round");
        assert!(first.hand_off.iter().all(|a| a.owner != Some(2)), "off the leader only");
        let placed = settle(&mut t, &view, per_task(16));
        assert_eq!(placed, BTreeMap::from([(1, 120), (2, 60), (3, 120)]));
        // Another election: the load moves to even the new leader out.
        let view = NodeView {
            leader: Some(3),
            ..view
        };
        let placed = settle(&mut t, &view, per_task(16));
        assert_eq!(placed, BTreeMap::from([(1, 120), (2, 120), (3, 60)]));
    }

    #[test]
    fn a_leader_alone_or_among_nodes_catching_up_keeps_every_task() {
        let rules = PlanRules::at(REASSIGN_ALL, 16);
        let alone = NodeView {
            leader: Some(1),
            ..eligible(&[1])
        };
        let mut t = table_of(&named(50, None));
        assert_eq!(settle(&mut t, &alone, rules), BTreeMap::from([(1, 50)]));
        let mut with_new = NodeView {
            leader: Some(1),
            ..eligible(&[1, 2])
        };
        with_new.catching_up.insert(2);
        let mut t = table_of(&named(50, Some(9)));
        let round = plan(&t, &with_new, rules);
        assert!(round.assign.is_empty(), "no picks: the leader is the only target");
        assert_eq!(round.move_all[0].to, vec![1]);
        assert_eq!(settle(&mut t, &with_new, rules), BTreeMap::from([(1, 50)]));
    }

    #[test]
    fn three_tasks_on_three_nodes_go_one_each_whoever_leads_and_after_a_drain() {
        let rules = PlanRules::at(REASSIGN_ALL, 16);
        let one_each = BTreeMap::from([(1, 1), (2, 1), (3, 1)]);
        for leader in 1..=3 {
            let view = NodeView {
                leader: Some(leader),
                ..eligible(&[1, 2, 3])
            };
            let mut t = table_of(&named(3, None));
            assert_eq!(settle(&mut t, &view, rules), one_each, "leader {leader}");
            for drained in 1..=3 {
                let mut draining = view.clone();
                draining.eligible.remove(&drained);
                draining.draining.insert(drained);
                assert!(!settle(&mut t, &draining, rules).contains_key(&drained));
                assert_eq!(
                    settle(&mut t, &view, rules),
                    one_each,
                    "leader {leader}, {drained} undrained"
                );
            }
        }
    }
}
