//! [`ClusterState`], a snapshot's data, as `baton.state.v1` protobuf. Every
//! map is written as a list sorted by key (the maps are `BTreeMap`s), so
//! equal states encode to equal bytes. From cluster version 12
//! ([`COMPACT_HISTORY`]) a task's tick history is written as its deltas
//! (`TaskRecord.compact_history`); below it, as its records.

use baton_proto::state::v1 as pb;
use prost::Message;

use super::DecodeError;
use crate::state::cluster::ClusterState;
use crate::state::cluster_version::{COMPACT_HISTORY, ClusterVersion};
use crate::state::frozen::FrozenState;
use crate::state::rollouts::{Release, ReleaseOutcome, Rollout, RolloutState};
use crate::state::tasks::{History, TaskRecord, TaskTable, TickRecord};
use crate::state::upgrades::Upgrade;

/// The field number of `ClusterState.tasks`.
const TASKS_FIELD: u32 = 6;

/// A state's encoding.
pub fn encode_state(state: &ClusterState) -> Vec<u8> {
    encode_parts(state, state.tasks.values())
}

/// A frozen state's encoding: the same bytes as the state it froze.
pub fn encode_frozen(frozen: &FrozenState) -> Vec<u8> {
    encode_parts(&frozen.rest, frozen.tasks.iter().map(|task| &**task))
}

/// `rest` with `tasks` as its tasks, written one record at a time rather
/// than as one message built whole (which would hold a second copy of every
/// record): the fields before the tasks, each task, then those after, in
/// field order, so the bytes are the whole message's.
fn encode_parts<'a>(rest: &ClusterState, tasks: impl Iterator<Item = &'a TaskRecord>) -> Vec<u8> {
    let mut head = without_tasks(rest);
    let tail = pb::ClusterState {
        drained: std::mem::take(&mut head.drained),
        upgrade: head.upgrade.take(),
        ..pb::ClusterState::default()
    };
    let mut bytes = head.encode_to_vec();
    for task in tasks {
        let record = task_record(task, rest.cluster_version);
        prost::encoding::message::encode(TASKS_FIELD, &record, &mut bytes);
    }
    tail.encode(&mut bytes).expect("a Vec grows as needed");
    bytes
}

/// Decodes a state.
pub fn decode_state(bytes: &[u8]) -> Result<ClusterState, DecodeError> {
    pb::ClusterState::decode(bytes)?.try_into()
}

fn missing(what: &'static str) -> DecodeError {
    DecodeError::Missing(what)
}

/// Every field of `state` but its tasks.
fn without_tasks(state: &ClusterState) -> pb::ClusterState {
    pb::ClusterState {
        cluster_version: state.cluster_version,
        kv: state
            .kv
            .iter()
            .map(|(key, value)| pb::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        modules: state.modules.values().map(pb::ModuleVersion::from).collect(),
        releases: state
            .releases
            .iter()
            .map(|(module, releases)| pb::ModuleReleases {
                module: module.clone(),
                releases: releases.iter().map(pb::Release::from).collect(),
            })
            .collect(),
        rollouts: state
            .rollouts
            .iter()
            .map(|(module, rollout)| rollout_to(module, rollout))
            .collect(),
        tasks: Vec::new(),
        drained: state.drained.iter().copied().collect(),
        upgrade: state.upgrade.as_ref().map(pb::Upgrade::from),
    }
}

impl TryFrom<pb::ClusterState> for ClusterState {
    type Error = DecodeError;

    fn try_from(state: pb::ClusterState) -> Result<Self, DecodeError> {
        let mut rollouts = std::collections::BTreeMap::new();
        for rollout in state.rollouts {
            let module = rollout.module.clone();
            rollouts.insert(module, rollout_from(rollout)?);
        }
        if state.cluster_version < COMPACT_HISTORY && state.tasks.iter().any(|t| t.compact_history.is_some()) {
            return Err(DecodeError::Invalid {
                what: "ClusterState",
                why: format!(
                    "a task's history is in the compact form, which no release writes below cluster version \
                     {COMPACT_HISTORY}, and the state is at {}",
                    state.cluster_version
                ),
            });
        }
        let tasks: Vec<TaskRecord> = state
            .tasks
            .into_iter()
            .map(TaskRecord::try_from)
            .collect::<Result<_, _>>()?;
        let mut releases = std::collections::BTreeMap::new();
        for module in state.releases {
            let list = module
                .releases
                .into_iter()
                .map(Release::try_from)
                .collect::<Result<_, _>>()?;
            releases.insert(module.module, list);
        }
        Ok(ClusterState {
            kv: state.kv.into_iter().map(|kv| (kv.key, kv.value)).collect(),
            modules: state.modules.into_iter().map(|m| (m.name.clone(), m.into())).collect(),
            releases,
            rollouts,
            tasks: TaskTable::from_records(tasks),
            drained: state.drained.into_iter().collect(),
            cluster_version: state.cluster_version.max(crate::state::cluster_version::FIRST),
            upgrade: state.upgrade.map(Upgrade::try_from).transpose()?,
        })
    }
}

impl From<&Release> for pb::Release {
    fn from(release: &Release) -> Self {
        use pb::release_outcome::Outcome;
        pb::Release {
            module: Some((&release.module).into()),
            outcome: Some(pb::ReleaseOutcome {
                outcome: Some(match &release.outcome {
                    ReleaseOutcome::Deployed => Outcome::Deployed(pb::Unit {}),
                    ReleaseOutcome::RollingOut => Outcome::RollingOut(pb::Unit {}),
                    ReleaseOutcome::RolledOut => Outcome::RolledOut(pb::Unit {}),
                    ReleaseOutcome::Reverted { reason } => Outcome::Reverted(reason.clone()),
                    ReleaseOutcome::Aborted => Outcome::Aborted(pb::Unit {}),
                }),
            }),
        }
    }
}

impl TryFrom<pb::Release> for Release {
    type Error = DecodeError;

    fn try_from(release: pb::Release) -> Result<Self, DecodeError> {
        use pb::release_outcome::Outcome;
        let outcome = match release.outcome.and_then(|o| o.outcome) {
            Some(Outcome::Deployed(_)) => ReleaseOutcome::Deployed,
            Some(Outcome::RollingOut(_)) => ReleaseOutcome::RollingOut,
            Some(Outcome::RolledOut(_)) => ReleaseOutcome::RolledOut,
            Some(Outcome::Reverted(reason)) => ReleaseOutcome::Reverted { reason },
            Some(Outcome::Aborted(_)) => ReleaseOutcome::Aborted,
            None => return Err(missing("Release.outcome")),
        };
        Ok(Release {
            module: release.module.ok_or(missing("Release.module"))?.into(),
            outcome,
        })
    }
}

fn rollout_to(module: &str, rollout: &Rollout) -> pb::Rollout {
    use pb::rollout_state::State;
    pb::Rollout {
        module: module.to_string(),
        from: rollout.from,
        release: Some((&rollout.release).into()),
        settings: Some((&rollout.settings).into()),
        state: Some(pb::RolloutState {
            state: Some(match &rollout.state {
                RolloutState::Running => State::Running(pb::Unit {}),
                RolloutState::Paused => State::Paused(pb::Unit {}),
                RolloutState::Halted { reason } => State::Halted(reason.clone()),
                RolloutState::Done => State::Done(pb::Unit {}),
                RolloutState::Reverted { reason } => State::Reverted(reason.clone()),
                RolloutState::Aborted => State::Aborted(pb::Unit {}),
            }),
        }),
        switched: rollout.switched.iter().copied().collect(),
        steps: rollout.steps,
        step_started_ms: rollout.step_started_ms,
        started_at_ms: rollout.started_at_ms,
        finished_at_ms: rollout.finished_at_ms,
    }
}

fn rollout_from(rollout: pb::Rollout) -> Result<Rollout, DecodeError> {
    use pb::rollout_state::State;
    let state = match rollout.state.and_then(|s| s.state) {
        Some(State::Running(_)) => RolloutState::Running,
        Some(State::Paused(_)) => RolloutState::Paused,
        Some(State::Halted(reason)) => RolloutState::Halted { reason },
        Some(State::Done(_)) => RolloutState::Done,
        Some(State::Reverted(reason)) => RolloutState::Reverted { reason },
        Some(State::Aborted(_)) => RolloutState::Aborted,
        None => return Err(missing("Rollout.state")),
    };
    Ok(Rollout {
        from: rollout.from,
        release: rollout.release.ok_or(missing("Rollout.release"))?.into(),
        settings: rollout.settings.ok_or(missing("Rollout.settings"))?.into(),
        state,
        switched: rollout.switched.into_iter().collect(),
        steps: rollout.steps,
        step_started_ms: rollout.step_started_ms,
        started_at_ms: rollout.started_at_ms,
        finished_at_ms: rollout.finished_at_ms,
    })
}

/// `task` as a state at cluster version `version` writes it: its history
/// as deltas from [`COMPACT_HISTORY`] on, as records below.
fn task_record(task: &TaskRecord, version: ClusterVersion) -> pb::TaskRecord {
    let (history, compact_history) = match version >= COMPACT_HISTORY {
        true => (Vec::new(), compact_history(&task.history)),
        false => (task.history.iter().map(tick_record).collect(), None),
    };
    pb::TaskRecord {
        spec: Some((&task.spec).into()),
        owner: task.owner,
        epoch: task.epoch,
        tick: task.tick,
        state: task.state.clone(),
        status: Some((&task.status).into()),
        last_tick_at_ms: task.last_tick_at_ms,
        next_due_ms: task.next_due_ms,
        history,
        handoff_to: task.handoff_to,
        state_version: task.state_version,
        failed_on: task.failed_on,
        run_requested_ms: task.run_requested_ms,
        compact_history,
    }
}

/// A history as its deltas; none for an empty one.
fn compact_history(history: &History) -> Option<pb::CompactHistory> {
    let (first, deltas) = history.deltas();
    first.map(|first| pb::CompactHistory {
        first: Some(tick_record(first)),
        deltas: deltas.to_vec(),
    })
}

fn tick_record(t: TickRecord) -> pb::TickRecord {
    pb::TickRecord {
        tick: t.tick,
        epoch: t.epoch,
        node: t.node,
        committed_at_ms: t.committed_at_ms,
        version: t.version,
    }
}

fn tick_record_from(t: pb::TickRecord) -> TickRecord {
    TickRecord {
        tick: t.tick,
        epoch: t.epoch,
        node: t.node,
        committed_at_ms: t.committed_at_ms,
        version: t.version,
    }
}

/// A task's history, from whichever form it was written in (never both).
fn history_from(records: Vec<pb::TickRecord>, compact: Option<pb::CompactHistory>) -> Result<History, DecodeError> {
    let Some(compact) = compact else {
        return Ok(records.into_iter().map(tick_record_from).collect());
    };
    if !records.is_empty() {
        return Err(DecodeError::Invalid {
            what: "TaskRecord",
            why: "it has its history both as records and as deltas".into(),
        });
    }
    let first = compact.first.ok_or(missing("CompactHistory.first"))?;
    History::from_deltas(tick_record_from(first), &compact.deltas).map_err(|e| DecodeError::Invalid {
        what: "CompactHistory",
        why: e.to_string(),
    })
}

impl TryFrom<pb::TaskRecord> for TaskRecord {
    type Error = DecodeError;

    fn try_from(task: pb::TaskRecord) -> Result<Self, DecodeError> {
        Ok(TaskRecord {
            spec: task.spec.ok_or(missing("TaskRecord.spec"))?.try_into()?,
            owner: task.owner,
            epoch: task.epoch,
            tick: task.tick,
            state: task.state,
            status: task.status.ok_or(missing("TaskRecord.status"))?.try_into()?,
            last_tick_at_ms: task.last_tick_at_ms,
            next_due_ms: task.next_due_ms,
            history: history_from(task.history, task.compact_history)?,
            handoff_to: task.handoff_to,
            state_version: task.state_version,
            failed_on: task.failed_on,
            run_requested_ms: task.run_requested_ms,
        })
    }
}
