//! Baton's wire types: the `baton.v1` protobuf package (control API, peer API,
//! Raft transport), generated at build time by `build.rs` without a system
//! `protoc`.
//!
//! The wire format only ever changes additively, so that nodes of two
//! versions can work together during a rolling upgrade.
#![forbid(unsafe_code)]

/// The generated `baton.v1` package.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("baton.v1");
}

pub use v1::*;

include!(concat!(env!("OUT_DIR"), "/grpc_methods.rs"));

/// The replicated state's stored formats (`baton.state.v1`): commands, log
/// entries, Raft records and snapshots; `node/src/codec` converts them.
pub mod state {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("baton.state.v1");
    }
}

/// gRPC metadata key carrying the sender's node id on peer calls.
pub const NODE_ID_HEADER: &str = "baton-node-id";
/// gRPC metadata key carrying the sender's cluster id on peer calls.
pub const CLUSTER_ID_HEADER: &str = "baton-cluster-id";
/// gRPC metadata key naming the current leader's id on a redirect.
pub const LEADER_ID_HEADER: &str = "baton-leader-id";
/// gRPC metadata key naming the current leader's address on a redirect.
pub const LEADER_ADDR_HEADER: &str = "baton-leader-addr";
/// gRPC metadata key present (value "1") on every "this node is not the
/// leader" status, whether or not it knows the leader: clients and peers
/// tell a redirect from a refusal by it, never by the message.
pub const NOT_LEADER_HEADER: &str = "baton-not-leader";
/// gRPC metadata key on every Raft call: the storage id the membership
/// records for the member called. A node refuses calls addressed to another
/// storage than its own (its disk was replaced since it was admitted).
pub const TARGET_STORAGE_HEADER: &str = "baton-target-storage-id";

/// The encoded form of the messages added since formats became a promise
/// (streamed snapshots, stall reports, the heart, storage ids, node
/// replacement), pinned: a change to a field's number or type fails here.
#[cfg(test)]
mod golden {
    use prost::Message;

    use super::*;

    fn stall() -> Stall {
        Stall {
            kind: "task".into(),
            subject: "t".into(),
            for_ms: 300,
            summary: "s".into(),
        }
    }

    const STALL: [u8; 15] = [
        0x0a, 4, b't', b'a', b's', b'k', // 1: kind
        0x12, 1, b't', // 2: subject
        0x18, 0xac, 0x02, // 3: for_ms = 300
        0x22, 1, b's', // 4: summary
    ];

    #[test]
    fn a_snapshot_chunk_is_encoded_as_pinned() {
        let chunk = SnapshotChunk {
            vote: b"v".to_vec(),
            meta: b"m".to_vec(),
            total_bytes: 3,
            data: b"abc".to_vec(),
        };
        let pinned = [
            0x0a, 1, b'v', // 1: vote
            0x12, 1, b'm', // 2: meta
            0x18, 3, // 3: total_bytes
            0x22, 3, b'a', b'b', b'c', // 4: data
        ];
        assert_eq!(chunk.encode_to_vec(), pinned);
        assert_eq!(SnapshotChunk::decode(&pinned[..]).unwrap(), chunk);
    }

    #[test]
    fn stalls_in_a_status_reply_are_encoded_as_pinned() {
        assert_eq!(stall().encode_to_vec(), STALL);
        let reply = StatusReply {
            stalls: vec![stall()],
            overdue_tasks: 2,
            ..Default::default()
        };
        let mut pinned = vec![0x6a, STALL.len() as u8]; // 13: stalls
        pinned.extend_from_slice(&STALL);
        pinned.extend_from_slice(&[0x70, 2]); // 14: overdue_tasks
        assert_eq!(reply.encode_to_vec(), pinned);
        assert_eq!(StatusReply::decode(&pinned[..]).unwrap(), reply);
    }

    #[test]
    fn cluster_versions_are_encoded_as_pinned() {
        let ping = HeartbeatPing {
            min_cluster_version: 1,
            max_cluster_version: 2,
            ..Default::default()
        };
        let pinned = [0x40, 1, 0x48, 2]; // 8, 9: min/max_cluster_version
        assert_eq!(ping.encode_to_vec(), pinned);
        assert_eq!(HeartbeatPing::decode(&pinned[..]).unwrap(), ping);

        let info = NodeInfoReply {
            min_cluster_version: 1,
            max_cluster_version: 2,
            cluster_version: 2,
            ..Default::default()
        };
        let pinned = [0x58, 1, 0x60, 2, 0x68, 2]; // 11, 12, 13
        assert_eq!(info.encode_to_vec(), pinned);
        assert_eq!(NodeInfoReply::decode(&pinned[..]).unwrap(), info);

        let status = StatusReply {
            cluster_version: 1,
            version_held_by: vec![3],
            members: vec![MemberStatus {
                max_cluster_version: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let pinned = [
            0x3a, 2, 0x58, 1, // 7: members, each with 11: max_cluster_version
            0x78, 1, // 15: cluster_version
            0x82, 0x01, 1, 3, // 16: version_held_by, packed
        ];
        assert_eq!(status.encode_to_vec(), pinned);
        assert_eq!(StatusReply::decode(&pinned[..]).unwrap(), status);

        let ticks = StatusReply {
            ticks: Some(TickTimeliness {
                window_ms: 10_000,
                committed_per_second: 2.0,
                due_per_second: 0.5,
                late_p50_ms: 3,
                late_p99_ms: 41,
                late_max_ms: 120,
            }),
            ..Default::default()
        };
        let pinned = [
            0x8a, 0x01, 27, // 17: ticks
            0x08, 0x90, 0x4e, // 1: window_ms 10000
            0x11, 0, 0, 0, 0, 0, 0, 0, 0x40, // 2: committed_per_second 2.0 (double)
            0x19, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f, // 3: due_per_second 0.5
            0x20, 3, // 4: late_p50_ms
            0x28, 41, // 5: late_p99_ms
            0x30, 120, // 6: late_max_ms
        ];
        assert_eq!(ticks.encode_to_vec(), pinned);
        assert_eq!(StatusReply::decode(&pinned[..]).unwrap(), ticks);
    }

    #[test]
    fn a_node_info_reply_names_its_storage_and_membership_as_pinned() {
        let reply = NodeInfoReply {
            node_id: 3,
            storage_id: "ab".into(),
            has_raft_state: true,
            members: vec![MemberRecord {
                id: 1,
                addr: "h:1".into(),
                storage_id: "cd".into(),
            }],
            ..Default::default()
        };
        let pinned = [
            0x08, 3, // 1: node_id
            0x42, 2, b'a', b'b', // 8: storage_id
            0x48, 1, // 9: has_raft_state
            0x52, 11, // 10: members
            0x08, 1, // 1: id
            0x12, 3, b'h', b':', b'1', // 2: addr
            0x1a, 2, b'c', b'd', // 3: storage_id
        ];
        assert_eq!(reply.encode_to_vec(), pinned);
        assert_eq!(NodeInfoReply::decode(&pinned[..]).unwrap(), reply);
    }

    #[test]
    fn a_replace_node_call_is_encoded_as_pinned() {
        assert_eq!(ReplaceNodeRequest { id: 3 }.encode_to_vec(), [0x08, 3]);
        let reply = ReplaceNodeReply {
            log_index: 9,
            old_storage_id: "a".into(),
            new_storage_id: "b".into(),
            unchanged: true,
            voter: true,
        };
        let pinned = [0x08, 9, 0x12, 1, b'a', 0x1a, 1, b'b', 0x20, 1, 0x28, 1];
        assert_eq!(reply.encode_to_vec(), pinned);
        assert_eq!(ReplaceNodeReply::decode(&pinned[..]).unwrap(), reply);
    }

    #[test]
    fn the_raft_envelope_carries_typed_calls_as_pinned() {
        use state::v1 as s;
        let unit = || Some(s::Unit {});
        let request = RaftRequest {
            append_entries: Some(s::AppendEntries::default()),
            vote: Some(s::VoteRequest::default()),
            transfer_leader: Some(s::TransferLeader::default()),
            ..Default::default()
        };
        let pinned = [
            0x12, 0, // 2: append_entries
            0x1a, 0, // 3: vote
            0x22, 0, // 4: transfer_leader
        ];
        assert_eq!(request.encode_to_vec(), pinned);
        assert_eq!(RaftRequest::decode(&pinned[..]).unwrap(), request);

        let reply = RaftReply {
            append_entries: Some(s::AppendEntriesReply {
                result: Some(s::append_entries_reply::Result::Success(s::Unit {})),
            }),
            vote: Some(s::VoteReply {
                vote_granted: true,
                ..Default::default()
            }),
            transfer_leader: Some(s::TransferLeaderReply {
                result: unit().map(s::transfer_leader_reply::Result::Done),
            }),
            ..Default::default()
        };
        let pinned = [
            0x12, 2, 0x0a, 0, // 2: append_entries { 1: success }
            0x1a, 2, 0x10, 1, // 3: vote { 2: vote_granted }
            0x22, 2, 0x0a, 0, // 4: transfer_leader { 1: done }
        ];
        assert_eq!(reply.encode_to_vec(), pinned);
        assert_eq!(RaftReply::decode(&pinned[..]).unwrap(), reply);
    }

    #[test]
    fn a_propose_reply_carries_its_rejection_typed_as_pinned() {
        let reply = ProposeReply {
            response: b"r".to_vec(),
            log_index: 7,
            rejection: Some(Rejection {
                message: "m".into(),
                kind: Some(rejection::Kind::NoSuchTask(RejectedTask { task: "t".into() })),
            }),
            typed_response: None,
        };
        let pinned = [
            0x0a, 1, b'r', // 1: response
            0x10, 7, // 2: log_index
            0x1a, 8, // 3: rejection
            0x0a, 1, b'm', // 1: message
            0x12, 3, 0x0a, 1, b't', // 2: no_such_task { task }
        ];
        assert_eq!(reply.encode_to_vec(), pinned);
        assert_eq!(ProposeReply::decode(&pinned[..]).unwrap(), reply);

        // The typed answer to a command sent in binary: a count of 2.
        let typed = ProposeReply {
            log_index: 7,
            typed_response: Some(state::v1::CommandResponse {
                response: Some(state::v1::command_response::Response::Count(2)),
            }),
            ..Default::default()
        };
        let pinned = [
            0x10, 7, // 2: log_index
            0x22, 2, 0x20, 2, // 4: typed_response { 4: count }
        ];
        assert_eq!(typed.encode_to_vec(), pinned);
        assert_eq!(ProposeReply::decode(&pinned[..]).unwrap(), typed);
    }

    #[test]
    fn the_hearts_vouching_is_encoded_as_pinned() {
        let request = AwaitExitRequest {
            incarnation: "ab".into(),
            wait_ms: 300,
        };
        let pinned = [0x0a, 2, b'a', b'b', 0x10, 0xac, 0x02];
        assert_eq!(request.encode_to_vec(), pinned);
        assert_eq!(AwaitExitRequest::decode(&pinned[..]).unwrap(), request);
        let reply = AwaitExitReply {
            exited: true,
            detail: "signal 9".into(),
        };
        let mut pinned = vec![0x08, 1, 0x12, 8];
        pinned.extend_from_slice(b"signal 9");
        assert_eq!(reply.encode_to_vec(), pinned);
        assert_eq!(AwaitExitReply::decode(&pinned[..]).unwrap(), reply);
    }

    #[test]
    fn the_not_leader_mark_is_pinned() {
        assert_eq!(NOT_LEADER_HEADER, "baton-not-leader");
        assert_eq!(TARGET_STORAGE_HEADER, "baton-target-storage-id");
    }
}
