//! Supervision across machines: every node renews a lease with the leader
//! over a heartbeat stream and stops ticking before it ends; the leader
//! moves the tasks of nodes whose lease ended, or whose process is provably
//! gone (the fast path), and hands tasks off from draining nodes.

mod heartbeat;
pub mod lease_table;
mod liveness;
pub mod local_lease;
mod renewals;
mod state;
mod supervisor;

pub use heartbeat::spawn_heartbeat;
pub use lease_table::{Health, LeaseTable};
pub use local_lease::LocalLease;
pub use renewals::serve_renewals;
pub use state::{Revocation, Supervision};
pub(crate) use supervisor::node_view;
pub use supervisor::{forced_handoff_patience, spawn_supervisor};
