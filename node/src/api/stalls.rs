//! What `status` reports as stalled: a commit index that stands still while
//! entries wait, a member whose replication stands still, running tasks
//! whose next tick is long overdue. Each with the reason when one is known
//! (the last error of a replication call), so that a stuck cluster never
//! reads as "up" and "running".

use std::collections::BTreeMap;

use baton_proto::Stall;

use super::NodeContext;
use crate::raft::{RaftStall, STALL_AFTER_MS};
use crate::state::tasks::Overdue;
use crate::types::NodeId;

/// The most overdue tasks `status` lists one by one.
pub const MAX_LISTED_TASKS: usize = 20;

/// How late a running task's next tick may be before it is a stall: the
/// stall threshold, or twice the failover bound (a task of a lost node is
/// late by up to that much, on purpose), whichever is longer.
pub fn task_grace_ms(failover_bound_ms: u64) -> u64 {
    STALL_AFTER_MS.max(2 * failover_bound_ms)
}

/// The stalls `context` sees now, and how many tasks are overdue.
pub fn current(context: &NodeContext) -> (Vec<Stall>, u64) {
    let raft = context.progress.stalls();
    let members = crate::types::metrics(&context.raft)
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| *id != context.id)
        .collect::<Vec<_>>();
    let errors: BTreeMap<NodeId, String> = members
        .into_iter()
        .filter_map(|id| {
            let (why, ago) = context.channels.replication_error(id)?;
            Some((id, format!("{why} ({:.1} s ago)", ago.as_secs_f64())))
        })
        .collect();
    let sending: BTreeMap<NodeId, String> = raft
        .iter()
        .filter_map(|stall| match stall {
            RaftStall::Replication { node, .. } => Some(*node),
            _ => None,
        })
        .filter_map(|id| {
            let (bytes, for_how_long) = context.channels.snapshot_in_flight(id)?;
            let seconds = for_how_long.as_secs_f64();
            Some((
                id,
                format!("a snapshot of {bytes} bytes has been streaming to it for {seconds:.1} s"),
            ))
        })
        .collect();
    let grace = task_grace_ms(context.supervision.failover_bound_ms);
    let overdue = context
        .state_machine
        .read(|s| s.tasks.overdue(crate::types::now_ms(), grace));
    (describe(&raft, &errors, &sending, &overdue), overdue.len() as u64)
}

/// The stalls as `status` reports them: Raft's first, then up to
/// [`MAX_LISTED_TASKS`] overdue tasks. `errors` holds each peer's last
/// replication error, `sending` each peer's snapshot in flight (which
/// explains a member that stands still while it receives one).
pub fn describe(
    raft: &[RaftStall],
    errors: &BTreeMap<NodeId, String>,
    sending: &BTreeMap<NodeId, String>,
    overdue: &[Overdue],
) -> Vec<Stall> {
    let seconds = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let raft_stalls = raft.iter().map(|stall| match stall {
        RaftStall::Commits {
            committed,
            last_log,
            for_ms,
        } => {
            let reason = if errors.is_empty() {
                "no replication call has failed: the followers may be slow to write".to_string()
            } else {
                let each: Vec<String> = errors.iter().map(|(id, e)| format!("node {id}: {e}")).collect();
                format!("replication fails ({})", each.join("; "))
            };
            Stall {
                kind: "commits".into(),
                subject: String::new(),
                for_ms: *for_ms,
                summary: format!(
                    "commits stalled for {}: the commit index stays at {committed} while the log holds up to \
                     {last_log}; {reason}",
                    seconds(*for_ms)
                ),
            }
        }
        RaftStall::Apply {
            applied,
            committed,
            for_ms,
        } => Stall {
            kind: "apply".into(),
            subject: String::new(),
            for_ms: *for_ms,
            summary: format!(
                "applying stalled for {}: the state machine stays at {applied} while the commit index is \
                 {committed}; see this node's log",
                seconds(*for_ms)
            ),
        },
        RaftStall::Replication {
            node,
            matched,
            last_log,
            for_ms,
        } => {
            let reason = match (sending.get(node), errors.get(node)) {
                (Some(snapshot), _) => snapshot.clone(),
                (None, Some(e)) => format!("the last call to it failed: {e}"),
                (None, None) => "no call to it has failed".to_string(),
            };
            Stall {
                kind: "replication".into(),
                subject: node.to_string(),
                for_ms: *for_ms,
                summary: format!(
                    "node {node} has replicated up to {matched} of {last_log} and has not moved for {}; {reason}",
                    seconds(*for_ms)
                ),
            }
        }
    });
    let task_stalls = overdue.iter().take(MAX_LISTED_TASKS).map(|o| {
        let owner = o.owner.map_or("no node".to_string(), |n| format!("node {n}"));
        Stall {
            kind: "task".into(),
            subject: o.task.clone(),
            for_ms: o.late_ms,
            summary: format!(
                "task {} (running on {owner}) is {} past its next tick",
                o.task,
                seconds(o.late_ms)
            ),
        }
    });
    raft_stalls.chain(task_stalls).collect()
}

/// The state `status` shows for a member whose replication stalls while its
/// lease looks fine.
pub fn lagging_state(state: &str, member: NodeId, stalls: &[Stall]) -> Option<&'static str> {
    let stalled = stalls
        .iter()
        .any(|s| s.kind == "replication" && s.subject == member.to_string());
    (stalled && state == "up").then_some("lagging")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_stall_gives_every_failing_peer_as_its_reason() {
        let errors = BTreeMap::from([
            (2, "Timeout expired".to_string()),
            (3, "connection refused".to_string()),
        ]);
        let stalls = describe(
            &[RaftStall::Commits {
                committed: 49,
                last_log: 57,
                for_ms: 20_300,
            }],
            &errors,
            &BTreeMap::new(),
            &[],
        );
        assert_eq!(stalls.len(), 1);
        assert_eq!(stalls[0].kind, "commits");
        assert_eq!(
            stalls[0].summary,
            "commits stalled for 20.3 s: the commit index stays at 49 while the log holds up to 57; replication \
             fails (node 2: Timeout expired; node 3: connection refused)"
        );
    }

    #[test]
    fn a_lagging_member_and_overdue_tasks_are_named_and_tasks_are_listed_up_to_the_limit() {
        let overdue: Vec<Overdue> = (0..30)
            .map(|i| Overdue {
                task: format!("t{i}"),
                owner: (i % 2 == 0).then_some(2),
                late_ms: 9_000,
            })
            .collect();
        let stalls = describe(
            &[RaftStall::Replication {
                node: 3,
                matched: 55,
                last_log: 94,
                for_ms: 6_000,
            }],
            &BTreeMap::new(),
            &BTreeMap::new(),
            &overdue,
        );
        assert_eq!(stalls.len(), 1 + MAX_LISTED_TASKS);
        assert_eq!(
            stalls[0].summary,
            "node 3 has replicated up to 55 of 94 and has not moved for 6.0 s; no call to it has failed"
        );
        assert_eq!(
            stalls[1].summary,
            "task t0 (running on node 2) is 9.0 s past its next tick"
        );
        assert_eq!(
            stalls[2].summary,
            "task t1 (running on no node) is 9.0 s past its next tick"
        );
        assert_eq!(lagging_state("up", 3, &stalls), Some("lagging"));
        assert_eq!(lagging_state("down", 3, &stalls), None, "down says more");
        assert_eq!(lagging_state("up", 2, &stalls), None);
    }

    #[test]
    fn a_member_that_stands_still_while_it_receives_a_snapshot_says_so() {
        let stall = RaftStall::Replication {
            node: 4,
            matched: 0,
            last_log: 2_600,
            for_ms: 6_000,
        };
        let sending = BTreeMap::from([(
            4,
            "a snapshot of 400108471 bytes has been streaming to it for 6.1 s".into(),
        )]);
        let errors = BTreeMap::from([(4, "Timeout expired (9.0 s ago)".to_string())]);
        let stalls = describe(&[stall], &errors, &sending, &[]);
        assert_eq!(
            stalls[0].summary,
            "node 4 has replicated up to 0 of 2600 and has not moved for 6.0 s; a snapshot of 400108471 bytes has \
             been streaming to it for 6.1 s"
        );
    }

    #[test]
    fn the_task_grace_is_the_longer_of_the_threshold_and_twice_the_failover_bound() {
        assert_eq!(task_grace_ms(1_950), 5_000);
        assert_eq!(task_grace_ms(4_000), 8_000);
    }
}
