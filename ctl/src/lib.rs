//! `batonctl`: the command-line client for a Baton cluster.
//!
//! # Layout
//!
//! - [`cli`]: the arguments, parsed with clap.
//! - [`client`]: a control-API client that follows leader hints and fails
//!   over between endpoints.
//! - [`pki`]: the cluster CA and the node and admin certificates.
//! - [`output`]: tables for people, JSON for scripts.
//! - [`cmd`]: one file per subcommand.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod cmd;
pub mod connect;
pub mod contexts;
pub mod local_cluster;
pub mod output;
pub mod pki;
pub mod unreachable;

pub use client::{ClientError, ClusterClient};
