//! The binary formats, pinned and checked:
//!
//! - golden files (`node/tests/fixtures/proto/*.hex`) hold the encoding of
//!   every kind of command, response, log entry and Raft record, and of a
//!   snapshot with something in every part. An encoding that changes fails
//!   here. `BATON_BLESS=1 cargo test -p baton-node golden` writes them anew:
//!   only for a new kind (a new file), never to paper over a change;
//! - seeded round trips: decode(encode(x)) == x for thousands of generated
//!   commands, responses, states, entries and records, with every kind of
//!   each drawn in turn;
//! - a command of a kind this release does not know is refused by its field
//!   number, alone and inside a batch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use openraft::vote::RaftLeaderIdExt;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::DecodeError;
use super::command::{decode_command, encode_command};
use super::raft::*;
use super::snapshot::{decode_state, encode_state};
use crate::state::cluster::ClusterState;
use crate::state::command::{Command, CommandResponse, ModuleVersion};
use crate::state::member::Member;
use crate::state::rejection::{OwnedWrite, Rejection};
use crate::state::rollouts::{Finish, Release, ReleaseOutcome, Rollout, RolloutAction, RolloutSettings, RolloutState};
use crate::state::secrets::{Resealed, SealedSecret};
use crate::state::tasks::{
    Assignment, CatchUp, History, RestartPolicy, Schedule, TaskRecord, TaskSpec, TaskStatus, TickCommit, TickRecord,
};
use crate::state::upgrades::{NodeBinary, Phase, Upgrade, UpgradeAction, UpgradeSettings, UpgradeState};
use crate::store::format_fixtures_test as samples;

/// How many kinds of command there are.
const COMMAND_KINDS: usize = super::json::COMMAND_KINDS.len();
use crate::types::TypeConfig;
use crate::types::typ::{
    AppendEntriesRequest, AppendEntriesResponse, Entry, LogId, SnapshotMeta, StoredMembership, TransferLeaderRequest,
    TransferLeaderResponse, Vote, VoteRequest, VoteResponse,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proto")
}

/// Hex, 32 bytes a line.
fn to_hex(bytes: &[u8]) -> String {
    let mut out: String = bytes.chunks(32).map(|line| hex::encode(line) + "\n").collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}

/// Compares `bytes` with the golden file `name`; a problem, if any.
fn pinned(name: &str, bytes: &[u8]) -> Option<String> {
    let path = fixtures().join(format!("{name}.hex"));
    let written = to_hex(bytes);
    if std::env::var_os("BATON_BLESS").is_some() {
        std::fs::create_dir_all(fixtures()).expect("fixture directory");
        std::fs::write(&path, &written).expect("write golden file");
        return None;
    }
    match std::fs::read_to_string(&path) {
        Err(_) => Some(format!(
            "{name}: no golden file at {} (BATON_BLESS=1 writes it)",
            path.display()
        )),
        Ok(stored) if stored != written => Some(format!(
            "{name}: encoded differently than {}:\n{written}",
            path.display()
        )),
        Ok(_) => None,
    }
}

fn check(problems: Vec<String>) {
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_command_kind_is_encoded_as_pinned_and_decodes_back() {
    let mut problems = Vec::new();
    for command in samples::commands() {
        let bytes = encode_command(&command);
        problems.extend(pinned(&format!("command-{}", samples::kind(&command)), &bytes));
        assert_eq!(decode_command(&bytes).unwrap(), command);
    }
    check(problems);
}

#[test]
fn every_response_kind_is_encoded_as_pinned_and_decodes_back() {
    let mut responses = samples::responses();
    responses.push((
        "rejected-typed",
        CommandResponse::Rejected(Rejection::StaleOwner {
            task: "t".into(),
            epoch: 4,
            owner: Some(2),
            from_node: 3,
            from_epoch: 3,
            write: OwnedWrite::Yield,
        }),
    ));
    let mut problems = Vec::new();
    for (name, response) in responses {
        let bytes = baton_proto::state::v1::CommandResponse::from(&response).encode_to_vec();
        problems.extend(pinned(&format!("response-{name}"), &bytes));
        let decoded = baton_proto::state::v1::CommandResponse::decode(&bytes[..]).unwrap();
        assert_eq!(CommandResponse::try_from(decoded).unwrap(), response);
    }
    check(problems);
}

#[test]
fn log_entries_snapshots_and_raft_records_are_encoded_as_pinned_and_decode_back() {
    let with_storage_ids = {
        let nodes: BTreeMap<u64, Member> = (1..=3)
            .map(|id| (id, Member::new(format!("10.0.0.{id}:7000"), format!("{id:032x}"))))
            .collect();
        openraft::Membership::new(vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 3])], nodes).unwrap()
    };
    let entries = [
        ("entry-blank", Entry::new_blank(samples::log_id(2, 10))),
        (
            "entry-normal",
            Entry::new_normal(samples::log_id(2, 11), Command::CommitTick(samples::tick())),
        ),
        (
            "entry-membership",
            Entry::new_membership(samples::log_id(2, 12), samples::membership()),
        ),
        (
            "entry-membership-joint-with-storage-ids",
            Entry::new_membership(samples::log_id(3, 13), with_storage_ids),
        ),
    ];
    let mut problems = Vec::new();
    for (name, entry) in entries {
        let bytes = encode_entry(&entry);
        problems.extend(pinned(name, &bytes));
        assert_eq!(decode_entry(&bytes).unwrap(), entry);
    }
    let meta = SnapshotMeta {
        last_log_id: Some(samples::log_id(2, 12)),
        last_membership: StoredMembership::new(Some(samples::log_id(2, 12)), samples::membership()),
    };
    let bytes = encode_snapshot_meta(&meta);
    problems.extend(pinned("snapshot-meta", &bytes));
    assert_eq!(decode_snapshot_meta(&bytes).unwrap(), meta);
    let empty = SnapshotMeta::default();
    assert_eq!(decode_snapshot_meta(&encode_snapshot_meta(&empty)).unwrap(), empty);

    let state = samples::cluster_state();
    let bytes = encode_state(&state);
    problems.extend(pinned("snapshot-data", &bytes));
    assert_eq!(decode_state(&bytes).unwrap(), state);
    // A tick asked for now is kept in the snapshot (cluster version 8).
    let mut asked = samples::cluster_state();
    asked.cluster_version = crate::state::cluster_version::RUN_NOW;
    let run_now = Command::RunNow {
        name: "count-1".into(),
        now_ms: 1_790_000_001_200,
    };
    assert_eq!(
        asked.apply(&run_now, &crate::state::cluster::Rules::FENCED),
        CommandResponse::Done
    );
    let bytes = encode_state(&asked);
    problems.extend(pinned("snapshot-data-run-requested", &bytes));
    assert_eq!(decode_state(&bytes).unwrap(), asked);
    // A task granted HTTP servers, and the command that adds it, keep the
    // grants and the CA (cluster version 9).
    let mut granted = samples::cluster_state();
    granted.cluster_version = crate::state::cluster_version::HTTP_GRANTS;
    let add = Command::AddTask(samples::http_spec());
    let bytes = encode_command(&add);
    problems.extend(pinned("command-add-task-http", &bytes));
    assert_eq!(decode_command(&bytes).unwrap(), add);
    assert_eq!(
        granted.apply(&add, &crate::state::cluster::Rules::FENCED),
        CommandResponse::Done
    );
    let bytes = encode_state(&granted);
    problems.extend(pinned("snapshot-data-http-grants", &bytes));
    assert_eq!(decode_state(&bytes).unwrap(), granted);
    // A task with secrets, and the command that adds it, keep them sealed
    // (cluster version 11); so does a snapshot after a rotation.
    let mut sealed = samples::cluster_state();
    sealed.cluster_version = crate::state::cluster_version::SECRETS;
    let add = Command::AddTask(samples::secrets_spec());
    let bytes = encode_command(&add);
    problems.extend(pinned("command-add-task-secrets", &bytes));
    assert_eq!(decode_command(&bytes).unwrap(), add);
    let rules = crate::state::cluster::Rules::FENCED;
    assert_eq!(sealed.apply(&add, &rules), CommandResponse::Done);
    let reseal = samples::commands()
        .into_iter()
        .find(|c| matches!(c, Command::ResealSecrets(_)))
        .expect("a reseal sample");
    assert_eq!(sealed.apply(&reseal, &rules), CommandResponse::Count(1));
    let bytes = encode_state(&sealed);
    problems.extend(pinned("snapshot-data-secrets", &bytes));
    assert_eq!(decode_state(&bytes).unwrap(), sealed);

    // Tick histories as deltas (cluster version 12): the same state but
    // its version writes them so, and reads back equal.
    let mut compact = samples::cluster_state();
    compact.cluster_version = crate::state::cluster_version::COMPACT_HISTORY;
    for tick in 2..=4 {
        let commit = Command::CommitTick(TickCommit {
            epoch: 1,
            tick,
            committed_at_ms: 1_790_000_000_990 + 1000 * tick,
            ..samples::tick()
        });
        assert_eq!(compact.apply(&commit, &rules), CommandResponse::Done);
    }
    let bytes = encode_state(&compact);
    problems.extend(pinned("snapshot-data-compact-history", &bytes));
    assert_eq!(decode_state(&bytes).unwrap(), compact);
    let mut as_records = compact.clone();
    as_records.cluster_version = crate::state::cluster_version::SECRETS;
    assert!(
        encode_state(&as_records).len() > bytes.len() + 20,
        "below version 12 the same histories take more"
    );

    for (name, vote) in [
        ("vote", Vote::new_committed(2, 1)),
        ("vote-uncommitted", Vote::new(3, 2)),
    ] {
        let bytes = encode_vote(&vote);
        problems.extend(pinned(name, &bytes));
        assert_eq!(decode_vote(&bytes).unwrap(), vote);
    }
    let append = AppendEntriesRequest {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(samples::log_id(2, 10)),
        entries: vec![Entry::new_normal(
            samples::log_id(2, 11),
            Command::CommitTick(samples::tick()),
        )],
        leader_commit: Some(samples::log_id(2, 10)),
    };
    let bytes = append_entries_to(&append).encode_to_vec();
    problems.extend(pinned("append-entries", &bytes));
    let decoded = append_entries_from(baton_proto::state::v1::AppendEntries::decode(&bytes[..]).unwrap()).unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{append:?}"));

    let vote_request = VoteRequest {
        vote: Vote::new(3, 2),
        last_log_id: Some(samples::log_id(2, 12)),
        leadership_transfer: true,
    };
    let bytes = vote_request_to(&vote_request).encode_to_vec();
    problems.extend(pinned("vote-request", &bytes));
    let decoded = vote_request_from(baton_proto::state::v1::VoteRequest::decode(&bytes[..]).unwrap()).unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{vote_request:?}"));
    let vote_reply = VoteResponse {
        vote: Vote::new(3, 2),
        vote_granted: true,
        last_log_id: None,
    };
    let bytes = vote_reply_to(&vote_reply).encode_to_vec();
    problems.extend(pinned("vote-reply", &bytes));
    let decoded = vote_reply_from(baton_proto::state::v1::VoteReply::decode(&bytes[..]).unwrap()).unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{vote_reply:?}"));
    let replies = [
        ("append-reply-success", AppendEntriesResponse::Success),
        (
            "append-reply-partial",
            AppendEntriesResponse::PartialSuccess(Some(samples::log_id(2, 11))),
        ),
        ("append-reply-conflict", AppendEntriesResponse::Conflict),
        (
            "append-reply-higher-vote",
            AppendEntriesResponse::HigherVote(Vote::new(4, 3)),
        ),
    ];
    for (name, reply) in replies {
        let bytes = append_reply_to(&reply).encode_to_vec();
        problems.extend(pinned(name, &bytes));
        let decoded =
            append_reply_from(baton_proto::state::v1::AppendEntriesReply::decode(&bytes[..]).unwrap()).unwrap();
        assert_eq!(decoded, reply);
    }

    let transfer = TransferLeaderRequest::new(Vote::new_committed(2, 1), 3, Some(samples::log_id(2, 12)));
    let bytes = transfer_to(&transfer).encode_to_vec();
    problems.extend(pinned("transfer-leader", &bytes));
    let decoded = transfer_from(baton_proto::state::v1::TransferLeader::decode(&bytes[..]).unwrap()).unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{transfer:?}"));
    let refused: TransferLeaderResponse = Err(openraft::raft::TransferLeaderError::LogNotFlushed {
        expected: Some(samples::log_id(2, 12)),
        actual: None,
    });
    for (name, reply) in [
        ("transfer-leader-reply-done", Ok(())),
        ("transfer-leader-reply-refused", refused),
    ] {
        let bytes = transfer_reply_to(&reply).encode_to_vec();
        problems.extend(pinned(name, &bytes));
        let decoded =
            transfer_reply_from(baton_proto::state::v1::TransferLeaderReply::decode(&bytes[..]).unwrap()).unwrap();
        assert_eq!(decoded, reply);
    }

    let log_id = samples::log_id(2, 12);
    let bytes = encode_log_id(Some(&log_id));
    problems.extend(pinned("log-id", &bytes));
    assert_eq!(decode_log_id(&bytes).unwrap(), Some(log_id));
    assert_eq!(decode_log_id(&encode_log_id(None)).unwrap(), None);
    check(problems);
}

#[test]
fn a_command_of_a_kind_this_release_does_not_know_is_refused_by_its_field_number() {
    // Field 99, length-delimited, empty: a kind a newer release added.
    let unknown = [0x9a, 0x06, 0x00];
    assert_eq!(decode_command(&unknown), Err(DecodeError::UnknownKind { field: 99 }));
    let message = decode_command(&unknown).unwrap_err().to_string();
    assert!(
        message.contains("kind #99") && message.contains("a newer release wrote it"),
        "{message}"
    );

    // Inside a batch, beside a known one.
    let batch = baton_proto::state::v1::Command {
        kind: Some(baton_proto::state::v1::command::Kind::Batch(
            baton_proto::state::v1::Batch {
                commands: vec![encode_command(&Command::Delete { key: "k".into() }), unknown.to_vec()],
            },
        )),
    }
    .encode_to_vec();
    assert_eq!(decode_command(&batch), Err(DecodeError::UnknownKind { field: 99 }));

    // And in a log entry: the entry is refused as a whole.
    let entry = baton_proto::state::v1::Entry {
        log_id: Some(baton_proto::state::v1::LogId {
            leader_id: Some(baton_proto::state::v1::LeaderId { term: 1, node_id: 1 }),
            index: 5,
        }),
        payload: Some(baton_proto::state::v1::entry::Payload::Normal(batch)),
    }
    .encode_to_vec();
    assert_eq!(decode_entry(&entry), Err(DecodeError::UnknownKind { field: 99 }));
}

#[test]
fn batches_nested_deeper_than_the_limit_are_refused() {
    let mut command = Command::Delete { key: "k".into() };
    for _ in 0..super::command::MAX_BATCH_DEPTH {
        command = Command::Batch([command].into());
    }
    assert_eq!(decode_command(&encode_command(&command)).unwrap(), command);
    let deeper = Command::Batch([command].into());
    assert!(matches!(
        decode_command(&encode_command(&deeper)),
        Err(DecodeError::Invalid { what: "Batch", .. })
    ));
}

#[test]
fn bytes_stay_bytes() {
    let value = vec![0xab; 4096];
    let put = Command::Put {
        key: "k".into(),
        value: value.clone(),
    };
    let binary = encode_command(&put).len();
    let json = serde_json::to_vec(&put).unwrap().len();
    assert!(binary < value.len() + 16, "{binary} bytes for a 4096-byte value");
    assert!(json > 3 * value.len(), "JSON writes a byte as a number ({json} bytes)");
}

#[test]
fn a_history_in_deltas_is_refused_below_its_version_beside_records_or_malformed() {
    use baton_proto::state::v1 as pb;
    let mut state = samples::cluster_state();
    state.cluster_version = crate::state::cluster_version::COMPACT_HISTORY;
    let written = pb::ClusterState::decode(&encode_state(&state)[..]).unwrap();
    assert!(written.tasks[0].history.is_empty() && written.tasks[0].compact_history.is_some());
    let refused = |change: &dyn Fn(&mut pb::ClusterState)| {
        let mut message = written.clone();
        change(&mut message);
        decode_state(&message.encode_to_vec()).unwrap_err().to_string()
    };
    let below = refused(&|m| m.cluster_version = crate::state::cluster_version::SECRETS);
    assert!(below.contains("below cluster version 12"), "{below}");
    let both = refused(&|m| m.tasks[0].history.push(pb::TickRecord::default()));
    assert!(both.contains("both as records and as deltas"), "{both}");
    let no_first = refused(&|m| m.tasks[0].compact_history.as_mut().unwrap().first = None);
    assert!(no_first.contains("CompactHistory.first is missing"), "{no_first}");
    let cut = refused(&|m| m.tasks[0].compact_history.as_mut().unwrap().deltas = vec![0x0f]);
    assert!(cut.contains("delta for record 1 is malformed"), "{cut}");
}

#[test]
fn what_is_missing_is_named() {
    let no_module = baton_proto::state::v1::Command {
        kind: Some(baton_proto::state::v1::command::Kind::AddRelease(
            baton_proto::state::v1::AddRelease::default(),
        )),
    }
    .encode_to_vec();
    assert_eq!(
        decode_command(&no_module),
        Err(DecodeError::Missing("AddRelease.module"))
    );
    assert!(matches!(decode_command(&[0xff, 0xff]), Err(DecodeError::Malformed(_))));
}

/// A generator of values, seeded so that a failure can be replayed.
struct Gen(StdRng);

impl Gen {
    fn u64(&mut self) -> u64 {
        match self.0.random_range(0..4) {
            0 => 0,
            1 => self.0.random_range(1..300),
            2 => u64::MAX - self.0.random_range(0..3),
            _ => self.0.random(),
        }
    }

    fn u32(&mut self) -> u32 {
        match self.0.random_range(0..3) {
            0 => 0,
            1 => self.0.random_range(1..10),
            _ => self.0.random(),
        }
    }

    fn bool(&mut self) -> bool {
        self.0.random()
    }

    fn string(&mut self) -> String {
        let len = self.0.random_range(0..12);
        (0..len)
            .map(|_| match self.0.random_range(0..8) {
                0 => 'é',
                1 => '✓',
                _ => self.0.random_range(b'a'..=b'z') as char,
            })
            .collect()
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = [0, 1, 7, 300][self.0.random_range(0..4)];
        (0..len).map(|_| self.0.random()).collect()
    }

    fn option<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.bool().then(|| f(self))
    }

    fn list<T>(&mut self, max: usize, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let len = self.0.random_range(0..=max);
        (0..len).map(|_| f(self)).collect()
    }

    fn spec(&mut self) -> TaskSpec {
        TaskSpec {
            name: self.string(),
            module: self.string(),
            schedule: match self.bool() {
                true => Schedule::EveryMs(self.u64()),
                false => Schedule::Cron(self.string()),
            },
            catch_up: match self.bool() {
                true => CatchUp::RunOnce,
                false => CatchUp::Skip,
            },
            restart: RestartPolicy {
                max_restarts: self.u32(),
                window_ms: self.u64(),
            },
            config: self.bytes(),
            allow_net: self.list(3, Self::string),
            allow_http: self.list(3, Self::string),
            http_ca: self.bytes(),
            secrets: self.list(2, Self::sealed_secret),
        }
    }

    fn sealed_secret(&mut self) -> SealedSecret {
        SealedSecret {
            name: self.string(),
            key_id: self.string(),
            nonce: self.bytes(),
            sealed: self.bytes(),
        }
    }

    fn status(&mut self) -> TaskStatus {
        match self.0.random_range(0..3) {
            0 => TaskStatus::Running,
            1 => TaskStatus::Paused,
            _ => TaskStatus::Failed { reason: self.string() },
        }
    }

    fn module(&mut self) -> ModuleVersion {
        ModuleVersion {
            name: self.string(),
            version: self.u32(),
            hash: self.string(),
            size: self.u64(),
            migrates: self.bool(),
            down_to: self.list(3, Self::u32),
            deployed_at_ms: self.u64(),
            signer: self.string(),
            signature: self.string(),
        }
    }

    fn settings(&mut self) -> RolloutSettings {
        RolloutSettings {
            canary: self.u32(),
            max_parallel: self.u32(),
            min_healthy_ms: self.u64(),
            healthy_deadline_ms: self.u64(),
            auto_revert: self.bool(),
        }
    }

    fn assignment(&mut self) -> Assignment {
        Assignment {
            task: self.string(),
            owner: self.option(Self::u64),
            expected_epoch: self.u64(),
        }
    }

    fn tick_commit(&mut self) -> TickCommit {
        TickCommit {
            task: self.string(),
            epoch: self.u64(),
            tick: self.u64(),
            node: self.u64(),
            state: self.bytes(),
            next_due_ms: self.u64(),
            committed_at_ms: self.u64(),
            version: self.u32(),
        }
    }

    fn node_binary(&mut self) -> NodeBinary {
        NodeBinary {
            hash: self.string(),
            version: self.string(),
            size: self.u64(),
            signer: self.string(),
            signature: self.string(),
            min_cluster_version: self.u32(),
            max_cluster_version: self.u32(),
        }
    }

    fn phase(&mut self) -> Phase {
        match self.0.random_range(0..6) {
            0 => Phase::Waiting,
            1 => Phase::Draining,
            2 => Phase::Swapping { gate_index: self.u64() },
            3 => Phase::Gating,
            4 => Phase::Done,
            _ => Phase::Reverted { reason: self.string() },
        }
    }

    fn upgrade(&mut self) -> Upgrade {
        Upgrade {
            binary: self.node_binary(),
            settings: UpgradeSettings {
                min_healthy_ms: self.u64(),
                healthy_deadline_ms: self.u64(),
                auto_revert: self.0.random(),
                hold_version: self.0.random(),
            },
            state: match self.0.random_range(0..5) {
                0 => UpgradeState::Running,
                1 => UpgradeState::Paused,
                2 => UpgradeState::Halted { reason: self.string() },
                3 => UpgradeState::Done,
                _ => UpgradeState::Aborted,
            },
            phases: (0..self.0.random_range(0..4))
                .map(|_| (self.u64(), self.phase()))
                .collect(),
            started_at_ms: self.u64(),
            phase_started_ms: self.u64(),
            finished_at_ms: self.option(Self::u64),
            drained_before: self.list(3, Self::u64).into_iter().collect(),
            finalized_at_ms: self.option(Self::u64),
        }
    }

    /// A command of kind `kind` (mod the number of kinds); batches nest to
    /// `depth`.
    fn command(&mut self, kind: usize, depth: u32) -> Command {
        match kind % COMMAND_KINDS {
            0 => Command::Put {
                key: self.string(),
                value: self.bytes(),
            },
            1 => Command::Delete { key: self.string() },
            2 if depth > 0 => {
                let len = self.0.random_range(0..4);
                Command::Batch(
                    (0..len)
                        .map(|_| {
                            let kind = self.0.random_range(0..COMMAND_KINDS);
                            self.command(kind, depth - 1)
                        })
                        .collect(),
                )
            }
            2 => Command::Batch(std::sync::Arc::from([])),
            3 => Command::AddTask(self.spec()),
            4 => Command::RemoveTask { name: self.string() },
            5 => Command::SetTaskStatus {
                name: self.string(),
                status: self.status(),
            },
            6 => Command::AssignOwners(self.list(3, Self::assignment)),
            7 => Command::HandOff(self.list(3, Self::assignment)),
            8 => Command::YieldTask {
                name: self.string(),
                epoch: self.u64(),
                node: self.u64(),
            },
            9 => Command::SetDrained {
                node: self.u64(),
                drained: self.bool(),
            },
            10 => Command::CommitTick(self.tick_commit()),
            11 => Command::MarkTaskFailed {
                name: self.string(),
                epoch: self.u64(),
                reason: self.string(),
                version: self.u32(),
            },
            12 => Command::DeployModule(self.module()),
            13 => Command::AddRelease {
                module: self.module(),
                settings: self.settings(),
                now_ms: self.u64(),
            },
            14 => Command::RolloutStep {
                module: self.string(),
                version: self.u32(),
                switch: self.list(4, Self::u64),
                now_ms: self.u64(),
            },
            15 => Command::RolloutControl {
                module: self.string(),
                action: match self.0.random_range(0..3) {
                    0 => RolloutAction::Pause,
                    1 => RolloutAction::Resume,
                    _ => RolloutAction::Halt { reason: self.string() },
                },
                now_ms: self.u64(),
            },
            16 => Command::RolloutFinish {
                module: self.string(),
                version: self.u32(),
                finish: match self.0.random_range(0..3) {
                    0 => Finish::Done,
                    1 => Finish::Revert { reason: self.string() },
                    _ => Finish::Abort,
                },
                now_ms: self.u64(),
            },
            17 => Command::SetClusterVersion { version: self.u32() },
            18 => Command::ReassignAll {
                from: self.option(Self::u64),
                to: self.list(4, Self::u64),
            },
            19 => Command::StartUpgrade {
                binary: self.node_binary(),
                settings: UpgradeSettings {
                    min_healthy_ms: self.u64(),
                    healthy_deadline_ms: self.u64(),
                    auto_revert: self.0.random(),
                    hold_version: self.0.random(),
                },
                nodes: self.list(4, Self::u64),
                now_ms: self.u64(),
            },
            20 => Command::UpgradePhase {
                hash: self.string(),
                node: self.u64(),
                phase: self.phase(),
                now_ms: self.u64(),
            },
            21 => Command::RunNow {
                name: self.string(),
                now_ms: self.u64(),
            },
            22 => Command::ResealSecrets(self.list(2, |g| Resealed {
                task: g.string(),
                was_nonce: g.bytes(),
                secret: g.sealed_secret(),
            })),
            23 => Command::SetSecrets {
                task: self.string(),
                set: self.list(2, Self::sealed_secret),
                remove: self.list(2, Self::string),
            },
            _ => Command::UpgradeControl {
                hash: self.string(),
                action: match self.0.random_range(0..5) {
                    0 => UpgradeAction::Pause,
                    1 => UpgradeAction::Resume,
                    2 => UpgradeAction::Halt { reason: self.string() },
                    3 => UpgradeAction::Finalize,
                    _ => UpgradeAction::Abort,
                },
                now_ms: self.u64(),
            },
        }
    }

    fn response(&mut self, depth: u32) -> CommandResponse {
        match self.0.random_range(0..6) {
            0 => CommandResponse::Done,
            1 => CommandResponse::Previous(self.option(Self::bytes)),
            2 => CommandResponse::Module(self.module()),
            3 => CommandResponse::Count(self.u64()),
            4 => CommandResponse::Rejected(Rejection::NoSuchTask { task: self.string() }),
            _ if depth > 0 => CommandResponse::Batch(self.list(3, |g| g.response(depth - 1))),
            _ => CommandResponse::Batch(Vec::new()),
        }
    }

    fn task(&mut self) -> TaskRecord {
        TaskRecord {
            spec: self.spec(),
            owner: self.option(Self::u64),
            epoch: self.u64(),
            tick: self.u64(),
            state: self.bytes(),
            status: self.status(),
            last_tick_at_ms: self.option(Self::u64),
            next_due_ms: self.u64(),
            history: History::from_iter(self.list(5, |g| TickRecord {
                tick: g.u64(),
                epoch: g.u64(),
                node: g.u64(),
                committed_at_ms: g.u64(),
                version: g.u32(),
            })),
            handoff_to: self.option(Self::u64),
            state_version: self.u32(),
            failed_on: self.option(Self::u32),
            run_requested_ms: self.option(Self::u64),
        }
    }

    fn rollout(&mut self) -> Rollout {
        Rollout {
            from: self.u32(),
            release: self.module(),
            settings: self.settings(),
            state: match self.0.random_range(0..6) {
                0 => RolloutState::Running,
                1 => RolloutState::Paused,
                2 => RolloutState::Halted { reason: self.string() },
                3 => RolloutState::Done,
                4 => RolloutState::Reverted { reason: self.string() },
                _ => RolloutState::Aborted,
            },
            switched: self.list(4, Self::u64).into_iter().collect(),
            steps: self.u32(),
            step_started_ms: self.u64(),
            started_at_ms: self.u64(),
            finished_at_ms: self.option(Self::u64),
        }
    }

    fn release(&mut self) -> Release {
        Release {
            module: self.module(),
            outcome: match self.0.random_range(0..5) {
                0 => ReleaseOutcome::Deployed,
                1 => ReleaseOutcome::RollingOut,
                2 => ReleaseOutcome::RolledOut,
                3 => ReleaseOutcome::Reverted { reason: self.string() },
                _ => ReleaseOutcome::Aborted,
            },
        }
    }

    /// A state whose maps are keyed as the rules key them (a task by its
    /// name, a module's current version by the module's name).
    fn state(&mut self) -> ClusterState {
        let mut state = ClusterState {
            cluster_version: self
                .0
                .random_range(1..=crate::state::cluster_version::VersionRange::SUPPORTED.max),
            ..ClusterState::default()
        };
        let mut tasks = Vec::new();
        for _ in 0..self.0.random_range(0..4) {
            state.kv.insert(self.string(), self.bytes());
            let module = self.module();
            state.modules.insert(module.name.clone(), module);
            let name = self.string();
            let releases = self.list(3, Self::release);
            state.releases.insert(name.clone(), releases);
            state.rollouts.insert(name, self.rollout());
            let task = self.task();
            tasks.push(task);
            state.drained.insert(self.u64());
        }
        state.tasks = crate::state::tasks::TaskTable::from_records(tasks);
        state.upgrade = self.0.random_bool(0.5).then(|| self.upgrade());
        state
    }

    fn log_id(&mut self) -> LogId {
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(self.u64(), self.u64());
        LogId::new(leader, self.u64())
    }

    fn membership(&mut self) -> openraft::Membership<u64, Member> {
        let voters: BTreeSet<u64> = (0..self.0.random_range(1..5)).map(|_| self.u64()).collect();
        let mut nodes: BTreeMap<u64, Member> = voters
            .iter()
            .map(|id| (*id, Member::new(self.string(), self.string())))
            .collect();
        for _ in 0..self.0.random_range(0..3) {
            nodes.insert(self.u64(), Member::new(self.string(), String::new()));
        }
        openraft::Membership::new(vec![voters], nodes).unwrap()
    }
}

const ROUNDS: usize = 2000;

#[test]
fn generated_commands_and_responses_round_trip() {
    let mut g = Gen(StdRng::seed_from_u64(14));
    for round in 0..ROUNDS {
        let command = g.command(round, 2);
        assert_eq!(
            decode_command(&encode_command(&command)).unwrap(),
            command,
            "round {round}"
        );
        let response = g.response(2);
        let bytes = baton_proto::state::v1::CommandResponse::from(&response).encode_to_vec();
        let decoded = baton_proto::state::v1::CommandResponse::decode(&bytes[..]).unwrap();
        assert_eq!(CommandResponse::try_from(decoded).unwrap(), response, "round {round}");
    }
}

#[test]
fn generated_states_entries_and_raft_records_round_trip() {
    let mut g = Gen(StdRng::seed_from_u64(15));
    for round in 0..ROUNDS / 4 {
        let state = g.state();
        let bytes = encode_state(&state);
        assert_eq!(decode_state(&bytes).unwrap(), state, "round {round}");
        assert_eq!(encode_state(&state.clone()), bytes, "equal states encode alike");
        let frozen = crate::state::frozen::FrozenState::of(&state);
        assert_eq!(
            crate::codec::format::encode_frozen(&frozen).unwrap(),
            crate::codec::format::encode_state(&state).unwrap(),
            "round {round}: a frozen state encodes as the state"
        );

        let payload = match round % 3 {
            0 => EntryPayload::Blank,
            1 => EntryPayload::Normal(g.command(round, 1)),
            _ => EntryPayload::Membership(g.membership()),
        };
        let entry = Entry {
            log_id: g.log_id(),
            payload,
        };
        assert_eq!(decode_entry(&encode_entry(&entry)).unwrap(), entry, "round {round}");

        let meta = SnapshotMeta {
            last_log_id: g.option(Gen::log_id),
            last_membership: StoredMembership::new(g.option(Gen::log_id), g.membership()),
        };
        assert_eq!(
            decode_snapshot_meta(&encode_snapshot_meta(&meta)).unwrap(),
            meta,
            "round {round}"
        );
        let vote = match g.bool() {
            true => Vote::new_committed(g.u64(), g.u64()),
            false => Vote::new(g.u64(), g.u64()),
        };
        assert_eq!(decode_vote(&encode_vote(&vote)).unwrap(), vote, "round {round}");

        let append = AppendEntriesRequest {
            vote,
            prev_log_id: g.option(Gen::log_id),
            entries: vec![entry.clone(), entry],
            leader_commit: g.option(Gen::log_id),
        };
        let decoded = append_entries_from(append_entries_to(&append)).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{append:?}"), "round {round}");
        let request = VoteRequest {
            vote,
            last_log_id: g.option(Gen::log_id),
            leadership_transfer: g.bool(),
        };
        let decoded = vote_request_from(vote_request_to(&request)).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{request:?}"), "round {round}");
        let reply = VoteResponse {
            vote,
            vote_granted: g.bool(),
            last_log_id: g.option(Gen::log_id),
        };
        let decoded = vote_reply_from(vote_reply_to(&reply)).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{reply:?}"), "round {round}");
    }
}

/// A snapshot's upgrade record, and the messages between a node and its
/// heart, and between the leader and a node, about binaries: a heart is
/// upgraded apart from its node, so each must read the other's.
#[test]
fn the_upgrade_record_and_the_binary_messages_are_encoded_as_pinned() {
    use baton_proto as p;
    let mut problems = Vec::new();
    let binary = samples::node_binary();
    let mut upgrade = Upgrade::start(
        binary.clone(),
        UpgradeSettings::default(),
        &[1, 2, 3],
        6,
        1_790_000_000_000,
    )
    .expect("the sample binary supports version 6");
    upgrade.set_phase(2, Phase::Draining, 1_790_000_000_100).unwrap();
    upgrade
        .set_phase(2, Phase::Swapping { gate_index: 40 }, 1_790_000_000_200)
        .unwrap();
    upgrade.drained_before.insert(3);
    let bytes = p::state::v1::Upgrade::from(&upgrade).encode_to_vec();
    problems.extend(pinned("upgrade", &bytes));
    assert_eq!(
        Upgrade::try_from(p::state::v1::Upgrade::decode(&bytes[..]).unwrap()).unwrap(),
        upgrade
    );
    // One that held the cluster version until an operator finalized it.
    let mut held = Upgrade::start(
        binary.clone(),
        UpgradeSettings {
            hold_version: true,
            ..UpgradeSettings::default()
        },
        &[1],
        6,
        1_790_000_000_000,
    )
    .expect("the sample binary supports version 6");
    for phase in [
        Phase::Draining,
        Phase::Swapping { gate_index: 7 },
        Phase::Gating,
        Phase::Done,
    ] {
        held.set_phase(1, phase, 1_790_000_000_300).unwrap();
    }
    held.control(&UpgradeAction::Finalize, 1_790_000_000_400).unwrap();
    let bytes = p::state::v1::Upgrade::from(&held).encode_to_vec();
    problems.extend(pinned("upgrade-finalized", &bytes));
    assert_eq!(
        Upgrade::try_from(p::state::v1::Upgrade::decode(&bytes[..]).unwrap()).unwrap(),
        held
    );

    let signed = p::SignedBinary {
        hash: binary.hash.clone(),
        version: binary.version.clone(),
        signer: binary.signer.clone(),
        signature: binary.signature.clone(),
        size: binary.size,
    };
    let messages: Vec<(&str, Vec<u8>)> = vec![
        (
            "heart-stage-chunk",
            p::StageBinaryChunk {
                header: Some(signed.clone()),
                data: vec![0x7f, b'E', b'L', b'F'],
            }
            .encode_to_vec(),
        ),
        (
            "heart-try",
            p::TryBinaryRequest {
                hash: binary.hash.clone(),
                deadline_ms: 270_000,
            }
            .encode_to_vec(),
        ),
        (
            "heart-revert",
            p::RevertTrialRequest {
                hash: binary.hash.clone(),
                reason: "the upgrade was aborted".into(),
            }
            .encode_to_vec(),
        ),
        (
            "heart-status-reply",
            p::HeartStatusReply {
                permanent: Some(p::HeartBinary {
                    hash: "ab".repeat(32),
                    version: "0.4.0".into(),
                }),
                trial: Some(p::HeartBinary {
                    hash: binary.hash.clone(),
                    version: binary.version.clone(),
                }),
                trial_ms_left: 120_000,
                running_hash: binary.hash.clone(),
                running_incarnation: "0123456789abcdef".into(),
                last_revert: "0.5.0 (121212121212): exit status 3".into(),
                installed: "/usr/local/bin/baton-node".into(),
                last_revert_hash: binary.hash.clone(),
                last_revert_at_ms: 1_790_000_000_300,
                now_ms: 1_790_000_000_400,
                held: Vec::new(),
                lists_held: false,
            }
            .encode_to_vec(),
        ),
        (
            "heart-status-reply-held",
            p::HeartStatusReply {
                running_hash: "installed".into(),
                running_incarnation: "0123456789abcdef".into(),
                installed: "/usr/local/bin/baton-node".into(),
                now_ms: 1_790_000_000_400,
                held: vec![binary.hash.clone(), "ab".repeat(32)],
                lists_held: true,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "swap-binary",
            p::SwapBinaryRequest {
                binary: Some((&binary).into()),
                deadline_ms: 270_000,
                gate_index: 0,
            }
            .encode_to_vec(),
        ),
        (
            "swap-binary-round",
            p::SwapBinaryRequest {
                binary: Some((&binary).into()),
                deadline_ms: 270_000,
                gate_index: 40,
            }
            .encode_to_vec(),
        ),
        (
            "upload-header",
            p::UploadNodeBinaryChunk {
                header: Some(p::UploadNodeBinaryHeader {
                    binary: Some(signed),
                    min_cluster_version: 1,
                    max_cluster_version: 6,
                    min_healthy_ms: 10_000,
                    healthy_deadline_ms: 120_000,
                    auto_revert: true,
                    hold_version: false,
                }),
                data: Vec::new(),
            }
            .encode_to_vec(),
        ),
        (
            "upload-header-hold",
            p::UploadNodeBinaryHeader {
                min_cluster_version: 1,
                max_cluster_version: 6,
                min_healthy_ms: 10_000,
                healthy_deadline_ms: 120_000,
                auto_revert: true,
                hold_version: true,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "upgrade-status-reply",
            p::UpgradeStatusReply {
                exists: true,
                hash: binary.hash.clone(),
                version: binary.version.clone(),
                state: "done".into(),
                reason: String::new(),
                nodes: vec![p::UpgradeNodeStatus {
                    id: 2,
                    phase: "done".into(),
                    reason: String::new(),
                    binary: binary.hash.clone(),
                    version: binary.version.clone(),
                }],
                started_at_ms: 1_790_000_000_000,
                phase_started_ms: 1_790_000_000_300,
                finished_at_ms: Some(1_790_000_000_300),
                min_healthy_ms: 10_000,
                healthy_deadline_ms: 120_000,
                auto_revert: true,
                hold_version: true,
                awaits_finalize: true,
                finalized_at_ms: None,
            }
            .encode_to_vec(),
        ),
    ];
    for (name, bytes) in messages {
        problems.extend(pinned(name, &bytes));
    }
    // The Raft log's entry for `upgrade finalize` (the command fixtures
    // hold one upgrade control, a halt).
    let finalize = Command::UpgradeControl {
        hash: binary.hash.clone(),
        action: UpgradeAction::Finalize,
        now_ms: 1_790_000_000_400,
    };
    let bytes = encode_command(&finalize);
    problems.extend(pinned("command-upgrade-finalize", &bytes));
    assert_eq!(decode_command(&bytes).unwrap(), finalize);
    check(problems);
}

/// `Control.TaskLogs` (and `Peer.TaskLogs`, which a node answering it sends
/// the owner) and `Control.Events`: a reader's cursors travel in them, so
/// their fields are pinned like the others'.
#[test]
fn the_task_log_and_event_messages_are_encoded_as_pinned() {
    use baton_proto as p;
    let mut problems = Vec::new();
    let messages: Vec<(&str, Vec<u8>)> = vec![
        (
            "task-logs-request",
            p::TaskLogsRequest {
                name: "sync-account-42".into(),
                node: 2,
                after_seq: 1_234,
                after_epoch: 3,
                limit: 100,
            }
            .encode_to_vec(),
        ),
        (
            "task-logs-reply",
            p::TaskLogsReply {
                node: 2,
                lines: vec![p::TaskLogLine {
                    seq: 1_235,
                    at_ms: 1_790_000_000_100,
                    level: "warn".into(),
                    tick: 41,
                    epoch: 3,
                    message: "the feed answered 503; trying again next tick".into(),
                    node: 2,
                }],
                owner_silent: String::new(),
            }
            .encode_to_vec(),
        ),
        (
            "task-logs-reply-silent",
            p::TaskLogsReply {
                node: 3,
                lines: Vec::new(),
                owner_silent: "no answer within 2s".into(),
            }
            .encode_to_vec(),
        ),
        (
            "events-request",
            p::EventsRequest {
                after_index: 812,
                after_position: 1,
                limit: 1_000,
                newest: false,
            }
            .encode_to_vec(),
        ),
        (
            "events-reply",
            p::EventsReply {
                events: vec![p::Event {
                    index: 813,
                    position: 0,
                    at_ms: 1_790_000_000_200,
                    kind: "failover".into(),
                    node: 2,
                    subject: String::new(),
                    text: "node 2 is gone (its lease ended, it exited, or it was removed): its 12 tasks moved at once, spread over nodes 1, 3".into(),
                }],
                missing_through_index: 16,
                missing_through_position: 2,
                some_missing: true,
                answered_by: 1,
                told_through_index: 813,
                has_told: true,
            }
            .encode_to_vec(),
        ),
    ];
    for (name, bytes) in messages {
        problems.extend(pinned(name, &bytes));
    }
    check(problems);
}
