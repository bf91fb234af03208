//! The Peer service: a node's identity and health, for its peers.

use std::sync::Arc;

use baton_proto::peer_server::Peer;
use baton_proto::{FetchModuleReply, FetchModuleRequest, NodeInfoReply, NodeInfoRequest, ProposeReply, ProposeRequest};
use tonic::{Request, Response, Status};

use super::NodeContext;
use super::errors::propose_error;
use crate::modules::is_hash;
use crate::types::Command;

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
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn node_info(&self, _request: Request<NodeInfoRequest>) -> Result<Response<NodeInfoReply>, Status> {
        Ok(Response::new(local_info(&self.context)))
    }

    async fn propose(&self, request: Request<ProposeRequest>) -> Result<Response<ProposeReply>, Status> {
        let command: Command = serde_json::from_slice(&request.into_inner().command)
            .map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
        if !matches!(command, Command::CommitTick(_) | Command::MarkTaskFailed { .. }) {
            return Err(Status::permission_denied(
                "peers may only propose tick commits and task failures",
            ));
        }
        let committed = self.context.proposer.propose(command).await.map_err(propose_error)?;
        let response = serde_json::to_vec(&committed.response).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ProposeReply {
            response,
            log_index: committed.log_index,
        }))
    }

    async fn fetch_module(&self, request: Request<FetchModuleRequest>) -> Result<Response<FetchModuleReply>, Status> {
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
        Ok(Response::new(FetchModuleReply { component }))
    }
}
