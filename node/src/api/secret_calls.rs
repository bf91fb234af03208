//! The control calls about task secrets' keys: rotate (seal every secret
//! again with the leader's first key) and keys (which keys this node holds
//! and how many secrets each seals). Never a key or a value in a reply.

use std::collections::BTreeMap;

use baton_proto::{RotateSecretsReply, SecretKeyUse, SecretKeysReply};
use tonic::Status;

use super::NodeContext;
use super::errors::propose_error;
use crate::secrets::{SecretError, rotation};
use crate::state::cluster_version::{BelowVersion, SECRETS};
use crate::state::secrets::SealedSecret;
use crate::types::{Command, CommandResponse};

/// Resealed secrets per proposal: each at most 8 KiB and change, well
/// under the command limit however it is encoded.
const RESEALED_PER_COMMAND: usize = 128;

/// Rounds of reading, resealing and proposing: a secret that changed
/// between the read and the write (its task re-added) is read again in the
/// next.
const PASSES: usize = 3;

/// Every task's name and sealed secrets, copied out of the state: the
/// crypto runs without holding the state's lock.
fn sealed_secrets(context: &NodeContext) -> Vec<(String, Vec<SealedSecret>)> {
    context.state_machine.read(|s| {
        s.tasks
            .values()
            .filter(|t| !t.spec.secrets.is_empty())
            .map(|t| (t.spec.name.clone(), t.spec.secrets.clone()))
            .collect()
    })
}

pub(crate) async fn rotate(context: &NodeContext) -> Result<RotateSecretsReply, Status> {
    let version = context.state_machine.read(|s| s.cluster_version);
    BelowVersion::check(version, SECRETS, "`secrets rotate`")
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    // The leader reseals, with its first key: it reads the state it wrote.
    super::errors::ensure_leader(context)?;
    let mut resealed = 0;
    let mut pass = 0;
    loop {
        pass += 1;
        let sealed = sealed_secrets(context);
        let keys = context.secret_keys.clone();
        let plan = tokio::task::spawn_blocking(move || {
            let tasks = sealed.iter().map(|(name, secrets)| (name.as_str(), secrets.as_slice()));
            rotation::plan(tasks, &keys)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let plan = plan.map_err(|e| match e {
            SecretError::NoKeys => Status::failed_precondition(e.to_string()),
            _ => Status::internal(e.to_string()),
        })?;
        if plan.resealed.is_empty() || pass > PASSES {
            return Ok(RotateSecretsReply {
                key_id: plan.key_id,
                resealed,
                current: plan.current,
                unopened: plan
                    .unopened
                    .iter()
                    .map(|(task, e)| format!("task {task}: {e}"))
                    .collect(),
                left: plan.resealed.len() as u64,
            });
        }
        for chunk in plan.resealed.chunks(RESEALED_PER_COMMAND) {
            let committed = context
                .proposer
                .propose(Command::ResealSecrets(chunk.to_vec()))
                .await
                .map_err(propose_error)?;
            match committed.response {
                CommandResponse::Count(n) => resealed += n,
                CommandResponse::Rejected(why) => return Err(super::errors::rejected(&why)),
                other => return Err(Status::internal(format!("resealing answered {other:?}"))),
            }
        }
    }
}

pub(crate) fn keys(context: &NodeContext) -> SecretKeysReply {
    let keys = &context.secret_keys;
    let mut uses: BTreeMap<String, u64> = keys.ids().map(|id| (id.to_string(), 0)).collect();
    context.state_machine.read(|s| {
        for task in s.tasks.values() {
            for secret in &task.spec.secrets {
                *uses.entry(secret.key_id.clone()).or_default() += 1;
            }
        }
    });
    // This node's keys first, in its order; then those it lacks.
    let mut order: Vec<String> = keys.ids().map(String::from).collect();
    order.extend(uses.keys().filter(|id| !keys.holds(id)).cloned());
    SecretKeysReply {
        node: context.id,
        keys: order
            .into_iter()
            .map(|id| SecretKeyUse {
                held: keys.holds(&id),
                seals: keys.sealing_id() == Some(id.as_str()),
                secrets: uses.get(&id).copied().unwrap_or(0),
                key_id: id,
            })
            .collect(),
    }
}
