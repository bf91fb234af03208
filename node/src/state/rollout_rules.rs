//! The pure rules by which releases and rollouts change the replicated
//! state: a new version starts a rollout; steps switch nodes to it; it ends
//! done (the new version becomes current) or reverted (every node back on
//! the old one), and a revert that would feed the old version a state it
//! cannot read is refused.

use crate::state::cluster::ClusterState;
use crate::state::command::{CommandResponse, ModuleVersion};
use crate::state::member::NodeId;
use crate::state::rejection::Rejection;
use crate::state::rollouts::{Finish, Release, ReleaseOutcome, Rollout, RolloutAction, RolloutSettings, RolloutState};

fn rejected(why: Rejection) -> CommandResponse {
    CommandResponse::Rejected(why)
}

impl ClusterState {
    /// The module version node `node` runs: the rollout's new version once
    /// the node is switched, else the module's current version.
    pub fn version_for(&self, module: &str, node: NodeId) -> Option<&ModuleVersion> {
        match self.rollouts.get(module) {
            Some(r) if r.state.is_live() && r.switched.contains(&node) => Some(&r.release),
            _ => self.modules.get(module),
        }
    }

    /// Version `version` of `module`, if it was ever released.
    pub fn module_version(&self, module: &str, version: u32) -> Option<&ModuleVersion> {
        self.releases
            .get(module)?
            .iter()
            .map(|r| &r.module)
            .find(|m| m.version == version)
    }

    /// The version the next release of `module` gets. (A module deployed
    /// before releases were recorded has a current version and no releases.)
    pub fn next_version(&self, module: &str) -> u32 {
        let released = self
            .releases
            .get(module)
            .and_then(|r| r.last())
            .map(|r| r.module.version);
        let current = self.modules.get(module).map(|m| m.version);
        released.max(current).unwrap_or(0) + 1
    }

    /// Every version of `module`, oldest first (its current version alone
    /// if it was deployed before releases were recorded).
    pub fn releases_of(&self, module: &str) -> Vec<Release> {
        match (self.releases.get(module), self.modules.get(module)) {
            (Some(releases), _) => releases.clone(),
            (None, Some(current)) => vec![Release {
                module: current.clone(),
                outcome: ReleaseOutcome::Deployed,
            }],
            (None, None) => Vec::new(),
        }
    }

    /// Records a release: a module's first version becomes current at once;
    /// a later one starts a rollout. The same bytes as the current version
    /// change nothing. `module.version` must be the next version (the
    /// leader reads it before proposing), so two racing deploys cannot both
    /// start a rollout.
    pub(crate) fn record_release(
        &mut self,
        module: &ModuleVersion,
        settings: &RolloutSettings,
        now_ms: u64,
    ) -> CommandResponse {
        let name = &module.name;
        if let Some(current) = self.modules.get(name)
            && current.hash == module.hash
        {
            return CommandResponse::Module(current.clone());
        }
        if let Some(live) = self.rollouts.get(name).filter(|r| r.state.is_live()) {
            return rejected(Rejection::RolloutUnderWay {
                module: name.clone(),
                version: live.release.version,
                state: live.state.name().into(),
            });
        }
        let next = self.next_version(name);
        if module.version != next {
            return rejected(Rejection::VersionRaced {
                module: name.clone(),
                next,
                prepared: module.version,
            });
        }
        let Some(current) = self.modules.get(name) else {
            self.modules.insert(name.clone(), module.clone());
            self.releases.entry(name.clone()).or_default().push(Release {
                module: module.clone(),
                outcome: ReleaseOutcome::Deployed,
            });
            return CommandResponse::Module(module.clone());
        };
        let from = current.version;
        if !self.releases.contains_key(name) {
            // Deployed before releases were recorded: its history starts here.
            let first = self.releases_of(name);
            self.releases.insert(name.clone(), first);
        }
        let rollout = Rollout {
            from,
            release: module.clone(),
            settings: *settings,
            state: RolloutState::Running,
            switched: Default::default(),
            steps: 0,
            step_started_ms: now_ms,
            started_at_ms: now_ms,
            finished_at_ms: None,
        };
        self.rollouts.insert(name.clone(), rollout);
        self.releases.entry(name.clone()).or_default().push(Release {
            module: module.clone(),
            outcome: ReleaseOutcome::RollingOut,
        });
        CommandResponse::Module(module.clone())
    }

    /// The running rollout of `module` to `version`, or why there is none.
    fn live_rollout(&mut self, module: &str, version: u32) -> Result<&mut Rollout, Rejection> {
        match self.rollouts.get_mut(module) {
            Some(r) if r.state.is_live() && r.release.version == version => Ok(r),
            Some(r) if r.state.is_live() => Err(Rejection::RolloutOfOtherVersion {
                module: module.to_string(),
                live: r.release.version,
                asked: version,
            }),
            _ => Err(Rejection::NoRollout {
                module: module.to_string(),
            }),
        }
    }

    /// Begins a step: `switch` run the new version from their next tick.
    pub(crate) fn rollout_step(
        &mut self,
        module: &str,
        version: u32,
        switch: &[NodeId],
        now_ms: u64,
    ) -> CommandResponse {
        let rollout = match self.live_rollout(module, version) {
            Ok(r) => r,
            Err(why) => return rejected(why),
        };
        if rollout.state != RolloutState::Running {
            return rejected(Rejection::RolloutNotRunning {
                module: module.to_string(),
                state: rollout.state.name().into(),
            });
        }
        rollout.switched.extend(switch.iter().copied());
        rollout.steps += 1;
        rollout.step_started_ms = now_ms;
        CommandResponse::Done
    }

    /// Pauses, resumes or halts a live rollout.
    pub(crate) fn rollout_control(&mut self, module: &str, action: &RolloutAction, now_ms: u64) -> CommandResponse {
        let Some(rollout) = self.rollouts.get_mut(module).filter(|r| r.state.is_live()) else {
            return rejected(Rejection::NoRollout {
                module: module.to_string(),
            });
        };
        match (action, &rollout.state) {
            (RolloutAction::Pause, RolloutState::Running) => rollout.state = RolloutState::Paused,
            (RolloutAction::Resume, RolloutState::Paused | RolloutState::Halted { .. }) => {
                rollout.state = RolloutState::Running;
                // The step in progress is gated again from now.
                rollout.step_started_ms = now_ms;
            }
            (RolloutAction::Halt { reason }, RolloutState::Running) => {
                rollout.state = RolloutState::Halted { reason: reason.clone() }
            }
            (action, state) => {
                return rejected(Rejection::RolloutActionRefused {
                    module: module.to_string(),
                    state: state.name().into(),
                    action: match action {
                        RolloutAction::Pause => "pause it",
                        RolloutAction::Resume => "resume it",
                        RolloutAction::Halt { .. } => "halt it",
                    }
                    .into(),
                });
            }
        }
        CommandResponse::Done
    }

    /// Ends a live rollout: done (the new version becomes current), or
    /// reverted/aborted (every node back on the old version, tasks the new
    /// version failed resumed). A revert that needs a down-migration the new
    /// version does not provide is refused; a gate's revert halts instead.
    pub(crate) fn rollout_finish(
        &mut self,
        module: &str,
        version: u32,
        finish: &Finish,
        now_ms: u64,
    ) -> CommandResponse {
        let blocked = self.revert_blocked(module, version);
        let rollout = match self.live_rollout(module, version) {
            Ok(r) => r,
            Err(why) => return rejected(why),
        };
        if let Some(why) = blocked.filter(|_| *finish != Finish::Done) {
            let Finish::Revert { reason } = finish else {
                return rejected(Rejection::CannotAbort {
                    module: module.to_string(),
                    why,
                });
            };
            rollout.state = RolloutState::Halted {
                reason: format!("{reason}; cannot revert: {why}"),
            };
            return CommandResponse::Done;
        }
        let outcome = match finish {
            Finish::Done => {
                rollout.state = RolloutState::Done;
                ReleaseOutcome::RolledOut
            }
            Finish::Revert { reason } => {
                rollout.state = RolloutState::Reverted { reason: reason.clone() };
                ReleaseOutcome::Reverted { reason: reason.clone() }
            }
            Finish::Abort => {
                rollout.state = RolloutState::Aborted;
                ReleaseOutcome::Aborted
            }
        };
        rollout.finished_at_ms = Some(now_ms);
        let release = rollout.release.clone();
        if outcome == ReleaseOutcome::RolledOut {
            self.modules.insert(module.to_string(), release.clone());
        } else {
            // Tasks the new version drove to failure run again, on the old.
            self.tasks.restart_failed_on(module, version);
        }
        if let Some(entry) = self
            .releases
            .get_mut(module)
            .and_then(|r| r.iter_mut().find(|r| r.module.version == version))
        {
            entry.outcome = outcome;
        }
        CommandResponse::Done
    }

    /// Why going back from `version` of `module` would strand tasks: some
    /// task's state was written by it, it converts states between versions
    /// (so the formats differ), and it does not convert them back.
    fn revert_blocked(&self, module: &str, version: u32) -> Option<String> {
        let rollout = self.rollouts.get(module)?;
        let release = &rollout.release;
        if !release.migrates || release.down_to.contains(&rollout.from) {
            return None;
        }
        let written = self
            .tasks
            .index()
            .state_versions()
            .get(&(module.to_string(), version))
            .copied()
            .unwrap_or(0);
        (written > 0).then(|| {
            format!(
                "{written} task(s) hold state written by version {version}, which provides no down-migration to \
                 version {} (its can-downgrade said no); they stay on version {version}, which can read it",
                rollout.from
            )
        })
    }
}

#[cfg(test)]
#[path = "rollout_rules_tests.rs"]
mod tests;
