//! Tick health per module version: each node counts its own ticks and sends
//! the counts (and the modules it has compiled) with every heartbeat; the
//! leader keeps the latest report of each node and gates rollout steps on
//! what changed since the step began.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::gate::Counts;
use crate::types::NodeId;

/// A module version: (name, version).
pub type VersionKey = (String, u32);

/// This node's tick counts per module version, since it started.
#[derive(Debug, Default)]
pub struct TickHealth {
    counts: Mutex<BTreeMap<VersionKey, Counts>>,
}

impl TickHealth {
    /// Counts one tick of `module` version `version`.
    pub fn record(&self, module: &str, version: u32, ok: bool) {
        let mut counts = self.counts.lock().expect("health lock poisoned");
        let entry = counts.entry((module.to_string(), version)).or_default();
        match ok {
            true => entry.ok += 1,
            false => entry.failed += 1,
        }
    }

    pub fn snapshot(&self) -> BTreeMap<VersionKey, Counts> {
        self.counts.lock().expect("health lock poisoned").clone()
    }
}

/// One node's latest report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// The process that counted (counts restart at zero with a new one).
    pub incarnation: String,
    pub counts: BTreeMap<VersionKey, Counts>,
    /// Content hashes of the modules it has compiled.
    pub ready: BTreeSet<String>,
    /// The cluster versions its release supports.
    pub versions: crate::state::cluster_version::VersionRange,
    /// The binary it runs (see `heart::running_binary`).
    pub binary: String,
    /// Where its heart listens; empty without one.
    pub heart_addr: String,
    /// It has not yet applied the commit index of its last acknowledgement.
    pub catching_up: bool,
}

impl NodeReport {
    /// Every tick counted since `baseline` (all of them if the process
    /// restarted since, or there is no baseline): (ok, failed).
    pub fn totals_since(&self, baseline: Option<&NodeReport>) -> (u64, u64) {
        self.counts.keys().fold((0, 0), |(ok, failed), key| {
            let counts = self.since(baseline, key);
            (ok + counts.ok, failed + counts.failed)
        })
    }

    /// The ticks of `key` counted since `baseline` (all of them if the
    /// process restarted since, or there is no baseline).
    pub fn since(&self, baseline: Option<&NodeReport>, key: &VersionKey) -> Counts {
        let now = self.counts.get(key).copied().unwrap_or_default();
        let before = baseline
            .filter(|b| b.incarnation == self.incarnation)
            .and_then(|b| b.counts.get(key).copied())
            .unwrap_or_default();
        if before.ok > now.ok || before.failed > now.failed {
            return now;
        }
        Counts {
            ok: now.ok - before.ok,
            failed: now.failed - before.failed,
        }
    }
}

/// What the leader has heard from every node, and the counts its last look
/// at each rollout gave (for `rollout status`).
#[derive(Debug, Default)]
pub struct Observed {
    reports: Mutex<HashMap<NodeId, NodeReport>>,
    gates: Mutex<HashMap<VersionKey, (Counts, Counts)>>,
}

impl Observed {
    pub fn report(&self, node: NodeId, report: NodeReport) {
        self.reports.lock().expect("reports lock poisoned").insert(node, report);
    }

    pub fn reports(&self) -> HashMap<NodeId, NodeReport> {
        self.reports.lock().expect("reports lock poisoned").clone()
    }

    /// Remembers the counts of the current step of the rollout of
    /// `module` to `version`: (new, old).
    pub fn set_gate(&self, module: &str, version: u32, counts: (Counts, Counts)) {
        self.gates
            .lock()
            .expect("gates lock poisoned")
            .insert((module.to_string(), version), counts);
    }

    pub fn gate(&self, module: &str, version: u32) -> Option<(Counts, Counts)> {
        self.gates
            .lock()
            .expect("gates lock poisoned")
            .get(&(module.to_string(), version))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(incarnation: &str, ok: u64, failed: u64) -> NodeReport {
        NodeReport {
            incarnation: incarnation.into(),
            counts: [(("counter".to_string(), 2), Counts { ok, failed })].into(),
            ready: BTreeSet::new(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_since_a_baseline_restart_with_the_process() {
        let key = ("counter".to_string(), 2);
        let now = report("a", 10, 2);
        assert_eq!(now.since(Some(&report("a", 4, 1)), &key), Counts { ok: 6, failed: 1 });
        assert_eq!(now.since(None, &key), Counts { ok: 10, failed: 2 });
        // Another process: everything it counted is new.
        assert_eq!(now.since(Some(&report("b", 40, 1)), &key), Counts { ok: 10, failed: 2 });
        assert_eq!(
            now.since(Some(&report("a", 1, 1)), &("other".into(), 1)),
            Counts::default()
        );
    }

    #[test]
    fn a_node_counts_its_ticks_per_version() {
        let health = TickHealth::default();
        health.record("counter", 1, true);
        health.record("counter", 2, false);
        health.record("counter", 2, true);
        let counts = health.snapshot();
        assert_eq!(counts[&("counter".to_string(), 1)], Counts { ok: 1, failed: 0 });
        assert_eq!(counts[&("counter".to_string(), 2)], Counts { ok: 1, failed: 1 });
    }
}
