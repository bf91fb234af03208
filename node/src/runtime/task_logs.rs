//! The lines task modules log, kept by the node that ran them so that
//! `batonctl tasks logs` and a task's page can show them: a bounded ring per
//! task, and a bound on all of them together.
//!
//! Lines are never replicated: they stay on the node whose tick logged them,
//! and a task that moves starts a new ring on its new owner (its old owner
//! keeps the old lines until they are pushed out). Each line has a number
//! unique on this node and rising, also across restarts (numbers start from
//! the clock), so a reader asks for the lines after the last one it saw.
//!
//! The bounds count what a line costs in memory ([`LINE_COST`] besides its
//! text), so that many short lines cannot outgrow them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// Longest line kept; a longer one is cut there (on a character boundary)
/// and marked.
pub const MAX_LINE_BYTES: usize = 2 * 1024;
/// Lines kept per task, newest last.
pub const LINES_PER_TASK: usize = 200;
/// Bytes kept per task (text and [`LINE_COST`] each).
pub const BYTES_PER_TASK: usize = 64 * 1024;
/// What a line costs besides its text: the line itself, its place in the
/// ring, and the allocator's share.
pub const LINE_COST: usize = std::mem::size_of::<LogLine>() + 16;
/// What a task's ring costs besides its lines: its name, kept twice, and
/// its entries in the maps.
const RING_COST: usize = 128;
/// Bytes kept for all tasks together: past it, the tasks that logged least
/// recently lose their lines first.
pub const BYTES_PER_NODE: usize = 64 * 1024 * 1024;

/// How serious a line is, as the module said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One line a task's module logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Unique on this node and rising: the reader's cursor.
    pub seq: u64,
    /// When it was logged, in ms since the epoch (this node's clock).
    pub at_ms: u64,
    pub level: LogLevel,
    /// The tick that logged it, and the epoch it ran at.
    pub tick: u64,
    pub epoch: u64,
    pub message: String,
}

/// Lines of one task.
#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    /// What its lines cost (see [`cost`]).
    bytes: usize,
}

/// What keeping `line` costs.
fn cost(line: &LogLine) -> usize {
    line.message.len() + LINE_COST
}

#[derive(Default)]
struct Inner {
    rings: HashMap<String, Ring>,
    /// Each task by the number of its newest line: the least recent first.
    by_recency: BTreeMap<u64, String>,
    bytes: usize,
    next_seq: u64,
}

/// The rings of every task that logged on this node.
pub struct TaskLogs {
    inner: Mutex<Inner>,
    /// Bytes kept for all tasks together.
    node_bytes: usize,
}

impl Default for TaskLogs {
    fn default() -> Self {
        TaskLogs::with_capacity(BYTES_PER_NODE)
    }
}

impl TaskLogs {
    /// Rings holding at most `node_bytes` of messages together.
    pub fn with_capacity(node_bytes: usize) -> Self {
        TaskLogs {
            inner: Mutex::new(Inner {
                // Above any number an earlier run of this node gave (it gave
                // fewer than 65,536 a millisecond).
                next_seq: crate::types::now_ms() << 16,
                ..Inner::default()
            }),
            node_bytes,
        }
    }

    /// Keeps a line task `task` logged at `at_ms`, in tick `tick` of epoch
    /// `epoch`.
    pub fn push(&self, task: &str, at_ms: u64, level: LogLevel, tick: u64, epoch: u64, message: &str) {
        let message = cut(message);
        let mut guard = self.inner.lock().expect("task logs lock poisoned");
        let inner = &mut *guard;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let line = LogLine {
            seq,
            at_ms,
            level,
            tick,
            epoch,
            message,
        };
        let bytes = cost(&line);
        let new_ring = !inner.rings.contains_key(task);
        let ring = inner.rings.entry(task.to_string()).or_default();
        let newest_before = ring.lines.back().map(|l| l.seq);
        ring.lines.push_back(line);
        ring.bytes += bytes;
        let mut freed = 0;
        while ring.lines.len() > LINES_PER_TASK || (ring.bytes > BYTES_PER_TASK && ring.lines.len() > 1) {
            let Some(old) = ring.lines.pop_front() else { break };
            ring.bytes -= cost(&old);
            freed += cost(&old);
        }
        inner.bytes = inner.bytes + bytes + if new_ring { RING_COST } else { 0 } - freed;
        if let Some(before) = newest_before {
            inner.by_recency.remove(&before);
        }
        inner.by_recency.insert(seq, task.to_string());
        // Over the node's bound: whole rings go, least recent first (never
        // the one just written to).
        while inner.bytes > self.node_bytes {
            let Some((&oldest, _)) = inner.by_recency.first_key_value() else {
                break;
            };
            if oldest == seq {
                break;
            }
            let name = inner.by_recency.remove(&oldest).expect("the key just read");
            if let Some(ring) = inner.rings.remove(&name) {
                inner.bytes -= ring.bytes + RING_COST;
            }
        }
    }

    /// Task `task`'s lines numbered above `after`, oldest first, at most
    /// `limit` of them (the newest of those above `after`).
    pub fn read(&self, task: &str, after: u64, limit: usize) -> Vec<LogLine> {
        let inner = self.inner.lock().expect("task logs lock poisoned");
        let Some(ring) = inner.rings.get(task) else {
            return Vec::new();
        };
        let newer = ring.lines.iter().filter(|l| l.seq > after);
        let skip = newer.clone().count().saturating_sub(limit);
        newer.skip(skip).cloned().collect()
    }

    /// Forgets task `task`'s lines (it was removed from the cluster).
    pub fn forget(&self, task: &str) {
        let mut guard = self.inner.lock().expect("task logs lock poisoned");
        let inner = &mut *guard;
        if let Some(ring) = inner.rings.remove(task) {
            inner.bytes -= ring.bytes + RING_COST;
            if let Some(newest) = ring.lines.back() {
                inner.by_recency.remove(&newest.seq);
            }
        }
    }

    /// What the lines kept cost (see [`LINE_COST`]), and tasks with lines.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("task logs lock poisoned");
        (inner.bytes, inner.rings.len())
    }
}

/// `message`, cut to [`MAX_LINE_BYTES`] at a character boundary, marked as cut.
fn cut(message: &str) -> String {
    if message.len() <= MAX_LINE_BYTES {
        return message.to_string();
    }
    const MARK: &str = " [cut]";
    let mut end = MAX_LINE_BYTES - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(logs: &TaskLogs, task: &str, tick: u64, message: &str) {
        logs.push(task, 1_000 + tick, LogLevel::Info, tick, 1, message);
    }

    #[test]
    fn a_reader_gets_the_lines_after_its_cursor_oldest_first() {
        let logs = TaskLogs::default();
        push(&logs, "a", 1, "one");
        push(&logs, "b", 1, "other task");
        push(&logs, "a", 2, "two");
        let all = logs.read("a", 0, 100);
        assert_eq!(
            all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert!(all[0].seq < all[1].seq);
        let after = logs.read("a", all[0].seq, 100);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].message, "two");
        assert!(logs.read("a", all[1].seq, 100).is_empty());
        assert!(logs.read("nobody", 0, 100).is_empty());
    }

    #[test]
    fn a_limit_keeps_the_newest_lines() {
        let logs = TaskLogs::default();
        for tick in 1..=10 {
            push(&logs, "a", tick, &format!("line {tick}"));
        }
        let last = logs.read("a", 0, 3);
        assert_eq!(
            last.iter().map(|l| l.tick).collect::<Vec<_>>(),
            [8, 9, 10],
            "the newest three, oldest first"
        );
    }

    #[test]
    fn a_task_keeps_at_most_its_lines_and_bytes() {
        let logs = TaskLogs::default();
        for tick in 1..=(LINES_PER_TASK as u64 + 50) {
            push(&logs, "a", tick, "x");
        }
        let kept = logs.read("a", 0, usize::MAX);
        assert_eq!(kept.len(), LINES_PER_TASK);
        assert_eq!(kept[0].tick, 51, "the oldest went first");

        let big = "y".repeat(MAX_LINE_BYTES);
        for tick in 1..=100 {
            push(&logs, "b", tick, &big);
        }
        let kept_b = logs.read("b", 0, usize::MAX);
        let cost_b: usize = kept_b.iter().map(cost).sum();
        assert!(cost_b <= BYTES_PER_TASK);
        assert_eq!(kept_b.last().map(|l| l.tick), Some(100));
        let (bytes, tasks) = logs.usage();
        assert_eq!(tasks, 2);
        assert_eq!(
            bytes,
            kept.iter().map(cost).sum::<usize>() + cost_b + 2 * RING_COST,
            "the count follows what is kept"
        );
        // Empty lines cost memory too: the bound counts them.
        for tick in 1..=1_000 {
            push(&logs, "c", tick, "");
        }
        assert_eq!(
            logs.read("c", 0, usize::MAX).len(),
            LINES_PER_TASK.min(BYTES_PER_TASK / LINE_COST)
        );
    }

    #[test]
    fn past_the_node_bound_the_least_recent_tasks_lose_their_lines() {
        let line = |text: usize| text + LINE_COST;
        // Room for "old"'s two lines and "new"'s one, with their rings.
        let logs = TaskLogs::with_capacity(line(4) + line(2) + line(4) + 2 * RING_COST);
        push(&logs, "old", 1, "aaaa");
        push(&logs, "mid", 1, "bbbb");
        push(&logs, "old", 2, "cc"); // "old" is now the most recent
        push(&logs, "new", 1, "dddd"); // over the bound: "mid" goes
        assert!(logs.read("mid", 0, 100).is_empty());
        assert_eq!(logs.read("old", 0, 100).len(), 2);
        assert_eq!(logs.usage(), (line(4) + line(2) + line(4) + 2 * RING_COST, 2));
        // A line bigger than the bound alone is still kept.
        push(&logs, "huge", 1, &"z".repeat(1_500));
        assert_eq!(logs.usage(), (line(1_500) + RING_COST, 1));
    }

    #[test]
    fn numbers_rise_across_restarts() {
        let before = TaskLogs::default();
        push(&before, "a", 1, "x");
        let last = before.read("a", 0, 1)[0].seq;
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = TaskLogs::default();
        push(&after, "a", 1, "y");
        assert!(after.read("a", 0, 1)[0].seq > last);
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let logs = TaskLogs::default();
        let long = "é".repeat(MAX_LINE_BYTES);
        push(&logs, "a", 1, &long);
        let line = &logs.read("a", 0, 1)[0].message;
        assert!(line.len() <= MAX_LINE_BYTES);
        assert!(line.ends_with(" [cut]"));
    }

    #[test]
    fn a_forgotten_task_frees_its_bytes() {
        let logs = TaskLogs::default();
        push(&logs, "a", 1, "abc");
        push(&logs, "b", 1, "de");
        logs.forget("a");
        assert_eq!(logs.usage(), (2 + LINE_COST + RING_COST, 1));
        assert!(logs.read("a", 0, 10).is_empty());
        logs.forget("a");
        push(&logs, "a", 2, "again");
        assert_eq!(logs.read("a", 0, 10).len(), 1);
    }
}
