//! The witness's checker: from what tasks did (the witness's runs) and what
//! the cluster committed (the histories), per task:
//!
//! - no two runs overlap in time (one owner at a time, as the world sees it);
//! - the fencing token a task presents never goes backwards (in the order
//!   the witness saw the calls begin);
//! - every committed tick was run, by the node and at the epoch that
//!   committed it.
//!
//! Re-runs (a tick run more than once: a failed or fenced attempt, or a
//! commit lost with its node) are at-least-once side effects, allowed by
//! the guarantees: they are counted and reported, not failed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::history::TaskHistory;
use crate::witness::Run;

/// Two runs of one task at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub first: Run,
    pub second: Run,
    /// How long they ran together, in microseconds.
    pub together_us: u64,
}

/// What the witness saw over a test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessReport {
    pub runs: usize,
    pub tasks: usize,
    /// Runs of a tick beyond its first.
    pub reruns: usize,
    /// Of those, runs at another epoch than the tick's first run: the tick
    /// ran again on its new owner after a move (its first run's commit was
    /// lost, or never made, with the old owner).
    pub reruns_after_move: usize,
    pub overlaps: Vec<Overlap>,
    /// A run whose token was below one the task had already presented.
    pub backwards: Vec<(Run, Run)>,
    /// Committed ticks the witness never saw run: (task, tick, epoch, node).
    pub unseen: Vec<(String, u64, u64, u64)>,
}

impl WitnessReport {
    /// Whether one owner at a time held, as the witness saw it.
    pub fn is_clean(&self) -> bool {
        self.overlaps.is_empty() && self.backwards.is_empty() && self.unseen.is_empty()
    }

    /// The longest time two runs of a task overlapped, in milliseconds.
    pub fn worst_overlap_ms(&self) -> f64 {
        self.overlaps.iter().map(|o| o.together_us).max().unwrap_or(0) as f64 / 1000.0
    }
}

fn describe(run: &Run) -> String {
    format!(
        "node {} (epoch {}, tick {}) ran {:.1}-{:.1} ms",
        run.node,
        run.epoch,
        run.tick,
        run.began_us as f64 / 1000.0,
        run.ended_us as f64 / 1000.0
    )
}

impl fmt::Display for WitnessReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "witness: {} runs of {} tasks, {} re-runs ({} after a move), {} overlapping, {} tokens backwards, {} committed ticks never run",
            self.runs,
            self.tasks,
            self.reruns,
            self.reruns_after_move,
            self.overlaps.len(),
            self.backwards.len(),
            self.unseen.len()
        )?;
        for o in self.overlaps.iter().take(10) {
            writeln!(
                f,
                "  overlap: task {}: {} while {}: {:.1} ms together",
                o.first.task,
                describe(&o.second),
                describe(&o.first),
                o.together_us as f64 / 1000.0
            )?;
        }
        for (seen, later) in self.backwards.iter().take(10) {
            writeln!(
                f,
                "  token backwards: task {}: {} after {}",
                seen.task,
                describe(later),
                describe(seen)
            )?;
        }
        for (task, tick, epoch, node) in self.unseen.iter().take(10) {
            writeln!(
                f,
                "  never run: task {task} tick {tick} (epoch {epoch}, node {node}) was committed"
            )?;
        }
        Ok(())
    }
}

/// Checks `runs` (every run the witness recorded) against `committed` (the
/// committed histories of the tasks that call the witness, and only those).
pub fn check(runs: &[Run], committed: &[TaskHistory]) -> WitnessReport {
    let mut by_task: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        by_task.entry(run.task.as_str()).or_default().push(run);
    }
    let mut report = WitnessReport {
        runs: runs.len(),
        tasks: by_task.len(),
        ..WitnessReport::default()
    };
    for runs in by_task.values_mut() {
        runs.sort_by_key(|r| (r.began_us, r.ended_us));
        // The run that ends last so far, and the highest token so far.
        let mut longest: Option<&Run> = None;
        let mut highest: Option<&Run> = None;
        let mut first_epoch: BTreeMap<u64, u64> = BTreeMap::new();
        for &run in runs.iter() {
            match first_epoch.get(&run.tick) {
                Some(&epoch) => {
                    report.reruns += 1;
                    if epoch != run.epoch {
                        report.reruns_after_move += 1;
                    }
                }
                None => {
                    first_epoch.insert(run.tick, run.epoch);
                }
            }
            if let Some(prior) = longest.filter(|p| p.ended_us > run.began_us) {
                report.overlaps.push(Overlap {
                    first: prior.clone(),
                    second: run.clone(),
                    together_us: prior.ended_us.min(run.ended_us) - run.began_us,
                });
            }
            if longest.is_none_or(|p| run.ended_us > p.ended_us) {
                longest = Some(run);
            }
            match highest {
                Some(h) if run.token() < h.token() => report.backwards.push((h.clone(), run.clone())),
                Some(h) if run.token() == h.token() => {}
                _ => highest = Some(run),
            }
        }
    }
    for history in committed {
        let runs = by_task.get(history.name.as_str()).map_or(&[][..], |r| r.as_slice());
        let seen: BTreeSet<(u64, u64, u64)> = runs.iter().map(|r| (r.tick, r.epoch, r.node)).collect();
        for t in &history.ticks {
            if !seen.contains(&(t.tick, t.epoch, t.node)) {
                report.unseen.push((history.name.clone(), t.tick, t.epoch, t.node));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::TickInfo;

    fn run(task: &str, node: u64, epoch: u64, tick: u64, began_ms: u64, ended_ms: u64) -> Run {
        Run {
            task: task.into(),
            node,
            epoch,
            tick,
            began_us: began_ms * 1000,
            ended_us: ended_ms * 1000,
        }
    }

    fn history(task: &str, ticks: &[(u64, u64, u64)]) -> TaskHistory {
        TaskHistory {
            name: task.into(),
            tick: ticks.last().map_or(0, |t| t.0),
            state: Vec::new(),
            ticks: ticks
                .iter()
                .map(|&(tick, epoch, node)| TickInfo {
                    tick,
                    epoch,
                    node,
                    ..TickInfo::default()
                })
                .collect(),
        }
    }

    #[test]
    fn runs_one_after_another_are_clean() {
        let runs = [
            run("a", 1, 1, 1, 0, 150),
            run("a", 2, 2, 2, 150, 300),
            run("b", 1, 1, 1, 0, 400),
        ];
        let report = check(&runs, &[history("a", &[(1, 1, 1), (2, 2, 2)])]);
        assert!(report.is_clean(), "{report}");
        assert_eq!((report.runs, report.tasks, report.reruns), (3, 2, 0));
    }

    #[test]
    fn two_runs_of_a_task_at_once_are_an_overlap_with_its_length() {
        let runs = [run("a", 1, 1, 5, 0, 150), run("a", 2, 2, 5, 100, 250)];
        let report = check(&runs, &[]);
        assert_eq!(report.overlaps.len(), 1);
        assert_eq!(report.overlaps[0].together_us, 50_000);
        assert_eq!(report.reruns, 1, "tick 5 ran twice");
        let text = report.to_string();
        assert!(
            text.contains("task a") && text.contains("node 2") && text.contains("50.0 ms together"),
            "{text}"
        );
    }

    #[test]
    fn a_run_inside_a_long_one_overlaps_it_even_after_a_short_one_ended() {
        let runs = [
            run("a", 1, 1, 1, 0, 1000),
            run("a", 1, 1, 2, 10, 20),
            run("a", 2, 2, 2, 500, 600),
        ];
        assert_eq!(check(&runs, &[]).overlaps.len(), 2);
    }

    #[test]
    fn a_stale_owner_presenting_an_older_token_goes_backwards() {
        let runs = [run("a", 2, 2, 6, 0, 10), run("a", 1, 1, 6, 20, 30)];
        let report = check(&runs, &[]);
        assert_eq!(report.backwards.len(), 1);
        assert!(!report.is_clean());
        let retry = [run("a", 1, 1, 6, 0, 10), run("a", 1, 1, 6, 20, 30)];
        let report = check(&retry, &[]);
        assert!(report.is_clean(), "a retry of the same tick presents the same token");
        assert_eq!(report.reruns, 1);
    }

    #[test]
    fn a_committed_tick_the_witness_never_saw_is_reported() {
        let runs = [run("a", 1, 1, 1, 0, 10)];
        let report = check(
            &runs,
            &[history("a", &[(1, 1, 1), (2, 1, 1)]), history("b", &[(1, 1, 1)])],
        );
        assert_eq!(
            report.unseen,
            vec![("a".to_string(), 2, 1, 1), ("b".to_string(), 1, 1, 1)],
            "a task that never called the witness but committed"
        );
    }
}
