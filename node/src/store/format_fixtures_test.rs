//! Today's formats, pinned: every command, response, log entry kind,
//! snapshot and Raft record as this code writes it (JSON), compared with
//! the files in `node/tests/fixtures/v1-json/` (pretty-printed there; the
//! store and the wire carry the same JSON compactly).
//!
//! A change that alters how any of them is written fails here. Nodes
//! upgraded in place must still read their old logs and snapshots, so when
//! the formats change (issue 14) these files stay, and must still decode.
//! `BATON_BLESS=1 cargo test -p baton-node format_fixtures` writes them
//! anew: only for a new command kind (a new file) or a deliberate change
//! that older readers accept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use openraft::entry::RaftEntry;
use openraft::vote::RaftLeaderIdExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::rollout::{Finish, RolloutAction, RolloutSettings};
use crate::state::cluster::{ClusterState, Rules};
use crate::state::secrets::{Resealed, SealedSecret};
use crate::state::tasks::{Assignment, TaskSpec, TaskStatus, TickCommit};
use crate::state::upgrades::{NodeBinary, Phase, UpgradeAction, UpgradeSettings};
use crate::types::typ::{Entry, LogId, SnapshotMeta, StoredMembership, Vote};
use crate::types::{Command, CommandResponse, Member, ModuleVersion, Rejection, TypeConfig};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-json")
}

/// Compares `value`'s JSON with the fixture `name`, and checks that the
/// fixture decodes to `value` again.
fn pinned<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: &T) -> Option<String> {
    let path = fixtures().join(format!("{name}.json"));
    let written = serde_json::to_string_pretty(value).expect("encode") + "\n";
    if std::env::var_os("BATON_BLESS").is_some() {
        std::fs::create_dir_all(fixtures()).expect("fixture directory");
        std::fs::write(&path, &written).expect("write fixture");
        return None;
    }
    let Ok(stored) = std::fs::read_to_string(&path) else {
        return Some(format!(
            "{name}: no fixture at {} (BATON_BLESS=1 writes it)",
            path.display()
        ));
    };
    if stored != written {
        return Some(format!(
            "{name}: written differently than {}:\n{written}",
            path.display()
        ));
    }
    match serde_json::from_str::<T>(&stored) {
        Ok(decoded) if &decoded == value => None,
        Ok(decoded) => Some(format!("{name}: decodes to {decoded:?}")),
        Err(e) => Some(format!("{name}: does not decode: {e}")),
    }
}

/// The fixture name of each command kind. No `_` arm: a new kind does not
/// compile until it has a name and a sample below.
pub(crate) fn kind(command: &Command) -> &'static str {
    match command {
        Command::Put { .. } => "put",
        Command::Delete { .. } => "delete",
        Command::Batch(_) => "batch",
        Command::AddTask(_) => "add-task",
        Command::RemoveTask { .. } => "remove-task",
        Command::SetTaskStatus { .. } => "set-task-status",
        Command::AssignOwners(_) => "assign-owners",
        Command::HandOff(_) => "hand-off",
        Command::YieldTask { .. } => "release-task",
        Command::SetDrained { .. } => "set-drained",
        Command::CommitTick(_) => "commit-tick",
        Command::MarkTaskFailed { .. } => "mark-task-failed",
        Command::DeployModule(_) => "deploy-module",
        Command::AddRelease { .. } => "release",
        Command::RolloutStep { .. } => "rollout-step",
        Command::RolloutControl { .. } => "rollout-control",
        Command::RolloutFinish { .. } => "rollout-finish",
        Command::SetClusterVersion { .. } => "set-cluster-version",
        Command::ReassignAll { .. } => "reassign-all",
        Command::StartUpgrade { .. } => "start-upgrade",
        Command::UpgradePhase { .. } => "upgrade-phase",
        Command::UpgradeControl { .. } => "upgrade-control",
        Command::RunNow { .. } => "run-now",
        Command::ResealSecrets(_) => "reseal-secrets",
        Command::SetSecrets { .. } => "set-secrets",
    }
}

pub(crate) fn module(version: u32) -> ModuleVersion {
    ModuleVersion {
        name: "counter".into(),
        version,
        hash: "ab".repeat(32),
        size: 4096,
        migrates: version > 1,
        down_to: vec![1],
        deployed_at_ms: 1_790_000_000_000,
        signer: "cd".repeat(32),
        signature: "ef".repeat(64),
    }
}

pub(crate) fn node_binary() -> NodeBinary {
    NodeBinary {
        hash: "12".repeat(32),
        version: "0.5.0".into(),
        size: 60_000_000,
        signer: "cd".repeat(32),
        signature: "ef".repeat(64),
        min_cluster_version: 1,
        max_cluster_version: 6,
    }
}

pub(crate) fn assignment() -> Assignment {
    Assignment {
        task: "count-1".into(),
        owner: Some(2),
        expected_epoch: 3,
    }
}

pub(crate) fn tick() -> TickCommit {
    TickCommit {
        task: "count-1".into(),
        epoch: 4,
        tick: 9,
        node: 2,
        state: vec![9, 0, 0, 0, 0, 0, 0, 0, 255],
        next_due_ms: 1_790_000_001_000,
        committed_at_ms: 1_790_000_000_990,
        version: 1,
    }
}

/// A task that may call two HTTP servers, one through its own CA (cluster
/// version 9).
pub(crate) fn http_spec() -> TaskSpec {
    let mut spec = TaskSpec::counter_every_second("watch-1");
    spec.allow_http = vec!["https://api.example.com:443".into(), "http://10.0.0.5:8080".into()];
    spec.http_ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec();
    spec
}

/// A secret as sealed, its bytes made up (fixtures are written the same
/// on every run; a real sealing draws a fresh nonce).
pub(crate) fn sealed_secret(name: &str, key_byte: u8) -> SealedSecret {
    SealedSecret {
        name: name.into(),
        key_id: format!("{key_byte:02x}").repeat(8),
        nonce: vec![key_byte; 12],
        sealed: vec![
            0xa5, 0x5a, 0x00, 0xff, key_byte, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ],
    }
}

/// A task with two sealed secrets (cluster version 11).
pub(crate) fn secrets_spec() -> TaskSpec {
    let mut spec = TaskSpec::counter_every_second("sync-1");
    spec.secrets = vec![sealed_secret("API_TOKEN", 0x11), sealed_secret("DB_PASSWORD", 0x11)];
    spec
}

/// One command of every kind.
pub(crate) fn commands() -> Vec<Command> {
    let mut spec = TaskSpec::counter_every_second("count-1");
    spec.config = b"{\"to\":\"x\"}".to_vec();
    spec.allow_net = vec!["127.0.0.1:9000".into()];
    vec![
        Command::Put {
            key: "k".into(),
            value: vec![0, 1, 255],
        },
        Command::Delete { key: "k".into() },
        Command::Batch(
            vec![
                Command::Put {
                    key: "a".into(),
                    value: b"1".to_vec(),
                },
                Command::CommitTick(tick()),
            ]
            .into(),
        ),
        Command::AddTask(spec),
        Command::RemoveTask { name: "count-1".into() },
        Command::SetTaskStatus {
            name: "count-1".into(),
            status: TaskStatus::Failed {
                reason: "trapped".into(),
            },
        },
        Command::AssignOwners(vec![assignment()]),
        Command::HandOff(vec![assignment()]),
        Command::YieldTask {
            name: "count-1".into(),
            epoch: 4,
            node: 2,
        },
        Command::SetDrained { node: 3, drained: true },
        Command::CommitTick(tick()),
        Command::MarkTaskFailed {
            name: "count-1".into(),
            epoch: 4,
            reason: "trapped 6 times in 60 s".into(),
            version: 2,
        },
        Command::DeployModule(module(1)),
        Command::AddRelease {
            module: module(2),
            settings: RolloutSettings::default(),
            now_ms: 1_790_000_000_500,
        },
        Command::RolloutStep {
            module: "counter".into(),
            version: 2,
            switch: vec![1, 3],
            now_ms: 1_790_000_000_600,
        },
        Command::RolloutControl {
            module: "counter".into(),
            action: RolloutAction::Halt {
                reason: "gate failed".into(),
            },
            now_ms: 1_790_000_000_700,
        },
        Command::RolloutFinish {
            module: "counter".into(),
            version: 2,
            finish: Finish::Revert {
                reason: "gate failed".into(),
            },
            now_ms: 1_790_000_000_800,
        },
        Command::SetClusterVersion { version: 2 },
        Command::ReassignAll {
            from: Some(3),
            to: vec![1, 2, 4],
        },
        Command::StartUpgrade {
            binary: node_binary(),
            settings: UpgradeSettings {
                min_healthy_ms: 10_000,
                healthy_deadline_ms: 120_000,
                auto_revert: true,
                hold_version: false,
            },
            nodes: vec![1, 2, 3],
            now_ms: 1_790_000_000_900,
        },
        Command::UpgradePhase {
            hash: "12".repeat(32),
            node: 2,
            phase: Phase::Swapping { gate_index: 4_000 },
            now_ms: 1_790_000_001_000,
        },
        Command::UpgradeControl {
            hash: "12".repeat(32),
            action: UpgradeAction::Halt {
                reason: "node 2: exit status 1".into(),
            },
            now_ms: 1_790_000_001_100,
        },
        Command::RunNow {
            name: "count-1".into(),
            now_ms: 1_790_000_001_200,
        },
        Command::ResealSecrets(vec![Resealed {
            task: "sync-1".into(),
            was_nonce: vec![0x11; 12],
            secret: sealed_secret("API_TOKEN", 0x22),
        }]),
        Command::SetSecrets {
            task: "sync-1".into(),
            set: vec![sealed_secret("WEBHOOK_KEY", 0x22)],
            remove: vec!["DB_PASSWORD".into()],
        },
    ]
}

pub(crate) fn log_id(term: u64, index: u64) -> LogId {
    let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(term, 1);
    LogId::new(leader, index)
}

pub(crate) fn membership() -> openraft::Membership<u64, Member> {
    let nodes: BTreeMap<u64, Member> = (1..=3)
        .map(|id| (id, Member::new(format!("10.0.0.{id}:7000"), "")))
        .collect();
    openraft::Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).expect("a valid membership")
}

/// A state with something in every part: what a snapshot holds.
pub(crate) fn cluster_state() -> ClusterState {
    let mut state = ClusterState::default();
    for command in [
        Command::Put {
            key: "k".into(),
            value: vec![7; 3],
        },
        Command::DeployModule(module(1)),
        Command::AddTask(TaskSpec::counter_every_second("count-1")),
        Command::AssignOwners(vec![Assignment {
            task: "count-1".into(),
            owner: Some(2),
            expected_epoch: 0,
        }]),
        Command::CommitTick(TickCommit {
            epoch: 1,
            tick: 1,
            ..tick()
        }),
        Command::AddRelease {
            module: module(2),
            settings: RolloutSettings::default(),
            now_ms: 1_790_000_000_500,
        },
        Command::SetDrained { node: 3, drained: true },
    ] {
        let response = state.apply(&command, &Rules::FENCED);
        assert!(
            !matches!(response, CommandResponse::Rejected(_)),
            "{command}: {response:?}"
        );
    }
    state
}

#[test]
fn every_command_kind_is_written_as_pinned() {
    let problems: Vec<String> = commands()
        .iter()
        .filter_map(|c| pinned(&format!("command-{}", kind(c)), c))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One response of every kind, by name.
pub(crate) fn responses() -> Vec<(&'static str, CommandResponse)> {
    vec![
        ("done", CommandResponse::Done),
        ("previous", CommandResponse::Previous(Some(vec![1, 2]))),
        ("module", CommandResponse::Module(module(1))),
        ("count", CommandResponse::Count(3)),
        (
            // In JSON a rejection is its text; read back, its kind is not
            // known (it travels beside, typed: see `codec::propose`).
            "rejected",
            CommandResponse::Rejected(Rejection::Unrecognized {
                message: "no task named x".into(),
            }),
        ),
        (
            "batch",
            CommandResponse::Batch(vec![CommandResponse::Done, CommandResponse::Previous(None)]),
        ),
    ]
}

#[test]
fn every_response_kind_is_written_as_pinned() {
    let responses = responses();
    let problems: Vec<String> = responses
        .iter()
        .filter_map(|(name, r)| pinned(&format!("response-{name}"), r))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn log_entries_snapshots_and_raft_records_are_written_as_pinned() {
    let entries = [
        ("entry-blank", Entry::new_blank(log_id(2, 10))),
        (
            "entry-normal",
            Entry::new_normal(log_id(2, 11), Command::CommitTick(tick())),
        ),
        ("entry-membership", Entry::new_membership(log_id(2, 12), membership())),
    ];
    let mut problems: Vec<String> = entries.iter().filter_map(|(name, e)| pinned(name, e)).collect();
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(2, 12)),
        last_membership: StoredMembership::new(Some(log_id(2, 12)), membership()),
    };
    problems.extend(pinned("snapshot-meta", &meta));
    problems.extend(pinned("snapshot-data", &cluster_state()));
    let mut raised = cluster_state();
    raised.apply(&Command::SetClusterVersion { version: 2 }, &Rules::FENCED);
    problems.extend(pinned("snapshot-data-version-2", &raised));
    problems.extend(pinned("vote", &Vote::new_committed(2, 1)));
    problems.extend(pinned("log-id", &log_id(2, 12)));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
