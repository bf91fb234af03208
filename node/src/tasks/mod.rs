//! Running tasks: the leader places them, each owner ticks its own, and the
//! decisions (when a tick is due, whether to retry) are pure functions.

pub mod restarts;
pub mod schedule;
