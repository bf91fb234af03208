//! A stall is never silent: when the leader's commits stand still, or
//! running tasks stop ticking, `status` says so, with the reason, and stops
//! saying so once the cluster moves again.

use std::time::Duration;

use baton_cluster_tests::task_api::{add, deploy, every, tasks};
use baton_cluster_tests::{TestCluster, poll_async};
use batonctl::cmd::status::render;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_stalled_commits_and_overdue_tasks_until_the_cluster_moves_again() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    deploy(&cluster, &client, "counter").await;
    for i in 0..6 {
        add(&client, every(&format!("count-{i}"), "counter", 200, "")).await;
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let at_leader = cluster.node_client(leader);
    let status = |client| async move { batonctl::cmd::status::fetch(client).await.ok() };

    // Healthy: nothing stalls (polled: the tasks are placed and tick). A
    // task is overdue only once it has ticked: until then it has no
    // schedule to be late against.
    poll_async(Duration::from_secs(30), "every task to tick", || async {
        tasks(&client).await.iter().all(|t| t.tick >= 1).then_some(())
    })
    .await;
    poll_async(Duration::from_secs(30), "a healthy status", || async {
        let view = status(&at_leader).await?;
        (view.stalls.is_empty() && view.tasks.running == 6 && view.members.iter().all(|m| m.state == "up"))
            .then_some(())
    })
    .await;

    // Both followers freeze: the leader stays leader, but nothing commits.
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &followers {
        cluster.freeze(id);
    }
    let waiting = {
        let client = cluster.node_client(leader);
        tokio::spawn(async move {
            let request = baton_proto::PutRequest {
                key: "waits".into(),
                value: b"v".to_vec(),
            };
            let _ = client
                .call_with(&request, |mut c, r| async move { c.put(r).await })
                .await;
        })
    };
    let stalled = poll_async(Duration::from_secs(60), "status to report the stall", || async {
        let view = status(&at_leader).await?;
        let commits = view.stalls.iter().any(|s| s.kind == "commits");
        (commits && view.tasks.overdue > 0).then_some(view)
    })
    .await;
    let text = render(&stalled);
    eprintln!("{text}");
    let commits = stalled.stalls.iter().find(|s| s.kind == "commits").unwrap();
    assert!(commits.for_ms >= baton_node::raft::STALL_AFTER_MS, "{commits:?}");
    for id in &followers {
        assert!(
            commits.summary.contains(&format!("node {id}: ")),
            "the reason names each failing follower: {}",
            commits.summary
        );
    }
    assert!(text.contains("\nSTALLED:\n  commits stalled for "), "{text}");
    assert!(text.contains(" overdue)"), "{text}");
    assert!(
        stalled
            .stalls
            .iter()
            .any(|s| s.kind == "task" && s.summary.contains("past its next tick")),
        "{text}"
    );

    // They thaw: the stalls clear.
    for &id in &followers {
        cluster.thaw(id);
    }
    waiting.await.unwrap();
    let any = cluster.client();
    poll_async(Duration::from_secs(60), "the stalls to clear", || async {
        let view = status(&any).await?;
        (view.stalls.is_empty() && view.tasks.overdue == 0).then_some(())
    })
    .await;
}
