//! A rolling upgrade of the node binary, as it is replicated in Raft: the
//! signed binary, the settings, and each node's phase. The leader's driver
//! moves one node at a time through the phases; a new leader resumes from
//! here. Plain data and rules.
//!
//! A node's phases, in order: `Waiting`; `Draining` (its tasks are handed
//! off); `Swapping` (its heart stops it and starts the new binary on
//! trial; the node must come back having applied `gate_index`);
//! `Gating` (undrained, it must run well for `min_healthy_ms`); then
//! `Done` (its heart made the binary permanent), or `Reverted` (its heart
//! went back to the binary before, which halts the upgrade).
//!
//! Introduced by cluster version 6 (`NODE_UPGRADES`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::cluster_version::{ClusterVersion, VersionRange};
use crate::state::member::NodeId;
use crate::state::rejection::Rejection;

/// A signed node binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBinary {
    /// sha256 of the file, hex.
    pub hash: String,
    /// The version its signer gave it.
    pub version: String,
    pub size: u64,
    /// The public key that signed it, hex.
    pub signer: String,
    /// Its ed25519 signature over the version and hash, hex (see
    /// `modules::signing::sign_node_binary`).
    pub signature: String,
    /// The cluster versions it supports, as it reports them
    /// (`baton-node --describe`).
    pub min_cluster_version: ClusterVersion,
    pub max_cluster_version: ClusterVersion,
}

impl NodeBinary {
    pub fn range(&self) -> VersionRange {
        VersionRange {
            min: self.min_cluster_version,
            max: self.max_cluster_version,
        }
    }
}

/// How an upgrade proceeds: `batonctl upgrade` flags, after Nomad's
/// `update` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeSettings {
    /// How long a node must run well on the new binary before it is made
    /// permanent there.
    pub min_healthy_ms: u64,
    /// How long a node may take, from its swap, to become healthy.
    pub healthy_deadline_ms: u64,
    /// Put a node that fails its gate back on its binary before (otherwise
    /// halt and leave it on trial until its heart's deadline).
    pub auto_revert: bool,
    /// Keep the cluster version where it is once every node runs the new
    /// binary, until an operator finalizes the upgrade: until then another
    /// upgrade can still bring the binary before back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold_version: bool,
}

impl Default for UpgradeSettings {
    fn default() -> Self {
        UpgradeSettings {
            min_healthy_ms: 10_000,
            healthy_deadline_ms: 120_000,
            auto_revert: true,
            hold_version: false,
        }
    }
}

impl UpgradeSettings {
    /// Checks the settings a user gave; the message says what to change.
    pub fn check(&self) -> Result<(), String> {
        if self.healthy_deadline_ms < self.min_healthy_ms {
            return Err(format!(
                "--healthy-deadline ({} ms) must be at least --min-healthy ({} ms)",
                self.healthy_deadline_ms, self.min_healthy_ms
            ));
        }
        if self.healthy_deadline_ms > 3600 * 1000 {
            return Err("--healthy-deadline must be at most 1h (a heart keeps a trial at most that long)".into());
        }
        Ok(())
    }
}

/// Where an upgrade is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum UpgradeState {
    /// Moving nodes one at a time.
    Running,
    /// Paused by an operator: no node starts a phase until `upgrade resume`.
    Paused,
    /// Stopped by a node that failed: waits for `upgrade resume` (which
    /// tries that node again) or `upgrade abort`.
    Halted { reason: String },
    /// Every node runs the new binary, made permanent.
    Done,
    /// Stopped for good by an operator; nodes already done keep the new
    /// binary.
    Aborted,
}

impl UpgradeState {
    /// Whether the upgrade may still move a node (so no other may start).
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            UpgradeState::Running | UpgradeState::Paused | UpgradeState::Halted { .. }
        )
    }

    /// The short name `upgrade status` prints.
    pub fn name(&self) -> &'static str {
        match self {
            UpgradeState::Running => "running",
            UpgradeState::Paused => "paused",
            UpgradeState::Halted { .. } => "halted",
            UpgradeState::Done => "done",
            UpgradeState::Aborted => "aborted",
        }
    }
}

/// One node's place in an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    Waiting,
    Draining,
    /// Its heart runs the new binary on trial; the node must come back
    /// having applied `gate_index` (the commit index when it was swapped).
    Swapping {
        gate_index: u64,
    },
    /// Undrained on the new binary, watched for `min_healthy_ms`.
    Gating,
    Done,
    /// It failed and is back on the binary before.
    Reverted {
        reason: String,
    },
}

impl Phase {
    /// Whether the node is between `Draining` and `Done`: the one the
    /// upgrade is working on.
    pub fn is_current(&self) -> bool {
        matches!(self, Phase::Draining | Phase::Swapping { .. } | Phase::Gating)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Draining => "draining",
            Phase::Swapping { .. } => "swapping",
            Phase::Gating => "gating",
            Phase::Done => "done",
            Phase::Reverted { .. } => "reverted",
        }
    }
}

/// An operator's (or the driver's) change to an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeAction {
    Pause,
    /// Continue a paused or halted upgrade; a reverted node is tried again.
    Resume,
    Halt {
        reason: String,
    },
    Abort,
    /// Let the cluster version rise after a done upgrade that holds it.
    Finalize,
}

impl UpgradeAction {
    pub fn name(&self) -> &'static str {
        match self {
            UpgradeAction::Pause => "pause",
            UpgradeAction::Resume => "resume",
            UpgradeAction::Halt { .. } => "halt",
            UpgradeAction::Abort => "abort",
            UpgradeAction::Finalize => "finalize",
        }
    }
}

/// The cluster's latest upgrade of the node binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    pub binary: NodeBinary,
    pub settings: UpgradeSettings,
    #[serde(flatten)]
    pub state: UpgradeState,
    /// Every node it upgrades, and where each is.
    pub phases: BTreeMap<NodeId, Phase>,
    pub started_at_ms: u64,
    /// When the latest phase began (the leader's clock).
    pub phase_started_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// Nodes an operator had drained when it started: they stay drained
    /// after their turn.
    #[serde(default)]
    pub drained_before: std::collections::BTreeSet<NodeId>,
    /// When an operator finalized a done upgrade that holds the cluster
    /// version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_at_ms: Option<u64>,
}

#[cfg(test)]
impl NodeBinary {
    /// A binary for tests of the rules: `hash`, release 0.5.0, unsigned,
    /// running at cluster versions 1 to `max`.
    pub fn sample(hash: &str, max: ClusterVersion) -> NodeBinary {
        NodeBinary {
            hash: hash.into(),
            version: "0.5.0".into(),
            size: 1,
            signer: String::new(),
            signature: String::new(),
            min_cluster_version: 1,
            max_cluster_version: max,
        }
    }
}

/// Whether a node moving into `phase` is drained (true) or undrained
/// (false) by it, if either.
pub fn drain_of(phase: &Phase) -> Option<bool> {
    match phase {
        Phase::Draining => Some(true),
        Phase::Gating | Phase::Done | Phase::Reverted { .. } => Some(false),
        Phase::Waiting | Phase::Swapping { .. } => None,
    }
}

impl Upgrade {
    /// A new upgrade of `nodes` to `binary`, refused if the binary cannot
    /// run at the cluster's version `cluster_version`.
    pub fn start(
        binary: NodeBinary,
        settings: UpgradeSettings,
        nodes: &[NodeId],
        cluster_version: ClusterVersion,
        now_ms: u64,
    ) -> Result<Upgrade, Rejection> {
        if !binary.range().contains(cluster_version) {
            return Err(Rejection::BinaryUnsupported {
                version: binary.version.clone(),
                min: binary.min_cluster_version,
                max: binary.max_cluster_version,
                cluster_version,
            });
        }
        Ok(Upgrade {
            binary,
            settings,
            state: UpgradeState::Running,
            phases: nodes.iter().map(|n| (*n, Phase::Waiting)).collect(),
            started_at_ms: now_ms,
            phase_started_ms: now_ms,
            finished_at_ms: None,
            drained_before: Default::default(),
            finalized_at_ms: None,
        })
    }

    /// Whether the cluster version must stay where it is: while the upgrade
    /// is live (a node may still go back to the binary before, which must
    /// read everything), and after it is done while it holds the version
    /// and is not finalized.
    pub fn holds_cluster_version(&self) -> bool {
        self.state.is_live() || self.awaits_finalize()
    }

    /// Whether it has ended (done or aborted), holds the cluster version,
    /// and waits for `upgrade finalize`. An upgrade started meanwhile takes
    /// the hold over (see `ClusterState::start_upgrade`).
    pub fn awaits_finalize(&self) -> bool {
        !self.state.is_live() && self.settings.hold_version && self.finalized_at_ms.is_none()
    }

    /// The node being worked on, if any.
    pub fn current(&self) -> Option<NodeId> {
        self.phases.iter().find(|(_, p)| p.is_current()).map(|(n, _)| *n)
    }

    /// Moves `node` to `phase`, one step along its way (asking again for
    /// the phase it is in changes nothing; any other move, such as a stale
    /// leader's, is refused). A running upgrade begins a node; a paused one
    /// still finishes the node it works on (so none is left drained or on
    /// trial). One node at a time; a reverted node halts the upgrade, and
    /// the last node done finishes it.
    pub fn set_phase(&mut self, node: NodeId, phase: Phase, now_ms: u64) -> Result<(), Rejection> {
        let Some(current) = self.phases.get(&node) else {
            return Err(self.refused(&format!("move node {node}, which it does not upgrade,")));
        };
        if current == &phase {
            return Ok(());
        }
        let allowed = match (&self.state, current, &phase) {
            (UpgradeState::Running, Phase::Waiting, Phase::Draining) => true,
            (
                UpgradeState::Running | UpgradeState::Paused,
                Phase::Draining | Phase::Swapping { .. } | Phase::Gating,
                Phase::Reverted { .. },
            ) => true,
            (UpgradeState::Running | UpgradeState::Paused, from, to) => matches!(
                (from, to),
                (Phase::Draining, Phase::Swapping { .. })
                    | (Phase::Swapping { .. }, Phase::Gating)
                    | (Phase::Gating, Phase::Done)
            ),
            _ => false,
        };
        if !allowed {
            return Err(self.refused(&format!("move node {node} from {} to {}", current.name(), phase.name())));
        }
        if phase.is_current()
            && let Some(other) = self.current().filter(|other| *other != node)
        {
            return Err(self.refused(&format!("work on node {node} while node {other} is not done")));
        }
        if let Phase::Reverted { reason } = &phase {
            self.state = UpgradeState::Halted {
                reason: format!("node {node}: {reason}"),
            };
        }
        self.phases.insert(node, phase);
        self.phase_started_ms = now_ms;
        if self.phases.values().all(|p| *p == Phase::Done) {
            self.state = UpgradeState::Done;
            self.finished_at_ms = Some(now_ms);
        }
        Ok(())
    }

    /// Pauses, resumes, halts, aborts or finalizes.
    pub fn control(&mut self, action: &UpgradeAction, now_ms: u64) -> Result<(), Rejection> {
        if *action == UpgradeAction::Finalize {
            if !self.awaits_finalize() {
                let state = match (self.state.is_live(), self.settings.hold_version) {
                    (true, _) => self.state.name(),
                    (false, false) => "over and did not hold the cluster version (no --hold-version)",
                    (false, true) => "over and already finalized",
                };
                return Err(Rejection::UpgradeActionRefused {
                    version: self.binary.version.clone(),
                    state: state.to_string(),
                    action: action.name().to_string(),
                });
            }
            self.finalized_at_ms = Some(now_ms);
            return Ok(());
        }
        let next = match (&self.state, action) {
            (UpgradeState::Running, UpgradeAction::Pause) => UpgradeState::Paused,
            (UpgradeState::Paused | UpgradeState::Halted { .. }, UpgradeAction::Resume) => {
                // A node that failed is tried again from the start.
                for phase in self.phases.values_mut() {
                    if matches!(phase, Phase::Reverted { .. }) {
                        *phase = Phase::Waiting;
                    }
                }
                UpgradeState::Running
            }
            (UpgradeState::Running, UpgradeAction::Halt { reason }) => UpgradeState::Halted { reason: reason.clone() },
            (state, UpgradeAction::Abort) if state.is_live() => {
                // The node in progress goes back to its binary before.
                if let Some(node) = self.current() {
                    self.phases.insert(
                        node,
                        Phase::Reverted {
                            reason: "the upgrade was aborted".into(),
                        },
                    );
                }
                UpgradeState::Aborted
            }
            _ => return Err(self.refused(action.name())),
        };
        if next == UpgradeState::Aborted {
            self.finished_at_ms = Some(now_ms);
        }
        self.state = next;
        self.phase_started_ms = now_ms;
        Ok(())
    }

    fn refused(&self, action: &str) -> Rejection {
        Rejection::UpgradeActionRefused {
            version: self.binary.version.clone(),
            state: self.state.name().to_string(),
            action: action.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(max: ClusterVersion) -> NodeBinary {
        NodeBinary::sample(&"ab".repeat(32), max)
    }

    fn upgrade() -> Upgrade {
        Upgrade::start(binary(6), UpgradeSettings::default(), &[1, 2, 3], 6, 100).unwrap()
    }

    #[test]
    fn a_binary_that_cannot_run_at_the_clusters_version_is_refused() {
        let refused = Upgrade::start(binary(5), UpgradeSettings::default(), &[1], 6, 0).unwrap_err();
        assert!(matches!(
            refused,
            Rejection::BinaryUnsupported { cluster_version: 6, .. }
        ));
        assert!(refused.to_string().contains("0.5.0"), "{refused}");
    }

    #[test]
    fn nodes_go_through_their_phases_one_at_a_time_and_the_last_finishes_it() {
        let mut up = upgrade();
        assert_eq!(up.current(), None);
        up.set_phase(2, Phase::Draining, 110).unwrap();
        assert_eq!(up.current(), Some(2));
        assert!(matches!(
            up.set_phase(1, Phase::Draining, 111),
            Err(Rejection::UpgradeActionRefused { .. })
        ));
        up.set_phase(2, Phase::Swapping { gate_index: 40 }, 120).unwrap();
        up.set_phase(2, Phase::Swapping { gate_index: 40 }, 121).unwrap(); // a retry
        assert_eq!(up.phase_started_ms, 120);
        up.set_phase(2, Phase::Gating, 130).unwrap();
        up.set_phase(2, Phase::Done, 140).unwrap();
        assert_eq!(up.current(), None);
        assert!(up.set_phase(2, Phase::Draining, 141).is_err(), "a stale leader's move");
        for node in [1, 3] {
            assert!(up.set_phase(node, Phase::Done, 150).is_err(), "skips its phases");
            through(&mut up, node, 160);
        }
        assert_eq!(up.state, UpgradeState::Done);
        assert_eq!(up.finished_at_ms, Some(160));
        assert!(
            up.set_phase(1, Phase::Draining, 170).is_err(),
            "a finished upgrade moves nothing"
        );
        assert!(up.set_phase(9, Phase::Draining, 170).is_err());
    }

    fn through(up: &mut Upgrade, node: NodeId, now_ms: u64) {
        up.set_phase(node, Phase::Draining, now_ms).unwrap();
        up.set_phase(node, Phase::Swapping { gate_index: 1 }, now_ms).unwrap();
        up.set_phase(node, Phase::Gating, now_ms).unwrap();
        up.set_phase(node, Phase::Done, now_ms).unwrap();
    }

    #[test]
    fn the_cluster_version_is_held_while_live_and_after_done_until_finalized_if_asked() {
        let mut up = upgrade();
        assert!(up.holds_cluster_version(), "running");
        for node in [1, 2, 3] {
            through(&mut up, node, 10);
        }
        assert!(!up.holds_cluster_version(), "done, without --hold-version");
        let refused = up.control(&UpgradeAction::Finalize, 11).unwrap_err();
        assert!(refused.to_string().contains("--hold-version"), "{refused}");

        let mut up = Upgrade::start(binary(6), settings_holding(), &[1, 2], 6, 0).unwrap();
        let early = up.control(&UpgradeAction::Finalize, 1).unwrap_err();
        assert!(early.to_string().contains("running"), "{early}");
        for node in [1, 2] {
            through(&mut up, node, 10);
        }
        assert!(up.awaits_finalize() && up.holds_cluster_version());
        up.control(&UpgradeAction::Finalize, 20).unwrap();
        assert_eq!(up.finalized_at_ms, Some(20));
        assert!(!up.holds_cluster_version());
        assert_eq!(up.state, UpgradeState::Done);
        let again = up.control(&UpgradeAction::Finalize, 21).unwrap_err();
        assert!(again.to_string().contains("already finalized"), "{again}");

        // An aborted one holds it too, until finalized: the nodes it did
        // upgrade run the new binary.
        let mut up = Upgrade::start(binary(6), settings_holding(), &[1], 6, 0).unwrap();
        up.control(&UpgradeAction::Abort, 1).unwrap();
        assert!(up.awaits_finalize() && up.holds_cluster_version());
        up.control(&UpgradeAction::Finalize, 2).unwrap();
        assert!(!up.holds_cluster_version());
    }

    fn settings_holding() -> UpgradeSettings {
        UpgradeSettings {
            hold_version: true,
            ..UpgradeSettings::default()
        }
    }

    #[test]
    fn a_paused_upgrade_finishes_its_node_but_begins_no_other() {
        let mut up = upgrade();
        up.set_phase(1, Phase::Draining, 1).unwrap();
        up.control(&UpgradeAction::Pause, 2).unwrap();
        up.set_phase(1, Phase::Swapping { gate_index: 1 }, 3).unwrap();
        up.set_phase(1, Phase::Gating, 4).unwrap();
        up.set_phase(1, Phase::Done, 5).unwrap();
        assert!(up.set_phase(2, Phase::Draining, 6).is_err());
        assert_eq!(up.state, UpgradeState::Paused);
    }

    #[test]
    fn an_abort_reverts_the_node_in_progress() {
        let mut up = upgrade();
        through(&mut up, 2, 1);
        up.set_phase(1, Phase::Draining, 2).unwrap();
        up.set_phase(1, Phase::Swapping { gate_index: 1 }, 3).unwrap();
        up.control(&UpgradeAction::Abort, 4).unwrap();
        assert!(matches!(&up.phases[&1], Phase::Reverted { reason } if reason.contains("aborted")));
        assert_eq!(up.phases[&2], Phase::Done, "a node done keeps the new binary");
        assert_eq!(up.current(), None);
    }

    #[test]
    fn a_reverted_node_halts_the_upgrade_and_resume_tries_it_again() {
        let mut up = upgrade();
        up.set_phase(1, Phase::Draining, 110).unwrap();
        up.set_phase(
            1,
            Phase::Reverted {
                reason: "exit status 1".into(),
            },
            120,
        )
        .unwrap();
        assert_eq!(
            up.state,
            UpgradeState::Halted {
                reason: "node 1: exit status 1".into()
            }
        );
        assert!(up.set_phase(2, Phase::Draining, 130).is_err(), "halted");
        up.control(&UpgradeAction::Resume, 140).unwrap();
        assert_eq!(up.state, UpgradeState::Running);
        assert_eq!(up.phases[&1], Phase::Waiting);
    }

    #[test]
    fn pause_resume_and_abort_follow_the_state() {
        let mut up = upgrade();
        assert!(up.control(&UpgradeAction::Resume, 1).is_err(), "not paused");
        up.control(&UpgradeAction::Pause, 2).unwrap();
        assert!(up.set_phase(1, Phase::Draining, 3).is_err(), "paused");
        up.control(&UpgradeAction::Resume, 4).unwrap();
        up.control(
            &UpgradeAction::Halt {
                reason: "preflight".into(),
            },
            5,
        )
        .unwrap();
        up.control(&UpgradeAction::Abort, 6).unwrap();
        assert_eq!(up.state, UpgradeState::Aborted);
        assert!(!up.state.is_live());
        assert_eq!(up.finished_at_ms, Some(6));
        let refused = up.control(&UpgradeAction::Abort, 7).unwrap_err();
        assert!(refused.to_string().contains("aborted"), "{refused}");
    }
}
