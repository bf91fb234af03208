//! The node's side of a tick's fence: this node may run and act for task
//! `name` at `epoch` only while its lease runs, it has applied the log as
//! far as the leader's last renewal said, and its state machine still shows
//! it as the task's owner at that epoch. And the slot a tick holds, which
//! it gives up while it waits on the network.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::NodeContext;
use crate::runtime::{FenceError, TickFence, TickSlot};
use crate::state::tasks::TaskStatus;

/// The fence of one worker's ticks.
pub struct OwnerFence {
    context: Arc<NodeContext>,
    task: String,
    epoch: u64,
}

impl OwnerFence {
    pub fn new(context: Arc<NodeContext>, task: &str, epoch: u64) -> Self {
        OwnerFence {
            context,
            task: task.to_string(),
            epoch,
        }
    }

    /// Whether the state machine shows this node owning the task at this
    /// epoch, running. (A tick in flight when a hand-off starts may finish:
    /// the new owner starts only once it has committed or been released.)
    fn owns(&self) -> bool {
        self.context.state_machine.read(|s| {
            s.tasks.get(&self.task).is_some_and(|t| {
                t.epoch == self.epoch && t.owner == Some(self.context.id) && t.status == TaskStatus::Running
            })
        })
    }

    fn check(&self, lease: Result<Instant, FenceError>) -> Result<Instant, FenceError> {
        if self.context.supervision.is_stopping() {
            return Err(FenceError::Stopping);
        }
        if crate::fencing::disabled() {
            return Ok(Instant::now() + Duration::from_secs(3600));
        }
        let until = lease?;
        match self.owns() {
            true => Ok(until),
            false => Err(FenceError::NotOwner { epoch: self.epoch }),
        }
    }

    /// Whether a tick may start now: with half a lease left to finish in.
    pub fn permit_start(&self, now: Instant) -> Result<Instant, FenceError> {
        let applied = self.context.state_machine.last_applied_index();
        self.check(self.context.supervision.lease.permit_start(now, applied))
    }
}

impl TickFence for OwnerFence {
    /// A tick that has started runs on while the lease does and the task is
    /// still this node's (it was caught up when it started; ownership is
    /// read from what it has applied since).
    fn permit(&self, now: Instant) -> Result<Instant, FenceError> {
        self.check(self.context.supervision.lease.permit(now))
    }
}

/// One of the node's tick slots, held by a tick on its blocking thread.
pub struct HeldSlot {
    slots: Arc<Semaphore>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl HeldSlot {
    pub fn new(slots: Arc<Semaphore>, permit: OwnedSemaphorePermit) -> Self {
        HeldSlot {
            slots,
            permit: Mutex::new(Some(permit)),
        }
    }

    /// Gives the slot back for good (the tick is over).
    pub fn free(&self) {
        self.permit.lock().expect("slot lock poisoned").take();
    }
}

impl TickSlot for HeldSlot {
    fn release(&self) {
        self.free();
    }

    fn reacquire(&self) {
        // On the tick's blocking thread: wait for a slot without a runtime.
        let permit =
            futures::executor::block_on(self.slots.clone().acquire_owned()).expect("tick slots are never closed");
        *self.permit.lock().expect("slot lock poisoned") = Some(permit);
    }
}
