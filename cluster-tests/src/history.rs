//! The history checker: verifies Baton's guarantees from what the cluster
//! committed, for any test that makes counter tasks tick (failover, drain,
//! chaos, hot swap).
//!
//! Per task it checks that epochs never decrease; tick numbers are
//! contiguous with no duplicate; the last committed tick is the task's tick;
//! a counter's state equals its last committed tick; and no gap between two
//! consecutive committed ticks exceeds the allowed one. Over all tasks, every
//! task that was added must still be there. It stops at the first violation
//! and describes it in words.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use baton_proto::{ListTasksRequest, TaskInfo, TaskRequest, TickInfo};
use batonctl::{ClientError, ClusterClient};

/// One task as the cluster reports it at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHistory {
    pub name: String,
    /// The committed tick the task reports.
    pub tick: u64,
    /// Its committed state.
    pub state: Vec<u8>,
    /// Its committed ticks, oldest first (the cluster keeps the last 256).
    pub ticks: Vec<TickInfo>,
}

/// What the checker allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// Every task added during the run.
    pub tasks: BTreeSet<String>,
    /// The largest allowed time between two consecutive committed ticks of a
    /// task: its period plus the failover bound, for example.
    pub max_gap_ms: u64,
    /// The tasks run the `counter` module (state = tick count: version 1's
    /// `N` (or the u64 LE of its earlier builds), version 2's `counter-v2:N`,
    /// or the Python counter's `{"count":N}`).
    pub counters: bool,
}

/// What a passing history looked like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub tasks: usize,
    pub ticks: usize,
    /// The largest gap between consecutive committed ticks, and its task.
    pub max_gap_ms: u64,
    pub max_gap_task: String,
    /// Ticks committed by each node.
    pub ticks_by_node: BTreeMap<u64, usize>,
}

/// The first broken guarantee found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub task: String,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history check failed for task {}: {}", self.task, self.what)
    }
}

impl std::error::Error for Violation {}

fn describe(t: &TickInfo) -> String {
    format!(
        "tick {} (epoch {}, node {}, at {} ms)",
        t.tick, t.epoch, t.node, t.committed_at_ms
    )
}

/// Checks `histories` against `expect`.
pub fn check(histories: &[TaskHistory], expect: &Expectations) -> Result<Summary, Violation> {
    let present: BTreeSet<&str> = histories.iter().map(|h| h.name.as_str()).collect();
    if let Some(missing) = expect.tasks.iter().find(|name| !present.contains(name.as_str())) {
        return Err(Violation {
            task: missing.clone(),
            what: "was added but is gone from the cluster".into(),
        });
    }
    let mut summary = Summary {
        tasks: histories.len(),
        ..Summary::default()
    };
    for h in histories {
        let fail = |what: String| Violation {
            task: h.name.clone(),
            what,
        };
        for w in h.ticks.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if b.epoch < a.epoch {
                return Err(fail(format!(
                    "the epoch went down: {} then {}",
                    describe(a),
                    describe(b)
                )));
            }
            if b.tick == a.tick {
                return Err(fail(format!(
                    "tick {} was committed twice: {} and {}",
                    a.tick,
                    describe(a),
                    describe(b)
                )));
            }
            if b.tick != a.tick + 1 {
                return Err(fail(format!(
                    "ticks are not contiguous: {} is followed by {}",
                    describe(a),
                    describe(b)
                )));
            }
            let gap = b.committed_at_ms.saturating_sub(a.committed_at_ms);
            if gap > expect.max_gap_ms {
                return Err(fail(format!(
                    "{gap} ms passed between {} and {}, more than the allowed {} ms",
                    describe(a),
                    describe(b),
                    expect.max_gap_ms
                )));
            }
            if gap > summary.max_gap_ms {
                (summary.max_gap_ms, summary.max_gap_task) = (gap, h.name.clone());
            }
        }
        let last = h.ticks.last().map_or(0, |t| t.tick);
        if last != h.tick {
            return Err(fail(format!(
                "the task reports tick {} but its last committed tick is {last}",
                h.tick
            )));
        }
        if expect.counters {
            let state = counter_count(&h.state).map_err(fail)?;
            if state != h.tick {
                return Err(fail(format!(
                    "the counter's state is {state} but it committed {} ticks: a tick was lost or repeated",
                    h.tick
                )));
            }
        }
        summary.ticks += h.ticks.len();
        for t in &h.ticks {
            *summary.ticks_by_node.entry(t.node).or_default() += 1;
        }
    }
    Ok(summary)
}

/// The count in a `counter` task's state, in any version's format: Rust's
/// `N`, `counter-v2:N` or 8 bytes, or the Python counter's `{"count":N}`.
pub fn counter_count(state: &[u8]) -> Result<u64, String> {
    if let Some(n) = std::str::from_utf8(state)
        .ok()
        .and_then(|s| s.strip_prefix(r#"{"count":"#)?.strip_suffix('}'))
    {
        return n
            .parse()
            .map_err(|e| format!("a Python counter's state {n:?} is not a count: {e}"));
    }
    if let Some(n) = std::str::from_utf8(state)
        .ok()
        .and_then(|s| s.strip_prefix("counter-v2:"))
    {
        return n
            .parse()
            .map_err(|e| format!("a counter-v2 state {n:?} is not a count: {e}"));
    }
    if !state.is_empty() && state.iter().all(u8::is_ascii_digit) {
        let text = std::str::from_utf8(state).expect("ASCII digits");
        return text
            .parse()
            .map_err(|e| format!("a counter state {text:?} is not a count: {e}"));
    }
    match state {
        [] => Ok(0),
        bytes => <[u8; 8]>::try_from(bytes)
            .map(u64::from_le_bytes)
            .map_err(|_| format!("a counter's state is N, counter-v2:N or 8 bytes, this one {bytes:?}")),
    }
}

/// Reads every task and its committed history from the cluster.
pub async fn collect(client: &ClusterClient) -> Result<Vec<TaskHistory>, ClientError> {
    let tasks: Vec<TaskInfo> = client
        .call(|mut c| async move { c.list_tasks(ListTasksRequest {}).await })
        .await?
        .tasks;
    let mut histories = Vec::with_capacity(tasks.len());
    for task in tasks {
        histories.push(read_consistently(client, &task.name).await?);
    }
    Ok(histories)
}

/// One task and its history as of the same committed tick, while it keeps
/// ticking: the task is read between two reads of its history, and the
/// later history is cut at the task's tick.
async fn read_consistently(client: &ClusterClient, name: &str) -> Result<TaskHistory, ClientError> {
    let request = TaskRequest { name: name.to_string() };
    let history = || async {
        let ticks = client
            .call_with(&request, |mut c, r| async move { c.task_history(r).await })
            .await?
            .ticks;
        Ok::<_, ClientError>(ticks)
    };
    loop {
        let before = history().await?;
        let task = client
            .call_with(&request, |mut c, r| async move { c.show_task(r).await })
            .await?
            .task
            .unwrap_or_default();
        let mut after = history().await?;
        // Cut the later history at the task's tick, if the task was read
        // after the earlier history (positions, not tick numbers: a broken
        // fence can make tick numbers go back).
        let cut = match task.tick {
            0 => Some(0),
            tick => after.iter().rposition(|t| t.tick == tick).map(|i| i + 1),
        };
        let ordered = |cut: usize| before.last().is_none_or(|b| after[..cut].contains(b));
        if let Some(cut) = cut.filter(|cut| ordered(*cut)) {
            after.truncate(cut);
            return Ok(TaskHistory {
                name: task.name,
                tick: task.tick,
                state: task.state,
                ticks: after,
            });
        }
    }
}

/// Every task's committed ticks over a whole run. The cluster keeps only
/// each task's last 256 ticks, so a long run reads them every so often and
/// appends what is new.
#[derive(Debug, Default)]
pub struct Recorder {
    tasks: BTreeMap<String, TaskHistory>,
    /// Reads that could not be joined to what came before, in words.
    pub broken: Vec<Violation>,
}

impl Recorder {
    /// Adds a read of every task (from `collect`).
    pub fn record(&mut self, latest: Vec<TaskHistory>) {
        for task in latest {
            match self.tasks.get_mut(&task.name) {
                None => {
                    self.tasks.insert(task.name.clone(), task);
                }
                Some(known) => {
                    if let Err(what) = merge(&mut known.ticks, &task.ticks) {
                        self.broken.push(Violation {
                            task: task.name.clone(),
                            what,
                        });
                    }
                    (known.tick, known.state) = (task.tick, task.state);
                }
            }
        }
    }

    /// Every task's history so far.
    pub fn histories(&self) -> impl Iterator<Item = &TaskHistory> {
        self.tasks.values()
    }

    /// Checks everything recorded: the first broken join, else `check`.
    pub fn check(&self, expect: &Expectations) -> Result<Summary, Violation> {
        match self.broken.first() {
            Some(broken) => Err(broken.clone()),
            None => check(&self.histories().cloned().collect::<Vec<_>>(), expect),
        }
    }
}

/// Appends to `known` the ticks of `latest` after the last one `known`
/// holds. An error when `latest` does not hold that tick: either the read
/// came too late (more than 256 new ticks) or the committed history changed.
pub fn merge(known: &mut Vec<TickInfo>, latest: &[TickInfo]) -> Result<(), String> {
    let Some(last) = known.last() else {
        known.extend_from_slice(latest);
        return Ok(());
    };
    match latest.iter().rposition(|t| t == last) {
        Some(i) => {
            known.extend_from_slice(&latest[i + 1..]);
            Ok(())
        }
        None => Err(format!(
            "a later read no longer holds {} (it starts at {}): committed history changed, or was read too late",
            describe(last),
            latest.first().map_or("nothing".into(), describe)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(tick: u64, epoch: u64, node: u64, at: u64) -> TickInfo {
        TickInfo {
            tick,
            epoch,
            node,
            committed_at_ms: at,
            version: 1,
        }
    }

    /// A counter that ticked 1..=5 every 100 ms, moving from node 1 to 2 at tick 4.
    fn good() -> TaskHistory {
        TaskHistory {
            name: "c".into(),
            tick: 5,
            state: 5u64.to_le_bytes().to_vec(),
            ticks: vec![
                tick(1, 1, 1, 100),
                tick(2, 1, 1, 200),
                tick(3, 1, 1, 300),
                tick(4, 2, 2, 900),
                tick(5, 2, 2, 1000),
            ],
        }
    }

    fn expect() -> Expectations {
        Expectations {
            tasks: BTreeSet::from(["c".to_string()]),
            max_gap_ms: 1000,
            counters: true,
        }
    }

    fn violation(history: TaskHistory) -> String {
        check(&[history], &expect()).unwrap_err().to_string()
    }

    #[test]
    fn a_good_history_passes_and_is_summarised() {
        let summary = check(&[good()], &expect()).unwrap();
        assert_eq!((summary.tasks, summary.ticks, summary.max_gap_ms), (1, 5, 600));
        assert_eq!(summary.ticks_by_node, BTreeMap::from([(1, 3), (2, 2)]));
    }

    #[test]
    fn a_tick_committed_twice_is_caught_and_named() {
        let mut h = good();
        h.ticks.insert(3, tick(3, 2, 2, 850));
        let report = violation(h);
        assert!(report.contains("tick 3 was committed twice"), "{report}");
        assert!(
            report.contains("epoch 1, node 1") && report.contains("epoch 2, node 2"),
            "{report}"
        );
    }

    #[test]
    fn a_falling_epoch_a_gap_in_ticks_and_a_late_tick_are_caught() {
        let mut h = good();
        h.ticks[4].epoch = 1;
        assert!(violation(h).contains("the epoch went down"));
        let mut h = good();
        h.ticks.remove(2);
        assert!(violation(h).contains("not contiguous"));
        let mut h = good();
        h.ticks[3].committed_at_ms = 1350;
        h.ticks[4].committed_at_ms = 1400;
        assert!(violation(h).contains("1050 ms passed"));
    }

    #[test]
    fn a_counter_state_that_differs_from_its_ticks_is_caught() {
        let mut h = good();
        h.state = 6u64.to_le_bytes().to_vec();
        assert!(violation(h).contains("state is 6 but it committed 5 ticks"));
        let mut h = good();
        h.state = b"counter-v2:5".to_vec();
        assert!(check(&[h.clone()], &expect()).is_ok(), "version 2's format counts too");
        h.state = b"counter-v2:4".to_vec();
        assert!(violation(h).contains("state is 4 but it committed 5 ticks"));
        let mut h = good();
        h.state = b"5".to_vec();
        assert!(check(&[h.clone()], &expect()).is_ok(), "version 1's decimal count");
        h.state = b"7".to_vec();
        assert!(violation(h).contains("state is 7 but it committed 5 ticks"));
        let mut h = good();
        h.state = br#"{"count":5}"#.to_vec();
        assert!(check(&[h.clone()], &expect()).is_ok(), "the Python counter's JSON");
        h.state = br#"{"count":3}"#.to_vec();
        assert!(violation(h).contains("state is 3 but it committed 5 ticks"));
        let mut h = good();
        h.tick = 6;
        assert!(violation(h).contains("reports tick 6"));
    }

    #[test]
    fn a_task_that_disappeared_is_caught() {
        let mut e = expect();
        e.tasks.insert("lost".into());
        let report = check(&[good()], &e).unwrap_err();
        assert_eq!(report.task, "lost");
    }

    #[test]
    fn reads_are_joined_where_they_overlap() {
        let all = good().ticks;
        let mut known = all[..2].to_vec();
        merge(&mut known, &all[1..4]).unwrap();
        merge(&mut known, &all[3..]).unwrap();
        merge(&mut known, &all[3..]).unwrap();
        assert_eq!(known, all, "each tick once, in order");
        let mut known = all[..2].to_vec();
        let err = merge(&mut known, &all[3..]).unwrap_err();
        assert!(err.contains("no longer holds tick 2"), "{err}");
    }

    #[test]
    fn the_recorder_checks_the_whole_run_and_a_broken_join() {
        let mut first = good();
        first.ticks.truncate(3);
        first.tick = 3;
        first.state = 3u64.to_le_bytes().to_vec();
        let mut later = good();
        later.ticks.drain(..2);
        let mut recorder = Recorder::default();
        recorder.record(vec![first.clone()]);
        recorder.record(vec![later]);
        assert_eq!(recorder.histories().collect::<Vec<_>>(), vec![&good()]);
        assert_eq!(recorder.check(&expect()).unwrap().ticks, 5);
        // A read in which tick 3 is gone: the committed history changed.
        let mut rewritten = good();
        rewritten.ticks.remove(2);
        let mut recorder = Recorder::default();
        recorder.record(vec![first]);
        recorder.record(vec![rewritten]);
        assert!(
            recorder
                .check(&expect())
                .unwrap_err()
                .what
                .contains("no longer holds tick 3")
        );
    }
}
