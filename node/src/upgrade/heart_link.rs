//! A node's link to its own heart's binaries: staging a binary (uploaded by
//! an operator, or fetched from a peer), trying it, making it permanent or
//! reverting it, and serving the heart's copy to peers. The heart answers
//! these calls only from its own node (or the admin), whose certificate
//! this link presents.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::heart_binaries_client::HeartBinariesClient;
use baton_proto::{
    FetchNodeBinaryRequest, MakePermanentRequest, RevertTrialRequest, SignedBinary, StageBinaryChunk, TryBinaryRequest,
};
use ed25519_dalek::VerifyingKey;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::api::NodeContext;
use crate::modules::store::is_hash;
use crate::raft::PeerChannels;
use crate::state::upgrades::NodeBinary;
use crate::types::NodeId;

/// Bytes per chunk when a binary is streamed.
pub const CHUNK_BYTES: usize = 1 << 20;

/// See the module docs.
pub struct HeartLink {
    node: NodeId,
    addr: String,
    state_dir: PathBuf,
    trusted: Vec<VerifyingKey>,
    channels: Arc<PeerChannels>,
    /// Held through a swap: one fetch and trial at a time.
    swapping: tokio::sync::Mutex<()>,
}

impl HeartLink {
    pub fn new(
        node: NodeId,
        addr: String,
        state_dir: PathBuf,
        trusted: Vec<VerifyingKey>,
        channels: Arc<PeerChannels>,
    ) -> Self {
        HeartLink {
            node,
            addr,
            state_dir,
            trusted,
            channels,
            swapping: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys the heart trusts to sign node binaries (the same config).
    pub fn trusted(&self) -> &[VerifyingKey] {
        &self.trusted
    }

    fn client(&self) -> Result<HeartBinariesClient<Channel>, Status> {
        let channel = self
            .channels
            .heart_channel(self.node, &self.addr)
            .map_err(|e| Status::unavailable(format!("cannot reach this node's heart at {}: {e}", self.addr)))?;
        Ok(HeartBinariesClient::new(channel))
    }

    /// The heart's copy of binary `hash`, if it holds one.
    pub fn binary_file(&self, hash: &str) -> Option<PathBuf> {
        let path = self.state_dir.join("binaries").join(hash);
        (is_hash(hash) && path.is_file() && self.state_dir.join("binaries").join(format!("{hash}.sig")).is_file())
            .then_some(path)
    }

    /// Stages a binary whose bytes arrive on `data` (closed early, the
    /// heart refuses the short binary and keeps nothing). True if the heart
    /// stored it, false if it held it already.
    pub async fn stage(&self, header: SignedBinary, data: mpsc::Receiver<Vec<u8>>) -> Result<bool, Status> {
        let first = StageBinaryChunk {
            header: Some(header),
            data: Vec::new(),
        };
        let rest = futures::stream::unfold(data, |mut data| async move {
            data.recv().await.map(|bytes| {
                let chunk = StageBinaryChunk {
                    header: None,
                    data: bytes,
                };
                (chunk, data)
            })
        });
        let chunks = futures::StreamExt::chain(futures::stream::iter([first]), rest);
        let reply = self.client()?.stage_binary(chunks).await?;
        Ok(reply.into_inner().stored)
    }

    pub async fn try_binary(&self, hash: &str, deadline: Duration) -> Result<(), Status> {
        let request = TryBinaryRequest {
            hash: hash.to_string(),
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        };
        self.client()?.try_binary(request).await.map(|_| ())
    }

    pub async fn make_permanent(&self, hash: &str) -> Result<(), Status> {
        let request = MakePermanentRequest { hash: hash.to_string() };
        self.client()?.make_permanent(request).await.map(|_| ())
    }

    /// Reverts the trial of `hash`; false if it was not on trial.
    pub async fn revert(&self, hash: &str, reason: &str) -> Result<bool, Status> {
        let request = RevertTrialRequest {
            hash: hash.to_string(),
            reason: reason.to_string(),
        };
        Ok(self.client()?.revert_trial(request).await?.into_inner().reverted)
    }
}

/// The header under which `binary` is staged.
pub fn signed(binary: &NodeBinary) -> SignedBinary {
    SignedBinary {
        hash: binary.hash.clone(),
        version: binary.version.clone(),
        signer: binary.signer.clone(),
        signature: binary.signature.clone(),
        size: binary.size,
    }
}

/// Tries `binary` through this node's heart, fetching it from a peer first
/// if the heart lacks it. The heart then stops this process and starts the
/// binary on trial.
pub async fn swap(context: &NodeContext, binary: &NodeBinary, deadline: Duration) -> Result<(), Status> {
    let heart = context
        .heart
        .as_ref()
        .ok_or_else(|| Status::failed_precondition(format!("node {} runs without a heart", context.id)))?;
    let _one = heart.swapping.lock().await;
    match heart.try_binary(&binary.hash, deadline).await {
        Err(status) if status.code() == Code::NotFound => {
            fetch_into_heart(context, heart, binary, None).await?;
            heart.try_binary(&binary.hash, deadline).await
        }
        other => other,
    }
}

/// Streams `binary` from the leader, else another member, into this node's
/// heart, at most `rate` bytes a second if given.
async fn fetch_into_heart(
    context: &NodeContext,
    heart: &HeartLink,
    binary: &NodeBinary,
    rate: Option<u64>,
) -> Result<(), Status> {
    let peers = crate::types::peers_leader_first(&context.raft, context.id);
    let mut last = Status::not_found(format!("no peer holds node binary {}", binary.hash));
    for (id, addr) in peers {
        match fetch_from(context, heart, binary, id, &addr, rate).await {
            Ok(()) => {
                tracing::info!(
                    peer = id,
                    "fetched node binary {} into this node's heart",
                    binary.version
                );
                return Ok(());
            }
            Err(status) => {
                tracing::debug!(
                    peer = id,
                    "node binary not fetched from node {id}: {}",
                    status.message()
                );
                last = status;
            }
        }
    }
    Err(last)
}

async fn fetch_from(
    context: &NodeContext,
    heart: &HeartLink,
    binary: &NodeBinary,
    id: NodeId,
    addr: &str,
    rate: Option<u64>,
) -> Result<(), Status> {
    let channel = context
        .channels
        .channel(id, addr)
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let request = context.channels.request(
        FetchNodeBinaryRequest {
            hash: binary.hash.clone(),
        },
        Some(Duration::from_secs(300)),
    );
    let mut chunks = crate::raft::peer_client(channel)
        .fetch_node_binary(request)
        .await?
        .into_inner();
    let (tx, rx) = mpsc::channel(4);
    let pump = async move {
        let (started, mut sent) = (tokio::time::Instant::now(), 0u64);
        while let Some(chunk) = chunks.message().await? {
            sent += chunk.data.len() as u64;
            if tx.send(chunk.data).await.is_err() {
                break;
            }
            // At most `rate` bytes a second: a fetch ahead of time must not
            // take the cores from the tasks.
            if let Some(rate) = rate {
                tokio::time::sleep_until(started + Duration::from_secs_f64(sent as f64 / rate as f64)).await;
            }
        }
        Ok::<(), Status>(())
    };
    let (pumped, staged) = tokio::join!(pump, heart.stage(signed(binary), rx));
    pumped?;
    staged.map(|_| ())
}

/// How often a node looks for a binary its heart should hold.
const PREFETCH_EVERY: Duration = Duration::from_secs(1);

/// How fast a node fetches a binary ahead of its turn: a 200 MB binary in
/// about 6 s, so that the transfer, the hashing and the writes leave the
/// cores to the tasks.
const PREFETCH_BYTES_PER_SEC: u64 = 32 * 1024 * 1024;

/// Copies the binary of a live upgrade into this node's heart as soon as the
/// upgrade is recorded, so that the node's swap, when its turn comes, does
/// not wait for the transfer. Abort the handle to stop it.
pub fn spawn_prefetch(context: Arc<NodeContext>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(heart) = context.heart.as_ref() else { return };
        let mut interval = tokio::time::interval(PREFETCH_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failed: Option<String> = None;
        loop {
            interval.tick().await;
            let wanted = context
                .state_machine
                .read(|s| s.upgrade.clone().filter(|u| u.state.is_live()).map(|u| u.binary));
            let Some(binary) = wanted.filter(|b| heart.binary_file(&b.hash).is_none()) else {
                continue;
            };
            let _one = heart.swapping.lock().await;
            if heart.binary_file(&binary.hash).is_some() {
                continue;
            }
            match fetch_into_heart(&context, heart, &binary, Some(PREFETCH_BYTES_PER_SEC)).await {
                Ok(()) => failed = None,
                Err(status) if failed.as_deref() != Some(status.message()) => {
                    tracing::warn!(
                        "node binary {} not fetched ahead yet: {}",
                        binary.version,
                        status.message()
                    );
                    failed = Some(status.message().to_string());
                }
                Err(_) => {}
            }
        }
    })
}
