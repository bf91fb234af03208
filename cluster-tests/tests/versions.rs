//! The cluster version, on real processes: it rises only once every member
//! supports the next one, and a release that cannot read it is refused,
//! both on a data dir that has applied it and as a new member.
//!
//! `[testing] max_cluster_version = 1` makes a node of this release act as a
//! release that supports version 1 only (what it reports, what it applies,
//! what it starts on), as the releases before cluster versions do.

use std::time::Duration;

use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::codec::format::Format;
use baton_node::config::TimingConfig;
use baton_node::state::cluster_version::{VersionRange, first_release};
use baton_proto::AddNodeRequest;
use batonctl::cmd::status::fetch;
use redb::{ReadableDatabase, ReadableTable};

/// The store's log table, as `baton_node::store` defines it.
const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raft_log");

/// The highest cluster version this release supports.
const HIGHEST: u32 = VersionRange::SUPPORTED.max;

/// The config a node acting as an older release runs with.
const OLDER_RELEASE: &str = "\n[testing]\nmax_cluster_version = 1\n";

fn set_older_release(cluster: &TestCluster, id: u64, older: bool) {
    let path = cluster.local.nodes[&id].config_path();
    let text = std::fs::read_to_string(&path).expect("read config");
    let text = text.replace(OLDER_RELEASE, "");
    let text = match older {
        true => format!("{text}{OLDER_RELEASE}"),
        false => text,
    };
    std::fs::write(&path, text).expect("write config");
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
