//! The chaos suite's driver: a cluster of node containers with counter
//! tasks and witnessed tasks (calling a witness on the host) ticking,
//! faults injected one at a time, and after each one the invariants checked
//! and added to the report (`chaos_report`).
//!
//! Each fault runs while the tasks tick, then heals, then the cluster must
//! converge (one leader, every member up, every task owned by a member and
//! ticking) and settle (no task moving for 2 s, every task ticking): the
//! worst tick gap of a fault runs until then. Everything the cluster
//! committed is read every fault (it keeps only a task's last 256 ticks)
//! and checked as one history, and the witness's runs against it. A failed
//! invariant does not stop the run: the report says what broke, after which
//! fault, and the caller decides (the matrix test fails, the teeth test
//! expects it to).
//!
//! # Layout
//!
//! - `fault`: the kinds of fault and their names.
//! - `driver`: starting the cluster, running a fault, publishing the report.
//! - `inject`: how each fault is made, measured and healed.
//! - `large_states`: the tasks at the cap of the large-states row.
//! - `steps`: the waits and measures the faults share.
//! - `checks`: the invariants checked after each fault.
//! - `upgrades`: the rolling upgrades of the node binary during a fault.

mod checks;
mod driver;
mod fault;
mod inject;
mod large_states;
mod steps;
mod upgrades;

pub use fault::Fault;

use std::collections::BTreeSet;
use std::time::Duration;

use baton_proto::RolloutSettings;
use batonctl::ClusterClient;
use rand::rngs::StdRng;

use crate::chaos_report::Report;
use crate::containers::ContainerCluster;
use crate::history::Recorder;
use crate::task_api::now_ms;
use crate::witness::Witness;

/// How often a witnessed task ticks, and how long the witness holds each
/// call (a slow downstream): as in the process tests.
const WITNESS_PERIOD_MS: u64 = 300;
const WITNESS_HOLD: Duration = Duration::from_millis(150);

/// How long the witness holds a call while a pause is to land in the middle
/// of one: long enough that `docker pause` takes effect inside it.
const MID_TICK_HOLD: Duration = Duration::from_millis(600);

/// How the chaos suite's rollouts go: a canary, then two nodes at a time,
/// each step healthy for a second.
const ROLLOUT_SETTINGS: RolloutSettings = RolloutSettings {
    canary: 1,
    max_parallel: 2,
    min_healthy_ms: 1_000,
    healthy_deadline_ms: 20_000,
    no_auto_revert: false,
};

/// A slow downstream: most of the tick's 1 s budget, with room left for a
/// shared two-core machine running five nodes.
const SLOW_HOLD: Duration = Duration::from_millis(600);

/// How long a partition, a one-way loss or packet loss lasts: past the
/// lease, so the cut-off node's tasks must move.
const HOLD_MS: u64 = 3_000;

/// How long the cluster gets to converge after a fault heals.
const CONVERGE: Duration = Duration::from_secs(90);

/// What the failover check allows beyond period + failover bound: the
/// measurement (docker and nsenter calls, the commit) and a shared 2-core
/// machine running five nodes, Docker and the test. The soak's figures
/// against the bound itself are in BENCHMARKS.md; CI once measured a
/// leader's loss to a partition 26 ms inside the bound.
const NOISE_MS: u64 = 500;

/// How long a node on a full disk is watched for a stop.
const FULL_DISK_WATCH: Duration = Duration::from_secs(5);

/// How long the tasks must keep their owners before a fault counts as over.
const SETTLE: Duration = Duration::from_secs(2);

/// How long a lost node's tasks get to tick elsewhere before the failover
/// counts as failed (the bound itself is checked from the history).
const MOVE: Duration = Duration::from_secs(30);

/// What a chaos run looks like.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub nodes: u64,
    pub tasks: usize,
    pub period_ms: u64,
    /// Tasks of the `witnessed` module, calling the witness every
    /// `WITNESS_PERIOD_MS`, beside the counters.
    pub witnessed: usize,
    /// Seeds the choice of victims (and the soak's choice of faults).
    pub seed: u64,
    /// `[testing] unsafe_disable_fencing` on every node.
    pub unsafe_disable_fencing: bool,
    /// The report's heading.
    pub title: String,
}

/// A running chaos cluster and its report so far.
pub struct Chaos {
    pub cluster: ContainerCluster,
    pub report: Report,
    pub rng: StdRng,
    client: ClusterClient,
    options: ChaosOptions,
    names: BTreeSet<String>,
    /// The downstream service the witnessed tasks call, on the host's
    /// address on the containers' network.
    witness: Witness,
    witnessed: BTreeSet<String>,
    /// The witness's totals after the last fault: (runs, re-runs).
    witness_seen: (usize, usize),
    recorder: Recorder,
    bound_ms: u64,
    lease_ms: u64,
    /// How long the leader waits before it forces a hand-off.
    patience_ms: u64,
    /// Keys written (and acknowledged) before each fault; value = key.
    writes: Vec<String>,
    releases: u64,
}

/// The time a node's log line was written (its leading RFC 3339 timestamp),
/// in ms since the Unix epoch. Containers share the host's clock.
fn log_time_ms(line: &str) -> Option<u64> {
    let stamp = line.split_whitespace().next()?;
    let time = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
    u64::try_from(time.timestamp_millis()).ok()
}

/// Calls `check` every `every` until it returns Ok; once `timeout` has
/// passed, returns its last Err (what is still missing) instead.
async fn until<T, E>(timeout: Duration, every: Duration, mut check: impl AsyncFnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(missing) if tokio::time::Instant::now() > deadline => return Err(missing),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// What injecting a fault did, as `Chaos::run` reports it.
#[derive(Debug, Default)]
struct Injected {
    /// When the fault took effect: failover and gaps count from here.
    started: u64,
    /// The nodes whose tasks had to move.
    lost: Vec<u64>,
    /// The worst time from the loss to a moved task's first tick elsewhere,
    /// or why one never came.
    moved: Option<Result<u64, String>>,
    /// The version a rollout started with the fault is heading for.
    rollout: Option<u32>,
    /// What to say of the fault instead of naming the lost nodes.
    note: Option<String>,
    /// What a move may take beyond the failover bound: a tick's length on
    /// a slow downstream (a moved task's first tick elsewhere commits that
    /// much after it ran), or a forced hand-off's patience.
    extra_ms: u64,
    /// What the fault itself showed broken (a bad exit code, a node that
    /// did not stop).
    broken: Option<String>,
}

impl Injected {
    fn moved(started: u64, lost: Vec<u64>, moved: Result<u64, String>) -> Injected {
        Injected {
            started,
            lost,
            moved: Some(moved),
            ..Injected::default()
        }
    }

    fn with_rollout(self, rollout: Option<u32>) -> Injected {
        Injected { rollout, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_is_dated_by_its_timestamp() {
        let line = "2026-11-26T15:08:14.512336Z ERROR baton_node: raft stopped: ... No space left on device";
        assert_eq!(log_time_ms(line), Some(1_795_705_694_512));
        assert_eq!(log_time_ms("error: raft stopped: ..."), None);
        assert_eq!(log_time_ms(""), None);
    }
}
