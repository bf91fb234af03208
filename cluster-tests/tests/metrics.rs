//! Each node's plain-HTTP listener, seen from outside: `/healthz`,
//! `/readyz` and `/metrics` answer on every node of a 3-node cluster, and a
//! real Prometheus server scraping them sees every node up, one leader, the
//! tasks, and the tick counters rising while the cluster runs; a killed
//! node shows as down, and its tasks' move as a failover; with the leader
//! killed too, the last node answers `/readyz` with 503.

use std::time::Duration;

use baton_cluster_tests::http::get;
use baton_cluster_tests::prometheus::Prometheus;
use baton_cluster_tests::task_api::start_counters;
use baton_cluster_tests::{TestCluster, poll_async};

const TASKS: usize = 12;
const PERIOD_MS: u64 = 250;
const ANSWER: Duration = Duration::from_secs(5);

/// The sum of the query's series, once Prometheus answers with at least
/// one.
async fn sum(prometheus: &Prometheus, expr: &str) -> Option<f64> {
    let samples = prometheus.query(expr).await.ok()?;
    (!samples.is_empty()).then(|| samples.iter().map(|s| s.value).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_node_and_sees_the_ticks_rise_and_a_failover() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    start_counters(&cluster, &client, TASKS, PERIOD_MS).await;
    let targets: Vec<String> = cluster.local.nodes.values().map(|n| n.metrics_addr.clone()).collect();

    for addr in &targets {
        poll_async(
            Duration::from_secs(30),
            &format!("{addr}/readyz to answer 200"),
            || async {
                let answer = get(addr, "/readyz", ANSWER).await.ok()?;
                (answer.status == 200).then_some(())
            },
        )
        .await;
        let health = get(addr, "/healthz", ANSWER).await.unwrap();
        assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
        let metrics = get(addr, "/metrics", ANSWER).await.unwrap();
        assert_eq!(metrics.status, 200);
        assert!(
            metrics.content_type.starts_with("application/openmetrics-text"),
            "{}",
            metrics.content_type
        );
        for name in [
            "baton_ticks_total{",
            "baton_tick_lateness_seconds_bucket{",
            "baton_raft_term ",
            "baton_raft_commit_index ",
            "baton_tasks{status=\"running\"} 12",
            "baton_storage_commit_duration_seconds_count ",
            "baton_build_info{",
            "baton_grpc_requests_total{service=\"",
            "baton_ready ",
        ] {
            assert!(metrics.body.contains(name), "{addr}: no {name:?} in\n{}", metrics.body);
        }
        let missing = get(addr, "/nothing", ANSWER).await.unwrap();
        assert_eq!(missing.status, 404);
    }

    let prometheus = Prometheus::start(&cluster.path().join("prometheus"), &targets, Duration::from_millis(500))
        .unwrap_or_else(|e| panic!("{e}"));
    poll_async(Duration::from_secs(60), "Prometheus to see every node up", || async {
        let up = prometheus.query("up").await.ok()?;
        (up.len() == 3 && up.iter().all(|s| s.value == 1.0)).then_some(())
    })
    .await;
    let first = poll_async(Duration::from_secs(30), "a tick counted", || async {
        sum(&prometheus, "sum(baton_ticks_total{outcome=\"ok\"})")
            .await
            .filter(|n| *n > 0.0)
    })
    .await;
    // 12 tasks every 250 ms: about 48 ticks a second.
    poll_async(Duration::from_secs(30), "the tick counters to rise", || async {
        sum(&prometheus, "sum(baton_ticks_total{outcome=\"ok\"})")
            .await
            .filter(|n| *n >= first + 50.0)
    })
    .await;
    assert_eq!(sum(&prometheus, "sum(baton_raft_is_leader)").await, Some(1.0));
    // The followers answer the leader's appends.
    let appends = "count(baton_grpc_requests_total{service=\"Raft\",method=\"AppendEntries\",code=\"OK\"} > 0)";
    assert_eq!(sum(&prometheus, appends).await, Some(2.0));
    assert_eq!(
        sum(&prometheus, "min(baton_tasks{status=\"running\"})").await,
        Some(TASKS as f64)
    );
    poll_async(Duration::from_secs(30), "every task owned once", || async {
        sum(&prometheus, "sum(baton_tasks_owned)")
            .await
            .filter(|n| *n == TASKS as f64)
    })
    .await;

    // A follower that owns tasks is killed: Prometheus sees it down, and
    // the leader counts the move of its tasks as a failover.
    let status = batonctl::cmd::status::fetch(&client).await.unwrap();
    let leader = status.leader.expect("a leader");
    let victim = status
        .members
        .iter()
        .find(|m| m.id != leader && m.tasks > 0)
        .map(|m| m.id)
        .expect("a follower that owns tasks");
    cluster.kill9(victim);
    poll_async(
        Duration::from_secs(30),
        "Prometheus to see the killed node down",
        || async {
            let up = prometheus.query("up").await.ok()?;
            let down: Vec<_> = up.iter().filter(|s| s.value == 0.0).collect();
            (down.len() == 1 && up.len() == 3).then_some(())
        },
    )
    .await;
    // Its heart vouched for its exit: the fast path.
    poll_async(Duration::from_secs(30), "the failover counted", || async {
        sum(&prometheus, "sum(baton_failovers_total{reason=\"process_gone\"})")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    poll_async(Duration::from_secs(30), "the survivors to own every task", || async {
        sum(&prometheus, "sum(baton_tasks_owned) and on() (sum(up) == 2)")
            .await
            .filter(|n| *n == TASKS as f64)
    })
    .await;
    // Counted once, however many rounds of placement came after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sum(&prometheus, "sum(baton_failovers_total)").await, Some(1.0));
    assert_eq!(
        sum(&prometheus, "sum(baton_failover_duration_seconds_count)").await,
        Some(1.0)
    );

    // The leader killed too: the node left has no leader to follow, so it
    // is not ready (a load balancer or orchestrator takes it out), though
    // its process is healthy.
    let last = (1..=3).find(|id| *id != victim && *id != leader).unwrap();
    let addr = cluster.local.nodes[&last].metrics_addr.clone();
    cluster.kill9(leader);
    let not_ready = poll_async(Duration::from_secs(30), "/readyz to answer 503", || async {
        let answer = get(&addr, "/readyz", ANSWER).await.ok()?;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert!(not_ready.body.starts_with("not ready: "), "{}", not_ready.body);
    let health = get(&addr, "/healthz", ANSWER).await.unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
}
