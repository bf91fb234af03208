//! The upgrade rows: a rolling upgrade of the node binary (`batonctl
//! upgrade`'s upload, signed with the key every heart trusts) with a node
//! killed, or cut off, while a node of the upgrade is at its gate. The
//! upgrade must end done (every node on the new binary) or halted with a
//! reason, and never take a node down while another is down: the test
//! connects to every node's port every 20 ms (`outages`), and a cut-off
//! node (whose port the test still reaches) counts as down until its
//! partition heals. The killed node must show as down: a watcher that saw
//! nothing would pass anything.

use std::time::Duration;

use baton_node::state::cluster_version::VersionRange;
use baton_node::state::upgrades::UpgradeSettings;
use batonctl::cmd::upgrade::{self, UpgradeView};

use super::{CONVERGE, Chaos, Fault, Injected, now_ms, until};
use crate::containers::static_node_binary;
use crate::outages::{Outages, two_down_at_once};

/// How long a swapped node must tick healthy: long enough that the fault,
/// injected once a node is at its gate, lands before the next node drains.
const MIN_HEALTHY_MS: u64 = 4_000;

/// How long a node may take from its swap to its gate, and the preflight
/// to wait for the other voters.
const HEALTHY_DEADLINE_MS: u64 = 45_000;

/// How long a whole upgrade of the chaos cluster may take.
const UPGRADE: Duration = Duration::from_secs(300);

/// How often the watcher connects to each node, and how long a connection
/// may take to be taken.
const PROBE_EVERY: Duration = Duration::from_millis(20);
const ANSWER: Duration = Duration::from_millis(500);

impl Chaos {
    /// Starts an upgrade to a new binary, injects `fault` (a kill or a
    /// partition) once a node is at its gate, and follows the upgrade to its
    /// end.
    pub(super) async fn upgrade_during(&mut self, fault: Fault) -> Injected {
        if let Err(e) = self.await_highest_version().await {
            return Injected {
                started: now_ms(),
                broken: Some(e),
                ..Injected::default()
            };
        }
        let binary = self.new_node_binary();
        let hash = baton_node::heart::hash_reader(&mut std::fs::File::open(&binary).unwrap()).unwrap();
        let outages = Outages::watch_ports(
            self.cluster.nodes.values().map(|n| (n.id, n.addr())).collect(),
            PROBE_EVERY,
            ANSWER,
        );
        let settings = UpgradeSettings {
            min_healthy_ms: MIN_HEALTHY_MS,
            healthy_deadline_ms: HEALTHY_DEADLINE_MS,
            auto_revert: true,
            hold_version: false,
        };
        if let Err(e) = upgrade::upload(&self.client, &binary, &self.cluster.signing_key(), &settings).await {
            outages.stop();
            return Injected {
                started: now_ms(),
                broken: Some(format!("the upgrade did not start: {e}")),
                ..Injected::default()
            };
        }
        let gating = match self.await_gate().await {
            Ok(node) => node,
            Err(e) => {
                outages.stop();
                return Injected {
                    started: now_ms(),
                    broken: Some(e),
                    ..Injected::default()
                };
            }
        };
        let others: Vec<u64> = self.cluster.nodes.keys().copied().filter(|id| *id != gating).collect();
        let victim = self.pick(&others);
        let (injected, cut_off) = match fault {
            Fault::UpgradeDuringKill => (self.kill_and_start_again(victim).await, None),
            _ => {
                let (injected, span) = self.cut_off_and_heal(vec![victim]).await;
                (injected, Some(span))
            }
        };
        let ended = self.await_upgrade_end().await;
        let mut downs = outages.stop();
        let seen_killed = downs.get(&victim).is_some_and(|spans| !spans.is_empty());
        if let Some(span) = cut_off {
            downs.entry(victim).or_default().push(span);
        }
        let mut broken = two_down_at_once(&downs).map(|(a, b, (from, to))| {
            format!(
                "nodes {a} and {b} were both down for {} ms (from {from}), during the upgrade",
                to - from
            )
        });
        if fault == Fault::UpgradeDuringKill && !seen_killed {
            broken.get_or_insert(format!(
                "the watcher never saw node {victim} down while it was killed: its check has no teeth"
            ));
        }
        let note = match ended {
            Ok(view) => {
                let outcome = match view.state.as_str() {
                    "done" => "done".to_string(),
                    state => format!("{state} ({})", view.reason),
                };
                if let Err(e) = self.upgrade_outcome(&view, &hash).await {
                    broken.get_or_insert(e);
                }
                format!("node {victim} lost while node {gating} was at its gate; upgrade {outcome}")
            }
            Err(e) => {
                broken.get_or_insert(e);
                format!("node {victim} lost while node {gating} was at its gate")
            }
        };
        Injected {
            note: Some(note),
            broken: broken.or(injected.broken.clone()),
            ..injected
        }
    }

    /// This build's static node binary with bytes of its own appended (a
    /// binary runs the same with them): a release whose hash no heart has
    /// seen.
    fn new_node_binary(&mut self) -> std::path::PathBuf {
        self.releases += 1;
        let mark = format!("chaos-{}-{}", self.options.seed, self.releases);
        crate::upgrades::marked_copy(&static_node_binary(), self.cluster.path(), &mark)
    }

    /// Waits until the cluster runs the highest version this release
    /// supports (upgrades need it; it rises soon after a cluster forms).
    async fn await_highest_version(&self) -> Result<(), String> {
        let highest = VersionRange::SUPPORTED.max;
        until(CONVERGE, Duration::from_millis(200), async || {
            let status = batonctl::cmd::status::fetch(&self.client)
                .await
                .map_err(|e| e.to_string())?;
            match status.cluster_version == highest {
                true => Ok(()),
                false => Err(format!(
                    "the cluster version stayed {} (this release goes to {highest})",
                    status.cluster_version
                )),
            }
        })
        .await
    }

    /// The node whose gate the upgrade reached first.
    async fn await_gate(&self) -> Result<u64, String> {
        until(UPGRADE, Duration::from_millis(100), async || {
            let view = upgrade::status(&self.client).await.map_err(|e| e.to_string())?;
            let view = view.ok_or("no upgrade recorded")?;
            if let Some(node) = view.nodes.iter().find(|n| n.phase == "gating") {
                return Ok(node.id);
            }
            match view.state.as_str() {
                "running" | "paused" => Err(format!("no node reached its gate: {}", view.text())),
                _ => Ok(0),
            }
        })
        .await
        .and_then(|node| match node {
            0 => Err("the upgrade ended before any node reached its gate".into()),
            node => Ok(node),
        })
    }

    /// Follows the upgrade until it is done, halted or aborted.
    async fn await_upgrade_end(&self) -> Result<UpgradeView, String> {
        until(UPGRADE, Duration::from_millis(250), async || {
            let view = upgrade::status(&self.client).await.map_err(|e| e.to_string())?;
            let view = view.ok_or("no upgrade recorded")?;
            match view.state.as_str() {
                "running" | "paused" => Err(format!("the upgrade did not end: {}", view.text())),
                _ => Ok(view),
            }
        })
        .await
    }

    /// A done upgrade leaves every node on the new binary; a halted one is
    /// aborted, leaving every node on a binary that runs (the convergence
    /// check then wants every member up).
    async fn upgrade_outcome(&self, view: &UpgradeView, hash: &str) -> Result<(), String> {
        match view.state.as_str() {
            "done" => {
                let status = batonctl::cmd::status::fetch(&self.client)
                    .await
                    .map_err(|e| e.to_string())?;
                match status.members.iter().find(|m| m.binary != hash) {
                    Some(m) => Err(format!(
                        "the upgrade is done but node {} runs {:?}, not the new binary",
                        m.id, m.binary
                    )),
                    None => Ok(()),
                }
            }
            "halted" => upgrade::control(&self.client, "abort")
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot abort the halted upgrade: {e}")),
            _ => Ok(()),
        }
    }
}
