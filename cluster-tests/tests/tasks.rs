//! Tasks ticking on a cluster of real processes: counters commit contiguous
//! ticks, a node's tasks move when it dies, a trapping task fails alone at
//! its restart intensity, and pause and resume hold and release a task.

use std::time::Duration;

use baton_cluster_tests::task_api::{add, deploy, every, history, task, tasks};
use baton_cluster_tests::{TestCluster, poll_async};
use baton_proto::{TaskInfo, TaskRequest, TickInfo};

/// The counter invariant: ticks 1..=n committed once each, in order, with
/// epochs that never go down, and a state equal to the tick count.
fn check_counter(info: &TaskInfo, ticks: &[TickInfo]) {
    let numbers: Vec<u64> = ticks.iter().map(|t| t.tick).collect();
    let first = numbers[0];
    assert_eq!(
        numbers,
        (first..first + numbers.len() as u64).collect::<Vec<_>>(),
        "{}: gaps or repeats",
        info.name
    );
    assert!(
        ticks.windows(2).all(|w| w[0].epoch <= w[1].epoch),
        "{}: an epoch went down",
        info.name
    );
    let state = baton_cluster_tests::history::counter_count(&info.state).expect("a counter state");
    assert_eq!(
        state, info.tick,
        "{}: state differs from its committed ticks",
        info.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_commit_contiguous_ticks_and_move_when_their_node_dies() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    deploy(&cluster, &client, "counter").await;
    for i in 0..6 {
        add(&client, every(&format!("c{i}"), "counter", 100, "")).await;
    }
    poll_async(Duration::from_secs(30), "every counter to tick 10 times", || async {
        tasks(&client)
            .await
            .iter()
            .all(|t| t.tick >= 10 && t.owner != 0)
            .then_some(())
    })
    .await;
    let owners: Vec<u64> = tasks(&client).await.iter().map(|t| t.owner).collect();
    assert!(
        owners.iter().collect::<std::collections::BTreeSet<_>>().len() >= 2,
        "not spread: {owners:?}"
    );

    // Kill the owner of c0 (not the leader, so the leader's placement acts).
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let victim = tasks(&client)
        .await
        .into_iter()
        .map(|t| t.owner)
        .find(|o| *o != leader)
        .expect("a follower owns a task");
    let moved: Vec<String> = tasks(&client)
        .await
        .into_iter()
        .filter(|t| t.owner == victim)
        .map(|t| t.name)
        .collect();
    let ticks_at_kill: Vec<u64> = {
        let all = tasks(&client).await;
        moved
            .iter()
            .map(|n| all.iter().find(|t| &t.name == n).unwrap().tick)
            .collect()
    };
    cluster.kill9(victim);
    poll_async(
        Duration::from_secs(30),
        "the dead node's tasks to tick elsewhere",
        || async {
            let all = tasks(&client).await;
            moved
                .iter()
                .zip(&ticks_at_kill)
                .all(|(n, at)| {
                    all.iter()
                        .any(|t| &t.name == n && t.owner != victim && t.tick >= at + 5)
                })
                .then_some(())
        },
    )
    .await;
    for info in tasks(&client).await {
        check_counter(&info, &history(&client, &info.name).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_task_fails_at_its_intensity_and_others_keep_ticking() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    deploy(&cluster, &client, "counter").await;
    // `faulty` imports wasi:http: it waits for the cluster version that
    // grants HTTP, which a new cluster climbs to.
    let highest = baton_node::state::cluster_version::VersionRange::SUPPORTED.max;
    baton_cluster_tests::upgrades::await_cluster_version(&client, highest).await;
    deploy(&cluster, &client, "faulty").await;
    add(&client, every("steady", "counter", 100, "")).await;
    let mut trapping = every("trapping", "faulty", 50, r#"{"trap": true}"#);
    (trapping.max_restarts, trapping.restart_window_ms) = (3, 60_000);
    add(&client, trapping).await;

    let failed = poll_async(
        Duration::from_secs(30),
        "the trapping task to be marked failed",
        || async {
            let t = task(&client, "trapping").await;
            (t.status == "failed").then_some(t)
        },
    )
    .await;
    assert!(failed.failure.contains("4 failed ticks"), "{}", failed.failure);
    assert_eq!(failed.tick, 0, "a failed tick must not commit");

    let before = task(&client, "steady").await.tick;
    poll_async(Duration::from_secs(20), "the steady task to keep ticking", || async {
        (task(&client, "steady").await.tick >= before + 5).then_some(())
    })
    .await;
    let status = cluster.status().await.unwrap();
    assert!(status.members.iter().all(|m| m.state == "up"));
    assert_eq!(status.tasks.failed, vec!["trapping".to_string()]);
    assert_eq!(status.tasks.running, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_task_holds_still_until_resumed() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    deploy(&cluster, &client, "counter").await;
    add(&client, every("c", "counter", 50, "")).await;
    poll_async(Duration::from_secs(30), "ticks", || async {
        (task(&client, "c").await.tick >= 3).then_some(())
    })
    .await;

    let request = TaskRequest { name: "c".into() };
    let paused = client
        .call_with(&request, |mut c, r| async move { c.pause_task(r).await })
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!(paused.status, "paused");
    // A tick in flight when the pause committed cannot commit after it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = task(&client, "c").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(task(&client, "c").await.tick, held.tick, "a paused task ticked");

    client
        .call_with(&request, |mut c, r| async move { c.resume_task(r).await })
        .await
        .unwrap();
    poll_async(Duration::from_secs(20), "the resumed task to tick", || async {
        (task(&client, "c").await.tick >= held.tick + 3).then_some(())
    })
    .await;
    let info = task(&client, "c").await;
    check_counter(&info, &history(&client, "c").await);
}
