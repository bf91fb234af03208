//! Brings every deployed module's bytes to this node: the leader stores them
//! at deploy, and every other node fetches them from a peer that has them,
//! checking the sha256 before keeping them.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::FetchModuleRequest;
use baton_proto::peer_client::PeerClient;
use tokio::task::JoinHandle;

use crate::api::NodeContext;
use crate::raft::PEER_MAX_MESSAGE_BYTES;
use crate::runtime::content_hash;
use crate::types::NodeId;

/// How often the fetcher looks for modules it lacks.
const FETCH_INTERVAL: Duration = Duration::from_millis(250);

/// Starts fetching missing modules; abort the handle to stop it.
pub fn spawn_fetcher(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(FETCH_INTERVAL);
        loop {
            interval.tick().await;
            let missing: Vec<String> = context.state_machine.read(|state| {
                state
                    .modules
                    .values()
                    .map(|m| m.hash.clone())
                    .filter(|h| !context.modules.has(h))
                    .collect()
            });
            for hash in missing {
                fetch(&context, &hash).await;
            }
        }
    })
}

/// Asks the leader, then the other members, for module `hash`.
async fn fetch(context: &NodeContext, hash: &str) {
    let (leader, peers): (Option<NodeId>, Vec<(NodeId, String)>) = crate::types::with_metrics(&context.raft, |m| {
        let peers = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        (m.current_leader, peers)
    });
    let mut peers: Vec<_> = peers.into_iter().filter(|(id, _)| *id != context.id).collect();
    peers.sort_by_key(|(id, _)| Some(*id) != leader);
    for (id, addr) in peers {
        let Ok(channel) = context.channels.channel(id, &addr) else {
            continue;
        };
        let mut client = PeerClient::new(channel).max_decoding_message_size(PEER_MAX_MESSAGE_BYTES);
        let request = context.channels.request(
            FetchModuleRequest { hash: hash.to_string() },
            Some(Duration::from_secs(30)),
        );
        let Ok(reply) = client.fetch_module(request).await else {
            continue;
        };
        let bytes = reply.into_inner().component;
        if content_hash(&bytes) != hash {
            tracing::warn!(
                peer = id,
                "node {id} sent module bytes that do not match {hash}; trying another peer"
            );
            continue;
        }
        let store = context.modules.clone();
        match tokio::task::spawn_blocking(move || store.put(&bytes)).await {
            Ok(Ok(_)) => {
                tracing::info!(peer = id, "fetched module {hash}");
                return;
            }
            Ok(Err(e)) => tracing::warn!("cannot store module {hash}: {e}"),
            Err(e) => tracing::warn!("cannot store module {hash}: {e}"),
        }
    }
}
