//! The test-only switch that turns fencing off: `[testing]
//! unsafe_disable_fencing`. With it, a node starts ticks without a lease and
//! its state machine takes tick commits from any node at any epoch, so a
//! task runs, and commits, twice after a partition or a pause. The chaos
//! suite's "teeth" test sets it on every node of a cluster to show that the
//! history checker catches exactly that.
//!
//! A process-wide flag rather than a field of the state machine: it must not
//! travel in snapshots, and each node process reads it from its own config.

use std::sync::atomic::{AtomicBool, Ordering};

static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns fencing off for this process, for good.
pub fn disable_for_testing() {
    DISABLED.store(true, Ordering::SeqCst);
}

/// Whether fencing is off (never, unless a test config asked for it).
pub fn disabled() -> bool {
    DISABLED.load(Ordering::Relaxed)
}
