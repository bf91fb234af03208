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
    /// Tasks without an owner (new ones) were placed.
    Placed,
    /// Tasks given new owners at once, one by one: hand-offs their owners
    /// did not finish in time (below cluster version 5, also new tasks and
    /// a lost node's).
    Moved,
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
    SecretsResealed,
    SecretsSet,
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
            EventKind::Moved => "moved",
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
            EventKind::SecretsResealed => "secrets-resealed",
            EventKind::SecretsSet => "secrets-set",
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
///
/// `handed_off` are the tasks whose hand-off the entry's tick commits
/// completed, by the node that let them go: a commit of a task being
/// handed off moves it with the tick, which only the state before the
/// commit tells (the applying shell reads it, as it reads each commit's
/// due time).
pub fn of_command(
    command: &Command,
    response: &CommandResponse,
    after: &ClusterState,
    handed_off: BTreeMap<NodeId, Vec<String>>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut yields = handed_off;
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
        EventKind::TaskFailed,
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
            EventKind::TaskFailed => "failed",
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
        // A commit that completes a hand-off is in `handed_off`.
        Command::Put { .. } | Command::Delete { .. } | Command::CommitTick(_) => return,
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
        Command::ResealSecrets(changes) if changed => {
            let keys: std::collections::BTreeSet<&str> = changes.iter().map(|c| c.secret.key_id.as_str()).collect();
            let keys: Vec<&str> = keys.into_iter().collect();
            let n = count.unwrap_or_default();
            Event::new(
                EventKind::SecretsResealed,
                format!("{n} task secret(s) sealed again with key {}", keys.join(", ")),
            )
        }
        Command::SetSecrets { task, set, remove } => {
            let names = |list: Vec<&str>| match list.is_empty() {
                true => "none".to_string(),
                false => list.join(", "),
            };
            let set: Vec<&str> = set.iter().map(|s| s.name.as_str()).collect();
            let removed: Vec<&str> = remove.iter().map(String::as_str).collect();
            Event::new(
                EventKind::SecretsSet,
                format!("task {task}'s secrets set: {}; removed: {}", names(set), names(removed)),
            )
            .about(task)
        }
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
                EventKind::Moved,
                format!("{} given a new owner at once: {}", tasks(total), per_node(&by_owner)),
            )
        }
        Command::ReassignAll { from: Some(node), to } if changed => Event::new(
            EventKind::Failover,
            format!(
                "node {node} is gone (its lease ended, it exited, or it was removed): its {} moved at once, \
                 spread over {}",
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
            // Those now waiting for their owner's current tick, by (owner,
            // new owner). (A task without an owner moves at once.)
            let mut moves: BTreeMap<(NodeId, NodeId), u64> = BTreeMap::new();
            for a in assignments {
                let Some(task) = after.tasks.get(&a.task) else { continue };
                if let (Some(from), Some(to)) = (task.owner, task.handoff_to.filter(|to| a.owner == Some(*to))) {
                    *moves.entry((from, to)).or_default() += 1;
                }
            }
            if moves.is_empty() {
                return;
            }
            let total: u64 = moves.values().sum();
            let each = moves
                .iter()
                .map(|((from, to), n)| format!("{n} from node {from} to node {to}"))
                .collect::<Vec<_>>()
                .join(", ");
            Event::new(
                EventKind::HandOff,
                format!("{} to move, each after its current tick: {each}", tasks(total)),
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
            // The same bytes as the current version: nothing recorded.
            if recorded != module.version {
                return;
            }
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
            // A revert that could not be made halted the rollout instead.
            let halted = after.rollouts.get(module).and_then(|r| match &r.state {
                super::rollouts::RolloutState::Halted { reason } => Some(reason.clone()),
                _ => None,
            });
            let how = match (finish, halted) {
                (Finish::Done, _) => "done".to_string(),
                (_, Some(why)) => format!("halted: {why}"),
                (Finish::Revert { reason }, None) => format!("reverted: {reason}"),
                (Finish::Abort, None) => "aborted".to_string(),
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
        | Command::SetClusterVersion { .. }
        | Command::ResealSecrets(_) => return,
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

    fn told(command: &Command, response: &CommandResponse, after: &ClusterState) -> Vec<Event> {
        of_command(command, response, after, BTreeMap::new())
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
        let events = told(&command, &CommandResponse::Count(2), &after);
        assert_eq!(
            texts(&events),
            [
                "failover: node 2 is gone (its lease ended, it exited, or it was removed): its 2 tasks moved at \
                 once, spread over nodes 1, 3"
            ]
        );
        assert_eq!(events[0].node, Some(2));
        assert_eq!(events[0].at_ms, None, "the applying node times it");
        // Nothing moved: nothing to tell.
        assert!(told(&command, &CommandResponse::Count(0), &after).is_empty());
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
            texts(&told(&batch, &response, &after)),
            [
                "moved: 2 tasks given a new owner at once: 1 to node 1, 1 to node 2",
                "handed-off: node 3 handed off 2 tasks",
            ]
        );
    }

    #[test]
    fn hand_offs_completed_by_tick_commits_are_told_with_the_yields() {
        let after = ClusterState::default();
        let yield_b = Command::YieldTask {
            name: "b".into(),
            epoch: 1,
            node: 1,
        };
        let by_commit = BTreeMap::from([(1, vec!["a".to_string()]), (2, vec!["c".to_string()])]);
        let events = of_command(&yield_b, &CommandResponse::Count(1), &after, by_commit);
        assert_eq!(
            texts(&events),
            [
                "handed-off: node 1 handed off 2 tasks",
                "handed-off: node 2 handed off task c"
            ]
        );
    }

    #[test]
    fn a_refused_command_tells_nothing_and_proposal_times_are_kept() {
        let after = ClusterState::default();
        let refused = CommandResponse::Rejected(Rejection::NoSuchTask { task: "x".into() });
        let run = Command::RunNow {
            name: "x".into(),
            now_ms: 1_790_000_000_000,
        };
        assert!(told(&run, &refused, &after).is_empty());
        let events = told(&run, &CommandResponse::Count(1), &after);
        assert_eq!(events[0].at_ms, Some(1_790_000_000_000));
        assert_eq!(events[0].subject, "x");
        assert_eq!(texts(&events), ["run-now: task x asked to run now"]);
    }

    #[test]
    fn drains_and_rollouts_read_as_sentences() {
        let after = ClusterState::default();
        let drain = Command::SetDrained { node: 2, drained: true };
        assert_eq!(
            texts(&told(&drain, &CommandResponse::Count(1), &after)),
            ["drained: node 2 drained: its tasks move off it"]
        );
        assert!(told(&drain, &CommandResponse::Count(0), &after).is_empty());
        let finish = Command::RolloutFinish {
            module: "counter".into(),
            version: 2,
            finish: Finish::Revert {
                reason: "12 failed ticks".into(),
            },
            now_ms: 5,
        };
        assert_eq!(
            texts(&told(&finish, &CommandResponse::Count(1), &after)),
            ["rollout-finished: rollout of counter version 2 reverted: 12 failed ticks"]
        );
    }

    #[test]
    fn a_hand_off_names_where_each_task_leaves_from_and_goes() {
        let mut after = state_with(&[("a", Some(1)), ("b", Some(1)), ("c", Some(3))]);
        let moves: Vec<Assignment> = ["a", "b", "c"]
            .iter()
            .map(|name| Assignment {
                task: name.to_string(),
                owner: Some(2),
                expected_epoch: after.tasks.get(name).unwrap().epoch,
            })
            .collect();
        let response = after.tasks.hand_off(&moves);
        assert_eq!(
            texts(&told(&Command::HandOff(moves), &response, &after)),
            [
                "hand-off: 3 tasks to move, each after its current tick: 2 from node 1 to node 2, 1 from node 3 to node 2"
            ]
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
        let events = told(
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
        let events = told(
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
