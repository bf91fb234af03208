//! The Raft type configuration: openraft's types for Baton, with the
//! replicated state's vocabulary (from [`crate::state`]) re-exported where
//! Raft names it.

pub use crate::state::command::{Command, CommandResponse, ModuleVersion};
pub use crate::state::member::{Member, NodeId};
pub use crate::state::rejection::{OwnedWrite, Rejection};

openraft::declare_raft_types!(
    /// Baton's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
);

/// The `Raft` handle for Baton's type configuration.
pub type Raft = openraft::Raft<TypeConfig, crate::store::StateMachineStore>;

/// The latest Raft metrics of `raft`.
pub fn metrics(raft: &Raft) -> typ::Metrics {
    with_metrics(raft, Clone::clone)
}

/// The current leader, if known, and its address.
pub fn leader(raft: &Raft) -> (Option<NodeId>, Option<String>) {
    with_metrics(raft, |m| {
        let addr = m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.addr.clone()));
        (m.current_leader, addr)
    })
}

/// The other members of the cluster as `raft` knows them, with their
/// addresses, the leader first: where to fetch what this node lacks.
pub fn peers_leader_first(raft: &Raft, self_id: NodeId) -> Vec<(NodeId, String)> {
    let (leader, peers): (Option<NodeId>, Vec<(NodeId, String)>) = with_metrics(raft, |m| {
        let peers = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        (m.current_leader, peers)
    });
    let mut peers: Vec<_> = peers.into_iter().filter(|(id, _)| *id != self_id).collect();
    peers.sort_by_key(|(id, _)| Some(*id) != leader);
    peers
}

/// Milliseconds since the Unix epoch, by this node's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// As of when node `self_id`, as leader, is confirmed by a quorum: the send
/// time of the last Raft heartbeat a quorum acknowledged, on this process's
/// monotonic clock (rounded earlier, never later); now for a sole voter.
pub fn leadership_confirmed_at(metrics: &typ::Metrics, self_id: NodeId) -> Option<std::time::Instant> {
    use openraft::Instant as _;
    let now = std::time::Instant::now();
    if metrics.membership_config.membership().voter_ids().eq([self_id]) {
        return Some(now);
    }
    let acked = metrics.last_quorum_acked.as_ref()?;
    Some(now.checked_sub(acked.elapsed()).unwrap_or(now))
}

/// The highest log index known committed (0 before any).
pub fn committed_index(metrics: &typ::Metrics) -> u64 {
    metrics
        .cluster_committed
        .as_ref()
        .or(metrics.local_committed.as_ref())
        .map_or(0, |l| l.index)
}

/// What a leader tells the nodes it renews to apply before they tick: its
/// committed index, once it has committed an entry of its own term. From
/// then on, whatever a predecessor appended (such as moving a frozen node's
/// tasks) is committed and at or below it; what this leader itself decides
/// about a node whose lease ran out is committed before it renews that node
/// again (`LeaseTable`'s lapsed rule). `None` until then: no renewal yet.
pub fn renewal_index(metrics: &typ::Metrics) -> Option<u64> {
    let committed = metrics
        .cluster_committed
        .as_ref()
        .or(metrics.local_committed.as_ref())?;
    (committed.leader_id.term == metrics.current_term).then_some(committed.index)
}

/// Reads the latest Raft metrics of `raft` without copying them.
pub fn with_metrics<T>(raft: &Raft, f: impl FnOnce(&typ::Metrics) -> T) -> T {
    use openraft::async_runtime::watch::WatchReceiver;
    f(&raft.metrics().borrow_watched())
}

/// Short aliases for openraft's generic types.
pub mod typ {
    use super::TypeConfig;

    pub type Entry = openraft::alias::EntryOf<TypeConfig>;
    pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
    pub type Vote = openraft::alias::VoteOf<TypeConfig>;
    pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
    pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
    pub type SnapshotData = std::io::Cursor<Vec<u8>>;
    pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
    pub type RaftError<E = openraft::errors::Infallible> = openraft::errors::RaftError<TypeConfig, E>;
    pub type RpcError<E = openraft::errors::Infallible> = openraft::errors::RPCError<TypeConfig, E>;
    pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
    pub type StreamAppendResult = openraft::raft::StreamAppendResult<TypeConfig>;
    pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
    pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
    pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
    pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
    pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;
    pub type Metrics = openraft::RaftMetrics<TypeConfig>;
}
