//! A task owner's writes go to the leader: through the local proposer when
//! this node leads, or over the peer API when another does.

use std::time::Duration;

use baton_proto::ProposeRequest;
use openraft::async_runtime::watch::WatchReceiver;

use crate::api::NodeContext;
use crate::codec::format::{Format, encode_command};
use crate::raft::{Committed, MAX_COMMAND_BYTES, ProposeError, peer_client};
use crate::types::{Command, NodeId};

/// Resolves when this node's Raft knows a leader other than `leader` (or
/// none), with the new one.
async fn leader_changed(raft: &crate::types::Raft, leader: NodeId) -> Option<NodeId> {
    let mut metrics = raft.metrics();
    loop {
        let current = metrics.borrow_and_update().current_leader;
        if current != Some(leader) {
            return current;
        }
        if metrics.changed().await.is_err() {
            // Raft stopped: nothing here will change again.
            std::future::pending::<()>().await;
        }
    }
}

/// Proposes `command` on the leader, wherever it is.
pub async fn propose_on_leader(context: &NodeContext, command: Command) -> Result<Committed, ProposeError> {
    let (leader, addr) = crate::types::leader(&context.raft);
    match (leader, addr) {
        (Some(leader), _) if leader == context.id => context.proposer.propose(command).await,
        (Some(leader), Some(addr)) => {
            let unreachable = |why: String| ProposeError::Stopped(format!("leader {leader} at {addr}: {why}"));
            let channel = context
                .channels
                .channel(leader, &addr)
                .map_err(|e| unreachable(e.to_string()))?;
            // In the format every member reads (see `codec::format`).
            let format = context.state_machine.read(|s| Format::at(s.cluster_version));
            let payload = encode_command(&command, format).map_err(|e| ProposeError::Refused(e.to_string()))?;
            if payload.len() > MAX_COMMAND_BYTES {
                return Err(ProposeError::TooLarge {
                    bytes: payload.len(),
                    limit: MAX_COMMAND_BYTES,
                });
            }
            let request = context
                .channels
                .request(ProposeRequest { command: payload }, Some(Duration::from_secs(10)));
            // A leader cut off from this node leaves the call hanging until
            // its timeout; once this node hears of another leader, the
            // caller retries there at once. Every command a node forwards
            // names the epoch it expects, so a retry of one that did commit
            // is refused (a tick's as out of order, found committed).
            let mut client = peer_client(channel);
            let reply = tokio::select! {
                reply = client.propose(request) => reply,
                new = leader_changed(&context.raft, leader) => {
                    return Err(unreachable(format!("leadership moved to {new:?} during the call")));
                }
            };
            let reply = reply
                .map_err(|status| match status.metadata().get(baton_proto::NOT_LEADER_HEADER) {
                    Some(_) => ProposeError::NotLeader {
                        leader_id: None,
                        leader_addr: None,
                    },
                    None => unreachable(status.message().to_string()),
                })?
                .into_inner();
            crate::codec::propose::committed(reply).map_err(|e| unreachable(e.to_string()))
        }
        _ => Err(ProposeError::NotLeader {
            leader_id: None,
            leader_addr: None,
        }),
    }
}
