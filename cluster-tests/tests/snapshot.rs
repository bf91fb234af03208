//! A new node joins a cluster whose snapshot is several times the largest
//! message between nodes: the snapshot streams to it in chunks. The nodes
//! build their snapshots at indexes of their own, not all at once. And a
//! node restarted from its snapshot, where tick histories are kept as
//! deltas (cluster version 12), serves every task's history as the others
//! do.

use std::time::{Duration, Instant};

use baton_cluster_tests::task_api::{history, start_counters};
use baton_cluster_tests::upgrades::await_cluster_version;
use baton_cluster_tests::{TestCluster, logged_bytes, logged_numbers, poll_async};
use baton_node::config::TimingConfig;
use baton_node::raft::PEER_MAX_MESSAGE_BYTES;
use baton_node::state::cluster_version::{COMPACT_HISTORY, VersionRange};
use baton_proto::AddNodeRequest;
use futures::future::join_all;

/// The largest value a put takes.
const VALUE_BYTES: usize = 64 * 1024;
/// Large values written: in the binary formats a snapshot keeps a value's
/// bytes as they are, so 3,300 of them make a snapshot of about 216 MB (in
/// JSON, which writes a byte as a number, 800 made as much).
const LARGE_VALUES: usize = 3_300;
/// The snapshot the new node must receive, at least.
const SNAPSHOT_AT_LEAST: usize = 3 * PEER_MAX_MESSAGE_BYTES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_joins_by_a_snapshot_several_times_the_message_limit() {
    // Snapshots come often, and each purges the log behind it (openraft
    // keeps the last 1,000 entries), so the new node cannot catch up from
    // the log.
    let timing = TimingConfig {
        snapshot_after_entries: 500,
        ..TimingConfig::default()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.node_client(leader);

    let value = "x".repeat(VALUE_BYTES);
    let (cluster_ref, client_ref, value_ref) = (&cluster, &client, &value);
    // (A write may time out while the nodes build a snapshot of a few
    // hundred megabytes on these two cores: it is tried again.)
    join_all((0..16).map(|writer| async move {
        for i in (writer..LARGE_VALUES).step_by(16) {
            let key = format!("large-{i:04}");
            let mut tries = 0;
            while let Err(e) = cluster_ref.put(client_ref, &key, value_ref).await {
                tries += 1;
                assert!(tries < 5, "large write {i} keeps failing: {e}");
            }
        }
    }))
    .await;
    // Then small writes, one entry each, until the log has moved far enough
    // past the large ones for a snapshot to hold them and the log before it
    // to be purged.
    // (A write may time out while a node builds a snapshot: only the
    // acknowledged ones count.)
    let mut last_small = None;
    let mut failed = 0;
    for i in 0.. {
        let key = format!("small-{i:05}");
        match cluster.put(&client, &key, "v").await {
            Ok(index) if index > LARGE_VALUES as u64 + 1_700 => {
                last_small = Some(key);
                break;
            }
            Ok(_) => last_small = Some(key),
            Err(e) => {
                failed += 1;
                assert!(failed < 20, "small writes keep failing: {e}");
            }
        }
    }
    let last_small = last_small.expect("an acknowledged small write");
    // Every node has built a snapshot holding the large values.
    let built = poll_async(Duration::from_secs(120), "a snapshot of every large value", || async {
        let log = std::fs::read_to_string(cluster.local.nodes[&leader].log_path()).ok()?;
        logged_bytes(&log, "built a snapshot")
            .into_iter()
            .max()
            .filter(|&bytes| bytes >= SNAPSHOT_AT_LEAST)
    })
    .await;

    let addr = cluster.local.add_node_layout(4).expect("lay out node 4").addr.clone();
    cluster.local.start(4).expect("start node 4");
    let started = Instant::now();
    let request = AddNodeRequest {
        id: 4,
        addr,
        worker: true,
    };
    cluster
        .client()
        .call_with(&request, |mut c, r| async move { c.add_node(r).await })
        .await
        .expect("add node 4 as a worker");
    poll_async(Duration::from_secs(300), "node 4 to hold every write", || async {
        let small = cluster.get_local(4, &last_small).await.ok()??;
        let large = cluster
            .get_local(4, &format!("large-{:04}", LARGE_VALUES - 1))
            .await
            .ok()??;
        (small == b"v" && large.len() == VALUE_BYTES).then_some(())
    })
    .await;
    let joined = started.elapsed();

    let log = std::fs::read_to_string(cluster.local.nodes[&4].log_path()).expect("node 4's log");
    let installed = logged_bytes(&log, "installed a snapshot");
    assert!(
        installed.iter().any(|&bytes| bytes >= SNAPSHOT_AT_LEAST),
        "node 4 must have installed a snapshot of at least {SNAPSHOT_AT_LEAST} bytes; it installed {installed:?}"
    );
    for key in ["large-0000", "large-0401", last_small.as_str()] {
        assert!(
            cluster.get_local(4, key).await.expect("local read").is_some(),
            "{key} on node 4"
        );
    }
    // The cluster goes on committing.
    cluster
        .put(&client, "after", "v")
        .await
        .expect("a write after the join");
    eprintln!(
        "node 4 joined by a snapshot of {} bytes ({:.1}x the {PEER_MAX_MESSAGE_BYTES}-byte message limit; \
         the leader's largest: {built} bytes) in {:.1} s",
        installed.iter().max().unwrap(),
        *installed.iter().max().unwrap() as f64 / PEER_MAX_MESSAGE_BYTES as f64,
        joined.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_builds_its_snapshots_at_indexes_of_its_own() {
    // With openraft's own policy, every node built at the same index: all
    // three held their store's write transaction at once, and nothing
    // committed meanwhile.
    const EVERY: u64 = 3_000;
    /// The log index the writes go on to (writes share entries: it takes
    /// more writes than that).
    const UNTIL_INDEX: u64 = 10_000;
    let timing = TimingConfig {
        snapshot_after_entries: EVERY,
        ..TimingConfig::default()
    };
    let cluster = TestCluster::start_with(3, timing).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.node_client(leader);
    let (cluster_ref, client_ref) = (&cluster, &client);
    join_all((0..8).map(|writer| async move {
        let mut failed = 0;
        for i in 0.. {
            let key = format!("key-{writer}-{i}");
            match cluster_ref.put(client_ref, &key, "v").await {
                Ok(index) if index >= UNTIL_INDEX => break,
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    assert!(failed < 20, "writes keep failing: {e}");
                }
            }
        }
    }))
    .await;
    // Nodes 1, 2 and 3 build at 0, 1,000 and 2,000 modulo 3,000, the first
    // time after 1,500 entries at the least: at 3,000, 6,000 and 9,000, at
    // 4,000 and 7,000, and at 2,000, 5,000 and 8,000.
    let built = poll_async(Duration::from_secs(120), "two snapshots on every node", || async {
        let mut built = Vec::new();
        for id in 1..=3 {
            let log = std::fs::read_to_string(cluster.local.nodes[&id].log_path()).ok()?;
            let indexes: Vec<u64> = logged_numbers(&log, "built a snapshot", "index");
            (indexes.len() >= 2).then_some(())?;
            built.push((id, indexes));
        }
        Some(built)
    })
    .await;
    eprintln!("snapshot indexes by node: {built:?}");
    // Each build comes within 100 ms of writes after its index: at least
    // 100 entries apart even when writes come fast (openraft's policy had
    // them a few apart).
    for (a, of_a) in &built {
        for (b, of_b) in built.iter().filter(|(b, _)| b > a) {
            for (x, y) in of_a.iter().flat_map(|x| of_b.iter().map(move |y| (x, y))) {
                assert!(
                    x.abs_diff(*y) >= 100,
                    "nodes {a} and {b} built snapshots at {x} and {y}: {built:?}"
                );
            }
        }
        for pair in of_a.windows(2) {
            let apart = pair[1] - pair[0];
            assert!(
                (EVERY / 2..=EVERY * 3 / 2).contains(&apart),
                "node {a} built at {} and then at {}: {built:?}",
                pair[0],
                pair[1]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_from_its_snapshot_serves_every_tasks_history() {
    // A restarted node reads its state back from its last snapshot and
    // re-applies the log after it, so the ticks before the snapshot's index
    // come to it from the snapshot alone.
    const COUNTERS: usize = 12;
    const TICKS_BEFORE: usize = 10;
    let timing = TimingConfig {
        snapshot_after_entries: 100,
        ..TimingConfig::default()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    // A new cluster rises to this build's highest version, step by step.
    const { assert!(VersionRange::SUPPORTED.max >= COMPACT_HISTORY) };
    await_cluster_version(&client, VersionRange::SUPPORTED.max).await;
    // Every 1 s: the 256 ticks a history keeps reach back past the start.
    let names = start_counters(&cluster, &client, COUNTERS, 1000).await;
    let before: Vec<_> = poll_async(Duration::from_secs(60), "every counter's early ticks", || async {
        let mut all = Vec::new();
        for name in &names {
            let ticks = history(&client, name).await;
            (ticks.len() >= TICKS_BEFORE).then_some(())?;
            all.push(ticks);
        }
        Some(all)
    })
    .await;
    // A write after those ticks: its index is past them.
    let mark = cluster.put(&client, "mark", "v").await.expect("a write");
    let node = (1..=3).find(|&id| id != leader).expect("a follower");
    let log_path = cluster.local.nodes[&node].log_path();
    let built: u64 = poll_async(Duration::from_secs(120), "a snapshot past the ticks", || async {
        let log = std::fs::read_to_string(&log_path).ok()?;
        logged_numbers(&log, "built a snapshot", "index")
            .into_iter()
            .max()
            .filter(|&index: &u64| index >= mark)
    })
    .await;
    cluster.kill9(node);
    cluster.restart(node);
    let restarted = cluster.node_client(node);
    poll_async(Duration::from_secs(60), "the restarted node to serve", || async {
        cluster.get_local(node, "mark").await.ok()?.map(|_| ())
    })
    .await;
    // Serving the mark, it may not have applied the ticks after it yet:
    // wait until it holds more than the early ticks of every counter.
    poll_async(
        Duration::from_secs(60),
        "the restarted node past the early ticks",
        || async {
            for name in &names {
                (history(&restarted, name).await.len() > TICKS_BEFORE).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    for (name, early) in names.iter().zip(&before) {
        let from_node = history(&restarted, name).await;
        let from_leader = history(&cluster.node_client(leader), name).await;
        assert!(
            !from_node.is_empty() && !from_leader.is_empty(),
            "{name}: no history on node {node} after its restart ({} ticks), or on the leader ({})",
            from_node.len(),
            from_leader.len()
        );
        // Both read at about the same time: on the ticks both hold, equal.
        let first = from_node[0].tick.max(from_leader[0].tick);
        let last = from_node.last().unwrap().tick.min(from_leader.last().unwrap().tick);
        let span = |ticks: &[baton_proto::TickInfo]| -> Vec<baton_proto::TickInfo> {
            ticks
                .iter()
                .filter(|t| (first..=last).contains(&t.tick))
                .cloned()
                .collect()
        };
        assert!(
            last >= first + TICKS_BEFORE as u64,
            "{name}: ticks {first} to {last} in common"
        );
        assert_eq!(span(&from_node), span(&from_leader), "{name}");
        // And the ticks before the snapshot, read before the restart.
        for tick in early {
            assert!(
                from_node.contains(tick),
                "{name}: tick {} lost on node {node}",
                tick.tick
            );
        }
    }
    eprintln!("node {node} restarted from its snapshot at index {built} (writes up to {mark} before it)");
}
