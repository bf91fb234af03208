//! The waits and measures the faults share: who leads and owns what,
//! when moved tasks tick elsewhere, rollouts and their end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use baton_node::api::member_probe::LOST_DATA;
use baton_proto::{AddNodeRequest, DrainNodeRequest, PutRequest, RemoveNodeRequest, ReplaceNodeRequest, TaskInfo};
use batonctl::cmd::rollout::RolloutView;
use rand::Rng;

use super::{CONVERGE, Chaos, FULL_DISK_WATCH, MOVE, ROLLOUT_SETTINGS, log_time_ms, now_ms, until};
use crate::task_api::{release_signed, tasks};
use crate::{example_module, padded};

impl Chaos {
    /// A follower that owns witnessed tasks (any follower if none does).
    pub(super) async fn witnessed_owner(&mut self, followers: &[u64]) -> u64 {
        let owners: BTreeSet<u64> = tasks(&self.client)
            .await
            .into_iter()
            .filter(|t| self.witnessed.contains(&t.name))
            .map(|t| t.owner)
            .collect();
        match followers.iter().find(|f| owners.contains(f)) {
            Some(owner) => *owner,
            None => self.pick(followers),
        }
    }

    /// Waits until the witness holds a call from node `id`; says what it
    /// found, for the report.
    pub(super) async fn await_call_in_flight(&self, id: u64) -> String {
        let found = until(Duration::from_secs(10), Duration::from_millis(5), async || {
            match self.witness.in_flight(id) {
                0 => Err(()),
                n => Ok(n),
            }
        })
        .await;
        match found {
            Ok(n) => format!("node {id}, paused with {n} witnessed call(s) in flight"),
            Err(()) => format!("node {id}, paused with no witnessed call in flight (none came within 10 s)"),
        }
    }

    /// How many of `names` are witnessed tasks.
    pub(super) fn witnessed_among(&self, names: &[String]) -> usize {
        names.iter().filter(|n| self.witnessed.contains(*n)).count()
    }

    /// `nodes remove` of node `id`, asked of the other nodes.
    pub(super) async fn remove(&self, id: u64) -> Result<(), String> {
        let client = self.cluster.client_excluding(&[id]);
        client
            .call(|mut c| async move { c.remove_node(RemoveNodeRequest { id }).await })
            .await
            .map(|_| ())
            .map_err(|e| format!("`nodes remove {id}` failed: {e}"))
    }

    /// `nodes add` of node `id` (removed, still running, with its data) as a
    /// voter again, retried until it is a member that is up.
    pub(super) async fn add_back(&self, id: u64) -> Result<(), String> {
        let client = self.cluster.client_excluding(&[id]);
        let request = AddNodeRequest {
            id,
            addr: self.cluster.nodes[&id].addr(),
            worker: false,
        };
        until(CONVERGE, Duration::from_millis(500), async || {
            let added = client
                .call_with(&request, |mut c, r| async move { c.add_node(r).await })
                .await;
            let status = batonctl::cmd::status::fetch(&client).await.map_err(|e| e.to_string())?;
            let member = status.members.iter().find(|m| m.id == id);
            match (added, member) {
                (_, Some(m)) if m.role == "voter" && m.state == "up" => Ok(()),
                (Err(e), _) => Err(format!("`nodes add {id}` failed: {e}")),
                (Ok(_), m) => Err(format!("node {id} added back but not an up voter: {m:?}")),
            }
        })
        .await
    }

    /// Node `id`, started again on an empty data_dir: waits until it has said
    /// that it has no data for the cluster and the leader shows it
    /// lost-data, then `nodes replace` of it, retried until it is an up voter
    /// that has caught up with the commit index.
    pub(super) async fn replace_lost(&self, id: u64) -> Result<(), String> {
        let client = self.cluster.client_excluding(&[id]);
        until(CONVERGE, Duration::from_millis(500), async || {
            if !self.cluster.log(id).contains("has no data for cluster") {
                return Err(format!("node {id} has not said that it has no data for the cluster"));
            }
            let status = batonctl::cmd::status::fetch(&client).await.map_err(|e| e.to_string())?;
            match status.members.iter().find(|m| m.id == id) {
                Some(m) if m.state == LOST_DATA => Ok(()),
                m => Err(format!(
                    "node {id} on an empty data_dir is not shown as {LOST_DATA}: {m:?}"
                )),
            }
        })
        .await?;
        until(CONVERGE, Duration::from_millis(500), async || {
            let replaced = client
                .call(|mut c| async move { c.replace_node(ReplaceNodeRequest { id }).await })
                .await;
            let status = batonctl::cmd::status::fetch(&client).await.map_err(|e| e.to_string())?;
            let member = status.members.iter().find(|m| m.id == id);
            match (replaced, member) {
                // Within a few entries of the commit index (writes go on).
                (_, Some(m))
                    if m.role == "voter"
                        && m.state == "up"
                        && m.matched_index.is_some_and(|i| i + 100 >= status.commit_index) =>
                {
                    Ok(())
                }
                (Err(e), _) => Err(format!("`nodes replace {id}` failed: {e}")),
                (Ok(_), m) => Err(format!("node {id} replaced but not an up voter that caught up: {m:?}")),
            }
        })
        .await
    }

    /// `nodes drain` (or `undrain`) of node `id`, asked of the other nodes.
    pub(super) async fn drain(&self, id: u64, drain: bool) -> Result<(), String> {
        let client = self.cluster.client_excluding(&[id]);
        client
            .call(|mut c| async move { c.drain_node(DrainNodeRequest { id, drain }).await })
            .await
            .map(|_| ())
            .map_err(|e| format!("draining node {id} ({drain}) failed: {e}"))
    }

    /// How many hand-offs the nodes' logs say were forced since `since` (ms
    /// since the epoch).
    pub(super) fn forced_hand_offs(&self, since: u64) -> usize {
        self.cluster
            .nodes
            .keys()
            .map(|id| {
                self.cluster
                    .log(*id)
                    .lines()
                    .filter(|line| line.contains("hand-off not completed by its owner"))
                    .filter(|line| log_time_ms(line).is_some_and(|at| at >= since))
                    .count()
            })
            .sum()
    }

    /// The leader and the other members.
    pub(super) async fn roles(&self) -> (u64, Vec<u64>) {
        crate::poll_async(CONVERGE, "a leader", || async {
            let status = batonctl::cmd::status::fetch(&self.client).await.ok()?;
            let leader = status.leader?;
            let followers = status.members.iter().map(|m| m.id).filter(|id| *id != leader).collect();
            Some((leader, followers))
        })
        .await
    }

    pub(super) fn pick(&mut self, ids: &[u64]) -> u64 {
        ids[self.rng.random_range(0..ids.len())]
    }

    pub(super) async fn hold(&self, started: u64, ms: u64) {
        let left = (started + ms).saturating_sub(now_ms());
        tokio::time::sleep(Duration::from_millis(left)).await;
    }

    /// Writes `key` = `key` until the cluster acknowledges it.
    pub(super) async fn put(&self, key: &str) {
        let request = PutRequest {
            key: key.to_string(),
            value: key.as_bytes().to_vec(),
        };
        crate::poll_async(CONVERGE, &format!("the write of {key}"), || async {
            self.client
                .call_with(&request, |mut c, r| async move { c.put(r).await })
                .await
                .ok()
        })
        .await;
    }

    /// The tasks node `id` owns once each has committed a tick on it (up to
    /// [`CONVERGE`]): a node just added back may still be catching up, and
    /// placement moves a catching-up node's tasks at once rather than by
    /// hand-off.
    pub(super) async fn owned_and_ticking_on(&self, id: u64) -> Vec<String> {
        let client = self.cluster.client_excluding(&[id]);
        let found = until(CONVERGE, Duration::from_millis(250), async || {
            let owned = self.owned_by(&[id]).await;
            for name in &owned {
                let ticks = crate::task_api::history(&client, name).await;
                if ticks.last().is_none_or(|tick| tick.node != id) {
                    return Err(owned);
                }
            }
            Ok(owned)
        })
        .await;
        found.unwrap_or_else(|owned| owned)
    }

    /// The tasks nodes `ids` own now.
    pub(super) async fn owned_by(&self, ids: &[u64]) -> Vec<String> {
        let client = self.cluster.client_excluding(ids);
        tasks(&client)
            .await
            .into_iter()
            .filter(|t| ids.contains(&t.owner))
            .map(|t| t.name)
            .collect()
    }

    /// Waits until every task in `names` has ticked outside `lost`; returns
    /// the worst time from `since` to its first tick elsewhere (from the
    /// committed history).
    pub(super) async fn await_moved(&self, names: &[String], lost: &[u64], since: u64) -> Result<u64, String> {
        let client = self.cluster.client_excluding(lost);
        let mut moved: BTreeMap<&str, u64> = BTreeMap::new();
        until(MOVE, Duration::from_millis(50), async || {
            for name in names {
                if moved.contains_key(name.as_str()) {
                    continue;
                }
                let ticks = crate::task_api::history(&client, name).await;
                let first = ticks
                    .iter()
                    .find(|t| !lost.contains(&t.node) && t.committed_at_ms > since)
                    .ok_or_else(|| format!("task {name} did not tick outside nodes {lost:?} within {MOVE:?}"))?;
                moved.insert(name, first.committed_at_ms - since);
            }
            Ok(moved.values().copied().max().unwrap_or(0))
        })
        .await
    }

    /// Watches node `id` on a full disk for `FULL_DISK_WATCH`: None if it
    /// runs on and its tasks tick; when its node process stopped on its own,
    /// with the reason in its log and a non-zero exit (which its heart, the
    /// container's first process, logs before starting it again with
    /// backoff), the time it logged the reason.
    pub(super) async fn await_fail_stop(&self, id: u64) -> Result<Option<u64>, String> {
        let watching = now_ms();
        // The last such lines: the log holds the container's earlier runs too.
        let stopped = async || {
            let log = self.cluster.log(id);
            let at = log
                .lines()
                .filter(|line| line.contains("raft stopped"))
                .filter_map(log_time_ms)
                .rfind(|at| *at >= watching);
            let exit = log
                .lines()
                .filter(|line| line.contains("baton-node (incarnation") && line.contains(") exited: "))
                .filter(|line| log_time_ms(line).is_some_and(|t| t >= watching))
                .find_map(|line| line.split(") exited: ").nth(1).map(str::to_string));
            match (at, exit) {
                (Some(at), Some(exit)) => Ok((at, exit)),
                _ => Err(()),
            }
        };
        let Ok((stopped_at, exit)) = until(FULL_DISK_WATCH, Duration::from_millis(100), stopped).await else {
            let stalled = tasks(&self.client)
                .await
                .into_iter()
                .find(|t| t.owner == id && t.last_tick_at_ms.is_none_or(|at| at <= watching));
            return match stalled {
                Some(t) => Err(format!(
                    "node {id} runs on a full disk without ticking its tasks ({} stalled)",
                    t.name
                )),
                None => Ok(None),
            };
        };
        match exit.as_str() {
            "exit status 0" => Err(format!("node {id} exited 0 with a full disk")),
            _ => Ok(Some(stopped_at)),
        }
    }

    /// Deploys the next version of the counter (version 2's code, with new
    /// padding each time) and returns its version; the rollout is under way.
    pub(super) async fn release(&mut self) -> u32 {
        self.releases += 1;
        let component = example_module("counter_v2");
        let component = padded(&component, component.len() + 64, self.options.seed ^ self.releases);
        release_signed(
            &self.client,
            &self.cluster.signing_key(),
            "counter",
            component,
            ROLLOUT_SETTINGS,
        )
        .await
    }

    /// Waits for module `module`'s rollout of `version` to end (done,
    /// reverted or halted).
    pub(super) async fn await_rollout_end(&self, module: &str, version: u32) -> Result<RolloutView, String> {
        until(CONVERGE, Duration::from_millis(200), async || {
            batonctl::cmd::rollout::status(&self.client, module)
                .await
                .ok()
                .and_then(|views| views.into_iter().next())
                .filter(|v| v.to_version == version && !v.is_live())
                .ok_or_else(|| format!("the rollout of {module} version {version} did not end within {CONVERGE:?}"))
        })
        .await
    }

    /// Waits for the rollout of `version` to end, done or reverted, with
    /// every task on the version it ended with.
    pub(super) async fn await_rollout(&self, version: u32) -> Result<(), String> {
        let view = self.await_rollout_end("counter", version).await?;
        let final_version = match view.state.as_str() {
            "done" => version,
            "reverted" => view.from_version,
            other => {
                return Err(format!(
                    "the rollout of version {version} ended {other}: {}",
                    view.reason
                ));
            }
        };
        self.await_on_version(final_version).await
    }

    /// Waits until every counter (the rolled-out module's tasks) has ticked
    /// on `version`.
    pub(super) async fn await_on_version(&self, version: u32) -> Result<(), String> {
        until(CONVERGE, Duration::from_millis(200), async || {
            let all = tasks(&self.client).await;
            let off: Vec<&TaskInfo> = all
                .iter()
                .filter(|t| self.names.contains(&t.name) && t.state_version != version)
                .collect();
            match off.first() {
                None => Ok(()),
                Some(first) => Err(format!(
                    "{} tasks never ticked on version {version} (first: {} on {})",
                    off.len(),
                    first.name,
                    first.state_version
                )),
            }
        })
        .await
    }
}
