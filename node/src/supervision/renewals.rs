//! The leader's side of the heartbeat streams: record each renewal, and
//! acknowledge it only once a quorum has confirmed this node as leader after
//! the ping arrived. A node's lease therefore never outlives the leadership
//! that granted it: a deposed leader cannot keep a partitioned node ticking.
//!
//! When a stream breaks, the fast path asks whether the node's process is
//! gone (its heart's word, see `liveness`), so its tasks can move without
//! waiting for the lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::{HeartbeatAck, HeartbeatPing};

use crate::rollout::Counts;
use crate::rollout::health::NodeReport;
use openraft::async_runtime::watch::WatchReceiver;
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use super::liveness::{process_gone, warm_heart};
use crate::api::NodeContext;
use crate::state::cluster_version::VersionRange;
use crate::types::{NodeId, leadership_confirmed_at, renewal_index, with_metrics};

/// The tick counts and compiled modules a ping reports.
fn report_of(ping: &HeartbeatPing) -> NodeReport {
    NodeReport {
        incarnation: ping.incarnation.clone(),
        counts: ping
            .ticks
            .iter()
            .map(|t| {
                let counts = Counts {
                    ok: t.ok,
                    failed: t.failed,
                };
                ((t.module.clone(), t.version), counts)
            })
            .collect(),
        ready: ping.ready.iter().cloned().collect(),
        versions: VersionRange::reported(ping.min_cluster_version, ping.max_cluster_version),
        binary: ping.binary.clone(),
        heart_addr: ping.heart_addr.clone(),
        catching_up: ping.catching_up,
    }
}

/// Serves one node's heartbeat stream until it ends, sending acknowledgements
/// on `acks`.
pub async fn serve_renewals(
    context: Arc<NodeContext>,
    node: NodeId,
    mut inbound: Streaming<HeartbeatPing>,
    acks: mpsc::Sender<Result<HeartbeatAck, Status>>,
) {
    let (latest, pending) = watch::channel::<Option<(u64, Instant)>>(None);
    let acker = tokio::spawn(acknowledge(context.clone(), node, pending, acks));
    let mut incarnation = String::new();
    let mut heart_addr = String::new();
    let ended = loop {
        let ping = match inbound.message().await {
            Ok(Some(ping)) => ping,
            Ok(None) => break "closed".to_string(),
            Err(status) => break status.message().to_string(),
        };
        let now = Instant::now();
        let leaving_changed = context.supervision.leases(|l| {
            let was = l.leaving(node);
            l.renew(node, &ping.incarnation, ping.leaving, now);
            l.set_catching_up(node, ping.catching_up);
            was != ping.leaving
        });
        if leaving_changed {
            context.supervision.wake.notify_one();
        }
        context.observed.report(node, report_of(&ping));
        if (&ping.incarnation, &ping.heart_addr) != (&incarnation, &heart_addr) {
            warm_heart(&context, node, &ping.heart_addr, &ping.incarnation);
        }
        incarnation = ping.incarnation;
        heart_addr = ping.heart_addr;
        context.record_contact(node);
        let _ = latest.send(Some((ping.seq, now)));
    };
    acker.abort();
    tracing::debug!("heartbeat stream from node {node} ended ({ended})");
    if incarnation.is_empty() || !leads(&context) {
        return;
    }
    let addr = with_metrics(&context.raft, |m| {
        m.membership_config.membership().get_node(&node).map(|n| n.addr.clone())
    });
    let Some(addr) = addr else { return };
    let wait = Duration::from_millis(context.supervision.lease_ms);
    if process_gone(&context, node, &addr, &heart_addr, &incarnation, wait).await
        && context.supervision.leases(|l| l.mark_gone(node, &incarnation))
    {
        tracing::info!("node {node}'s process ({incarnation}) is gone; moving its tasks now");
        context.supervision.wake.notify_one();
    }
}

/// Acknowledges the latest ping once leadership is confirmed after it arrived.
async fn acknowledge(
    context: Arc<NodeContext>,
    node: NodeId,
    mut pending: watch::Receiver<Option<(u64, Instant)>>,
    acks: mpsc::Sender<Result<HeartbeatAck, Status>>,
) {
    let mut metrics = context.raft.metrics();
    let mut acked = 0;
    loop {
        let latest = *pending.borrow_and_update();
        match latest {
            Some((seq, received)) if seq > acked => {
                // A node whose lease ran out waits for the supervisor to
                // move its tasks off it before it may hold a lease again;
                // one being removed, or no longer a member, gets none.
                let refused =
                    context.supervision.leases(|l| l.lapsed(node) || l.gone(node)) || !renewable(&context, node);
                if let Some((term, commit_index)) = confirmed_since(&context, received).filter(|_| !refused) {
                    let ack = HeartbeatAck {
                        seq,
                        term,
                        incarnation: context.incarnation.clone(),
                        commit_index,
                        heart_addr: context.heart_addr.clone().unwrap_or_default(),
                    };
                    if acks.send(Ok(ack)).await.is_err() {
                        return;
                    }
                    acked = seq;
                    continue;
                }
                tokio::select! {
                    _ = metrics.changed() => {}
                    _ = pending.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            _ => {
                if pending.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The current term and the index the renewed node must apply before it
/// ticks (see `renewal_index`), if this node leads, has committed an entry
/// of its term, and a quorum acknowledged it as leader for a heartbeat sent
/// at or after `at`.
fn confirmed_since(context: &NodeContext, at: Instant) -> Option<(u64, u64)> {
    with_metrics(&context.raft, |m| {
        if m.current_leader != Some(context.id) {
            return None;
        }
        let index = renewal_index(m)?;
        leadership_confirmed_at(m, context.id)
            .is_some_and(|t| t >= at)
            .then_some((m.current_term, index))
    })
}

/// Whether `node` may be renewed: a member, and not being removed.
fn renewable(context: &NodeContext, node: NodeId) -> bool {
    !context.supervision.is_revoked(node)
        && with_metrics(&context.raft, |m| {
            m.membership_config.membership().get_node(&node).is_some()
        })
}

fn leads(context: &NodeContext) -> bool {
    with_metrics(&context.raft, |m| m.current_leader == Some(context.id))
}
