use super::*;

fn spec(name: &str) -> TaskSpec {
    TaskSpec::counter_every_second(name)
}

/// A table with task `t` owned by node 1 at epoch 1.
fn owned() -> TaskTable {
    let mut table = TaskTable::default();
    table.add(spec("t"));
    table.assign(&[Assignment {
        task: "t".into(),
        owner: Some(1),
        expected_epoch: 0,
    }]);
    table
}

fn commit(epoch: u64, tick: u64, node: NodeId) -> TickCommit {
    TickCommit {
        task: "t".into(),
        epoch,
        tick,
        node,
        state: tick.to_le_bytes().to_vec(),
        next_due_ms: 1000 * tick,
        committed_at_ms: 10 * tick,
        version: 1,
    }
}

#[test]
fn the_owner_commits_ticks_in_order() {
    let mut table = owned();
    for tick in 1..=3 {
        assert_eq!(
            table.commit_tick(&commit(1, tick, 1), &Rules::FENCED),
            CommandResponse::Done
        );
    }
    let task = &table["t"];
    assert_eq!(
        (task.tick, task.state.clone(), task.next_due_ms),
        (3, 3u64.to_le_bytes().to_vec(), 3000)
    );
    let ticks: Vec<u64> = task.history.iter().map(|h| h.tick).collect();
    assert_eq!(ticks, vec![1, 2, 3]);
}

#[test]
fn a_stale_epoch_commit_is_rejected() {
    let mut table = owned();
    table.assign(&[Assignment {
        task: "t".into(),
        owner: Some(2),
        expected_epoch: 1,
    }]);
    let before = table.clone();
    let response = table.commit_tick(&commit(1, 1, 1), &Rules::FENCED);
    assert!(
        matches!(&response, CommandResponse::Rejected(Rejection::StaleOwner { .. })),
        "{response:?}"
    );
    assert_eq!(table, before);
    assert_eq!(
        table.commit_tick(&commit(2, 1, 2), &Rules::FENCED),
        CommandResponse::Done
    );
}

#[test]
fn a_commit_from_a_node_that_is_not_the_owner_is_rejected() {
    let mut table = owned();
    assert!(matches!(
        table.commit_tick(&commit(1, 1, 2), &Rules::FENCED),
        CommandResponse::Rejected(_)
    ));
}

#[test]
fn an_out_of_order_commit_is_rejected() {
    let mut table = owned();
    assert_eq!(
        table.commit_tick(&commit(1, 1, 1), &Rules::FENCED),
        CommandResponse::Done
    );
    let before = table.clone();
    for tick in [1, 3, 0] {
        let response = table.commit_tick(&commit(1, tick, 1), &Rules::FENCED);
        assert!(
            matches!(&response, CommandResponse::Rejected(Rejection::OutOfOrder { .. })),
            "{response:?}"
        );
    }
    assert_eq!(table, before);
}

#[test]
fn pausing_fences_a_tick_in_flight_and_resuming_needs_the_new_epoch() {
    let mut table = owned();
    table.set_status("t", TaskStatus::Paused);
    assert!(matches!(
        table.commit_tick(&commit(1, 1, 1), &Rules::FENCED),
        CommandResponse::Rejected(_)
    ));
    assert!(matches!(
        table.commit_tick(&commit(2, 1, 1), &Rules::FENCED),
        CommandResponse::Rejected(Rejection::NotRunning { .. })
    ));
    table.set_status("t", TaskStatus::Running);
    assert_eq!(
        table.commit_tick(&commit(3, 1, 1), &Rules::FENCED),
        CommandResponse::Done
    );
}

#[test]
fn an_assignment_with_a_stale_expected_epoch_changes_nothing() {
    let mut table = owned();
    let before = table.clone();
    let stale = [Assignment {
        task: "t".into(),
        owner: Some(3),
        expected_epoch: 0,
    }];
    assert_eq!(table.assign(&stale), CommandResponse::Count(0));
    assert_eq!(table, before);
}

#[test]
fn history_keeps_the_last_ticks_only() {
    let mut table = owned();
    for tick in 1..=(HISTORY_LEN as u64 + 10) {
        table.commit_tick(&commit(1, tick, 1), &Rules::FENCED);
    }
    let history = &table["t"].history;
    assert_eq!(history.len(), HISTORY_LEN);
    assert_eq!(history.front().unwrap().tick, 11);
}

#[test]
fn marking_failed_needs_the_current_epoch_and_raises_it() {
    let mut table = owned();
    assert!(matches!(
        table.mark_failed("t", 0, "x", 1),
        CommandResponse::Rejected(_)
    ));
    assert_eq!(
        table.mark_failed("t", 1, "trapped 6 times in 60 s", 1),
        CommandResponse::Done
    );
    let task = &table["t"];
    assert_eq!(
        task.status,
        TaskStatus::Failed {
            reason: "trapped 6 times in 60 s".into()
        }
    );
    assert_eq!(task.epoch, 2);
}

#[test]
fn names_are_unique_and_removal_needs_a_task() {
    let mut table = TaskTable::default();
    assert_eq!(table.add(spec("a")), CommandResponse::Done);
    assert!(matches!(
        table.add(spec("a")),
        CommandResponse::Rejected(Rejection::TaskExists { .. })
    ));
    assert_eq!(table.remove("a"), CommandResponse::Done);
    assert!(matches!(table.remove("a"), CommandResponse::Rejected(_)));
}

fn hand_off_to(node: NodeId, expected_epoch: u64) -> Vec<Assignment> {
    vec![Assignment {
        task: "t".into(),
        owner: Some(node),
        expected_epoch,
    }]
}

#[test]
fn a_hand_off_lets_the_tick_in_flight_commit_and_then_moves_the_task() {
    let mut table = owned();
    assert_eq!(table.hand_off(&hand_off_to(2, 1)), CommandResponse::Count(1));
    assert_eq!((table["t"].owner, table["t"].epoch), (Some(1), 1));
    assert_eq!(
        table.commit_tick(&commit(1, 1, 1), &Rules::FENCED),
        CommandResponse::Done
    );
    let task = &table["t"];
    assert_eq!(
        (task.owner, task.epoch, task.tick, task.handoff_to),
        (Some(2), 2, 1, None)
    );
    assert!(matches!(
        table.commit_tick(&commit(1, 2, 1), &Rules::FENCED),
        CommandResponse::Rejected(_)
    ));
    assert_eq!(
        table.commit_tick(&commit(2, 2, 2), &Rules::FENCED),
        CommandResponse::Done
    );
}

#[test]
fn an_idle_owner_releases_a_task_being_handed_off() {
    let mut table = owned();
    assert!(matches!(
        table.yield_task("t", 1, 1),
        CommandResponse::Rejected(Rejection::NotHandedOff { .. })
    ));
    table.hand_off(&hand_off_to(3, 1));
    let before = table.clone();
    assert!(
        matches!(table.yield_task("t", 1, 2), CommandResponse::Rejected(_)),
        "only the owner releases"
    );
    assert!(
        matches!(table.yield_task("t", 0, 1), CommandResponse::Rejected(_)),
        "at its epoch"
    );
    assert_eq!(table, before);
    assert_eq!(table.yield_task("t", 1, 1), CommandResponse::Done);
    assert_eq!((table["t"].owner, table["t"].epoch), (Some(3), 2));
}

#[test]
fn a_stale_hand_off_changes_nothing_and_reassignment_cancels_one() {
    let mut table = owned();
    let before = table.clone();
    assert_eq!(table.hand_off(&hand_off_to(2, 0)), CommandResponse::Count(0));
    assert_eq!(
        table.hand_off(&hand_off_to(1, 1)),
        CommandResponse::Count(0),
        "to its owner"
    );
    assert_eq!(table, before);
    table.hand_off(&hand_off_to(2, 1));
    table.assign(&hand_off_to(3, 1));
    let task = &table["t"];
    assert_eq!((task.owner, task.epoch, task.handoff_to), (Some(3), 2, None));
}

#[test]
fn a_hand_off_of_an_unowned_task_assigns_it_at_once() {
    let mut table = TaskTable::default();
    table.add(spec("t"));
    assert_eq!(table.hand_off(&hand_off_to(2, 0)), CommandResponse::Count(1));
    assert_eq!((table["t"].owner, table["t"].epoch), (Some(2), 1));
}

#[test]
fn running_tasks_long_past_their_next_tick_are_overdue_the_latest_first() {
    let mut table = owned();
    table.commit_tick(&commit(1, 1, 1), &Rules::FENCED); // next due at 1,000
    for name in ["u", "never", "paused"] {
        table.add(spec(name));
    }
    let tick = |name: &str, next_due_ms| TickCommit {
        task: name.into(),
        next_due_ms,
        ..commit(1, 1, 1)
    };
    for name in ["u", "paused"] {
        table.assign(&[Assignment {
            task: name.into(),
            owner: Some(1),
            expected_epoch: 0,
        }]);
        table.commit_tick(&tick(name, 500), &Rules::FENCED);
    }
    table.set_status("paused", TaskStatus::Paused);

    assert_eq!(table.overdue(5_400, 5_000), vec![], "within the grace");
    let late = table.overdue(9_000, 5_000);
    let names: Vec<(&str, u64)> = late.iter().map(|o| (o.task.as_str(), o.late_ms)).collect();
    // Not the paused task, nor the one that has not ticked yet.
    assert_eq!(names, vec![("u", 8_500), ("t", 8_000)]);
    assert_eq!(late[0].owner, Some(1));
}

/// Every kind of change, at random, on a few tasks and nodes: the index
/// kept as the table changes says what one built from scratch would, and
/// the change log names every task whose placement changed.
#[test]
fn the_index_follows_every_change() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::state::task_changes::Since;
    use crate::state::task_index::Placement;

    let mut rng = StdRng::seed_from_u64(15);
    let mut table = TaskTable::default();
    let names = ["a", "b", "c", "d", "e"];
    for step in 0..5_000 {
        let name = names[rng.random_range(0..names.len())];
        let node = rng.random_range(1..4);
        let epoch = table.get(name).map_or(0, |t| t.epoch);
        let before: Vec<Option<Placement>> = names.iter().map(|n| table.get(n).map(Placement::of)).collect();
        let cursor = table.index().changes().cursor();
        let assignment = vec![Assignment {
            task: name.into(),
            owner: Some(node),
            expected_epoch: epoch,
        }];
        match rng.random_range(0..10) {
            0 => drop(table.add(spec(name))),
            1 => drop(table.remove(name)),
            2 => drop(table.set_status(
                name,
                [TaskStatus::Running, TaskStatus::Paused][rng.random_range(0..2)].clone(),
            )),
            3 => drop(table.assign(&assignment)),
            4 => drop(table.hand_off(&assignment)),
            5 => drop(table.yield_task(name, epoch, node)),
            6 => drop(table.mark_failed(name, epoch, "x", rng.random_range(0..3))),
            7 => table.restart_failed_on("counter", rng.random_range(0..3)),
            8 => {
                let from = [None, Some(1), Some(2), Some(3)][rng.random_range(0..4)];
                let to: Vec<NodeId> = (1..4).filter(|_| rng.random_bool(0.6)).collect();
                drop(table.reassign_all(from, &to));
            }
            _ => {
                let tick = table.get(name).map_or(0, |t| t.tick) + 1;
                let commit = TickCommit {
                    task: name.into(),
                    version: rng.random_range(1..3),
                    ..commit(epoch, tick, node)
                };
                drop(table.commit_tick(&commit, &Rules::FENCED));
            }
        }
        assert!(table.index().agrees_with(table.values()), "step {step}");
        let Since::Changed(noted) = table.index().changes().since(cursor) else {
            panic!("the log keeps every change");
        };
        for (n, before) in names.iter().zip(before) {
            let moved = match (before, table.get(n).map(Placement::of)) {
                (Some(before), Some(after)) => before.moved(&after),
                (None, None) => false,
                _ => true,
            };
            assert_eq!(noted.contains(n), moved, "step {step}, task {n}");
        }
    }
}

#[test]
fn reassign_all_moves_every_running_task_of_a_node_to_the_least_loaded_and_fences_the_old_owner() {
    let mut table = TaskTable::default();
    for (name, owner) in [("a", 9), ("b", 9), ("c", 9), ("d", 1), ("p", 9), ("h", 9)] {
        table.add(spec(name));
        table.assign(&[Assignment {
            task: name.into(),
            owner: Some(owner),
            expected_epoch: 0,
        }]);
    }
    table.set_status("p", TaskStatus::Paused);
    table.hand_off(&[Assignment {
        task: "h".into(),
        owner: Some(1),
        expected_epoch: 1,
    }]);
    // Node 9 is in `to` too, and listed twice: it never takes its own.
    assert_eq!(table.reassign_all(Some(9), &[2, 1, 9, 2]), CommandResponse::Count(4));
    let placed: Vec<(&str, Option<NodeId>, u64, Option<NodeId>)> = table
        .values()
        .map(|t| (t.spec.name.as_str(), t.owner, t.epoch, t.handoff_to))
        .collect();
    // Node 1 already ran `d`: node 2 takes `a`, then they alternate from
    // node 1 (ties to the lower id); the paused task stays, a hand-off is
    // cancelled.
    assert_eq!(
        placed,
        vec![
            ("a", Some(2), 2, None),
            ("b", Some(1), 2, None),
            ("c", Some(2), 2, None),
            ("d", Some(1), 1, None),
            ("h", Some(1), 2, None),
            ("p", Some(9), 2, None),
        ]
    );
    // The old owner's tick is refused now.
    let stale = TickCommit {
        task: "a".into(),
        ..commit(1, 1, 9)
    };
    assert!(matches!(
        table.commit_tick(&stale, &Rules::FENCED),
        CommandResponse::Rejected(_)
    ));
    assert!(table.index().agrees_with(table.values()));
    // Again (a new leader's retry): nothing left to move.
    assert_eq!(table.reassign_all(Some(9), &[1, 2]), CommandResponse::Count(0));
    // Nowhere to go: nothing moves.
    table.add(spec("new"));
    assert_eq!(table.reassign_all(None, &[]), CommandResponse::Count(0));
    assert_eq!(table.reassign_all(None, &[3]), CommandResponse::Count(1));
    assert_eq!(table["new"].owner, Some(3));
}

/// A reassignment of very many tasks does not copy each name into the
/// change log: its readers look at every task once.
#[test]
fn a_large_reassignment_has_the_change_log_readers_look_at_every_task() {
    use crate::state::task_changes::Since;

    let mut table = TaskTable::default();
    for i in 0..5_000 {
        table.add(spec(&format!("t{i:05}")));
    }
    let cursor = table.index().changes().cursor();
    assert_eq!(table.reassign_all(None, &[1, 2]), CommandResponse::Count(5_000));
    assert_eq!(table.index().changes().since(cursor), Since::Everything);
    assert!(table.index().agrees_with(table.values()));
    assert_eq!(table.index().running_on(Some(1)).count(), 2_500);
    // A small one still names each task it moved.
    let cursor = table.index().changes().cursor();
    table.add(spec("late"));
    let after_add = table.index().changes().cursor();
    assert_eq!(table.reassign_all(None, &[2]), CommandResponse::Count(1));
    assert_eq!(table.index().changes().since(after_add), Since::Changed(vec!["late"]));
    assert_eq!(
        table.index().changes().since(cursor),
        Since::Changed(vec!["late", "late"])
    );
    assert_eq!(table["late"].owner, Some(2));
}

/// How long applying one `reassign_all` of 100,000 tasks takes, and how
/// large its entry is: `cargo test --release -p baton-node --lib
/// reassign_all_of_100k -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: run it in release"]
fn reassign_all_of_100k_tasks() {
    let n = 100_000;
    // Two tables built alike (a clone would share the records, and the
    // first to change them would pay for copies).
    let build = || {
        let mut table = TaskTable::default();
        for i in 0..n {
            table.add(spec(&format!("count-{i:06}")));
        }
        table.reassign_all(None, &[9]);
        table
    };
    let (mut table, mut one_each) = (build(), build());
    use crate::codec::command::encode_command;
    use crate::state::command::Command;
    let command = Command::ReassignAll {
        from: Some(9),
        to: vec![1, 2, 3],
    };
    let started = std::time::Instant::now();
    let response = table.reassign_all(Some(9), &[1, 2, 3]);
    let took = started.elapsed();
    assert_eq!(response, CommandResponse::Count(n));
    println!(
        "reassign_all of {n} tasks: applied in {took:?}; the entry is {} bytes",
        encode_command(&command).len()
    );
    // Below cluster version 5: one assignment per task.
    let assignments: Vec<Assignment> = table
        .values()
        .map(|t| Assignment {
            task: t.spec.name.clone(),
            owner: t.owner,
            expected_epoch: 1,
        })
        .collect();
    let started = std::time::Instant::now();
    let response = one_each.assign(&assignments);
    let took = started.elapsed();
    assert_eq!(response, CommandResponse::Count(n));
    println!(
        "assign_owners of {n} tasks: applied in {took:?}; the entry is {} bytes",
        encode_command(&Command::AssignOwners(assignments)).len()
    );
}

#[test]
fn a_tick_asked_for_now_stands_until_a_tick_commits_and_only_for_a_running_task() {
    let mut table = owned();
    let changes = table.index().changes().cursor();
    assert_eq!(table.run_now("t", 5_000), CommandResponse::Done);
    assert_eq!(table["t"].run_requested_ms, Some(5_000));
    // Its owner's runner hears of it.
    assert!(matches!(
        table.index().changes().since(changes),
        crate::state::task_changes::Since::Changed(names) if names.contains(&"t")
    ));
    // Asked twice before the tick: one request, from the first time.
    assert_eq!(table.run_now("t", 6_000), CommandResponse::Done);
    assert_eq!(table["t"].run_requested_ms, Some(5_000));
    assert_eq!(
        table.commit_tick(&commit(1, 1, 1), &Rules::FENCED),
        CommandResponse::Done
    );
    assert_eq!(table["t"].run_requested_ms, None);
    // A pause ends a request; a paused or unknown task takes none.
    assert_eq!(table.run_now("t", 7_000), CommandResponse::Done);
    table.set_status("t", TaskStatus::Paused);
    assert_eq!(table["t"].run_requested_ms, None);
    assert!(matches!(
        table.run_now("t", 8_000),
        CommandResponse::Rejected(Rejection::NotRunning { .. })
    ));
    assert!(matches!(
        table.run_now("nope", 8_000),
        CommandResponse::Rejected(Rejection::NoSuchTask { .. })
    ));
    // Marked failed, a task drops its request; a revert does not bring it
    // back.
    table.set_status("t", TaskStatus::Running);
    assert_eq!(table.run_now("t", 9_000), CommandResponse::Done);
    let epoch = table["t"].epoch;
    assert_eq!(table.mark_failed("t", epoch, "trapped", 1), CommandResponse::Done);
    assert_eq!(table["t"].run_requested_ms, None);
}

#[test]
fn secrets_are_set_added_and_removed_in_place_in_name_order_at_the_same_epoch() {
    let sealed = |name: &str, byte: u8| SealedSecret {
        name: name.into(),
        key_id: "00".repeat(8),
        nonce: vec![byte; 12],
        sealed: vec![byte; 20],
    };
    let mut table = owned();
    let mut with = spec("s");
    with.secrets = vec![sealed("B", 1), sealed("D", 1)];
    table.add(with);
    let epoch = table["s"].epoch;
    let changed = table.set_secrets("s", &[sealed("D", 2), sealed("A", 2)], &["B".to_string()]);
    assert_eq!(changed, CommandResponse::Count(3));
    let names: Vec<&str> = table["s"].spec.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["A", "D"]);
    assert_eq!(table["s"].spec.secrets[1].nonce, vec![2; 12], "D has its new value");
    assert_eq!(table["s"].epoch, epoch);
    assert!(matches!(
        table.set_secrets("gone", &[sealed("A", 3)], &[]),
        CommandResponse::Rejected(Rejection::NoSuchTask { .. })
    ));
    // Past the limit (two calls that raced): nothing changes.
    let many: Vec<SealedSecret> = (0..crate::state::secrets::MAX_SECRETS)
        .map(|i| sealed(&format!("S{i:02}"), 4))
        .collect();
    assert_eq!(table.set_secrets("s", &many, &[]), CommandResponse::Count(0));
    assert_eq!(table["s"].spec.secrets.len(), 2);
    // A secret to remove that is gone already is passed over.
    assert_eq!(
        table.set_secrets("s", &[], &["B".to_string()]),
        CommandResponse::Count(0)
    );
}
