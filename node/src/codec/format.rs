//! Which encoding a writer uses, and readers that take either.
//!
//! Until the cluster version reaches [`BINARY_FORMATS`], everything is
//! written as the JSON of earlier releases, which every member reads. From
//! then on, the log, the vote, snapshots, forwarded proposals and the Raft
//! calls (AppendEntries, votes, leadership transfers; a typed request gets a
//! typed answer) are written as `baton.state.v1` protobuf: every member's
//! release reads it
//! (the version rose only once they all did), and a release that cannot
//! read it refuses to start on the data dir (see
//! [`crate::state::cluster_version`]). A node writes binary only once it
//! has applied the raise itself, so the change reaches each node's disk as
//! its own log reaches the raise.
//!
//! Readers take both, whatever the version: a stored JSON value always
//! begins with `{`, which no protobuf message here can begin with (it would
//! be field 15 opening a group, which proto3 never writes). So a node keeps
//! reading the JSON it wrote before the raise, and its next snapshot
//! rewrites the state in the new format.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::DecodeError;
use crate::state::cluster::ClusterState;
use crate::state::cluster_version::{BINARY_FORMATS, ClusterVersion};
use crate::state::command::Command;
use crate::state::frozen::FrozenState;
use crate::types::typ::{Entry, LogId, SnapshotMeta, Vote};

/// An encoding of what is stored and replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The JSON of earlier releases.
    Json,
    /// `baton.state.v1` protobuf.
    Binary,
}

impl Format {
    /// What a node that has applied cluster version `version` writes.
    pub fn at(version: ClusterVersion) -> Format {
        match version >= BINARY_FORMATS {
            true => Format::Binary,
            false => Format::Json,
        }
    }

    /// Which encoding `bytes` are in.
    pub fn of(bytes: &[u8]) -> Format {
        match bytes.first() {
            Some(b'{') => Format::Json,
            _ => Format::Binary,
        }
    }
}

/// The highest cluster version this node has applied, shared by the parts
/// that write (the log store, the network): it picks their [`Format`].
/// Clones share the value; it only rises.
#[derive(Debug, Clone)]
pub struct AppliedVersion(Arc<AtomicU32>);

impl AppliedVersion {
    pub fn new(version: ClusterVersion) -> Self {
        AppliedVersion(Arc::new(AtomicU32::new(version)))
    }

    pub fn get(&self) -> ClusterVersion {
        self.0.load(Ordering::SeqCst)
    }

    pub fn raise(&self, version: ClusterVersion) {
        self.0.fetch_max(version, Ordering::SeqCst);
    }

    /// The format to write in.
    pub fn format(&self) -> Format {
        Format::at(self.get())
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, io::Error> {
    serde_json::to_vec(value).map_err(invalid)
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, io::Error> {
    serde_json::from_slice(bytes).map_err(invalid)
}

fn binary<T>(decoded: Result<T, DecodeError>) -> Result<T, io::Error> {
    decoded.map_err(invalid)
}

/// Empty bytes hold nothing in either format: protobuf would decode them
/// as every field's default (an empty state, no log id), which must never
/// stand in for a value that was lost or not sent.
fn not_empty(bytes: &[u8], what: &str) -> Result<(), io::Error> {
    match bytes.is_empty() {
        true => Err(invalid(format!("{what} is empty"))),
        false => Ok(()),
    }
}

pub fn encode_entry(entry: &Entry, format: Format) -> Result<Vec<u8>, io::Error> {
    match format {
        Format::Json => json(entry),
        Format::Binary => Ok(super::raft::encode_entry(entry)),
    }
}

/// Decodes a log entry in either format; one whose command is of a kind
/// this release does not know is refused, naming the kind.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, io::Error> {
    not_empty(bytes, "a log entry")?;
    match Format::of(bytes) {
        Format::Json => super::json::decode_entry(bytes),
        Format::Binary => binary(super::raft::decode_entry(bytes)),
    }
}

pub fn encode_command(command: &Command, format: Format) -> Result<Vec<u8>, io::Error> {
    match format {
        Format::Json => json(command),
        Format::Binary => Ok(super::command::encode_command(command)),
    }
}

pub fn decode_command(bytes: &[u8]) -> Result<Command, io::Error> {
    not_empty(bytes, "a command")?;
    match Format::of(bytes) {
        Format::Json => from_json(bytes),
        Format::Binary => binary(super::command::decode_command(bytes)),
    }
}

pub fn encode_vote(vote: &Vote, format: Format) -> Result<Vec<u8>, io::Error> {
    match format {
        Format::Json => json(vote),
        Format::Binary => Ok(super::raft::encode_vote(vote)),
    }
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote, io::Error> {
    not_empty(bytes, "a vote")?;
    match Format::of(bytes) {
        Format::Json => from_json(bytes),
        Format::Binary => binary(super::raft::decode_vote(bytes)),
    }
}

pub fn encode_log_id(log_id: &LogId, format: Format) -> Result<Vec<u8>, io::Error> {
    match format {
        Format::Json => json(log_id),
        Format::Binary => Ok(super::raft::encode_log_id(Some(log_id))),
    }
}

pub fn decode_log_id(bytes: &[u8]) -> Result<Option<LogId>, io::Error> {
    not_empty(bytes, "a log id")?;
    match Format::of(bytes) {
        Format::Json => from_json(bytes),
        Format::Binary => binary(super::raft::decode_log_id(bytes)),
    }
}

pub fn encode_snapshot_meta(meta: &SnapshotMeta, format: Format) -> Result<Vec<u8>, io::Error> {
    match format {
        Format::Json => json(meta),
        Format::Binary => Ok(super::raft::encode_snapshot_meta(meta)),
    }
}

pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, io::Error> {
    not_empty(bytes, "a snapshot's metadata")?;
    match Format::of(bytes) {
        Format::Json => from_json(bytes),
        Format::Binary => binary(super::raft::decode_snapshot_meta(bytes)),
    }
}

/// A snapshot's data: the format follows the state's own cluster version.
pub fn encode_state(state: &ClusterState) -> Result<Vec<u8>, io::Error> {
    match Format::at(state.cluster_version) {
        Format::Json => json(state),
        Format::Binary => Ok(super::snapshot::encode_state(state)),
    }
}

/// A frozen state's snapshot data: the same bytes as [`encode_state`] of
/// the state it froze.
pub fn encode_frozen(frozen: &FrozenState) -> Result<Vec<u8>, io::Error> {
    match Format::at(frozen.rest.cluster_version) {
        Format::Json => json(&frozen.thaw()),
        Format::Binary => Ok(super::snapshot::encode_frozen(frozen)),
    }
}

pub fn decode_state(bytes: &[u8]) -> Result<ClusterState, io::Error> {
    not_empty(bytes, "a snapshot's data")?;
    match Format::of(bytes) {
        Format::Json => from_json(bytes),
        Format::Binary => {
            let state = binary(super::snapshot::decode_state(bytes))?;
            // Only a state at the binary formats' version is written so.
            match state.cluster_version >= BINARY_FORMATS {
                true => Ok(state),
                false => Err(invalid(format!(
                    "a snapshot in the binary format says it is at cluster version {}, below {BINARY_FORMATS}, \
                     which no release writes",
                    state.cluster_version
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format_fixtures_test as samples;

    #[test]
    fn the_version_picks_the_format_and_the_bytes_tell_it() {
        assert_eq!(Format::at(1), Format::Json);
        assert_eq!(Format::at(BINARY_FORMATS - 1), Format::Json);
        assert_eq!(Format::at(BINARY_FORMATS), Format::Binary);
        for command in samples::commands() {
            for format in [Format::Json, Format::Binary] {
                let bytes = encode_command(&command, format).unwrap();
                assert_eq!(Format::of(&bytes), format, "{command}");
                assert_eq!(decode_command(&bytes).unwrap(), command);
            }
        }
    }

    #[test]
    fn empty_bytes_are_refused_rather_than_read_as_defaults() {
        let empty = [];
        assert!(
            decode_state(&empty)
                .unwrap_err()
                .to_string()
                .contains("snapshot's data is empty")
        );
        assert!(decode_snapshot_meta(&empty).is_err());
        assert!(decode_log_id(&empty).is_err());
        assert!(decode_vote(&empty).is_err());
        assert!(decode_entry(&empty).is_err());
        assert!(decode_command(&empty).is_err());
        let mut state = samples::cluster_state();
        state.cluster_version = BINARY_FORMATS - 1;
        let below = super::super::snapshot::encode_state(&state);
        assert!(
            decode_state(&below).is_err(),
            "a binary state below the binary formats' version"
        );
    }

    #[test]
    fn every_stored_record_reads_back_in_either_format() {
        let entry = Entry {
            log_id: samples::log_id(2, 11),
            payload: openraft::EntryPayload::Normal(Command::CommitTick(samples::tick())),
        };
        let vote = Vote::new_committed(2, 1);
        let log_id = samples::log_id(2, 12);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: openraft::StoredMembership::new(Some(log_id), samples::membership()),
        };
        for format in [Format::Json, Format::Binary] {
            assert_eq!(decode_entry(&encode_entry(&entry, format).unwrap()).unwrap(), entry);
            assert_eq!(decode_vote(&encode_vote(&vote, format).unwrap()).unwrap(), vote);
            assert_eq!(
                decode_log_id(&encode_log_id(&log_id, format).unwrap()).unwrap(),
                Some(log_id)
            );
            let bytes = encode_snapshot_meta(&meta, format).unwrap();
            assert_eq!(Format::of(&bytes), format);
            assert_eq!(decode_snapshot_meta(&bytes).unwrap(), meta);
        }
        let mut state = samples::cluster_state();
        let json = encode_state(&state).unwrap();
        assert_eq!(Format::of(&json), Format::Json, "a state below the version stays JSON");
        state.cluster_version = BINARY_FORMATS;
        let binary = encode_state(&state).unwrap();
        assert_eq!(Format::of(&binary), Format::Binary);
        assert_eq!(decode_state(&binary).unwrap(), state);
        assert!(
            binary.len() * 2 < json.len(),
            "{} binary bytes, {} JSON",
            binary.len(),
            json.len()
        );
    }
}
