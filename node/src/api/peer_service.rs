//! The Peer service: a node's identity and health, for its peers.

use std::sync::Arc;

use baton_proto::peer_server::Peer;
use baton_proto::{NodeInfoReply, NodeInfoRequest};
use tonic::{Request, Response, Status};

use super::NodeContext;

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
}
