//! Running tasks: the leader places them, each owner ticks its own, and the
//! decisions (when a tick is due, whether to retry) are pure functions.

mod forwarder;
mod placer;
pub mod restarts;
mod runner;
pub mod schedule;

pub use forwarder::propose_on_leader;
pub use placer::spawn_placer;
pub use runner::spawn_runner;
