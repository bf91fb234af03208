//! The figures read from the node's state at each scrape, rather than
//! counted as they happen: tasks by status, rollouts, the cluster version,
//! Raft's term, leader, indexes and replication lag, and readiness.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::api::NodeContext;
use crate::metrics::Readiness;
use crate::state::tasks::TaskStatus;
use crate::types::{NodeId, committed_index, with_metrics};

/// The rollout states, each a series of `baton_rollout_state` (1 for the
/// state a module's last rollout is in, 0 for the others).
const ROLLOUT_STATES: [&str; 6] = ["running", "paused", "halted", "done", "reverted", "aborted"];

/// Reads the node's state when Prometheus scrapes.
pub struct Scrape {
    context: Arc<NodeContext>,
    /// When the process started, in Unix seconds (read once: the clock may
    /// step later).
    started_unix_s: i64,
}

impl Scrape {
    pub fn new(context: Arc<NodeContext>) -> Scrape {
        let started_unix_s = started_unix_s(context.started_at);
        Scrape {
            context,
            started_unix_s,
        }
    }
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").field("node", &self.context.id).finish()
    }
}

/// Raft's figures, copied out under its watch lock.
struct RaftFigures {
    term: u64,
    leader: Option<NodeId>,
    last_applied: u64,
    committed: u64,
    last_log: u64,
    /// Each peer's entries behind the leader's log, while this node leads.
    lag: Vec<(NodeId, u64)>,
}

/// The replicated state's figures.
struct StateFigures {
    running: i64,
    paused: i64,
    failed: i64,
    owned: i64,
    cluster_version: i64,
    /// Each module's last rollout: its state's name and nodes switched.
    rollouts: Vec<(String, &'static str, i64)>,
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let context = &self.context;
        let raft = with_metrics(&context.raft, |m| RaftFigures {
            term: m.current_term,
            leader: m.current_leader,
            last_applied: m.last_applied.as_ref().map_or(0, |l| l.index),
            committed: committed_index(m),
            last_log: m.last_log_index.unwrap_or(0),
            lag: m
                .replication
                .as_ref()
                .map(|peers| {
                    peers
                        .iter()
                        .filter(|(peer, _)| **peer != context.id)
                        .map(|(peer, matched)| {
                            let matched = matched.as_ref().map_or(0, |l| l.index);
                            (*peer, m.last_log_index.unwrap_or(0).saturating_sub(matched))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
        let state = context.state_machine.read(|s| {
            let (mut running, mut paused, mut failed) = (0, 0, 0);
            for task in s.tasks.values() {
                match task.status {
                    TaskStatus::Running => running += 1,
                    TaskStatus::Paused => paused += 1,
                    TaskStatus::Failed { .. } => failed += 1,
                }
            }
            StateFigures {
                running,
                paused,
                failed,
                owned: s.tasks.index().running_on(Some(context.id)).count() as i64,
                cluster_version: i64::from(s.cluster_version),
                rollouts: s
                    .rollouts
                    .iter()
                    .map(|(module, r)| (module.clone(), r.state.name(), r.switched.len() as i64))
                    .collect(),
            }
        });

        let mut tasks = encoder.encode_descriptor(
            "tasks",
            "Tasks in the cluster by status, as this node has applied them",
            None,
            MetricType::Gauge,
        )?;
        for (status, n) in [
            ("running", state.running),
            ("paused", state.paused),
            ("failed", state.failed),
        ] {
            ConstGauge::new(n).encode(tasks.encode_family(&[("status", status)])?)?;
        }
        gauge(&mut encoder, "tasks_owned", "Running tasks this node owns", state.owned)?;
        gauge(
            &mut encoder,
            "cluster_version",
            "The cluster version, as this node has applied it",
            state.cluster_version,
        )?;
        if !state.rollouts.is_empty() {
            let mut family = encoder.encode_descriptor(
                "rollout_state",
                "Each module's last rollout: 1 for the state it is in",
                None,
                MetricType::Gauge,
            )?;
            for (module, now, _) in &state.rollouts {
                for name in ROLLOUT_STATES {
                    let labels = [("module", module.as_str()), ("state", name)];
                    ConstGauge::new(i64::from(*now == name)).encode(family.encode_family(&labels)?)?;
                }
            }
            let mut family = encoder.encode_descriptor(
                "rollout_switched_nodes",
                "Nodes that run the release of each module's last rollout",
                None,
                MetricType::Gauge,
            )?;
            for (module, _, switched) in &state.rollouts {
                ConstGauge::new(*switched).encode(family.encode_family(&[("module", module.as_str())])?)?;
            }
        }

        gauge(&mut encoder, "raft_term", "This node's Raft term", raft.term as i64)?;
        gauge(
            &mut encoder,
            "raft_leader",
            "The leader's node id, as this node knows it; 0 while there is none",
            raft.leader.unwrap_or(0) as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_is_leader",
            "1 while this node leads",
            i64::from(raft.leader == Some(context.id)),
        )?;
        gauge(
            &mut encoder,
            "raft_last_applied_index",
            "The last log index this node applied",
            raft.last_applied as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_commit_index",
            "The last log index this node knows committed",
            raft.committed as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_last_log_index",
            "The last index in this node's log",
            raft.last_log as i64,
        )?;
        if !raft.lag.is_empty() {
            let mut family = encoder.encode_descriptor(
                "raft_replication_lag_entries",
                "Entries each peer is behind this node's log (only while it leads)",
                None,
                MetricType::Gauge,
            )?;
            for (peer, lag) in &raft.lag {
                let peer = peer.to_string();
                ConstGauge::new(*lag as i64).encode(family.encode_family(&[("peer", peer.as_str())])?)?;
            }
        }
        let ready = Readiness::of(context).is_ready();
        gauge(&mut encoder, "ready", "1 while /readyz answers 200", i64::from(ready))?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "When this node's process started, in seconds since the Unix epoch",
            self.started_unix_s,
        )?;
        Ok(())
    }
}

/// When a process that started at `started` did, in Unix seconds.
fn started_unix_s(started: std::time::Instant) -> i64 {
    let now = std::time::SystemTime::now();
    now.checked_sub(started.elapsed())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}
