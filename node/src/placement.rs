//! Where tasks run: the leader's pure placement decision.
//!
//! A running task whose owner is missing or not up gets the up node with the
//! fewest running tasks (the lowest id on a tie). Tasks on up nodes stay where
//! they are: moving a healthy task costs a handoff and buys nothing here.

use std::collections::{BTreeMap, BTreeSet};

use crate::task_table::{Assignment, TaskStatus, TaskTable};
use crate::types::NodeId;

/// The owner changes that give every running task an up owner.
pub fn place(table: &TaskTable, up: &BTreeSet<NodeId>) -> Vec<Assignment> {
    if up.is_empty() {
        return Vec::new();
    }
    let running = || table.tasks.values().filter(|t| t.status == TaskStatus::Running);
    let mut load: BTreeMap<NodeId, usize> = up.iter().map(|id| (*id, 0)).collect();
    for task in running() {
        if let Some(owner) = task.owner
            && let Some(n) = load.get_mut(&owner)
        {
            *n += 1;
        }
    }
    let mut assignments = Vec::new();
    for task in running().filter(|t| !t.owner.is_some_and(|o| up.contains(&o))) {
        let (&node, _) = load.iter().min_by_key(|(id, n)| (**n, **id)).expect("up is not empty");
        *load.get_mut(&node).expect("node is in load") += 1;
        assignments.push(Assignment {
            task: task.spec.name.clone(),
            owner: Some(node),
            expected_epoch: task.epoch,
        });
    }
    assignments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_table::{CatchUp, RestartPolicy, Schedule, TaskSpec};

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

    #[test]
    fn new_tasks_are_spread_evenly_over_the_up_nodes() {
        let t = table(&[("a", None), ("b", None), ("c", None), ("d", None)]);
        let placed = place(&t, &BTreeSet::from([1, 2, 3]));
        let per_node = placed.iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a.owner.unwrap()).or_insert(0) += 1;
            m
        });
        assert_eq!(per_node, BTreeMap::from([(1, 2), (2, 1), (3, 1)]));
        assert!(placed.iter().all(|a| a.expected_epoch == 0));
    }

    #[test]
    fn tasks_of_a_node_that_is_down_move_to_the_least_loaded_up_nodes() {
        let t = table(&[("a", Some(1)), ("b", Some(2)), ("c", Some(3)), ("d", Some(3))]);
        let placed = place(&t, &BTreeSet::from([1, 2]));
        assert_eq!(owners(&placed), vec![("c".into(), 1), ("d".into(), 2)]);
        assert!(
            placed.iter().all(|a| a.expected_epoch == 1),
            "the fence is the epoch they were read at"
        );
    }

    #[test]
    fn healthy_tasks_stay_and_paused_ones_are_left_alone() {
        let mut t = table(&[("a", Some(1)), ("b", Some(2)), ("p", None)]);
        t.set_status("p", TaskStatus::Paused);
        assert!(place(&t, &BTreeSet::from([1, 2, 3])).is_empty());
    }

    #[test]
    fn nothing_is_placed_when_no_node_is_up() {
        assert!(place(&table(&[("a", None)]), &BTreeSet::new()).is_empty());
    }
}
