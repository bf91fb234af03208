//! The chaos suite's report: for each kind of fault, how many of its runs
//! kept each invariant, the worst failover and the worst tick gap; then
//! every failure in words. Printed after each run and written to a file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What must hold after every fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// One leader and every member up again after the fault heals (and a
    /// rollout under way has ended with every task on one version).
    Converged,
    /// Every task owned by exactly one member, which alone commits it.
    OwnedOnce,
    /// The history checker over everything committed so far: no tick
    /// twice, none skipped, epochs never back, counter states = ticks.
    History,
    /// The witness's checker over every witnessed call so far: no two runs
    /// of a task at once, no fencing token going back, every committed
    /// tick run.
    Witness,
    /// The lost node's tasks ticked elsewhere within period + failover bound
    /// (+ 500 ms for measurement and a noisy machine, + a tick's length
    /// where a slow downstream makes ticks long).
    Failover,
    /// Every write acknowledged before the fault is still there.
    WritesKept,
}

impl Invariant {
    pub const ALL: [Invariant; 6] = [
        Invariant::Converged,
        Invariant::OwnedOnce,
        Invariant::History,
        Invariant::Witness,
        Invariant::Failover,
        Invariant::WritesKept,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Invariant::Converged => "converged",
            Invariant::OwnedOnce => "owned once",
            Invariant::History => "history",
            Invariant::Witness => "witness",
            Invariant::Failover => "failover in bound",
            Invariant::WritesKept => "writes kept",
        }
    }
}

/// One fault and what was seen after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultRun {
    /// The kind of fault ("kill leader", "split 2|3", ...).
    pub fault: String,
    /// Which nodes, and anything else particular to this run.
    pub detail: String,
    /// Each invariant checked (an absent one does not apply): Ok, or what broke.
    pub outcomes: BTreeMap<Invariant, Result<(), String>>,
    /// From the fault to the last of the lost node's tasks ticking elsewhere.
    pub failover_ms: Option<u64>,
    /// The largest gap between two committed ticks of a task, during the fault.
    pub worst_gap_ms: Option<u64>,
    /// Witnessed runs during the fault, and how many of them ran a tick
    /// again (at-least-once side effects).
    pub witnessed: Option<(usize, usize)>,
}

impl FaultRun {
    pub fn passed(&self) -> bool {
        self.outcomes.values().all(Result::is_ok)
    }
}

/// A whole run of the suite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What ran, where (the cluster, the seed, the machine).
    pub title: String,
    pub runs: Vec<FaultRun>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.runs.iter().all(FaultRun::passed)
    }

    /// Every broken invariant: (fault, detail, invariant, what broke).
    pub fn failures(&self) -> Vec<(&str, &str, Invariant, &str)> {
        self.runs
            .iter()
            .flat_map(|run| {
                run.outcomes.iter().filter_map(move |(invariant, outcome)| {
                    let what = outcome.as_ref().err()?;
                    Some((run.fault.as_str(), run.detail.as_str(), *invariant, what.as_str()))
                })
            })
            .collect()
    }

    /// The report as Markdown: the table, then the failures.
    pub fn render(&self) -> String {
        let mut kinds: Vec<&str> = Vec::new();
        for run in &self.runs {
            if !kinds.contains(&run.fault.as_str()) {
                kinds.push(&run.fault);
            }
        }
        let mut out = format!("# {}\n\n| fault | runs |", self.title);
        for invariant in Invariant::ALL {
            let _ = write!(out, " {} |", invariant.title());
        }
        out.push_str(" worst failover | worst tick gap | witnessed runs (re-runs) |\n|---|---:|");
        out.push_str(&"---|".repeat(Invariant::ALL.len()));
        out.push_str("---:|---:|---:|\n");
        for kind in kinds {
            let runs: Vec<&FaultRun> = self.runs.iter().filter(|r| r.fault == kind).collect();
            let _ = write!(out, "| {kind} | {} |", runs.len());
            for invariant in Invariant::ALL {
                let checked: Vec<bool> = runs
                    .iter()
                    .filter_map(|r| r.outcomes.get(&invariant).map(Result::is_ok))
                    .collect();
                let passed = checked.iter().filter(|ok| **ok).count();
                let cell = match (checked.len(), passed == checked.len()) {
                    (0, _) => "–".to_string(),
                    (n, true) => format!("{passed}/{n}"),
                    (n, false) => format!("**{passed}/{n} FAIL**"),
                };
                let _ = write!(out, " {cell} |");
            }
            let worst = |f: fn(&FaultRun) -> Option<u64>| {
                runs.iter()
                    .filter_map(|r| f(r))
                    .max()
                    .map_or("–".to_string(), |ms| format!("{ms} ms"))
            };
            let witnessed = runs
                .iter()
                .filter_map(|r| r.witnessed)
                .reduce(|a, b| (a.0 + b.0, a.1 + b.1))
                .map_or("–".to_string(), |(runs, reruns)| format!("{runs} ({reruns})"));
            let _ = writeln!(
                out,
                " {} | {} | {witnessed} |",
                worst(|r| r.failover_ms),
                worst(|r| r.worst_gap_ms)
            );
        }
        let failures = self.failures();
        match failures.is_empty() {
            true => out.push_str("\nEvery invariant held after every fault.\n"),
            false => {
                let _ = writeln!(out, "\nBroken invariants ({}):\n", failures.len());
                for (fault, detail, invariant, what) in failures {
                    let _ = writeln!(out, "- {fault} ({detail}): {}: {what}", invariant.title());
                }
            }
        }
        out
    }

    /// Prints the report and writes it to `path`; returns the path.
    pub fn publish(&self, path: &Path) -> PathBuf {
        let text = self.render();
        eprintln!("\n{text}");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::write(path, &text) {
            Ok(()) => eprintln!("report written to {}", path.display()),
            Err(e) => eprintln!("cannot write the report to {}: {e}", path.display()),
        }
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(fault: &str, outcomes: &[(Invariant, Result<(), String>)], failover: Option<u64>, gap: u64) -> FaultRun {
        FaultRun {
            fault: fault.into(),
            detail: "node 2".into(),
            outcomes: outcomes.iter().cloned().collect(),
            failover_ms: failover,
            worst_gap_ms: Some(gap),
            witnessed: None,
        }
    }

    #[test]
    fn the_table_counts_passes_per_fault_kind_and_keeps_the_worst_times() {
        use Invariant::*;
        let report = Report {
            title: "chaos".into(),
            runs: vec![
                run("kill", &[(Converged, Ok(())), (Failover, Ok(()))], Some(240), 250),
                run("loss", &[(Converged, Ok(()))], None, 700),
                run("kill", &[(Converged, Ok(())), (Failover, Ok(()))], Some(310), 500),
            ],
        };
        assert!(report.passed());
        let text = report.render();
        assert!(
            text.contains("| kill | 2 | 2/2 | – | – | – | 2/2 | – | 310 ms | 500 ms | – |"),
            "{text}"
        );
        assert!(
            text.contains("| loss | 1 | 1/1 | – | – | – | – | – | – | 700 ms | – |"),
            "{text}"
        );
        assert!(
            text.find("| kill").unwrap() < text.find("| loss").unwrap(),
            "in order of first run"
        );
        assert!(text.contains("Every invariant held"));
    }

    #[test]
    fn a_broken_invariant_fails_the_report_and_is_described() {
        use Invariant::*;
        let report = Report {
            title: "teeth".into(),
            runs: vec![
                run(
                    "pause",
                    &[(History, Err("tick 7 was committed twice".into()))],
                    Some(900),
                    1200,
                ),
                run("pause", &[(History, Ok(()))], Some(800), 1100),
            ],
        };
        assert!(!report.passed());
        assert_eq!(report.failures().len(), 1);
        let text = report.render();
        assert!(text.contains("**1/2 FAIL**"), "{text}");
        assert!(
            text.contains("- pause (node 2): history: tick 7 was committed twice"),
            "{text}"
        );
    }
}
