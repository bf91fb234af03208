//! Running tasks: each owner ticks its own (the leader places them, see
//! `supervision`), and the
//! decisions (when a tick is due, whether to retry) are pure functions.

mod commit;
mod fence;
mod forwarder;
mod log_rate;
mod module_loads;
pub mod restarts;
mod runner;
pub mod schedule;
mod secret_source;
pub mod timeliness;

pub use forwarder::{ForwardQueue, propose_on_leader, spawn_forwarder};
pub use runner::spawn_runner;
