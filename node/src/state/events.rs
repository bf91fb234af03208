//! What happened in the cluster, as `batonctl events` tells it: failovers,
//! placements, hand-offs, drains, leaders, member changes, rollout and
//! upgrade steps, task changes. Each event is read off a log entry as it is
//! applied, so every node tells the same story in the same order, numbered
//! by log index; nothing here is replicated or stored.
//!
//! The rules are pure: a command, what applying it answered, and the state
//! after it.

use std::collections::BTreeMap;

use super::cluster::ClusterState;
use super::rollouts::{Finish, RolloutAction};
use crate::types::{Command, CommandResponse, NodeId};

/// What kind of change an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A node started leading a term.
    Leader,
    /// The membership changed.
    Members,
    /// A node's tasks moved at once to others: its lease ended or its
    /// process was seen to exit.
    Failover,
    /// Tasks without an owner (new ones, or a removed node's) were placed.
    Placed,
    /// Tasks were asked to move after their current tick.
    HandOff,
    /// An owner let go of tasks it was handing off (between ticks, or with
    /// the commit of the tick in flight).
    HandedOff,
    Drained,
    Undrained,
    TaskAdded,
    TaskRemoved,
    TaskPaused,
    TaskResumed,
    TaskFailed,
    RunNow,
    ModuleReleased,
    RolloutStep,
    RolloutControl,
    RolloutFinished,
    ClusterVersion,
    UpgradeStarted,
    UpgradeStep,
    UpgradeControl,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Leader => "leader",
            EventKind::Members => "members",
            EventKind::Failover => "failover",
            EventKind::Placed => "placed",
            EventKind::HandOff => "hand-off",
            EventKind::HandedOff => "handed-off",
            EventKind::Drained => "drained",
            EventKind::Undrained => "undrained",
            EventKind::TaskAdded => "task-added",
            EventKind::TaskRemoved => "task-removed",
            EventKind::TaskPaused => "task-paused",
            EventKind::TaskResumed => "task-resumed",
            EventKind::TaskFailed => "task-failed",
            EventKind::RunNow => "run-now",
            EventKind::ModuleReleased => "module-released",
            EventKind::RolloutStep => "rollout-step",
            EventKind::RolloutControl => "rollout-control",
            EventKind::RolloutFinished => "rollout-finished",
            EventKind::ClusterVersion => "cluster-version",
            EventKind::UpgradeStarted => "upgrade-started",
            EventKind::UpgradeStep => "upgrade-step",
            EventKind::UpgradeControl => "upgrade-control",
        }
    }
}

/// One change, as read off one log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// When it was proposed, for the commands that carry their time; the
    /// applying node sets the others'.
    pub at_ms: Option<u64>,
    /// The node it is about, if one.
    pub node: Option<NodeId>,
    /// The task or module it is about, if one.
    pub subject: String,
    /// What happened, in a sentence.
    pub text: String,
}

impl Event {
    fn new(kind: EventKind, text: String) -> Self {
        Event {
            kind,
            at_ms: None,
            node: None,
            subject: String::new(),
            text,
        }
    }

    fn at(mut self, at_ms: u64) -> Self {
        self.at_ms = Some(at_ms);
        self
    }

    fn node(mut self, node: NodeId) -> Self {
        self.node = Some(node);
        self
    }

    fn about(mut self, subject: &str) -> Self {
        self.subject = subject.to_string();
        self
    }
}

/// The events of applying `command`, which answered `response` and left the
/// state `after`. A refused command changed nothing and tells nothing.
pub fn of_command(command: &Command, response: &CommandResponse, after: &ClusterState) -> Vec<Event> {
    let mut events = Vec::new();
    let mut yields = BTreeMap::new();
    collect(command, response, after, &mut events, &mut yields);
    // An owner's yields come in many small commands: one event per owner.
    for (node, tasks) in yields {
        let text = match tasks.as_slice() {
            [one] => format!("node {node} handed off task {one}"),
            many => format!("node {node} handed off {} tasks", many.len()),
        };
        events.push(Event::new(EventKind::HandedOff, text).node(node));
    }
    merge_task_changes(events)
}

/// Task changes of one kind past [`MERGED_PAST`] in one entry (a script
/// adding a thousand tasks, batched by the proposer) become one event, so
/// that they do not push the failovers out of the kept events.
const MERGED_PAST: usize = 5;
/// Names shown in a merged event.
const NAMES_SHOWN: usize = 3;

fn merge_task_changes(events: Vec<Event>) -> Vec<Event> {
    let merged_kinds = [
        EventKind::TaskAdded,
        EventKind::TaskRemoved,
        EventKind::TaskPaused,
        EventKind::TaskResumed,
        EventKind::RunNow,
    ];
    let many = |kind: EventKind| events.iter().filter(|e| e.kind == kind).count() > MERGED_PAST;
    let to_merge: Vec<EventKind> = merged_kinds.into_iter().filter(|k| many(*k)).collect();
    if to_merge.is_empty() {
        return events;
    }
    let mut out = Vec::new();
    for kind in merged_kinds.iter().filter(|k| to_merge.contains(k)) {
        let names: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == *kind)
            .map(|e| e.subject.as_str())
            .collect();
        let verb = match kind {
            EventKind::TaskAdded => "added",
            EventKind::TaskRemoved => "removed",
            EventKind::TaskPaused => "paused",
            EventKind::TaskResumed => "resumed",
            _ => "asked to run now",
        };
        let at_ms = events.iter().find(|e| e.kind == *kind).and_then(|e| e.at_ms);
        let mut event = Event::new(
            *kind,
            format!(
                "{} tasks {verb}: {} and {} more",
                names.len(),
                names[..NAMES_SHOWN].join(", "),
                names.len() - NAMES_SHOWN
            ),
        );
        event.at_ms = at_ms;
        out.push(event);
    }
    out.extend(events.into_iter().filter(|e| !to_merge.contains(&e.kind)));
    out
}

fn collect(
    command: &Command,
    response: &CommandResponse,
    after: &ClusterState,
    events: &mut Vec<Event>,
    yields: &mut BTreeMap<NodeId, Vec<String>>,
) {
    if matches!(response, CommandResponse::Rejected(_)) {
        return;
    }
    let count = match response {
        CommandResponse::Count(n) => Some(*n),
        _ => None,
    };
    let changed = count != Some(0);
    let event = match command {
        Command::Batch(commands) => {
            let CommandResponse::Batch(responses) = response else {
                return;
            };
            for (command, response) in commands.iter().zip(responses) {
                collect(command, response, after, events, yields);
            }
            return;
        }
        Command::Put { .. } | Command::Delete { .. } => return,
        Command::CommitTick(commit) => {
            // A task being handed off moves with the commit of its tick in
            // flight: to a new owner, at the next epoch.
            let moved = after.tasks.get(&commit.task).is_some_and(|t| {
                t.tick == commit.tick && t.epoch == commit.epoch + 1 && t.owner.is_some_and(|o| o != commit.node)
            });
            if moved {
                yields.entry(commit.node).or_default().push(commit.task.clone());
            }
            return;
        }
        Command::AddTask(spec) => Event::new(
            EventKind::TaskAdded,
            format!("task {} added, module {}", spec.name, spec.module),
        )
        .about(&spec.name),
        Command::RemoveTask { name } => Event::new(EventKind::TaskRemoved, format!("task {name} removed")).about(name),
        Command::SetTaskStatus { name, status } => {
            let kind = match status {
                super::tasks::TaskStatus::Running => EventKind::TaskResumed,
                super::tasks::TaskStatus::Paused => EventKind::TaskPaused,
                super::tasks::TaskStatus::Failed { .. } => EventKind::TaskFailed,
            };
            let verb = match kind {
                EventKind::TaskResumed => "resumed",
                EventKind::TaskPaused => "paused",
                _ => "failed",
            };
            Event::new(kind, format!("task {name} {verb}")).about(name)
        }
        Command::MarkTaskFailed { name, reason, .. } if changed => {
            Event::new(EventKind::TaskFailed, format!("task {name} failed: {reason}")).about(name)
        }
        Command::RunNow { name, now_ms } => Event::new(EventKind::RunNow, format!("task {name} asked to run now"))
            .about(name)
            .at(*now_ms),
        Command::AssignOwners(assignments) if changed => {
            // The tasks now owned as assigned, by owner.
            let mut by_owner: BTreeMap<NodeId, u64> = BTreeMap::new();
            for a in assignments {
                if let Some(owner) = a
                    .owner
                    .filter(|o| after.tasks.get(&a.task).and_then(|t| t.owner) == Some(*o))
                {
                    *by_owner.entry(owner).or_default() += 1;
                }
            }
            let total: u64 = by_owner.values().sum();
            Event::new(
                EventKind::Placed,
                format!("{} placed at once: {}", tasks(total), per_node(&by_owner)),
            )
        }
        Command::ReassignAll { from: Some(node), to } if changed => Event::new(
            EventKind::Failover,
            format!(
                "node {node} lost {} (its lease ended or it exited): moved at once to {}",
                tasks(count.unwrap_or(0)),
                nodes(to)
            ),
        )
        .node(*node),
        Command::ReassignAll { from: None, to } if changed => Event::new(
            EventKind::Placed,
            format!("{} without an owner placed on {}", tasks(count.unwrap_or(0)), nodes(to)),
        ),
        Command::HandOff(assignments) if changed => {
            let mut by_owner: BTreeMap<NodeId, u64> = BTreeMap::new();
            for a in assignments {
                if let Some(to) = a
                    .owner
                    .filter(|o| after.tasks.get(&a.task).and_then(|t| t.handoff_to) == Some(*o))
                {
                    *by_owner.entry(to).or_default() += 1;
                }
            }
            Event::new(
                EventKind::HandOff,
                format!(
                    "{} to move, each after its current tick: {}",
                    tasks(count.unwrap_or(0)),
                    per_node(&by_owner)
                ),
            )
        }
        Command::YieldTask { name, node, .. } if changed => {
            yields.entry(*node).or_default().push(name.clone());
            return;
        }
        Command::SetDrained { node, drained } if changed => match drained {
            true => Event::new(
                EventKind::Drained,
                format!("node {node} drained: its tasks move off it"),
            ),
            false => Event::new(
                EventKind::Undrained,
                format!("node {node} undrained: it takes tasks again"),
            ),
        }
        .node(*node),
        Command::DeployModule(module) => Event::new(
            EventKind::ModuleReleased,
            format!("module {} version {} deployed", module.name, module.version),
        )
        .about(&module.name),
        Command::AddRelease { module, now_ms, .. } => {
            let recorded = match response {
                CommandResponse::Module(m) => m.version,
                _ => module.version,
            };
            let text = match after.rollouts.get(&module.name) {
                Some(r) if r.release.version == recorded && recorded > 1 => {
                    format!("module {} version {recorded} released: its rollout starts", module.name)
                }
                _ => format!("module {} version {recorded} released", module.name),
            };
            Event::new(EventKind::ModuleReleased, text)
                .about(&module.name)
                .at(*now_ms)
        }
        Command::RolloutStep {
            module,
            version,
            switch,
            now_ms,
        } => Event::new(
            EventKind::RolloutStep,
            format!("rollout of {module} version {version}: {} switched", nodes(switch)),
        )
        .about(module)
        .at(*now_ms),
        Command::RolloutControl { module, action, now_ms } => {
            let what = match action {
                RolloutAction::Pause => "paused".to_string(),
                RolloutAction::Resume => "resumed".to_string(),
                RolloutAction::Halt { reason } => format!("halted: {reason}"),
            };
            Event::new(EventKind::RolloutControl, format!("rollout of {module} {what}"))
                .about(module)
                .at(*now_ms)
        }
        Command::RolloutFinish {
            module,
            version,
            finish,
            now_ms,
        } => {
            let how = match finish {
                Finish::Done => "done".to_string(),
                Finish::Revert { reason } => format!("reverted: {reason}"),
                Finish::Abort => "aborted".to_string(),
            };
            Event::new(
                EventKind::RolloutFinished,
                format!("rollout of {module} version {version} {how}"),
            )
            .about(module)
            .at(*now_ms)
        }
        Command::SetClusterVersion { version } if changed => Event::new(
            EventKind::ClusterVersion,
            format!("cluster version raised to {version}"),
        ),
        Command::StartUpgrade { now_ms, .. } => Event::new(EventKind::UpgradeStarted, command.to_string()).at(*now_ms),
        Command::UpgradePhase { node, now_ms, .. } => Event::new(EventKind::UpgradeStep, command.to_string())
            .node(*node)
            .at(*now_ms),
        Command::UpgradeControl { now_ms, .. } => {
            Event::new(EventKind::UpgradeControl, command.to_string()).at(*now_ms)
        }
        // Changed nothing.
        Command::MarkTaskFailed { .. }
        | Command::AssignOwners(_)
        | Command::ReassignAll { .. }
        | Command::HandOff(_)
        | Command::YieldTask { .. }
        | Command::SetDrained { .. }
        | Command::SetClusterVersion { .. } => return,
    };
    events.push(event);
}

/// The event of a membership entry: who is a voter and who a learner now,
/// against `before`.
pub fn of_membership(before: (&[NodeId], &[NodeId]), after: (&[NodeId], &[NodeId])) -> Option<Event> {
    if before == after {
        return None;
    }
    let (voters, learners) = after;
    let mut changes = Vec::new();
    for id in voters.iter().chain(learners) {
        let role = if voters.contains(id) { "voter" } else { "learner" };
        let was = if before.0.contains(id) {
            Some("voter")
        } else if before.1.contains(id) {
            Some("learner")
        } else {
            None
        };
        match was {
            None => changes.push(format!("node {id} joined as a {role}")),
            Some(was) if was != role => changes.push(format!("node {id} became a {role}")),
            Some(_) => {}
        }
    }
    for id in before.0.iter().chain(before.1) {
        if !voters.contains(id) && !learners.contains(id) {
            changes.push(format!("node {id} left"));
        }
    }
    let text = format!(
        "{}; voters {}{}",
        if changes.is_empty() {
            "membership changed".to_string()
        } else {
            changes.join(", ")
        },
        list(voters),
        if learners.is_empty() {
            String::new()
        } else {
            format!(", learners {}", list(learners))
        }
    );
    Some(Event::new(EventKind::Members, text))
}

/// The event of a new leader's first entry.
pub fn of_leader(node: NodeId, term: u64) -> Event {
    Event::new(EventKind::Leader, format!("node {node} leads, term {term}")).node(node)
}

fn tasks(n: u64) -> String {
    match n {
        1 => "1 task".to_string(),
        n => format!("{n} tasks"),
    }
}

fn nodes(ids: &[NodeId]) -> String {
    match ids {
        [one] => format!("node {one}"),
        many => format!("nodes {}", list(many)),
    }
}

fn list(ids: &[NodeId]) -> String {
    ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
}

fn per_node(by_owner: &BTreeMap<NodeId, u64>) -> String {
    by_owner
        .iter()
        .map(|(node, n)| format!("{} to node {node}", n))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::rejection::Rejection;
    use crate::state::tasks::{Assignment, TaskSpec};

    fn state_with(tasks: &[(&str, Option<NodeId>)]) -> ClusterState {
        let mut state = ClusterState::default();
        for (name, owner) in tasks {
            state.tasks.add(TaskSpec::counter_every_second(name));
            if owner.is_some() {
                state.tasks.assign(&[Assignment {
                    task: name.to_string(),
                    owner: *owner,
                    expected_epoch: 0,
                }]);
            }
        }
        state
    }

    fn texts(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{}: {}", e.kind.name(), e.text))
            .collect()
    }

    #[test]
    fn a_failover_names_the_lost_node_the_count_and_where_they_went() {
        let after = state_with(&[("a", Some(1)), ("b", Some(3))]);
        let command = Command::ReassignAll {
            from: Some(2),
            to: vec![1, 3],
        };
        let events = of_command(&command, &CommandResponse::Count(2), &after);
        assert_eq!(
            texts(&events),
            ["failover: node 2 lost 2 tasks (its lease ended or it exited): moved at once to nodes 1, 3"]
        );
        assert_eq!(events[0].node, Some(2));
        assert_eq!(events[0].at_ms, None, "the applying node times it");
        // Nothing moved: nothing to tell.
        assert!(of_command(&command, &CommandResponse::Count(0), &after).is_empty());
    }

    #[test]
    fn a_batch_tells_each_change_and_an_owners_yields_once() {
        let after = state_with(&[("a", Some(1)), ("b", Some(1)), ("c", Some(2))]);
        let assign = Command::AssignOwners(vec![
            Assignment {
                task: "a".into(),
                owner: Some(1),
                expected_epoch: 0,
            },
            Assignment {
                task: "c".into(),
                owner: Some(2),
                expected_epoch: 0,
            },
        ]);
        let yield_of = |name: &str| Command::YieldTask {
            name: name.into(),
            epoch: 1,
            node: 3,
        };
        let batch = Command::Batch(
            vec![
                assign,
                yield_of("a"),
                yield_of("b"),
                Command::Put {
                    key: "k".into(),
                    value: vec![],
                },
            ]
            .into(),
        );
        let response = CommandResponse::Batch(vec![
            CommandResponse::Count(2),
            CommandResponse::Count(1),
            CommandResponse::Count(1),
            CommandResponse::Previous(None),
        ]);
        assert_eq!(
            texts(&of_command(&batch, &response, &after)),
            [
                "placed: 2 tasks placed at once: 1 to node 1, 1 to node 2",
                "handed-off: node 3 handed off 2 tasks",
            ]
        );
    }

    #[test]
    fn a_hand_off_completed_by_a_tick_commit_is_told_as_handed_off() {
        let after = state_with(&[("a", Some(2))]);
        let (epoch, tick) = after.tasks.get("a").map(|t| (t.epoch, t.tick)).unwrap();
        let commit = |epoch: u64, node: NodeId| {
            Command::CommitTick(crate::state::tasks::TickCommit {
                task: "a".into(),
                epoch,
                tick,
                node,
                state: Vec::new(),
                next_due_ms: 0,
                committed_at_ms: 0,
                version: 1,
            })
        };
        let ok = CommandResponse::Done;
        assert_eq!(
            texts(&of_command(&commit(epoch - 1, 1), &ok, &after)),
            ["handed-off: node 1 handed off task a"]
        );
        // An ordinary commit by the owner tells nothing.
        assert!(of_command(&commit(epoch, 2), &ok, &after).is_empty());
    }

    #[test]
    fn a_refused_command_tells_nothing_and_proposal_times_are_kept() {
        let after = ClusterState::default();
        let refused = CommandResponse::Rejected(Rejection::NoSuchTask { task: "x".into() });
        let run = Command::RunNow {
            name: "x".into(),
            now_ms: 1_790_000_000_000,
        };
        assert!(of_command(&run, &refused, &after).is_empty());
        let events = of_command(&run, &CommandResponse::Count(1), &after);
        assert_eq!(events[0].at_ms, Some(1_790_000_000_000));
        assert_eq!(events[0].subject, "x");
        assert_eq!(texts(&events), ["run-now: task x asked to run now"]);
    }

    #[test]
    fn drains_and_rollouts_read_as_sentences() {
        let after = ClusterState::default();
        let drain = Command::SetDrained { node: 2, drained: true };
        assert_eq!(
            texts(&of_command(&drain, &CommandResponse::Count(1), &after)),
            ["drained: node 2 drained: its tasks move off it"]
        );
        assert!(of_command(&drain, &CommandResponse::Count(0), &after).is_empty());
        let finish = Command::RolloutFinish {
            module: "counter".into(),
            version: 2,
            finish: Finish::Revert {
                reason: "12 failed ticks".into(),
            },
            now_ms: 5,
        };
        assert_eq!(
            texts(&of_command(&finish, &CommandResponse::Count(1), &after)),
            ["rollout-finished: rollout of counter version 2 reverted: 12 failed ticks"]
        );
    }

    #[test]
    fn many_task_changes_in_one_entry_are_one_event() {
        let after = ClusterState::default();
        let adds: Vec<Command> = (0..40)
            .map(|i| Command::AddTask(TaskSpec::counter_every_second(&format!("job-{i}"))))
            .collect();
        let responses = vec![CommandResponse::Count(1); 40];
        let mut commands = adds;
        commands.push(Command::SetDrained { node: 3, drained: true });
        let mut responses = responses;
        responses.push(CommandResponse::Count(1));
        let events = of_command(
            &Command::Batch(commands.into()),
            &CommandResponse::Batch(responses),
            &after,
        );
        assert_eq!(
            texts(&events),
            [
                "task-added: 40 tasks added: job-0, job-1, job-2 and 37 more",
                "drained: node 3 drained: its tasks move off it",
            ]
        );
        // A few stay one event each.
        let few: Vec<Command> = (0..3)
            .map(|i| Command::AddTask(TaskSpec::counter_every_second(&format!("job-{i}"))))
            .collect();
        let events = of_command(
            &Command::Batch(few.into()),
            &CommandResponse::Batch(vec![CommandResponse::Count(1); 3]),
            &after,
        );
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn membership_changes_name_who_joined_was_promoted_or_left() {
        let event = of_membership((&[1, 2, 3], &[]), (&[1, 2, 3], &[4])).unwrap();
        assert_eq!(event.text, "node 4 joined as a learner; voters 1, 2, 3, learners 4");
        let event = of_membership((&[1, 2, 3], &[4]), (&[1, 2, 4], &[])).unwrap();
        assert_eq!(event.text, "node 4 became a voter, node 3 left; voters 1, 2, 4");
        assert!(of_membership((&[1], &[]), (&[1], &[])).is_none());
        assert_eq!(of_leader(2, 7).text, "node 2 leads, term 7");
    }
}
