//! Asking a node's heart whether a process of that node has exited.

use std::time::Duration;

use baton_proto::heart_client::HeartClient;
use baton_proto::{AwaitExitReply, AwaitExitRequest};

use crate::raft::PeerChannels;
use crate::types::NodeId;

/// Asks the heart of node `node` at `heart_addr` to wait up to `wait` for
/// process `incarnation` to exit. The heart's certificate must name `node`.
pub async fn ask_exit(
    channels: &PeerChannels,
    node: NodeId,
    heart_addr: &str,
    incarnation: &str,
    wait: Duration,
) -> Result<AwaitExitReply, tonic::Status> {
    let channel = channels
        .heart_channel(node, heart_addr)
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = AwaitExitRequest {
        incarnation: incarnation.to_string(),
        wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
    };
    let timeout = wait + Duration::from_secs(1);
    let request = channels.request(request, Some(timeout));
    match tokio::time::timeout(timeout, HeartClient::new(channel).await_exit(request)).await {
        Ok(reply) => reply.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "the heart at {heart_addr} did not answer within {timeout:?}"
        ))),
    }
}
