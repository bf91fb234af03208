//! Several Raft nodes in one process, on the real redb store, connected by an
//! in-memory router that can drop, delay or cut messages between any two.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use baton_node::raft::Proposer;
use baton_node::types::{Command, NodeId};
use futures::FutureExt;
use support::cluster::{InProcessCluster, poll};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_writes_to_every_state_machine() {
    let cluster = InProcessCluster::start(3).await;
    let mut expected = BTreeMap::new();
    for i in 0..100 {
        cluster
            .put_via_leader(&[1, 2, 3], &format!("k{i}"), &i.to_string())
            .await;
        expected.insert(format!("k{i}"), i.to_string().into_bytes());
    }
    cluster.converge(&expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_catches_up_after_healing() {
    let cluster = InProcessCluster::start(3).await;
    cluster.put_via_leader(&[1, 2, 3], "before", "1").await;
    let old = cluster.leader(&[1, 2, 3]).await;
    cluster.router.isolate(old);

    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let new = cluster.leader(&rest).await;
    assert_ne!(new, old);
    assert!(
        cluster.put(old, "lost", "x").await.is_err(),
        "an isolated leader must not commit"
    );
    cluster.put_via_leader(&rest, "after", "2").await;

    cluster.router.heal();
    let expected = BTreeMap::from([
        ("before".to_string(), b"1".to_vec()),
        ("after".to_string(), b"2".to_vec()),
    ]);
    cluster.converge(&expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_and_converge_through_lossy_slow_links() {
    let cluster = InProcessCluster::start(3).await;
    cluster.leader(&[1, 2, 3]).await;
    {
        let mut faults = cluster.router.faults.lock().unwrap();
        faults.drop_rate = 0.2;
        faults.max_delay = Duration::from_millis(20);
    }
    let mut expected = BTreeMap::new();
    // Enough writes to build snapshots and compact the log (policy: every 50).
    for i in 0..120 {
        let key = format!("k{i}");
        cluster.put_via_leader(&[1, 2, 3], &key, "v").await;
        expected.insert(key, b"v".to_vec());
    }
    cluster.router.heal();
    cluster.converge(&expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoining_partitioned_follower_does_not_disrupt_the_leader() {
    let cluster = InProcessCluster::start(3).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let term_before = baton_node::types::metrics(&cluster.nodes[&leader].raft).current_term;
    cluster.router.isolate(follower);
    // Long enough for the isolated follower to time out many times over; with
    // pre-vote it never wins a pre-vote, so it never raises its term.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.router.heal();
    cluster.put(leader, "still", "leading").await.unwrap();
    let after = baton_node::types::metrics(&cluster.nodes[&leader].raft);
    assert_eq!(after.current_leader, Some(leader));
    assert_eq!(
        after.current_term, term_before,
        "the partitioned follower must not force a new term"
    );
    cluster
        .converge(&BTreeMap::from([("still".to_string(), b"leading".to_vec())]))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_compacted_entries_catches_up_from_a_snapshot() {
    let cluster = InProcessCluster::start(3).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let lagging = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.router.isolate(lagging);
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != lagging).collect();
    cluster
        .router
        .faults
        .lock()
        .unwrap()
        .cut
        .retain(|(a, b)| !(rest.contains(a) && rest.contains(b)));

    let mut expected = BTreeMap::new();
    for i in 0..200 {
        cluster.put_via_leader(&rest, &format!("k{i}"), "v").await;
        expected.insert(format!("k{i}"), b"v".to_vec());
    }
    // The majority compacted its log past what the lagging follower has.
    let purged = poll(Duration::from_secs(10), "the majority to purge its log", || {
        baton_node::types::metrics(&cluster.nodes[&rest[0]].raft)
            .purged
            .map(|p| p.index)
    })
    .await;
    let lagging_last = baton_node::types::metrics(&cluster.nodes[&lagging].raft)
        .last_log_index
        .unwrap_or(0);
    assert!(
        purged > lagging_last,
        "purged {purged} <= follower's last log {lagging_last}"
    );

    cluster.router.heal();
    cluster.converge(&expected).await;
    let installed = baton_node::types::metrics(&cluster.nodes[&lagging].raft).snapshot;
    assert!(
        installed.is_some_and(|s| s.index >= purged),
        "the follower did not install a snapshot: {installed:?}"
    );
}

/// A write whose caller gives up while it waits behind the batch in flight
/// is not proposed; the writes around it commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_caller_gave_up_while_it_queued_is_not_proposed() {
    let cluster = InProcessCluster::start(3).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let raft = cluster.nodes[&leader].raft.clone();
    let abandoned = prometheus_client::metrics::counter::Counter::<u64>::default();
    let proposer = Proposer::start(
        raft.clone(),
        prometheus_client::metrics::histogram::Histogram::new([1.0].into_iter()),
        abandoned.clone(),
    );
    let put = |key: &str| Command::Put {
        key: key.into(),
        value: b"v".to_vec(),
    };
    // A write committed first: past it, the leader appends nothing but the
    // writes below (its term's first entry is behind it).
    cluster.put(leader, "settled", "v").await.unwrap();
    // Cut off from both followers (which cannot elect anyone, with
    // pre-vote), the leader holds its first write in flight.
    for id in [1, 2, 3].into_iter().filter(|id| *id != leader) {
        cluster.router.isolate(id);
    }
    let appended = baton_node::types::metrics(&raft).last_log_index;
    let first = tokio::spawn({
        let proposer = proposer.clone();
        async move { proposer.propose(put("first")).await }
    });
    poll(Duration::from_secs(10), "the first write in flight", || {
        (baton_node::types::metrics(&raft).last_log_index > appended).then_some(())
    })
    .await;
    // One write queues behind it and its caller gives up; another waits.
    assert!(proposer.propose(put("abandoned")).now_or_never().is_none());
    let mut waited = Box::pin(proposer.propose(put("waited")));
    assert!((&mut waited).now_or_never().is_none());

    cluster.router.heal();
    first.await.unwrap().expect("the first write commits");
    waited.await.expect("the waited write commits");
    assert!(
        cluster.nodes[&leader]
            .state_machine
            .read(|s| !s.kv.contains_key("abandoned")),
        "the abandoned write was proposed, and committed before the one after it"
    );
    assert_eq!(abandoned.get(), 1, "the write not proposed is counted");
    let expected = BTreeMap::from([
        ("settled".to_string(), b"v".to_vec()),
        ("first".to_string(), b"v".to_vec()),
        ("waited".to_string(), b"v".to_vec()),
    ]);
    cluster.converge(&expected).await;
}
