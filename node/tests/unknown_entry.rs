//! A node whose log holds a command of a kind its release does not know (a
//! newer release wrote it; this node was rolled back to an older binary)
//! refuses to run, naming the kind and what to run, and applies nothing of
//! it. Real redb store, one node.

mod support;

use std::sync::Arc;
use std::time::Duration;

use baton_node::raft::start_raft;
use baton_node::state::cluster_version::VersionRange;
use baton_node::store::RaftDb;
use baton_node::types::{Command, Member, metrics};
use redb::{Database, TableDefinition};
use support::cluster::poll;
use support::router::{Router, RouterFactory};

/// The store's log table, as `store::db` defines it.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");

fn config() -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_entry_of_a_kind_a_newer_release_wrote_is_refused_by_name_and_nothing_of_it_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Router::default());
    let factory = || RouterFactory {
        from: 1,
        router: router.clone(),
    };

    // A node that commits three writes, then stops.
    let db = RaftDb::open(dir.path()).unwrap();
    let storage = db.identity().id.clone();
    let (raft, state_machine) = start_raft(1, config(), db, factory(), VersionRange::SUPPORTED, &Default::default())
        .await
        .unwrap();
    let members = std::collections::BTreeMap::from([(1, Member::new("mem:1", storage))]);
    raft.initialize(members).await.unwrap();
    poll(Duration::from_secs(10), "node 1 to lead", || {
        (metrics(&raft).current_leader == Some(1)).then_some(())
    })
    .await;
    for i in 0..3 {
        let put = Command::Put {
            key: format!("k{i}"),
            value: vec![i],
        };
        raft.client_write(put).await.unwrap();
    }
    let last = metrics(&raft).last_log_index.unwrap();
    let term = metrics(&raft).current_term;
    let applied = state_machine.last_applied_index();
    raft.shutdown().await.unwrap();
    drop((raft, state_machine));

    // A newer release appended an entry of a kind this one does not know.
    {
        // Raft's storage tasks let go of the store shortly after shutdown.
        let path = dir.path().join("raft.redb");
        let db = poll(Duration::from_secs(10), "the stopped node to close its store", || {
            Database::create(&path).ok()
        })
        .await;
        let txn = db.begin_write().unwrap();
        let entry = serde_json::json!({
            "log_id": {"leader_id": {"term": term, "node_id": 1}, "index": last + 1},
            "payload": {"Normal": {"batch": [
                {"put": {"key": "new", "value": [1]}},
                {"grant_secret": {"task": "sync", "name": "api-key"}}
            ]}}
        });
        txn.open_table(LOG)
            .unwrap()
            .insert(last + 1, serde_json::to_vec(&entry).unwrap().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    // This release refuses to run on it, and says what it met and what to do.
    let db = RaftDb::open(dir.path()).unwrap();
    let err = match start_raft(
        1,
        config(),
        db.clone(),
        factory(),
        VersionRange::SUPPORTED,
        &Default::default(),
    )
    .await
    {
        Err(e) => e.to_string(),
        Ok((raft, state_machine)) => {
            // Or it starts, and Raft stops at once on the entry.
            let why = poll(Duration::from_secs(10), "raft to stop on the entry", || {
                metrics(&raft).running_state.err().map(|e| e.to_string())
            })
            .await;
            assert!(state_machine.last_applied_index() <= last, "the entry was applied");
            assert!(
                state_machine.read(|s| !s.kv.contains_key("new")),
                "a part of the batch was applied"
            );
            why
        }
    };
    assert!(err.contains("kind `grant_secret`"), "{err}");
    assert!(err.contains("a newer release wrote it"), "{err}");
    assert!(err.contains(&format!("log entry {}", last + 1)), "{err}");
    assert!(applied >= 3, "the writes before it had applied ({applied})");
}
