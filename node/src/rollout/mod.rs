//! Hot code swap: a module's new release rolled through the cluster, a
//! canary first, then batches, each step gated on the new version's health,
//! reverting by itself when a gate fails.
//!
//! - [`record`]: the rollout and the releases, as replicated in Raft.
//! - `rules`: how commands change them (pure, on `ClusterState`).
//! - [`gate`]: the leader's pure decision of the next move.
//! - [`health`]: each node's tick counts per module version, reported to the
//!   leader with every heartbeat.
//! - [`driver`]: the leader's loop that observes, decides and proposes.

mod driver;
pub mod gate;
pub mod health;
mod record;
mod rules;

pub use driver::spawn_rollouts;
pub use gate::{Counts, Decision, GateView, decide};
pub use health::TickHealth;
pub use record::{Finish, Release, ReleaseOutcome, Rollout, RolloutAction, RolloutSettings, RolloutState};
