//! One long-lived gRPC channel per peer, shared by Raft replication and the
//! peer calls (node info). tonic reconnects a channel by itself, so a peer
//! that restarts is reached again without a new channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::peer_client::PeerClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::message_limits::PEER_MAX_MESSAGE_BYTES;
use crate::metrics::{ReplicationCall, ReplicationFailures, ReplicationLabels};
use crate::tls::{TlsMaterial, node_dns_name};
use crate::types::NodeId;

/// How long a peer's connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How often a connection to a peer pings, and how long it waits for the
/// answer before it gives the connection up. After a partition heals, TCP
/// would resend on a stalled connection only when its backed-off
/// retransmission timer fires (seconds later); a connection given up during
/// the partition is made anew at the next call instead, at once.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// A Peer service client on `channel`, with the limits every service
/// between nodes shares.
pub fn peer_client(channel: Channel) -> PeerClient<Channel> {
    PeerClient::new(channel)
        .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES)
}

/// The channels from this node to its peers.
pub struct PeerChannels {
    self_id: NodeId,
    cluster_id: String,
    tls: Option<TlsMaterial>,
    channels: Mutex<HashMap<NodeId, (String, Channel)>>,
    /// Channels to peers' hearts (see [`crate::heart`]), asked only when a
    /// peer's stream breaks.
    hearts: Mutex<HashMap<NodeId, (String, Channel)>>,
    /// Why the last replication call to each peer failed, and when, until
    /// one that carries entries succeeds: the reason `status` gives for a
    /// stall. (An empty heartbeat that gets through says nothing about the
    /// entries that do not.)
    replication_errors: Mutex<HashMap<NodeId, (Instant, String)>>,
    /// Every failed replication call, counted for `/metrics`.
    replication_failures: ReplicationFailures,
    /// Snapshots being streamed to peers: since when, and how many bytes.
    snapshots_sending: Mutex<HashMap<NodeId, (Instant, usize)>>,
}

impl PeerChannels {
    /// `tls: None` means insecure, plain-TCP mode.
    pub fn new(self_id: NodeId, cluster_id: String, tls: Option<TlsMaterial>) -> Arc<Self> {
        Arc::new(PeerChannels {
            self_id,
            cluster_id,
            tls,
            channels: Mutex::new(HashMap::new()),
            hearts: Mutex::new(HashMap::new()),
            replication_errors: Mutex::new(HashMap::new()),
            replication_failures: ReplicationFailures::default(),
            snapshots_sending: Mutex::new(HashMap::new()),
        })
    }

    /// The channel to `id` at `addr`, created lazily on first use and replaced
    /// if the peer's address changed.
    pub fn channel(&self, id: NodeId, addr: &str) -> Result<Channel, tonic::transport::Error> {
        self.cached(&self.channels, id, addr)
    }

    /// The channel to node `id`'s heart at `addr`. The heart presents its
    /// node's certificate, so it is checked as the node's would be.
    pub fn heart_channel(&self, id: NodeId, addr: &str) -> Result<Channel, tonic::transport::Error> {
        self.cached(&self.hearts, id, addr)
    }

    fn cached(
        &self,
        map: &Mutex<HashMap<NodeId, (String, Channel)>>,
        id: NodeId,
        addr: &str,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut channels = map.lock().expect("peer channel lock poisoned");
        if let Some((known_addr, channel)) = channels.get(&id)
            && known_addr == addr
        {
            return Ok(channel.clone());
        }
        let channel = self.endpoint(id, addr)?.connect_lazy();
        channels.insert(id, (addr.to_string(), channel.clone()));
        Ok(channel)
    }

    fn endpoint(&self, id: NodeId, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.client_config(Some(&node_dns_name(id))))?;
        }
        Ok(endpoint)
    }

    /// Records why a replication call to `id` carrying `call` failed, and
    /// counts it.
    pub fn note_replication_error(&self, id: NodeId, call: ReplicationCall, why: String) {
        self.replication_failures
            .get_or_create(&ReplicationLabels {
                peer: id,
                call: call.name(),
            })
            .inc();
        let mut errors = self.replication_errors.lock().expect("replication error lock poisoned");
        errors.insert(id, (Instant::now(), why));
    }

    /// Records that a replication call carrying entries (or a snapshot) to
    /// `id` succeeded.
    pub fn note_replicated(&self, id: NodeId) {
        let mut errors = self.replication_errors.lock().expect("replication error lock poisoned");
        errors.remove(&id);
    }

    /// The failed replication calls counted so far (a handle that shares
    /// the counts), for `/metrics`.
    pub fn replication_failures(&self) -> ReplicationFailures {
        self.replication_failures.clone()
    }

    /// How many replication calls to `id` carrying `call` have failed.
    #[cfg(test)]
    pub(crate) fn failures_of(&self, id: NodeId, call: ReplicationCall) -> u64 {
        self.replication_failures
            .get_or_create(&ReplicationLabels {
                peer: id,
                call: call.name(),
            })
            .get()
    }

    /// Why the last replication call to `id` failed, and how long ago, if
    /// none carrying entries has succeeded since.
    pub fn replication_error(&self, id: NodeId) -> Option<(String, Duration)> {
        let errors = self.replication_errors.lock().expect("replication error lock poisoned");
        errors.get(&id).map(|(at, why)| (why.clone(), at.elapsed()))
    }

    /// Records that a snapshot of `bytes` is being streamed to `id` until
    /// the returned guard is dropped.
    pub fn snapshot_sending(&self, id: NodeId, bytes: usize) -> SnapshotSending<'_> {
        let mut sending = self.snapshots_sending.lock().expect("snapshot lock poisoned");
        sending.insert(id, (Instant::now(), bytes));
        SnapshotSending { channels: self, id }
    }

    /// The snapshot being streamed to `id`, if one is: its bytes, and how
    /// long it has been under way.
    pub fn snapshot_in_flight(&self, id: NodeId) -> Option<(usize, Duration)> {
        let sending = self.snapshots_sending.lock().expect("snapshot lock poisoned");
        sending.get(&id).map(|(at, bytes)| (*bytes, at.elapsed()))
    }

    /// Wraps `message` in a request that names this node and its cluster.
    pub fn request<T>(&self, message: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(baton_proto::NODE_ID_HEADER, MetadataValue::from(self.self_id));
        if let Ok(value) = self.cluster_id.parse() {
            metadata.insert(baton_proto::CLUSTER_ID_HEADER, value);
        }
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        request
    }
}

/// A snapshot being streamed to a peer, forgotten when dropped (sent,
/// failed or cancelled).
pub struct SnapshotSending<'a> {
    channels: &'a PeerChannels,
    id: NodeId,
}

impl Drop for SnapshotSending<'_> {
    fn drop(&mut self) {
        let mut sending = self.channels.snapshots_sending.lock().expect("snapshot lock poisoned");
        sending.remove(&self.id);
    }
}
