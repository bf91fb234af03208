//! The events this node read off the entries it applied (see
//! [`crate::state::events`]), the newest [`KEPT`] of them, in memory.
//!
//! Every node applies the same log, so every node holds the same events
//! under the same numbers: a log index and a position within its entry. A
//! reader asks for the events after the last one it saw, from any node.
//!
//! An event's time is the proposal time its command carries, if it carries
//! one; otherwise the time this node applied it, when that is close to the
//! commit. Entries that were already in the log when this process started
//! are replayed, not new, and entries a node catches up on (its tick commits
//! were proposed long before) are old news: an event of theirs without its
//! own time has none, rather than the time this node got to it. A node that
//! starts from a snapshot, or installs one, starts its story after it, and
//! says so to readers whose place was before it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::state::events::Event;

/// Events kept per node.
pub const KEPT: usize = 4_096;
/// Longest text kept; a longer one (a long failure reason) is cut.
const MAX_TEXT_BYTES: usize = 1_024;

/// One event and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The log index of its entry, and its place among the entry's events.
    pub index: u64,
    pub position: u32,
    pub event: Event,
}

/// The events kept, oldest first, with what is known of those not kept.
#[derive(Default)]
struct Kept {
    events: VecDeque<Recorded>,
    /// The place of the newest event not kept here (pushed out, or before
    /// the snapshot this node started from or installed), if any.
    missing_through: Option<(u64, u32)>,
    /// The last log index events were read off (or a snapshot's), if any:
    /// an entry at or below it is not told again.
    told_through: Option<u64>,
}

/// A reader's page of events, and what it needs to go on from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<Recorded>,
    /// The place of the newest event this node no longer keeps, if any: a
    /// reader whose place is before it missed some.
    pub missing_through: Option<(u64, u32)>,
    /// The last log index events were read off here, if any: a reader with
    /// no event yet goes on after it (no event of it or before is to come).
    pub told_through: Option<u64>,
}

/// The newest events, oldest first.
#[derive(Default)]
pub struct EventLog {
    events: Mutex<Kept>,
    /// Entries below this index were in the log when the process started.
    fresh_from: AtomicU64,
}

impl EventLog {
    /// Entries up to `last`, the last in the log at start, are replays
    /// (`None`: the log was empty).
    pub fn set_replayed_until(&self, last: Option<u64>) {
        self.fresh_from.store(last.map_or(0, |l| l + 1), Ordering::Relaxed);
    }

    /// Tells nothing up to `index` (a snapshot's last entry, loaded or
    /// installed): what was kept goes, and readers from before it learn
    /// that they missed what it covers.
    pub fn continue_after(&self, index: u64) {
        let mut kept = self.events.lock().expect("event log lock poisoned");
        kept.events.clear();
        kept.missing_through = Some((index, u32::MAX));
        kept.told_through = Some(index);
    }

    /// Keeps the events of the entry at `index`, applied at `now_ms`
    /// (`None`: this node got to it long after it was proposed).
    pub fn record(&self, index: u64, events: Vec<Event>, now_ms: Option<u64>) {
        if events.is_empty() {
            return;
        }
        let replayed = index < self.fresh_from.load(Ordering::Relaxed);
        let mut kept = self.events.lock().expect("event log lock poisoned");
        // A log replayed again: an index seen before is not told twice.
        if kept.told_through.is_some_and(|told| index <= told) {
            return;
        }
        kept.told_through = Some(index);
        for (position, mut event) in events.into_iter().enumerate() {
            if event.at_ms.is_none() && !replayed {
                event.at_ms = now_ms;
            }
            cut(&mut event.text);
            kept.events.push_back(Recorded {
                index,
                position: position as u32,
                event,
            });
        }
        while kept.events.len() > KEPT {
            if let Some(gone) = kept.events.pop_front() {
                kept.missing_through = Some((gone.index, gone.position));
            }
        }
    }

    /// The events after (`index`, `position`), oldest first: at most
    /// `limit`, the oldest of them, so a reader pages forward.
    pub fn after(&self, index: u64, position: u32, limit: usize) -> Page {
        let kept = self.events.lock().expect("event log lock poisoned");
        let start = kept
            .events
            .partition_point(|r| (r.index, r.position) <= (index, position));
        kept.page(kept.events.range(start..).take(limit).cloned().collect())
    }

    /// The newest `limit` events, oldest first.
    pub fn newest(&self, limit: usize) -> Page {
        let kept = self.events.lock().expect("event log lock poisoned");
        let skip = kept.events.len().saturating_sub(limit);
        kept.page(kept.events.range(skip..).cloned().collect())
    }
}

impl Kept {
    fn page(&self, events: Vec<Recorded>) -> Page {
        Page {
            events,
            missing_through: self.missing_through,
            told_through: self.told_through,
        }
    }
}

fn cut(text: &mut String) {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut]");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::events::of_leader;

    fn leader(node: u64) -> Event {
        of_leader(node, 1)
    }

    #[test]
    fn readers_page_forward_from_their_cursor() {
        let log = EventLog::default();
        log.record(5, vec![leader(1)], Some(100));
        log.record(9, vec![leader(2), leader(3)], Some(200));
        let page = log.after(0, 0, 10);
        let all = page.events;
        assert_eq!(page.missing_through, None);
        assert_eq!(page.told_through, Some(9));
        assert_eq!(
            all.iter().map(|r| (r.index, r.position)).collect::<Vec<_>>(),
            [(5, 0), (9, 0), (9, 1)]
        );
        assert_eq!(all[1].event.at_ms, Some(200), "timed at apply");
        let next = log.after(9, 0, 10).events;
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].event.node, Some(3));
        let first = log.after(0, 0, 1).events;
        assert_eq!(first[0].index, 5, "a limit keeps the oldest, to page on");
        assert_eq!(log.newest(1).events[0].event.node, Some(3));
    }

    #[test]
    fn replayed_entries_have_no_time_but_their_own_and_are_told_once() {
        let log = EventLog::default();
        log.set_replayed_until(Some(10));
        let mut own = leader(1);
        own.at_ms = Some(42);
        log.record(7, vec![leader(1), own], Some(1_000));
        log.record(7, vec![leader(1)], Some(1_000));
        log.record(11, vec![leader(2)], Some(2_000));
        // Caught up on long after it was proposed.
        log.record(12, vec![leader(3)], None);
        let all = log.after(0, 0, 10).events;
        assert_eq!(
            all.iter().map(|r| r.event.at_ms).collect::<Vec<_>>(),
            [None, Some(42), Some(2_000), None]
        );
    }

    #[test]
    fn after_a_snapshot_the_story_starts_past_it_and_readers_before_it_learn_so() {
        let log = EventLog::default();
        let empty = log.after(0, 0, 10);
        assert_eq!(
            (empty.missing_through, empty.told_through),
            (None, None),
            "nothing told, nothing missed"
        );
        log.record(5, vec![leader(1)], Some(1));
        log.continue_after(40);
        let page = log.after(5, 0, 10);
        assert!(page.events.is_empty());
        assert_eq!(
            page.missing_through,
            Some((40, u32::MAX)),
            "a reader at 5 missed up to 40"
        );
        assert_eq!(page.told_through, Some(40), "a new reader goes on after it");
        log.record(30, vec![leader(2)], Some(2));
        assert!(
            log.after(0, 0, 10).events.is_empty(),
            "nothing from before the snapshot"
        );
        log.record(41, vec![leader(3)], Some(3));
        assert_eq!(log.after(5, 0, 10).events.len(), 1);
        assert_eq!(log.newest(10).told_through, Some(41));
    }

    #[test]
    fn only_the_newest_are_kept_and_long_texts_are_cut() {
        let log = EventLog::default();
        for index in 1..=(KEPT as u64 + 10) {
            log.record(index, vec![leader(1)], Some(index));
        }
        let page = log.after(0, 0, usize::MAX);
        assert_eq!(page.events.len(), KEPT);
        assert_eq!(page.events[0].index, 11);
        assert_eq!(page.missing_through, Some((10, 0)), "the newest pushed out");
        let mut long = leader(1);
        long.text = "x".repeat(5_000);
        log.record(100_000, vec![long], Some(1));
        assert!(log.newest(1).events[0].event.text.len() <= MAX_TEXT_BYTES + 6);
    }
}
