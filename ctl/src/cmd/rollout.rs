//! `batonctl rollout status|pause|resume|abort`: a module's hot code swap.

use std::io::Write;
use std::time::Duration;

use baton_proto::{ControlRolloutRequest, RolloutAction, RolloutInfo, RolloutStatusRequest};
use serde::Serialize;

use super::CmdError;
use crate::cli::{OutputFormat, RolloutCommand};
use crate::client::ClusterClient;
use crate::output;

/// How often `--watch` asks.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// A rollout as `rollout status --output json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RolloutView {
    pub module: String,
    pub from_version: u32,
    pub to_version: u32,
    /// running, paused, halted, done, reverted or aborted.
    pub state: String,
    pub reason: String,
    /// Nodes on the new version (none once it ended).
    pub switched: Vec<u64>,
    /// Nodes that may run tasks now.
    pub eligible: Vec<u64>,
    pub steps: u32,
    pub started_at_ms: u64,
    /// When the current step began (its nodes were switched).
    pub step_started_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// The current step's ticks: the new version on switched nodes.
    pub new_ok: u64,
    pub new_failed: u64,
    /// ... and the old version elsewhere.
    pub old_ok: u64,
    pub old_failed: u64,
    pub canary: u32,
    pub max_parallel: u32,
    pub min_healthy_ms: u64,
    pub healthy_deadline_ms: u64,
    pub auto_revert: bool,
}

impl From<RolloutInfo> for RolloutView {
    fn from(r: RolloutInfo) -> Self {
        let settings = r.settings.unwrap_or_default();
        RolloutView {
            module: r.module,
            from_version: r.from_version,
            to_version: r.to_version,
            state: r.state,
            reason: r.reason,
            switched: r.switched,
            eligible: r.eligible,
            steps: r.steps,
            started_at_ms: r.started_at_ms,
            step_started_ms: r.step_started_ms,
            finished_at_ms: (r.finished_at_ms > 0).then_some(r.finished_at_ms),
            new_ok: r.new_ok,
            new_failed: r.new_failed,
            old_ok: r.old_ok,
            old_failed: r.old_failed,
            canary: settings.canary,
            max_parallel: settings.max_parallel,
            min_healthy_ms: settings.min_healthy_ms,
            healthy_deadline_ms: settings.healthy_deadline_ms,
            auto_revert: !settings.no_auto_revert,
        }
    }
}

impl RolloutView {
    /// Whether it may still change by itself or by an operator.
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused" | "halted")
    }

    /// `[####------] 2/3 nodes`: switched among the nodes that may run tasks.
    pub fn progress_bar(&self) -> String {
        const WIDTH: usize = 20;
        let total = self.eligible.len().max(1);
        let done = match self.state.as_str() {
            "done" => total,
            _ => self.switched.iter().filter(|n| self.eligible.contains(n)).count(),
        };
        let filled = WIDTH * done / total;
        format!(
            "[{}{}] {done}/{total} node(s)",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled)
        )
    }

    /// One line: module, versions, state, progress, health.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} v{} -> v{}: {} {} (step {}; new version {} ok / {} failed, old {} ok / {} failed)",
            self.module,
            self.from_version,
            self.to_version,
            self.state,
            self.progress_bar(),
            self.steps,
            self.new_ok,
            self.new_failed,
            self.old_ok,
            self.old_failed,
        );
        if !self.reason.is_empty() {
            line.push_str(&format!("\n  reason: {}", self.reason));
        }
        line
    }
}

fn table(rollouts: &[RolloutView]) -> String {
    if rollouts.is_empty() {
        return "no rollouts yet: deploy a new version of a module to start one\n".into();
    }
    rollouts.iter().map(|r| format!("{}\n", r.line())).collect()
}

/// The latest rollout of `module`.
pub async fn status(client: &ClusterClient, module: &str) -> Result<Vec<RolloutView>, CmdError> {
    let request = RolloutStatusRequest { module: module.into() };
    let reply = client
        .call_with(&request, |mut c, r| async move { c.rollout_status(r).await })
        .await?;
    Ok(reply.rollouts.into_iter().map(RolloutView::from).collect())
}

/// Follows `module`'s rollout until it ends, drawing its progress on
/// stderr; returns how it ended.
pub async fn watch(client: &ClusterClient, module: &str) -> Result<RolloutView, CmdError> {
    let mut last = String::new();
    loop {
        let view = status(client, module)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CmdError::NotFound(format!("module {module} has no rollout")))?;
        let line = view.line();
        if line != last {
            let mut err = std::io::stderr();
            let _ = writeln!(err, "{line}");
            last = line;
        }
        if !view.is_live() || view.state == "halted" {
            return Ok(view);
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

/// How a followed rollout ended, as the command's result: an error unless
/// it is done.
pub fn outcome(view: &RolloutView) -> Result<(), CmdError> {
    match view.state.as_str() {
        "done" => Ok(()),
        state => Err(CmdError::Failed(format!(
            "the rollout of {} to version {} is {state}{}",
            view.module,
            view.to_version,
            match view.reason.as_str() {
                "" => String::new(),
                reason => format!(": {reason}"),
            }
        ))),
    }
}

pub async fn run(client: &ClusterClient, command: RolloutCommand, format: OutputFormat) -> Result<(), CmdError> {
    let (module, action) = match command {
        RolloutCommand::Status { module, watch: true } => {
            let module = module.ok_or_else(|| CmdError::Usage("--watch follows one module: name it".into()))?;
            let view = watch(client, &module).await?;
            output::print(format, &view, || format!("{}\n", view.line()));
            return Ok(());
        }
        RolloutCommand::Status { module, watch: false } => {
            let views = status(client, module.as_deref().unwrap_or_default()).await?;
            output::print(format, &views, || table(&views));
            return Ok(());
        }
        RolloutCommand::Pause { module } => (module, RolloutAction::Pause),
        RolloutCommand::Resume { module } => (module, RolloutAction::Resume),
        RolloutCommand::Abort { module } => (module, RolloutAction::Abort),
    };
    let request = ControlRolloutRequest {
        module,
        action: action as i32,
    };
    let reply = client
        .call_with(&request, |mut c, r| async move { c.control_rollout(r).await })
        .await?;
    let views: Vec<RolloutView> = reply.rollouts.into_iter().map(RolloutView::from).collect();
    output::print(format, &views, || table(&views));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_counts_switched_nodes_that_may_run_tasks() {
        let mut view = RolloutView::from(RolloutInfo {
            module: "counter".into(),
            from_version: 1,
            to_version: 2,
            state: "running".into(),
            switched: vec![1, 9],
            eligible: vec![1, 2, 3, 4],
            ..Default::default()
        });
        assert_eq!(view.progress_bar(), "[#####---------------] 1/4 node(s)");
        view.state = "done".into();
        assert_eq!(view.progress_bar(), "[####################] 4/4 node(s)");
        assert!(outcome(&view).is_ok());
        view.state = "reverted".into();
        view.reason = "gate failed".into();
        let err = outcome(&view).unwrap_err().to_string();
        assert_eq!(err, "the rollout of counter to version 2 is reverted: gate failed");
    }
}
