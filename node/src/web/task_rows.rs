//! The status page's task table: which tasks a filter shows, one page of
//! them at a time, and each one's last ticks as a strip of marks. Pure
//! functions of the replicated state, so a page with 100,000 tasks costs one
//! pass over them and rows only for the page shown.

use crate::state::cluster::ClusterState;
use crate::state::history::TickRecord;
use crate::state::tasks::{Schedule, TaskRecord, TaskStatus};
use crate::types::NodeId;

/// Rows on one page of the task table.
pub const PAGE_ROWS: usize = 100;
/// Ticks in a task's strip.
pub const STRIP_TICKS: usize = 60;
/// A committed tick this much later than its period after the one before
/// it is marked late.
pub const LATE_AFTER_MS: u64 = 50;

/// The task table's filter, from the page's query string (every field may
/// be left empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Part of the name.
    pub name: String,
    /// The module, exactly.
    pub module: String,
    /// running, paused or failed.
    pub status: String,
    /// The owner's node id; "none" for tasks nobody owns.
    pub owner: String,
    /// The page, from 1.
    pub page: Option<usize>,
}

impl TaskFilter {
    /// The filter a query string's pairs give, field by field: a field that
    /// does not parse (a page that is no number) or is unknown is left out,
    /// not the whole filter.
    pub fn from_pairs(pairs: &[(String, String)]) -> TaskFilter {
        let mut filter = TaskFilter::default();
        for (key, value) in pairs {
            let value = value.trim().to_string();
            match key.as_str() {
                "name" => filter.name = value,
                "module" => filter.module = value,
                "status" => filter.status = value,
                "owner" => filter.owner = value,
                "page" => filter.page = value.parse().ok(),
                _ => {}
            }
        }
        filter
    }

    fn admits(&self, task: &TaskRecord) -> bool {
        let owner_matches = match (self.owner.as_str(), task.owner) {
            ("", _) => true,
            ("none", None) => true,
            (wanted, Some(id)) => wanted.parse::<NodeId>() == Ok(id),
            (_, None) => false,
        };
        (self.name.is_empty() || task.spec.name.contains(&self.name))
            && (self.module.is_empty() || task.spec.module == self.module)
            && (self.status.is_empty() || status_name(&task.status) == self.status)
            && owner_matches
    }

    /// The query string of this filter on `page` (for the page links).
    pub fn query(&self, page: usize) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("name", &self.name),
            ("module", &self.module),
            ("status", &self.status),
            ("owner", &self.owner),
        ] {
            if !value.is_empty() {
                parts.push(format!("{key}={}", percent_encode(value)));
            }
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        parts.join("&")
    }
}

/// `text` percent-encoded for a query string.
pub(super) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The word the page (and `batonctl`) uses for a status.
pub fn status_name(status: &TaskStatus) -> &'static str {
    match status {
        TaskStatus::Running => "running",
        TaskStatus::Paused => "paused",
        TaskStatus::Failed { .. } => "failed",
    }
}

/// How one committed tick went, as its strip shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Within its period (and [`LATE_AFTER_MS`]) of the tick before.
    OnTime,
    /// Later than that: the task fell behind, or waited for a failover.
    Late,
    /// Run by another node than the tick before: a failover or hand-off.
    Moved,
    /// Run by another module version than the tick before: a rollout.
    NewVersion,
}

impl Mark {
    /// Its CSS class and its letter in text form.
    pub fn class(self) -> &'static str {
        match self {
            Mark::OnTime => "ok",
            Mark::Late => "late",
            Mark::Moved => "moved",
            Mark::NewVersion => "version",
        }
    }
}

/// The marks of `history`'s last [`STRIP_TICKS`] ticks, oldest first. A
/// cron schedule has no fixed period, so its ticks are never marked late.
pub fn strip(history: &[TickRecord], every_ms: Option<u64>) -> Vec<Mark> {
    let start = history.len().saturating_sub(STRIP_TICKS + 1);
    let shown = &history[start..];
    let first = shown.len().saturating_sub(STRIP_TICKS);
    (first..shown.len())
        .map(|i| {
            let tick = &shown[i];
            let Some(before) = i.checked_sub(1).map(|j| &shown[j]) else {
                return Mark::OnTime;
            };
            if tick.node != before.node {
                Mark::Moved
            } else if tick.version != before.version {
                Mark::NewVersion
            } else if every_ms.is_some_and(|every| {
                tick.committed_at_ms.saturating_sub(before.committed_at_ms) > every + LATE_AFTER_MS
            }) {
                Mark::Late
            } else {
                Mark::OnTime
            }
        })
        .collect()
}

/// One row of the task table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub name: String,
    pub module: String,
    pub status: &'static str,
    pub failure: String,
    pub owner: Option<NodeId>,
    pub schedule: String,
    pub tick: u64,
    pub last_tick_at_ms: Option<u64>,
    pub next_due_ms: u64,
    pub strip: Vec<Mark>,
}

impl TaskRow {
    pub fn of(task: &TaskRecord) -> TaskRow {
        let every_ms = match task.spec.schedule {
            Schedule::EveryMs(ms) => Some(ms),
            Schedule::Cron(_) => None,
        };
        let history: Vec<TickRecord> = task.history.iter().collect();
        TaskRow {
            name: task.spec.name.clone(),
            module: task.spec.module.clone(),
            status: status_name(&task.status),
            failure: match &task.status {
                TaskStatus::Failed { reason } => reason.clone(),
                _ => String::new(),
            },
            owner: task.owner,
            schedule: schedule_text(&task.spec.schedule),
            tick: task.tick,
            last_tick_at_ms: task.last_tick_at_ms,
            next_due_ms: task.next_due_ms,
            strip: strip(&history, every_ms),
        }
    }
}

/// A schedule as the page writes it.
pub fn schedule_text(schedule: &Schedule) -> String {
    match schedule {
        Schedule::EveryMs(ms) if ms % 1000 == 0 => format!("every {}s", ms / 1000),
        Schedule::EveryMs(ms) => format!("every {ms}ms"),
        Schedule::Cron(expr) => format!("cron {expr}"),
    }
}

/// One page of the task table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPage {
    pub rows: Vec<TaskRow>,
    /// Tasks in the cluster.
    pub total: usize,
    /// Tasks the filter admits.
    pub matched: usize,
    /// The page shown, from 1, and how many there are (at least 1).
    pub page: usize,
    pub pages: usize,
    /// The modules of the cluster's tasks, for the filter's choices.
    pub modules: Vec<String>,
}

/// The page of tasks `filter` asks for, in name order.
pub fn task_page(state: &ClusterState, filter: &TaskFilter) -> TaskPage {
    let matched: Vec<&TaskRecord> = state.tasks.values().filter(|t| filter.admits(t)).collect();
    let pages = matched.len().div_ceil(PAGE_ROWS).max(1);
    let page = filter.page.unwrap_or(1).clamp(1, pages);
    let rows = matched
        .iter()
        .skip((page - 1) * PAGE_ROWS)
        .take(PAGE_ROWS)
        .map(|t| TaskRow::of(t))
        .collect();
    TaskPage {
        rows,
        total: state.tasks.len(),
        matched: matched.len(),
        page,
        pages,
        modules: state.modules.keys().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(tick: u64, node: NodeId, at: u64, version: u32) -> TickRecord {
        TickRecord {
            tick,
            epoch: 1,
            node,
            committed_at_ms: at,
            version,
        }
    }

    #[test]
    fn a_strip_marks_late_moved_and_new_version_ticks() {
        let history = vec![
            tick(1, 1, 1_000, 1),
            tick(2, 1, 2_000, 1),
            tick(3, 1, 3_051, 1),
            tick(4, 2, 4_000, 1),
            tick(5, 2, 5_000, 2),
            tick(6, 2, 6_050, 2),
        ];
        assert_eq!(
            strip(&history, Some(1_000)),
            [
                Mark::OnTime,
                Mark::OnTime,
                Mark::Late,
                Mark::Moved,
                Mark::NewVersion,
                Mark::OnTime
            ]
        );
        // Cron ticks have no period to be late against.
        assert_eq!(strip(&history[..3], None), [Mark::OnTime; 3]);
        assert!(strip(&[], Some(1_000)).is_empty());
    }

    #[test]
    fn a_strip_holds_the_last_sixty_ticks_judged_against_the_tick_before_each() {
        let mut history: Vec<TickRecord> = (1..=100).map(|i| tick(i, 1, i * 1_000, 1)).collect();
        // The tick just before the strip's first was run elsewhere: the
        // first tick shown is a move.
        history[39].node = 2;
        let marks = strip(&history, Some(1_000));
        assert_eq!(marks.len(), STRIP_TICKS);
        assert_eq!(marks[0], Mark::Moved);
        assert!(marks[1..].iter().all(|m| *m == Mark::OnTime));
    }

    #[test]
    fn a_page_holds_the_filtered_tasks_in_name_order_a_hundred_at_a_time() {
        use crate::state::tasks::{Assignment, TaskSpec};
        let mut state = ClusterState::default();
        for i in 0..250 {
            let mut spec = TaskSpec::counter_every_second(&format!("t{i:03}"));
            if i % 10 == 0 {
                spec.module = "other".into();
            }
            state.tasks.add(spec);
        }
        state.tasks.assign(&[Assignment {
            task: "t001".into(),
            owner: Some(2),
            expected_epoch: 0,
        }]);
        state.tasks.set_status("t002", TaskStatus::Paused);
        let all = task_page(&state, &TaskFilter::default());
        assert_eq!((all.total, all.matched, all.page, all.pages), (250, 250, 1, 3));
        assert_eq!(all.rows.len(), PAGE_ROWS);
        assert_eq!(all.rows[0].name, "t000");
        let last = task_page(
            &state,
            &TaskFilter {
                page: Some(9),
                ..TaskFilter::default()
            },
        );
        assert_eq!(
            (last.page, last.rows.len(), last.rows[0].name.as_str()),
            (3, 50, "t200")
        );
        let by = |filter: TaskFilter| task_page(&state, &filter).matched;
        let module = |m: &str| TaskFilter {
            module: m.into(),
            ..TaskFilter::default()
        };
        assert_eq!(by(module("other")), 25);
        assert_eq!(
            by(TaskFilter {
                name: "t00".into(),
                ..TaskFilter::default()
            }),
            10
        );
        let owner = |o: &str| TaskFilter {
            owner: o.into(),
            ..TaskFilter::default()
        };
        assert_eq!(by(owner("2")), 1);
        assert_eq!(by(owner("none")), 249);
        let status = |s: &str| TaskFilter {
            status: s.into(),
            ..TaskFilter::default()
        };
        assert_eq!(by(status("paused")), 1);
        assert_eq!(by(status("running")), 249);
    }

    #[test]
    fn a_filter_takes_each_field_that_parses() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let filter = TaskFilter::from_pairs(&pairs(&[("module", " counter "), ("page", "abc"), ("x", "1")]));
        assert_eq!(filter.module, "counter");
        assert_eq!(filter.page, None);
        assert_eq!(TaskFilter::from_pairs(&pairs(&[("page", "3")])).page, Some(3));
    }

    #[test]
    fn a_filter_query_round_trips_what_it_holds() {
        let filter = TaskFilter {
            name: "sync a/b".into(),
            status: "running".into(),
            ..TaskFilter::default()
        };
        assert_eq!(filter.query(1), "name=sync%20a%2Fb&status=running");
        assert_eq!(filter.query(3), "name=sync%20a%2Fb&status=running&page=3");
        assert_eq!(TaskFilter::default().query(1), "");
    }
}
