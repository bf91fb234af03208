//! The large-states row: tasks whose every tick keeps a state at the cap
//! (`[limits] max_state_bytes`, its default in the containers), placed on
//! every node, while the leader is killed. Their entries are the largest a
//! task can make; the row checks that the leader's loss neither loses nor
//! stalls them, and that every other invariant holds beside them.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_node::config::DEFAULT_CAP_BYTES;
use baton_proto::{ListTasksRequest, TaskInfo, TaskRequest};

use super::{CONVERGE, Chaos, until};
use crate::downstream;
use crate::task_api::{add, every};

/// How often a large-state task ticks.
const LARGE_PERIOD_MS: u64 = 500;

/// The large-state tasks of one row.
pub(super) struct LargeStates {
    names: Vec<String>,
    /// What the report says of them.
    pub note: String,
}

impl Chaos {
    /// Adds two large-state tasks per node and waits until each has
    /// committed a state at the cap.
    pub(super) async fn add_large_states(&mut self) -> LargeStates {
        let addr = downstream::answering(&format!("{}:0", self.cluster.gateway), DEFAULT_CAP_BYTES)
            .expect("a downstream on the containers' network");
        let names: Vec<String> = (0..2 * self.options.nodes).map(|i| format!("large{i:02}")).collect();
        for name in &names {
            let mut request = every(name, "netprobe", LARGE_PERIOD_MS, &addr);
            request.allow_net = vec![addr.clone()];
            add(&self.client, request).await;
        }
        let owners = until(CONVERGE, Duration::from_millis(200), async || {
            let large = self.large_tasks(&names).await?;
            let ticked =
                large.len() == names.len() && large.iter().all(|t| t.tick >= 1 && t.state.len() == DEFAULT_CAP_BYTES);
            match ticked {
                true => Ok(large.iter().map(|t| t.owner).collect::<BTreeSet<u64>>()),
                false => Err("not every large-state task has committed a state at the cap".to_string()),
            }
        })
        .await;
        let note = match owners {
            Ok(owners) => format!(
                "{} tasks keeping {DEFAULT_CAP_BYTES}-byte states every {LARGE_PERIOD_MS} ms, on nodes {owners:?}",
                names.len()
            ),
            Err(e) => e,
        };
        LargeStates { names, note }
    }

    /// Waits until every large-state task has committed a state at the cap
    /// after `since_ms` (none failed), then removes them; says what was
    /// wrong if they did not.
    pub(super) async fn remove_large_states(&self, large: &LargeStates, since_ms: u64) -> Result<(), String> {
        let kept_on = until(CONVERGE, Duration::from_millis(200), async || {
            let tasks = self.large_tasks(&large.names).await?;
            if let Some(failed) = tasks.iter().find(|t| t.status == "failed") {
                return Ok(Err(format!(
                    "large-state task {} failed: {}",
                    failed.name, failed.failure
                )));
            }
            let behind: Vec<&str> = tasks
                .iter()
                .filter(|t| t.last_tick_at_ms.is_none_or(|at| at <= since_ms) || t.state.len() != DEFAULT_CAP_BYTES)
                .map(|t| t.name.as_str())
                .collect();
            match behind.as_slice() {
                [] => Ok(Ok(())),
                names => Err(format!("large-state tasks without a tick after the fault: {names:?}")),
            }
        })
        .await
        .and_then(|r| r);
        for name in &large.names {
            let request = TaskRequest { name: name.clone() };
            let removed = self
                .client
                .call_with(&request, |mut c, r| async move { c.remove_task(r).await })
                .await;
            if let Err(e) = removed {
                return kept_on.and(Err(format!("removing large-state task {name}: {e}")));
            }
        }
        kept_on
    }

    async fn large_tasks(&self, names: &[String]) -> Result<Vec<TaskInfo>, String> {
        let reply = self
            .client
            .call(|mut c| async move { c.list_tasks(ListTasksRequest {}).await })
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply.tasks.into_iter().filter(|t| names.contains(&t.name)).collect())
    }
}
