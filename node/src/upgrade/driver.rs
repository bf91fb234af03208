//! The leader's upgrade loop: while an upgrade of the node binary runs, it
//! gathers what the leader sees of the nodes, asks the pure [`decide`] for
//! the next move, and carries it out (a Raft write, a call to a node or its
//! heart, or both). Draining follows the phases in the state machine. A new
//! leader takes over from the phase recorded in Raft and watches a gate
//! anew from its own start.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::heart_binaries_client::HeartBinariesClient;
use baton_proto::{BinaryRequest, HeartStatusReply, HeartStatusRequest, RevertTrialRequest, SwapBinaryRequest};
use tokio::task::JoinHandle;

use super::decide::{HeartRevert, Move, NodeSeen, View, decide, next_in_line};
use crate::api::NodeContext;
use crate::heart::MAX_TRIAL;
use crate::rollout::health::NodeReport;
use crate::state::upgrades::{NodeBinary, Phase, Upgrade, UpgradeAction, UpgradeState};
use crate::types::{Command, CommandResponse, NodeId, now_ms};

/// How often the leader looks.
const INTERVAL: Duration = Duration::from_millis(200);

/// How often the leader looks while a node is being swapped: its return is
/// most of the node's time away, so it is seen within this.
const SWAP_INTERVAL: Duration = Duration::from_millis(25);

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

/// The swaps asked of nodes: one in flight per node, and none again once a
/// node's heart took the trial in the current phase.
#[derive(Default)]
struct Swaps {
    in_flight: HashSet<NodeId>,
    /// (node, when its phase began).
    taken: HashSet<(NodeId, u64)>,
}

/// A revert the current node's heart reported, and when it was heard.
struct Heard {
    node: NodeId,
    revert: HeartRevert,
    at: Instant,
}

/// What was asked of whom, and when: (node, what).
type Asked = HashMap<(NodeId, &'static str), Instant>;

/// Starts the loop; abort the handle to stop it.
pub fn spawn_upgrades(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = INTERVAL;
        let mut watched: Option<Watched> = None;
        let mut asked = Asked::new();
        let mut heard: Option<Heard> = None;
        // Hearts known to hold a binary: (node, hash).
        let mut holding: HashSet<(NodeId, String)> = HashSet::new();
        let swaps = Arc::new(Mutex::new(Swaps::default()));
        loop {
            tokio::time::sleep(pause).await;
            pause = INTERVAL;
            if crate::types::leader(&context.raft).0 != Some(context.id) {
                watched = None;
                heard = None;
                continue;
            }
            let Some(upgrade) = context.state_machine.read(|s| s.upgrade.clone()) else {
                continue;
            };
            revert_leftover_trials(&context, &upgrade, &mut asked).await;
            // A finished or halted upgrade moves no node: no view to build
            // (which reads every task) until an operator resumes it.
            if !matches!(upgrade.state, UpgradeState::Running | UpgradeState::Paused) {
                watched = None;
                continue;
            }
            let current = upgrade.current();
            if current.is_some_and(|n| matches!(upgrade.phases[&n], Phase::Swapping { .. })) {
                pause = SWAP_INTERVAL;
            }
            if let Some(node) = current
                && matches!(upgrade.phases[&node], Phase::Swapping { .. } | Phase::Gating)
                && due(&mut asked, (node, "status"))
                && let Some(revert) = ask_heart(&context, node).await.as_ref().and_then(revert_of)
            {
                heard = Some(Heard {
                    node,
                    revert,
                    at: Instant::now(),
                });
            }
            // What the heart said ages as it is kept.
            let heart_revert = heard.as_ref().filter(|h| Some(h.node) == current).map(|h| HeartRevert {
                age_ms: h.revert.age_ms + h.at.elapsed().as_millis() as u64,
                ..h.revert.clone()
            });
            let mut view = view_of(&context, &upgrade, &mut watched, heart_revert);
            // Whether the next node's heart holds the binary yet (asked
            // every round until it does: its fetch began with the upgrade).
            if current.is_none()
                && upgrade.state == UpgradeState::Running
                && let Some(next) = next_in_line(&upgrade, context.id)
            {
                let key = (next, upgrade.binary.hash.clone());
                let holds = match holding.contains(&key) {
                    true => Some(true),
                    false => ask_heart(&context, next)
                        .await
                        .and_then(|s| s.lists_held.then(|| s.held.contains(&key.1))),
                };
                if holds == Some(true) {
                    holding.insert(key);
                }
                if let Some(seen) = view.nodes.get_mut(&next) {
                    seen.holds_binary = holds;
                }
            }
            let next = decide(&upgrade, &view);
            if next != Move::Wait {
                tracing::debug!("upgrade: {next:?}");
            }
            carry_out(&context, &upgrade, next, &mut asked, &swaps).await;
        }
    })
}

/// A node the upgrade reverted (or an abort stopped) that still reports the
/// new binary runs a trial nobody gates: its heart is asked to revert it,
/// every few seconds until it has.
async fn revert_leftover_trials(context: &NodeContext, upgrade: &Upgrade, asked: &mut Asked) {
    let reports = context.observed.reports();
    for (node, phase) in &upgrade.phases {
        let Phase::Reverted { reason } = phase else { continue };
        let runs_it = match *node == context.id {
            true => context.binary == upgrade.binary.hash,
            false => reports.get(node).is_some_and(|r| r.binary == upgrade.binary.hash),
        };
        if runs_it
            && due(asked, (*node, "revert"))
            && let Err(e) = revert_through_heart(context, *node, &upgrade.binary.hash, reason).await
        {
            tracing::warn!("upgrade: node {node}'s heart not asked to revert: {e}");
        }
    }
}

/// Whether `key` is due to be asked again (and marks it asked).
fn due(asked: &mut Asked, key: (NodeId, &'static str)) -> bool {
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
                holds_binary: None,
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

/// What node `node`'s heart says of itself (any member may ask a heart).
async fn ask_heart(context: &NodeContext, node: NodeId) -> Option<HeartStatusReply> {
    let addr = context.observed.reports().get(&node).map(|r| r.heart_addr.clone())?;
    if addr.is_empty() {
        return None;
    }
    let channel = context.channels.heart_channel(node, &addr).ok()?;
    let request = context
        .channels
        .request(HeartStatusRequest {}, Some(Duration::from_secs(2)));
    HeartBinariesClient::new(channel)
        .status(request)
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// What a heart last reverted, if anything.
fn revert_of(status: &HeartStatusReply) -> Option<HeartRevert> {
    if status.last_revert_hash.is_empty() {
        return None;
    }
    Some(HeartRevert {
        hash: status.last_revert_hash.clone(),
        age_ms: status.now_ms.saturating_sub(status.last_revert_at_ms),
        reason: status.last_revert.clone(),
    })
}

/// Asks node `node`'s heart, directly, to revert the trial of `hash`.
async fn revert_through_heart(context: &NodeContext, node: NodeId, hash: &str, reason: &str) -> Result<bool, String> {
    let request = RevertTrialRequest {
        hash: hash.to_string(),
        reason: reason.to_string(),
    };
    if node == context.id {
        let heart = context.heart.as_ref().ok_or("this node runs without a heart")?;
        return heart.revert(hash, reason).await.map_err(|s| s.message().to_string());
    }
    let addr = context
        .observed
        .reports()
        .get(&node)
        .map(|r| r.heart_addr.clone())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("node {node}'s heart is not known"))?;
    let channel = context.channels.heart_channel(node, &addr).map_err(|e| e.to_string())?;
    let request = context.channels.request(request, Some(Duration::from_secs(5)));
    let reply = HeartBinariesClient::new(channel)
        .revert_trial(request)
        .await
        .map_err(|s| s.message().to_string())?;
    Ok(reply.into_inner().reverted)
}

async fn carry_out(
    context: &Arc<NodeContext>,
    upgrade: &Upgrade,
    next: Move,
    asked: &mut Asked,
    swaps: &Arc<Mutex<Swaps>>,
) {
    let hash = upgrade.binary.hash.clone();
    let phase = |node, phase| Command::UpgradePhase {
        hash: hash.clone(),
        node,
        phase,
        now_ms: now_ms(),
    };
    match next {
        Move::Wait => {}
        Move::Begin(node) => {
            propose(context, phase(node, Phase::Draining)).await;
        }
        Move::Swap { node, gate_index } => {
            if propose(context, phase(node, Phase::Swapping { gate_index })).await {
                // The phase as recorded: its start names this swap.
                let started = context
                    .state_machine
                    .read(|s| s.upgrade.as_ref().map(|u| u.phase_started_ms))
                    .unwrap_or_default();
                asked.insert((node, "swap"), Instant::now());
                let round = (started, gate_index);
                ask_swap(context, node, round, &upgrade.binary, trial_deadline(upgrade), swaps);
            }
        }
        Move::AskSwap(node) => {
            let taken = swaps
                .lock()
                .expect("swaps lock poisoned")
                .taken
                .contains(&(node, upgrade.phase_started_ms));
            let gate_index = match upgrade.phases.get(&node) {
                Some(Phase::Swapping { gate_index }) => *gate_index,
                _ => 0,
            };
            if !taken && due(asked, (node, "swap")) {
                let deadline = trial_deadline(upgrade);
                let round = (upgrade.phase_started_ms, gate_index);
                ask_swap(context, node, round, &upgrade.binary, deadline, swaps);
            }
        }
        Move::Gate(node) => {
            propose(context, phase(node, Phase::Gating)).await;
        }
        Move::MakePermanent(node) => match make_permanent(context, node, &hash).await {
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
            if ask_heart && let Err(e) = revert_through_heart(context, node, &hash, &reason).await {
                tracing::warn!("upgrade: node {node}'s heart not asked to revert ({e}); asked again until it has");
            }
            tracing::warn!("upgrade: node {node} reverted: {reason}");
            propose(context, phase(node, Phase::Reverted { reason })).await;
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

async fn propose(context: &NodeContext, command: Command) -> bool {
    let what = command.to_string();
    match context.proposer.propose(command).await {
        Ok(committed) => match committed.response {
            CommandResponse::Rejected(why) => {
                tracing::warn!("upgrade: {what} refused: {why}");
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
/// the binary first; the leader itself is stopped by its heart): at most
/// one ask in flight per node, and none again once its heart took the
/// trial in the phase that began at `phase_started_ms`.
/// Asks `node` to swap in the round `(phase_started_ms, gate_index)` of
/// its `swapping` phase, unless a call is already in flight.
fn ask_swap(
    context: &Arc<NodeContext>,
    node: NodeId,
    (phase_started_ms, gate_index): (u64, u64),
    binary: &NodeBinary,
    deadline: Duration,
    swaps: &Arc<Mutex<Swaps>>,
) {
    if !swaps.lock().expect("swaps lock poisoned").in_flight.insert(node) {
        return;
    }
    let (context, binary, swaps) = (context.clone(), binary.clone(), swaps.clone());
    tokio::spawn(async move {
        let result = swap_on(&context, node, &binary, gate_index, deadline).await;
        let mut swaps = swaps.lock().expect("swaps lock poisoned");
        swaps.in_flight.remove(&node);
        match result {
            Ok(()) => {
                swaps.taken.insert((node, phase_started_ms));
                tracing::info!("upgrade: node {node}'s heart took the new binary on trial");
            }
            Err(e) => tracing::warn!("upgrade: node {node} did not swap: {e}"),
        }
    });
}

/// The peer client of member `node`.
fn peer(
    context: &NodeContext,
    node: NodeId,
) -> Result<baton_proto::peer_client::PeerClient<tonic::transport::Channel>, String> {
    let addr = crate::types::with_metrics(&context.raft, |m| {
        m.membership_config.membership().get_node(&node).map(|n| n.addr.clone())
    })
    .ok_or_else(|| format!("node {node} is not a member"))?;
    let channel = context.channels.channel(node, &addr).map_err(|e| e.to_string())?;
    Ok(crate::raft::peer_client(channel))
}

/// Asks `node` (this node: its heart) to try `binary`.
async fn swap_on(
    context: &NodeContext,
    node: NodeId,
    binary: &NodeBinary,
    gate_index: u64,
    deadline: Duration,
) -> Result<(), String> {
    if node == context.id {
        return super::swap(context, binary, deadline)
            .await
            .map_err(|s| s.message().to_string());
    }
    let request = SwapBinaryRequest {
        binary: Some(binary.into()),
        deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        gate_index,
    };
    peer(context, node)?
        .swap_binary(context.channels.request(request, Some(CALL_TIMEOUT)))
        .await
        .map(|_| ())
        .map_err(|s| s.message().to_string())
}

/// Asks `node` (this node: its heart) to make binary `hash` permanent.
async fn make_permanent(context: &NodeContext, node: NodeId, hash: &str) -> Result<(), String> {
    if node == context.id {
        let heart = context.heart.as_ref().ok_or("this node runs without a heart")?;
        return heart.make_permanent(hash).await.map_err(|s| s.message().to_string());
    }
    let request = BinaryRequest { hash: hash.to_string() };
    peer(context, node)?
        .make_binary_permanent(context.channels.request(request, Some(CALL_TIMEOUT)))
        .await
        .map(|_| ())
        .map_err(|s| s.message().to_string())
}
