//! The replicated state's types in their encoded forms: conversions
//! between [`crate::state`] (and openraft's records) and the protobuf
//! messages of `baton_proto` (`baton.v1` for the API, `baton.state.v1` for
//! what is stored and replicated), and the JSON forms of earlier releases.
//!
//! - [`command`]: commands and their responses.
//! - [`snapshot`]: the whole state, a snapshot's data.
//! - [`raft`]: log entries, votes, log ids, memberships, snapshot metadata.
//! - [`rejection`], [`propose`]: typed rejections and peer proposals.
//! - [`upgrade`]: a rolling upgrade of the node binary.
//! - [`format`]: which encoding a writer uses (the cluster version decides)
//!   and readers that take either.
//! - [`json`]: the JSON of earlier releases, read so that an unknown kind is
//!   refused by name.
//!
//! # Evolution rules
//!
//! Nodes of two releases read each other's log, snapshots and messages
//! during a rolling upgrade, and a node reads what it wrote before an
//! upgrade. So, for every message in `proto/proto/baton/`:
//!
//! - A field's number and type never change, and the number of a removed
//!   field is never used again (it is marked `reserved`).
//! - A field is added only where its absence (its zero value) keeps the old
//!   meaning. A decoder drops the fields it does not know, so an older node
//!   must be able to ignore the new field safely.
//! - A change of meaning is a new field or a new kind of command, never a
//!   new reading of an old one.
//! - A new kind of command is a new case of `Command.kind`. A release that
//!   does not know it decodes it as an empty `kind` and refuses its entry
//!   by the field's number ([`DecodeError::UnknownKind`]) before anything
//!   of it is applied. So a new kind, or anything else an older release
//!   cannot read, is written only once the cluster version says that every
//!   member reads it (see [`crate::state::cluster_version`]).
//! - Bytes stay bytes (`bytes` fields, never a list of numbers), and maps are
//!   lists sorted by key (or `BTreeMap`s), so equal values encode to equal
//!   bytes.
//! - The JSON forms stay readable while the lowest cluster version a
//!   release supports is 1.
//!
//! The golden tests in `golden_test.rs` pin the encoded bytes of every kind
//! of command, response, entry, snapshot and Raft record. When one fails,
//! the change altered a format: make it additive instead. The seeded
//! round-trip tests check that decode(encode(x)) == x for generated values.

pub mod command;
pub mod format;
#[cfg(test)]
mod golden_test;
pub mod json;
pub mod propose;
pub mod raft;
pub mod rejection;
pub mod snapshot;
pub mod upgrade;

/// Why bytes did not decode as what they should hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not protobuf, or cut short.
    #[error("not a valid encoding: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A field that must be there is not.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A command of a kind this release does not know: a newer release
    /// wrote it.
    #[error(
        "a command of kind #{field} (its field number), which baton-node {} does not know: a newer release \
         wrote it",
        crate::VERSION
    )]
    UnknownKind { field: u32 },
    /// An enum value this release does not know.
    #[error("{field} has the value {value}, which baton-node {} does not know", crate::VERSION)]
    UnknownValue { field: &'static str, value: i32 },
    /// The parts decoded but do not make a valid whole.
    #[error("{what} is not valid: {why}")]
    Invalid { what: &'static str, why: String },
}
