//! Supervision across machines on real processes: 200 counter tasks ticking
//! every 250 ms, and 30 `witnessed` tasks calling a witness service every
//! 300 ms, on 3 nodes survive kill -9 of a worker and of the leader, a
//! frozen node, a drain, a graceful stop and a removal; each run ends with
//! the history checker over everything the cluster committed and the
//! witness's checker over everything the tasks did (no two runs of a task
//! at once, no fencing token going back).
//!
//! The tests run one at a time (each drives 800 commits a second on a
//! two-core machine), so that one test's load cannot starve another's
//! heartbeats.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_cluster_tests::history::{Expectations, Summary, check, collect};
use baton_cluster_tests::task_api::{
    await_handed_off, await_ticking_elsewhere, history, now_ms, set_drained, start_counters, start_witnessed, tasks,
    witness_report,
};
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_proto::TaskInfo;
use batonctl::ClusterClient;

const TASKS: usize = 200;
const PERIOD_MS: u64 = 250;
const WITNESSED: usize = 30;
const WITNESSED_PERIOD_MS: u64 = 300;
/// The longer of the two periods: what a hand-off's gap is measured against.
const LONGEST_PERIOD_MS: u64 = if WITNESSED_PERIOD_MS > PERIOD_MS {
    WITNESSED_PERIOD_MS
} else {
    PERIOD_MS
};
/// How long the witness holds each call, as a slow downstream API would.
const HOLD: Duration = Duration::from_millis(150);

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn names(tasks: &[TaskInfo]) -> Vec<&str> {
    tasks.iter().map(|t| t.name.as_str()).collect()
}

struct Run {
    cluster: TestCluster,
    client: ClusterClient,
    names: BTreeSet<String>,
    witness: Witness,
    witnessed: BTreeSet<String>,
    bound_ms: u64,
    /// Nodes removed from the cluster (they run on, with stale state).
    removed: BTreeSet<u64>,
}

/// Three nodes with 200 counters and 30 witnessed tasks ticking, spread
/// over all of them.
async fn start() -> Run {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let witness = Witness::start("127.0.0.1:0", HOLD).await.unwrap();
    let names = start_counters(&cluster, &client, TASKS, PERIOD_MS).await;
    let witnessed = start_witnessed(&cluster, &client, &witness, WITNESSED, WITNESSED_PERIOD_MS).await;
    let bound_ms = cluster.status().await.unwrap().failover_bound_ms;
    assert!(bound_ms > 0);
    Run {
        cluster,
        client,
        names,
        witness,
        witnessed,
        bound_ms,
        removed: BTreeSet::new(),
    }
}

impl Run {
    async fn owned_by(&self, node: u64) -> Vec<TaskInfo> {
        tasks(&self.client)
            .await
            .into_iter()
            .filter(|t| t.owner == node)
            .collect()
    }

    async fn a_follower(&self) -> u64 {
        let leader = self.cluster.wait_for_leader(Duration::from_secs(20)).await;
        (1..=3).find(|id| *id != leader).unwrap()
    }

    /// Waits until every task in `moved` has committed a tick on another node
    /// after `since_ms`; returns, per task, how long after `since_ms` that was.
    async fn await_moved(&self, moved: &[TaskInfo], from: u64, since_ms: u64) -> Vec<u64> {
        await_ticking_elsewhere(&self.client, &names(moved), from, since_ms).await;
        let mut delays = Vec::new();
        for task in moved {
            let ticks = history(&self.client, &task.name).await;
            let first = ticks
                .iter()
                .find(|t| t.node != from && t.committed_at_ms > since_ms)
                .expect("a tick on the new owner");
            delays.push(first.committed_at_ms - since_ms);
        }
        delays
    }

    /// Waits until the tasks in `moved` tick elsewhere and checks that none
    /// waited longer than a period plus the failover bound after `since_ms`.
    async fn assert_moved_within_bound(&self, moved: &[TaskInfo], from: u64, since_ms: u64, what: &str) {
        let allowed = self.bound_ms + LONGEST_PERIOD_MS;
        let delays = self.await_moved(moved, from, since_ms).await;
        let worst = delays.iter().max().unwrap();
        assert!(
            *worst <= allowed,
            "a task of the {what} waited {worst} ms (allowed {allowed})"
        );
    }

    /// Waits until `node` owns its share of the tasks (a third, less one).
    async fn await_share(&self, node: u64, what: &str) {
        poll_async(Duration::from_secs(30), what, || async {
            (self.owned_by(node).await.len() >= TASKS / 3 - 1).then_some(())
        })
        .await;
    }

    /// The history checker over every task, with gaps allowed up to a period
    /// plus the failover bound, and the witness's checker over what the
    /// witnessed tasks did.
    async fn check_history(&self) -> Summary {
        let histories = collect(&self.client).await.unwrap();
        let expect = Expectations {
            tasks: self.names.iter().chain(&self.witnessed).cloned().collect(),
            max_gap_ms: LONGEST_PERIOD_MS + self.bound_ms,
            counters: true,
        };
        let summary = check(&histories, &expect).unwrap_or_else(|v| panic!("{v}"));
        let report = witness_report(&self.client, &self.witness, &self.witnessed).await;
        eprintln!("{report}");
        assert!(report.is_clean(), "{report}");
        summary
    }

    async fn drain(&self, id: u64, drain: bool) {
        set_drained(&self.client, id, drain).await;
    }
}

/// The largest gap between the last tick on `from` and the next one, over
/// the tasks in `moved`, for moves after `since_ms`.
async fn hand_off_gap(client: &ClusterClient, moved: &[TaskInfo], from: u64, since_ms: u64) -> u64 {
    let mut worst = 0;
    for task in moved {
        let ticks = history(client, &task.name).await;
        for w in ticks.windows(2) {
            if w[0].node == from && w[1].node != from && w[1].committed_at_ms > since_ms {
                worst = worst.max(w[1].committed_at_ms - w[0].committed_at_ms);
            }
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_and_leaders_lose_no_tick_and_their_tasks_resume_within_the_bound() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut run = start().await;

    let worker = run.a_follower().await;
    let moved = run.owned_by(worker).await;
    assert!(!moved.is_empty());
    let killed_at = now_ms();
    run.cluster.kill9(worker);
    run.assert_moved_within_bound(&moved, worker, killed_at, "killed worker")
        .await;
    run.cluster
        .wait_for_state(worker, "down", Duration::from_secs(10))
        .await;

    // The same id and data dir come back, rejoin, and get their share again.
    run.cluster.restart(worker);
    run.cluster.wait_for_state(worker, "up", Duration::from_secs(30)).await;
    run.await_share(worker, "the restarted node to receive tasks").await;

    let leader = run.cluster.wait_for_leader(Duration::from_secs(20)).await;
    let moved = run.owned_by(leader).await;
    assert!(!moved.is_empty());
    let killed_at = now_ms();
    run.cluster.kill9(leader);
    run.assert_moved_within_bound(&moved, leader, killed_at, "killed leader")
        .await;
    // It stays down, and is shown so: a member, not forgotten.
    let status = run
        .cluster
        .wait_for_state(leader, "down", Duration::from_secs(10))
        .await;
    assert_eq!(status.members.len(), 3);

    let summary = run.check_history().await;
    assert!(summary.ticks_by_node.len() == 3, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_loses_its_tasks_without_a_duplicate_tick_and_returns_healthy() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut run = start().await;
    let frozen = run.a_follower().await;
    let moved = run.owned_by(frozen).await;
    let frozen_at = now_ms();
    run.cluster.freeze(frozen);
    run.assert_moved_within_bound(&moved, frozen, frozen_at, "frozen node")
        .await;
    run.cluster
        .wait_for_state(frozen, "down", Duration::from_secs(10))
        .await;
    // The freeze lasts 5 s in all (a fixed duration, not a condition).
    let frozen_for = now_ms() - frozen_at;
    tokio::time::sleep(Duration::from_millis(5000u64.saturating_sub(frozen_for))).await;
    let thawed_at = now_ms();
    run.cluster.thaw(frozen);

    // Whatever it had in flight is refused by the fence (the checker below
    // finds any tick committed twice); it renews its lease, gets tasks and
    // ticks them.
    run.cluster.wait_for_state(frozen, "up", Duration::from_secs(30)).await;
    run.await_share(frozen, "the thawed node to receive tasks").await;
    poll_async(Duration::from_secs(30), "the thawed node to tick", || async {
        let owned = run.owned_by(frozen).await;
        owned
            .iter()
            .any(|t| t.last_tick_at_ms.is_some_and(|at| at > thawed_at))
            .then_some(())
    })
    .await;
    run.check_history().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_graceful_stop_hand_tasks_off_within_a_period_and_200_ms() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut run = start().await;
    let drained = run.a_follower().await;
    let moved = run.owned_by(drained).await;
    let drained_at = now_ms();
    run.drain(drained, true).await;
    poll_async(Duration::from_secs(30), "the drained node to own nothing", || async {
        run.owned_by(drained).await.is_empty().then_some(())
    })
    .await;
    let status = run.cluster.status().await.unwrap();
    let member = status.members.iter().find(|m| m.id == drained).unwrap();
    assert_eq!(
        (member.state.as_str(), member.drained),
        ("draining", true),
        "{member:?}"
    );
    await_handed_off(&run.client, &names(&moved), drained, drained_at).await;
    let gap = hand_off_gap(&run.client, &moved, drained, drained_at).await;
    assert!(
        gap <= LONGEST_PERIOD_MS + 200,
        "a drained task went {gap} ms between ticks"
    );

    run.drain(drained, false).await;
    run.await_share(drained, "the undrained node to get tasks back").await;

    // SIGTERM drains the node before it exits.
    let stopped = run.a_follower().await;
    let moved = run.owned_by(stopped).await;
    assert!(!moved.is_empty());
    let stopped_at = now_ms();
    assert!(
        run.cluster.local.stop(stopped, Duration::from_secs(15)).unwrap(),
        "no clean exit"
    );
    let log = std::fs::read_to_string(run.cluster.local.nodes[&stopped].log_path()).unwrap();
    // (Rebalancing may still have moved a task or two since `moved` was read.)
    assert!(log.contains("handed off all"), "{log}");
    assert!(run.owned_by(stopped).await.is_empty());
    await_handed_off(&run.client, &names(&moved), stopped, stopped_at).await;
    let gap = hand_off_gap(&run.client, &moved, stopped, stopped_at).await;
    assert!(
        gap <= LONGEST_PERIOD_MS + 200,
        "a task of the stopped node went {gap} ms between ticks"
    );
    run.check_history().await;
}

/// Removes live, task-owning node `removed` without a drain: its lease
/// must run out before its tasks move (a gap of about a lease), and it must
/// be gone from the membership.
async fn remove_live_owner(run: &mut Run, removed: u64, what: &str) {
    let moved = run.owned_by(removed).await;
    assert!(!moved.is_empty(), "the {what} owns no task");
    let removed_at = now_ms();
    let request = baton_proto::RemoveNodeRequest { id: removed };
    run.client
        .call_with(&request, |mut c, r| async move { c.remove_node(r).await })
        .await
        .unwrap();
    // A removed node runs on with the state it had when it left: from now
    // on, ask the members only.
    run.removed.insert(removed);
    let members: Vec<String> = run
        .cluster
        .local
        .nodes
        .values()
        .filter(|n| !run.removed.contains(&n.id))
        .map(|n| n.addr.clone())
        .collect();
    run.client = run.cluster.client_for(&members);
    await_handed_off(&run.client, &names(&moved), removed, removed_at).await;
    let gap = hand_off_gap(&run.client, &moved, removed, removed_at).await;
    let allowed = LONGEST_PERIOD_MS + run.bound_ms + 1000;
    assert!(
        gap <= allowed,
        "a task of the removed {what} went {gap} ms between ticks (allowed {allowed})"
    );
    let status = poll_async(Duration::from_secs(30), "a leader among the members", || async {
        let status = batonctl::cmd::status::fetch(&run.client).await.ok()?;
        status.leader.is_some_and(|l| l != removed).then_some(status)
    })
    .await;
    assert!(status.members.iter().all(|m| m.id != removed), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_live_owner_follower_or_leader_moves_its_tasks_only_after_its_lease_ran_out() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut run = start().await;
    let follower = run.a_follower().await;
    remove_live_owner(&mut run, follower, "follower").await;
    // The leader renews its own lease from Raft's heartbeats, not through
    // a renewal stream: it must stop doing so once its removal is asked for.
    let leader = batonctl::cmd::status::fetch(&run.client).await.unwrap().leader.unwrap();
    run.await_share(leader, "the leader owning its share").await;
    remove_live_owner(&mut run, leader, "leader").await;
    run.check_history().await;
}
