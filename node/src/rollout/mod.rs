//! Hot code swap: a module's new release rolled through the cluster, a
//! canary first, then batches, each step gated on the new version's health,
//! reverting by itself when a gate fails.
//!
//! - The rollout and the releases, as replicated in Raft, and how commands
//!   change them, are part of the replicated state:
//!   [`crate::state::rollouts`] (re-exported here).
//! - [`gate`]: the leader's pure decision of the next move.
//! - [`health`]: each node's tick counts per module version, reported to the
//!   leader with every heartbeat.
//! - [`driver`]: the leader's loop that observes, decides and proposes.

mod driver;
pub mod gate;
pub mod health;

pub use crate::state::rollouts::{
    Finish, Release, ReleaseOutcome, Rollout, RolloutAction, RolloutSettings, RolloutState,
};
pub use driver::spawn_rollouts;
pub use gate::{Counts, Decision, GateView, decide};
pub use health::TickHealth;
