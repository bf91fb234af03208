//! The leader's supervision loop: from the lease table and the drained set
//! it builds a view of the nodes, asks the pure placement for a plan, and
//! commits it in one Raft entry. It acts only while this node leads, and a
//! new term starts a new lease table (so nobody is declared dead within one
//! lease of an election, unless its process is provably gone).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::lease_table::{Health, LeaseTable};
use crate::api::NodeContext;
use crate::metrics::FailoverReason;
use crate::placement::{NodeView, Plan, PlanRules, plan};
use crate::state::tasks::{Assignment, TaskTable};
use crate::types::{Command, CommandResponse, NodeId, with_metrics};

/// How often the leader looks, besides being woken by news.
const SCAN_INTERVAL: Duration = Duration::from_millis(25);

/// Tasks moved per round to even out the load.
const MAX_REBALANCE: usize = 16;

/// Starts the loop; abort the handle to stop it.
pub fn spawn_supervisor(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SCAN_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut handoffs: HashMap<String, Pending> = HashMap::new();
        // Members seen down this term, for `baton_lease_expiries_total`.
        let mut down: BTreeSet<NodeId> = BTreeSet::new();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = context.supervision.wake.notified() => {}
            }
            let (leads, term, members) = with_metrics(&context.raft, |m| {
                let members: Vec<NodeId> = m.membership_config.membership().nodes().map(|(id, _)| *id).collect();
                (m.current_leader == Some(context.id), m.current_term, members)
            });
            if !leads {
                handoffs.clear();
                continue;
            }
            let now = Instant::now();
            let drained = context.state_machine.read(|s| s.drained.clone());
            let noted_gone = context.supervision.noted_gone();
            let owners = context.state_machine.read(|s| {
                let running = s.tasks.index().running_by_owner().keys();
                running.filter_map(|owner| *owner).collect::<BTreeSet<NodeId>>()
            });
            let (view, lost, expired) = context.supervision.leases(|leases| {
                if leases.begin_term(term, now) {
                    down.clear();
                }
                for (node, incarnation) in &noted_gone {
                    if leases.mark_gone(*node, incarnation) {
                        tracing::info!("node {node}'s process ({incarnation}) is gone; moving its tasks now");
                    }
                }
                // A lapsed node may hold a lease again once the committed
                // state shows it owns nothing (its renewals wait till then).
                for node in leases.lapsed_nodes() {
                    if !owners.contains(&node) && leases.restore(node) {
                        tracing::info!("node {node}, whose lease had run out, owns nothing now; renewing it again");
                    }
                }
                let view = node_view(
                    leases,
                    &members,
                    &drained,
                    context.id,
                    context.supervision.is_leaving(),
                    now,
                );
                // A node being removed (its lease revoked) is neither a
                // failover nor an expiry.
                let removed = |node: NodeId| context.supervision.is_revoked(node);
                let lost = lost_owners(leases, &view, &owners, &members, removed);
                let expired = newly_expired(leases, &view, &members, &mut down, removed);
                (view, lost, expired)
            });
            context.metrics.lease_expiries.inc_by(expired);
            context.supervision.set_view(&view);
            let mut round = context
                .state_machine
                .read(|s| plan(&s.tasks, &view, PlanRules::at(s.cluster_version, MAX_REBALANCE)));
            // Forced hand-offs go first: should one land on a lost node,
            // the `MoveAll` after it takes it on.
            round.assign.splice(0..0, stuck_handoffs(&context, &mut handoffs, now));
            if round.is_empty() {
                continue;
            }
            for a in &round.hand_off {
                let pending = Pending {
                    epoch: a.expected_epoch,
                    seen: None,
                };
                handoffs.insert(a.task.clone(), pending);
            }
            for from in round.move_all.iter().filter_map(|m| m.from) {
                tracing::info!("moving every task of node {from} at once, in one reassign_all entry");
            }
            let handed_off = round.hand_off.len();
            let moves = usize::from(!round.assign.is_empty()) + round.move_all.len();
            let started = Instant::now();
            match context.proposer.propose(round_command(round)).await {
                Ok(committed) => {
                    let moved = moved(&committed.response, moves);
                    tracing::info!(
                        "reassigned {moved} task(s), started {handed_off} hand-off(s), in one write of {} µs",
                        started.elapsed().as_micros()
                    );
                    // A failover is a lost node's tasks all moved: counted once,
                    // when the node no longer owns a running task.
                    if moved > 0 && !lost.is_empty() {
                        let owns = context.state_machine.read(|s| {
                            let running = s.tasks.index().running_by_owner();
                            lost.iter()
                                .map(|(node, ..)| running.contains_key(&Some(*node)))
                                .collect::<Vec<_>>()
                        });
                        for ((_, reason, since), owns) in lost.iter().zip(owns) {
                            if !owns {
                                context.metrics.failover(*reason, since.elapsed());
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("placement not committed: {e}"),
            }
        }
    })
}

/// The members that own running tasks and are not alive in `view` (nor
/// being `removed`): each with why it is lost, and since when (its last
/// renewal, or the start of this term if it renewed none).
fn lost_owners(
    leases: &LeaseTable,
    view: &NodeView,
    owners: &BTreeSet<NodeId>,
    members: &[NodeId],
    removed: impl Fn(NodeId) -> bool,
) -> Vec<(NodeId, FailoverReason, Instant)> {
    owners
        .iter()
        .copied()
        .filter(|owner| members.contains(owner) && !alive(view, *owner) && !removed(*owner))
        .map(|owner| {
            let reason = match leases.gone(owner) {
                true => FailoverReason::ProcessGone,
                false => FailoverReason::LeaseExpired,
            };
            (owner, reason, leases.renewed_at(owner).unwrap_or(leases.term_started()))
        })
        .collect()
}

/// How many of `members` went down (not alive in `view`; their process not
/// known gone, nor being `removed`) since the last look; `down` remembers
/// who is down.
fn newly_expired(
    leases: &LeaseTable,
    view: &NodeView,
    members: &[NodeId],
    down: &mut BTreeSet<NodeId>,
    removed: impl Fn(NodeId) -> bool,
) -> u64 {
    let mut expired = 0;
    for member in members {
        match alive(view, *member) {
            true => {
                down.remove(member);
            }
            false => {
                if down.insert(*member) && !leases.gone(*member) && !removed(*member) {
                    expired += 1;
                }
            }
        }
    }
    expired
}

fn alive(view: &NodeView, node: NodeId) -> bool {
    view.eligible.contains(&node) || view.draining.contains(&node) || view.suspect.contains(&node)
}

/// One round's moves as one entry: assignments, then whole owners' moves,
/// then hand-offs.
fn round_command(round: Plan) -> Command {
    let mut commands = Vec::new();
    if !round.assign.is_empty() {
        commands.push(Command::AssignOwners(round.assign));
    }
    commands.extend(
        round
            .move_all
            .into_iter()
            .map(|m| Command::ReassignAll { from: m.from, to: m.to }),
    );
    if !round.hand_off.is_empty() {
        commands.push(Command::HandOff(round.hand_off));
    }
    Command::Batch(commands.into())
}

/// How many tasks a round's entry moved at once: the counts of its first
/// `moves` commands (those that move at once; hand-offs come after).
fn moved(response: &CommandResponse, moves: usize) -> u64 {
    let CommandResponse::Batch(responses) = response else {
        return 0;
    };
    let count = |r: &CommandResponse| match r {
        CommandResponse::Count(n) => *n,
        _ => 0,
    };
    responses.iter().take(moves).map(count).sum()
}

/// The nodes as placement (and `batonctl status`) needs them. The leader
/// itself is always up.
pub(crate) fn node_view(
    leases: &LeaseTable,
    members: &[NodeId],
    drained: &BTreeSet<NodeId>,
    self_id: NodeId,
    self_leaving: bool,
    now: Instant,
) -> NodeView {
    let mut view = NodeView::default();
    for &id in members {
        let (health, leaving) = match id == self_id {
            true => (Health::Up, self_leaving),
            false => (leases.health(id, now), leases.leaving(id)),
        };
        let set = match health {
            Health::Down => continue,
            _ if drained.contains(&id) || leaving => &mut view.draining,
            Health::Suspect => &mut view.suspect,
            Health::Up => &mut view.eligible,
        };
        set.insert(id);
        if health == Health::Up && id != self_id && leases.catching_up(id) {
            view.catching_up.insert(id);
        }
    }
    view
}

/// How long an owner may take to complete a hand-off before the leader
/// moves the task anyway, counted from when the leader applied its start.
/// Long enough that the old owner can no longer be running a tick of it: it
/// starts no tick once it has seen the hand-off. A follower must have
/// applied it before starting any tick after its next renewal (which asks
/// it to apply the leader's log as far as committed) or, without renewals,
/// stops at its lease's end; the leader itself has applied it when the
/// count starts. A tick started before that runs at most its budget. So: a
/// lease, a tick budget, and a renewal interval.
pub fn forced_handoff_patience(lease: Duration, tick_budget: Duration, renew: Duration) -> Duration {
    lease + tick_budget + renew
}

/// A hand-off this leader began: the task's epoch then, and when the
/// leader's own applied state first showed it (None until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    epoch: u64,
    seen: Option<Instant>,
}

/// Hand-offs an owner has not completed within the patience above (its
/// worker is stuck or missing): move them at once.
fn stuck_handoffs(context: &NodeContext, handoffs: &mut HashMap<String, Pending>, now: Instant) -> Vec<Assignment> {
    let patience = forced_handoff_patience(
        Duration::from_millis(context.supervision.lease_ms),
        context.engine.tick_budget(),
        context.supervision.renew,
    );
    let stuck = context
        .state_machine
        .read(|s| overdue_handoffs(handoffs, &s.tasks, now, patience));
    for a in &stuck {
        tracing::warn!(task = %a.task, "hand-off not completed by its owner; moving it at once");
    }
    stuck
}

/// The hand-offs whose patience has run out, counted from when `tasks` (the
/// leader's applied state) first showed them. Not from the proposal: when
/// the owner is the leader itself, it may start ticks until it has applied
/// the hand-off (its lease's required index does not move with its own
/// writes; see `renew_as_leader`), so the tick a forced move must wait out
/// can start as late as that apply. Forgets hand-offs that ended (the task
/// moved on, or is gone); keeps those not applied yet.
fn overdue_handoffs(
    handoffs: &mut HashMap<String, Pending>,
    tasks: &TaskTable,
    now: Instant,
    patience: Duration,
) -> Vec<Assignment> {
    handoffs.retain(|name, pending| {
        let Some(task) = tasks.get(name).filter(|t| t.epoch == pending.epoch) else {
            return false;
        };
        match (task.handoff_to, pending.seen) {
            (Some(_), None) => pending.seen = Some(now),
            (Some(_), Some(_)) => {}
            // No hand-off at this epoch: it ended, unless it was never
            // seen (not applied here yet).
            (None, seen) => return seen.is_none(),
        }
        true
    });
    let mut stuck: Vec<Assignment> = handoffs
        .iter()
        .filter(|(_, p)| p.seen.is_some_and(|since| now.duration_since(since) > patience))
        .filter_map(|(name, p)| {
            Some(Assignment {
                task: name.clone(),
                owner: tasks.get(name)?.handoff_to,
                expected_epoch: p.epoch,
            })
        })
        .collect();
    stuck.sort_by(|a, b| a.task.cmp(&b.task));
    stuck
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forced_hand_off_waits_out_any_tick_the_old_owner_may_have_started() {
        let ms = Duration::from_millis;
        assert_eq!(forced_handoff_patience(ms(1000), ms(1000), ms(100)), ms(2100));
        assert!(
            forced_handoff_patience(ms(500), ms(5000), ms(100)) > ms(5000),
            "never less than a tick's budget"
        );
    }

    #[test]
    fn a_hand_off_is_forced_a_patience_after_the_leader_applied_it_not_after_it_proposed_it() {
        use crate::state::tasks::TaskSpec;
        let ms = Duration::from_millis;
        let patience = ms(2100);
        let mut tasks = TaskTable::default();
        for name in ["a", "b"] {
            tasks.add(TaskSpec::counter_every_second(name));
        }
        tasks.assign(&[Assignment {
            task: "a".into(),
            owner: Some(1),
            expected_epoch: tasks["a"].epoch,
        }]);
        let epoch = tasks["a"].epoch;
        let t0 = Instant::now();
        let pending = Pending { epoch, seen: None };
        let mut handoffs = HashMap::from([("a".to_string(), pending), ("gone".to_string(), pending)]);
        // Proposed at t0, not applied here until t0 + 3 s: kept, not forced.
        assert_eq!(overdue_handoffs(&mut handoffs, &tasks, t0 + ms(3000), patience), vec![]);
        assert!(handoffs.contains_key("a") && !handoffs.contains_key("gone"));
        tasks.hand_off(&[Assignment {
            task: "a".into(),
            owner: Some(2),
            expected_epoch: epoch,
        }]);
        let applied = t0 + ms(3500);
        assert_eq!(overdue_handoffs(&mut handoffs, &tasks, applied, patience), vec![]);
        assert_eq!(
            overdue_handoffs(&mut handoffs, &tasks, applied + patience, patience),
            vec![]
        );
        let forced = overdue_handoffs(&mut handoffs, &tasks, applied + patience + ms(1), patience);
        assert_eq!(
            forced,
            vec![Assignment {
                task: "a".into(),
                owner: Some(2),
                expected_epoch: epoch
            }]
        );
        // The owner yields: the task moves on, and the hand-off is forgotten.
        tasks.yield_task("a", epoch, 1);
        assert_eq!(
            overdue_handoffs(&mut handoffs, &tasks, applied + ms(9000), patience),
            vec![]
        );
        assert!(handoffs.is_empty());
    }

    #[test]
    fn the_view_sorts_nodes_by_health_drain_and_departure() {
        let t0 = Instant::now();
        let lease = Duration::from_millis(1000);
        let mut leases = LeaseTable::new(lease, Duration::from_millis(100), t0);
        leases.begin_term(1, t0);
        let now = t0 + Duration::from_millis(1500);
        for id in [2, 3, 4] {
            leases.renew(id, "a", false, t0 + Duration::from_millis(600));
        }
        leases.renew(2, "a", false, now);
        leases.renew(3, "a", false, now);
        leases.renew(4, "a", true, now);
        leases.renew(5, "a", false, t0 + Duration::from_millis(1000));
        // 6 never renewed this term: down after a lease.
        let view = node_view(&leases, &[1, 2, 3, 4, 5, 6], &BTreeSet::from([3]), 1, false, now);
        assert_eq!(view.eligible, BTreeSet::from([1, 2]));
        assert_eq!(view.draining, BTreeSet::from([3, 4]));
        assert_eq!(view.suspect, BTreeSet::from([5]));
        let leaving = node_view(&leases, &[1, 2], &BTreeSet::new(), 1, true, now);
        assert_eq!(
            leaving.draining,
            BTreeSet::from([1]),
            "a leader that shuts down drains too"
        );
    }

    #[test]
    fn a_lost_owner_is_a_failover_with_its_reason_and_a_removed_node_is_not() {
        let t0 = Instant::now();
        let mut leases = LeaseTable::new(Duration::from_millis(1000), Duration::from_millis(100), t0);
        leases.begin_term(1, t0);
        for id in [2, 3, 4] {
            leases.renew(id, "a", false, t0);
        }
        assert!(leases.mark_gone(3, "a"));
        // 2 and 3 own tasks and are down; 4 is being removed; 5 is no member.
        let view = NodeView {
            eligible: BTreeSet::from([1]),
            ..NodeView::default()
        };
        let owners = BTreeSet::from([2, 3, 4, 5]);
        let members = [1, 2, 3, 4];
        let lost = lost_owners(&leases, &view, &owners, &members, |n| n == 4);
        assert_eq!(
            lost,
            vec![
                (2, FailoverReason::LeaseExpired, t0),
                (3, FailoverReason::ProcessGone, t0)
            ]
        );
        let mut down = BTreeSet::new();
        assert_eq!(
            newly_expired(&leases, &view, &members, &mut down, |n| n == 4),
            1,
            "2's lease ran out; 3 is gone, 4 removed"
        );
        assert_eq!(
            newly_expired(&leases, &view, &members, &mut down, |n| n == 4),
            0,
            "counted once"
        );
        let back = NodeView {
            eligible: BTreeSet::from([1, 2]),
            ..NodeView::default()
        };
        newly_expired(&leases, &back, &members, &mut down, |_| false);
        assert_eq!(
            newly_expired(&leases, &view, &members, &mut down, |_| false),
            1,
            "down again"
        );
    }
}
