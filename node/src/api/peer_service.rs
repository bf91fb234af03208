//! The Peer service: a node's identity and health, for its peers.

use std::pin::Pin;
use std::sync::Arc;

use baton_proto::peer_server::Peer;
use baton_proto::{
    BinaryRequest, FetchModuleReply, FetchModuleRequest, FetchNodeBinaryRequest, HeartbeatAck, HeartbeatPing,
    MemberRecord, NodeInfoReply, NodeInfoRequest, ProposeReply, ProposeRequest, SwapBinaryReply, SwapBinaryRequest,
    TaskLogsReply, TaskLogsRequest,
};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::NodeContext;
use super::errors::propose_error;
use crate::modules::is_hash;
use crate::supervision::serve_renewals;
use crate::types::{Command, NodeId};

/// The node a peer call comes from (the gate checked the header against the
/// caller's certificate).
pub(super) fn caller<T>(request: &Request<T>) -> Result<NodeId, Status> {
    request
        .metadata()
        .get(baton_proto::NODE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Status::invalid_argument("peer calls must carry a baton-node-id header"))
}

/// The size of the chunks module bytes are streamed in.
const FETCH_CHUNK_BYTES: usize = 256 * 1024;

pub struct PeerService {
    context: Arc<NodeContext>,
}

impl PeerService {
    pub fn new(context: Arc<NodeContext>) -> Self {
        PeerService { context }
    }
}

/// This node's own view of itself.
pub fn local_info(context: &NodeContext) -> NodeInfoReply {
    let metrics = crate::types::metrics(&context.raft);
    NodeInfoReply {
        node_id: context.id,
        cluster_id: context.cluster_id.clone(),
        version: context.version.clone(),
        incarnation: context.incarnation.clone(),
        raft_state: format!("{:?}", metrics.state).to_lowercase(),
        last_applied_index: context.state_machine.last_applied_index(),
        uptime_ms: context.started_at.elapsed().as_millis() as u64,
        storage_id: context.storage.id.clone(),
        has_raft_state: metrics.last_log_index.is_some()
            || metrics.snapshot.is_some()
            || metrics.membership_config.membership().nodes().next().is_some(),
        members: metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, member)| MemberRecord {
                id: *id,
                addr: member.addr.clone(),
                storage_id: member.storage_id.clone(),
            })
            .collect(),
        min_cluster_version: context.versions.min,
        max_cluster_version: context.versions.max,
        cluster_version: context.state_machine.read(|s| s.cluster_version),
        binary: context.binary.clone(),
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    type HeartbeatStream = Pin<Box<dyn Stream<Item = Result<HeartbeatAck, Status>> + Send + 'static>>;

    async fn heartbeat(
        &self,
        request: Request<Streaming<HeartbeatPing>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        let node = caller(&request)?;
        let (leader, addr) = crate::types::leader(&self.context.raft);
        if leader != Some(self.context.id) {
            return Err(super::errors::not_leader(leader, addr.as_deref()));
        }
        let (acks, outbound) = tokio::sync::mpsc::channel(8);
        tokio::spawn(serve_renewals(self.context.clone(), node, request.into_inner(), acks));
        let outbound = futures::stream::unfold(outbound, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) });
        Ok(Response::new(Box::pin(outbound)))
    }

    async fn node_info(&self, _request: Request<NodeInfoRequest>) -> Result<Response<NodeInfoReply>, Status> {
        Ok(Response::new(local_info(&self.context)))
    }

    async fn propose(&self, request: Request<ProposeRequest>) -> Result<Response<ProposeReply>, Status> {
        let from = caller(&request)?;
        let bytes = request.into_inner().command;
        let command: Command = crate::codec::format::decode_command(&bytes)
            .map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
        check_forwarded(&command, from)?;
        let committed = self.context.proposer.propose(command).await.map_err(propose_error)?;
        // Answered in the format the command came in.
        let format = crate::codec::format::Format::of(&bytes);
        let reply = crate::codec::propose::reply(&committed, format).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(reply))
    }

    type FetchModuleStream = Pin<Box<dyn Stream<Item = Result<FetchModuleReply, Status>> + Send + 'static>>;

    type FetchNodeBinaryStream = super::binary_calls::BinaryStream;

    async fn fetch_node_binary(
        &self,
        request: Request<FetchNodeBinaryRequest>,
    ) -> Result<Response<Self::FetchNodeBinaryStream>, Status> {
        super::binary_calls::fetch_node_binary(&self.context, request).await
    }

    async fn swap_binary(&self, request: Request<SwapBinaryRequest>) -> Result<Response<SwapBinaryReply>, Status> {
        super::binary_calls::swap_binary(&self.context, request).await
    }

    async fn make_binary_permanent(
        &self,
        request: Request<BinaryRequest>,
    ) -> Result<Response<SwapBinaryReply>, Status> {
        super::binary_calls::make_binary_permanent(&self.context, request).await
    }

    async fn task_logs(&self, request: Request<TaskLogsRequest>) -> Result<Response<TaskLogsReply>, Status> {
        Ok(Response::new(super::log_calls::task_logs_here(
            &self.context,
            &request.into_inner(),
        )))
    }

    async fn fetch_module(
        &self,
        request: Request<FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        let hash = request.into_inner().hash;
        if !is_hash(&hash) {
            return Err(Status::invalid_argument("a module hash is 64 lowercase hex digits"));
        }
        let store = self.context.modules.clone();
        let lookup = hash.clone();
        let bytes = tokio::task::spawn_blocking(move || store.get(&lookup))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot read module {hash}: {e}")))?;
        let component =
            bytes.ok_or_else(|| Status::not_found(format!("this node does not have module {hash} (yet)")))?;
        let chunks: Vec<Result<FetchModuleReply, Status>> = component
            .chunks(FETCH_CHUNK_BYTES)
            .map(|c| Ok(FetchModuleReply { component: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}

/// What a peer may propose through the leader: tick commits, task failures
/// and task releases, each of its own tasks, alone or as one batch of them
/// (from the cluster version of forwarded batches; never nested).
fn check_forwarded(command: &Command, from: NodeId) -> Result<(), Status> {
    let commands = match command {
        Command::Batch(commands) => &commands[..],
        single => std::slice::from_ref(single),
    };
    for command in commands {
        if !matches!(
            command,
            Command::CommitTick(_) | Command::MarkTaskFailed { .. } | Command::YieldTask { .. }
        ) {
            return Err(Status::permission_denied(
                "peers may only propose tick commits, task failures and task releases, alone or in one batch",
            ));
        }
        let claimed = match command {
            Command::CommitTick(commit) => Some(commit.node),
            Command::YieldTask { node, .. } => Some(*node),
            _ => None,
        };
        if claimed.is_some_and(|node| node != from) {
            return Err(Status::permission_denied(format!(
                "node {from} may only commit and release its own tasks"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tasks::TickCommit;

    fn tick(node: NodeId) -> Command {
        Command::CommitTick(TickCommit {
            task: "t".into(),
            epoch: 1,
            tick: 1,
            node,
            state: vec![],
            next_due_ms: 0,
            committed_at_ms: 0,
            version: 1,
        })
    }

    #[test]
    fn a_peer_forwards_its_own_task_writes_alone_or_in_one_batch() {
        assert!(check_forwarded(&tick(2), 2).is_ok());
        assert!(check_forwarded(&Command::Batch(vec![tick(2), tick(2)].into()), 2).is_ok());
        let yielded = Command::YieldTask {
            name: "t".into(),
            epoch: 1,
            node: 2,
        };
        assert!(check_forwarded(&Command::Batch(vec![tick(2), yielded].into()), 2).is_ok());
    }

    #[test]
    fn anything_else_in_a_forwarded_batch_is_refused() {
        let refused = |command: Command| check_forwarded(&command, 2).unwrap_err().code();
        // Another node's tick, alone or hidden in a batch.
        assert_eq!(refused(tick(3)), tonic::Code::PermissionDenied);
        assert_eq!(
            refused(Command::Batch(vec![tick(2), tick(3)].into())),
            tonic::Code::PermissionDenied
        );
        // Writes a peer may not forward, and batches in batches.
        let put = Command::Put {
            key: "k".into(),
            value: vec![],
        };
        assert_eq!(refused(put.clone()), tonic::Code::PermissionDenied);
        assert_eq!(
            refused(Command::Batch(vec![tick(2), put].into())),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            refused(Command::Batch(vec![Command::Batch(vec![tick(2)].into())].into())),
            tonic::Code::PermissionDenied
        );
    }
}
