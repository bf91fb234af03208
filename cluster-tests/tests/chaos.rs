//! Chaos in containers: node containers on a private network (an image made
//! from scratch around the static `baton-node`), counter tasks ticking, and
//! witnessed tasks calling a witness on the host (a downstream service that
//! records every run), and one fault at a time: kill (follower, leader),
//! pause past the lease (also landing in the middle of a witnessed call),
//! graceful stop, `nodes remove` of a running owner (then added back), a
//! drain whose hand-offs the leader must force, partitions (isolate a follower, the same by REJECT rules
//! that make it look gone, the same while a slow downstream holds every
//! tick most of its budget, isolate the leader, split 2|3, one-way), packet
//! loss, a full disk, module rollouts during a partition and during a kill,
//! and a broken version of the witnessed module reverted while its ticks
//! are in flight. After each: heal, converge, and check the
//! invariants (`baton_cluster_tests::chaos`), the witness's among them; the
//! report goes to `target/chaos/NAME.md` and to stderr.
//!
//! These tests need the Docker engine and root (nsenter, iptables, mount);
//! without them they fail, they do not skip. `scripts/test.sh` runs them;
//! `scripts/chaos-soak.sh` runs the longer soak.

use baton_cluster_tests::chaos::{Chaos, ChaosOptions, Fault};
use baton_cluster_tests::chaos_report::Invariant;
use rand::Rng;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PERIOD_MS: u64 = 250;

/// Tasks calling the witness beside the counters.
const WITNESSED: usize = 10;

/// `BATON_CHAOS_SEED`, or a fresh one; printed either way.
fn seed(what: &str) -> u64 {
    let seed = match std::env::var("BATON_CHAOS_SEED") {
        Ok(text) => text.parse().expect("BATON_CHAOS_SEED is a number"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("chaos {what}: seed {seed} (BATON_CHAOS_SEED={seed} replays its choices)");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_five_nodes_keeps_every_invariant() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut chaos = Chaos::start(ChaosOptions {
        nodes: 5,
        tasks: 40,
        period_ms: PERIOD_MS,
        witnessed: WITNESSED,
        seed: seed("matrix"),
        unsafe_disable_fencing: false,
        title: "Chaos matrix".into(),
    })
    .await;
    for fault in Fault::ALL {
        chaos.run(fault).await;
    }
    chaos.publish("matrix");
    assert!(
        chaos.report.passed(),
        "a fault broke an invariant; the report above says which and how"
    );
}

/// The suite's teeth: the same checks on a cluster whose nodes run with
/// `[testing] unsafe_disable_fencing` (no self-fencing, no fencing token)
/// must find a task that committed twice, and the witness two runs of a
/// task at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fencing_disabled_the_checker_finds_double_commits() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut chaos = Chaos::start(ChaosOptions {
        nodes: 3,
        tasks: 30,
        period_ms: PERIOD_MS,
        witnessed: WITNESSED,
        seed: seed("teeth"),
        unsafe_disable_fencing: true,
        title: "Chaos teeth (fencing disabled on purpose: failures expected)".into(),
    })
    .await;
    let caught = |chaos: &Chaos, which: Invariant| {
        chaos
            .report
            .failures()
            .iter()
            .any(|(_, _, invariant, _)| *invariant == which)
    };
    for fault in [Fault::Pause, Fault::IsolateFollower, Fault::Pause, Fault::IsolateLeader] {
        chaos.run(fault).await;
        if caught(&chaos, Invariant::History) && caught(&chaos, Invariant::Witness) {
            break;
        }
    }
    chaos.publish("teeth");
    assert!(
        caught(&chaos, Invariant::History),
        "with fencing disabled, no fault led to a history violation: the checks have no teeth"
    );
    assert!(
        caught(&chaos, Invariant::Witness),
        "with fencing disabled, the witness saw no two runs of a task at once: it has no teeth"
    );
}

/// The soak: `BATON_CHAOS_FAULTS` (default 40) faults drawn at random from
/// every kind, on 5 nodes. Run it with `scripts/chaos-soak.sh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the long soak; run scripts/chaos-soak.sh [--seed N] [--faults N]"]
async fn soak() {
    let _one = ONE_AT_A_TIME.lock().await;
    let faults: usize = std::env::var("BATON_CHAOS_FAULTS").map_or(40, |n| n.parse().expect("BATON_CHAOS_FAULTS"));
    let seed = seed("soak");
    let mut chaos = Chaos::start(ChaosOptions {
        nodes: 5,
        tasks: 40,
        period_ms: PERIOD_MS,
        witnessed: WITNESSED,
        seed,
        unsafe_disable_fencing: false,
        title: format!("Chaos soak, {faults} random faults"),
    })
    .await;
    for _ in 0..faults {
        let fault = Fault::ALL[chaos.rng.random_range(0..Fault::ALL.len())];
        chaos.run(fault).await;
    }
    chaos.publish("soak");
    assert!(
        chaos.report.passed(),
        "a fault broke an invariant (replay: scripts/chaos-soak.sh --seed {seed} --faults {faults})"
    );
}
