//! Views of the task table kept up to date as its records change, so that
//! the loops that run many times a second (placement on the leader, the
//! runner and the module fetcher on every node) look at the tasks that
//! matter to them rather than at every task. At 100,000 tasks a pass over
//! the table costs milliseconds, and these loops ran hundreds a second.
//!
//! Derived data: rebuilt from the records whenever a table is built, never
//! replicated or stored. [`TaskTable`](super::tasks::TaskTable) updates it
//! in the one place its records change.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::member::NodeId;
use crate::state::task_changes::TaskChanges;
use crate::state::tasks::{Schedule, TaskRecord, TaskStatus};

/// The fields of a record the index is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    owner: Option<NodeId>,
    epoch: u64,
    running: bool,
    handoff_to: Option<NodeId>,
    state_version: u32,
    run_requested_ms: Option<u64>,
}

impl Placement {
    pub(crate) fn of(task: &TaskRecord) -> Placement {
        Placement {
            owner: task.owner,
            epoch: task.epoch,
            running: task.status == TaskStatus::Running,
            handoff_to: task.handoff_to,
            state_version: task.state_version,
            run_requested_ms: task.run_requested_ms,
        }
    }

    /// Whether the runner and placement must look at the task again (a
    /// tick asked for now wakes its owner's worker).
    pub(crate) fn moved(&self, other: &Placement) -> bool {
        (
            self.owner,
            self.epoch,
            self.running,
            self.handoff_to,
            self.run_requested_ms,
        ) != (
            other.owner,
            other.epoch,
            other.running,
            other.handoff_to,
            other.run_requested_ms,
        )
    }
}

/// The most tasks [`TaskIndex::placed`] notes one by one in the change log.
const NOTE_EACH_UP_TO: usize = 4096;

/// The index.
#[derive(Debug, Clone, Default)]
pub struct TaskIndex {
    /// Running tasks by owner (`None`: not placed yet); no empty sets.
    running_by_owner: BTreeMap<Option<NodeId>, BTreeSet<String>>,
    /// Running tasks with a hand-off in progress.
    handing_off: BTreeSet<String>,
    /// How many tasks hold a state each (module, version) wrote.
    state_versions: BTreeMap<(String, u32), usize>,
    /// How many running tasks tick every so many milliseconds.
    periods: BTreeMap<u64, usize>,
    changes: TaskChanges,
}

impl TaskIndex {
    pub(crate) fn build<'a>(tasks: impl IntoIterator<Item = &'a TaskRecord>) -> TaskIndex {
        let mut index = TaskIndex::default();
        for task in tasks {
            index.add(task, Placement::of(task));
        }
        index
    }

    /// Counts a new record in.
    pub(crate) fn inserted(&mut self, task: &TaskRecord) {
        self.add(task, Placement::of(task));
        self.changes.note(&task.spec.name);
    }

    /// Counts a removed record out.
    pub(crate) fn removed(&mut self, task: &TaskRecord) {
        self.subtract(task, Placement::of(task));
        self.changes.note(&task.spec.name);
    }

    /// Moves a record that was at `before` to where it is now, touching
    /// only the views whose key changed (a reassignment changes owners and
    /// epochs of thousands of tasks in one entry, on every node).
    pub(crate) fn changed(&mut self, task: &TaskRecord, before: Placement) {
        let after = Placement::of(task);
        if before == after {
            return;
        }
        let name = &task.spec.name;
        if (before.owner, before.running) != (after.owner, after.running) {
            if before.running {
                self.remove_running(before.owner, name);
            }
            if after.running {
                self.running_by_owner
                    .entry(after.owner)
                    .or_default()
                    .insert(name.clone());
            }
        }
        let handing_off = |p: &Placement| p.running && p.handoff_to.is_some();
        match (handing_off(&before), handing_off(&after)) {
            (false, true) => {
                self.handing_off.insert(name.clone());
            }
            (true, false) => {
                self.handing_off.remove(name);
            }
            _ => {}
        }
        if before.running != after.running
            && let Some(period) = period_ms(task)
        {
            match after.running {
                true => *self.periods.entry(period).or_default() += 1,
                false => decrement(&mut self.periods, &period),
            }
        }
        if before.state_version != after.state_version {
            let module = &task.spec.module;
            decrement(&mut self.state_versions, &(module.clone(), before.state_version));
            *self
                .state_versions
                .entry((module.clone(), after.state_version))
                .or_default() += 1;
        }
        if before.moved(&after) {
            self.changes.note(name);
        }
    }

    /// Takes every running task of `owner` out, to be put back by
    /// [`TaskIndex::placed`] once each has its new owner: a lost node's
    /// tasks move as one set rather than one name at a time.
    pub(crate) fn take_running(&mut self, owner: Option<NodeId>) -> BTreeSet<String> {
        self.running_by_owner.remove(&owner).unwrap_or_default()
    }

    /// A task taken by [`TaskIndex::take_running`] is no longer handed off.
    pub(crate) fn handoff_cancelled(&mut self, name: &str) {
        self.handing_off.remove(name);
    }

    /// Puts back the tasks [`TaskIndex::take_running`] took, now running on
    /// their new owners (each owner's names in order). Their epochs rose,
    /// so the change log notes them; more than [`NOTE_EACH_UP_TO`] at once
    /// start a new generation of it instead, as cheap for its readers (they
    /// look at their tasks once) and with no name copied.
    pub(crate) fn placed(&mut self, placed: BTreeMap<NodeId, Vec<String>>) {
        let count: usize = placed.values().map(Vec::len).sum();
        let note_each = count <= NOTE_EACH_UP_TO;
        for (owner, names) in placed {
            if note_each {
                names.iter().for_each(|name| self.changes.note(name));
            }
            // Sorted names build a set in one pass, and two sets merge in one.
            let mut names: BTreeSet<String> = names.into_iter().collect();
            self.running_by_owner.entry(Some(owner)).or_default().append(&mut names);
        }
        if !note_each {
            self.changes.note_all();
        }
    }

    fn remove_running(&mut self, owner: Option<NodeId>, name: &str) {
        if let Some(set) = self.running_by_owner.get_mut(&owner) {
            set.remove(name);
            if set.is_empty() {
                self.running_by_owner.remove(&owner);
            }
        }
    }

    fn add(&mut self, task: &TaskRecord, at: Placement) {
        let name = &task.spec.name;
        if at.running {
            self.running_by_owner.entry(at.owner).or_default().insert(name.clone());
            if at.handoff_to.is_some() {
                self.handing_off.insert(name.clone());
            }
            if let Some(period) = period_ms(task) {
                *self.periods.entry(period).or_default() += 1;
            }
        }
        *self
            .state_versions
            .entry((task.spec.module.clone(), at.state_version))
            .or_default() += 1;
    }

    fn subtract(&mut self, task: &TaskRecord, at: Placement) {
        let name = &task.spec.name;
        if at.running {
            self.remove_running(at.owner, name);
            self.handing_off.remove(name);
            if let Some(period) = period_ms(task) {
                decrement(&mut self.periods, &period);
            }
        }
        decrement(&mut self.state_versions, &(task.spec.module.clone(), at.state_version));
    }

    /// Running tasks by owner (`None`: not placed yet), each with at least one.
    pub fn running_by_owner(&self) -> &BTreeMap<Option<NodeId>, BTreeSet<String>> {
        &self.running_by_owner
    }

    /// The running tasks node `owner` owns.
    pub fn running_on(&self, owner: Option<NodeId>) -> impl DoubleEndedIterator<Item = &str> {
        self.running_by_owner
            .get(&owner)
            .into_iter()
            .flat_map(|set| set.iter().map(String::as_str))
    }

    /// Running tasks with a hand-off in progress.
    pub fn handing_off(&self) -> &BTreeSet<String> {
        &self.handing_off
    }

    /// The (module, version) pairs that wrote some task's state, with how
    /// many tasks hold such a state (version 0: none yet).
    pub fn state_versions(&self) -> &BTreeMap<(String, u32), usize> {
        &self.state_versions
    }

    /// Ticks per second the running interval tasks ask for.
    pub fn due_per_second(&self) -> f64 {
        self.periods
            .iter()
            .map(|(period, count)| *count as f64 * 1000.0 / *period as f64)
            .sum()
    }

    /// The tasks whose placement changed, for readers that keep a cursor.
    pub fn changes(&self) -> &TaskChanges {
        &self.changes
    }

    /// Whether this index says what one built from `tasks` would: for tests.
    #[cfg(test)]
    pub(crate) fn agrees_with<'a>(&self, tasks: impl IntoIterator<Item = &'a TaskRecord>) -> bool {
        let fresh = TaskIndex::build(tasks);
        (
            &self.running_by_owner,
            &self.handing_off,
            &self.state_versions,
            &self.periods,
        ) == (
            &fresh.running_by_owner,
            &fresh.handing_off,
            &fresh.state_versions,
            &fresh.periods,
        )
    }
}

fn period_ms(task: &TaskRecord) -> Option<u64> {
    match task.spec.schedule {
        Schedule::EveryMs(ms) if ms > 0 => Some(ms),
        _ => None,
    }
}

fn decrement<K: Ord>(counts: &mut BTreeMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}
