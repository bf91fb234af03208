//! The calls about node binaries and their rolling upgrade: an operator's
//! upload (which starts the upgrade), its status and control, and the peer
//! calls through which the leader moves a node (swap, make permanent,
//! revert) and nodes fetch a binary from each other's hearts.

use std::pin::Pin;
use std::time::Duration;

use baton_proto::{
    BinaryRequest, ControlUpgradeRequest, FetchNodeBinaryReply, FetchNodeBinaryRequest, SwapBinaryReply,
    SwapBinaryRequest, UpgradeNodeStatus, UpgradeStatusReply, UploadNodeBinaryChunk,
};
use futures::Stream;
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status, Streaming};

use super::NodeContext;
use super::errors::{propose_error, rejected};
use super::peer_service::caller;
use crate::heart::{MAX_BINARY_BYTES, MAX_TRIAL};
use crate::state::cluster_version::{BelowVersion, HELD_UPGRADES, NODE_UPGRADES, release_advice};
use crate::state::command::{Command, CommandResponse};
use crate::state::upgrades::{NodeBinary, Phase, UpgradeAction, UpgradeSettings, UpgradeState};
use crate::upgrade::heart_link::CHUNK_BYTES;

/// A binary's bytes, streamed to a peer.
pub type BinaryStream = Pin<Box<dyn Stream<Item = Result<FetchNodeBinaryReply, Status>> + Send + 'static>>;

/// Serves the bytes of binary `hash` from this node's heart's store.
pub async fn fetch_node_binary(
    context: &NodeContext,
    request: Request<FetchNodeBinaryRequest>,
) -> Result<Response<BinaryStream>, Status> {
    let hash = request.into_inner().hash;
    let path = context
        .heart
        .as_ref()
        .and_then(|heart| heart.binary_file(&hash))
        .ok_or_else(|| Status::not_found(format!("node {}'s heart does not hold node binary {hash}", context.id)))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Status::internal(format!("cannot open {}: {e}", path.display())))?;
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0u8; CHUNK_BYTES];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(FetchNodeBinaryReply { data: buffer }), Some(file)))
            }
            Err(e) => Some((Err(Status::internal(format!("cannot read the binary: {e}"))), None)),
        }
    });
    Ok(Response::new(Box::pin(chunks)))
}

/// The phase a leader's call on this node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// `swapping`, in the round recorded at `gate_index` (0: any round).
    Swapping {
        gate_index: u64,
    },
    Gating,
}

impl Want {
    fn name(self) -> &'static str {
        match self {
            Want::Swapping { .. } => "swapping",
            Want::Gating => "gating",
        }
    }

    fn is(self, phase: &Phase) -> bool {
        match (self, phase) {
            (Want::Swapping { gate_index: 0 }, Phase::Swapping { .. }) => true,
            (Want::Swapping { gate_index }, Phase::Swapping { gate_index: at }) => gate_index == *at,
            (Want::Gating, Phase::Gating) => true,
            _ => false,
        }
    }

    /// Whether `phase` is the step just before: the leader has committed
    /// the wanted phase and this node has not applied it yet.
    fn follows(self, phase: &Phase) -> bool {
        matches!(
            (self, phase),
            (Want::Swapping { .. }, Phase::Draining) | (Want::Gating, Phase::Swapping { .. })
        )
    }
}

/// The leader's calls on this node may come from the leader only, and
/// only for the upgrade this node's own copy of the state has in the
/// wanted phase (and round) for it: a late or stale call, after the
/// upgrade moved on, reverted the node or was aborted, changes nothing.
async fn from_leader<T>(context: &NodeContext, request: &Request<T>, hash: &str, want: Want) -> Result<(), Status> {
    let from = caller(request)?;
    let leads = || crate::types::leader(&context.raft).0 == Some(from);
    if !leads() {
        return Err(Status::permission_denied(format!(
            "node {from} does not lead; only the leader moves a node through an upgrade"
        )));
    }
    let mine = || {
        context.state_machine.read(|s| {
            s.upgrade
                .as_ref()
                .filter(|u| u.binary.hash == hash && u.state.is_live())
                .and_then(|u| u.phases.get(&context.id))
                .cloned()
        })
    };
    // The leader asks as soon as it has committed the phase; this node may
    // not have applied it yet (it hears of the commit with the next
    // append), so it waits a little, while it is a step behind, rather
    // than have the leader ask again.
    let deadline = tokio::time::Instant::now() + PHASE_WAIT;
    while mine().is_some_and(|p| want.follows(&p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !leads() {
        return Err(Status::permission_denied(format!(
            "node {from} no longer leads; only the leader moves a node through an upgrade"
        )));
    }
    match mine() {
        Some(phase) if want.is(&phase) => Ok(()),
        Some(phase) => Err(Status::failed_precondition(format!(
            "node {} is {} in the upgrade to {hash}, not {} (in the round asked for)",
            context.id,
            phase.name(),
            want.name()
        ))),
        None => Err(Status::failed_precondition(format!(
            "node {} knows of no live upgrade to {hash} (yet)",
            context.id
        ))),
    }
}

/// How long a node asked by the leader for a phase's step waits to apply
/// the phase itself.
const PHASE_WAIT: Duration = Duration::from_secs(2);

fn heart_of(context: &NodeContext) -> Result<&crate::upgrade::HeartLink, Status> {
    context.heart.as_ref().ok_or_else(|| {
        Status::failed_precondition(format!(
            "node {} runs without a heart; rolling upgrades need baton-heart on every node",
            context.id
        ))
    })
}

pub async fn swap_binary(
    context: &NodeContext,
    request: Request<SwapBinaryRequest>,
) -> Result<Response<SwapBinaryReply>, Status> {
    let hash = request
        .get_ref()
        .binary
        .as_ref()
        .map(|b| b.hash.clone())
        .unwrap_or_default();
    let gate_index = request.get_ref().gate_index;
    from_leader(context, &request, &hash, Want::Swapping { gate_index }).await?;
    let request = request.into_inner();
    let binary: NodeBinary = request
        .binary
        .ok_or_else(|| Status::invalid_argument("the binary is missing"))?
        .into();
    let deadline = Duration::from_millis(request.deadline_ms).min(MAX_TRIAL);
    tracing::info!(
        "the leader asks this node to run node binary {} ({})",
        binary.version,
        binary.hash
    );
    crate::upgrade::swap(context, &binary, deadline).await?;
    Ok(Response::new(SwapBinaryReply {}))
}

pub async fn make_binary_permanent(
    context: &NodeContext,
    request: Request<BinaryRequest>,
) -> Result<Response<SwapBinaryReply>, Status> {
    let hash = request.get_ref().hash.clone();
    from_leader(context, &request, &hash, Want::Gating).await?;
    heart_of(context)?.make_permanent(&hash).await?;
    Ok(Response::new(SwapBinaryReply {}))
}

/// An operator's upload: the binary is checked, staged in this (the
/// leader's) heart, and an upgrade of every member to it recorded.
pub async fn upload_node_binary(
    context: &NodeContext,
    request: Request<Streaming<UploadNodeBinaryChunk>>,
) -> Result<UpgradeStatusReply, Status> {
    let mut chunks = request.into_inner();
    let first = chunks
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("no chunk was sent; the first carries the binary's header"))?;
    let header = first
        .header
        .ok_or_else(|| Status::invalid_argument("the first chunk must carry the binary's header"))?;
    let signed = header
        .binary
        .ok_or_else(|| Status::invalid_argument("the header must name the binary"))?;
    let settings = UpgradeSettings {
        min_healthy_ms: header.min_healthy_ms,
        healthy_deadline_ms: header.healthy_deadline_ms,
        auto_revert: header.auto_revert,
        hold_version: header.hold_version,
    };
    settings.check().map_err(Status::invalid_argument)?;
    let cluster_version = context.state_machine.read(|s| s.cluster_version);
    if cluster_version < NODE_UPGRADES {
        return Err(Status::failed_precondition(format!(
            "the cluster runs at cluster version {cluster_version}; rolling upgrades need version {NODE_UPGRADES}: \
             restart each node on {} by hand first (see `batonctl status`)",
            release_advice(NODE_UPGRADES)
        )));
    }
    if settings.hold_version {
        BelowVersion::check(cluster_version, HELD_UPGRADES, "--hold-version")
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
    }
    if let Some(live) = context
        .state_machine
        .read(|s| s.upgrade.clone().filter(|u| u.state.is_live()))
    {
        return Err(rejected(&crate::state::rejection::Rejection::UpgradeUnderWay {
            version: live.binary.version,
            state: live.state.name().to_string(),
        }));
    }
    let heart = heart_of(context)?;
    let binary = NodeBinary {
        hash: signed.hash.clone(),
        version: signed.version.clone(),
        size: signed.size,
        signer: signed.signer.clone(),
        signature: signed.signature.clone(),
        min_cluster_version: header.min_cluster_version,
        max_cluster_version: header.max_cluster_version,
    };
    crate::heart::SignedBinary::from(signed.clone())
        .check(heart.trusted())
        .map_err(|e| match e {
            crate::heart::StoreError::Signing(_) => Status::permission_denied(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        })?;
    if !binary.range().contains(cluster_version) {
        return Err(rejected(&crate::state::rejection::Rejection::BinaryUnsupported {
            version: binary.version.clone(),
            min: binary.min_cluster_version,
            max: binary.max_cluster_version,
            cluster_version,
        }));
    }

    // The bytes go on to the heart as they arrive.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let pump = async move {
        if !first.data.is_empty() && tx.send(first.data).await.is_err() {
            return Ok(());
        }
        let mut received = 0u64;
        while let Some(chunk) = chunks.message().await? {
            received += chunk.data.len() as u64;
            if received > MAX_BINARY_BYTES {
                return Err(Status::invalid_argument(format!(
                    "a node binary may have at most {MAX_BINARY_BYTES} bytes"
                )));
            }
            if tx.send(chunk.data).await.is_err() {
                break;
            }
        }
        Ok::<(), Status>(())
    };
    let (pumped, staged) = tokio::join!(pump, heart.stage(signed, rx));
    pumped?;
    staged?;

    let nodes: Vec<u64> = crate::types::with_metrics(&context.raft, |m| {
        m.membership_config.membership().nodes().map(|(id, _)| *id).collect()
    });
    let command = Command::StartUpgrade {
        binary,
        settings,
        nodes,
        now_ms: crate::types::now_ms(),
    };
    let committed = context.proposer.propose(command).await.map_err(propose_error)?;
    if let CommandResponse::Rejected(why) = committed.response {
        return Err(rejected(&why));
    }
    Ok(upgrade_status(context))
}

/// The latest upgrade, with what each node reports running.
pub fn upgrade_status(context: &NodeContext) -> UpgradeStatusReply {
    let Some(upgrade) = context.state_machine.read(|s| s.upgrade.clone()) else {
        return UpgradeStatusReply::default();
    };
    let reports = context.observed.reports();
    let reason = match &upgrade.state {
        UpgradeState::Halted { reason } => reason.clone(),
        _ => String::new(),
    };
    UpgradeStatusReply {
        exists: true,
        hash: upgrade.binary.hash.clone(),
        version: upgrade.binary.version.clone(),
        state: upgrade.state.name().to_string(),
        reason,
        nodes: upgrade
            .phases
            .iter()
            .map(|(id, phase)| {
                let binary = match *id == context.id {
                    true => context.binary.clone(),
                    false => reports.get(id).map(|r| r.binary.clone()).unwrap_or_default(),
                };
                UpgradeNodeStatus {
                    id: *id,
                    phase: phase.name().to_string(),
                    reason: match phase {
                        Phase::Reverted { reason } => reason.clone(),
                        _ => String::new(),
                    },
                    version: match binary == upgrade.binary.hash {
                        true => upgrade.binary.version.clone(),
                        false => String::new(),
                    },
                    binary,
                }
            })
            .collect(),
        started_at_ms: upgrade.started_at_ms,
        phase_started_ms: upgrade.phase_started_ms,
        finished_at_ms: upgrade.finished_at_ms,
        min_healthy_ms: upgrade.settings.min_healthy_ms,
        healthy_deadline_ms: upgrade.settings.healthy_deadline_ms,
        auto_revert: upgrade.settings.auto_revert,
        hold_version: upgrade.settings.hold_version,
        awaits_finalize: upgrade.awaits_finalize(),
        finalized_at_ms: upgrade.finalized_at_ms,
    }
}

/// Pause, resume, abort or finalize.
pub async fn control_upgrade(
    context: &NodeContext,
    request: ControlUpgradeRequest,
) -> Result<UpgradeStatusReply, Status> {
    let action = match request.action.as_str() {
        "pause" => UpgradeAction::Pause,
        "resume" => UpgradeAction::Resume,
        "abort" => UpgradeAction::Abort,
        "finalize" => UpgradeAction::Finalize,
        other => {
            return Err(Status::invalid_argument(format!(
                "{other:?} is not an upgrade action: use pause, resume, abort or finalize"
            )));
        }
    };
    // Lifting a hold that exists is always safe, whoever set it: builds of
    // 0.5.0 before the gate set holds at version 6, and a cluster must not
    // stay held there for good.
    let awaits = context
        .state_machine
        .read(|s| s.upgrade.as_ref().is_some_and(|u| u.awaits_finalize()));
    if action == UpgradeAction::Finalize && !awaits {
        let cluster_version = context.state_machine.read(|s| s.cluster_version);
        BelowVersion::check(cluster_version, HELD_UPGRADES, "`upgrade finalize`")
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
    }
    let hash = context
        .state_machine
        .read(|s| s.upgrade.as_ref().map(|u| u.binary.hash.clone()))
        .ok_or_else(|| Status::not_found("this cluster has had no upgrade of the node binary"))?;
    let command = Command::UpgradeControl {
        hash,
        action,
        now_ms: crate::types::now_ms(),
    };
    let committed = context.proposer.propose(command).await.map_err(propose_error)?;
    if let CommandResponse::Rejected(why) = committed.response {
        return Err(rejected(&why));
    }
    Ok(upgrade_status(context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaders_call_is_for_one_round_of_one_phase() {
        let swap = Want::Swapping { gate_index: 40 };
        assert!(swap.is(&Phase::Swapping { gate_index: 40 }));
        assert!(!swap.is(&Phase::Swapping { gate_index: 7 }), "another round");
        assert!(Want::Swapping { gate_index: 0 }.is(&Phase::Swapping { gate_index: 7 }));
        assert!(!swap.is(&Phase::Gating));
        assert!(Want::Gating.is(&Phase::Gating));
        // Only the step just before is waited out.
        assert!(swap.follows(&Phase::Draining));
        assert!(Want::Gating.follows(&Phase::Swapping { gate_index: 40 }));
        for phase in [
            Phase::Waiting,
            Phase::Gating,
            Phase::Done,
            Phase::Reverted { reason: String::new() },
        ] {
            assert!(!swap.follows(&phase), "{phase:?}");
        }
    }
}
