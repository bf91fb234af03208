//! Raft's records as `baton.state.v1` protobuf: log ids, votes,
//! memberships, log entries (whose commands are [`super::command`]'s) and
//! snapshot metadata.

use std::collections::{BTreeMap, BTreeSet};

use baton_proto::state::v1 as pb;
use openraft::EntryPayload;
use openraft::vote::RaftLeaderIdExt;
use prost::Message;

use super::DecodeError;
use super::command::{decode_command, encode_command};
use crate::state::member::{Member, NodeId};
use crate::types::TypeConfig;
use crate::types::typ::{
    AppendEntriesRequest, AppendEntriesResponse, Entry, LogId, SnapshotMeta, StoredMembership, TransferLeaderRequest,
    TransferLeaderResponse, Vote, VoteRequest, VoteResponse,
};

type TransferLeaderError = openraft::raft::TransferLeaderError<TypeConfig>;

type Membership = openraft::Membership<NodeId, Member>;
type LeaderId = <TypeConfig as openraft::RaftTypeConfig>::LeaderId;

fn missing(what: &'static str) -> DecodeError {
    DecodeError::Missing(what)
}

/// A log entry's encoding.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    use pb::entry::Payload;
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank(pb::Unit {}),
        EntryPayload::Normal(command) => Payload::Normal(encode_command(command)),
        EntryPayload::Membership(membership) => Payload::Membership(membership_to(membership)),
    };
    pb::Entry {
        log_id: Some(log_id_to(&entry.log_id)),
        payload: Some(payload),
    }
    .encode_to_vec()
}

/// Decodes a log entry; one whose command is of a kind this release does
/// not know is [`DecodeError::UnknownKind`].
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    use pb::entry::Payload;
    let entry = pb::Entry::decode(bytes)?;
    let log_id = log_id_from(entry.log_id.ok_or(missing("Entry.log_id"))?)?;
    let payload = match entry.payload.ok_or(missing("Entry.payload"))? {
        Payload::Blank(_) => EntryPayload::Blank,
        Payload::Normal(command) => EntryPayload::Normal(decode_command(&command)?),
        Payload::Membership(membership) => EntryPayload::Membership(membership_from(membership)?),
    };
    Ok(Entry { log_id, payload })
}

/// openraft's AppendEntries request, typed.
pub fn append_entries_to(rpc: &AppendEntriesRequest) -> pb::AppendEntries {
    pb::AppendEntries {
        vote: Some(vote_to(&rpc.vote)),
        prev_log_id: rpc.prev_log_id.as_ref().map(log_id_to),
        entries: rpc.entries.iter().map(encode_entry).collect(),
        leader_commit: rpc.leader_commit.as_ref().map(log_id_to),
    }
}

/// An AppendEntries request from its typed form; an entry of a command kind
/// this release does not know refuses the whole request.
pub fn append_entries_from(rpc: pb::AppendEntries) -> Result<AppendEntriesRequest, DecodeError> {
    Ok(AppendEntriesRequest {
        vote: vote_from(rpc.vote.ok_or(missing("AppendEntries.vote"))?)?,
        prev_log_id: optional_log_id(rpc.prev_log_id)?,
        entries: rpc.entries.iter().map(|e| decode_entry(e)).collect::<Result<_, _>>()?,
        leader_commit: optional_log_id(rpc.leader_commit)?,
    })
}

/// openraft's answer to an AppendEntries, typed.
pub fn append_reply_to(reply: &AppendEntriesResponse) -> pb::AppendEntriesReply {
    use pb::append_entries_reply::Result as R;
    let result = match reply {
        AppendEntriesResponse::Success => R::Success(pb::Unit {}),
        AppendEntriesResponse::PartialSuccess(matching) => R::PartialSuccess(pb::PartialSuccess {
            matching: matching.as_ref().map(log_id_to),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Unit {}),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to(vote)),
    };
    pb::AppendEntriesReply { result: Some(result) }
}

pub fn append_reply_from(reply: pb::AppendEntriesReply) -> Result<AppendEntriesResponse, DecodeError> {
    use pb::append_entries_reply::Result as R;
    Ok(match reply.result.ok_or(missing("AppendEntriesReply.result"))? {
        R::Success(_) => AppendEntriesResponse::Success,
        R::PartialSuccess(p) => AppendEntriesResponse::PartialSuccess(optional_log_id(p.matching)?),
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(vote) => AppendEntriesResponse::HigherVote(vote_from(vote)?),
    })
}

/// openraft's (pre-)vote request, typed.
pub fn vote_request_to(rpc: &VoteRequest) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to(&rpc.vote)),
        last_log_id: rpc.last_log_id.as_ref().map(log_id_to),
        leadership_transfer: rpc.leadership_transfer,
    }
}

pub fn vote_request_from(rpc: pb::VoteRequest) -> Result<VoteRequest, DecodeError> {
    Ok(VoteRequest {
        vote: vote_from(rpc.vote.ok_or(missing("VoteRequest.vote"))?)?,
        last_log_id: optional_log_id(rpc.last_log_id)?,
        leadership_transfer: rpc.leadership_transfer,
    })
}

pub fn vote_reply_to(reply: &VoteResponse) -> pb::VoteReply {
    pb::VoteReply {
        vote: Some(vote_to(&reply.vote)),
        vote_granted: reply.vote_granted,
        last_log_id: reply.last_log_id.as_ref().map(log_id_to),
    }
}

pub fn vote_reply_from(reply: pb::VoteReply) -> Result<VoteResponse, DecodeError> {
    Ok(VoteResponse {
        vote: vote_from(reply.vote.ok_or(missing("VoteReply.vote"))?)?,
        vote_granted: reply.vote_granted,
        last_log_id: optional_log_id(reply.last_log_id)?,
    })
}

fn vote_to(vote: &Vote) -> pb::Vote {
    pb::Vote {
        leader_id: Some(leader_to(&vote.leader_id)),
        committed: vote.committed,
    }
}

fn vote_from(vote: pb::Vote) -> Result<Vote, DecodeError> {
    let leader = vote.leader_id.ok_or(missing("Vote.leader_id"))?;
    Ok(match vote.committed {
        true => Vote::new_committed(leader.term, leader.node_id),
        false => Vote::new(leader.term, leader.node_id),
    })
}

/// openraft's leadership transfer, typed.
pub fn transfer_to(rpc: &TransferLeaderRequest) -> pb::TransferLeader {
    pb::TransferLeader {
        from_leader: Some(vote_to(rpc.from_leader())),
        to_node_id: *rpc.to_node_id(),
        last_log_id: rpc.last_log_id().map(log_id_to),
    }
}

pub fn transfer_from(rpc: pb::TransferLeader) -> Result<TransferLeaderRequest, DecodeError> {
    Ok(TransferLeaderRequest::new(
        vote_from(rpc.from_leader.ok_or(missing("TransferLeader.from_leader"))?)?,
        rpc.to_node_id,
        optional_log_id(rpc.last_log_id)?,
    ))
}

pub fn transfer_reply_to(reply: &TransferLeaderResponse) -> pb::TransferLeaderReply {
    use pb::transfer_leader_reply::Result as R;
    let result = match reply {
        Ok(()) => R::Done(pb::Unit {}),
        Err(TransferLeaderError::VoteChanged { expected, actual }) => R::VoteChanged(pb::VotesDiffer {
            expected: Some(vote_to(expected)),
            actual: Some(vote_to(actual)),
        }),
        Err(TransferLeaderError::LogNotFlushed { expected, actual }) => R::LogNotFlushed(pb::LogsDiffer {
            expected: expected.as_ref().map(log_id_to),
            actual: actual.as_ref().map(log_id_to),
        }),
    };
    pb::TransferLeaderReply { result: Some(result) }
}

pub fn transfer_reply_from(reply: pb::TransferLeaderReply) -> Result<TransferLeaderResponse, DecodeError> {
    use pb::transfer_leader_reply::Result as R;
    Ok(match reply.result.ok_or(missing("TransferLeaderReply.result"))? {
        R::Done(_) => Ok(()),
        R::VoteChanged(v) => Err(TransferLeaderError::VoteChanged {
            expected: vote_from(v.expected.ok_or(missing("VotesDiffer.expected"))?)?,
            actual: vote_from(v.actual.ok_or(missing("VotesDiffer.actual"))?)?,
        }),
        R::LogNotFlushed(l) => Err(TransferLeaderError::LogNotFlushed {
            expected: optional_log_id(l.expected)?,
            actual: optional_log_id(l.actual)?,
        }),
    })
}

/// A vote's encoding.
pub fn encode_vote(vote: &Vote) -> Vec<u8> {
    vote_to(vote).encode_to_vec()
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote, DecodeError> {
    vote_from(pb::Vote::decode(bytes)?)
}

/// An optional log id's encoding (empty for none).
pub fn encode_log_id(log_id: Option<&LogId>) -> Vec<u8> {
    log_id.map(log_id_to).unwrap_or_default().encode_to_vec()
}

pub fn decode_log_id(bytes: &[u8]) -> Result<Option<LogId>, DecodeError> {
    optional_log_id(Some(pb::LogId::decode(bytes)?))
}

/// Snapshot metadata's encoding.
pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> Vec<u8> {
    pb::SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_to),
        last_membership: Some(pb::StoredMembership {
            log_id: meta.last_membership.log_id().as_ref().map(log_id_to),
            membership: Some(membership_to(meta.last_membership.membership())),
        }),
    }
    .encode_to_vec()
}

pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, DecodeError> {
    let meta = pb::SnapshotMeta::decode(bytes)?;
    let stored = meta.last_membership.unwrap_or_default();
    let membership = match stored.membership {
        Some(membership) => membership_from(membership)?,
        None => Membership::default(),
    };
    Ok(SnapshotMeta {
        last_log_id: optional_log_id(meta.last_log_id)?,
        last_membership: StoredMembership::new(optional_log_id(stored.log_id)?, membership),
    })
}

fn leader_to(leader: &LeaderId) -> pb::LeaderId {
    pb::LeaderId {
        term: leader.term,
        node_id: leader.node_id,
    }
}

fn log_id_to(log_id: &LogId) -> pb::LogId {
    pb::LogId {
        leader_id: Some(pb::LeaderId {
            term: log_id.leader_id.term,
            node_id: log_id.leader_id.node_id,
        }),
        index: log_id.index,
    }
}

fn log_id_from(log_id: pb::LogId) -> Result<LogId, DecodeError> {
    let leader = log_id.leader_id.ok_or(missing("LogId.leader_id"))?;
    Ok(LogId::new(
        LeaderId::new_committed(leader.term, leader.node_id),
        log_id.index,
    ))
}

/// `None` for an unset log id (or an empty one: no leader, no index).
fn optional_log_id(log_id: Option<pb::LogId>) -> Result<Option<LogId>, DecodeError> {
    match log_id {
        Some(pb::LogId {
            leader_id: None,
            index: 0,
        })
        | None => Ok(None),
        Some(log_id) => log_id_from(log_id).map(Some),
    }
}

fn membership_to(membership: &Membership) -> pb::Membership {
    pb::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|voters| pb::VoterSet {
                voters: voters.iter().copied().collect(),
            })
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, member)| {
                let member = pb::Member {
                    addr: member.addr.clone(),
                    storage_id: member.storage_id.clone(),
                };
                (*id, member)
            })
            .collect(),
    }
}

fn membership_from(membership: pb::Membership) -> Result<Membership, DecodeError> {
    let configs: Vec<BTreeSet<NodeId>> = membership
        .configs
        .into_iter()
        .map(|set| set.voters.into_iter().collect())
        .collect();
    let nodes: BTreeMap<NodeId, Member> = membership
        .nodes
        .into_iter()
        .map(|(id, member)| (id, Member::new(member.addr, member.storage_id)))
        .collect();
    Membership::new(configs, nodes).map_err(|e| DecodeError::Invalid {
        what: "Membership",
        why: e.to_string(),
    })
}
