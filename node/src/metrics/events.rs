//! The node's events, counted where they happen: the handles of
//! [`Metrics`] and what they are labelled with.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::grpc;

/// How a tick ended, as the `outcome` label of `baton_ticks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TickOutcome {
    /// Ran and returned a new state (committed or not: a commit refused
    /// because the task moved is not the module's doing).
    Ok,
    /// The module returned an error.
    Failed,
    /// The module trapped.
    Trapped,
    /// It ran past its budget and was interrupted.
    TimedOut,
    /// The instance could not be made.
    NotStarted,
    /// Its state was over `[limits] max_state_bytes`.
    StateTooLarge,
    /// This node's turn ended during the tick (its lease, a move).
    Fenced,
    /// The tick's thread panicked.
    Panicked,
}

impl TickOutcome {
    pub const ALL: [TickOutcome; 8] = [
        TickOutcome::Ok,
        TickOutcome::Failed,
        TickOutcome::Trapped,
        TickOutcome::TimedOut,
        TickOutcome::NotStarted,
        TickOutcome::StateTooLarge,
        TickOutcome::Fenced,
        TickOutcome::Panicked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TickOutcome::Ok => "ok",
            TickOutcome::Failed => "failed",
            TickOutcome::Trapped => "trapped",
            TickOutcome::TimedOut => "timed_out",
            TickOutcome::NotStarted => "not_started",
            TickOutcome::StateTooLarge => "state_too_large",
            TickOutcome::Fenced => "fenced",
            TickOutcome::Panicked => "panicked",
        }
    }

    /// The outcome of a tick that ended with `result` (`None`: its thread
    /// panicked).
    pub fn of<T>(result: Option<&Result<T, crate::runtime::TickError>>) -> TickOutcome {
        use crate::runtime::TickError;
        match result {
            None => TickOutcome::Panicked,
            Some(Ok(_)) => TickOutcome::Ok,
            Some(Err(TickError::Failed(_))) => TickOutcome::Failed,
            Some(Err(TickError::Trapped(_))) => TickOutcome::Trapped,
            Some(Err(TickError::OverBudget(_))) => TickOutcome::TimedOut,
            Some(Err(TickError::Instantiate(_))) => TickOutcome::NotStarted,
            Some(Err(TickError::StateTooLarge { .. })) => TickOutcome::StateTooLarge,
            Some(Err(TickError::Fenced(_))) => TickOutcome::Fenced,
        }
    }
}

/// Why the leader moved a node's tasks, as the `reason` label of
/// `baton_failovers_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailoverReason {
    /// Its heart vouched that its process is gone (the fast path).
    ProcessGone,
    /// Its lease ran out.
    LeaseExpired,
}

impl FailoverReason {
    pub fn name(self) -> &'static str {
        match self {
            FailoverReason::ProcessGone => "process_gone",
            FailoverReason::LeaseExpired => "lease_expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TickLabels {
    module: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModuleLabel {
    module: String,
}

/// What a replication call that failed carried, as the `call` label of
/// `baton_raft_replication_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicationCall {
    /// Entries, on the append stream (a stream given up counts once) or in
    /// one call.
    Append,
    /// An AppendEntries with no entries, sent in one call: a heartbeat (or,
    /// below cluster version 13, a commit index alone).
    Heartbeat,
    /// Opening the append stream.
    StreamOpen,
    /// A snapshot.
    Snapshot,
}

impl ReplicationCall {
    pub fn name(self) -> &'static str {
        match self {
            ReplicationCall::Append => "append",
            ReplicationCall::Heartbeat => "heartbeat",
            ReplicationCall::StreamOpen => "stream_open",
            ReplicationCall::Snapshot => "snapshot",
        }
    }
}

/// The labels of `baton_raft_replication_failures_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReplicationLabels {
    pub peer: u64,
    pub call: &'static str,
}

/// Replication calls that failed, by peer and what they carried.
pub type ReplicationFailures = Family<ReplicationLabels, Counter>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets for a tick's run time and lateness: 1 ms to about 33 s.
fn tick_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Buckets for a tick commit's lateness: 5 ms to 30 s, with a bound at the
/// 50 ms the scale goal names, so that the share of commits later than it
/// is read exactly.
fn commit_lateness_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.02, 0.032, 0.05, 0.064, 0.1, 0.128, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
    ])
}

/// Buckets for a write's or an fsync's time: 0.1 ms to about 3.3 s.
fn write_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Buckets for the time from a node's last renewal to its tasks' move:
/// 50 ms to about 100 s.
fn failover_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// The node's event counters and histograms. Cheap to clone handles out
/// of: each is an `Arc` inside.
#[derive(Debug)]
pub struct Metrics {
    ticks: Family<TickLabels, Counter>,
    tick_duration: Histograms<ModuleLabel>,
    tick_lateness: Histograms<ModuleLabel>,
    failovers: Family<ReasonLabel, Counter>,
    failover_duration: Histograms<ReasonLabel>,
    ticks_held_back: Family<ReasonLabel, Counter>,
    /// How long after its due time each tick's commit was applied here
    /// (the lateness `status` reports over 10 s, over the node's life).
    pub tick_commit_lateness: Histogram,
    /// A proposal's time from this node's proposer to its apply.
    pub proposal_duration: Histogram,
    /// One durable write of the Raft log (a group of entries, one fsync).
    pub storage_commit_duration: Histogram,
    /// Writes not proposed (or, on a follower, not forwarded) because
    /// their callers had stopped waiting for them.
    pub writes_abandoned: Counter,
    /// Changes of the leader this node has seen.
    pub leader_changes: Counter,
    /// Members whose lease ran out, seen by this node while it led.
    pub lease_expiries: Counter,
    /// gRPC calls this node answered, by method and status.
    pub grpc: grpc::GrpcCalls,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ticks: Family::default(),
            tick_duration: Family::new_with_constructor(tick_buckets),
            tick_lateness: Family::new_with_constructor(tick_buckets),
            failovers: Family::default(),
            failover_duration: Family::new_with_constructor(failover_buckets),
            ticks_held_back: Family::default(),
            tick_commit_lateness: commit_lateness_buckets(),
            proposal_duration: write_buckets(),
            storage_commit_duration: write_buckets(),
            writes_abandoned: Counter::default(),
            leader_changes: Counter::default(),
            lease_expiries: Counter::default(),
            grpc: grpc::GrpcCalls::default(),
        }
    }
}

impl Metrics {
    /// The handles one task's worker counts its ticks with, made once so
    /// that a tick takes no lock to count itself. Every outcome's series
    /// exists from then on, at 0, as `rate()` needs.
    pub fn module(&self, module: &str) -> ModuleMetrics {
        let label = ModuleLabel {
            module: module.to_string(),
        };
        ModuleMetrics {
            outcomes: TickOutcome::ALL.map(|outcome| {
                self.ticks.get_or_create_owned(&TickLabels {
                    module: module.to_string(),
                    outcome: outcome.name(),
                })
            }),
            duration: self.tick_duration.get_or_create_owned(&label),
            lateness: self.tick_lateness.get_or_create_owned(&label),
        }
    }

    /// The leader moved the tasks of a node last heard from `since` ago.
    pub fn failover(&self, reason: FailoverReason, since: Duration) {
        let label = ReasonLabel { reason: reason.name() };
        self.failovers.get_or_create(&label).inc();
        self.failover_duration
            .get_or_create(&label)
            .observe(since.as_secs_f64());
    }

    /// The fence held a due tick back, for `reason` (a [`FenceError`]'s
    /// name): counted once per tick and reason, however long it waits.
    ///
    /// [`FenceError`]: crate::runtime::FenceError
    pub fn held_back(&self, reason: &'static str) {
        self.ticks_held_back.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Registers every handle in `registry` (under its prefix).
    pub fn register(&self, registry: &mut Registry) {
        for reason in ["catching_up", "lease_ended", "stopping"] {
            let _ = self.ticks_held_back.get_or_create_owned(&ReasonLabel { reason });
        }
        for reason in [FailoverReason::ProcessGone, FailoverReason::LeaseExpired] {
            let label = ReasonLabel { reason: reason.name() };
            // Every reason's series from 0, as `rate()` needs.
            let _ = self.failovers.get_or_create_owned(&label);
            let _ = self.failover_duration.get_or_create_owned(&label);
        }
        registry.register(
            "ticks",
            "Ticks this node ran, by module and outcome",
            self.ticks.clone(),
        );
        registry.register_with_unit(
            "tick_duration",
            "How long a tick ran on this node",
            Unit::Seconds,
            self.tick_duration.clone(),
        );
        registry.register_with_unit(
            "tick_lateness",
            "How long after its due time a tick started on this node",
            Unit::Seconds,
            self.tick_lateness.clone(),
        );
        registry.register_with_unit(
            "tick_commit_lateness",
            "How long after its due time a tick's commit was applied on this node (commits proposed in the last 10 s)",
            Unit::Seconds,
            self.tick_commit_lateness.clone(),
        );
        registry.register(
            "ticks_held_back",
            "Due ticks this node's fence held back, by why: its lease ended, or it had yet to apply the log as far as its last renewal said (counted once per tick and why)",
            self.ticks_held_back.clone(),
        );
        registry.register(
            "failovers",
            "Nodes whose tasks this node moved elsewhere as leader, by why",
            self.failovers.clone(),
        );
        registry.register_with_unit(
            "failover_duration",
            "From a lost node's last lease renewal to its tasks' move, committed",
            Unit::Seconds,
            self.failover_duration.clone(),
        );
        registry.register(
            "lease_expiries",
            "Members whose lease ran out while this node led",
            self.lease_expiries.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Changes of the Raft leader this node has seen",
            self.leader_changes.clone(),
        );
        registry.register_with_unit(
            "raft_proposal_duration",
            "From a proposal on this node to its apply",
            Unit::Seconds,
            self.proposal_duration.clone(),
        );
        registry.register_with_unit(
            "storage_commit_duration",
            "One durable write of this node's Raft log (one fsync)",
            Unit::Seconds,
            self.storage_commit_duration.clone(),
        );
        registry.register(
            "writes_abandoned",
            "Writes this node did not propose or forward because their callers had stopped waiting (a cancelled call, a stopped worker, a follower's forward that timed out)",
            self.writes_abandoned.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC calls this node answered, by service, method and status code",
            self.grpc.counts.clone(),
        );
        registry.register(
            "build",
            "This node's release and the cluster versions it supports",
            Info::new(vec![
                ("version", crate::VERSION.to_string()),
                (
                    "cluster_versions",
                    format!(
                        "{}-{}",
                        crate::state::cluster_version::VersionRange::SUPPORTED.min,
                        crate::state::cluster_version::VersionRange::SUPPORTED.max
                    ),
                ),
            ]),
        );
    }
}

/// Counts the leader changes this node sees, until aborted or Raft stops.
/// Raft's server metrics change only with the vote, the leader or the
/// membership, not with every write.
pub fn spawn_leader_watch(raft: crate::types::Raft, metrics: std::sync::Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    use openraft::async_runtime::watch::WatchReceiver;
    tokio::spawn(async move {
        let mut server = raft.server_metrics();
        let mut leader = server.borrow_watched().current_leader;
        while server.changed().await.is_ok() {
            let now = server.borrow_watched().current_leader;
            if now != leader && now.is_some() {
                metrics.leader_changes.inc();
            }
            leader = now;
        }
    })
}

/// One module's tick handles, held by each of its tasks' workers.
#[derive(Debug, Clone)]
pub struct ModuleMetrics {
    outcomes: [Counter; TickOutcome::ALL.len()],
    duration: Histogram,
    lateness: Histogram,
}

impl ModuleMetrics {
    /// A tick that started `lateness` after its due time, ran for
    /// `duration`, and ended with `outcome`.
    pub fn tick(&self, outcome: TickOutcome, duration: Duration, lateness: Duration) {
        // `ALL` lists the outcomes in their declared order.
        self.outcomes[outcome as usize].inc();
        self.duration.observe(duration.as_secs_f64());
        self.lateness.observe(lateness.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &Metrics) -> String {
        let mut registry = Registry::with_prefix("baton");
        metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn ticks_are_counted_by_module_and_outcome_with_every_series_from_zero() {
        let metrics = Metrics::default();
        let counter = metrics.module("counter");
        counter.tick(TickOutcome::Ok, Duration::from_millis(3), Duration::from_millis(20));
        counter.tick(TickOutcome::Ok, Duration::from_millis(3), Duration::ZERO);
        counter.tick(TickOutcome::TimedOut, Duration::from_secs(2), Duration::ZERO);
        let out = text(&metrics);
        assert!(
            out.contains("baton_ticks_total{module=\"counter\",outcome=\"ok\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("baton_ticks_total{module=\"counter\",outcome=\"timed_out\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("baton_ticks_total{module=\"counter\",outcome=\"trapped\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("baton_tick_duration_seconds_count{module=\"counter\"} 3"),
            "{out}"
        );
        assert!(out.contains("# TYPE baton_tick_lateness_seconds histogram"), "{out}");
        assert!(
            out.contains("baton_tick_lateness_seconds_bucket{le=\"0.032\",module=\"counter\"} 3"),
            "{out}"
        );
    }

    #[test]
    fn failovers_and_the_rest_are_named_as_prometheus_expects() {
        let metrics = Metrics::default();
        metrics.failover(FailoverReason::ProcessGone, Duration::from_millis(120));
        metrics.leader_changes.inc();
        metrics.held_back(
            crate::runtime::FenceError::CatchingUp {
                applied: 1,
                required: 2,
            }
            .reason(),
        );
        let out = text(&metrics);
        assert!(
            out.contains("baton_ticks_held_back_total{reason=\"catching_up\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("baton_ticks_held_back_total{reason=\"lease_ended\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("baton_failovers_total{reason=\"process_gone\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("baton_failovers_total{reason=\"lease_expired\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("baton_failover_duration_seconds_sum{reason=\"process_gone\"} 0.12"),
            "{out}"
        );
        assert!(out.contains("baton_raft_leader_changes_total 1"), "{out}");
        assert!(out.contains("baton_lease_expiries_total 0"), "{out}");
        assert!(out.contains("baton_writes_abandoned_total 0"), "{out}");
        assert!(
            out.contains("# TYPE baton_storage_commit_duration_seconds histogram"),
            "{out}"
        );
        assert!(
            out.contains(&format!("baton_build_info{{version=\"{}\"", crate::VERSION)),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn a_ticks_result_names_its_outcome() {
        use crate::runtime::TickError;
        let ok: Result<(), TickError> = Ok(());
        assert_eq!(TickOutcome::of(Some(&ok)), TickOutcome::Ok);
        let over: Result<(), TickError> = Err(TickError::OverBudget(Duration::from_secs(1)));
        assert_eq!(TickOutcome::of(Some(&over)), TickOutcome::TimedOut);
        assert_eq!(TickOutcome::of::<()>(None), TickOutcome::Panicked);
        for (index, outcome) in TickOutcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index, "ALL is in declared order");
        }
        let names: std::collections::BTreeSet<_> = TickOutcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), TickOutcome::ALL.len());
    }
}
