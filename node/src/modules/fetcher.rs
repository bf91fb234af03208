//! Brings the module versions the cluster runs to this node, ahead of need:
//! the leader stores a module's bytes at deploy, and every other node
//! streams them from a peer that has them, checks their sha256, keeps them
//! in its data dir, and compiles them, so that a rollout never waits on a
//! compilation when it switches the node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::FetchModuleRequest;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::api::NodeContext;
use crate::runtime::ModuleError;
use crate::state::cluster::ClusterState;
use crate::types::NodeId;

/// How often the fetcher looks for modules it lacks.
const FETCH_INTERVAL: Duration = Duration::from_millis(100);

/// The module versions a node may be asked to run: every module's current
/// version, the new version of a live rollout, and any version that wrote a
/// task's state (its `migrate` converts the state back).
pub fn live_hashes(state: &ClusterState) -> BTreeSet<String> {
    let mut hashes: BTreeSet<String> = state.modules.values().map(|m| m.hash.clone()).collect();
    hashes.extend(
        state
            .rollouts
            .values()
            .filter(|r| r.state.is_live())
            .map(|r| r.release.hash.clone()),
    );
    for (module, version) in state.tasks.index().state_versions().keys() {
        if let Some(release) = state.module_version(module, *version) {
            hashes.insert(release.hash.clone());
        }
    }
    hashes
}

/// Starts fetching and compiling live modules; abort the handle to stop it.
pub fn spawn_fetcher(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(FETCH_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refused = BTreeSet::new();
        loop {
            interval.tick().await;
            let live = context.state_machine.read(live_hashes);
            for hash in live.difference(&context.engine.loaded_hashes()) {
                if refused.contains(hash) {
                    continue;
                }
                if !context.modules.has(hash) && !fetch(&context, hash).await {
                    continue;
                }
                if !compile(&context, hash).await {
                    refused.insert(hash.clone());
                }
            }
        }
    })
}

/// Compiles stored module `hash`; false if it does not compile here. A
/// damaged copy, or one gone from the store, is not refused: the next scan
/// fetches it again.
async fn compile(context: &NodeContext, hash: &str) -> bool {
    let (store, engine, owned) = (context.modules.clone(), context.engine.clone(), hash.to_string());
    let loaded = tokio::task::spawn_blocking(move || store.compiled(&engine, &owned)).await;
    match loaded {
        Ok(Some(Ok(_))) => {
            tracing::info!("compiled module {hash}");
            true
        }
        Ok(Some(Err(e @ ModuleError::Damaged { .. }))) => {
            tracing::warn!("{e}; it is removed and will be fetched again");
            true
        }
        Ok(None) => {
            tracing::warn!("module {hash} is gone from this node's store; it will be fetched again");
            true
        }
        Ok(Some(Err(e))) => {
            tracing::error!("module {hash} does not compile on this node: {e}");
            false
        }
        Err(e) => {
            tracing::error!("compiling module {hash}: {e}");
            false
        }
    }
}

/// Streams module `hash` from the leader, else another member, and stores
/// it once its sha256 matches. False if no peer had it.
async fn fetch(context: &NodeContext, hash: &str) -> bool {
    for (id, addr) in crate::types::peers_leader_first(&context.raft, context.id) {
        let bytes = match fetch_from(context, id, &addr, hash).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::debug!(peer = id, "module {hash} not fetched from node {id}: {e}");
                continue;
            }
        };
        let store = context.modules.clone();
        match tokio::task::spawn_blocking(move || store.put(&bytes)).await {
            Ok(Ok(_)) => {
                tracing::info!(peer = id, "fetched module {hash}");
                return true;
            }
            Ok(Err(e)) => tracing::warn!("cannot store module {hash}: {e}"),
            Err(e) => tracing::warn!("cannot store module {hash}: {e}"),
        }
    }
    false
}

/// The bytes of module `hash` from node `id`, checked against the hash.
async fn fetch_from(context: &NodeContext, id: NodeId, addr: &str, hash: &str) -> Result<Vec<u8>, String> {
    let channel = context.channels.channel(id, addr).map_err(|e| e.to_string())?;
    let mut client = crate::raft::peer_client(channel);
    let request = context.channels.request(
        FetchModuleRequest { hash: hash.to_string() },
        Some(Duration::from_secs(30)),
    );
    let mut chunks = client
        .fetch_module(request)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let limit = context.engine.max_module_bytes();
    let (mut bytes, mut digest) = (Vec::new(), Sha256::new());
    while let Some(chunk) = chunks.message().await.map_err(|s| s.message().to_string())? {
        if bytes.len() + chunk.component.len() > limit {
            return Err(format!("more than the {limit} bytes a module may have"));
        }
        digest.update(&chunk.component);
        bytes.extend_from_slice(&chunk.component);
    }
    if hex::encode(digest.finalize()) != hash {
        tracing::warn!(
            peer = id,
            "node {id} sent module bytes that do not match {hash}; trying another peer"
        );
        return Err("the bytes do not match the hash".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::RolloutSettings;
    use crate::types::ModuleVersion;

    fn module(version: u32, hash: &str) -> ModuleVersion {
        ModuleVersion {
            name: "counter".into(),
            version,
            hash: hash.into(),
            size: 1,
            migrates: false,
            down_to: Vec::new(),
            deployed_at_ms: 0,
            signer: String::new(),
            signature: String::new(),
        }
    }

    #[test]
    fn live_modules_are_the_current_ones_and_a_rollouts_new_version() {
        let mut state = ClusterState::default();
        state.record_release(&module(1, "aa"), &RolloutSettings::default(), 0);
        assert_eq!(live_hashes(&state), ["aa".to_string()].into());
        state.record_release(&module(2, "bb"), &RolloutSettings::default(), 0);
        assert_eq!(live_hashes(&state), ["aa".to_string(), "bb".to_string()].into());
    }
}
