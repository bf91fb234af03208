//! openraft's network over tonic, on the peer's long-lived channel. Each Raft
//! RPC is one unary gRPC call with a timeout that allows for its size (see
//! [`super::message_limits`]), except two: a snapshot is one client stream
//! of chunks (see [`super::snapshot_stream`]), and from cluster version
//! [`STREAMED_APPEND`] replication's AppendEntries are pipelined on one
//! bidirectional stream (see [`super::append_stream`]). Heartbeats stay
//! unary calls, one per beat, on their own client.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::raft_client::RaftClient;
use baton_proto::{RaftReply, RaftRequest, SnapshotRequest};
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, stream_append_sequential, v2::RaftNetworkV2};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::append_stream::{self, Progress};
use super::message_limits::{PEER_MAX_MESSAGE_BYTES, rpc_timeout};
use super::peer_channels::PeerChannels;
use super::snapshot_stream::{SNAPSHOT_CHUNK_BYTES, chunk_count, chunks, fits_one_message};
use crate::codec::format::{AppliedVersion, Format};
use crate::codec::raft::{
    append_entries_to, append_reply_from, transfer_reply_from, transfer_to, vote_reply_from, vote_request_to,
};
use crate::metrics::ReplicationCall;
use crate::state::cluster_version::STREAMED_APPEND;
use crate::types::typ::*;
use crate::types::{Member, NodeId, TypeConfig};

/// Makes a [`GrpcPeer`] for each peer Raft replicates to.
#[derive(Clone)]
pub struct GrpcNetwork {
    channels: Arc<PeerChannels>,
    applied: AppliedVersion,
}

impl GrpcNetwork {
    /// `applied` is the cluster version this node has applied: it picks the
    /// format AppendEntries travels in.
    pub fn new(channels: Arc<PeerChannels>, applied: AppliedVersion) -> Self {
        GrpcNetwork { channels, applied }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> GrpcPeer {
        GrpcPeer {
            target,
            target_storage: node.storage_id.clone(),
            channel: self.channels.channel(target, &node.addr),
            channels: self.channels.clone(),
            applied: self.applied.clone(),
            appends: Appends::Streamed,
        }
    }

    /// Heartbeats stay unary: openraft sends each beat as a stream of one
    /// request, which would open and close a stream per beat.
    async fn new_heartbeat_client(&mut self, target: NodeId, node: &Member) -> GrpcPeer {
        GrpcPeer {
            appends: Appends::Unary,
            ..self.new_client(target, node).await
        }
    }
}

/// How a peer client sends replication's AppendEntries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Appends {
    /// On one stream once the cluster version allows it.
    Streamed,
    /// One unary call at a time: heartbeats, and a peer that answered the
    /// stream UNIMPLEMENTED.
    Unary,
}

/// The Raft RPC client for one peer.
pub struct GrpcPeer {
    target: NodeId,
    /// The storage the membership admitted the target with: every call is
    /// addressed to it (see [`super::identity`]).
    target_storage: String,
    channel: Result<Channel, tonic::transport::Error>,
    channels: Arc<PeerChannels>,
    applied: AppliedVersion,
    appends: Appends,
}

/// How long a stream that did not open because its peer could not be
/// reached waits before it says so: openraft's own backoff (its default,
/// `Config::backoff`, which Baton keeps), which a unary call to such a
/// peer waits before each attempt.
pub const UNREACHABLE_RETRY: Duration = Duration::from_millis(200);

/// Maps a failed gRPC call to openraft's error: an unreachable peer makes
/// openraft back off (a stream that does not open waits
/// [`UNREACHABLE_RETRY`] itself), anything else is retried at once.
pub(super) fn rpc_error(status: tonic::Status) -> RpcError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            RpcError::Unreachable(Unreachable::from_string(status.to_string()))
        }
        _ => RpcError::Network(NetworkError::from_string(status.to_string())),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RpcError> {
    serde_json::to_vec(value).map_err(|e| RpcError::Network(NetworkError::new(&e)))
}

/// openraft's request as JSON, as every release reads it.
fn json_request<T: Serialize>(value: &T) -> Result<RaftRequest, RpcError> {
    Ok(RaftRequest {
        payload: encode(value)?,
        ..Default::default()
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    serde_json::from_slice(bytes).map_err(|e| RpcError::Network(NetworkError::new(&e)))
}

impl GrpcPeer {
    /// A call to the target: the peer headers, and the storage it is
    /// addressed to.
    fn request<T>(&self, message: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut request = self.channels.request(message, timeout);
        if let Ok(storage) = self.target_storage.parse() {
            request
                .metadata_mut()
                .insert(baton_proto::TARGET_STORAGE_HEADER, storage);
        }
        request
    }

    fn client(&self) -> Result<RaftClient<Channel>, RpcError> {
        let channel = self
            .channel
            .as_ref()
            .map_err(|e| RpcError::Unreachable(Unreachable::new(e)))?;
        Ok(RaftClient::new(channel.clone())
            .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES))
    }

    async fn call(&self, kind: RpcKind, message: RaftRequest, option: &RPCOption) -> Result<RaftReply, RpcError> {
        let mut client = self.client()?;
        // openraft's timeout comes from the heartbeat interval (37.5 ms by
        // default): too short for an entry of megabytes, which would time
        // out and be resent for ever.
        let timeout = rpc_timeout(option.soft_ttl(), message.encoded_len());
        let request = self.request(message, Some(timeout));
        let reply = match kind {
            RpcKind::AppendEntries => client.append_entries(request).await,
            RpcKind::Vote => client.vote(request).await,
            RpcKind::PreVote => client.pre_vote(request).await,
            RpcKind::TransferLeader => client.transfer_leader(request).await,
        }
        .map_err(rpc_error)?;
        Ok(reply.into_inner())
    }

    /// Notes why a stream to this peer did not open, and waits
    /// [`UNREACHABLE_RETRY`] first if the peer could not be reached.
    /// openraft's backoff sleeps only before it hands out a request, and a
    /// refused connection fails before any is taken: without the wait the
    /// next attempt would follow at once, in a loop on openraft's core, for
    /// as long as the follower is down.
    async fn not_opened(&self, e: RpcError) -> RpcError {
        self.channels
            .note_replication_error(self.target, ReplicationCall::StreamOpen, e.to_string());
        if matches!(e, RpcError::Unreachable(_)) {
            tokio::time::sleep(UNREACHABLE_RETRY).await;
        }
        e
    }

    /// A vote or pre-vote, typed once every member reads it.
    async fn call_vote(&self, kind: RpcKind, rpc: &VoteRequest, option: &RPCOption) -> Result<VoteResponse, RpcError> {
        let message = match self.applied.format() {
            Format::Json => json_request(rpc)?,
            Format::Binary => RaftRequest {
                vote: Some(vote_request_to(rpc)),
                ..Default::default()
            },
        };
        let reply = self.call(kind, message, option).await?;
        match reply.vote {
            Some(typed) => vote_reply_from(typed).map_err(|e| RpcError::Network(NetworkError::new(&e))),
            None => decode(&reply.payload),
        }
    }

    /// Streams a snapshot in chunks. The transfer may take as long as it
    /// needs while it moves: it fails only when no chunk has been taken for
    /// `patience` (openraft's install_snapshot_timeout), or when the
    /// receiver has not answered within `patience` plus the time its bytes
    /// take to install at the slowest rate allowed, once it has them all. A
    /// peer of an earlier release, without the streaming call, gets the
    /// snapshot in one message if it fits one.
    async fn send_snapshot(
        &self,
        vote: Vec<u8>,
        meta: Vec<u8>,
        data: Arc<Vec<u8>>,
        patience: Duration,
    ) -> Result<SnapshotResponse, RpcError> {
        let mut client = self.client()?;
        let total = data.len();
        let count = chunk_count(total, SNAPSHOT_CHUNK_BYTES);
        // When the transport last took a chunk, and whether it took the last.
        let taken = Arc::new(Mutex::new((Instant::now(), false)));
        let tracker = taken.clone();
        let stream = chunks(vote.clone(), meta.clone(), data.clone(), SNAPSHOT_CHUNK_BYTES)
            .enumerate()
            .map(move |(i, chunk)| {
                *tracker.lock().expect("snapshot progress lock poisoned") = (Instant::now(), i + 1 == count);
                chunk
            });
        let request = self.request(futures::stream::iter(stream), None);
        let stalled = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let (at, all) = *taken.lock().expect("snapshot progress lock poisoned");
                let allowed = if all { rpc_timeout(patience, total) } else { patience };
                if at.elapsed() > allowed {
                    return match all {
                        true => format!(
                            "node {} took all {total} snapshot bytes and did not answer within {allowed:?}",
                            self.target
                        ),
                        false => format!("node {} took no snapshot chunk for {allowed:?}", self.target),
                    };
                }
            }
        };
        let reply = tokio::select! {
            reply = client.stream_snapshot(request) => reply,
            why = stalled => return Err(RpcError::Unreachable(Unreachable::from_string(why))),
        };
        let reply = match reply {
            Err(status) if status.code() == tonic::Code::Unimplemented && fits_one_message(total) => {
                let message = SnapshotRequest {
                    vote,
                    meta,
                    data: data.to_vec(),
                };
                let request = self.request(message, Some(rpc_timeout(patience, total)));
                client.install_snapshot(request).await
            }
            other => other,
        };
        decode(&reply.map_err(rpc_error)?.into_inner().payload)
    }
}

enum RpcKind {
    AppendEntries,
    Vote,
    PreVote,
    TransferLeader,
}

impl RaftNetworkV2<TypeConfig> for GrpcPeer {
    type SnapshotData = SnapshotData;

    /// Replication's requests to this peer: on one stream (see
    /// [`append_stream`]) once every member has it, else one unary call at
    /// a time. A unary session ends, without losing a request, when the
    /// cluster version reaches [`STREAMED_APPEND`], and openraft opens the
    /// next one streamed.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult, RpcError>>, RpcError>>
    where
        S: futures::Stream<Item = AppendEntriesRequest> + OptionalSend + Unpin + 'static,
    {
        if self.appends == Appends::Unary {
            return stream_append_sequential(self, input, option);
        }
        if self.applied.get() < STREAMED_APPEND {
            let applied = self.applied.clone();
            let mut input = input;
            let until_streamed = futures::stream::poll_fn(move |cx| {
                // Checked before each request is taken, so none is lost.
                if applied.get() >= STREAMED_APPEND {
                    return std::task::Poll::Ready(None);
                }
                futures::StreamExt::poll_next_unpin(&mut input, cx)
            });
            return stream_append_sequential(self, until_streamed, option);
        }
        let (requests, shared) = append_stream::outgoing(input);
        let request = self.request(requests, None);
        let progress = Progress {
            target: self.target,
            channels: self.channels.clone(),
        };
        Box::pin(async move {
            let opened = match self.client() {
                Ok(client) => append_stream::open(client, request, shared, option.soft_ttl(), progress).await,
                Err(e) => return Err(self.not_opened(e).await),
            };
            match opened {
                Ok(answers) => Ok(answers),
                Err(status) => {
                    if status.code() == tonic::Code::Unimplemented {
                        tracing::warn!(
                            "node {} has no append stream ({}); appends to it go one call at a time",
                            self.target,
                            status.message()
                        );
                        self.appends = Appends::Unary;
                    }
                    Err(self.not_opened(rpc_error(status)).await)
                }
            }
        })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let carries_entries = !rpc.entries.is_empty();
        // Typed once every member reads it (see `codec::format`).
        let message = match self.applied.format() {
            Format::Json => json_request(&rpc)?,
            Format::Binary => RaftRequest {
                append_entries: Some(append_entries_to(&rpc)),
                ..Default::default()
            },
        };
        let result = match self.call(RpcKind::AppendEntries, message, &option).await {
            Ok(RaftReply {
                append_entries: Some(typed),
                ..
            }) => append_reply_from(typed).map_err(|e| RpcError::Network(NetworkError::new(&e))),
            Ok(reply) => decode(&reply.payload),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) if carries_entries => self.channels.note_replicated(self.target),
            Ok(_) => {}
            Err(e) => {
                let call = if carries_entries {
                    ReplicationCall::Append
                } else {
                    ReplicationCall::Heartbeat
                };
                self.channels.note_replication_error(self.target, call, e.to_string());
            }
        }
        result
    }

    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RpcError> {
        self.call_vote(RpcKind::Vote, &rpc, &option).await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RpcError> {
        self.call_vote(RpcKind::PreVote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        let to_streaming = |e: RpcError| match e {
            RpcError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::from_string(other.to_string())),
        };
        // The header in the format every member reads (see `codec::format`).
        let format = self.applied.format();
        let header = |e: std::io::Error| to_streaming(RpcError::Network(NetworkError::new(&e)));
        let vote = crate::codec::format::encode_vote(&vote, format).map_err(header)?;
        let meta = crate::codec::format::encode_snapshot_meta(&snapshot.meta, format).map_err(header)?;
        let data = Arc::new(snapshot.snapshot.into_inner());
        let _sending = self.channels.snapshot_sending(self.target, data.len());
        let result = tokio::select! {
            result = self.send_snapshot(vote, meta, data, option.hard_ttl()) => result.map_err(to_streaming),
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match &result {
            Ok(_) => self.channels.note_replicated(self.target),
            Err(e) => self.channels.note_replication_error(
                self.target,
                ReplicationCall::Snapshot,
                format!("sending a snapshot: {e}"),
            ),
        }
        result
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse, RpcError> {
        let message = match self.applied.format() {
            Format::Json => json_request(&req)?,
            Format::Binary => RaftRequest {
                transfer_leader: Some(transfer_to(&req)),
                ..Default::default()
            },
        };
        let reply = self.call(RpcKind::TransferLeader, message, &option).await?;
        match reply.transfer_leader {
            Some(typed) => transfer_reply_from(typed).map_err(|e| RpcError::Network(NetworkError::new(&e))),
            None => decode(&reply.payload),
        }
    }
}

impl std::fmt::Debug for GrpcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcPeer").field("target", &self.target).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unary call that times out on this side is retried at once: tonic
    /// reports its own timer as CANCELLED, which is a `Network` error, and
    /// openraft backs off only from `Unreachable` (or from eleven errors in
    /// a row). An append stream's overdue answer is the same `Network`
    /// error (`append_stream`), so that the two paths treat a slow follower
    /// alike.
    #[test]
    fn a_unary_timeout_is_retried_and_an_unavailable_peer_is_backed_off_from() {
        let timed_out = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(timed_out.code(), tonic::Code::Cancelled);
        assert!(matches!(rpc_error(timed_out), RpcError::Network(_)));
        let unavailable = tonic::Status::unavailable("connection refused");
        assert!(matches!(rpc_error(unavailable), RpcError::Unreachable(_)));
    }

    /// A follower whose port refuses connections (killed, its machine up)
    /// fails a stream's opening before openraft hands out a request, so
    /// before openraft's backoff could sleep: the opening waits itself.
    #[tokio::test]
    async fn a_stream_to_a_refused_port_waits_before_it_fails() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let applied = AppliedVersion::new(STREAMED_APPEND);
        let channels = PeerChannels::new(1, "test".into(), None);
        let mut network = GrpcNetwork::new(channels.clone(), applied);
        let mut peer = network.new_client(2, &Member::new(addr, "")).await;
        let input = futures::stream::pending::<AppendEntriesRequest>();
        let started = std::time::Instant::now();
        let opened = peer
            .stream_append(input, RPCOption::new(Duration::from_micros(37_500)))
            .await;
        let Err(failed) = opened else {
            panic!("a stream to a closed port opened");
        };
        assert!(matches!(failed, RpcError::Unreachable(_)), "{failed}");
        let waited = started.elapsed();
        assert!(
            waited >= UNREACHABLE_RETRY,
            "failed after {waited:?}, before {UNREACHABLE_RETRY:?}"
        );
        assert!(waited < Duration::from_secs(20), "failed only after {waited:?}");
        let counted = channels.failures_of(2, ReplicationCall::StreamOpen);
        assert_eq!(counted, 1, "the opening that failed is counted");
    }
}
