//! Local supervision's decision: after a failed tick, retry with backoff, or
//! give up when the task failed too often in its window (OTP's restart
//! intensity and period).

use std::collections::VecDeque;

use crate::state::tasks::RestartPolicy;

/// First retry delay; it doubles with each failure in the window.
const FIRST_BACKOFF_MS: u64 = 100;
/// Longest retry delay.
const MAX_BACKOFF_MS: u64 = 5_000;

/// What to do after a failed tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run the tick again after this many ms.
    Retry { after_ms: u64 },
    /// Too many failures in the window: mark the task failed.
    GiveUp { failures: usize },
}

/// The failures of one task within its restart window.
#[derive(Debug, Default)]
pub struct RestartTracker {
    failures_at_ms: VecDeque<u64>,
}

impl RestartTracker {
    /// Records a failure at `now_ms` and decides.
    pub fn record_failure(&mut self, now_ms: u64, policy: &RestartPolicy) -> Verdict {
        self.failures_at_ms.push_back(now_ms);
        while self
            .failures_at_ms
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) > policy.window_ms)
        {
            self.failures_at_ms.pop_front();
        }
        let failures = self.failures_at_ms.len();
        if failures > policy.max_restarts as usize {
            return Verdict::GiveUp { failures };
        }
        let shift = (failures - 1).min(16) as u32;
        Verdict::Retry {
            after_ms: (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RestartPolicy = RestartPolicy {
        max_restarts: 3,
        window_ms: 10_000,
    };

    #[test]
    fn failures_back_off_then_give_up_past_the_intensity() {
        let mut tracker = RestartTracker::default();
        let verdicts: Vec<Verdict> = (0..4).map(|i| tracker.record_failure(1_000 * i, &POLICY)).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::Retry { after_ms: 100 },
                Verdict::Retry { after_ms: 200 },
                Verdict::Retry { after_ms: 400 },
                Verdict::GiveUp { failures: 4 },
            ]
        );
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut tracker = RestartTracker::default();
        for i in 0..3 {
            tracker.record_failure(1_000 * i, &POLICY);
        }
        assert_eq!(
            tracker.record_failure(60_000, &POLICY),
            Verdict::Retry { after_ms: 100 }
        );
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RestartPolicy {
            max_restarts: 100,
            window_ms: u64::MAX,
        };
        let mut tracker = RestartTracker::default();
        let last = (0..20).map(|i| tracker.record_failure(i, &policy)).last().unwrap();
        assert_eq!(last, Verdict::Retry { after_ms: 5_000 });
    }
}
