//! The cluster version, on real processes: it rises only once every member
//! supports the next one, and a release that cannot read it is refused,
//! both on a data dir that has applied it and as a new member.
//!
//! `[testing] max_cluster_version = 1` makes a node of this release act as a
//! release that supports version 1 only (what it reports, what it applies,
//! what it starts on), as the releases before cluster versions do.

use std::time::Duration;

use baton_cluster_tests::task_api::{await_ticking_elsewhere, now_ms, start_counters, tasks};
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::codec::format::Format;
use baton_node::config::TimingConfig;
use baton_node::state::cluster_version::{REASSIGN_ALL, VersionRange, first_release};
use baton_proto::AddNodeRequest;
use batonctl::cmd::status::fetch;
use redb::{ReadableDatabase, ReadableTable};

/// The store's log table, as `baton_node::store` defines it.
const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raft_log");

/// The highest cluster version this release supports.
const HIGHEST: u32 = VersionRange::SUPPORTED.max;

/// The config a node acting as a release that supports up to `cap` runs
/// with.
fn older_release(cap: u32) -> String {
    format!("\n[testing]\nmax_cluster_version = {cap}\n")
}

/// Makes node `id` act as a release that supports versions up to `cap`, or
/// as this release.
fn set_release_cap(cluster: &TestCluster, id: u64, cap: Option<u32>) {
    let path = cluster.local.nodes[&id].config_path();
    let mut text = std::fs::read_to_string(&path).expect("read config");
    for version in 1..=HIGHEST {
        text = text.replace(&older_release(version), "");
    }
    if let Some(cap) = cap {
        text.push_str(&older_release(cap));
    }
    std::fs::write(&path, text).expect("write config");
}

fn set_older_release(cluster: &TestCluster, id: u64, older: bool) {
    set_release_cap(cluster, id, older.then_some(1));
}

/// The format of each entry in node `id`'s log, in order (the node must be
/// stopped: redb allows one process at a time).
fn log_formats(cluster: &TestCluster, id: u64) -> Vec<Format> {
    let path = cluster.local.nodes[&id].dir.join("data/raft.redb");
    let db = redb::Database::open(&path).expect("open the stopped node's store");
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(LOG).unwrap();
    table
        .iter()
        .unwrap()
        .map(|row| Format::of(row.unwrap().1.value()))
        .collect()
}

fn log_of(cluster: &TestCluster, id: u64) -> String {
    std::fs::read_to_string(cluster.local.nodes[&id].log_path()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_version_rises_only_once_every_member_supports_it_and_older_releases_are_refused_after() {
    let mut cluster = TestCluster::create(3, TimingConfig::default());
    set_older_release(&cluster, 3, true);
    for id in 1..=3 {
        cluster.local.start(id).expect("start node");
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.wait_for_all_up(Duration::from_secs(30)).await;
    let client = cluster.client();

    // Node 3 holds the version at 1: the leader has looked and said why.
    let view = poll_async(Duration::from_secs(20), "node 3 to hold the version back", || async {
        let view = fetch(&client).await.ok()?;
        (view.version_held_by == [3]).then_some(view)
    })
    .await;
    assert_eq!(view.cluster_version, 1, "{view:?}");
    poll_async(Duration::from_secs(20), "the leader to say why it holds", || async {
        let leader = fetch(&client).await.ok()?.leader?;
        log_of(&cluster, leader)
            .contains("the cluster version stays at 1: node 3 supports cluster version 1 (upgrade it)")
            .then_some(())
    })
    .await;
    cluster.put(&client, "before", "1").await.expect("a write while held");
    assert_eq!(fetch(&client).await.unwrap().cluster_version, 1);
    for id in 1..=3 {
        assert!(
            !log_of(&cluster, id).contains("the cluster version is now"),
            "node {id} applied a raise while node 3 could not read it"
        );
    }

    // Node 3 upgraded (restarted without the cap): the version rises, one
    // step at a time, to the highest, and every node applies it.
    cluster.local.stop(3, Duration::from_secs(10)).expect("stop node 3");
    set_older_release(&cluster, 3, false);
    cluster.restart(3);
    let view = poll_async(
        Duration::from_secs(30),
        "the version to rise to the highest",
        || async {
            let view = fetch(&client).await.ok()?;
            (view.cluster_version == HIGHEST).then_some(view)
        },
    )
    .await;
    assert!(view.version_held_by.is_empty(), "{view:?}");
    assert!(
        view.members.iter().all(|m| m.max_cluster_version == HIGHEST),
        "{view:?}"
    );
    poll_async(Duration::from_secs(20), "every node to apply each version", || async {
        (1..=3)
            .all(|id| {
                let log = log_of(&cluster, id);
                (2..=HIGHEST).all(|v| log.contains(&format!("the cluster version is now {v}")))
            })
            .then_some(())
    })
    .await;
    cluster
        .put(&client, "after", "2")
        .await
        .expect("a write at the highest version");

    // Node 3 taken back to the older release: it refuses its data dir, and
    // says what to run. Its log, written before the raise as JSON, holds the
    // entries after it in the binary format.
    cluster.local.stop(3, Duration::from_secs(10)).expect("stop node 3");
    let formats = log_formats(&cluster, 3);
    assert_eq!(formats.first(), Some(&Format::Json), "{formats:?}");
    assert_eq!(formats.last(), Some(&Format::Binary), "{formats:?}");
    set_older_release(&cluster, 3, true);
    cluster.restart(3);
    poll_async(Duration::from_secs(20), "node 3 to refuse its data dir", || async {
        log_of(&cluster, 3)
            .contains(&format!(
                "data_dir is at cluster version {HIGHEST}; this baton-node ({}) supports cluster version 1; run \
                 baton-node {} or later",
                baton_node::VERSION,
                first_release(HIGHEST).expect("this release knows its versions")
            ))
            .then_some(())
    })
    .await;
    assert!(
        !log_of(&cluster, 3).contains("raft stopped"),
        "it refused before it started Raft"
    );
    cluster.local.stop(3, Duration::from_secs(10)).expect("stop node 3");

    // A new node of the older release is refused as a member.
    let addr = cluster.local.add_node_layout(4).expect("lay out node 4").addr.clone();
    set_older_release(&cluster, 4, true);
    cluster.local.start(4).expect("start node 4");
    let request = AddNodeRequest {
        id: 4,
        addr,
        worker: true,
    };
    let refused = poll_async(Duration::from_secs(30), "node 4 to be refused", || async {
        match client
            .call_with(&request, |mut c, r| async move { c.add_node(r).await })
            .await
        {
            Err(e) if e.to_string().contains("supports cluster version 1") => Some(e.to_string()),
            _ => None,
        }
    })
    .await;
    assert!(
        refused.contains(&format!(
            "this cluster is at cluster version {HIGHEST}; start node 4 with baton-node {} or later",
            first_release(HIGHEST).expect("this release knows its versions")
        )),
        "{refused}"
    );
    let view = fetch(&client).await.unwrap();
    assert!(view.members.iter().all(|m| m.id != 4), "{view:?}");
}

/// A node that is not the leader and owns some of the tasks.
async fn an_owning_follower(cluster: &TestCluster, client: &batonctl::ClusterClient) -> (u64, Vec<String>) {
    poll_async(Duration::from_secs(30), "a follower that owns tasks", || async {
        let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
        let all = tasks(client).await;
        (1..=3).filter(|id| *id != leader).find_map(|id| {
            let owned: Vec<String> = all.iter().filter(|t| t.owner == id).map(|t| t.name.clone()).collect();
            (!owned.is_empty()).then_some((id, owned))
        })
    })
    .await
}

/// Kills node `victim` and waits until its tasks tick elsewhere; returns the
/// leader's log from then on.
async fn lose(cluster: &mut TestCluster, client: &batonctl::ClusterClient, victim: u64, owned: &[String]) -> String {
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let from = log_of(cluster, leader).len();
    let killed_at = now_ms();
    cluster.kill9(victim);
    let names: Vec<&str> = owned.iter().map(String::as_str).collect();
    await_ticking_elsewhere(client, &names, victim, killed_at).await;
    log_of(cluster, leader).get(from..).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nodes_tasks_move_one_assignment_each_beside_an_older_release_and_by_one_entry_after() {
    let older = REASSIGN_ALL - 1;
    let mut cluster = TestCluster::create(3, TimingConfig::default());
    set_release_cap(&cluster, 3, Some(older));
    for id in 1..=3 {
        cluster.local.start(id).expect("start node");
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.wait_for_all_up(Duration::from_secs(30)).await;
    let client = cluster.client();
    poll_async(
        Duration::from_secs(20),
        "the version to stop below reassign_all",
        || async {
            let view = fetch(&client).await.ok()?;
            (view.cluster_version == older && view.version_held_by == [3]).then_some(())
        },
    )
    .await;
    start_counters(&cluster, &client, 30, 250).await;

    // Node 3 could not read a reassign_all: the tasks move one by one, and
    // node 3 goes on applying.
    let (victim, owned) = an_owning_follower(&cluster, &client).await;
    let log = lose(&mut cluster, &client, victim, &owned).await;
    assert!(log.contains("reassigned "), "{log}");
    assert!(!log.contains("reassign_all"), "{log}");
    cluster
        .put(&client, "after-loss", "1")
        .await
        .expect("a write after the loss");
    poll_async(Duration::from_secs(20), "node 3 to apply on", || async {
        let view = fetch(&client).await.ok()?;
        let three = view.members.iter().find(|m| m.id == 3)?;
        (three.state == "up").then_some(())
    })
    .await;
    assert!(
        !log_of(&cluster, 3).contains("does not know"),
        "{}",
        log_of(&cluster, 3)
    );

    // Node 3 upgraded and the lost node back: the version reaches
    // reassign_all, and the next loss moves every task in one entry.
    cluster.restart(victim);
    cluster.local.stop(3, Duration::from_secs(10)).expect("stop node 3");
    set_release_cap(&cluster, 3, None);
    cluster.restart(3);
    poll_async(Duration::from_secs(30), "the version to reach reassign_all", || async {
        let view = fetch(&client).await.ok()?;
        (view.cluster_version >= REASSIGN_ALL && view.members.iter().all(|m| m.state == "up")).then_some(())
    })
    .await;
    let (victim, owned) = an_owning_follower(&cluster, &client).await;
    let log = lose(&mut cluster, &client, victim, &owned).await;
    assert!(
        log.contains(&format!(
            "moving every task of node {victim} at once, in one reassign_all entry"
        )),
        "{log}"
    );
}
