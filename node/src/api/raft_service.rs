//! The receiving end of the Raft transport.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use baton_proto::raft_server::Raft as RaftApi;
use baton_proto::{RaftReply, RaftRequest, SnapshotChunk, SnapshotRequest};
use futures::stream::{BoxStream, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status, Streaming};

use super::errors::fatal;
use crate::codec::{format, raft as codec};
use crate::raft::snapshot_stream::{AssemblyError, SnapshotAssembly};
use crate::raft::{Refusals, StorageIdentity};
use crate::types::Raft;
use crate::types::typ::{
    AppendEntriesRequest, AppendEntriesResponse, Snapshot, SnapshotMeta, Vote, VoteRequest, VoteResponse,
};

/// Hands incoming Raft RPCs to the local Raft, if they are addressed to
/// this node's storage (see [`crate::raft::identity`]).
pub struct RaftService {
    raft: Raft,
    storage: StorageIdentity,
    refusals: Arc<Refusals>,
}

impl RaftService {
    pub fn new(raft: Raft, storage: StorageIdentity, refusals: Arc<Refusals>) -> Self {
        RaftService {
            raft,
            storage,
            refusals,
        }
    }

    /// The call's message, if it is addressed to this node's storage.
    fn admit<T>(&self, request: Request<T>) -> Result<T, Status> {
        self.storage.admit_call(request.metadata(), &self.refusals)?;
        Ok(request.into_inner())
    }
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

/// A snapshot's vote and metadata, in either format.
fn snapshot_header(vote: &[u8], meta: &[u8]) -> Result<(Vote, SnapshotMeta), Status> {
    fn malformed(what: &'static str) -> impl Fn(std::io::Error) -> Status {
        move |e| Status::invalid_argument(format!("malformed {what}: {e}"))
    }
    Ok((
        format::decode_vote(vote).map_err(malformed("snapshot vote"))?,
        format::decode_snapshot_meta(meta).map_err(malformed("snapshot meta"))?,
    ))
}

/// A (pre-)vote request in either form, and whether it came typed (then
/// it is answered typed).
fn vote_request(what: &str, request: RaftRequest) -> Result<(VoteRequest, bool), Status> {
    match request.vote {
        Some(typed) => codec::vote_request_from(typed)
            .map(|rpc| (rpc, true))
            .map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}"))),
        None => Ok((decode(what, &request.payload)?, false)),
    }
}

fn vote_reply(response: &VoteResponse, typed: bool) -> Result<Response<RaftReply>, Status> {
    match typed {
        true => Ok(Response::new(RaftReply {
            vote: Some(codec::vote_reply_to(response)),
            ..Default::default()
        })),
        false => reply(response),
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftReply>, Status> {
    let payload = serde_json::to_vec(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftReply {
        payload,
        ..Default::default()
    }))
}

/// The requests of an append stream, decoded, ending at the first that
/// does not decode: why it did not is left in `refused`, to end the
/// answers with once those before it are answered.
fn typed_appends(
    incoming: tonic::Streaming<RaftRequest>,
    refused: Arc<Mutex<Option<Status>>>,
) -> impl Stream<Item = AppendEntriesRequest> + Send + 'static {
    futures::stream::unfold(Some(incoming), move |incoming| {
        let refused = refused.clone();
        async move {
            let mut incoming = incoming?;
            let refusal = match incoming.message().await {
                Ok(Some(RaftRequest {
                    append_entries: Some(typed),
                    ..
                })) => match codec::append_entries_from(typed) {
                    Ok(rpc) => return Some((rpc, Some(incoming))),
                    // Entries of a kind this release does not know refuse
                    // the request by their kind's number; nothing of it is
                    // appended.
                    Err(e) => Status::invalid_argument(format!("malformed append-entries request: {e}")),
                },
                Ok(Some(_)) => Status::invalid_argument(
                    "a streamed append-entries request carries `append_entries`, typed; JSON goes by AppendEntries",
                ),
                // The leader ended the stream.
                Ok(None) => return None,
                // It broke, or a message was over the limit: said to the
                // leader if it still listens.
                Err(status) => status,
            };
            *refused.lock().expect("append stream lock poisoned") = Some(refusal);
            None
        }
    })
}

/// openraft's answer to one streamed append, as the unary call's reply:
/// what the follower holds as PartialSuccess, which the leader pairs with
/// the request it answers.
fn stream_reply(result: crate::types::typ::StreamAppendResult) -> RaftReply {
    let response = match result {
        Ok(matching) => AppendEntriesResponse::PartialSuccess(matching),
        Err(refused) => AppendEntriesResponse::from(Err(refused)),
    };
    RaftReply {
        append_entries: Some(codec::append_reply_to(&response)),
        ..Default::default()
    }
}

impl RaftService {
    /// Hands a whole received snapshot to Raft.
    async fn install(&self, vote: Vote, meta: SnapshotMeta, data: Vec<u8>) -> Result<Response<RaftReply>, Status> {
        let snapshot = Snapshot {
            meta,
            snapshot: Cursor::new(data),
        };
        let response = self.raft.install_full_snapshot(vote, snapshot).await.map_err(fatal)?;
        reply(&response)
    }
}

#[tonic::async_trait]
impl RaftApi for RaftService {
    type StreamAppendEntriesStream = BoxStream<'static, Result<RaftReply, Status>>;

    /// A leader's appends, pipelined: each is handed to Raft as it comes,
    /// and answered, in order, once its entries are flushed (openraft's
    /// `Raft::stream_append`, at most 64 waiting). A request that does not
    /// decode ends the stream: the ones before it are answered, then the
    /// call fails with INVALID_ARGUMENT.
    async fn stream_append_entries(
        &self,
        request: Request<tonic::Streaming<RaftRequest>>,
    ) -> Result<Response<Self::StreamAppendEntriesStream>, Status> {
        let incoming = self.admit(request)?;
        let refused = Arc::new(Mutex::new(None));
        let answers = self
            .raft
            .stream_append(typed_appends(incoming, refused.clone()))
            .map(|answer| match answer {
                Ok(result) => Ok(stream_reply(result)),
                Err(fatal) => Err(Status::unavailable(fatal.to_string())),
            });
        let refusal = futures::stream::once(async move { refused.lock().expect("append stream lock poisoned").take() })
            .filter_map(|refusal| std::future::ready(refusal.map(Err)));
        Ok(Response::new(answers.chain(refusal).boxed()))
    }

    async fn append_entries(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let RaftRequest {
            payload,
            append_entries,
            ..
        } = self.admit(request)?;
        if let Some(typed) = append_entries {
            // Entries of a kind this release does not know refuse the whole
            // request by their kind's number; nothing is appended.
            let rpc = codec::append_entries_from(typed)
                .map_err(|e| Status::invalid_argument(format!("malformed append-entries request: {e}")))?;
            let response = self
                .raft
                .append_entries(rpc)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            return Ok(Response::new(RaftReply {
                append_entries: Some(codec::append_reply_to(&response)),
                ..Default::default()
            }));
        }
        let rpc = decode("append-entries request", &payload).map_err(|malformed| {
            // Entries of a kind this release does not know, from a newer
            // leader: refused by name, nothing appended.
            let entries = serde_json::from_slice::<serde_json::Value>(&payload).ok();
            let entries = entries.as_ref().and_then(|rpc| rpc.get("entries")?.as_array());
            match entries.and_then(crate::codec::json::unknown_command) {
                Some(unknown) => Status::invalid_argument(unknown.to_string()),
                None => malformed,
            }
        })?;
        let response = self
            .raft
            .append_entries(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (rpc, typed) = vote_request("vote request", self.admit(request)?)?;
        let response = self
            .raft
            .vote(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        vote_reply(&response, typed)
    }

    async fn pre_vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (rpc, typed) = vote_request("pre-vote request", self.admit(request)?)?;
        let response = self
            .raft
            .pre_vote(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        vote_reply(&response, typed)
    }

    async fn install_snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<RaftReply>, Status> {
        let SnapshotRequest { vote, meta, data } = self.admit(request)?;
        let (vote, meta) = snapshot_header(&vote, &meta)?;
        self.install(vote, meta, data).await
    }

    async fn stream_snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftReply>, Status> {
        let invalid = |e: AssemblyError| Status::invalid_argument(e.to_string());
        let mut stream = self.admit(request)?;
        let mut assembly = SnapshotAssembly::start(stream.message().await?).map_err(invalid)?;
        // A stream whose header does not decode is refused before its data.
        let (vote, meta) = assembly.header();
        let (vote, meta) = snapshot_header(vote, meta)?;
        while let Some(chunk) = stream.message().await? {
            assembly.push(chunk).map_err(invalid)?;
        }
        let received = assembly.finish().map_err(invalid)?;
        self.install(vote, meta, received.data).await
    }

    async fn transfer_leader(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let request = self.admit(request)?;
        let (rpc, typed) = match request.transfer_leader {
            Some(typed) => (
                codec::transfer_from(typed)
                    .map_err(|e| Status::invalid_argument(format!("malformed transfer-leader request: {e}")))?,
                true,
            ),
            None => (decode("transfer-leader request", &request.payload)?, false),
        };
        let response = self.raft.handle_transfer_leader(rpc).await.map_err(fatal)?;
        match typed {
            true => Ok(Response::new(RaftReply {
                transfer_leader: Some(codec::transfer_reply_to(&response)),
                ..Default::default()
            })),
            false => reply(&response),
        }
    }
}
