//! This node's own lease: until when it may start ticks.
//!
//! A renewal acknowledged by the leader extends the lease to the time the
//! node *sent* it plus the lease, less a guard for clock-rate differences
//! between machines. The leader counts from when it *received* the renewal,
//! so this node always stops before the leader may move its tasks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Until when this node may start ticks.
#[derive(Debug)]
pub struct LocalLease {
    lease: Duration,
    guard: Duration,
    valid_until: Mutex<Option<Instant>>,
}

impl LocalLease {
    pub fn new(lease: Duration) -> Self {
        LocalLease {
            lease,
            guard: lease / 10,
            valid_until: Mutex::new(None),
        }
    }

    /// A renewal sent at `sent_at` was acknowledged.
    pub fn renewed(&self, sent_at: Instant) {
        let until = sent_at + self.lease - self.guard;
        let mut valid = self.valid_until.lock().expect("lease lock poisoned");
        *valid = Some(valid.map_or(until, |v| v.max(until)));
    }

    /// Whether a tick may start at `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.valid_until
            .lock()
            .expect("lease lock poisoned")
            .is_some_and(|until| now < until)
    }

    /// How long the lease still runs at `now` (zero when it has ended).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.valid_until
            .lock()
            .expect("lease lock poisoned")
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_runs_from_the_send_time_less_the_guard_and_never_shrinks() {
        let lease = LocalLease::new(Duration::from_millis(1000));
        let t0 = Instant::now();
        assert!(!lease.is_valid(t0), "no lease before the first renewal");
        lease.renewed(t0);
        assert!(lease.is_valid(t0 + Duration::from_millis(899)));
        assert!(!lease.is_valid(t0 + Duration::from_millis(900)));
        lease.renewed(t0 + Duration::from_millis(500));
        lease.renewed(t0 + Duration::from_millis(100));
        assert_eq!(
            lease.remaining(t0 + Duration::from_millis(1000)),
            Duration::from_millis(400)
        );
    }
}
