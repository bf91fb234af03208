//! Several Raft nodes in one process, on the real redb store, connected by an
//! in-memory router that can drop, delay or cut messages between any two.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_node::raft::start_raft;
use baton_node::store::{RaftDb, StateMachineStore};
use baton_node::types::typ::*;
use baton_node::types::{Command, Member, NodeId, Raft, TypeConfig};
use openraft::errors::{ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::{Config, OptionalSend, ServerState};
use rand::Rng;

/// Faults the router applies to messages.
#[derive(Default)]
struct Faults {
    /// Links that lose every message, both ways.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Probability that any message is lost.
    drop_rate: f64,
    /// Upper bound of a random delay added to each message.
    max_delay: Duration,
}

#[derive(Default)]
struct Router {
    nodes: Mutex<HashMap<NodeId, Raft>>,
    faults: Mutex<Faults>,
}

impl Router {
    fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
        (a.min(b), a.max(b))
    }

    fn isolate(&self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.lock().unwrap().keys().copied().collect();
        let mut faults = self.faults.lock().unwrap();
        for other in ids.into_iter().filter(|o| *o != id) {
            faults.cut.insert(Self::link(id, other));
        }
    }

    fn heal(&self) {
        let mut faults = self.faults.lock().unwrap();
        faults.cut.clear();
        faults.drop_rate = 0.0;
        faults.max_delay = Duration::ZERO;
    }

    /// Applies the faults to one message from `from` to `to`, then hands the
    /// target's Raft to `deliver`.
    async fn send<T, Fut>(&self, from: NodeId, to: NodeId, deliver: impl FnOnce(Raft) -> Fut) -> Result<T, RpcError>
    where
        Fut: Future<Output = Result<T, String>>,
    {
        let (lost, delay) = {
            let faults = self.faults.lock().unwrap();
            let mut rng = rand::rng();
            let lost = faults.cut.contains(&Self::link(from, to)) || rng.random_bool(faults.drop_rate);
            let delay = if faults.max_delay.is_zero() {
                Duration::ZERO
            } else {
                faults.max_delay.mul_f64(rng.random())
            };
            (lost, delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let target = self.nodes.lock().unwrap().get(&to).cloned();
        match (lost, target) {
            (false, Some(raft)) => deliver(raft)
                .await
                .map_err(|e| RpcError::Unreachable(Unreachable::from_string(e))),
            _ => Err(RpcError::Unreachable(Unreachable::from_string(format!(
                "link {from}->{to} is down"
            )))),
        }
    }
}

#[derive(Clone)]
struct RouterFactory {
    from: NodeId,
    router: Arc<Router>,
}

struct RouterPeer {
    from: NodeId,
    to: NodeId,
    router: Arc<Router>,
}

impl RaftNetworkFactory<TypeConfig> for RouterFactory {
    type Network = RouterPeer;
    async fn new_client(&mut self, target: NodeId, _node: &Member) -> RouterPeer {
        RouterPeer {
            from: self.from,
            to: target,
            router: self.router.clone(),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for RouterPeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        _o: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        self.router
            .send(self.from, self.to, |r| async move {
                r.append_entries(rpc).await.map_err(|e| e.to_string())
            })
            .await
    }

    async fn vote(&mut self, rpc: VoteRequest, _o: RPCOption) -> Result<VoteResponse, RpcError> {
        self.router
            .send(self.from, self.to, |r| async move {
                r.vote(rpc).await.map_err(|e| e.to_string())
            })
            .await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest, _o: RPCOption) -> Result<VoteResponse, RpcError> {
        self.router
            .send(self.from, self.to, |r| async move {
                r.pre_vote(rpc).await.map_err(|e| e.to_string())
            })
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _o: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        let sent = self
            .router
            .send(self.from, self.to, |r| async move {
                r.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string())
            })
            .await;
        sent.map_err(|e| match e {
            RpcError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Unreachable(Unreachable::from_string(other.to_string())),
        })
    }
}

struct TestNode {
    raft: Raft,
    state_machine: StateMachineStore,
    _dir: tempfile::TempDir,
}

struct InProcessCluster {
    router: Arc<Router>,
    nodes: BTreeMap<NodeId, TestNode>,
}

impl InProcessCluster {
    async fn start(n: u64) -> Self {
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
            let dir = tempfile::tempdir().unwrap();
            let db = RaftDb::open(dir.path()).unwrap();
            let factory = RouterFactory {
                from: id,
                router: router.clone(),
            };
            let (raft, state_machine) = start_raft(id, config.clone(), db, factory).await.unwrap();
            router.nodes.lock().unwrap().insert(id, raft.clone());
            nodes.insert(
                id,
                TestNode {
                    raft,
                    state_machine,
                    _dir: dir,
                },
            );
        }
        let members: BTreeMap<NodeId, Member> = (1..=n)
            .map(|id| {
                (
                    id,
                    Member {
                        addr: format!("mem:{id}"),
                    },
                )
            })
            .collect();
        nodes[&1].raft.initialize(members).await.unwrap();
        InProcessCluster { router, nodes }
    }

    /// Waits until the nodes in `among` agree on one leader among them.
    async fn leader(&self, among: &[NodeId]) -> NodeId {
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

    async fn put(&self, leader: NodeId, key: &str, value: &str) -> Result<u64, String> {
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
    async fn converge(&self, expected: &BTreeMap<String, Vec<u8>>) {
        poll(Duration::from_secs(30), "every node to apply the same state", || {
            self.nodes
                .values()
                .all(|n| n.state_machine.read(|s| &s.kv == expected))
                .then_some(())
        })
        .await
    }
}

async fn poll<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_writes_to_every_state_machine() {
    let cluster = InProcessCluster::start(3).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let mut expected = BTreeMap::new();
    for i in 0..100 {
        cluster.put(leader, &format!("k{i}"), &i.to_string()).await.unwrap();
        expected.insert(format!("k{i}"), i.to_string().into_bytes());
    }
    cluster.converge(&expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_catches_up_after_healing() {
    let cluster = InProcessCluster::start(3).await;
    let old = cluster.leader(&[1, 2, 3]).await;
    cluster.put(old, "before", "1").await.unwrap();
    cluster.router.isolate(old);

    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let new = cluster.leader(&rest).await;
    assert_ne!(new, old);
    assert!(
        cluster.put(old, "lost", "x").await.is_err(),
        "an isolated leader must not commit"
    );
    cluster.put(new, "after", "2").await.unwrap();

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
    let mut leader = cluster.leader(&[1, 2, 3]).await;
    {
        let mut faults = cluster.router.faults.lock().unwrap();
        faults.drop_rate = 0.2;
        faults.max_delay = Duration::from_millis(20);
    }
    let mut expected = BTreeMap::new();
    // Enough writes to build snapshots and compact the log (policy: every 50).
    for i in 0..120 {
        let key = format!("k{i}");
        let mut attempts = 0;
        // A write that fails may still have committed: retrying the same put
        // is idempotent, so the expected state is the same either way.
        while cluster.put(leader, &key, "v").await.is_err() {
            attempts += 1;
            assert!(attempts < 50, "write {i} never committed");
            leader = cluster.leader(&[1, 2, 3]).await;
        }
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
        cluster.put(leader, &format!("k{i}"), "v").await.unwrap();
        expected.insert(format!("k{i}"), b"v".to_vec());
    }
    // The leader compacted its log past what the lagging follower has.
    let purged = poll(Duration::from_secs(10), "the leader to purge its log", || {
        baton_node::types::metrics(&cluster.nodes[&leader].raft)
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
