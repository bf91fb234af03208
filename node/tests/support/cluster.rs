//! A Raft cluster inside one test process, on the real redb store, over the
//! fault-injecting [`Router`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use baton_node::raft::{StorageIdentity, start_raft};
use baton_node::state::cluster_version::VersionRange;
use baton_node::store::{RaftDb, StateMachineStore};
use baton_node::types::{Command, Member, NodeId, Raft};
use openraft::{Config, ServerState};

use super::router::{Router, RouterFactory};

pub struct TestNode {
    pub raft: Raft,
    pub state_machine: StateMachineStore,
    pub storage: StorageIdentity,
    _dir: tempfile::TempDir,
}

pub struct InProcessCluster {
    pub router: Arc<Router>,
    pub nodes: BTreeMap<NodeId, TestNode>,
    config: Arc<Config>,
}

impl InProcessCluster {
    /// Starts node `id` on an empty data directory.
    async fn start_node(router: &Arc<Router>, config: &Arc<Config>, id: NodeId) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        let storage = db.identity().clone();
        let factory = RouterFactory {
            from: id,
            router: router.clone(),
        };
        let (raft, state_machine) = start_raft(
            id,
            config.clone(),
            db,
            factory,
            VersionRange::SUPPORTED,
            &Default::default(),
        )
        .await
        .unwrap();
        router.nodes.lock().unwrap().insert(id, raft.clone());
        router.storage.lock().unwrap().insert(id, storage.clone());
        TestNode {
            raft,
            state_machine,
            storage,
            _dir: dir,
        }
    }

    /// Stops node `id`, deletes its data directory (a lost disk) and starts
    /// it again on an empty one.
    pub async fn wipe_and_restart(&mut self, id: NodeId) {
        let old = self.nodes.remove(&id).unwrap();
        old.raft.shutdown().await.unwrap();
        drop(old);
        let node = Self::start_node(&self.router, &self.config, id).await;
        self.nodes.insert(id, node);
    }

    pub async fn start(n: u64) -> Self {
        let router = Arc::new(Router::default());
        let config = Arc::new(
            Config {
                heartbeat_interval: 50,
                election_timeout_min: 200,
                election_timeout_max: 400,
                enable_pre_vote: Some(true),
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(50),
                max_in_snapshot_log_to_keep: 10,
                ..Default::default()
            }
            .validate()
            .unwrap(),
        );
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            nodes.insert(id, Self::start_node(&router, &config, id).await);
        }
        let members: BTreeMap<NodeId, Member> = nodes
            .iter()
            .map(|(id, node)| (*id, Member::new(format!("mem:{id}"), node.storage.id.clone())))
            .collect();
        nodes[&1].raft.initialize(members).await.unwrap();
        InProcessCluster { router, nodes, config }
    }

    /// Waits until the nodes in `among` agree on one leader among them.
    pub async fn leader(&self, among: &[NodeId]) -> NodeId {
        poll(Duration::from_secs(20), "a leader", || {
            let leaders: BTreeSet<Option<NodeId>> = among
                .iter()
                .map(|id| baton_node::types::metrics(&self.nodes[id].raft).current_leader)
                .collect();
            match leaders.into_iter().collect::<Vec<_>>()[..] {
                [Some(l)] if among.contains(&l) => {
                    let m = baton_node::types::metrics(&self.nodes[&l].raft);
                    (m.state == ServerState::Leader).then_some(l)
                }
                _ => None,
            }
        })
        .await
    }

    /// Writes through whichever of `among` leads, retrying when leadership
    /// moves mid-write (a retried put is idempotent, so the expected state is
    /// the same whether or not a failed attempt committed).
    pub async fn put_via_leader(&self, among: &[NodeId], key: &str, value: &str) -> u64 {
        for _ in 0..50 {
            let leader = self.leader(among).await;
            if let Ok(index) = self.put(leader, key, value).await {
                return index;
            }
            // A leader that was cut off refuses writes until a quorum has
            // answered it again (its lease).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("write {key} never committed");
    }

    pub async fn put(&self, leader: NodeId, key: &str, value: &str) -> Result<u64, String> {
        let command = Command::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        };
        let write = self.nodes[&leader].raft.client_write(command);
        match tokio::time::timeout(Duration::from_secs(5), write).await {
            Ok(Ok(response)) => Ok(response.log_id.index),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Waits until every node's state machine holds exactly `expected`.
    pub async fn converge(&self, expected: &BTreeMap<String, Vec<u8>>) {
        poll(Duration::from_secs(30), "every node to apply the same state", || {
            self.nodes
                .values()
                .all(|n| n.state_machine.read(|s| &s.kv == expected))
                .then_some(())
        })
        .await
    }
}

pub async fn poll<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
