//! The leader's rollout loop: for every running rollout it gathers what the
//! nodes reported, asks the pure [`decide`] for the next move, and proposes
//! it. A new leader takes over where the replicated rollout stands and gates
//! the current step anew from when it began watching.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::gate::{Counts, Decision, GateView, decide};
use super::health::NodeReport;
use super::{Finish, Rollout, RolloutAction, RolloutState};
use crate::api::NodeContext;
use crate::types::{Command, CommandResponse, NodeId, now_ms};

/// How often the leader looks at running rollouts.
const INTERVAL: Duration = Duration::from_millis(50);

/// The reports as they were when a step's gate began counting.
struct Baseline {
    /// The step it belongs to: (version, steps, step_started_ms).
    step: (u32, u32, u64),
    since_ms: u64,
    reports: HashMap<NodeId, NodeReport>,
}

/// Starts the loop; abort the handle to stop it.
pub fn spawn_rollouts(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut baselines: HashMap<String, Baseline> = HashMap::new();
        loop {
            interval.tick().await;
            if crate::types::leader(&context.raft).0 != Some(context.id) {
                baselines.clear();
                continue;
            }
            let running: Vec<Rollout> = context.state_machine.read(|s| {
                s.rollouts
                    .values()
                    .filter(|r| r.state == RolloutState::Running)
                    .cloned()
                    .collect()
            });
            baselines.retain(|module, _| running.iter().any(|r| &r.release.name == module));
            for rollout in running {
                let view = gate_view(&context, &rollout, &mut baselines);
                context
                    .observed
                    .set_gate(&rollout.release.name, rollout.release.version, (view.new, view.old));
                if let Some(command) = command_for(&rollout, decide(&rollout, &view)) {
                    propose(&context, command).await;
                }
            }
        }
    })
}

/// The command that carries out `decision`, if any.
fn command_for(rollout: &Rollout, decision: Decision) -> Option<Command> {
    let module = rollout.release.name.clone();
    let version = rollout.release.version;
    let now_ms = now_ms();
    Some(match decision {
        Decision::Wait => return None,
        Decision::Switch(switch) => Command::RolloutStep {
            module,
            version,
            switch,
            now_ms,
        },
        Decision::Complete => Command::RolloutFinish {
            module,
            version,
            finish: Finish::Done,
            now_ms,
        },
        Decision::Fail(reason) if rollout.settings.auto_revert => Command::RolloutFinish {
            module,
            version,
            finish: Finish::Revert { reason },
            now_ms,
        },
        Decision::Fail(reason) => Command::RolloutControl {
            module,
            action: RolloutAction::Halt { reason },
            now_ms,
        },
    })
}

async fn propose(context: &NodeContext, command: Command) {
    let what = command.to_string();
    match context.proposer.propose(command).await {
        Ok(committed) => match committed.response {
            CommandResponse::Rejected(why) => tracing::warn!("rollout: {what} refused: {why}"),
            _ => tracing::info!("rollout: {what}"),
        },
        Err(e) => tracing::warn!("rollout: {what} not committed: {e}"),
    }
}

/// What the leader sees of `rollout`'s module now.
fn gate_view(context: &NodeContext, rollout: &Rollout, baselines: &mut HashMap<String, Baseline>) -> GateView {
    let module = &rollout.release.name;
    let mut reports = context.observed.reports();
    reports.insert(
        context.id,
        NodeReport {
            incarnation: context.incarnation.clone(),
            counts: context.tick_health.snapshot(),
            ready: context.engine.loaded_hashes(),
            versions: context.versions,
            binary: context.binary.clone(),
            heart_addr: context.heart_addr.clone().unwrap_or_default(),
            catching_up: false,
        },
    );
    let now = now_ms();
    let step = (rollout.release.version, rollout.steps, rollout.step_started_ms);
    let baseline = baselines.entry(module.clone()).or_insert_with(|| Baseline {
        step,
        since_ms: now,
        reports: reports.clone(),
    });
    if baseline.step != step {
        *baseline = Baseline {
            step,
            since_ms: now,
            reports: reports.clone(),
        };
    }
    let eligible = context.supervision.view().eligible;
    let (new_key, old_key) = (
        (module.clone(), rollout.release.version),
        (module.clone(), rollout.from),
    );
    let (mut new, mut old) = (Counts::default(), Counts::default());
    for (node, report) in &reports {
        let before = baseline.reports.get(node);
        match rollout.switched.contains(node) {
            true if eligible.contains(node) => new.add(report.since(before, &new_key)),
            true => {}
            false => old.add(report.since(before, &old_key)),
        }
    }
    let ready = reports
        .iter()
        .filter(|(_, r)| r.ready.contains(&rollout.release.hash))
        .map(|(n, _)| *n)
        .collect();
    let tasks_on = context.state_machine.read(|s| {
        let mut on: BTreeMap<NodeId, usize> = BTreeMap::new();
        for task in s.tasks.values().filter(|t| &t.spec.module == module) {
            if let Some(owner) = task.owner {
                *on.entry(owner).or_default() += 1;
            }
        }
        on
    });
    GateView {
        now_ms: now,
        eligible,
        ready,
        tasks_on,
        new,
        old,
        gate_since_ms: baseline.since_ms,
    }
}
