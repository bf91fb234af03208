//! Baton's wire types: the `baton.v1` protobuf package (control API, peer API,
//! Raft transport), generated at build time by `build.rs` without a system
//! `protoc`.
//!
//! The wire format only ever changes additively, so that nodes of two
//! versions can work together during a rolling upgrade.
#![forbid(unsafe_code)]

/// The generated `baton.v1` package.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("baton.v1");
}

pub use v1::*;

/// gRPC metadata key carrying the sender's node id on peer calls.
pub const NODE_ID_HEADER: &str = "baton-node-id";
/// gRPC metadata key carrying the sender's cluster id on peer calls.
pub const CLUSTER_ID_HEADER: &str = "baton-cluster-id";
/// gRPC metadata key naming the current leader's id on a redirect.
pub const LEADER_ID_HEADER: &str = "baton-leader-id";
/// gRPC metadata key naming the current leader's address on a redirect.
pub const LEADER_ADDR_HEADER: &str = "baton-leader-addr";
/// gRPC metadata key present (value "1") on every "this node is not the
/// leader" status, whether or not it knows the leader: clients and peers
/// tell a redirect from a refusal by it, never by the message.
pub const NOT_LEADER_HEADER: &str = "baton-not-leader";
