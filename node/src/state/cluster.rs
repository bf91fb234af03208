//! The cluster's replicated truth as plain data, and the pure function that
//! applies a [`Command`] to it.
//!
//! Keeping the decision here, free of I/O, is what lets it be unit-tested
//! exhaustively; the state machine store drives it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::state::cluster_version::{self, ClusterVersion};
use crate::state::command::{Command, CommandResponse, ModuleVersion};
use crate::state::member::NodeId;
use crate::state::rejection::Rejection;
use crate::state::rollouts::{Release, Rollout};
use crate::state::tasks::TaskTable;
use crate::state::upgrades::{NodeBinary, Upgrade, UpgradeSettings, drain_of};

/// Everything the state machine holds. Serialized as a whole into snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The replicated key-value space (`batonctl kv`, tests, benchmarks).
    #[serde(default)]
    pub kv: BTreeMap<String, Vec<u8>>,
    /// Deployed task modules by name: the current version of each.
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleVersion>,
    /// Every version of each module and how it fared.
    #[serde(default)]
    pub releases: BTreeMap<String, Vec<Release>>,
    /// Each module's latest rollout (under way or finished).
    #[serde(default)]
    pub rollouts: BTreeMap<String, Rollout>,
    /// Tasks, their owners, epochs and states.
    #[serde(default)]
    pub tasks: TaskTable,
    /// Nodes an operator drained (`batonctl nodes drain`): they get no tasks.
    #[serde(default)]
    pub drained: BTreeSet<NodeId>,
    /// What every member can read (see [`crate::state::cluster_version`]);
    /// left out of the JSON at version 1, so a state that never raised it
    /// encodes as before cluster versions.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub cluster_version: ClusterVersion,
    /// The latest upgrade of the node binary (under way or finished); left
    /// out of the JSON when there never was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<Upgrade>,
}

fn first_version() -> ClusterVersion {
    cluster_version::FIRST
}

fn is_first_version(version: &ClusterVersion) -> bool {
    *version == cluster_version::FIRST
}

/// How a node applies commands: the same on every node, but for the test
/// switch that turns the commit fence off (`[testing]
/// unsafe_disable_fencing`, see `crate::fencing`), which each node process
/// reads from its own config and never travels in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Tick commits only from the current owner, at its epoch, in order.
    pub fenced: bool,
}

impl Rules {
    /// The rules of every real cluster.
    pub const FENCED: Rules = Rules { fenced: true };
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            kv: BTreeMap::new(),
            modules: BTreeMap::new(),
            releases: BTreeMap::new(),
            rollouts: BTreeMap::new(),
            tasks: TaskTable::default(),
            drained: BTreeSet::new(),
            cluster_version: cluster_version::FIRST,
            upgrade: None,
        }
    }
}

impl ClusterState {
    /// Applies one committed command under `rules`.
    pub fn apply(&mut self, command: &Command, rules: &Rules) -> CommandResponse {
        match command {
            Command::Put { key, value } => CommandResponse::Previous(self.kv.insert(key.clone(), value.clone())),
            Command::Delete { key } => CommandResponse::Previous(self.kv.remove(key)),
            Command::Batch(commands) => CommandResponse::Batch(commands.iter().map(|c| self.apply(c, rules)).collect()),
            Command::DeployModule(module) => self.deploy_module(module),
            Command::AddTask(spec) => match self.modules.contains_key(&spec.module) {
                true => self.tasks.add(spec.clone()),
                false => CommandResponse::Rejected(Rejection::NoSuchModule {
                    module: spec.module.clone(),
                }),
            },
            Command::RemoveTask { name } => self.tasks.remove(name),
            Command::SetTaskStatus { name, status } => self.tasks.set_status(name, status.clone()),
            Command::RunNow { name, now_ms } => self.tasks.run_now(name, *now_ms),
            Command::ResealSecrets(changes) => self.tasks.reseal(changes),
            Command::SetSecrets { task, set, remove } => self.tasks.set_secrets(task, set, remove),
            Command::AssignOwners(assignments) => self.tasks.assign(assignments),
            Command::ReassignAll { from, to } => self.tasks.reassign_all(*from, to),
            Command::HandOff(assignments) => self.tasks.hand_off(assignments),
            Command::YieldTask { name, epoch, node } => self.tasks.yield_task(name, *epoch, *node),
            Command::SetDrained { node, drained } => {
                let changed = match drained {
                    true => self.drained.insert(*node),
                    false => self.drained.remove(node),
                };
                CommandResponse::Count(u64::from(changed))
            }
            Command::CommitTick(commit) => self.tasks.commit_tick(commit, rules),
            Command::SetClusterVersion { version } => {
                // Only ever raised; a repeat (a new leader's retry) changes nothing.
                let raised = *version > self.cluster_version;
                if raised {
                    self.cluster_version = *version;
                }
                CommandResponse::Count(u64::from(raised))
            }
            Command::MarkTaskFailed {
                name,
                epoch,
                reason,
                version,
            } => self.tasks.mark_failed(name, *epoch, reason, *version),
            Command::AddRelease {
                module,
                settings,
                now_ms,
            } => self.record_release(module, settings, *now_ms),
            Command::RolloutStep {
                module,
                version,
                switch,
                now_ms,
            } => self.rollout_step(module, *version, switch, *now_ms),
            Command::RolloutControl { module, action, now_ms } => self.rollout_control(module, action, *now_ms),
            Command::RolloutFinish {
                module,
                version,
                finish,
                now_ms,
            } => self.rollout_finish(module, *version, finish, *now_ms),
            Command::StartUpgrade {
                binary,
                settings,
                nodes,
                now_ms,
            } => self.start_upgrade(binary, settings, nodes, *now_ms),
            Command::UpgradePhase {
                hash,
                node,
                phase,
                now_ms,
            } => self.with_upgrade(hash, |u| u.set_phase(*node, phase.clone(), *now_ms)),
            Command::UpgradeControl { hash, action, now_ms } => self.with_upgrade(hash, |u| u.control(action, *now_ms)),
        }
    }

    /// Starts an upgrade of the node binary, unless one is live.
    fn start_upgrade(
        &mut self,
        binary: &NodeBinary,
        settings: &UpgradeSettings,
        nodes: &[NodeId],
        now_ms: u64,
    ) -> CommandResponse {
        if let Some(live) = self.upgrade.as_ref().filter(|u| u.state.is_live()) {
            return CommandResponse::Rejected(Rejection::UpgradeUnderWay {
                version: live.binary.version.clone(),
                state: live.state.name().to_string(),
            });
        }
        // A cluster version held by the upgrade before (awaiting `upgrade
        // finalize`) stays held through this one: it may be the way back.
        let mut settings = *settings;
        if self.upgrade.as_ref().is_some_and(Upgrade::awaits_finalize) {
            settings.hold_version = true;
        }
        match Upgrade::start(binary.clone(), settings, nodes, self.cluster_version, now_ms) {
            Ok(mut upgrade) => {
                upgrade.drained_before = self.drained.clone();
                self.upgrade = Some(upgrade);
                CommandResponse::Count(1)
            }
            Err(rejection) => CommandResponse::Rejected(rejection),
        }
    }

    /// Changes the upgrade to binary `hash`, if it is the latest one. A node
    /// moved into a phase is drained or undrained with it, in the same
    /// apply (see [`drain_of`]); one an operator had drained before the
    /// upgrade stays drained.
    fn with_upgrade(
        &mut self,
        hash: &str,
        change: impl FnOnce(&mut Upgrade) -> Result<(), Rejection>,
    ) -> CommandResponse {
        let Some(upgrade) = self.upgrade.as_mut().filter(|u| u.binary.hash == hash) else {
            return CommandResponse::Rejected(Rejection::NoUpgrade { hash: hash.to_string() });
        };
        let before = upgrade.phases.clone();
        if let Err(rejection) = change(upgrade) {
            return CommandResponse::Rejected(rejection);
        }
        for (node, phase) in &upgrade.phases {
            if before.get(node) == Some(phase) {
                continue;
            }
            match drain_of(phase) {
                Some(true) => {
                    self.drained.insert(*node);
                }
                Some(false) if !upgrade.drained_before.contains(node) => {
                    self.drained.remove(node);
                }
                _ => {}
            }
        }
        CommandResponse::Count(1)
    }

    /// Records a module's first version; deploying the same bytes again is a
    /// no-op, and other bytes under a taken name are refused.
    fn deploy_module(&mut self, module: &ModuleVersion) -> CommandResponse {
        match self.modules.get(&module.name) {
            Some(existing) if existing.hash == module.hash => CommandResponse::Module(existing.clone()),
            Some(existing) => CommandResponse::Rejected(Rejection::ModuleNameTaken {
                module: existing.name.clone(),
                version: existing.version,
                hash: existing.hash.clone(),
            }),
            None => {
                let record = ModuleVersion {
                    version: 1,
                    ..module.clone()
                };
                self.modules.insert(module.name.clone(), record.clone());
                CommandResponse::Module(record)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &[u8]) -> Command {
        Command::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn put_stores_the_value_and_reports_the_previous_one() {
        let mut state = ClusterState::default();
        assert_eq!(
            state.apply(&put("a", b"1"), &Rules::FENCED),
            CommandResponse::Previous(None)
        );
        assert_eq!(
            state.apply(&put("a", b"2"), &Rules::FENCED),
            CommandResponse::Previous(Some(b"1".to_vec()))
        );
        assert_eq!(state.kv["a"], b"2");
    }

    #[test]
    fn delete_of_a_missing_key_changes_nothing() {
        let mut state = ClusterState::default();
        state.apply(&put("a", b"1"), &Rules::FENCED);
        let before = state.clone();
        assert_eq!(
            state.apply(&Command::Delete { key: "nope".into() }, &Rules::FENCED),
            CommandResponse::Previous(None)
        );
        assert_eq!(state, before);
    }

    #[test]
    fn delete_removes_the_key() {
        let mut state = ClusterState::default();
        state.apply(&put("a", b"1"), &Rules::FENCED);
        assert_eq!(
            state.apply(&Command::Delete { key: "a".into() }, &Rules::FENCED),
            CommandResponse::Previous(Some(b"1".to_vec()))
        );
        assert!(state.kv.is_empty());
    }

    #[test]
    fn a_batch_applies_in_order_and_answers_each_command() {
        let mut state = ClusterState::default();
        let batch = Command::Batch(vec![put("a", b"1"), put("a", b"2"), Command::Delete { key: "a".into() }].into());
        let expected = [None, Some(b"1".to_vec()), Some(b"2".to_vec())].map(CommandResponse::Previous);
        assert_eq!(
            state.apply(&batch, &Rules::FENCED),
            CommandResponse::Batch(expected.to_vec())
        );
        assert!(state.kv.is_empty());
    }

    fn module(name: &str, hash: &str) -> ModuleVersion {
        ModuleVersion {
            name: name.into(),
            version: 0,
            hash: hash.into(),
            size: 10,
            migrates: false,
            down_to: Vec::new(),
            deployed_at_ms: 1,
            signer: String::new(),
            signature: String::new(),
        }
    }

    #[test]
    fn a_first_deploy_records_version_1_and_the_same_bytes_again_change_nothing() {
        let mut state = ClusterState::default();
        let first = state.apply(&Command::DeployModule(module("counter", "aa")), &Rules::FENCED);
        let CommandResponse::Module(record) = first else {
            panic!("{first:?}")
        };
        assert_eq!(record.version, 1);
        let before = state.clone();
        assert_eq!(
            state.apply(&Command::DeployModule(module("counter", "aa")), &Rules::FENCED),
            CommandResponse::Module(record)
        );
        assert_eq!(state, before);
    }

    #[test]
    fn other_bytes_under_a_deployed_name_are_rejected() {
        let mut state = ClusterState::default();
        state.apply(&Command::DeployModule(module("counter", "aa")), &Rules::FENCED);
        let before = state.clone();
        let response = state.apply(&Command::DeployModule(module("counter", "bb")), &Rules::FENCED);
        assert!(matches!(
            &response,
            CommandResponse::Rejected(Rejection::ModuleNameTaken { version: 1, .. })
        ));
        assert_eq!(state, before);
    }

    #[test]
    fn a_task_needs_a_deployed_module() {
        use crate::state::tasks::{CatchUp, RestartPolicy, Schedule, TaskSpec};
        let mut state = ClusterState::default();
        let spec = TaskSpec {
            name: "t".into(),
            module: "counter".into(),
            schedule: Schedule::EveryMs(1000),
            catch_up: CatchUp::Skip,
            restart: RestartPolicy::default(),
            config: Vec::new(),
            allow_net: Vec::new(),
            allow_http: Vec::new(),
            http_ca: Vec::new(),
            secrets: Vec::new(),
        };
        let response = state.apply(&Command::AddTask(spec.clone()), &Rules::FENCED);
        assert!(
            matches!(&response, CommandResponse::Rejected(Rejection::NoSuchModule { module }) if module == "counter")
        );
        state.apply(&Command::DeployModule(module("counter", "aa")), &Rules::FENCED);
        assert_eq!(
            state.apply(&Command::AddTask(spec), &Rules::FENCED),
            CommandResponse::Done
        );
        assert_eq!(state.tasks["t"].epoch, 0);
    }

    #[test]
    fn snapshots_round_trip_and_tolerate_unknown_fields() {
        let mut state = ClusterState::default();
        state.apply(&put("x", b"1"), &Rules::FENCED);
        let mut json: serde_json::Value = serde_json::to_value(&state).unwrap();
        json["a_field_from_a_newer_version"] = serde_json::json!(42);
        assert_eq!(serde_json::from_value::<ClusterState>(json).unwrap(), state);
    }

    #[test]
    fn applying_the_same_commands_gives_the_same_state() {
        let commands = [
            put("a", b"1"),
            put("b", b"2"),
            Command::Delete { key: "a".into() },
            put("c", b"3"),
        ];
        let mut one = ClusterState::default();
        let mut two = ClusterState::default();
        for c in &commands {
            one.apply(c, &Rules::FENCED);
        }
        for c in &commands {
            two.apply(c, &Rules::FENCED);
        }
        assert_eq!(one, two);
        assert_eq!(one.kv.keys().collect::<Vec<_>>(), vec!["b", "c"]);
    }

    #[test]
    fn one_upgrade_at_a_time_and_only_the_live_binary_moves() {
        use crate::state::upgrades::{NodeBinary, Phase, UpgradeSettings, UpgradeState};
        let start = |hash: &str| Command::StartUpgrade {
            binary: NodeBinary::sample(hash, 6),
            settings: UpgradeSettings::default(),
            nodes: vec![1, 2],
            now_ms: 1,
        };
        let mut state = ClusterState::default();
        assert_eq!(state.apply(&start("a"), &Rules::FENCED), CommandResponse::Count(1));
        assert!(matches!(
            state.apply(&start("b"), &Rules::FENCED),
            CommandResponse::Rejected(Rejection::UpgradeUnderWay { .. })
        ));
        let phase = |hash: &str, node, phase| Command::UpgradePhase {
            hash: hash.into(),
            node,
            phase,
            now_ms: 2,
        };
        assert!(matches!(
            state.apply(&phase("b", 1, Phase::Draining), &Rules::FENCED),
            CommandResponse::Rejected(Rejection::NoUpgrade { .. })
        ));
        // Node 2 was drained by an operator before: it stays drained.
        state.drained.insert(2);
        state.upgrade.as_mut().unwrap().drained_before.insert(2);
        for node in [1, 2] {
            state.apply(&phase("a", node, Phase::Draining), &Rules::FENCED);
            assert!(state.drained.contains(&node), "drained with its phase");
            state.apply(&phase("a", node, Phase::Swapping { gate_index: 1 }), &Rules::FENCED);
            state.apply(&phase("a", node, Phase::Gating), &Rules::FENCED);
            assert_eq!(state.drained.contains(&node), node == 2, "undrained as it is gated");
            state.apply(&phase("a", node, Phase::Done), &Rules::FENCED);
        }
        assert_eq!(state.upgrade.as_ref().unwrap().state, UpgradeState::Done);
        assert_eq!(
            state.apply(&start("b"), &Rules::FENCED),
            CommandResponse::Count(1),
            "after it is done"
        );
    }

    #[test]
    fn a_held_cluster_version_stays_held_through_the_next_upgrade() {
        use crate::state::upgrades::{NodeBinary, UpgradeAction, UpgradeSettings};
        let start = |hash: &str, hold_version| Command::StartUpgrade {
            binary: NodeBinary::sample(hash, 6),
            settings: UpgradeSettings {
                hold_version,
                ..UpgradeSettings::default()
            },
            nodes: vec![1],
            now_ms: 1,
        };
        let abort = |hash: &str| Command::UpgradeControl {
            hash: hash.into(),
            action: UpgradeAction::Abort,
            now_ms: 2,
        };
        let mut state = ClusterState::default();
        state.apply(&start("a", true), &Rules::FENCED);
        state.apply(&abort("a"), &Rules::FENCED);
        assert!(state.upgrade.as_ref().unwrap().holds_cluster_version());
        // The way back, started without --hold-version, keeps the hold.
        state.apply(&start("b", false), &Rules::FENCED);
        state.apply(&abort("b"), &Rules::FENCED);
        let upgrade = state.upgrade.as_ref().unwrap();
        assert!(upgrade.settings.hold_version && upgrade.holds_cluster_version());
    }
}
