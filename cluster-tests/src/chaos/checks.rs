//! The invariants checked after each fault.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use baton_proto::{GetRequest, TickInfo};

use super::{CONVERGE, Chaos, SETTLE, now_ms, until};
use crate::task_api::tasks;
use crate::witness_check::WitnessReport;

impl Chaos {
    /// What the witness saw of the witnessed tasks so far, against what the
    /// cluster committed for them.
    pub(super) fn witness_report(&self) -> WitnessReport {
        let committed: Vec<_> = self
            .recorder
            .histories()
            .filter(|h| self.witnessed.contains(&h.name))
            .cloned()
            .collect();
        crate::witness_check::check(&self.witness.runs(), &committed)
    }

    /// Waits until one leader, every member up, and every task owned by a
    /// member, running and ticking after `since_ms`; or says what is not.
    pub(super) async fn converged(&self, since_ms: u64) -> Result<(), String> {
        let missing = until(CONVERGE, Duration::from_millis(200), async || {
            let status = batonctl::cmd::status::fetch(&self.client)
                .await
                .map_err(|e| format!("no status: {e}"))?;
            let members: BTreeSet<u64> = status.members.iter().map(|m| m.id).collect();
            let down: Vec<String> = status
                .members
                .iter()
                .filter(|m| m.state != "up")
                .map(|m| format!("node {} {}", m.id, m.state))
                .collect();
            let all = tasks(&self.client).await;
            let stuck: Vec<&str> = all
                .iter()
                .filter(|t| {
                    !members.contains(&t.owner)
                        || t.status != "running"
                        || t.last_tick_at_ms.is_none_or(|at| at <= since_ms)
                })
                .map(|t| t.name.as_str())
                .collect();
            match (
                status.leader,
                down.is_empty(),
                stuck.is_empty(),
                all.len() == self.names.len() + self.witnessed.len(),
            ) {
                (None, ..) => Err("no leader".to_string()),
                (_, false, ..) => Err(down.join(", ")),
                (_, _, false, _) => Err(format!("tasks not ticking on a member: {stuck:?}")),
                (_, _, _, false) => Err(format!(
                    "{} tasks, not {}",
                    all.len(),
                    self.names.len() + self.witnessed.len()
                )),
                _ => Ok(()),
            }
        })
        .await;
        missing.map_err(|missing| format!("not converged {CONVERGE:?} after healing: {missing}"))
    }

    /// Waits until no task has changed owner for `SETTLE` and every task
    /// ticked within the last two periods: the rebalancing that follows a
    /// returning node is part of the fault it returned from (and so are its
    /// gaps).
    pub(super) async fn settled(&self) -> Result<(), String> {
        let mut owners: BTreeMap<String, u64> = BTreeMap::new();
        let mut since = tokio::time::Instant::now();
        let period = Duration::from_millis(self.options.period_ms);
        until(CONVERGE, period, async || {
            let all = tasks(&self.client).await;
            let now: BTreeMap<String, u64> = all.iter().map(|t| (t.name.clone(), t.owner)).collect();
            if now != owners {
                (owners, since) = (now, tokio::time::Instant::now());
            }
            let fresh = now_ms().saturating_sub(2 * self.options.period_ms + 250);
            let ticking = all.iter().all(|t| t.last_tick_at_ms.is_some_and(|at| at >= fresh));
            match ticking && since.elapsed() >= SETTLE {
                true => Ok(()),
                false => Err(format!(
                    "tasks kept moving (or stalled) for {CONVERGE:?} after converging"
                )),
            }
        })
        .await
    }

    /// Each epoch of each task was committed by one node only, and each task
    /// is owned by a member now.
    pub(super) async fn owned_once(&self) -> Result<(), String> {
        for history in self.recorder.histories() {
            let mut by_epoch: BTreeMap<u64, u64> = BTreeMap::new();
            for tick in &history.ticks {
                let node = *by_epoch.entry(tick.epoch).or_insert(tick.node);
                if node != tick.node {
                    return Err(format!(
                        "task {}: epoch {} committed by node {node} and by node {} (tick {})",
                        history.name, tick.epoch, tick.node, tick.tick
                    ));
                }
            }
        }
        let status = batonctl::cmd::status::fetch(&self.client)
            .await
            .map_err(|e| format!("no status: {e}"))?;
        let members: BTreeSet<u64> = status.members.iter().map(|m| m.id).collect();
        match tasks(&self.client).await.iter().find(|t| !members.contains(&t.owner)) {
            Some(t) => Err(format!("task {} is owned by {}, not a member", t.name, t.owner)),
            None => Ok(()),
        }
    }

    /// Every write acknowledged before a fault reads back (through the
    /// leader).
    pub(super) async fn writes_kept(&self) -> Result<(), String> {
        for key in &self.writes {
            let request = GetRequest {
                key: key.clone(),
                local: false,
            };
            let reply = self
                .client
                .call_with(&request, |mut c, r| async move { c.get(r).await })
                .await
                .map_err(|e| format!("cannot read {key}: {e}"))?;
            if !reply.found || reply.value != key.as_bytes() {
                return Err(format!("the acknowledged write {key} is gone"));
            }
        }
        Ok(())
    }

    /// The largest gap between consecutive committed ticks of a task, for
    /// ticks committed between `from` and `to`, and where it was.
    pub(super) fn worst_gap(&self, from: u64, to: u64) -> Option<(u64, String)> {
        let gap = |w: &[TickInfo]| w[1].committed_at_ms.saturating_sub(w[0].committed_at_ms);
        let (h, w) = self
            .recorder
            .histories()
            .flat_map(|h| {
                h.ticks
                    .windows(2)
                    .filter(|w| w[1].committed_at_ms >= from && w[1].committed_at_ms <= to)
                    .map(move |w| (h, w))
            })
            .max_by_key(|(_, w)| gap(w))?;
        let (a, b) = (&w[0], &w[1]);
        let at = format!(
            "{}: tick {} on node {} (v{}), tick {} on node {} (v{}), {} ms into the fault",
            h.name,
            a.tick,
            a.node,
            a.version,
            b.tick,
            b.node,
            b.version,
            a.committed_at_ms.saturating_sub(from)
        );
        Some((gap(w), at))
    }
}
