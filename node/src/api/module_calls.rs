//! The control calls about task modules: deploy, list, history, and their
//! rollouts.

use baton_proto::{
    ControlRolloutRequest, DeployModuleReply, DeployModuleRequest, ListModulesReply, ModuleHistoryReply, ModuleInfo,
    ReleaseInfo, RolloutInfo, RolloutStatusReply,
};
use tonic::Status;

use super::NodeContext;
use super::errors::{not_leader, propose_error};
use crate::modules::signing::{self, SigningError};
use crate::rollout::{Finish, Rollout, RolloutAction, RolloutSettings};
use crate::runtime::EARLIER_MAX_MODULE_BYTES;
use crate::state::cluster_version::{BelowVersion, HTTP_GRANTS, LARGE_MODULES, SECRETS};
use crate::types::{Command, CommandResponse, ModuleVersion};

/// Longest module name.
const MAX_NAME_BYTES: usize = 64;

fn check_name(name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "module name {name:?} must be 1 to {MAX_NAME_BYTES} characters: lowercase letters, digits, '-' and '_', \
             starting with a letter"
        )))
    }
}

pub(crate) fn module_info(m: &ModuleVersion) -> ModuleInfo {
    ModuleInfo {
        name: m.name.clone(),
        version: m.version,
        hash: m.hash.clone(),
        size: m.size,
        deployed_at_ms: m.deployed_at_ms,
        migrates: m.migrates,
        signer: m.signer.clone(),
        signature: m.signature.clone(),
        down_to: m.down_to.clone(),
    }
}

/// The rollout settings a deploy asked for (defaults where it gave none).
fn settings(given: Option<baton_proto::RolloutSettings>) -> Result<RolloutSettings, Status> {
    let defaults = RolloutSettings::default();
    let Some(given) = given else { return Ok(defaults) };
    let or = |v: u64, d: u64| if v == 0 { d } else { v };
    let settings = RolloutSettings {
        canary: or(given.canary.into(), defaults.canary.into()) as u32,
        max_parallel: or(given.max_parallel.into(), defaults.max_parallel.into()) as u32,
        min_healthy_ms: or(given.min_healthy_ms, defaults.min_healthy_ms),
        healthy_deadline_ms: or(given.healthy_deadline_ms, defaults.healthy_deadline_ms),
        auto_revert: !given.no_auto_revert,
    };
    settings.check().map_err(Status::invalid_argument)?;
    Ok(settings)
}

/// Checks the component, stores its bytes, and records the release through
/// Raft: a first version becomes current, a later one starts a rollout.
/// Nothing is recorded unless every check passes.
pub(crate) async fn deploy(context: &NodeContext, request: DeployModuleRequest) -> Result<DeployModuleReply, Status> {
    let DeployModuleRequest {
        name,
        component,
        signer,
        signature,
        rollout,
    } = request;
    check_name(&name)?;
    let settings = settings(rollout)?;
    let (leader, leader_addr) = crate::types::leader(&context.raft);
    if leader != Some(context.id) {
        return Err(not_leader(leader, leader_addr.as_deref()));
    }
    if component.len() > EARLIER_MAX_MODULE_BYTES {
        // Nodes of 0.8.0 would refuse to fetch it, and so fail its tasks.
        let version = context.state_machine.read(|s| s.cluster_version);
        let what = format!("a module over 16 MiB ({} bytes)", component.len());
        BelowVersion::check(version, LARGE_MODULES, &what)
            .map_err(|e| Status::failed_precondition(format!("module {name} refused: {e}")))?;
    }
    // Signed by a key the cluster trusts, before any work on its bytes.
    let hash = crate::runtime::content_hash(&component);
    signing::verify(&context.trusted_keys, &name, &hash, &signer, &signature).map_err(|e| match e {
        SigningError::NoTrustedKeys(..) => Status::failed_precondition(e.to_string()),
        _ => Status::permission_denied(e.to_string()),
    })?;
    let engine = context.engine.clone();
    let (compiled, component) = tokio::task::spawn_blocking(move || (engine.load(&component), component))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let compiled = compiled.map_err(|e| Status::invalid_argument(format!("module {name} refused: {e}")))?;
    if compiled.imports_http {
        // Every node that may run it must link wasi:http and honour grants.
        let version = context.state_machine.read(|s| s.cluster_version);
        BelowVersion::check(version, HTTP_GRANTS, "a module that imports wasi:http")
            .map_err(|e| Status::failed_precondition(format!("module {name} refused: {e}")))?;
    }
    if compiled.imports_secrets {
        // A node of 0.9.0 has no baton:task/secrets to link it with.
        let version = context.state_machine.read(|s| s.cluster_version);
        BelowVersion::check(version, SECRETS, "a module that imports baton:task/secrets")
            .map_err(|e| Status::failed_precondition(format!("module {name} refused: {e}")))?;
    }
    let (current, live, next) = context.state_machine.read(|s| {
        let live = s.rollouts.get(&name).filter(|r| r.state.is_live()).cloned();
        (s.modules.get(&name).cloned(), live, s.next_version(&name))
    });
    if let Some(current) = current.as_ref().filter(|c| c.hash == compiled.hash) {
        return Ok(DeployModuleReply {
            module: Some(module_info(current)),
            log_index: 0,
            rollout_started: false,
        });
    }
    if let Some(live) = live {
        if live.release.hash == compiled.hash {
            // This very version is rolling out: follow it.
            return Ok(DeployModuleReply {
                module: Some(module_info(&live.release)),
                log_index: 0,
                rollout_started: true,
            });
        }
        return Err(Status::failed_precondition(format!(
            "a rollout of {name} to version {} is {}; wait for it to finish, or `batonctl rollout abort {name}`",
            live.release.version,
            live.state.name()
        )));
    }
    // Whether the new version can take its states back to the current one,
    // asked now so that a rollback can be refused before it strands a task.
    let mut down_to = Vec::new();
    if let Some(current) = &current {
        let (engine, module, from) = (context.engine.clone(), compiled.clone(), current.version);
        let can = tokio::task::spawn_blocking(move || engine.can_downgrade(&module, next, from))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::invalid_argument(format!("module {name} refused: can-downgrade failed: {e}")))?;
        if can {
            down_to.push(from);
        }
    }
    let store = context.modules.clone();
    tokio::task::spawn_blocking(move || store.put(&component))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("cannot store the module: {e}")))?;
    let record = ModuleVersion {
        name,
        version: next,
        hash: compiled.hash.clone(),
        size: compiled.size as u64,
        migrates: compiled.migrates,
        down_to,
        deployed_at_ms: crate::types::now_ms(),
        signer,
        signature,
    };
    let command = Command::AddRelease {
        module: record,
        settings,
        now_ms: crate::types::now_ms(),
    };
    let committed = context.proposer.propose(command).await.map_err(propose_error)?;
    match committed.response {
        CommandResponse::Module(module) => Ok(DeployModuleReply {
            rollout_started: current.is_some() && module.version == next,
            module: Some(module_info(&module)),
            log_index: committed.log_index,
        }),
        CommandResponse::Rejected(why) => Err(super::errors::rejected(&why)),
        other => Err(Status::internal(format!("unexpected response to a deploy: {other:?}"))),
    }
}

/// The deployed modules (their current versions), as this node has applied them.
pub(crate) fn list(context: &NodeContext) -> ListModulesReply {
    ListModulesReply {
        modules: context
            .state_machine
            .read(|s| s.modules.values().map(module_info).collect()),
    }
}

/// Every version of module `name`, oldest first.
pub(crate) fn history(context: &NodeContext, name: &str) -> Result<ModuleHistoryReply, Status> {
    let releases: Vec<ReleaseInfo> = context.state_machine.read(|s| {
        let current = s.modules.get(name).map(|m| m.version);
        s.releases_of(name)
            .iter()
            .map(|r| ReleaseInfo {
                module: Some(module_info(&r.module)),
                outcome: r.outcome.describe(),
                current: current == Some(r.module.version),
            })
            .collect()
    });
    if releases.is_empty() {
        return Err(Status::not_found(format!(
            "no module named {name}; see `batonctl modules list`"
        )));
    }
    Ok(ModuleHistoryReply { releases })
}

fn settings_info(s: &RolloutSettings) -> baton_proto::RolloutSettings {
    baton_proto::RolloutSettings {
        canary: s.canary,
        max_parallel: s.max_parallel,
        min_healthy_ms: s.min_healthy_ms,
        healthy_deadline_ms: s.healthy_deadline_ms,
        no_auto_revert: !s.auto_revert,
    }
}

fn rollout_info(context: &NodeContext, r: &Rollout) -> RolloutInfo {
    let (new, old) = match r.state.is_live() {
        true => context
            .observed
            .gate(&r.release.name, r.release.version)
            .unwrap_or_default(),
        false => Default::default(),
    };
    RolloutInfo {
        module: r.release.name.clone(),
        from_version: r.from,
        to_version: r.release.version,
        state: r.state.name().into(),
        reason: r.state.reason().into(),
        switched: match r.state.is_live() {
            true => r.switched.iter().copied().collect(),
            false => Vec::new(),
        },
        eligible: context.supervision.view().eligible.into_iter().collect(),
        steps: r.steps,
        started_at_ms: r.started_at_ms,
        finished_at_ms: r.finished_at_ms.unwrap_or(0),
        step_started_ms: r.step_started_ms,
        settings: Some(settings_info(&r.settings)),
        new_ok: new.ok,
        new_failed: new.failed,
        old_ok: old.ok,
        old_failed: old.failed,
    }
}

/// The latest rollout of `module` (of every module when empty). Answer
/// from the leader, which observes their health.
pub(crate) fn rollout_status(context: &NodeContext, module: &str) -> Result<RolloutStatusReply, Status> {
    let rollouts: Vec<Rollout> = context.state_machine.read(|s| {
        s.rollouts
            .values()
            .filter(|r| module.is_empty() || r.release.name == module)
            .cloned()
            .collect()
    });
    if !module.is_empty() && rollouts.is_empty() {
        let known = context.state_machine.read(|s| s.modules.contains_key(module));
        return Err(Status::not_found(match known {
            true => format!("module {module} has had no rollout; deploy a new version to start one"),
            false => format!("no module named {module}; see `batonctl modules list`"),
        }));
    }
    Ok(RolloutStatusReply {
        rollouts: rollouts.iter().map(|r| rollout_info(context, r)).collect(),
    })
}

/// Pauses, resumes or aborts (reverts) `module`'s rollout.
pub(crate) async fn control_rollout(
    context: &NodeContext,
    request: ControlRolloutRequest,
) -> Result<RolloutStatusReply, Status> {
    let module = request.module;
    let now_ms = crate::types::now_ms();
    let command = match baton_proto::RolloutAction::try_from(request.action) {
        Ok(baton_proto::RolloutAction::Pause) => Command::RolloutControl {
            module: module.clone(),
            action: RolloutAction::Pause,
            now_ms,
        },
        Ok(baton_proto::RolloutAction::Resume) => Command::RolloutControl {
            module: module.clone(),
            action: RolloutAction::Resume,
            now_ms,
        },
        Ok(baton_proto::RolloutAction::Abort) => {
            let version = context
                .state_machine
                .read(|s| s.rollouts.get(&module).map(|r| r.release.version))
                .ok_or_else(|| {
                    super::errors::rejected(&crate::types::Rejection::NoRollout { module: module.clone() })
                })?;
            Command::RolloutFinish {
                module: module.clone(),
                version,
                finish: Finish::Abort,
                now_ms,
            }
        }
        _ => return Err(Status::invalid_argument("the action must be pause, resume or abort")),
    };
    let committed = context.proposer.propose(command).await.map_err(propose_error)?;
    if let CommandResponse::Rejected(why) = committed.response {
        return Err(super::errors::rejected(&why));
    }
    rollout_status(context, &module)
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn module_names_are_short_lowercase_identifiers() {
        for good in ["counter", "sync-accounts", "a1_b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Counter", "1abc", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
