//! A rolling upgrade of the node binary ([`crate::state::upgrades`]) as
//! `baton.state.v1` protobuf: its commands' parts and the record a
//! snapshot keeps.

use baton_proto::state::v1 as pb;

use super::DecodeError;
use crate::state::upgrades::{NodeBinary, Phase, Upgrade, UpgradeAction, UpgradeSettings, UpgradeState};

fn missing(what: &'static str) -> DecodeError {
    DecodeError::Missing(what)
}

impl From<&NodeBinary> for pb::NodeBinary {
    fn from(b: &NodeBinary) -> Self {
        pb::NodeBinary {
            hash: b.hash.clone(),
            version: b.version.clone(),
            size: b.size,
            signer: b.signer.clone(),
            signature: b.signature.clone(),
            min_cluster_version: b.min_cluster_version,
            max_cluster_version: b.max_cluster_version,
        }
    }
}

impl From<pb::NodeBinary> for NodeBinary {
    fn from(b: pb::NodeBinary) -> Self {
        NodeBinary {
            hash: b.hash,
            version: b.version,
            size: b.size,
            signer: b.signer,
            signature: b.signature,
            min_cluster_version: b.min_cluster_version,
            max_cluster_version: b.max_cluster_version,
        }
    }
}

impl From<&UpgradeSettings> for pb::UpgradeSettings {
    fn from(s: &UpgradeSettings) -> Self {
        pb::UpgradeSettings {
            min_healthy_ms: s.min_healthy_ms,
            healthy_deadline_ms: s.healthy_deadline_ms,
            auto_revert: s.auto_revert,
            hold_version: s.hold_version,
        }
    }
}

impl From<pb::UpgradeSettings> for UpgradeSettings {
    fn from(s: pb::UpgradeSettings) -> Self {
        UpgradeSettings {
            min_healthy_ms: s.min_healthy_ms,
            healthy_deadline_ms: s.healthy_deadline_ms,
            auto_revert: s.auto_revert,
            hold_version: s.hold_version,
        }
    }
}

impl From<&Phase> for pb::NodePhase {
    fn from(phase: &Phase) -> Self {
        use pb::node_phase::Phase as P;
        pb::NodePhase {
            phase: Some(match phase {
                Phase::Waiting => P::Waiting(pb::Unit {}),
                Phase::Draining => P::Draining(pb::Unit {}),
                Phase::Swapping { gate_index } => P::Swapping(*gate_index),
                Phase::Gating => P::Gating(pb::Unit {}),
                Phase::Done => P::Done(pb::Unit {}),
                Phase::Reverted { reason } => P::Reverted(reason.clone()),
            }),
        }
    }
}

impl TryFrom<pb::NodePhase> for Phase {
    type Error = DecodeError;

    fn try_from(phase: pb::NodePhase) -> Result<Self, DecodeError> {
        use pb::node_phase::Phase as P;
        Ok(match phase.phase.ok_or(missing("NodePhase.phase"))? {
            P::Waiting(_) => Phase::Waiting,
            P::Draining(_) => Phase::Draining,
            P::Swapping(gate_index) => Phase::Swapping { gate_index },
            P::Gating(_) => Phase::Gating,
            P::Done(_) => Phase::Done,
            P::Reverted(reason) => Phase::Reverted { reason },
        })
    }
}

impl From<&UpgradeAction> for pb::UpgradeAction {
    fn from(action: &UpgradeAction) -> Self {
        use pb::upgrade_action::Action;
        pb::UpgradeAction {
            action: Some(match action {
                UpgradeAction::Pause => Action::Pause(pb::Unit {}),
                UpgradeAction::Resume => Action::Resume(pb::Unit {}),
                UpgradeAction::Halt { reason } => Action::Halt(reason.clone()),
                UpgradeAction::Abort => Action::Abort(pb::Unit {}),
                UpgradeAction::Finalize => Action::Finalize(pb::Unit {}),
            }),
        }
    }
}

impl TryFrom<pb::UpgradeAction> for UpgradeAction {
    type Error = DecodeError;

    fn try_from(action: pb::UpgradeAction) -> Result<Self, DecodeError> {
        use pb::upgrade_action::Action;
        Ok(match action.action.ok_or(missing("UpgradeAction.action"))? {
            Action::Pause(_) => UpgradeAction::Pause,
            Action::Resume(_) => UpgradeAction::Resume,
            Action::Halt(reason) => UpgradeAction::Halt { reason },
            Action::Abort(_) => UpgradeAction::Abort,
            Action::Finalize(_) => UpgradeAction::Finalize,
        })
    }
}

impl From<&UpgradeState> for pb::UpgradeState {
    fn from(state: &UpgradeState) -> Self {
        use pb::upgrade_state::State;
        pb::UpgradeState {
            state: Some(match state {
                UpgradeState::Running => State::Running(pb::Unit {}),
                UpgradeState::Paused => State::Paused(pb::Unit {}),
                UpgradeState::Halted { reason } => State::Halted(reason.clone()),
                UpgradeState::Done => State::Done(pb::Unit {}),
                UpgradeState::Aborted => State::Aborted(pb::Unit {}),
            }),
        }
    }
}

impl TryFrom<pb::UpgradeState> for UpgradeState {
    type Error = DecodeError;

    fn try_from(state: pb::UpgradeState) -> Result<Self, DecodeError> {
        use pb::upgrade_state::State;
        Ok(match state.state.ok_or(missing("UpgradeState.state"))? {
            State::Running(_) => UpgradeState::Running,
            State::Paused(_) => UpgradeState::Paused,
            State::Halted(reason) => UpgradeState::Halted { reason },
            State::Done(_) => UpgradeState::Done,
            State::Aborted(_) => UpgradeState::Aborted,
        })
    }
}

impl From<&Upgrade> for pb::Upgrade {
    fn from(u: &Upgrade) -> Self {
        pb::Upgrade {
            binary: Some((&u.binary).into()),
            settings: Some((&u.settings).into()),
            state: Some((&u.state).into()),
            nodes: u
                .phases
                .iter()
                .map(|(node, phase)| pb::UpgradeNode {
                    node: *node,
                    phase: Some(phase.into()),
                })
                .collect(),
            started_at_ms: u.started_at_ms,
            phase_started_ms: u.phase_started_ms,
            finished_at_ms: u.finished_at_ms,
            drained_before: u.drained_before.iter().copied().collect(),
            finalized_at_ms: u.finalized_at_ms,
        }
    }
}

impl TryFrom<pb::Upgrade> for Upgrade {
    type Error = DecodeError;

    fn try_from(u: pb::Upgrade) -> Result<Self, DecodeError> {
        let mut phases = std::collections::BTreeMap::new();
        for node in u.nodes {
            phases.insert(node.node, node.phase.ok_or(missing("UpgradeNode.phase"))?.try_into()?);
        }
        Ok(Upgrade {
            binary: u.binary.ok_or(missing("Upgrade.binary"))?.into(),
            settings: u.settings.ok_or(missing("Upgrade.settings"))?.into(),
            state: u.state.ok_or(missing("Upgrade.state"))?.try_into()?,
            phases,
            started_at_ms: u.started_at_ms,
            phase_started_ms: u.phase_started_ms,
            finished_at_ms: u.finished_at_ms,
            drained_before: u.drained_before.into_iter().collect(),
            finalized_at_ms: u.finalized_at_ms,
        })
    }
}
