//! Mapping openraft's errors to gRPC statuses, in one place.

use tonic::Status;
use tonic::metadata::MetadataValue;

use crate::types::TypeConfig;
use crate::types::typ::RaftError;

/// Longest key of the replicated key-value space.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value of the replicated key-value space.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A "not the leader" status that names the leader, when known.
pub fn forward_to_leader(forward: &openraft::errors::ForwardToLeader<TypeConfig>) -> Status {
    let message = match (&forward.leader_id, &forward.leader_node) {
        (Some(id), Some(node)) => {
            format!("this node is not the leader; node {id} at {} is", node.addr)
        }
        _ => "this node is not the leader and knows of none yet; retry shortly".to_string(),
    };
    let mut status = Status::failed_precondition(message);
    if let (Some(id), Some(node)) = (&forward.leader_id, &forward.leader_node) {
        status
            .metadata_mut()
            .insert(baton_proto::LEADER_ID_HEADER, MetadataValue::from(*id));
        if let Ok(addr) = node.addr.parse() {
            status
                .metadata_mut()
                .insert(baton_proto::LEADER_ADDR_HEADER, addr);
        }
    }
    status
}

/// Maps a failed write (client write or membership change).
pub fn write_error(err: RaftError<crate::types::typ::ClientWriteError>) -> Status {
    use openraft::errors::ClientWriteError as E;
    match err {
        RaftError::APIError(E::ForwardToLeader(forward)) => forward_to_leader(&forward),
        RaftError::APIError(E::LogEntryDiscarded(_)) => Status::unavailable(
            "leadership changed while the write was in flight; it may or may not have been committed; retry it",
        ),
        RaftError::APIError(E::ChangeMembershipError(e)) => {
            Status::failed_precondition(e.to_string())
        }
        RaftError::APIError(E::PreconditionFailed(e)) => Status::failed_precondition(e.to_string()),
        RaftError::Fatal(e) => fatal(e),
    }
}

/// Raft has stopped on this node (shutting down or a storage failure).
pub fn fatal(err: openraft::errors::Fatal<TypeConfig>) -> Status {
    Status::unavailable(format!(
        "raft is not running on this node ({err}); try another node"
    ))
}
