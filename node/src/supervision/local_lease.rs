//! This node's own lease: until when it may run ticks, and how far it must
//! have applied the log before it trusts what it owns.
//!
//! A renewal acknowledged by the leader extends the lease to the time the
//! node *sent* it plus the lease, less a guard for clock-rate differences
//! between machines. The leader counts from when it *received* the renewal,
//! so this node always stops before the leader may move its tasks.
//!
//! Each acknowledgement also carries the leader's commit index, sent once
//! the leader has committed an entry of its own term. Anything decided
//! about this node before (say, a previous leader moving its tasks while it
//! was frozen) is at or below that index, so a node that has not applied
//! that far may hold a stale view of what it owns and starts nothing until
//! it has.
//!
//! A tick *starts* only with at least half a lease left (a node that has
//! missed half a lease of renewals is in trouble and starts nothing new)
//! and the log applied that far, and *runs* only while the lease does.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::runtime::FenceError;

/// What the renewals acknowledged so far grant.
#[derive(Debug, Default, Clone, Copy)]
struct Grant {
    until: Option<Instant>,
    required_index: u64,
}

/// Until when this node may run ticks.
#[derive(Debug)]
pub struct LocalLease {
    lease: Duration,
    guard: Duration,
    grant: Mutex<Grant>,
    /// Wakes every waiter when a renewal is acknowledged.
    renewals: Notify,
    /// Wakes every waiter once the log is applied as far as the lease
    /// requires.
    caught_up: Notify,
}

impl LocalLease {
    pub fn new(lease: Duration) -> Self {
        LocalLease {
            lease,
            guard: lease / 10,
            grant: Mutex::new(Grant::default()),
            renewals: Notify::new(),
            caught_up: Notify::new(),
        }
    }

    fn grant(&self) -> Grant {
        *self.grant.lock().expect("lease lock poisoned")
    }

    /// A renewal sent at `sent_at` was acknowledged by a leader whose log
    /// ended at `required_index`.
    pub fn renewed(&self, sent_at: Instant, required_index: u64) {
        let until = sent_at + self.lease - self.guard;
        let mut grant = self.grant.lock().expect("lease lock poisoned");
        grant.until = Some(grant.until.map_or(until, |v| v.max(until)));
        grant.required_index = grant.required_index.max(required_index);
        drop(grant);
        self.renewals.notify_waiters();
    }

    /// Completes at the next acknowledged renewal after this call: what a
    /// worker held back by its fence waits for, rather than polling (25,000
    /// workers of a node whose lease lapsed, polling every few milliseconds,
    /// would starve the renewals they wait for).
    pub fn next_renewal(&self) -> tokio::sync::futures::Notified<'_> {
        self.renewals.notified()
    }

    /// The log is applied up to `applied` (one node-wide watch calls this
    /// after every apply): wakes the workers waiting to catch up once it
    /// reaches the required index.
    pub fn applied(&self, applied: u64) {
        if applied >= self.required_index() {
            self.caught_up.notify_waiters();
        }
    }

    /// Completes at the first [`applied`](Self::applied) after this call
    /// that reaches the required index: what a worker held back by
    /// `CatchingUp` waits for. Polling would cost a loaded node's thousands
    /// of workers the CPU the apply they wait for needs; waiting on the
    /// applied index itself would wake them all at every apply. Enable the
    /// future, then look at the applied index again, before awaiting it: an
    /// apply in between is otherwise missed.
    pub fn caught_up(&self) -> tokio::sync::futures::Notified<'_> {
        self.caught_up.notified()
    }

    /// Whether the lease runs at `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.grant().until.is_some_and(|until| now < until)
    }

    /// How long the lease still runs at `now` (zero when it has ended).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.grant()
            .until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// How far this node must have applied the log before it may tick.
    pub fn required_index(&self) -> u64 {
        self.grant().required_index
    }

    /// Until when a tick that has started may go on running at `now`.
    pub fn permit(&self, now: Instant) -> Result<Instant, FenceError> {
        self.grant()
            .until
            .filter(|until| now < *until)
            .ok_or(FenceError::LeaseEnded)
    }

    /// Whether a tick may *start* at `now`, with the log applied up to
    /// `applied`: the lease runs with at least half a lease left to finish
    /// in, and the log is applied as far as the last renewal said (so what
    /// this node believes it owns is not stale).
    pub fn permit_start(&self, now: Instant, applied: u64) -> Result<Instant, FenceError> {
        let until = self.permit(now)?;
        let required = self.required_index();
        if applied < required {
            return Err(FenceError::CatchingUp { applied, required });
        }
        match until.saturating_duration_since(now) >= self.lease / 2 {
            true => Ok(until),
            false => Err(FenceError::LeaseEnded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_lease_runs_from_the_send_time_less_the_guard_and_never_shrinks() {
        let lease = LocalLease::new(ms(1000));
        let t0 = Instant::now();
        assert!(!lease.is_valid(t0), "no lease before the first renewal");
        lease.renewed(t0, 0);
        assert!(lease.is_valid(t0 + ms(899)));
        assert!(!lease.is_valid(t0 + ms(900)));
        lease.renewed(t0 + ms(500), 0);
        lease.renewed(t0 + ms(100), 0);
        assert_eq!(lease.remaining(t0 + ms(1000)), ms(400));
    }

    #[test]
    fn nothing_may_tick_before_the_log_is_applied_as_far_as_the_renewal_said() {
        let lease = LocalLease::new(ms(1000));
        let t0 = Instant::now();
        lease.renewed(t0, 42);
        assert_eq!(
            lease.permit_start(t0, 41),
            Err(FenceError::CatchingUp {
                applied: 41,
                required: 42
            })
        );
        assert_eq!(lease.permit_start(t0, 42), Ok(t0 + ms(900)));
        assert!(lease.permit(t0).is_ok(), "a tick already running is not stopped by it");
        lease.renewed(t0 + ms(10), 7);
        assert_eq!(lease.required_index(), 42, "the required index never goes back");
    }

    #[tokio::test]
    async fn waiters_wake_once_the_log_is_applied_as_far_as_the_lease_requires() {
        use std::future::Future;
        use std::pin::pin;
        use std::task::{Context, Poll, Waker};

        let lease = LocalLease::new(ms(1000));
        lease.renewed(Instant::now(), 42);
        let mut waiting = pin!(lease.caught_up());
        waiting.as_mut().enable();
        let mut cx = Context::from_waker(Waker::noop());
        lease.applied(41);
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Pending, "41 is short of 42");
        lease.applied(42);
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(()));
        let mut later = pin!(lease.caught_up());
        later.as_mut().enable();
        lease.renewed(Instant::now(), 50);
        lease.applied(45);
        assert_eq!(
            later.as_mut().poll(&mut cx),
            Poll::Pending,
            "the renewal raised the index to 50"
        );
    }

    #[test]
    fn a_tick_starts_only_with_half_a_lease_left_and_runs_only_while_it_lasts() {
        let lease = LocalLease::new(ms(1000));
        let t0 = Instant::now();
        lease.renewed(t0, 0);
        assert!(lease.permit_start(t0 + ms(400), 0).is_ok(), "500 ms left");
        assert_eq!(lease.permit_start(t0 + ms(401), 0), Err(FenceError::LeaseEnded));
        assert!(lease.permit(t0 + ms(899)).is_ok(), "a started tick runs on");
        assert_eq!(lease.permit(t0 + ms(900)), Err(FenceError::LeaseEnded));
    }
}
