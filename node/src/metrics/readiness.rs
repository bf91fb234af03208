//! Whether a node is ready: may run tasks. `/readyz` answers it, and
//! `baton_ready` reports it.

use std::time::{Duration, Instant};

use crate::api::NodeContext;
use crate::types::{NodeId, with_metrics};

/// How long the epoch thread, which beats every 10 ms and ends ticks at
/// their budgets, may go quiet before the node is not ready.
const ENGINE_QUIET: Duration = Duration::from_secs(1);

/// What readiness is decided from, read from the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessInputs {
    pub raft_running: bool,
    pub leader: Option<NodeId>,
    /// The index this node must have applied before it ticks: the commit
    /// index the leader gave with its last lease renewal, or for the leader
    /// itself the commit index when it first renewed itself in its term (0:
    /// none yet).
    pub required_index: u64,
    /// Its lease holds now (a node cut off from the leader loses it, even
    /// while it still names the leader it last heard).
    pub lease_valid: bool,
    pub applied_index: u64,
    /// Since the task engine's epoch thread last beat.
    pub engine_quiet: Duration,
    /// The node is shutting down (drained, handing leadership off).
    pub stopping: bool,
}

/// Whether the node may run tasks: it has a leader, holds a lease, has
/// applied the log up to the commit index it last heard from the leader
/// (the rules its own lease applies before a tick; see
/// `supervision::local_lease`), its task engine runs, and it is not
/// shutting down. Ready is what a load balancer or a rolling restart waits
/// for. Like the lease's own rule, "caught up" may turn false for the
/// moment between a renewal under heavy writes and the node's apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Why it is not ready; empty when it is.
    pub reasons: Vec<String>,
}

impl Readiness {
    pub fn of(context: &NodeContext) -> Readiness {
        let (raft_running, leader) = with_metrics(&context.raft, |m| (m.running_state.is_ok(), m.current_leader));
        Readiness::decide(&ReadinessInputs {
            raft_running,
            leader,
            required_index: context.supervision.lease.required_index(),
            lease_valid: context.supervision.lease.is_valid(Instant::now()),
            applied_index: context.state_machine.last_applied_index(),
            engine_quiet: context.engine.since_epoch_beat(),
            stopping: context.supervision.is_leaving() || context.supervision.is_stopping(),
        })
    }

    pub fn decide(inputs: &ReadinessInputs) -> Readiness {
        let mut reasons = Vec::new();
        if !inputs.raft_running {
            reasons.push("raft has stopped".to_string());
        }
        if inputs.stopping {
            reasons.push("the node is shutting down".to_string());
        }
        match (inputs.leader, inputs.required_index) {
            (None, _) => reasons.push("no leader is known".to_string()),
            (Some(leader), 0) => reasons.push(format!(
                "node {leader} leads, but has not renewed this node's lease yet"
            )),
            (Some(_), required) if inputs.applied_index < required => reasons.push(format!(
                "catching up: applied index {}, the leader's commit index was {required}",
                inputs.applied_index
            )),
            (Some(leader), _) if !inputs.lease_valid => {
                reasons.push(format!("its lease ran out: node {leader} has not renewed it"))
            }
            _ => {}
        }
        if inputs.engine_quiet > ENGINE_QUIET {
            reasons.push(format!(
                "the task engine's epoch thread has not run for {} ms",
                inputs.engine_quiet.as_millis()
            ));
        }
        Readiness { reasons }
    }

    pub fn is_ready(&self) -> bool {
        self.reasons.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> ReadinessInputs {
        ReadinessInputs {
            raft_running: true,
            leader: Some(1),
            required_index: 40,
            lease_valid: true,
            applied_index: 41,
            engine_quiet: Duration::from_millis(10),
            stopping: false,
        }
    }

    #[test]
    fn a_node_with_a_leader_caught_up_and_a_running_engine_is_ready() {
        assert!(Readiness::decide(&ready()).is_ready());
        let exactly = ReadinessInputs {
            applied_index: 40,
            ..ready()
        };
        assert!(Readiness::decide(&exactly).is_ready());
    }

    #[test]
    fn each_missing_condition_is_named() {
        let cases = [
            (
                ReadinessInputs {
                    leader: None,
                    ..ready()
                },
                "no leader is known",
            ),
            (
                ReadinessInputs {
                    required_index: 0,
                    ..ready()
                },
                "has not renewed this node's lease yet",
            ),
            (
                ReadinessInputs {
                    applied_index: 39,
                    ..ready()
                },
                "catching up: applied index 39, the leader's commit index was 40",
            ),
            (
                ReadinessInputs {
                    engine_quiet: Duration::from_secs(2),
                    ..ready()
                },
                "epoch thread has not run for 2000 ms",
            ),
            (
                ReadinessInputs {
                    lease_valid: false,
                    ..ready()
                },
                "its lease ran out: node 1 has not renewed it",
            ),
            (
                ReadinessInputs {
                    stopping: true,
                    ..ready()
                },
                "shutting down",
            ),
            (
                ReadinessInputs {
                    raft_running: false,
                    ..ready()
                },
                "raft has stopped",
            ),
        ];
        for (inputs, reason) in cases {
            let readiness = Readiness::decide(&inputs);
            assert!(!readiness.is_ready(), "{inputs:?}");
            assert!(
                readiness.reasons.len() == 1 && readiness.reasons[0].contains(reason),
                "{:?}",
                readiness.reasons
            );
        }
    }
}
