//! The fence around one tick: the runtime's view of "may this tick still
//! run, and act on the world?".
//!
//! The node decides (its lease, what its state machine says it owns); the
//! runtime asks. It asks before the tick starts, every epoch while the
//! guest runs (so a tick cannot run past the moment another node may start
//! it), and at every host call with an outside effect (so a tick that was
//! paused, frozen or slow cannot reach the world once its turn is over).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Why a tick may no longer run or act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    /// This node's lease has ended (or is about to): another node may soon
    /// be given the task.
    #[error("this node's lease has ended")]
    LeaseEnded,
    /// The task moved on: another owner or a later epoch.
    #[error("this node no longer owns the task at epoch {epoch}")]
    NotOwner { epoch: u64 },
    /// This node has yet to apply what the leader had committed when it
    /// last renewed the lease: what it believes it owns may be stale.
    #[error("this node has not yet applied the log up to index {required} (it has applied {applied})")]
    CatchingUp { applied: u64, required: u64 },
    /// This node is stopping: no tick may run on after its listener closes.
    #[error("this node is stopping")]
    Stopping,
}

impl FenceError {
    /// The reason's name, as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            FenceError::LeaseEnded => "lease_ended",
            FenceError::NotOwner { .. } => "not_owner",
            FenceError::CatchingUp { .. } => "catching_up",
            FenceError::Stopping => "stopping",
        }
    }
}

/// Answers, for one tick, until when it may still run and act.
pub trait TickFence: Send + Sync {
    /// Until when the tick may run and act (the end of this node's lease as
    /// known now; it only moves later), or why it may not any more.
    fn permit(&self, now: Instant) -> Result<Instant, FenceError>;
}

/// A tick's fencing token: the task's epoch (it rises with every change of
/// owner) and the number the tick will commit as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FencingToken {
    pub epoch: u64,
    pub tick: u64,
}

/// The fence a tick runs under; `Fence::none()` for calls that are not
/// ticks of an owned task (checks at deploy, tests, benchmarks).
#[derive(Clone, Default)]
pub struct Fence(Option<Arc<dyn TickFence>>);

impl Fence {
    pub fn new(fence: Arc<dyn TickFence>) -> Self {
        Fence(Some(fence))
    }

    /// No fence: nothing stops the call but its own budget.
    pub fn none() -> Self {
        Fence(None)
    }

    /// Until when the call may run and act; `None` when unbounded.
    pub fn permit(&self, now: Instant) -> Result<Option<Instant>, FenceError> {
        match &self.0 {
            Some(fence) => fence.permit(now).map(Some),
            None => Ok(None),
        }
    }
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "Fence(owned)",
            None => "Fence(none)",
        })
    }
}

/// A tick's claim on one of the node's tick slots (as many as it has
/// cores), which it gives up while it waits on the network: a task whose
/// peer is slow must not keep other tasks from the CPU.
pub trait TickSlot: Send + Sync {
    /// Gives the slot up for a while.
    fn release(&self);
    /// Takes a slot again (blocks until one is free).
    fn reacquire(&self);
}

/// The slot a tick holds, if any (none outside the runner).
#[derive(Clone, Default)]
pub struct Slot(Option<Arc<dyn TickSlot>>);

impl Slot {
    pub fn new(slot: Arc<dyn TickSlot>) -> Self {
        Slot(Some(slot))
    }

    /// Runs `f` (blocking I/O) without holding the slot.
    pub fn released<T>(&self, f: impl FnOnce() -> T) -> T {
        if let Some(slot) = &self.0 {
            slot.release();
        }
        let result = f();
        if let Some(slot) = &self.0 {
            slot.reacquire();
        }
        result
    }

    /// Runs `f` (a wait) without holding the slot, and takes one again only
    /// when the tick goes on (`Ok`): a stop (`Err`) ends the tick, which
    /// must not queue behind running ticks just to end.
    pub fn released_until_stop<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        if let Some(slot) = &self.0 {
            slot.release();
        }
        let result = f();
        if let (Some(slot), Ok(_)) = (&self.0, &result) {
            slot.reacquire();
        }
        result
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Slot(held)" } else { "Slot(none)" })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counted {
        released: AtomicU32,
        reacquired: AtomicU32,
    }

    impl TickSlot for Counted {
        fn release(&self) {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
        fn reacquire(&self) {
            self.reacquired.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wait_that_ends_the_tick_does_not_take_a_slot_back() {
        let counted = Arc::new(Counted::default());
        let slot = Slot::new(counted.clone());
        assert_eq!(slot.released_until_stop(|| Ok::<_, ()>(1)), Ok(1));
        assert_eq!(slot.released_until_stop(|| Err::<u8, _>("stopped")), Err("stopped"));
        assert_eq!(slot.released(|| 2), 2);
        assert_eq!(counted.released.load(Ordering::SeqCst), 3);
        assert_eq!(counted.reacquired.load(Ordering::SeqCst), 2, "taken back after a stop");
    }
}
