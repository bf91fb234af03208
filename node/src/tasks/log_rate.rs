//! One log line per node and second, not one per task: when a node may not
//! tick (its lease ended, say), every one of its tasks finds out at once,
//! and 25,000 lines about the same cause hide everything else in the log
//! (and cost the CPU the node is short of).

use std::sync::atomic::{AtomicU64, Ordering};

/// Gaps between two lines of one kind.
const EVERY_MS: u64 = 1_000;

/// Counts events of one kind and says when to log them.
#[derive(Default)]
pub struct LogRate {
    /// When the last line was logged (ms since the epoch; 0: never).
    last_ms: AtomicU64,
    /// Events since then.
    since: AtomicU64,
}

impl LogRate {
    /// Counts one event at `now_ms`; returns how many happened since the
    /// last line when it is time for another (at most once per second).
    pub fn count(&self, now_ms: u64) -> Option<u64> {
        self.since.fetch_add(1, Ordering::Relaxed);
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms < last + EVERY_MS {
            return None;
        }
        self.last_ms
            .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| self.since.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_then_one_line_a_second_with_the_count() {
        let rate = LogRate::default();
        let t0 = 1_700_000_000_000;
        assert_eq!(rate.count(t0), Some(1));
        for i in 1..=500 {
            assert_eq!(rate.count(t0 + i), None);
        }
        assert_eq!(rate.count(t0 + 999), None);
        assert_eq!(rate.count(t0 + 1_000), Some(502), "the 501 held back and this one");
        assert_eq!(rate.count(t0 + 1_001), None);
    }
}
