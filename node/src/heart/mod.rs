//! The heart (`baton-heart`): a small per-machine supervisor, after Erlang's
//! `heart`. It starts `baton-node`, starts it again with backoff when it
//! dies, and vouches for its exit.
//!
//! The vouching is what makes the crash fast path safe. When a node's
//! heartbeat stream breaks, the leader (or, for a leader, its followers)
//! would like to move its tasks at once rather than after its lease; but a
//! refused or reset connection is no proof that the process is gone: a
//! firewall's REJECT rule, a rejecting network policy or another process on
//! the address answers the same way for a live node, which would then tick
//! on while its tasks start elsewhere. The heart is the parent of the node
//! process: when `waitpid` has returned, the process can no longer run a
//! tick, send a byte or lead. So the node tells its peers where its heart
//! listens (with every heartbeat), the heart passes each process it starts
//! a fresh incarnation (`BATON_INCARNATION`), and a peer asks the heart
//! `AwaitExit(incarnation)`; only "exited" moves tasks early. A heart that
//! cannot be reached, or that did not start that incarnation, proves
//! nothing, and the lease decides.
//!
//! The heart serves with its node's own certificate, so the caller checks
//! that it speaks to the heart of the node it asks about.
//!
//! # Layout
//!
//! - [`ledger`]: the incarnations started and how each ended; the restart
//!   backoff (pure).
//! - [`shared`]: the ledger shared with waiting callers.
//! - [`launcher`]: starting, reaping and restarting the node.
//! - [`service`]: the `Heart` gRPC service.
//! - [`client`]: how a peer asks a heart.
//! - [`run`]: binding the port and running it all until shutdown.

mod client;
mod config;
mod launcher;
pub mod ledger;
mod run;
mod service;
mod shared;

pub use client::ask_exit;
pub use config::HeartConfig;
pub use launcher::LaunchOptions;
pub use run::{HeartError, run};
pub use service::HeartService;
pub use shared::SharedLedger;

/// The environment variable through which a heart tells the node process
/// it starts its incarnation.
pub const INCARNATION_ENV: &str = "BATON_INCARNATION";

/// This process's incarnation, and the address of the heart that started it
/// (if one did): the heart's incarnation from the environment when it is
/// sane and the config names a heart, else a fresh one and no heart.
pub fn incarnation_and_heart(config: &crate::config::NodeConfig) -> (String, Option<String>) {
    let given = std::env::var(INCARNATION_ENV)
        .ok()
        .filter(|i| !i.is_empty() && i.len() <= 64 && i.chars().all(|c| c.is_ascii_alphanumeric()));
    match (given, &config.heart) {
        (Some(incarnation), Some(heart)) => (incarnation, Some(heart.advertised().to_string())),
        _ => (format!("{:016x}", rand::random::<u64>()), None),
    }
}
