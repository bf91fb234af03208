//! openraft's network over tonic: each Raft RPC is one unary gRPC call on the
//! peer's long-lived channel, carrying openraft's message as JSON, with a
//! timeout that allows for its size (see [`super::message_limits`]); a
//! snapshot is one client stream of chunks (see [`super::snapshot_stream`]).

use std::future::Future;
use std::sync::Arc;

use baton_proto::RaftRequest;
use baton_proto::raft_client::RaftClient;
use openraft::OptionalSend;
use openraft::errors::{NetworkError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::message_limits::{PEER_MAX_MESSAGE_BYTES, rpc_timeout};
use super::peer_channels::PeerChannels;
use super::snapshot_stream::{SNAPSHOT_CHUNK_BYTES, chunks};
use crate::types::typ::*;
use crate::types::{Member, NodeId, TypeConfig};

/// Makes a [`GrpcPeer`] for each peer Raft replicates to.
#[derive(Clone)]
pub struct GrpcNetwork {
    channels: Arc<PeerChannels>,
}

impl GrpcNetwork {
    pub fn new(channels: Arc<PeerChannels>) -> Self {
        GrpcNetwork { channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> GrpcPeer {
        GrpcPeer {
            target,
            channel: self.channels.channel(target, &node.addr),
            channels: self.channels.clone(),
        }
    }
}

/// The Raft RPC client for one peer.
pub struct GrpcPeer {
    target: NodeId,
    channel: Result<Channel, tonic::transport::Error>,
    channels: Arc<PeerChannels>,
}

/// Maps a failed gRPC call to openraft's error: an unreachable peer makes
/// openraft back off, anything else is retried at once.
fn rpc_error(status: tonic::Status) -> RpcError {
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

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    serde_json::from_slice(bytes).map_err(|e| RpcError::Network(NetworkError::new(&e)))
}

impl GrpcPeer {
    fn client(&self) -> Result<RaftClient<Channel>, RpcError> {
        let channel = self
            .channel
            .as_ref()
            .map_err(|e| RpcError::Unreachable(Unreachable::new(e)))?;
        Ok(RaftClient::new(channel.clone())
            .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES))
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: RpcKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcError> {
        let mut client = self.client()?;
        let payload = encode(req)?;
        // openraft's timeout comes from the heartbeat interval (37.5 ms by
        // default): too short for an entry of megabytes, which would time
        // out and be resent for ever.
        let timeout = rpc_timeout(option.soft_ttl(), payload.len());
        let request = self.channels.request(RaftRequest { payload }, Some(timeout));
        let reply = match kind {
            RpcKind::AppendEntries => client.append_entries(request).await,
            RpcKind::Vote => client.vote(request).await,
            RpcKind::PreVote => client.pre_vote(request).await,
            RpcKind::TransferLeader => client.transfer_leader(request).await,
        }
        .map_err(rpc_error)?;
        decode(&reply.into_inner().payload)
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

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let result = self.call(RpcKind::AppendEntries, &rpc, &option).await;
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        self.channels.note_replication(self.target, outcome);
        result
    }

    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RpcError> {
        self.call(RpcKind::Vote, &rpc, &option).await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RpcError> {
        self.call(RpcKind::PreVote, &rpc, &option).await
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
        let mut client = self.client().map_err(to_streaming)?;
        let vote = encode(&vote).map_err(to_streaming)?;
        let meta = encode(&snapshot.meta).map_err(to_streaming)?;
        let data = snapshot.snapshot.into_inner();
        // openraft allows install_snapshot_timeout for the whole transfer:
        // add the time its bytes take at the slowest rate allowed.
        let timeout = rpc_timeout(option.hard_ttl(), data.len());
        let stream = futures::stream::iter(chunks(vote, meta, data, SNAPSHOT_CHUNK_BYTES));
        let request = self.channels.request(stream, Some(timeout));
        let result = tokio::select! {
            reply = client.stream_snapshot(request) => match reply {
                Ok(reply) => decode(&reply.into_inner().payload).map_err(to_streaming),
                Err(status) => Err(to_streaming(rpc_error(status))),
            },
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let outcome = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| format!("sending a snapshot: {e}"));
        self.channels.note_replication(self.target, outcome);
        result
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse, RpcError> {
        self.call(RpcKind::TransferLeader, &req, &option).await
    }
}

impl std::fmt::Debug for GrpcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcPeer").field("target", &self.target).finish()
    }
}
