//! The leader's placement loop: gives every running task an up owner.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::api::{NodeContext, probe_members};
use crate::placement::place;
use crate::types::{Command, NodeId};

/// How often the leader checks placement.
const PLACE_INTERVAL: Duration = Duration::from_millis(250);

/// Starts the loop; it acts only while this node leads.
pub fn spawn_placer(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PLACE_INTERVAL);
        loop {
            interval.tick().await;
            let leads = crate::types::with_metrics(&context.raft, |m| m.current_leader == Some(context.id));
            let needs_owner = context.state_machine.read(|s| !s.tasks.tasks.is_empty());
            if !leads || !needs_owner {
                continue;
            }
            let up: BTreeSet<NodeId> = probe_members(&context)
                .await
                .into_iter()
                .filter(|m| m.state == "up")
                .map(|m| m.id)
                .collect();
            let assignments = context.state_machine.read(|s| place(&s.tasks, &up));
            if assignments.is_empty() {
                continue;
            }
            if let Err(e) = context.proposer.propose(Command::AssignOwners(assignments)).await {
                tracing::debug!("placement not committed: {e}");
            }
        }
    })
}
