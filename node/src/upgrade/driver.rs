//! The leader's upgrade loop: while an upgrade of the node binary runs, it
//! gathers what the leader sees of the nodes, asks the pure [`decide`] for
//! the next move, and carries it out (a Raft write, a call to the node, or
//! both). A new leader takes over from the phase recorded in Raft and
//! watches a gate anew from its own start.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::heart_binaries_client::HeartBinariesClient;
use baton_proto::{BinaryRequest, HeartStatusRequest, RevertBinaryRequest, SwapBinaryRequest};
use tokio::task::JoinHandle;

use super::decide::{HeartRevert, Move, NodeSeen, View, decide};
use crate::api::NodeContext;
use crate::heart::MAX_TRIAL;
use crate::rollout::health::NodeReport;
use crate::state::upgrades::{NodeBinary, Phase, Upgrade, UpgradeAction, UpgradeState};
use crate::types::{Command, CommandResponse, NodeId, now_ms};

/// How often the leader looks.
const INTERVAL: Duration = Duration::from_millis(200);

/// How often a node is asked again to swap, and its heart asked for news.
const ASK_EVERY: Duration = Duration::from_secs(2);

/// How long a call to a node may take (a swap may fetch the binary first).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What this leader has watched of the current phase.
struct Watched {
    /// (node, phase, when it began).
    key: (NodeId, &'static str, u64),
    since_ms: u64,
    /// The node's report when this leader began watching.
    baseline: Option<NodeReport>,
}

/// Starts the loop; abort the handle to stop it.
pub fn spawn_upgrades(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watched: Option<Watched> = None;
        let mut asked: HashMap<NodeId, Instant> = HashMap::new();
        let mut heart_revert: Option<HeartRevert> = None;
        let mut cleaned: BTreeSet<u64> = BTreeSet::new();
        loop {
            interval.tick().await;
            if crate::types::leader(&context.raft).0 != Some(context.id) {
                watched = None;
                continue;
            }
            let Some(upgrade) = context.state_machine.read(|s| s.upgrade.clone()) else {
                continue;
            };
            if upgrade.state == UpgradeState::Aborted {
                if cleaned.insert(upgrade.started_at_ms) {
                    clean_up_after_abort(&context, &upgrade).await;
                }
                continue;
            }
            if upgrade.state != UpgradeState::Running {
                continue;
            }
            let current = upgrade.current();
            if let Some(node) = current
                && matches!(upgrade.phases[&node], Phase::Swapping { .. })
                && due(&mut asked, node + 1_000_000)
            {
                heart_revert = ask_heart_status(&context, node).await;
            }
            let view = view_of(&context, &upgrade, &mut watched, heart_revert.clone());
            let next = decide(&upgrade, &view);
            if next != Move::Wait {
                tracing::debug!("upgrade: {next:?}");
            }
            carry_out(&context, &upgrade, next, &mut asked).await;
        }
    })
}

/// Whether `key` is due to be asked again (and marks it asked).
fn due(asked: &mut HashMap<NodeId, Instant>, key: NodeId) -> bool {
    match asked.get(&key) {
        Some(at) if at.elapsed() < ASK_EVERY => false,
        _ => {
            asked.insert(key, Instant::now());
            true
        }
    }
}

/// What the leader sees now.
fn view_of(
    context: &NodeContext,
    upgrade: &Upgrade,
    watched: &mut Option<Watched>,
    heart_revert: Option<HeartRevert>,
) -> View {
    let metrics = crate::types::metrics(&context.raft);
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members: Vec<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    let supervision = context.supervision.view();
    let mut reports = context.observed.reports();
    reports.insert(
        context.id,
        NodeReport {
            incarnation: context.incarnation.clone(),
            counts: context.tick_health.snapshot(),
            binary: context.binary.clone(),
            heart_addr: context.heart_addr.clone().unwrap_or_default(),
            ..Default::default()
        },
    );
    let tasks = context.state_machine.read(|s| {
        let mut on: HashMap<NodeId, usize> = HashMap::new();
        for task in s.tasks.values() {
            for node in task.owner.iter().chain(task.handoff_to.iter()) {
                *on.entry(*node).or_default() += 1;
            }
        }
        on
    });
    let now = now_ms();
    // The gate's clock and tick baseline start when this leader first sees
    // the current phase.
    let current = upgrade.current();
    let key = current.map(|n| (n, upgrade.phases[&n].name(), upgrade.phase_started_ms));
    match (key, watched.as_ref()) {
        (Some(key), Some(w)) if w.key == key => {}
        (Some(key), _) => {
            *watched = Some(Watched {
                key,
                since_ms: now,
                baseline: reports.get(&key.0).cloned(),
            });
        }
        (None, _) => *watched = None,
    }
    let nodes = members
        .iter()
        .map(|id| {
            let report = reports.get(id);
            let is_self = *id == context.id;
            let (ticks_ok, ticks_failed) = match (report, watched.as_ref()) {
                (Some(report), Some(w)) if w.key.0 == *id => report.totals_since(w.baseline.as_ref()),
                _ => (0, 0),
            };
            let seen = NodeSeen {
                up: is_self || supervision.eligible.contains(id) || supervision.draining.contains(id),
                caught_up: is_self || report.is_some_and(|r| !r.catching_up),
                matched: match is_self {
                    true => metrics.last_log_index.unwrap_or(0),
                    false => metrics
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(id))
                        .and_then(|l| l.as_ref())
                        .map_or(0, |l| l.index),
                },
                binary: report.map(|r| r.binary.clone()).unwrap_or_default(),
                has_heart: report.is_some_and(|r| !r.heart_addr.is_empty()),
                tasks: tasks.get(id).copied().unwrap_or(0),
                ticks_ok,
                ticks_failed,
            };
            (*id, seen)
        })
        .collect();
    View {
        now_ms: now,
        leader: context.id,
        commit_index: crate::types::committed_index(&metrics),
        voters,
        nodes,
        heart_revert,
        watched_since_ms: watched.as_ref().map_or(now, |w| w.since_ms),
    }
}

/// What node `node`'s heart last reverted (any member may ask a heart).
async fn ask_heart_status(context: &NodeContext, node: NodeId) -> Option<HeartRevert> {
    let addr = context.observed.reports().get(&node).map(|r| r.heart_addr.clone())?;
    if addr.is_empty() {
        return None;
    }
    let channel = context.channels.heart_channel(node, &addr).ok()?;
    let request = context
        .channels
        .request(HeartStatusRequest {}, Some(Duration::from_secs(2)));
    let status = HeartBinariesClient::new(channel)
        .status(request)
        .await
        .ok()?
        .into_inner();
    if status.last_revert_hash.is_empty() {
        return None;
    }
    Some(HeartRevert {
        hash: status.last_revert_hash,
        at_ms: status.last_revert_at_ms,
        reason: status.last_revert,
    })
}

async fn carry_out(context: &Arc<NodeContext>, upgrade: &Upgrade, next: Move, asked: &mut HashMap<NodeId, Instant>) {
    let hash = upgrade.binary.hash.clone();
    let phase = |node, phase| Command::UpgradePhase {
        hash: hash.clone(),
        node,
        phase,
        now_ms: now_ms(),
    };
    let drained = |node, drained| Command::SetDrained { node, drained };
    match next {
        Move::Wait => {}
        Move::Begin(node) => {
            propose(context, batch(vec![drained(node, true), phase(node, Phase::Draining)])).await;
        }
        Move::Swap { node, gate_index } => {
            if propose(context, phase(node, Phase::Swapping { gate_index })).await {
                asked.insert(node, Instant::now());
                ask_swap(context, node, &upgrade.binary, trial_deadline(upgrade));
            }
        }
        Move::AskSwap(node) => {
            if due(asked, node) {
                ask_swap(context, node, &upgrade.binary, trial_deadline(upgrade));
            }
        }
        Move::Gate(node) => {
            propose(context, batch(vec![phase(node, Phase::Gating), drained(node, false)])).await;
        }
        Move::MakePermanent(node) => match call_node(context, node, NodeCall::MakePermanent(hash.clone())).await {
            Ok(()) => {
                propose(context, phase(node, Phase::Done)).await;
            }
            Err(e) => tracing::warn!("upgrade: node {node} did not make the binary permanent: {e}"),
        },
        Move::Revert {
            node,
            reason,
            ask_heart,
        } => {
            if ask_heart && let Err(e) = call_node(context, node, NodeCall::Revert(hash.clone(), reason.clone())).await
            {
                tracing::warn!("upgrade: node {node} not asked to revert ({e}); its heart reverts at its deadline");
            }
            tracing::warn!("upgrade: node {node} reverted: {reason}");
            propose(
                context,
                batch(vec![phase(node, Phase::Reverted { reason }), drained(node, false)]),
            )
            .await;
        }
        Move::Halt(reason) => {
            tracing::warn!("upgrade: halted: {reason}");
            let command = Command::UpgradeControl {
                hash,
                action: UpgradeAction::Halt { reason },
                now_ms: now_ms(),
            };
            propose(context, command).await;
        }
    }
}

/// How long a node's heart keeps the binary on trial: long enough for the
/// swap and the gate, within the heart's own limit.
fn trial_deadline(upgrade: &Upgrade) -> Duration {
    let settings = &upgrade.settings;
    Duration::from_millis(2 * settings.healthy_deadline_ms + settings.min_healthy_ms + 30_000).min(MAX_TRIAL)
}

fn batch(commands: Vec<Command>) -> Command {
    Command::Batch(Arc::from(commands))
}

async fn propose(context: &NodeContext, command: Command) -> bool {
    let what = command.to_string();
    match context.proposer.propose(command).await {
        Ok(committed) => match committed.response {
            CommandResponse::Rejected(why) => {
                tracing::warn!("upgrade: {what} refused: {why}");
                false
            }
            CommandResponse::Batch(responses)
                if responses.iter().any(|r| matches!(r, CommandResponse::Rejected(_))) =>
            {
                tracing::warn!("upgrade: {what} partly refused: {responses:?}");
                false
            }
            _ => {
                tracing::info!("upgrade: {what}");
                true
            }
        },
        Err(e) => {
            tracing::warn!("upgrade: {what} not committed: {e}");
            false
        }
    }
}

/// Asks `node` to swap to `binary`, in the background (the node may fetch
/// the binary first; the leader itself is stopped by its heart).
fn ask_swap(context: &Arc<NodeContext>, node: NodeId, binary: &NodeBinary, deadline: Duration) {
    let (context, binary) = (context.clone(), binary.clone());
    tokio::spawn(async move {
        let result = match node == context.id {
            true => super::swap(&context, &binary, deadline)
                .await
                .map_err(|s| s.message().to_string()),
            false => call_node(&context, node, NodeCall::Swap(binary, deadline)).await,
        };
        match result {
            Ok(()) => tracing::info!("upgrade: node {node} is swapping to the new binary"),
            Err(e) => tracing::warn!("upgrade: node {node} did not swap: {e}"),
        }
    });
}

/// A call the leader makes on a node during an upgrade.
enum NodeCall {
    Swap(NodeBinary, Duration),
    MakePermanent(String),
    Revert(String, String),
}

async fn call_node(context: &NodeContext, node: NodeId, call: NodeCall) -> Result<(), String> {
    if node == context.id {
        let heart = context.heart.as_ref().ok_or("this node runs without a heart")?;
        return match call {
            NodeCall::Swap(binary, deadline) => super::swap(context, &binary, deadline).await,
            NodeCall::MakePermanent(hash) => heart.make_permanent(&hash).await,
            NodeCall::Revert(hash, reason) => heart.revert(&hash, &reason).await.map(|_| ()),
        }
        .map_err(|s| s.message().to_string());
    }
    let addr = crate::types::with_metrics(&context.raft, |m| {
        m.membership_config.membership().get_node(&node).map(|n| n.addr.clone())
    })
    .ok_or_else(|| format!("node {node} is not a member"))?;
    let channel = context.channels.channel(node, &addr).map_err(|e| e.to_string())?;
    let mut client = crate::raft::peer_client(channel);
    let result = match call {
        NodeCall::Swap(binary, deadline) => {
            let request = SwapBinaryRequest {
                binary: Some((&binary).into()),
                deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            };
            client
                .swap_binary(context.channels.request(request, Some(CALL_TIMEOUT)))
                .await
        }
        NodeCall::MakePermanent(hash) => {
            client
                .make_binary_permanent(context.channels.request(BinaryRequest { hash }, Some(CALL_TIMEOUT)))
                .await
        }
        NodeCall::Revert(hash, reason) => {
            let request = RevertBinaryRequest { hash, reason };
            client
                .revert_binary(context.channels.request(request, Some(CALL_TIMEOUT)))
                .await
        }
    };
    result.map(|_| ()).map_err(|s| s.message().to_string())
}

/// An aborted upgrade leaves no node drained or on trial: the node it was
/// working on has its heart asked to revert, and is undrained.
async fn clean_up_after_abort(context: &NodeContext, upgrade: &Upgrade) {
    let Some(node) = upgrade.current() else { return };
    let reason = "the upgrade was aborted".to_string();
    if let Err(e) = call_node(context, node, NodeCall::Revert(upgrade.binary.hash.clone(), reason)).await {
        tracing::warn!(
            "upgrade: node {node} not asked to revert after the abort ({e}); its heart reverts at its deadline"
        );
    }
    if context.state_machine.read(|s| s.drained.contains(&node)) {
        propose(context, Command::SetDrained { node, drained: false }).await;
    }
}
