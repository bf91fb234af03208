//! The caps on what one task may keep: a task whose state is over
//! `[limits] max_state_bytes` fails with a reason that names it and the cap,
//! and nothing else stops; states at the largest cap allowed (2 MiB of JSON
//! each) replicate, forwarded by followers, instead of timing out.

use std::time::Duration;

use baton_cluster_tests::task_api::{add, deploy, every, history, tasks};
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::config::TimingConfig;

/// The cap in this test's configs: the largest allowed.
const CAP: usize = baton_node::config::MAX_CAP_BYTES;

/// A downstream on loopback that answers every `ping` with `size` bytes (a
/// `netprobe` task keeps the answer as its state).
fn downstream(size: usize) -> String {
    baton_cluster_tests::downstream::answering("127.0.0.1:0", size).expect("a downstream on loopback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_over_the_cap_fails_its_task_alone_and_states_at_the_cap_replicate() {
    let extra = format!("[limits]\nmax_state_bytes = {CAP}\n");
    let cluster = TestCluster::start_with_config(3, TimingConfig::default(), &extra).await;
    let client = cluster.client();
    deploy(&cluster, &client, "counter").await;
    deploy(&cluster, &client, "netprobe").await;
    let (at_cap, over) = (downstream(CAP), downstream(CAP + 1));

    for i in 0..6 {
        add(&client, every(&format!("count-{i}"), "counter", 200, "")).await;
    }
    for i in 0..3 {
        let mut fits = every(&format!("fits-{i}"), "netprobe", 1000, &at_cap);
        fits.allow_net = vec![at_cap.clone()];
        add(&client, fits).await;
    }
    for i in 0..2 {
        let mut big = every(&format!("over-{i}"), "netprobe", 300, &over);
        big.allow_net = vec![over.clone()];
        big.max_restarts = 1;
        add(&client, big).await;
    }
    let status = cluster.status().await.unwrap();
    let (leader, first_commit) = (status.leader.unwrap(), status.commit_index);

    // Over the cap: failed, saying which task and which cap.
    for i in 0..2 {
        let name = format!("over-{i}");
        let failed = poll_async(
            Duration::from_secs(60),
            &format!("{name} to be marked failed"),
            || async {
                tasks(&client)
                    .await
                    .into_iter()
                    .find(|t| t.name == name && t.status == "failed")
            },
        )
        .await;
        assert!(
            failed.failure.contains(&name)
                && failed.failure.contains(&format!("over the cap of {CAP} bytes"))
                && failed.failure.contains("max_state_bytes"),
            "{}",
            failed.failure
        );
        assert_eq!(failed.tick, 0, "nothing over the cap was ever committed");
        assert!(history(&client, &name).await.is_empty());
    }

    // At the cap: every one ticks, those on followers through the forward
    // to the leader; the counters keep ticking beside them.
    let since = status_time_ms();
    poll_async(
        Duration::from_secs(60),
        "every task at the cap and every counter to tick on",
        || async {
            let all = tasks(&client).await;
            let ticking = |prefix: &str| {
                all.iter()
                    .filter(|t| t.name.starts_with(prefix))
                    .all(|t| t.status == "running" && t.last_tick_at_ms.is_some_and(|at| at > since) && t.tick >= 2)
            };
            (ticking("fits-") && ticking("count-")).then_some(())
        },
    )
    .await;
    let all = tasks(&client).await;
    let forwarded: Vec<_> = all
        .iter()
        .filter(|t| t.name.starts_with("fits-") && t.owner != leader)
        .collect();
    assert!(!forwarded.is_empty(), "no task at the cap ran on a follower: {all:?}");
    for task in all.iter().filter(|t| t.name.starts_with("fits-")) {
        assert_eq!(task.state.len(), CAP, "{} keeps its whole state", task.name);
    }
    let later = cluster.status().await.unwrap();
    assert!(
        later.commit_index > first_commit,
        "the commit index stood still at {first_commit}"
    );
}

fn status_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
