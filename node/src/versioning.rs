//! The leader's cluster-version loop: it gathers the range of cluster
//! versions each member's release supports (from its heartbeats), asks the
//! pure [`next_step`] whether every member supports the next version, and
//! if so raises it with one Raft write. See [`crate::state::cluster_version`]
//! for what the version means.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::api::NodeContext;
use crate::state::cluster_version::{Step, VersionRange, next_step};
use crate::supervision::Health;
use crate::types::{Command, CommandResponse, NodeId, leader, metrics};

/// How often the leader looks.
const INTERVAL: Duration = Duration::from_millis(500);

/// Starts the loop; abort the handle to stop it.
pub fn spawn_cluster_version(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_held: Option<Vec<NodeId>> = None;
        loop {
            interval.tick().await;
            if leader(&context.raft).0 != Some(context.id) {
                last_held = None;
                continue;
            }
            let (current, upgrading) = context.state_machine.read(|s| {
                let upgrading = s.upgrade.as_ref().is_some_and(|u| u.holds_cluster_version());
                (s.cluster_version, upgrading)
            });
            // During a rolling upgrade of the node binary the version stays:
            // until the upgrade is done (and finalized, if it holds the
            // version), any node may still go back to the binary before,
            // which must be able to read everything.
            if upgrading {
                continue;
            }
            match next_step(current, &member_ranges(&context)) {
                Step::Raise(version) => raise(&context, version).await,
                Step::Held(held) => {
                    let ids: Vec<NodeId> = held.iter().map(|(id, _)| *id).collect();
                    if last_held.as_ref() != Some(&ids) {
                        tracing::info!(
                            "the cluster version stays at {current}: {}",
                            held.iter()
                                .map(|(id, range)| holding(*id, *range))
                                .collect::<Vec<_>>()
                                .join("; ")
                        );
                    }
                    last_held = Some(ids);
                }
                Step::Highest => last_held = None,
            }
        }
    })
}

/// Why member `id` holds the version back.
fn holding(id: NodeId, range: Option<VersionRange>) -> String {
    match range {
        Some(range) => format!("node {id} supports {range} (upgrade it)"),
        None => format!("node {id} has not reported its release to this leader (is it up?)"),
    }
}

/// The range each member's release supports, as this leader knows it:
/// `None` for a member whose lease is not up (down, or not yet heard from)
/// or that is leaving, since it may come back running any release.
pub fn member_ranges(context: &NodeContext) -> BTreeMap<NodeId, Option<VersionRange>> {
    let members: Vec<NodeId> = metrics(&context.raft)
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect();
    let reports = context.observed.reports();
    let now = Instant::now();
    members
        .into_iter()
        .map(|id| {
            let range = match id == context.id {
                true => Some(context.versions),
                false => context.supervision.leases(|leases| {
                    let report = reports.get(&id)?;
                    // A node on its way out (stopping, maybe to go back to
                    // an older binary) counts as not heard from.
                    let live = leases.health(id, now) == Health::Up
                        && !leases.leaving(id)
                        && leases.incarnation(id) == Some(report.incarnation.as_str());
                    live.then_some(report.versions)
                }),
            };
            (id, range)
        })
        .collect()
}

async fn raise(context: &NodeContext, version: u32) {
    match context.proposer.propose(Command::SetClusterVersion { version }).await {
        Ok(committed) => match committed.response {
            CommandResponse::Rejected(why) => tracing::warn!("raising the cluster version to {version}: {why}"),
            _ => tracing::info!(
                log_index = committed.log_index,
                "raised the cluster version to {version}: every member supports it"
            ),
        },
        Err(e) => tracing::warn!("raising the cluster version to {version}: not committed: {e}"),
    }
}
