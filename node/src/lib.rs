//! `baton-node`: one Baton node, a member of a Raft group that replicates the
//! cluster's truth.
//!
//! # Layout
//!
//! - [`config`]: the TOML config and its validation (before any socket binds).
//! - [`bootstrap`]: the pure decision to form, resume or await a cluster;
//!   [`formation`] asks the other initial members.
//! - [`state`]: the replicated state as plain data, the commands, and the
//!   rules by which they change it (tasks, releases, rollouts, rejections).
//! - [`codec`]: the replicated state's types on the wire.
//! - [`placement`]: the leader's pure decision of which node owns a task.
//! - [`store`]: the Raft log and state machine, durable in redb.
//! - [`raft`]: openraft over tonic, one channel per peer.
//! - [`modules`]: module bytes by content hash, fetched from peers.
//! - [`rollout`]: hot code swap: releases, rollouts, their gates.
//! - [`runtime`]: task modules on wasmtime: compile, budget, memory limit.
//! - [`secrets`]: task secrets, sealed by the leader as they enter.
//! - [`heart`]: the per-machine supervisor that starts a node and vouches
//!   for its exit.
//! - [`supervision`]: leases, failure detection, the fast path, hand-offs.
//! - [`tasks`]: ticking owned tasks and committing them through the leader.
//! - [`api`]: the gRPC services (Raft, Peer, Control) and who may call them.
//! - [`tls`]: mutual TLS material and certificate identities.
//! - [`node`]: starting a node and shutting it down in order.
//! - [`process`]: what the daemons share: logging, signals, sibling binaries.
//! - [`malloc`]: how a node has glibc's malloc give memory back, the one
//!   module allowed `unsafe` (two calls into libc).
#![deny(unsafe_code)]

pub mod api;
pub mod bootstrap;
pub mod codec;
pub mod config;
pub mod fencing;
pub mod formation;
pub mod heart;
#[allow(unsafe_code)]
pub mod malloc;
pub mod metrics;
pub mod modules;
pub mod node;
pub mod placement;
pub mod process;
pub mod raft;
pub mod rollout;
pub mod runtime;
pub mod secrets;
pub mod signal;
pub mod state;
pub mod store;
pub mod supervision;
pub mod tasks;
pub mod tls;
pub mod types;
pub mod upgrade;
pub mod versioning;
pub mod web;

pub use node::{NodeError, run};

/// This binary's version, reported to peers and `batonctl status`: the
/// package's, or `BATON_BUILD_RELEASE` when it was set at build time (see
/// `state::cluster_version`'s `BUILD_MAX`).
pub const VERSION: &str = match option_env!("BATON_BUILD_RELEASE") {
    Some(release) => release,
    None => env!("CARGO_PKG_VERSION"),
};
