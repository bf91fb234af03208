//! How on time ticks are. Every node watches the tick commits it applies:
//! when each tick was due (the task's next due time before the commit) and
//! when this node applied its commit. Over a sliding window of
//! [`WINDOW_MS`] it keeps how many ticks committed and how late they were,
//! and `status` reports the leader's figures beside the ticks the schedules
//! ask for, so a cluster that cannot keep up with its demand says so
//! instead of falling silently behind.
//!
//! Lateness is measured at the commit, not at the start: a tick is on time
//! when its effect is committed by its due time plus the figure.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

/// The window the figures cover.
pub const WINDOW_MS: u64 = 10_000;
/// The window is kept in buckets of this many milliseconds.
const BUCKET_MS: u64 = 1_000;
/// Lateness above this is recorded as this (a tick an hour late is late).
const MAX_LATE_MS: u64 = 3_600_000;

/// Ticks committed over the window, and how late.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The time the figures cover: the window, or less just after start.
    pub window_ms: u64,
    pub committed: u64,
    /// Lateness of the ticks that had a due time (a task's first tick is
    /// due at once and has none), in ms.
    pub late_p50_ms: u64,
    pub late_p99_ms: u64,
    pub late_max_ms: u64,
}

impl Summary {
    /// Ticks committed per second over the window.
    pub fn committed_per_second(&self) -> f64 {
        if self.window_ms == 0 {
            return 0.0;
        }
        self.committed as f64 * 1000.0 / self.window_ms as f64
    }
}

struct Bucket {
    /// Which bucket of time: ms since the epoch / [`BUCKET_MS`].
    slot: u64,
    committed: u64,
    late_ms: Histogram<u64>,
}

/// The sliding window of tick commits one node applied.
pub struct Timeliness {
    /// When this node began to count (ms since the epoch).
    since_ms: u64,
    /// Oldest first.
    buckets: VecDeque<Bucket>,
}

impl Timeliness {
    pub fn new(now_ms: u64) -> Timeliness {
        Timeliness {
            since_ms: now_ms,
            buckets: VecDeque::new(),
        }
    }

    /// A tick committed at `applied_ms` that was due at `due_ms` (0: at
    /// once, with no time to be late from).
    pub fn record(&mut self, due_ms: u64, applied_ms: u64) {
        let slot = applied_ms / BUCKET_MS;
        if self.buckets.back().is_none_or(|b| b.slot < slot) {
            self.buckets.push_back(Bucket {
                slot,
                committed: 0,
                late_ms: Histogram::new_with_max(MAX_LATE_MS, 2).expect("histogram bounds are valid"),
            });
        }
        let window_slots = WINDOW_MS / BUCKET_MS;
        while self.buckets.front().is_some_and(|b| b.slot + window_slots <= slot) {
            self.buckets.pop_front();
        }
        // The clock may step back: such a tick counts in the newest bucket.
        let bucket = self.buckets.back_mut().expect("a bucket was just ensured");
        bucket.committed += 1;
        if due_ms > 0 {
            bucket
                .late_ms
                .saturating_record(applied_ms.saturating_sub(due_ms).min(MAX_LATE_MS));
        }
    }

    /// The figures for the window ending at `now_ms`: its whole buckets
    /// and the current one.
    pub fn summary(&self, now_ms: u64) -> Summary {
        let slot = now_ms / BUCKET_MS;
        let window_slots = WINDOW_MS / BUCKET_MS;
        let first_slot = (slot + 1).saturating_sub(window_slots);
        let mut late = Histogram::<u64>::new_with_max(MAX_LATE_MS, 2).expect("histogram bounds are valid");
        let mut committed = 0;
        for bucket in self.buckets.iter().filter(|b| b.slot >= first_slot && b.slot <= slot) {
            committed += bucket.committed;
            late.add(&bucket.late_ms).expect("histograms of one shape");
        }
        let window_start = (first_slot * BUCKET_MS).max(self.since_ms);
        let quantile = |q| if late.is_empty() { 0 } else { late.value_at_quantile(q) };
        Summary {
            window_ms: now_ms.saturating_sub(window_start),
            committed,
            late_p50_ms: quantile(0.5),
            late_p99_ms: quantile(0.99),
            late_max_ms: if late.is_empty() { 0 } else { late.max() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn counts_the_ticks_of_the_window_and_how_late_they_were() {
        let mut t = Timeliness::new(T0);
        for i in 0..100 {
            // Due every 100 ms; the last one 40 ms late, the rest 2 ms.
            let due = T0 + i * 100;
            t.record(due, due + if i == 99 { 40 } else { 2 });
        }
        let s = t.summary(T0 + 9_999);
        assert_eq!(s.committed, 100);
        assert_eq!(s.window_ms, 9_999);
        assert!((s.committed_per_second() - 10.0).abs() < 0.01);
        // A second later the first second's ticks have left the window.
        let later = t.summary(T0 + 10_999);
        assert_eq!((later.committed, later.window_ms), (90, 9_999));
        assert_eq!((s.late_p50_ms, s.late_max_ms), (2, 40));
        assert_eq!(s.late_p99_ms, 2, "one tick in a hundred is above the 99th percentile");
    }

    #[test]
    fn ticks_older_than_the_window_drop_out() {
        let mut t = Timeliness::new(T0);
        t.record(T0, T0 + 500);
        t.record(T0 + 15_000, T0 + 15_001);
        let s = t.summary(T0 + 15_500);
        assert_eq!(s.committed, 1);
        assert_eq!(s.late_max_ms, 1);
        // And with nothing since, the figures go to zero.
        let quiet = t.summary(T0 + 60_000);
        assert_eq!((quiet.committed, quiet.late_p99_ms, quiet.late_max_ms), (0, 0, 0));
        assert_eq!(quiet.committed_per_second(), 0.0);
    }

    #[test]
    fn just_after_start_the_window_is_the_time_since() {
        let mut t = Timeliness::new(T0 + 200);
        for i in 0..30 {
            t.record(0, T0 + 300 + i * 100);
        }
        let s = t.summary(T0 + 3_200);
        assert_eq!(s.window_ms, 3_000);
        assert_eq!(s.committed, 30);
        assert_eq!(s.committed_per_second(), 10.0);
        // First ticks have no due time: counted, never late.
        assert_eq!((s.late_p50_ms, s.late_max_ms), (0, 0));
    }

    #[test]
    fn a_tick_committed_before_its_due_time_is_not_late_and_hours_late_is_capped() {
        let mut t = Timeliness::new(T0);
        t.record(T0 + 5_000, T0 + 1_000);
        t.record(T0 + 1_000 - 5 * MAX_LATE_MS, T0 + 1_000);
        let s = t.summary(T0 + 2_000);
        assert_eq!(s.committed, 2);
        assert_eq!(s.late_p50_ms, 0);
        assert!(s.late_max_ms >= MAX_LATE_MS && s.late_max_ms <= MAX_LATE_MS * 101 / 100);
    }
}
