//! Mapping openraft's errors to gRPC statuses, in one place.

use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::raft::ProposeError;
use crate::types::typ::RaftError;
use crate::types::{NodeId, Rejection, TypeConfig};

/// Longest key of the replicated key-value space.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value of the replicated key-value space.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Ok on the leader; elsewhere the [`not_leader`] status that sends the
/// client there.
pub fn ensure_leader(context: &super::NodeContext) -> Result<(), Status> {
    let (leader, addr) = crate::types::leader(&context.raft);
    match leader == Some(context.id) {
        true => Ok(()),
        false => Err(not_leader(leader, addr.as_deref())),
    }
}

/// A "not the leader" status, marked so in its metadata
/// ([`baton_proto::NOT_LEADER_HEADER`]), that names the leader, when known,
/// in its message and in metadata for clients to follow.
pub fn not_leader(leader_id: Option<NodeId>, leader_addr: Option<&str>) -> Status {
    let mut status = match (leader_id, leader_addr) {
        (Some(id), Some(addr)) => {
            Status::failed_precondition(format!("this node is not the leader; node {id} at {addr} is"))
        }
        _ => Status::failed_precondition("this node is not the leader and knows of none yet; retry shortly"),
    };
    status
        .metadata_mut()
        .insert(baton_proto::NOT_LEADER_HEADER, MetadataValue::from_static("1"));
    let (Some(id), Some(addr)) = (leader_id, leader_addr) else {
        return status;
    };
    status
        .metadata_mut()
        .insert(baton_proto::LEADER_ID_HEADER, MetadataValue::from(id));
    if let Ok(addr) = addr.parse() {
        status.metadata_mut().insert(baton_proto::LEADER_ADDR_HEADER, addr);
    }
    status
}

/// Maps openraft's "forward to leader".
pub fn forward_to_leader(forward: &openraft::errors::ForwardToLeader<TypeConfig>) -> Status {
    not_leader(forward.leader_id, forward.leader_node.as_ref().map(|n| n.addr.as_str()))
}

/// A command the state machine refused: its code by kind (NotFound,
/// AlreadyExists, Aborted for a write that lost a race or came from a stale
/// owner, else FailedPrecondition), its text as the message, and the
/// rejection itself, typed, as the status details (`baton.v1.Rejection`).
pub fn rejected(rejection: &Rejection) -> Status {
    use Rejection as R;
    let code = match rejection {
        R::NoSuchTask { .. } | R::NoSuchModule { .. } | R::NoRollout { .. } | R::NoUpgrade { .. } => Code::NotFound,
        R::TaskExists { .. } | R::ModuleNameTaken { .. } => Code::AlreadyExists,
        R::StaleOwner { .. } | R::OutOfOrder { .. } | R::StaleEpoch { .. } | R::VersionRaced { .. } => Code::Aborted,
        R::NotRunning { .. }
        | R::NotHandedOff { .. }
        | R::RolloutUnderWay { .. }
        | R::RolloutOfOtherVersion { .. }
        | R::RolloutNotRunning { .. }
        | R::RolloutActionRefused { .. }
        | R::CannotAbort { .. }
        | R::BinaryUnsupported { .. }
        | R::UpgradeUnderWay { .. }
        | R::UpgradeActionRefused { .. }
        | R::Unrecognized { .. } => Code::FailedPrecondition,
    };
    let details = baton_proto::Rejection::from(rejection).encode_to_vec();
    Status::with_details(code, rejection.to_string(), details.into())
}

/// Maps a write that did not commit.
pub fn propose_error(err: ProposeError) -> Status {
    match err {
        ProposeError::NotLeader { leader_id, leader_addr } => not_leader(leader_id, leader_addr.as_deref()),
        ProposeError::Indeterminate | ProposeError::Stopped(_) | ProposeError::Unanswered(_) => {
            Status::unavailable(err.to_string())
        }
        ProposeError::Refused(message) => Status::failed_precondition(message),
        ProposeError::TooLarge { .. } => Status::invalid_argument(err.to_string()),
    }
}

/// Maps a failed client write or membership change.
pub fn write_error(err: RaftError<crate::types::typ::ClientWriteError>) -> Status {
    propose_error(ProposeError::from(err))
}

/// Raft has stopped on this node (shutting down or a storage failure).
pub fn fatal(err: openraft::errors::Fatal<TypeConfig>) -> Status {
    Status::unavailable(format!("raft is not running on this node ({err}); try another node"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_statuses_are_marked_whether_or_not_they_name_the_leader() {
        let named = not_leader(Some(2), Some("127.0.0.1:7002"));
        let unknown = not_leader(None, None);
        for status in [&named, &unknown] {
            assert_eq!(status.metadata().get(baton_proto::NOT_LEADER_HEADER).unwrap(), "1");
        }
        assert_eq!(
            named.metadata().get(baton_proto::LEADER_ADDR_HEADER).unwrap(),
            "127.0.0.1:7002"
        );
        assert!(unknown.metadata().get(baton_proto::LEADER_ADDR_HEADER).is_none());
        // A refusal of the same code is not a redirect.
        let refused = propose_error(ProposeError::Refused("a membership change is in progress".into()));
        assert!(refused.metadata().get(baton_proto::NOT_LEADER_HEADER).is_none());
        let rejected = rejected(&Rejection::NoSuchTask { task: "x".into() });
        assert!(rejected.metadata().get(baton_proto::NOT_LEADER_HEADER).is_none());
    }

    #[test]
    fn each_rejection_has_its_code_its_text_and_itself_as_details() {
        for rejection in crate::codec::rejection::samples() {
            let status = rejected(&rejection);
            let expected = match rejection.kind() {
                "no-such-task" | "no-such-module" | "no-rollout" | "no-upgrade" => Code::NotFound,
                "task-exists" | "module-name-taken" => Code::AlreadyExists,
                "stale-owner" | "out-of-order" | "stale-epoch" | "version-raced" => Code::Aborted,
                _ => Code::FailedPrecondition,
            };
            assert_eq!(status.code(), expected, "{rejection:?}");
            assert_eq!(status.message(), rejection.to_string());
            assert_eq!(crate::codec::rejection::from_status(&status), Some(rejection));
        }
    }
}
