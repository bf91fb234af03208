//! The newest entries of the Raft log, in memory.
//!
//! An appended entry is readable from here at once, before the writer
//! thread has stored it (see [`super::log_writer`]), so `append` returns
//! without touching the database. The entries that replication and the
//! state machine read back a moment later, to send and to apply, come from
//! here too, without a read transaction and a decode. Stored entries leave
//! the tail once it holds more than its budget; they are in the database
//! by then.
//!
//! The tail covers the indexes from `first` on: a reader takes those from
//! here and only the ones below `first` from the database, so an entry
//! truncated or purged here is never read back from the database while the
//! writer has yet to remove it there.

use std::collections::VecDeque;

use openraft::entry::RaftEntry;

use crate::types::typ::{Entry, LogId};

/// Stored entries leave once the tail holds more than this many bytes (as
/// stored; decoded they take a few times as much)...
const KEEP_BYTES: u64 = 256 << 10;
/// ...or this many entries. Replication and the state machine read an
/// entry back within milliseconds of its append; a follower further behind
/// reads the database. (16 MiB here cost 20 KiB per task at 2,000 tasks,
/// and 1 MiB about 1 KiB per task at 10,000.)
const KEEP_ENTRIES: usize = 128;

/// An entry of the tail.
#[derive(Debug, Clone)]
struct Kept {
    entry: Entry,
    /// Its size as stored, for the replication budget.
    bytes: u64,
    /// Whether the writer has stored it.
    stored: bool,
}

/// The tail: entries `first..first + entries.len()`, contiguous.
#[derive(Debug)]
pub(crate) struct LogTail {
    first: u64,
    entries: VecDeque<Kept>,
    /// The stored sizes of `entries`, summed.
    bytes: u64,
}

/// What a read found in the tail: its entries of the range, oldest first,
/// each with its stored size, and the tail's first index then. The range's
/// indexes below `first` are the database's to give.
#[derive(Debug)]
pub(crate) struct TailRead {
    pub(crate) entries: Vec<(Entry, u64)>,
    pub(crate) first: u64,
}

impl LogTail {
    /// An empty tail over a log whose next index is `next`.
    pub(crate) fn new(next: u64) -> LogTail {
        LogTail {
            first: next,
            entries: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The next index the log expects.
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The newest entry's id, if the tail holds any.
    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|k| k.entry.log_id())
    }

    /// Appends entries (with their stored sizes), which follow the newest.
    /// openraft appends after the last entry, having truncated any it
    /// replaces; an entry that does not follow is a bug, refused.
    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = (Entry, u64)>) -> Result<(), String> {
        for (entry, bytes) in entries {
            let index = entry.index();
            if self.entries.is_empty() && index > self.first {
                // An empty log may start past its first index (openraft's
                // storage suite appends entry 1 to an empty log): a reader
                // finds nothing below it, never something stale.
                self.first = index;
            }
            if index != self.next() {
                return Err(format!(
                    "log entry {index} appended where entry {} was expected",
                    self.next()
                ));
            }
            self.bytes += bytes;
            self.entries.push_back(Kept {
                entry,
                bytes,
                stored: false,
            });
        }
        Ok(())
    }

    /// The writer stored these entries: they may leave the tail. An entry
    /// replaced meanwhile (truncated, then appended anew) is not the one
    /// stored, and stays until its own turn.
    pub(crate) fn stored(&mut self, ids: &[LogId]) {
        for id in ids {
            if let Some(kept) = id
                .index()
                .checked_sub(self.first)
                .and_then(|i| self.entries.get_mut(i as usize))
                && kept.entry.log_id() == *id
            {
                kept.stored = true;
            }
        }
        while (self.bytes > KEEP_BYTES || self.entries.len() > KEEP_ENTRIES)
            && self.entries.front().is_some_and(|k| k.stored)
        {
            let gone = self.entries.pop_front().expect("not empty");
            self.bytes -= gone.bytes;
            self.first += 1;
        }
    }

    /// Removes the entries from `from` on.
    pub(crate) fn truncate(&mut self, from: u64) {
        while self.next() > from.max(self.first) {
            let gone = self.entries.pop_back().expect("next > first");
            self.bytes -= gone.bytes;
        }
        if self.entries.is_empty() {
            self.first = self.first.min(from);
        }
    }

    /// Removes the entries up to `upto`, inclusive.
    pub(crate) fn purge(&mut self, upto: u64) {
        while self.first <= upto {
            match self.entries.pop_front() {
                Some(gone) => {
                    self.bytes -= gone.bytes;
                    self.first += 1;
                }
                None => {
                    self.first = upto + 1;
                }
            }
        }
    }

    /// The entries of `start..=end` (`None`: to the newest) that the tail
    /// holds, oldest first: the first always, the rest while they fit in
    /// `budget` bytes.
    pub(crate) fn read(&self, start: u64, end: Option<u64>, budget: u64) -> TailRead {
        let skip = start.saturating_sub(self.first) as usize;
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        for kept in self.entries.iter().skip(skip) {
            let size = kept.bytes;
            if end.is_some_and(|end| kept.entry.index() > end) || !(entries.is_empty() || bytes + size <= budget) {
                break;
            }
            bytes += size;
            entries.push((kept.entry.clone(), size));
        }
        TailRead {
            entries,
            first: self.first,
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderIdExt;

    use super::*;
    use crate::types::{Command, TypeConfig};

    fn entry(term: u64, index: u64) -> (Entry, u64) {
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(term, 1);
        let put = Command::Put {
            key: format!("k{index}"),
            value: vec![1],
        };
        (Entry::new_normal(LogId::new(leader, index), put), 10)
    }

    fn indexes(read: &TailRead) -> Vec<u64> {
        read.entries.iter().map(|(e, _)| e.index()).collect()
    }

    #[test]
    fn appended_entries_are_read_from_the_tail_and_the_rest_from_below_it() {
        let mut tail = LogTail::new(5);
        tail.append((5..=9).map(|i| entry(1, i))).unwrap();
        let read = tail.read(3, Some(7), u64::MAX);
        assert_eq!((indexes(&read), read.first), (vec![5, 6, 7], 5));
        assert_eq!(indexes(&tail.read(8, None, u64::MAX)), vec![8, 9]);
        assert_eq!(indexes(&tail.read(10, None, u64::MAX)), Vec::<u64>::new());
        // The budget: the first always, the rest while they fit.
        assert_eq!(indexes(&tail.read(5, None, 25)), vec![5, 6]);
        assert_eq!(indexes(&tail.read(5, None, 1)), vec![5]);
        assert_eq!(tail.last_log_id(), Some(entry(1, 9).0.log_id()));
        assert!(tail.append([entry(1, 11)]).is_err(), "a gap is refused");
    }

    #[test]
    fn only_stored_entries_leave_and_only_beyond_the_budget() {
        let mut tail = LogTail::new(1);
        let n = KEEP_ENTRIES as u64 + 10;
        tail.append((1..=n).map(|i| entry(1, i))).unwrap();
        tail.stored(&[]);
        assert_eq!(tail.first, 1, "nothing stored, nothing leaves");
        let ids: Vec<LogId> = (1..=5).map(|i| entry(1, i).0.log_id()).collect();
        tail.stored(&ids);
        assert_eq!(tail.first, 6, "the stored ones leave, oldest first");
        let rest: Vec<LogId> = (6..=n).map(|i| entry(1, i).0.log_id()).collect();
        tail.stored(&rest);
        assert_eq!(tail.entries.len(), KEEP_ENTRIES);
        assert_eq!(tail.first, n + 1 - KEEP_ENTRIES as u64);
    }

    #[test]
    fn a_replaced_entry_is_not_taken_for_the_one_stored() {
        let mut tail = LogTail::new(1);
        tail.append((1..=3).map(|i| entry(1, i))).unwrap();
        let old_third = entry(1, 3).0.log_id();
        tail.truncate(3);
        assert_eq!(tail.last_log_id(), Some(entry(1, 2).0.log_id()));
        tail.append([entry(2, 3)]).unwrap();
        tail.stored(&[old_third]);
        assert!(!tail.entries[2].stored);
        assert_eq!(
            tail.read(3, None, u64::MAX).entries[0].0.log_id(),
            entry(2, 3).0.log_id()
        );
    }

    #[test]
    fn truncation_and_purge_below_the_tail_move_its_start() {
        let mut tail = LogTail::new(10);
        tail.append((10..=12).map(|i| entry(1, i))).unwrap();
        // A truncation below the tail: the database's entries from 7 on are
        // gone too, so the tail covers them (and holds none).
        tail.truncate(7);
        assert_eq!((tail.first, tail.entries.len(), tail.bytes), (7, 0, 0));
        tail.append([entry(2, 7)]).unwrap();
        // A purge past the newest (a snapshot installed): the log goes on
        // after it.
        tail.purge(20);
        assert_eq!((tail.first, tail.entries.len()), (21, 0));
        tail.append([entry(3, 21)]).unwrap();
        tail.purge(5);
        assert_eq!(tail.first, 21, "a purge below the tail changes nothing");
        assert_eq!(indexes(&tail.read(0, None, u64::MAX)), vec![21]);
    }
}
