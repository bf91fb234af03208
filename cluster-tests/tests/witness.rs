//! One owner at a time, as the outside world sees it, on real processes: 30
//! `witnessed` tasks every 300 ms call a witness that holds each call
//! 150 ms, while task-owning followers are frozen (SIGSTOP) for 3 s and
//! thawed, three times. The witness must see no two runs of a task at once
//! and no fencing token going back. With fencing disabled (the teeth test),
//! it must see exactly that, and say which task, which nodes and how long.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_cluster_tests::history::{Expectations, check, collect};
use baton_cluster_tests::task_api::{start_witnessed, tasks, witness_report};
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
