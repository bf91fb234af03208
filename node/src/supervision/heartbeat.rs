//! Every node's side of supervision: a heartbeat stream to the leader whose
//! acknowledged pings renew this node's lease. The leader itself renews its
//! own lease from the Raft heartbeats a quorum acknowledged.
//!
//! The stream is closed only when another node becomes leader. When it
//! breaks, the leader's process may be gone: if its heart vouches for its
//! exit (or another incarnation answers; see `liveness`), this node asks
//! for an election at once instead of waiting out the election timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::{HeartbeatPing, VersionTicks};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::raft::TransferLeaderRequest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::liveness::{process_gone, warm_heart};
use crate::api::NodeContext;
use crate::types::{NodeId, leader, leadership_confirmed_at, renewal_index, with_metrics};

/// Pause before reconnecting after a stream ends.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// After the leader's process is gone, how long each remaining voter waits
/// for the one before it (in id order) to win an election.
const STAGGER: Duration = Duration::from_millis(40);

/// How long to wait for the leader's heart to vouch for its exit: a dead
/// process is reaped within milliseconds; past this, the election timeout
/// is as quick.
const HEART_WAIT: Duration = Duration::from_millis(500);

/// What a node knew of the leader's process when its stream broke.
struct LastLeader {
    incarnation: String,
    heart_addr: String,
}

/// Starts the loop; abort the handle to stop it.
pub fn spawn_heartbeat(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match leader(&context.raft) {
                (Some(id), _) if id == context.id => renew_as_leader(&context).await,
                (Some(id), Some(addr)) => {
                    if let Some(last) = stream_to_leader(&context, id, &addr).await
                        && leader(&context.raft).0 == Some(id)
                        && process_gone(&context, id, &addr, &last.heart_addr, &last.incarnation, HEART_WAIT).await
                    {
                        context.supervision.note_gone(id, &last.incarnation);
                        elect_at_once(&context, id).await;
                    }
                }
                _ => {}
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    })
}

/// While this node leads: its lease runs from the send time of the last
/// Raft heartbeat a quorum acknowledged (a sole voter renews itself).
async fn renew_as_leader(context: &NodeContext) {
    // Every change of the metrics until the first renewal (a new leader
    // renews itself as soon as an entry of its term commits); after that,
    // every `renew` as a follower does, or at once when the leader or the
    // membership changes: the metrics change with every write, and waking
    // on each costs the leader CPU for nothing.
    let mut metrics = context.raft.metrics();
    let mut server = context.raft.server_metrics();
    // The index this leader must have applied before it ticks: the commit
    // index at its first renewal in its term, and no later one (see below).
    let mut required: Option<(u64, u64)> = None;
    loop {
        let (leads, term, confirmed, index, member) = with_metrics(&context.raft, |m| {
            (
                m.current_leader == Some(context.id),
                m.current_term,
                leadership_confirmed_at(m, context.id),
                renewal_index(m),
                m.membership_config.membership().voter_ids().any(|v| v == context.id),
            )
        });
        if !leads {
            return;
        }
        // A new leader's log may hold a predecessor's moves of its own
        // tasks: it renews itself only once an entry of its term is
        // committed, and ticks only once it has applied that far.
        //
        // That index does not move with later renewals of the term.
        // Everything others decided about this node's tasks is at or below
        // it; after it, only this leader decides, and it never moves a task
        // of its own from under itself: it counts itself up (`node_view`),
        // so it only hands its tasks off (its worker, seeing the hand-off
        // applied, yields), and it forces a stuck hand-off only a patience
        // after its own applied state showed it (`overdue_handoffs`). A
        // moving index would buy no safety and cost ticks: the apply always
        // trails the commit index, so a busy leader would be catching up
        // after every renewal, and once its apply trailed by a renewal
        // period, it would tick nothing at all.
        //
        // A leader being removed (`nodes remove` of itself) renews itself no
        // more, as it renews no other node being removed: its ticks stop
        // before the membership change can move its tasks. Nor, once the
        // change is in its log, does a leader that is no longer a voter: it
        // leads on for a moment, while the next leader may already move its
        // tasks.
        let revoked = context.supervision.is_revoked(context.id) || !member;
        // (Tied to the term: a step-down and a new election between two
        // looks must not keep the last term's index.)
        if required.is_some_and(|(t, _)| t != term) {
            required = None;
        }
        if let (Some(at), Some(index), false) = (confirmed, index, revoked) {
            let (_, index) = *required.get_or_insert((term, index));
            context.supervision.lease.renewed(at, index);
        }
        let renew = context.supervision.renew;
        let changed = match required.is_some() {
            false => tokio::time::timeout(renew, metrics.changed()).await,
            true => tokio::time::timeout(renew, server.changed()).await,
        };
        if let Ok(Err(_)) = changed {
            // Raft has stopped: nothing renews this node any more.
            return;
        }
    }
}

/// Whether this node has yet to apply what the leader's log held when it
/// last acknowledged a renewal (or has had no acknowledgement yet).
fn catching_up(context: &NodeContext) -> bool {
    let required = context.supervision.lease.required_index();
    required == 0 || context.state_machine.last_applied_index() < required
}

/// Streams pings to leader `id` until the stream breaks or another node
/// leads. Returns the leader's incarnation and heart when the stream broke
/// while `id` still led (so the caller may check whether its process is
/// gone).
async fn stream_to_leader(context: &Arc<NodeContext>, id: NodeId, addr: &str) -> Option<LastLeader> {
    let channel = context.channels.channel(id, addr).ok()?;
    let (pings, outbound) = mpsc::channel::<HeartbeatPing>(8);
    let outbound = futures::stream::unfold(outbound, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
    let mut client = crate::raft::peer_client(channel);
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut seq = 0;
    let mut send = |sent: &mut VecDeque<(u64, Instant)>| {
        seq += 1;
        sent.push_back((seq, Instant::now()));
        if sent.len() > 64 {
            sent.pop_front();
        }
        HeartbeatPing {
            seq,
            incarnation: context.incarnation.clone(),
            leaving: context.supervision.is_leaving(),
            ticks: context
                .tick_health
                .snapshot()
                .into_iter()
                .map(|((module, version), counts)| VersionTicks {
                    module,
                    version,
                    ok: counts.ok,
                    failed: counts.failed,
                })
                .collect(),
            ready: context.engine.loaded_hashes().into_iter().collect(),
            catching_up: catching_up(context),
            heart_addr: context.heart_addr.clone().unwrap_or_default(),
            min_cluster_version: context.versions.min,
            max_cluster_version: context.versions.max,
            binary: context.binary.clone(),
        }
    };
    pings.send(send(&mut sent)).await.ok()?;
    let lease = Duration::from_millis(context.supervision.lease_ms);
    let request = context.channels.request(outbound, None);
    let mut inbound = match tokio::time::timeout(lease, client.heartbeat(request)).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            tracing::debug!("heartbeat stream to node {id} refused: {}", status.message());
            return None;
        }
        Err(_) => return None,
    };
    let mut last = LastLeader {
        incarnation: String::new(),
        heart_addr: String::new(),
    };
    let mut ticker = tokio::time::interval(context.supervision.renew);
    ticker.tick().await;
    let mut metrics = context.raft.metrics();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if pings.send(send(&mut sent)).await.is_err() {
                    return Some(last);
                }
            }
            message = inbound.message() => match message {
                Ok(Some(ack)) => {
                    if let Some((_, at)) = sent.iter().find(|(s, _)| *s == ack.seq) {
                        context.supervision.lease.renewed(*at, ack.commit_index);
                    }
                    if (&ack.incarnation, &ack.heart_addr) != (&last.incarnation, &last.heart_addr) {
                        warm_heart(context, id, &ack.heart_addr, &ack.incarnation);
                    }
                    last.incarnation = ack.incarnation;
                    last.heart_addr = ack.heart_addr;
                    context.record_contact(id);
                }
                _ => return Some(last),
            },
            changed = metrics.changed() => {
                if changed.is_err() || leader(&context.raft).0 != Some(id) {
                    return None;
                }
            }
        }
    }
}

/// The leader's process is provably gone: skip the election timeout. The
/// remaining voters stand in id order, each as if the dead leader had handed
/// leadership to it (voters grant such a vote even within the old leader's
/// Raft lease): the lowest at once, the next one `STAGGER` later if no
/// leader has emerged by then (the first may have had a shorter log), and
/// so on. Every node drops the old leader's lease so it votes at once.
async fn elect_at_once(context: &NodeContext, dead: NodeId) {
    let order = with_metrics(&context.raft, |m| {
        let mut voters: Vec<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != dead)
            .collect();
        voters.sort_unstable();
        voters
    });
    let Some(&first) = order.first() else { return };
    let Some(rank) = order.iter().position(|v| *v == context.id) else {
        // A worker does not vote; it only stops waiting for the dead leader.
        transfer_to(context, dead, first).await;
        return;
    };
    tracing::info!("leader {dead}'s process is gone; electing node {first} at once");
    if rank > 0 {
        transfer_to(context, dead, first).await;
        tokio::time::sleep(STAGGER * rank as u32).await;
    }
    let leaderless = with_metrics(&context.raft, |m| m.current_leader.is_none_or(|l| l == dead));
    if leaderless {
        transfer_to(context, dead, context.id).await;
    }
}

/// Hands this node's view of leadership from `dead` to `to` (an election
/// when `to` is this node; otherwise it only drops the dead leader's lease).
async fn transfer_to(context: &NodeContext, dead: NodeId, to: NodeId) {
    let vote = with_metrics(&context.raft, |m| {
        (m.current_leader.is_none_or(|l| l == dead)).then_some(m.vote)
    });
    if let Some(vote) = vote {
        let _ = context
            .raft
            .handle_transfer_leader(TransferLeaderRequest::new(vote, to, None))
            .await;
    }
}
