use super::*;
use crate::state::cluster::Rules;
use crate::state::tasks::{Assignment, TaskSpec, TaskStatus, TickCommit};

fn module(version: u32, hash: &str, migrates: bool, down_to: &[u32]) -> ModuleVersion {
    ModuleVersion {
        name: "counter".into(),
        version,
        hash: hash.into(),
        size: 1,
        migrates,
        down_to: down_to.to_vec(),
        deployed_at_ms: 0,
        signer: String::new(),
        signature: String::new(),
    }
}

fn settings() -> RolloutSettings {
    RolloutSettings::default()
}

/// Counter version 1 current, task `t` owned by node 1 with one tick
/// committed by version 1.
fn cluster() -> ClusterState {
    let mut s = ClusterState::default();
    s.record_release(&module(1, "aa", false, &[]), &settings(), 0);
    s.tasks.add(TaskSpec::counter_every_second("t"));
    s.tasks.assign(&[Assignment {
        task: "t".into(),
        owner: Some(1),
        expected_epoch: 0,
    }]);
    commit(&mut s, 1, 1);
    s
}

fn commit(s: &mut ClusterState, tick: u64, version: u32) {
    let epoch = s.tasks["t"].epoch;
    let response = s.tasks.commit_tick(
        &TickCommit {
            task: "t".into(),
            epoch,
            tick,
            node: 1,
            state: vec![1],
            next_due_ms: 0,
            committed_at_ms: 0,
            version,
        },
        &Rules::FENCED,
    );
    assert_eq!(response, CommandResponse::Done);
}

#[test]
fn a_first_version_is_current_and_a_second_starts_a_rollout() {
    let mut s = cluster();
    assert_eq!(s.modules["counter"].version, 1);
    assert!(s.rollouts.is_empty());
    let response = s.record_release(&module(2, "bb", true, &[1]), &settings(), 5);
    assert!(matches!(response, CommandResponse::Module(m) if m.version == 2));
    assert_eq!(
        s.modules["counter"].version, 1,
        "the current version stays until the rollout is done"
    );
    let rollout = &s.rollouts["counter"];
    assert_eq!(
        (rollout.from, rollout.release.version, &rollout.state),
        (1, 2, &RolloutState::Running)
    );
    assert_eq!(s.releases["counter"].len(), 2);
}

#[test]
fn the_current_bytes_again_change_nothing_and_a_live_rollout_blocks_another() {
    let mut s = cluster();
    let before = s.clone();
    assert!(matches!(
        s.record_release(&module(2, "aa", false, &[]), &settings(), 5),
        CommandResponse::Module(m) if m.version == 1
    ));
    assert_eq!(s, before);
    s.record_release(&module(2, "bb", false, &[]), &settings(), 5);
    let before = s.clone();
    let response = s.record_release(&module(3, "cc", false, &[]), &settings(), 6);
    assert!(
        matches!(&response, CommandResponse::Rejected(Rejection::RolloutUnderWay { module, .. }) if module == "counter"),
        "{response:?}"
    );
    assert_eq!(s, before);
}

#[test]
fn a_release_must_be_the_next_version() {
    let mut s = cluster();
    let before = s.clone();
    let response = s.record_release(&module(5, "bb", false, &[]), &settings(), 5);
    assert!(
        matches!(&response, CommandResponse::Rejected(Rejection::VersionRaced { .. })),
        "{response:?}"
    );
    assert_eq!(s, before);
}

#[test]
fn switched_nodes_run_the_new_version_and_done_makes_it_current() {
    let mut s = cluster();
    s.record_release(&module(2, "bb", true, &[1]), &settings(), 5);
    assert_eq!(s.rollout_step("counter", 2, &[1], 10), CommandResponse::Done);
    assert_eq!(s.version_for("counter", 1).unwrap().version, 2);
    assert_eq!(s.version_for("counter", 2).unwrap().version, 1);
    assert!(matches!(
        s.rollout_step("counter", 3, &[2], 10),
        CommandResponse::Rejected(_)
    ));
    assert_eq!(s.rollout_finish("counter", 2, &Finish::Done, 20), CommandResponse::Done);
    assert_eq!(s.modules["counter"].version, 2);
    assert_eq!(s.version_for("counter", 2).unwrap().version, 2);
    assert_eq!(s.releases["counter"][1].outcome, ReleaseOutcome::RolledOut);
    assert_eq!(s.rollouts["counter"].finished_at_ms, Some(20));
}

#[test]
fn a_revert_puts_every_node_back_and_resumes_tasks_the_new_version_failed() {
    let mut s = cluster();
    s.record_release(&module(2, "bb", false, &[]), &settings(), 5);
    s.rollout_step("counter", 2, &[1], 10);
    let epoch = s.tasks["t"].epoch;
    s.tasks.mark_failed("t", epoch, "trapped", 2);
    let reason = Finish::Revert { reason: "gate".into() };
    assert_eq!(s.rollout_finish("counter", 2, &reason, 20), CommandResponse::Done);
    assert_eq!(s.version_for("counter", 1).unwrap().version, 1);
    assert_eq!(s.modules["counter"].version, 1);
    let task = &s.tasks["t"];
    assert_eq!((&task.status, task.epoch), (&TaskStatus::Running, epoch + 2));
    assert!(matches!(&s.releases["counter"][1].outcome, ReleaseOutcome::Reverted { reason } if reason == "gate"));
    // Over: a new release may start.
    assert!(matches!(
        s.record_release(&module(3, "cc", false, &[]), &settings(), 30),
        CommandResponse::Module(_)
    ));
}

#[test]
fn a_revert_without_the_down_migration_is_refused_and_a_failed_gate_halts() {
    let mut s = cluster();
    // Version 2 changes the state format and cannot go back to 1.
    s.record_release(&module(2, "bb", true, &[]), &settings(), 5);
    s.rollout_step("counter", 2, &[1], 10);
    // Nothing written by version 2 yet: going back is safe.
    let mut early = s.clone();
    assert_eq!(
        early.rollout_finish("counter", 2, &Finish::Abort, 15),
        CommandResponse::Done
    );
    commit(&mut s, 2, 2);
    let before = s.clone();
    let response = s.rollout_finish("counter", 2, &Finish::Abort, 20);
    assert!(
        matches!(&response, CommandResponse::Rejected(r @ Rejection::CannotAbort { why, .. }) if why.contains("no down-migration to version 1") && r.to_string().starts_with("cannot abort")),
        "{response:?}"
    );
    assert_eq!(s, before);
    let revert = Finish::Revert {
        reason: "gate failed".into(),
    };
    assert_eq!(s.rollout_finish("counter", 2, &revert, 20), CommandResponse::Done);
    let rollout = &s.rollouts["counter"];
    assert!(
        matches!(&rollout.state, RolloutState::Halted { reason } if reason.starts_with("gate failed; cannot revert"))
    );
    assert_eq!(
        s.version_for("counter", 1).unwrap().version,
        2,
        "tasks stay on the version that reads them"
    );
    // With the down-migration, the same revert goes through.
    let mut s = cluster();
    s.record_release(&module(2, "bb", true, &[1]), &settings(), 5);
    s.rollout_step("counter", 2, &[1], 10);
    commit(&mut s, 2, 2);
    assert_eq!(s.rollout_finish("counter", 2, &revert, 20), CommandResponse::Done);
    assert!(matches!(s.rollouts["counter"].state, RolloutState::Reverted { .. }));
}

#[test]
fn pause_resume_and_halt_follow_the_rollouts_state() {
    let mut s = cluster();
    s.record_release(&module(2, "bb", false, &[]), &settings(), 5);
    assert_eq!(
        s.rollout_control("counter", &RolloutAction::Pause, 6),
        CommandResponse::Done
    );
    assert!(matches!(
        s.rollout_control("counter", &RolloutAction::Pause, 6),
        CommandResponse::Rejected(_)
    ));
    assert!(matches!(
        s.rollout_step("counter", 2, &[1], 7),
        CommandResponse::Rejected(_)
    ));
    assert_eq!(
        s.rollout_control("counter", &RolloutAction::Resume, 8),
        CommandResponse::Done
    );
    assert_eq!(s.rollouts["counter"].step_started_ms, 8, "the step is gated anew");
    let halt = RolloutAction::Halt { reason: "gate".into() };
    assert_eq!(s.rollout_control("counter", &halt, 9), CommandResponse::Done);
    assert_eq!(
        s.rollout_control("counter", &RolloutAction::Resume, 10),
        CommandResponse::Done
    );
    s.rollout_finish("counter", 2, &Finish::Abort, 11);
    assert!(matches!(
        s.rollout_control("counter", &RolloutAction::Resume, 12),
        CommandResponse::Rejected(Rejection::NoRollout { .. })
    ));
    assert_eq!(s.releases["counter"][1].outcome, ReleaseOutcome::Aborted);
}

#[test]
fn a_module_deployed_before_releases_were_recorded_gets_the_next_version() {
    let mut s = ClusterState::default();
    s.apply(
        &crate::types::Command::DeployModule(module(0, "aa", false, &[])),
        &Rules::FENCED,
    );
    assert_eq!((s.modules["counter"].version, s.next_version("counter")), (1, 2));
    assert_eq!(s.releases_of("counter").len(), 1);
    let before = s.clone();
    assert!(matches!(
        s.record_release(&module(1, "bb", false, &[]), &settings(), 5),
        CommandResponse::Rejected(Rejection::VersionRaced {
            next: 2,
            prepared: 1,
            ..
        })
    ));
    assert_eq!(s, before);
    assert!(matches!(
        s.record_release(&module(2, "bb", false, &[]), &settings(), 5),
        CommandResponse::Module(m) if m.version == 2
    ));
    assert_eq!(s.rollouts["counter"].from, 1);
    let versions: Vec<u32> = s.releases_of("counter").iter().map(|r| r.module.version).collect();
    assert_eq!(versions, vec![1, 2]);
}
