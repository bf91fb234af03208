//! Leader election, kill -9 of the leader, and recovery of a killed node, with
//! real `baton-node` processes on loopback.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_cluster_tests::{TestCluster, poll_async};
use batonctl::cmd::status::fetch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_every_member_is_up() {
    let cluster = TestCluster::start(3).await;
    // The first elections may overlap (a candidate can unseat a brand-new
    // leader), so wait for the view to settle: one leader, the one reported,
    // and every member renewed with it (a leader in its first moments holds
    // a member it has not heard from yet as suspect).
    let status = poll_async(
        Duration::from_secs(20),
        "one settled leader, every member up",
        || async {
            let status = cluster.status().await.ok()?;
            let leaders: Vec<u64> = status
                .members
                .iter()
                .filter(|m| m.raft_state == "leader")
                .map(|m| m.id)
                .collect();
            let up = status.members.iter().all(|m| m.state == "up");
            (leaders.len() == 1 && status.leader == Some(leaders[0]) && up).then_some(status)
        },
    )
    .await;
    assert!(status.term >= 1);
    assert_eq!(status.members.len(), 3);
    for member in &status.members {
        assert_eq!(member.state, "up", "{member:?}");
        assert_eq!(member.role, "voter");
        assert_eq!(member.version, env!("CARGO_PKG_VERSION"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_loses_no_acknowledged_write_and_the_node_catches_up() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let key = format!("before-{i}");
        cluster.put(&client, &key, &i.to_string()).await.unwrap();
        acknowledged.push((key, i.to_string()));
    }
    let old = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.kill9(old);

    let new = cluster.wait_for_new_leader(old, Duration::from_secs(20)).await;
    assert_ne!(new, old);
    for (key, value) in &acknowledged {
        let got = cluster.get(&client, key).await.unwrap();
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "acknowledged write {key} lost");
    }
    for i in 0..20 {
        let key = format!("after-{i}");
        cluster.put(&client, &key, "x").await.unwrap();
        acknowledged.push((key, "x".into()));
    }

    // The killed node restarts from its data directory and catches up.
    cluster.restart(old);
    poll_async(Duration::from_secs(30), "the restarted node to catch up", || async {
        for (key, value) in &acknowledged {
            if cluster.get_local(old, key).await.ok()?.as_deref() != Some(value.as_bytes()) {
                return None;
            }
        }
        Some(())
    })
    .await;
    cluster.wait_for_all_up(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_node_cluster_survives_two_kills() {
    let mut cluster = TestCluster::start(5).await;
    let client = cluster.client();
    cluster.put(&client, "a", "1").await.unwrap();

    let first = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.kill9(first);
    let second = cluster.wait_for_new_leader(first, Duration::from_secs(20)).await;
    cluster.put(&client, "b", "2").await.unwrap();
    cluster.kill9(second);
    cluster.wait_for_new_leader(second, Duration::from_secs(20)).await;
    cluster.put(&client, "c", "3").await.unwrap();

    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(
            cluster.get(&client, key).await.unwrap().as_deref(),
            Some(value.as_bytes())
        );
    }
    // Dead, not forgotten: both stay members, shown down (in one answer)
    // once their leases end. A leader elected meanwhile counts a lease
    // from its own term's start, so the first may show up again for a lease.
    let client = cluster.client();
    let status = poll_async(Duration::from_secs(20), "both killed nodes down", || async {
        let status = fetch(&client).await.ok()?;
        let down: BTreeSet<u64> = status
            .members
            .iter()
            .filter(|m| m.state == "down")
            .map(|m| m.id)
            .collect();
        (down == BTreeSet::from([first, second])).then_some(status)
    })
    .await;
    assert_eq!(status.members.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly_and_hands_off_leadership() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let clean = cluster.local.stop(leader, Duration::from_secs(15)).unwrap();
    assert!(clean, "the leader did not exit 0 within its grace period");
    let log = std::fs::read_to_string(cluster.local.nodes[&leader].log_path()).unwrap();
    assert!(log.contains("stopped cleanly"), "{log}");
    let new = cluster.wait_for_new_leader(leader, Duration::from_secs(10)).await;
    assert_ne!(new, leader);
    cluster.put(&cluster.client(), "k", "v").await.unwrap();
}
