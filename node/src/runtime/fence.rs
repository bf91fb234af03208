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
