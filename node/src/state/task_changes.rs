//! The names of the tasks whose placement changed (owner, epoch, status or
//! hand-off), in the order they changed: the runner reads what changed since
//! its last look instead of every task, many times a second.
//!
//! This is derived data, local to one node: it is not replicated and not in
//! snapshots. A table built anew (at start, from a snapshot) starts a new
//! generation, and a reader whose cursor belongs to another generation, or
//! fell further behind than the log keeps, must look at every task once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many changes the log keeps: several rounds of placement's moves. A
/// lost node's tasks, up to tens of thousands, start a new generation
/// instead ([`TaskChanges::note_all`]); a reader further behind looks at
/// every task once.
const CAPACITY: usize = 1 << 14;

/// Where a reader of [`TaskChanges`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    generation: u64,
    seq: u64,
}

impl Cursor {
    /// A cursor no log matches: its first read is a full scan.
    pub const START: Cursor = Cursor { generation: 0, seq: 0 };
}

/// The recent changes, numbered.
#[derive(Debug)]
pub struct TaskChanges {
    generation: u64,
    /// The number of the last change noted.
    seq: u64,
    /// The last changes, oldest first: `recent[i]` is change `seq - len + 1 + i`.
    recent: VecDeque<String>,
    capacity: usize,
}

/// A copy of a table (a snapshot is built from one) starts a generation of
/// its own, empty: its readers look at every task once, and the copy does
/// not carry thousands of names it has no reader for.
impl Clone for TaskChanges {
    fn clone(&self) -> Self {
        TaskChanges::with_capacity(self.capacity)
    }
}

impl Default for TaskChanges {
    fn default() -> Self {
        TaskChanges::with_capacity(CAPACITY)
    }
}

/// What a reader has to look at.
#[derive(Debug, PartialEq, Eq)]
pub enum Since<'a> {
    /// These tasks changed (a name may appear more than once).
    Changed(Vec<&'a str>),
    /// The cursor is from another generation or too far behind: every task.
    Everything,
}

impl TaskChanges {
    fn with_capacity(capacity: usize) -> TaskChanges {
        static GENERATIONS: AtomicU64 = AtomicU64::new(1);
        TaskChanges {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            seq: 0,
            recent: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn note(&mut self, task: &str) {
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(task.to_string());
        self.seq += 1;
    }

    /// Notes that very many tasks changed at once: rather than their names,
    /// the log starts a new generation, and every reader looks at every task
    /// once, which costs it what reading that many names would.
    pub(crate) fn note_all(&mut self) {
        *self = TaskChanges::with_capacity(self.capacity);
    }

    /// The cursor just past the last change.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            generation: self.generation,
            seq: self.seq,
        }
    }

    /// The changes after `cursor`.
    pub fn since(&self, cursor: Cursor) -> Since<'_> {
        let oldest_kept = self.seq - self.recent.len() as u64;
        if cursor.generation != self.generation || cursor.seq < oldest_kept || cursor.seq > self.seq {
            return Since::Everything;
        }
        let skip = (cursor.seq - oldest_kept) as usize;
        Since::Changed(self.recent.iter().skip(skip).map(String::as_str).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_gets_what_changed_after_its_cursor() {
        let mut log = TaskChanges::default();
        assert_eq!(log.since(Cursor::START), Since::Everything);
        let start = log.cursor();
        assert_eq!(log.since(start), Since::Changed(vec![]));
        log.note("a");
        let middle = log.cursor();
        log.note("b");
        log.note("a");
        assert_eq!(log.since(start), Since::Changed(vec!["a", "b", "a"]));
        assert_eq!(log.since(middle), Since::Changed(vec!["b", "a"]));
        assert_eq!(log.since(log.cursor()), Since::Changed(vec![]));
    }

    #[test]
    fn a_reader_too_far_behind_or_from_another_table_looks_at_everything() {
        let mut log = TaskChanges::with_capacity(2);
        let start = log.cursor();
        log.note("a");
        let after_a = log.cursor();
        log.note("b");
        assert_eq!(log.since(start), Since::Changed(vec!["a", "b"]));
        log.note("c");
        assert_eq!(log.since(start), Since::Everything);
        assert_eq!(log.since(after_a), Since::Changed(vec!["b", "c"]));
        let other = TaskChanges::default();
        assert_eq!(other.since(log.cursor()), Since::Everything);
        assert_eq!(log.since(other.cursor()), Since::Everything);
        let copy = log.clone();
        assert_eq!(copy.since(log.cursor()), Since::Everything);
        assert_eq!(copy.since(copy.cursor()), Since::Changed(vec![]));
        let before = log.cursor();
        log.note_all();
        assert_eq!(log.since(before), Since::Everything);
        assert_eq!(log.since(log.cursor()), Since::Changed(vec![]));
    }
}
