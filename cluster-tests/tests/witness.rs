//! One owner at a time, as the outside world sees it, on real processes: 30
//! `witnessed` tasks every 300 ms call a witness that holds each call
//! 150 ms, while task-owning followers are frozen (SIGSTOP) for 3 s and
//! thawed, three times. The witness must see no two runs of a task at once
//! and no fencing token going back. With fencing disabled (the teeth test),
//! it must see exactly that, and say which task, which nodes and how long.
//!
//! The leader's own tasks leave it by hand-off under the same witness:
//! forced (its workers stuck on purpose), then as usual.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_cluster_tests::history::{Expectations, check, collect};
use baton_cluster_tests::task_api::{set_drained, start_witnessed, tasks, witness_report};
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::witness_check::WitnessReport;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::config::TimingConfig;
use batonctl::ClusterClient;

const TASKS: usize = 30;
const PERIOD_MS: u64 = 300;
const HOLD: Duration = Duration::from_millis(150);
const FREEZE: Duration = Duration::from_secs(3);

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A follower that owns witnessed tasks.
async fn an_owning_follower(cluster: &TestCluster, client: &ClusterClient) -> u64 {
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    poll_async(Duration::from_secs(30), "a follower owning tasks", || async {
        let owners: BTreeSet<u64> = tasks(client).await.iter().map(|t| t.owner).collect();
        owners.into_iter().find(|o| *o != leader && *o != 0)
    })
    .await
}

/// Freezes an owning follower for `FREEZE`, thaws it, and waits until it
/// is up and every task has ticked since.
async fn freeze_and_thaw(cluster: &mut TestCluster, client: &ClusterClient) {
    let frozen = an_owning_follower(cluster, client).await;
    cluster.freeze(frozen);
    tokio::time::sleep(FREEZE).await;
    cluster.thaw(frozen);
    let thawed: Vec<(String, u64)> = tasks(client).await.into_iter().map(|t| (t.name, t.tick)).collect();
    cluster.wait_for_state(frozen, "up", Duration::from_secs(30)).await;
    poll_async(Duration::from_secs(30), "every task ticking after the thaw", || async {
        let now = tasks(client).await;
        thawed
            .iter()
            .all(|(name, tick)| now.iter().any(|t| &t.name == name && t.tick > *tick))
            .then_some(())
    })
    .await;
}

async fn report(cluster: &TestCluster, witness: &Witness, names: &BTreeSet<String>) -> WitnessReport {
    let client = cluster.client();
    let report = witness_report(&client, witness, names).await;
    eprintln!("{report}");
    assert_eq!(witness.malformed(), 0, "calls the witness could not read");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_owners_never_run_a_task_at_the_same_time_as_its_new_owner() {
    let _one = ONE_AT_A_TIME.lock().await;
    let witness = Witness::start("127.0.0.1:0", HOLD).await.unwrap();
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let names = start_witnessed(&cluster, &client, &witness, TASKS, PERIOD_MS).await;
    for _ in 0..3 {
        freeze_and_thaw(&mut cluster, &client).await;
    }
    let report = report(&cluster, &witness, &names).await;
    assert!(report.is_clean(), "{report}");
    assert!(report.runs > TASKS * 10, "too few runs to tell: {report}");
    let bound_ms = cluster.status().await.unwrap().failover_bound_ms;
    let expect = Expectations {
        tasks: names,
        max_gap_ms: PERIOD_MS + bound_ms + FREEZE.as_millis() as u64,
        counters: true,
    };
    let histories = collect(&client).await.unwrap();
    check(&histories, &expect).unwrap_or_else(|v| panic!("{v}"));
}

/// Drains (or undrains) node `id` and waits until it owns none (or some)
/// of the tasks.
async fn drain_and_wait(client: &ClusterClient, id: u64, drain: bool) {
    set_drained(client, id, drain).await;
    let what = match drain {
        true => format!("drained node {id} to own no task"),
        false => format!("undrained node {id} to own tasks again"),
    };
    poll_async(Duration::from_secs(60), &what, || async {
        let owns = tasks(client).await.iter().any(|t| t.owner == id);
        (owns != drain).then_some(())
    })
    .await;
}

/// The leader's lease asks it to have applied the log only as far as the
/// first commit of its term, not as far as its own later writes
/// (`renew_as_leader`): what keeps it from running a task beside the node it
/// hands it to is that it forces a stuck hand-off only a patience after its
/// own applied state showed it (`overdue_handoffs`), and yields one as soon
/// as its worker sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_own_tasks_leave_it_forced_or_handed_off_without_two_owners_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let witness = Witness::start("127.0.0.1:0", HOLD).await.unwrap();
    let cluster = TestCluster::create(3, TimingConfig::default());
    let stall = cluster.local.dir.join("stall-hand-offs");
    cluster.append_config(&format!(
        "[testing]\nstall_hand_offs_file = {:?}",
        stall.display().to_string()
    ));
    let cluster = cluster.started(3).await;
    let client = cluster.client();
    let names = start_witnessed(&cluster, &client, &witness, TASKS, PERIOD_MS).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    poll_async(Duration::from_secs(30), "the leader to own witnessed tasks", || async {
        tasks(&client).await.iter().any(|t| t.owner == leader).then_some(())
    })
    .await;

    // Its workers ignore hand-offs while the file exists: each is forced.
    let owned = tasks(&client).await.iter().filter(|t| t.owner == leader).count();
    eprintln!("the leader, node {leader}, owns {owned} of the {TASKS} tasks");
    std::fs::write(&stall, b"").unwrap();
    drain_and_wait(&client, leader, true).await;
    std::fs::remove_file(&stall).unwrap();
    let log = std::fs::read_to_string(cluster.local.nodes[&leader].log_path()).unwrap();
    assert!(
        log.contains("hand-off not completed by its owner; moving it at once"),
        "the leader forced no hand-off of its own tasks"
    );
    let status = cluster.status().await.unwrap();
    assert_eq!(status.leader, Some(leader), "leadership moved during the drain");
    drain_and_wait(&client, leader, false).await;
    // Then as usual: its workers yield.
    drain_and_wait(&client, leader, true).await;
    drain_and_wait(&client, leader, false).await;

    let report = report(&cluster, &witness, &names).await;
    assert!(report.is_clean(), "{report}");
    assert!(report.runs > TASKS * 5, "too few runs to tell: {report}");
    let timing = TimingConfig::default();
    let patience = baton_node::supervision::forced_handoff_patience(
        Duration::from_millis(timing.lease_ms),
        baton_node::runtime::RuntimeLimits::default().tick_budget,
        Duration::from_millis(timing.lease_renew_ms),
    );
    // A forced hand-off keeps its task from ticking for up to the patience
    // and a scan of the leader.
    let expect = Expectations {
        tasks: names,
        max_gap_ms: 2 * PERIOD_MS + patience.as_millis() as u64 + 500,
        counters: true,
    };
    let histories = collect(&client).await.unwrap();
    check(&histories, &expect).unwrap_or_else(|v| panic!("{v}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fencing_disabled_the_witness_sees_two_owners_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let witness = Witness::start("127.0.0.1:0", HOLD).await.unwrap();
    let extra = "[testing]\nunsafe_disable_fencing = true";
    let mut cluster = TestCluster::start_with_config(3, TimingConfig::default(), extra).await;
    let client = cluster.client();
    let names = start_witnessed(&cluster, &client, &witness, TASKS, PERIOD_MS).await;
    freeze_and_thaw(&mut cluster, &client).await;
    let report = report(&cluster, &witness, &names).await;
    assert!(
        !report.overlaps.is_empty(),
        "the witness saw no overlap without fencing: {report}"
    );
    let text = report.to_string();
    let first = &report.overlaps[0];
    assert_ne!(first.first.node, first.second.node, "{text}");
    assert!(
        text.contains(&format!("task {}", first.first.task)) && text.contains("ms together"),
        "{text}"
    );
}
