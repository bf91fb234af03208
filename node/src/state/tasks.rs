//! Tasks in the replicated state: their records and the pure rules that
//! change them. The commit rule is the fence that makes "one owner at a
//! time" hold: a tick commits only with the task's current epoch, from its
//! current owner, as the next tick number, while the task is running.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state::cluster::Rules;
use crate::state::command::CommandResponse;
pub use crate::state::history::{HISTORY_LEN, History, TickRecord};
use crate::state::member::NodeId;
use crate::state::rejection::{OwnedWrite, Rejection};
use crate::state::secrets::{MAX_SECRETS, Resealed, SealedSecret};
use crate::state::task_index::{Placement, TaskIndex};

/// When a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Every this many milliseconds.
    EveryMs(u64),
    /// At the times a cron expression names.
    Cron(String),
}

/// What a task does about the runs it missed while nobody ran it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run once at once, then keep to the schedule.
    #[default]
    RunOnce,
    /// Skip them: the next run is the schedule's next time from now.
    Skip,
}

/// How many failed ticks a task may have in a window before it is marked
/// failed (OTP's restart intensity and period).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            window_ms: 60_000,
        }
    }
}

/// Whether a task runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Running,
    Paused,
    /// Too many failed ticks; runs again after `tasks resume`.
    Failed {
        reason: String,
    },
}

/// What a user asks for with `tasks add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub module: String,
    pub schedule: Schedule,
    #[serde(default)]
    pub catch_up: CatchUp,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub config: Vec<u8>,
    /// `HOST:PORT` addresses the task may connect to (nothing else).
    #[serde(default)]
    pub allow_net: Vec<String>,
    /// The HTTP servers the task may call over `wasi:http`, each
    /// `scheme://host:port` (cluster version 9 on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_http: Vec<String>,
    /// PEM CA certificates its HTTPS requests trust instead of the system's
    /// roots; empty for the system's roots (cluster version 9 on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_ca: Vec<u8>,
    /// Its secrets, sealed, in the order of their names (cluster version
    /// 11 on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SealedSecret>,
}

impl TaskSpec {
    /// Whether `other` is this task as it was added, but for its secrets
    /// (read by name when asked for, and changed in place by a rotation or
    /// `tasks set-secrets`). A task removed and added again under its name
    /// with another module, config, schedule or grant is not, even at the
    /// same epoch (epochs start again with the task): what ran for the one
    /// must not run on, or read the secrets, for the other.
    pub fn same_task_as(&self, other: &TaskSpec) -> bool {
        // Every field named: a new one must be placed on a side.
        let TaskSpec {
            name,
            module,
            schedule,
            catch_up,
            restart,
            config,
            allow_net,
            allow_http,
            http_ca,
            secrets: _,
        } = self;
        name == &other.name
            && module == &other.module
            && schedule == &other.schedule
            && catch_up == &other.catch_up
            && restart == &other.restart
            && config == &other.config
            && allow_net == &other.allow_net
            && allow_http == &other.allow_http
            && http_ca == &other.http_ca
    }
}

#[cfg(test)]
impl TaskSpec {
    /// A counter task every second, with the default policies: for tests.
    pub(crate) fn counter_every_second(name: &str) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            module: "counter".into(),
            schedule: Schedule::EveryMs(1000),
            catch_up: CatchUp::RunOnce,
            restart: RestartPolicy::default(),
            config: Vec::new(),
            allow_net: Vec::new(),
            allow_http: Vec::new(),
            http_ca: Vec::new(),
            secrets: Vec::new(),
        }
    }
}

/// A task and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    /// The node allowed to commit its ticks, if any.
    pub owner: Option<NodeId>,
    /// Raised on every change of owner: the fencing token.
    pub epoch: u64,
    /// The last committed tick (0: none yet).
    pub tick: u64,
    pub state: Vec<u8>,
    pub status: TaskStatus,
    pub last_tick_at_ms: Option<u64>,
    /// When the next tick is due (ms since the epoch; 0: at once).
    pub next_due_ms: u64,
    /// Its last [`HISTORY_LEN`] committed ticks.
    pub history: History,
    /// A hand-off in progress: the node the task moves to once its owner has
    /// committed its current tick (or released it between ticks).
    #[serde(default)]
    pub handoff_to: Option<NodeId>,
    /// The module version that wrote `state` (0: none yet, or before
    /// versions were recorded): a node running another version migrates it.
    #[serde(default)]
    pub state_version: u32,
    /// The module version whose failed ticks marked the task failed.
    #[serde(default)]
    pub failed_on: Option<u32>,
    /// When a tick was asked for now (`Command::RunNow`), until the next
    /// tick commits: the owner ticks at once rather than at `next_due_ms`.
    /// Left out of the JSON when unset, as written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_requested_ms: Option<u64>,
}

/// A committed tick's proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCommit {
    pub task: String,
    pub epoch: u64,
    pub tick: u64,
    pub node: NodeId,
    pub state: Vec<u8>,
    pub next_due_ms: u64,
    pub committed_at_ms: u64,
    /// The module version that ran the tick (and wrote `state`).
    #[serde(default)]
    pub version: u32,
}

/// A change of owner, made only if the task is still at `expected_epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub task: String,
    pub owner: Option<NodeId>,
    pub expected_epoch: u64,
}

/// All tasks, by name, with an index kept up to date as they change (every
/// change to a record goes through [`TaskTable::change`]).
///
/// Each record is behind an `Arc`, copied only when it changes while
/// shared: a snapshot takes the records ([`TaskTable::share`]) without
/// copying them, and encodes them while the table goes on changing.
#[derive(Clone, Default, Deserialize)]
#[serde(from = "TaskRecords")]
pub struct TaskTable {
    tasks: BTreeMap<String, Arc<TaskRecord>>,
    index: TaskIndex,
}

/// A table's records alone: its serialized form.
#[derive(Serialize, Deserialize)]
struct TaskRecords {
    tasks: BTreeMap<String, TaskRecord>,
}

impl From<TaskRecords> for TaskTable {
    fn from(records: TaskRecords) -> Self {
        TaskTable::from_records(records.tasks.into_values())
    }
}

impl Serialize for TaskTable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Records<'a>(&'a BTreeMap<String, Arc<TaskRecord>>);
        impl Serialize for Records<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|(name, task)| (name, &**task)))
            }
        }
        #[derive(Serialize)]
        struct Borrowed<'a> {
            tasks: Records<'a>,
        }
        Borrowed {
            tasks: Records(&self.tasks),
        }
        .serialize(serializer)
    }
}

/// Two tables are equal when their records are (the index follows them).
impl PartialEq for TaskTable {
    fn eq(&self, other: &Self) -> bool {
        self.tasks == other.tasks
    }
}

impl Eq for TaskTable {}

impl std::fmt::Debug for TaskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTable").field("tasks", &self.tasks).finish()
    }
}

impl std::ops::Index<&str> for TaskTable {
    type Output = TaskRecord;

    fn index(&self, name: &str) -> &TaskRecord {
        &self.tasks[name]
    }
}

/// A running task whose next tick is long overdue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub task: String,
    pub owner: Option<NodeId>,
    /// How long ago its next tick was due.
    pub late_ms: u64,
}

fn rejected(why: Rejection) -> CommandResponse {
    CommandResponse::Rejected(why)
}

impl TaskTable {
    /// A table of these records.
    pub fn from_records(records: impl IntoIterator<Item = TaskRecord>) -> TaskTable {
        let tasks: BTreeMap<String, Arc<TaskRecord>> = records
            .into_iter()
            .map(|t| (t.spec.name.clone(), Arc::new(t)))
            .collect();
        let index = TaskIndex::build(tasks.values().map(|t| &**t));
        TaskTable { tasks, index }
    }

    pub fn get(&self, name: &str) -> Option<&TaskRecord> {
        self.tasks.get(name).map(|t| &**t)
    }

    /// Every task, by name.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &TaskRecord> {
        self.tasks.values().map(|t| &**t)
    }

    /// Every record, by name, shared rather than copied: a record changed
    /// later is copied then, and what this returned stays as it was.
    pub fn share(&self) -> Vec<Arc<TaskRecord>> {
        self.tasks.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Who runs what, and what changed: see [`TaskIndex`].
    pub fn index(&self) -> &TaskIndex {
        &self.index
    }

    /// Changes task `name` through `f`, keeping the index up to date; None
    /// if there is no such task. The one place a record changes, but for
    /// [`TaskTable::reassign_all`], which moves a whole owner's set at once.
    fn change<R>(&mut self, name: &str, f: impl FnOnce(&mut TaskRecord) -> R) -> Option<R> {
        let task = Arc::make_mut(self.tasks.get_mut(name)?);
        let before = Placement::of(task);
        let result = f(task);
        self.index.changed(task, before);
        Some(result)
    }

    /// Adds a task; it has no owner until the leader places it.
    pub fn add(&mut self, spec: TaskSpec) -> CommandResponse {
        if self.tasks.contains_key(&spec.name) {
            return rejected(Rejection::TaskExists {
                task: spec.name.clone(),
            });
        }
        let record = TaskRecord {
            spec,
            owner: None,
            epoch: 0,
            tick: 0,
            state: Vec::new(),
            status: TaskStatus::Running,
            last_tick_at_ms: None,
            next_due_ms: 0,
            history: History::default(),
            handoff_to: None,
            state_version: 0,
            failed_on: None,
            run_requested_ms: None,
        };
        self.index.inserted(&record);
        self.tasks.insert(record.spec.name.clone(), Arc::new(record));
        CommandResponse::Done
    }

    pub fn remove(&mut self, name: &str) -> CommandResponse {
        match self.tasks.remove(name) {
            Some(task) => {
                self.index.removed(&task);
                CommandResponse::Done
            }
            None => rejected(Rejection::NoSuchTask { task: name.to_string() }),
        }
    }

    /// Pauses or resumes a task. Either way the epoch rises, so a tick in
    /// flight from before cannot commit after.
    pub fn set_status(&mut self, name: &str, status: TaskStatus) -> CommandResponse {
        let changed = self.change(name, |task| {
            task.status = status;
            task.failed_on = None;
            task.epoch += 1;
            task.handoff_to = None;
            task.run_requested_ms = None;
        });
        match changed {
            Some(()) => CommandResponse::Done,
            None => rejected(Rejection::NoSuchTask { task: name.to_string() }),
        }
    }

    /// Asks a running task for one tick now: its owner ticks it at once,
    /// through the same fence as any tick, and the next committed tick ends
    /// the request. A request already pending stands (asking twice before
    /// the tick runs one tick, not two).
    pub fn run_now(&mut self, name: &str, now_ms: u64) -> CommandResponse {
        let asked = self.change(name, |task| {
            if task.status != TaskStatus::Running {
                return rejected(Rejection::NotRunning {
                    task: name.to_string(),
                    status: format!("{:?}", task.status),
                });
            }
            task.run_requested_ms.get_or_insert(now_ms);
            CommandResponse::Done
        });
        asked.unwrap_or_else(|| rejected(Rejection::NoSuchTask { task: name.to_string() }))
    }

    /// Puts each resealed secret in place of the one it was sealed from,
    /// if that is still the task's secret of its name; answers how many
    /// were. Nothing else about the task changes: a secret is read when
    /// asked for, so its owner's next read finds the new sealing.
    pub fn reseal(&mut self, changes: &[Resealed]) -> CommandResponse {
        let mut resealed = 0;
        for change in changes {
            let replaced = self.change(&change.task, |task| {
                let current = task
                    .spec
                    .secrets
                    .iter_mut()
                    .find(|s| s.name == change.secret.name && s.nonce == change.was_nonce);
                current.map(|s| *s = change.secret.clone()).is_some()
            });
            resealed += u64::from(replaced == Some(true));
        }
        CommandResponse::Count(resealed)
    }

    /// Gives task `name` the secrets of `set` (each replacing the one of
    /// its name, or added) and removes those named in `remove` that it
    /// has; its secrets stay in the order of their names. Answers how many
    /// changed: none, and nothing changes, when the result would be over
    /// [`MAX_SECRETS`] (the API checked, but calls may race).
    pub fn set_secrets(&mut self, name: &str, set: &[SealedSecret], remove: &[String]) -> CommandResponse {
        let Some(task) = self.tasks.get(name) else {
            return rejected(Rejection::NoSuchTask { task: name.to_string() });
        };
        let mut secrets = task.spec.secrets.clone();
        secrets.retain(|s| !remove.contains(&s.name));
        let removed = task.spec.secrets.len() - secrets.len();
        for secret in set {
            match secrets.iter_mut().find(|s| s.name == secret.name) {
                Some(kept) => *kept = secret.clone(),
                None => secrets.push(secret.clone()),
            }
        }
        if secrets.len() > MAX_SECRETS {
            return CommandResponse::Count(0);
        }
        secrets.sort_by(|a, b| a.name.cmp(&b.name));
        self.change(name, |task| task.spec.secrets = secrets);
        CommandResponse::Count((removed + set.len()) as u64)
    }

    /// Applies owner changes whose expected epoch still holds, at once (the
    /// old owner is gone, or there was none). Cancels hand-offs.
    pub fn assign(&mut self, assignments: &[Assignment]) -> CommandResponse {
        let mut applied = 0;
        for a in assignments {
            let moved = self.change(&a.task, |task| {
                let current = task.epoch == a.expected_epoch;
                if current {
                    task.owner = a.owner;
                    task.epoch += 1;
                    task.handoff_to = None;
                }
                current
            });
            applied += u64::from(moved == Some(true));
        }
        CommandResponse::Count(applied)
    }

    /// Moves every running task of `from` (`None`: the running tasks not
    /// placed yet) at once, each to the node of `to` that runs the fewest
    /// tasks at that moment (ties to the lowest id), at epoch + 1; hand-offs
    /// of those tasks are cancelled. The leader proposes it when `from` is
    /// gone; which task goes where is decided here, as the entry is applied,
    /// so the entry stays a few bytes however many tasks move, and every
    /// node decides alike from the same state. Tasks that reached `from`
    /// after the leader's decision (a hand-off to it completing) move too.
    pub fn reassign_all(&mut self, from: Option<NodeId>, to: &[NodeId]) -> CommandResponse {
        let mut load: Vec<(usize, NodeId)> = to
            .iter()
            .filter(|node| Some(**node) != from)
            .map(|node| {
                (
                    self.index
                        .running_by_owner()
                        .get(&Some(*node))
                        .map_or(0, |tasks| tasks.len()),
                    *node,
                )
            })
            .collect();
        load.sort_unstable();
        load.dedup_by_key(|(_, node)| *node);
        if load.is_empty() {
            return CommandResponse::Count(0);
        }
        // The whole set of `from` moves at once: each name goes to its new
        // owner's set (no copy), and the sets are merged in one pass each.
        let moving = self.index.take_running(from);
        let count = moving.len();
        let mut placed: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        let index = &mut self.index;
        let mut place = |name: String, record: &mut Arc<TaskRecord>| {
            let least = load.iter_mut().min().expect("not empty");
            least.0 += 1;
            let task = Arc::make_mut(record);
            task.owner = Some(least.1);
            task.epoch += 1;
            if task.handoff_to.take().is_some() {
                index.handoff_cancelled(&name);
            }
            placed.entry(least.1).or_default().push(name);
        };
        if moving.len() * 8 < self.tasks.len() {
            for name in moving {
                let record = self.tasks.get_mut(&name).expect("a task of the table");
                place(name, record);
            }
        } else {
            // Many of the table's tasks, in name order as the table is: one
            // walk over it finds them all.
            let mut records = self.tasks.iter_mut();
            for name in moving {
                let record = records
                    .find_map(|(key, record)| (*key == name).then_some(record))
                    .expect("a task of the table");
                place(name, record);
            }
        }
        self.index.placed(placed);
        CommandResponse::Count(count as u64)
    }

    /// Starts hand-offs whose expected epoch still holds: the owner keeps the
    /// task until its current tick commits (or it yields the task between
    /// ticks), then the task moves with epoch + 1. A task without an owner
    /// is assigned at once. The epoch does not change yet, so a tick in
    /// flight still commits.
    pub fn hand_off(&mut self, assignments: &[Assignment]) -> CommandResponse {
        let mut applied = 0;
        for a in assignments {
            let started = self.change(&a.task, |task| {
                if task.epoch != a.expected_epoch || task.status != TaskStatus::Running || task.owner == a.owner {
                    return false;
                }
                if task.owner.is_none() {
                    task.owner = a.owner;
                    task.epoch += 1;
                } else {
                    task.handoff_to = a.owner;
                }
                true
            });
            applied += u64::from(started == Some(true));
        }
        CommandResponse::Count(applied)
    }

    /// The owner gives up a task it is handing off, between ticks: it moves
    /// to the hand-off's target with epoch + 1.
    pub fn yield_task(&mut self, name: &str, epoch: u64, node: NodeId) -> CommandResponse {
        self.change(name, |task| yield_task(task, name, epoch, node))
            .unwrap_or_else(|| rejected(Rejection::NoSuchTask { task: name.to_string() }))
    }

    /// The fence: commits a tick only from the current owner, at the current
    /// epoch, as the next tick, while the task runs.
    pub fn commit_tick(&mut self, commit: &TickCommit, rules: &Rules) -> CommandResponse {
        self.change(&commit.task, |task| commit_tick(task, commit, rules))
            .unwrap_or_else(|| {
                rejected(Rejection::NoSuchTask {
                    task: commit.task.clone(),
                })
            })
    }

    /// Running tasks whose next tick was due more than `grace_ms` before
    /// `now_ms`, the latest first. A task that has not ticked yet is due at
    /// once, with no time to be late from.
    pub fn overdue(&self, now_ms: u64, grace_ms: u64) -> Vec<Overdue> {
        let mut late: Vec<Overdue> = self
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Running && t.next_due_ms > 0)
            .filter(|t| now_ms > t.next_due_ms.saturating_add(grace_ms))
            .map(|t| Overdue {
                task: t.spec.name.clone(),
                owner: t.owner,
                late_ms: now_ms - t.next_due_ms,
            })
            .collect();
        late.sort_by(|a, b| b.late_ms.cmp(&a.late_ms).then_with(|| a.task.cmp(&b.task)));
        late
    }

    /// Ticks per second the running interval tasks ask for (cron tasks are
    /// not counted: their rate is not a field).
    pub fn due_per_second(&self) -> f64 {
        self.index.due_per_second()
    }

    /// Marks a task failed, if `epoch` is still its epoch.
    pub fn mark_failed(&mut self, name: &str, epoch: u64, reason: &str, version: u32) -> CommandResponse {
        let marked = self.change(name, |task| {
            if task.epoch != epoch {
                return rejected(Rejection::StaleEpoch {
                    task: name.to_string(),
                    proposed: epoch,
                    current: task.epoch,
                });
            }
            task.status = TaskStatus::Failed {
                reason: reason.to_string(),
            };
            task.failed_on = (version > 0).then_some(version);
            task.run_requested_ms = None;
            task.epoch += 1;
            task.handoff_to = None;
            CommandResponse::Done
        });
        marked.unwrap_or_else(|| rejected(Rejection::NoSuchTask { task: name.to_string() }))
    }

    /// Runs again, each at a new epoch, the tasks of `module` that its
    /// version `version` drove to failure (that version is being reverted).
    pub fn restart_failed_on(&mut self, module: &str, version: u32) {
        let failed: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.spec.module == module && t.failed_on == Some(version))
            .map(|t| t.spec.name.clone())
            .collect();
        for name in failed {
            self.change(&name, |task| {
                task.status = TaskStatus::Running;
                task.failed_on = None;
                task.epoch += 1;
                task.handoff_to = None;
                task.run_requested_ms = None;
            });
        }
    }
}

/// [`TaskTable::yield_task`] on the task's record.
fn yield_task(task: &mut TaskRecord, name: &str, epoch: u64, node: NodeId) -> CommandResponse {
    if task.epoch != epoch || task.owner != Some(node) {
        return rejected(Rejection::StaleOwner {
            task: name.to_string(),
            epoch: task.epoch,
            owner: task.owner,
            from_node: node,
            from_epoch: epoch,
            write: OwnedWrite::Yield,
        });
    }
    let Some(to) = task.handoff_to.take() else {
        return rejected(Rejection::NotHandedOff { task: name.to_string() });
    };
    task.owner = Some(to);
    task.epoch += 1;
    CommandResponse::Done
}

/// [`TaskTable::commit_tick`] on the task's record.
fn commit_tick(task: &mut TaskRecord, commit: &TickCommit, rules: &Rules) -> CommandResponse {
    // Off only in the chaos suite's test of its own teeth.
    let fenced = rules.fenced;
    if fenced && (commit.epoch != task.epoch || task.owner != Some(commit.node)) {
        return rejected(Rejection::StaleOwner {
            task: commit.task.clone(),
            epoch: task.epoch,
            owner: task.owner,
            from_node: commit.node,
            from_epoch: commit.epoch,
            write: OwnedWrite::Commit,
        });
    }
    if fenced && commit.tick != task.tick + 1 {
        return rejected(Rejection::OutOfOrder {
            task: commit.task.clone(),
            committed: task.tick,
            proposed: commit.tick,
        });
    }
    if task.status != TaskStatus::Running {
        return rejected(Rejection::NotRunning {
            task: commit.task.clone(),
            status: format!("{:?}", task.status),
        });
    }
    task.tick = commit.tick;
    task.state = commit.state.clone();
    task.state_version = commit.version;
    task.last_tick_at_ms = Some(commit.committed_at_ms);
    task.next_due_ms = commit.next_due_ms;
    // Any tick committed after the request serves it: one in flight when it
    // came, or the one it asked for.
    task.run_requested_ms = None;
    task.history.push(TickRecord {
        tick: commit.tick,
        epoch: commit.epoch,
        node: commit.node,
        committed_at_ms: commit.committed_at_ms,
        version: commit.version,
    });
    // A hand-off completes with the tick that was in flight.
    if let Some(to) = task.handoff_to.take() {
        task.owner = Some(to);
        task.epoch += 1;
    }
    CommandResponse::Done
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
