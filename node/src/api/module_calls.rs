//! The control calls about task modules: deploy and list.

use baton_proto::{DeployModuleReply, DeployModuleRequest, ListModulesReply, ModuleInfo};
use tonic::Status;

use super::NodeContext;
use super::errors::{not_leader, propose_error};
use crate::modules::signing::{self, SigningError};
use crate::types::{Command, CommandResponse, ModuleRecord};

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

pub(crate) fn module_info(m: &ModuleRecord) -> ModuleInfo {
    ModuleInfo {
        name: m.name.clone(),
        version: m.version,
        hash: m.hash.clone(),
        size: m.size,
        deployed_at_ms: m.deployed_at_ms,
        migrates: m.migrates,
        signer: m.signer.clone(),
        signature: m.signature.clone(),
    }
}

/// Checks the component, stores its bytes, and records it through Raft.
/// Nothing is recorded unless every check passes.
pub(crate) async fn deploy(context: &NodeContext, request: DeployModuleRequest) -> Result<DeployModuleReply, Status> {
    let DeployModuleRequest {
        name,
        component,
        signer,
        signature,
    } = request;
    check_name(&name)?;
    let (leader, leader_addr) = crate::types::leader(&context.raft);
    if leader != Some(context.id) {
        return Err(not_leader(leader, leader_addr.as_deref()));
    }
    let engine = context.engine.clone();
    let (compiled, component) = tokio::task::spawn_blocking(move || (engine.load(&component), component))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let compiled = compiled.map_err(|e| Status::invalid_argument(format!("module {name} refused: {e}")))?;
    signing::verify(&context.trusted_keys, &name, &compiled.hash, &signer, &signature).map_err(|e| match e {
        SigningError::NoTrustedKeys => Status::failed_precondition(e.to_string()),
        _ => Status::permission_denied(e.to_string()),
    })?;
    let taken = context
        .state_machine
        .read(|s| s.modules.get(&name).filter(|m| m.hash != compiled.hash).cloned());
    if let Some(existing) = taken {
        return Err(Status::failed_precondition(format!(
            "module {name} already has version {} ({}); new versions are rolled out by the hot code swap, not by deploy",
            existing.version, existing.hash
        )));
    }
    let store = context.modules.clone();
    tokio::task::spawn_blocking(move || store.put(&component))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("cannot store the module: {e}")))?;
    let record = ModuleRecord {
        name,
        version: 0,
        hash: compiled.hash.clone(),
        size: compiled.size as u64,
        migrates: compiled.migrates,
        deployed_at_ms: crate::types::now_ms(),
        signer,
        signature,
    };
    let committed = context
        .proposer
        .propose(Command::DeployModule(record))
        .await
        .map_err(propose_error)?;
    match committed.response {
        CommandResponse::Module(module) => Ok(DeployModuleReply {
            module: Some(module_info(&module)),
            log_index: committed.log_index,
        }),
        CommandResponse::Rejected(why) => Err(Status::failed_precondition(why)),
        other => Err(Status::internal(format!("unexpected response to a deploy: {other:?}"))),
    }
}

/// The deployed modules, as this node has applied them.
pub(crate) fn list(context: &NodeContext) -> ListModulesReply {
    ListModulesReply {
        modules: context
            .state_machine
            .read(|s| s.modules.values().map(module_info).collect()),
    }
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
