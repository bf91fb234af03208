//! An in-memory Raft transport between nodes of one process that can drop,
//! delay or cut messages between any two of them.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_node::raft::StorageIdentity;
use baton_node::types::typ::*;
use baton_node::types::{Member, NodeId, Raft, TypeConfig};
use openraft::OptionalSend;
use openraft::errors::{ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use rand::Rng;

/// Faults the router applies to messages.
#[derive(Default)]
pub struct Faults {
    /// Links that lose every message, both ways.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Probability that any message is lost.
    pub drop_rate: f64,
    /// Upper bound of a random delay added to each message.
    pub max_delay: Duration,
}

#[derive(Default)]
pub struct Router {
    pub nodes: Mutex<HashMap<NodeId, Raft>>,
    /// Each node's storage: a message is delivered only if it is addressed
    /// to it, as the gRPC service checks (`raft::identity`).
    pub storage: Mutex<HashMap<NodeId, StorageIdentity>>,
    /// Deliver messages whatever storage they are addressed to (to show
    /// what the check prevents).
    pub ignore_storage: AtomicBool,
    pub faults: Mutex<Faults>,
}

impl Router {
    fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
        (a.min(b), a.max(b))
    }

    pub fn isolate(&self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.lock().unwrap().keys().copied().collect();
        let mut faults = self.faults.lock().unwrap();
        for other in ids.into_iter().filter(|o| *o != id) {
            faults.cut.insert(Self::link(id, other));
        }
    }

    pub fn heal(&self) {
        let mut faults = self.faults.lock().unwrap();
        faults.cut.clear();
        faults.drop_rate = 0.0;
        faults.max_delay = Duration::ZERO;
    }

    /// Applies the faults to one message from `from` to `to`, then hands the
    /// target's Raft to `deliver`.
    async fn send<T, Fut>(
        &self,
        from: NodeId,
        (to, addressed): (NodeId, &str),
        deliver: impl FnOnce(Raft) -> Fut,
    ) -> Result<T, RpcError>
    where
        Fut: Future<Output = Result<T, String>>,
    {
        let (lost, delay) = {
            let faults = self.faults.lock().unwrap();
            let mut rng = rand::rng();
            let lost = faults.cut.contains(&Self::link(from, to)) || rng.random_bool(faults.drop_rate);
            let delay = if faults.max_delay.is_zero() {
                Duration::ZERO
            } else {
                faults.max_delay.mul_f64(rng.random())
            };
            (lost, delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let target = self.nodes.lock().unwrap().get(&to).cloned();
        if !self.ignore_storage.load(Ordering::SeqCst)
            && let Some(storage) = self.storage.lock().unwrap().get(&to)
            && let Err(refused) = storage.admit(addressed)
        {
            return Err(RpcError::Unreachable(Unreachable::from_string(refused.to_string())));
        }
        match (lost, target) {
            (false, Some(raft)) => deliver(raft)
                .await
                .map_err(|e| RpcError::Unreachable(Unreachable::from_string(e))),
            _ => Err(RpcError::Unreachable(Unreachable::from_string(format!(
                "link {from}->{to} is down"
            )))),
        }
    }
}

#[derive(Clone)]
pub struct RouterFactory {
    pub from: NodeId,
    pub router: Arc<Router>,
}

pub struct RouterPeer {
    from: NodeId,
    to: NodeId,
    to_storage: String,
    router: Arc<Router>,
}

impl RaftNetworkFactory<TypeConfig> for RouterFactory {
    type Network = RouterPeer;
    async fn new_client(&mut self, target: NodeId, node: &Member) -> RouterPeer {
        RouterPeer {
            from: self.from,
            to: target,
            to_storage: node.storage_id.clone(),
            router: self.router.clone(),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for RouterPeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        _o: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        self.router
            .send(self.from, (self.to, &self.to_storage), |r| async move {
                r.append_entries(rpc).await.map_err(|e| e.to_string())
            })
            .await
    }

    async fn vote(&mut self, rpc: VoteRequest, _o: RPCOption) -> Result<VoteResponse, RpcError> {
        self.router
            .send(self.from, (self.to, &self.to_storage), |r| async move {
                r.vote(rpc).await.map_err(|e| e.to_string())
            })
            .await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest, _o: RPCOption) -> Result<VoteResponse, RpcError> {
        self.router
            .send(self.from, (self.to, &self.to_storage), |r| async move {
                r.pre_vote(rpc).await.map_err(|e| e.to_string())
            })
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _o: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        let sent = self
            .router
            .send(self.from, (self.to, &self.to_storage), |r| async move {
                r.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string())
            })
            .await;
        sent.map_err(|e| match e {
            RpcError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Unreachable(Unreachable::from_string(other.to_string())),
        })
    }
}
