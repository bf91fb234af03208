//! [`Command`] and [`CommandResponse`] as `baton.state.v1` protobuf, with
//! the task and module records they carry.

use baton_proto::state::v1 as pb;
use prost::Message;

use super::DecodeError;
use crate::state::command::{Command, CommandResponse, ModuleVersion};
use crate::state::rejection::Rejection;
use crate::state::rollouts::{Finish, RolloutAction, RolloutSettings};
use crate::state::secrets::{Resealed, SealedSecret};
use crate::state::tasks::{Assignment, CatchUp, RestartPolicy, Schedule, TaskSpec, TaskStatus, TickCommit};

/// A command's encoding.
pub fn encode_command(command: &Command) -> Vec<u8> {
    pb::Command::from(command).encode_to_vec()
}

/// How deep batches may nest: the proposer nests them two deep; a peer's
/// deeper nesting is refused rather than followed down the stack.
pub const MAX_BATCH_DEPTH: u32 = 8;

/// Decodes a command; one of a kind this release does not know (also
/// inside a batch) is [`DecodeError::UnknownKind`], naming its field.
pub fn decode_command(bytes: &[u8]) -> Result<Command, DecodeError> {
    decode_nested(bytes, MAX_BATCH_DEPTH)
}

fn decode_nested(bytes: &[u8], depth: u32) -> Result<Command, DecodeError> {
    let decoded = pb::Command::decode(bytes)?;
    match decoded.kind {
        Some(kind) => command_of(kind, depth),
        None => Err(DecodeError::UnknownKind {
            field: first_field(bytes),
        }),
    }
}

/// The number of the first field in an encoded message (0 if none): the
/// kind of a command this release does not know.
fn first_field(bytes: &[u8]) -> u32 {
    prost::encoding::decode_key(&mut &bytes[..]).map_or(0, |(tag, _)| tag)
}

fn missing(what: &'static str) -> DecodeError {
    DecodeError::Missing(what)
}

impl From<&Command> for pb::Command {
    fn from(command: &Command) -> Self {
        use pb::command::Kind;
        let assignments = |list: &Vec<Assignment>| pb::Assignments {
            assignments: list.iter().map(pb::Assignment::from).collect(),
        };
        let kind = match command {
            Command::Put { key, value } => Kind::Put(pb::Put {
                key: key.clone(),
                value: value.clone(),
            }),
            Command::Delete { key } => Kind::Delete(pb::Delete { key: key.clone() }),
            Command::Batch(commands) => Kind::Batch(pb::Batch {
                commands: commands.iter().map(encode_command).collect(),
            }),
            Command::AddTask(spec) => Kind::AddTask(spec.into()),
            Command::RemoveTask { name } => Kind::RemoveTask(pb::RemoveTask { name: name.clone() }),
            Command::SetTaskStatus { name, status } => Kind::SetTaskStatus(pb::SetTaskStatus {
                name: name.clone(),
                status: Some(status.into()),
            }),
            Command::RunNow { name, now_ms } => Kind::RunNow(pb::RunNow {
                name: name.clone(),
                now_ms: *now_ms,
            }),
            Command::ResealSecrets(changes) => Kind::ResealSecrets(pb::ResealSecrets {
                secrets: changes
                    .iter()
                    .map(|c| pb::Resealed {
                        task: c.task.clone(),
                        was_nonce: c.was_nonce.clone(),
                        secret: Some((&c.secret).into()),
                    })
                    .collect(),
            }),
            Command::SetSecrets { task, set, remove } => Kind::SetSecrets(pb::SetSecrets {
                task: task.clone(),
                set: set.iter().map(pb::SealedSecret::from).collect(),
                remove: remove.clone(),
            }),
            Command::AssignOwners(list) => Kind::AssignOwners(assignments(list)),
            Command::ReassignAll { from, to } => Kind::ReassignAll(pb::ReassignAll {
                from: *from,
                to: to.clone(),
            }),
            Command::HandOff(list) => Kind::HandOff(assignments(list)),
            Command::YieldTask { name, epoch, node } => Kind::YieldTask(pb::YieldTask {
                name: name.clone(),
                epoch: *epoch,
                node: *node,
            }),
            Command::SetDrained { node, drained } => Kind::SetDrained(pb::SetDrained {
                node: *node,
                drained: *drained,
            }),
            Command::CommitTick(commit) => Kind::CommitTick(commit.into()),
            Command::MarkTaskFailed {
                name,
                epoch,
                reason,
                version,
            } => Kind::MarkTaskFailed(pb::MarkTaskFailed {
                name: name.clone(),
                epoch: *epoch,
                reason: reason.clone(),
                version: *version,
            }),
            Command::DeployModule(module) => Kind::DeployModule(module.into()),
            Command::AddRelease {
                module,
                settings,
                now_ms,
            } => Kind::AddRelease(pb::AddRelease {
                module: Some(module.into()),
                settings: Some(settings.into()),
                now_ms: *now_ms,
            }),
            Command::RolloutStep {
                module,
                version,
                switch,
                now_ms,
            } => Kind::RolloutStep(pb::RolloutStep {
                module: module.clone(),
                version: *version,
                switch: switch.clone(),
                now_ms: *now_ms,
            }),
            Command::RolloutControl { module, action, now_ms } => Kind::RolloutControl(pb::RolloutControl {
                module: module.clone(),
                action: Some(action.into()),
                now_ms: *now_ms,
            }),
            Command::RolloutFinish {
                module,
                version,
                finish,
                now_ms,
            } => Kind::RolloutFinish(pb::RolloutFinish {
                module: module.clone(),
                version: *version,
                finish: Some(finish.into()),
                now_ms: *now_ms,
            }),
            Command::SetClusterVersion { version } => {
                Kind::SetClusterVersion(pb::SetClusterVersion { version: *version })
            }
            Command::StartUpgrade {
                binary,
                settings,
                nodes,
                now_ms,
            } => Kind::StartUpgrade(pb::StartUpgrade {
                binary: Some(binary.into()),
                settings: Some(settings.into()),
                nodes: nodes.clone(),
                now_ms: *now_ms,
            }),
            Command::UpgradePhase {
                hash,
                node,
                phase,
                now_ms,
            } => Kind::UpgradePhase(pb::UpgradePhase {
                hash: hash.clone(),
                node: *node,
                phase: Some(phase.into()),
                now_ms: *now_ms,
            }),
            Command::UpgradeControl { hash, action, now_ms } => Kind::UpgradeControl(pb::UpgradeControl {
                hash: hash.clone(),
                action: Some(action.into()),
                now_ms: *now_ms,
            }),
        };
        pb::Command { kind: Some(kind) }
    }
}

fn command_of(kind: pb::command::Kind, depth: u32) -> Result<Command, DecodeError> {
    use pb::command::Kind;
    let assignments = |list: pb::Assignments| list.assignments.into_iter().map(Assignment::from).collect();
    Ok(match kind {
        Kind::Put(p) => Command::Put {
            key: p.key,
            value: p.value,
        },
        Kind::Delete(d) => Command::Delete { key: d.key },
        Kind::Batch(_) if depth == 0 => {
            return Err(DecodeError::Invalid {
                what: "Batch",
                why: format!("batches nest more than {MAX_BATCH_DEPTH} deep"),
            });
        }
        Kind::Batch(b) => Command::Batch(
            b.commands
                .iter()
                .map(|c| decode_nested(c, depth - 1))
                .collect::<Result<_, _>>()?,
        ),
        Kind::AddTask(spec) => Command::AddTask(spec.try_into()?),
        Kind::RemoveTask(r) => Command::RemoveTask { name: r.name },
        Kind::SetTaskStatus(s) => Command::SetTaskStatus {
            name: s.name,
            status: s.status.ok_or(missing("SetTaskStatus.status"))?.try_into()?,
        },
        Kind::RunNow(r) => Command::RunNow {
            name: r.name,
            now_ms: r.now_ms,
        },
        Kind::ResealSecrets(r) => Command::ResealSecrets(
            r.secrets
                .into_iter()
                .map(|c| {
                    Ok(Resealed {
                        task: c.task,
                        was_nonce: c.was_nonce,
                        secret: c.secret.ok_or(missing("Resealed.secret"))?.into(),
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
        ),
        Kind::SetSecrets(s) => Command::SetSecrets {
            task: s.task,
            set: s.set.into_iter().map(SealedSecret::from).collect(),
            remove: s.remove,
        },
        Kind::AssignOwners(list) => Command::AssignOwners(assignments(list)),
        Kind::ReassignAll(r) => Command::ReassignAll { from: r.from, to: r.to },
        Kind::HandOff(list) => Command::HandOff(assignments(list)),
        Kind::YieldTask(y) => Command::YieldTask {
            name: y.name,
            epoch: y.epoch,
            node: y.node,
        },
        Kind::SetDrained(d) => Command::SetDrained {
            node: d.node,
            drained: d.drained,
        },
        Kind::CommitTick(c) => Command::CommitTick(c.into()),
        Kind::MarkTaskFailed(m) => Command::MarkTaskFailed {
            name: m.name,
            epoch: m.epoch,
            reason: m.reason,
            version: m.version,
        },
        Kind::DeployModule(m) => Command::DeployModule(m.into()),
        Kind::AddRelease(r) => Command::AddRelease {
            module: r.module.ok_or(missing("AddRelease.module"))?.into(),
            settings: r.settings.ok_or(missing("AddRelease.settings"))?.into(),
            now_ms: r.now_ms,
        },
        Kind::RolloutStep(s) => Command::RolloutStep {
            module: s.module,
            version: s.version,
            switch: s.switch,
            now_ms: s.now_ms,
        },
        Kind::RolloutControl(c) => Command::RolloutControl {
            module: c.module,
            action: c.action.ok_or(missing("RolloutControl.action"))?.try_into()?,
            now_ms: c.now_ms,
        },
        Kind::RolloutFinish(f) => Command::RolloutFinish {
            module: f.module,
            version: f.version,
            finish: f.finish.ok_or(missing("RolloutFinish.finish"))?.try_into()?,
            now_ms: f.now_ms,
        },
        Kind::SetClusterVersion(s) => Command::SetClusterVersion { version: s.version },
        Kind::StartUpgrade(s) => Command::StartUpgrade {
            binary: s.binary.ok_or(missing("StartUpgrade.binary"))?.into(),
            settings: s.settings.ok_or(missing("StartUpgrade.settings"))?.into(),
            nodes: s.nodes,
            now_ms: s.now_ms,
        },
        Kind::UpgradePhase(p) => Command::UpgradePhase {
            hash: p.hash,
            node: p.node,
            phase: p.phase.ok_or(missing("UpgradePhase.phase"))?.try_into()?,
            now_ms: p.now_ms,
        },
        Kind::UpgradeControl(c) => Command::UpgradeControl {
            hash: c.hash,
            action: c.action.ok_or(missing("UpgradeControl.action"))?.try_into()?,
            now_ms: c.now_ms,
        },
    })
}

impl From<&CommandResponse> for pb::CommandResponse {
    fn from(response: &CommandResponse) -> Self {
        use pb::command_response::Response;
        let response = match response {
            CommandResponse::Done => Response::Done(pb::Unit {}),
            CommandResponse::Previous(value) => Response::Previous(pb::Previous { value: value.clone() }),
            CommandResponse::Module(module) => Response::Module(module.into()),
            CommandResponse::Count(n) => Response::Count(*n),
            CommandResponse::Rejected(rejection) => Response::Rejected(rejection.into()),
            CommandResponse::Batch(responses) => Response::Batch(pb::Responses {
                responses: responses.iter().map(pb::CommandResponse::from).collect(),
            }),
        };
        pb::CommandResponse {
            response: Some(response),
        }
    }
}

impl TryFrom<pb::CommandResponse> for CommandResponse {
    type Error = DecodeError;

    fn try_from(response: pb::CommandResponse) -> Result<Self, DecodeError> {
        use pb::command_response::Response;
        Ok(match response.response.ok_or(missing("CommandResponse.response"))? {
            Response::Done(_) => CommandResponse::Done,
            Response::Previous(p) => CommandResponse::Previous(p.value),
            Response::Module(m) => CommandResponse::Module(m.into()),
            Response::Count(n) => CommandResponse::Count(n),
            // An unknown kind of rejection keeps its text.
            Response::Rejected(r) => CommandResponse::Rejected(Rejection::from(r)),
            Response::Batch(b) => CommandResponse::Batch(
                b.responses
                    .into_iter()
                    .map(CommandResponse::try_from)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

impl From<&TaskSpec> for pb::TaskSpec {
    fn from(spec: &TaskSpec) -> Self {
        pb::TaskSpec {
            name: spec.name.clone(),
            module: spec.module.clone(),
            schedule: Some(pb::Schedule {
                schedule: Some(match &spec.schedule {
                    Schedule::EveryMs(ms) => pb::schedule::Schedule::EveryMs(*ms),
                    Schedule::Cron(cron) => pb::schedule::Schedule::Cron(cron.clone()),
                }),
            }),
            catch_up: match spec.catch_up {
                CatchUp::RunOnce => pb::CatchUp::RunOnce,
                CatchUp::Skip => pb::CatchUp::Skip,
            } as i32,
            restart: Some(pb::RestartPolicy {
                max_restarts: spec.restart.max_restarts,
                window_ms: spec.restart.window_ms,
            }),
            config: spec.config.clone(),
            allow_net: spec.allow_net.clone(),
            allow_http: spec.allow_http.clone(),
            http_ca: spec.http_ca.clone(),
            secrets: spec.secrets.iter().map(pb::SealedSecret::from).collect(),
        }
    }
}

impl From<&SealedSecret> for pb::SealedSecret {
    fn from(secret: &SealedSecret) -> Self {
        pb::SealedSecret {
            name: secret.name.clone(),
            key_id: secret.key_id.clone(),
            nonce: secret.nonce.clone(),
            sealed: secret.sealed.clone(),
        }
    }
}

impl From<pb::SealedSecret> for SealedSecret {
    fn from(secret: pb::SealedSecret) -> Self {
        SealedSecret {
            name: secret.name,
            key_id: secret.key_id,
            nonce: secret.nonce,
            sealed: secret.sealed,
        }
    }
}

impl TryFrom<pb::TaskSpec> for TaskSpec {
    type Error = DecodeError;

    fn try_from(spec: pb::TaskSpec) -> Result<Self, DecodeError> {
        let schedule = match spec.schedule.and_then(|s| s.schedule) {
            Some(pb::schedule::Schedule::EveryMs(ms)) => Schedule::EveryMs(ms),
            Some(pb::schedule::Schedule::Cron(cron)) => Schedule::Cron(cron),
            None => return Err(missing("TaskSpec.schedule")),
        };
        let catch_up = match pb::CatchUp::try_from(spec.catch_up) {
            Ok(pb::CatchUp::RunOnce) => CatchUp::RunOnce,
            Ok(pb::CatchUp::Skip) => CatchUp::Skip,
            Err(_) => {
                return Err(DecodeError::UnknownValue {
                    field: "TaskSpec.catch_up",
                    value: spec.catch_up,
                });
            }
        };
        Ok(TaskSpec {
            name: spec.name,
            module: spec.module,
            schedule,
            catch_up,
            restart: spec.restart.map_or_else(RestartPolicy::default, |r| RestartPolicy {
                max_restarts: r.max_restarts,
                window_ms: r.window_ms,
            }),
            config: spec.config,
            allow_net: spec.allow_net,
            allow_http: spec.allow_http,
            http_ca: spec.http_ca,
            secrets: spec.secrets.into_iter().map(SealedSecret::from).collect(),
        })
    }
}

impl From<&TaskStatus> for pb::TaskStatus {
    fn from(status: &TaskStatus) -> Self {
        use pb::task_status::Status;
        pb::TaskStatus {
            status: Some(match status {
                TaskStatus::Running => Status::Running(pb::Unit {}),
                TaskStatus::Paused => Status::Paused(pb::Unit {}),
                TaskStatus::Failed { reason } => Status::Failed(reason.clone()),
            }),
        }
    }
}

impl TryFrom<pb::TaskStatus> for TaskStatus {
    type Error = DecodeError;

    fn try_from(status: pb::TaskStatus) -> Result<Self, DecodeError> {
        use pb::task_status::Status;
        Ok(match status.status.ok_or(missing("TaskStatus.status"))? {
            Status::Running(_) => TaskStatus::Running,
            Status::Paused(_) => TaskStatus::Paused,
            Status::Failed(reason) => TaskStatus::Failed { reason },
        })
    }
}

impl From<&Assignment> for pb::Assignment {
    fn from(a: &Assignment) -> Self {
        pb::Assignment {
            task: a.task.clone(),
            owner: a.owner,
            expected_epoch: a.expected_epoch,
        }
    }
}

impl From<pb::Assignment> for Assignment {
    fn from(a: pb::Assignment) -> Self {
        Assignment {
            task: a.task,
            owner: a.owner,
            expected_epoch: a.expected_epoch,
        }
    }
}

impl From<&TickCommit> for pb::TickCommit {
    fn from(c: &TickCommit) -> Self {
        pb::TickCommit {
            task: c.task.clone(),
            epoch: c.epoch,
            tick: c.tick,
            node: c.node,
            state: c.state.clone(),
            next_due_ms: c.next_due_ms,
            committed_at_ms: c.committed_at_ms,
            version: c.version,
        }
    }
}

impl From<pb::TickCommit> for TickCommit {
    fn from(c: pb::TickCommit) -> Self {
        TickCommit {
            task: c.task,
            epoch: c.epoch,
            tick: c.tick,
            node: c.node,
            state: c.state,
            next_due_ms: c.next_due_ms,
            committed_at_ms: c.committed_at_ms,
            version: c.version,
        }
    }
}

impl From<&ModuleVersion> for pb::ModuleVersion {
    fn from(m: &ModuleVersion) -> Self {
        pb::ModuleVersion {
            name: m.name.clone(),
            version: m.version,
            hash: m.hash.clone(),
            size: m.size,
            migrates: m.migrates,
            down_to: m.down_to.clone(),
            deployed_at_ms: m.deployed_at_ms,
            signer: m.signer.clone(),
            signature: m.signature.clone(),
        }
    }
}

impl From<pb::ModuleVersion> for ModuleVersion {
    fn from(m: pb::ModuleVersion) -> Self {
        ModuleVersion {
            name: m.name,
            version: m.version,
            hash: m.hash,
            size: m.size,
            migrates: m.migrates,
            down_to: m.down_to,
            deployed_at_ms: m.deployed_at_ms,
            signer: m.signer,
            signature: m.signature,
        }
    }
}

impl From<&RolloutSettings> for pb::RolloutSettings {
    fn from(s: &RolloutSettings) -> Self {
        pb::RolloutSettings {
            canary: s.canary,
            max_parallel: s.max_parallel,
            min_healthy_ms: s.min_healthy_ms,
            healthy_deadline_ms: s.healthy_deadline_ms,
            auto_revert: s.auto_revert,
        }
    }
}

impl From<pb::RolloutSettings> for RolloutSettings {
    fn from(s: pb::RolloutSettings) -> Self {
        RolloutSettings {
            canary: s.canary,
            max_parallel: s.max_parallel,
            min_healthy_ms: s.min_healthy_ms,
            healthy_deadline_ms: s.healthy_deadline_ms,
            auto_revert: s.auto_revert,
        }
    }
}

impl From<&RolloutAction> for pb::RolloutAction {
    fn from(action: &RolloutAction) -> Self {
        use pb::rollout_action::Action;
        pb::RolloutAction {
            action: Some(match action {
                RolloutAction::Pause => Action::Pause(pb::Unit {}),
                RolloutAction::Resume => Action::Resume(pb::Unit {}),
                RolloutAction::Halt { reason } => Action::Halt(reason.clone()),
            }),
        }
    }
}

impl TryFrom<pb::RolloutAction> for RolloutAction {
    type Error = DecodeError;

    fn try_from(action: pb::RolloutAction) -> Result<Self, DecodeError> {
        use pb::rollout_action::Action;
        Ok(match action.action.ok_or(missing("RolloutAction.action"))? {
            Action::Pause(_) => RolloutAction::Pause,
            Action::Resume(_) => RolloutAction::Resume,
            Action::Halt(reason) => RolloutAction::Halt { reason },
        })
    }
}

impl From<&Finish> for pb::Finish {
    fn from(finish: &Finish) -> Self {
        use pb::finish::Finish as F;
        pb::Finish {
            finish: Some(match finish {
                Finish::Done => F::Done(pb::Unit {}),
                Finish::Revert { reason } => F::Revert(reason.clone()),
                Finish::Abort => F::Abort(pb::Unit {}),
            }),
        }
    }
}

impl TryFrom<pb::Finish> for Finish {
    type Error = DecodeError;

    fn try_from(finish: pb::Finish) -> Result<Self, DecodeError> {
        use pb::finish::Finish as F;
        Ok(match finish.finish.ok_or(missing("Finish.finish"))? {
            F::Done(_) => Finish::Done,
            F::Revert(reason) => Finish::Revert { reason },
            F::Abort(_) => Finish::Abort,
        })
    }
}
