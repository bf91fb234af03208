//! A node that was away while the log grew catches up: by entries sent in
//! AppendEntries bounded by bytes (megabytes each, far past the timeout
//! openraft derives from the heartbeat interval, so each call's timeout
//! allows for its size).

use std::time::{Duration, Instant};

use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::config::TimingConfig;
use futures::future::join_all;

/// Writes committed while the follower is away.
const WRITES: usize = 200_000;
/// Clients writing at once.
const WRITERS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stopped_while_200_000_writes_commit_catches_up_after_restart() {
    // No snapshot meanwhile: the follower must catch up from the log itself.
    let timing = TimingConfig {
        snapshot_after_entries: 10 * WRITES as u64,
        ..TimingConfig::default()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let away = (1..=3).find(|&id| id != leader).expect("a follower");
    cluster.kill9(away);

    let client = cluster.node_client(leader);
    let started = Instant::now();
    let (cluster_ref, client_ref) = (&cluster, &client);
    join_all((0..WRITERS).map(|writer| async move {
        for i in (writer..WRITES).step_by(WRITERS) {
            cluster_ref
                .put(client_ref, &format!("key-{i:06}"), &format!("value-{i}"))
                .await
                .unwrap_or_else(|e| panic!("write {i}: {e}"));
        }
    }))
    .await;
    let wrote_for = started.elapsed();
    let commit = cluster.status().await.expect("status").commit_index;

    cluster.restart(away);
    let started = Instant::now();
    let last = format!("key-{:06}", WRITES - 1);
    poll_async(
        Duration::from_secs(300),
        "the restarted follower to apply every write",
        || async {
            let view = cluster.status().await.ok()?;
            let matched = view.members.iter().find(|m| m.id == away)?.matched_index?;
            let applied = cluster.get_local(away, &last).await.ok()??;
            (matched >= commit && applied == format!("value-{}", WRITES - 1).into_bytes()).then_some(())
        },
    )
    .await;
    for i in [0, 1, WRITES / 2, WRITES - 2] {
        let key = format!("key-{i:06}");
        let value = cluster.get_local(away, &key).await.expect("local read");
        assert_eq!(value, Some(format!("value-{i}").into_bytes()), "{key} on node {away}");
    }
    eprintln!(
        "{WRITES} writes by {WRITERS} clients in {:.1} s (commit index {commit}); node {away} caught up in {:.1} s",
        wrote_for.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
