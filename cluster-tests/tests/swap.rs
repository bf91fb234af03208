//! Hot code swap on real processes: 200 counter tasks ticking every 250 ms
//! on 3 nodes. Version 2 (a new state format, migrated both ways) rolls out
//! canary-first and every task ends on it with its count intact; a broken
//! version 3 fails the canary's gate and reverts by itself; losing the
//! canary mid-rollout ends the rollout in a defined state. Each run ends
//! with the history checker over everything the cluster committed.
//!
//! The tests run one at a time (each drives 800 commits a second on a
//! two-core machine).

use std::collections::BTreeSet;
use std::time::Duration;

use baton_cluster_tests::history::{Expectations, check, collect};
use baton_cluster_tests::task_api::{
    await_all_on_version, await_rollout_end, control_rollout, release, release_bytes, rollout, start_counters, tasks,
};
use baton_cluster_tests::{TestCluster, example_module, padded, poll_async};
use baton_proto::{DeployModuleRequest, ModuleHistoryRequest, RolloutAction, RolloutSettings};
use batonctl::ClusterClient;

const TASKS: usize = 200;
const PERIOD_MS: u64 = 250;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Run {
    cluster: TestCluster,
    client: ClusterClient,
    names: BTreeSet<String>,
}

/// Three nodes with 200 counters (version 1) ticking on all of them.
async fn start() -> Run {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let names = start_counters(&cluster, &client, TASKS, PERIOD_MS).await;
    Run { cluster, client, names }
}

fn settings(min_healthy_ms: u64) -> RolloutSettings {
    RolloutSettings {
        canary: 1,
        max_parallel: 2,
        min_healthy_ms,
        healthy_deadline_ms: 30_000,
        no_auto_revert: false,
    }
}

impl Run {
    /// The history checker over every task, allowing gaps up to `max_gap_ms`;
    /// also checks that no task ever committed a tick with a version outside
    /// `versions`, and (when `in_order`) that versions only changed in the
    /// order given.
    async fn check_history(&self, max_gap_ms: u64, versions: &[u32], in_order: bool) {
        let histories = collect(&self.client).await.unwrap();
        let expect = Expectations {
            tasks: self.names.clone(),
            max_gap_ms,
            counters: true,
        };
        let summary = check(&histories, &expect).unwrap_or_else(|v| panic!("{v}"));
        for h in &histories {
            let order: Vec<usize> = h
                .ticks
                .iter()
                .map(|t| {
                    versions.iter().position(|v| *v == t.version).unwrap_or_else(|| {
                        panic!("task {} committed tick {} with version {}", h.name, t.tick, t.version)
                    })
                })
                .collect();
            assert!(
                !in_order || order.windows(2).all(|w| w[0] <= w[1]),
                "task {}'s versions went back and forth: {:?}",
                h.name,
                h.ticks.iter().map(|t| t.version).collect::<Vec<_>>()
            );
        }
        eprintln!(
            "history: {} tasks, {} ticks, largest gap {} ms ({})",
            summary.tasks, summary.ticks, summary.max_gap_ms, summary.max_gap_task
        );
    }

    /// The nodes' log lines that report a failed tick of `version`, with
    /// the node that logged each.
    fn failed_ticks(&self, version: u32) -> Vec<(u64, String)> {
        let needle = format!("(version {version}) failed");
        self.cluster
            .local
            .nodes
            .values()
            .flat_map(|n| {
                let log = std::fs::read_to_string(n.log_path()).unwrap_or_default();
                log.lines()
                    .filter(|l| l.contains(&needle))
                    .map(|l| (n.id, l.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    async fn outcomes(&self) -> Vec<(u32, String, bool)> {
        let request = ModuleHistoryRequest { name: "counter".into() };
        let reply = self
            .client
            .call_with(&request, |mut c, r| async move { c.module_history(r).await })
            .await
            .unwrap();
        reply
            .releases
            .into_iter()
            .map(|r| (r.module.unwrap().version, r.outcome, r.current))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_rolls_out_with_states_migrated_and_a_broken_version_3_reverts_itself() {
    let _one = ONE_AT_A_TIME.lock().await;
    let run = start().await;

    // Version 2: canary, then the other two nodes, each gated for 1 s;
    // paused at once, it holds still until resumed.
    let version = release(&run.cluster, &run.client, "counter", "counter_v2", settings(1_000)).await;
    assert_eq!(version, 2);
    control_rollout(&run.client, "counter", RolloutAction::Pause)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let paused = rollout(&run.client, "counter").await;
    assert_eq!(paused.state, "paused", "{paused:?}");
    assert!(paused.steps <= 1, "a paused rollout went on: {paused:?}");
    control_rollout(&run.client, "counter", RolloutAction::Resume)
        .await
        .unwrap();
    let done = await_rollout_end(&run.client, "counter", Duration::from_secs(60)).await;
    assert_eq!(done.state, "done", "{done:?}");
    assert_eq!(done.steps, 2, "a canary, then a batch of two: {done:?}");
    await_all_on_version(&run.client, 2).await;
    // Every tick committed: no gap beyond a period (and some slack for a
    // loaded two-core machine), counts intact across the format change.
    run.check_history(2 * PERIOD_MS + 250, &[1, 2], true).await;
    assert_eq!(run.failed_ticks(2), Vec::new(), "version 2 failed ticks");
    assert_eq!(
        run.outcomes().await,
        vec![(1, "deployed".into(), false), (2, "rolled out".into(), true)]
    );

    // Version 3 traps on every tick: the canary's gate fails, and the
    // rollout reverts without reaching a second node.
    let version = release(
        &run.cluster,
        &run.client,
        "counter",
        "counter_v3_broken",
        settings(1_000),
    )
    .await;
    assert_eq!(version, 3);
    let reverted = await_rollout_end(&run.client, "counter", Duration::from_secs(60)).await;
    assert_eq!(reverted.state, "reverted", "{reverted:?}");
    assert!(reverted.reason.contains("version 3 is failing"), "{}", reverted.reason);
    assert_eq!(
        reverted.steps, 1,
        "version 3 reached more than the canary: {reverted:?}"
    );
    let ran_on: BTreeSet<u64> = run.failed_ticks(3).iter().map(|(node, _)| *node).collect();
    assert_eq!(
        ran_on.len(),
        1,
        "version 3 ran on node(s) {ran_on:?}: on one canary only"
    );
    // Every task back on version 2, ticking, counts intact; the canary's
    // tasks waited out the gate and their retry backoff.
    await_all_on_version(&run.client, 2).await;
    let since = tasks(&run.client).await;
    poll_async(
        Duration::from_secs(30),
        "every task to tick again after the revert",
        || async {
            let now = tasks(&run.client).await;
            now.iter()
                .all(|t| since.iter().any(|s| s.name == t.name && t.tick > s.tick))
                .then_some(())
        },
    )
    .await;
    run.check_history(10_000, &[1, 2], true).await;
    let outcomes = run.outcomes().await;
    assert!(outcomes[1] == (2, "rolled out".into(), true), "{outcomes:?}");
    assert!(
        outcomes[2].1.starts_with("reverted: version 3 is failing"),
        "{outcomes:?}"
    );

    // A new version must be signed too: refused, nothing recorded.
    let v4 = padded(&example_module("counter_v2"), 64 * 1024, 4);
    let unsigned = DeployModuleRequest {
        name: "counter".into(),
        component: v4.clone(),
        ..DeployModuleRequest::default()
    };
    let err = run
        .client
        .call_with(&unsigned, |mut c, r| async move { c.deploy_module(r).await })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not signed"), "{err}");
    assert_eq!(run.outcomes().await, outcomes);
    assert_eq!(rollout(&run.client, "counter").await.state, "reverted");

    // Version 4 (version 2's code, other bytes), aborted after its canary
    // switched: every task back on version 2, still counting.
    let version = release_bytes(&run.cluster, &run.client, "counter", v4, settings(30_000)).await;
    assert_eq!(version, 4);
    poll_async(Duration::from_secs(30), "version 4's canary to switch", || async {
        (rollout(&run.client, "counter").await.steps == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2 * PERIOD_MS)).await;
    control_rollout(&run.client, "counter", RolloutAction::Abort)
        .await
        .unwrap();
    assert_eq!(rollout(&run.client, "counter").await.state, "aborted");
    await_all_on_version(&run.client, 2).await;
    run.check_history(10_000, &[1, 2, 4], false).await;
    assert_eq!(run.outcomes().await[3].1, "aborted");
    let err = control_rollout(&run.client, "counter", RolloutAction::Abort)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no rollout of counter is under way"), "{err}");
    assert_eq!(
        err.rejection(),
        Some(baton_node::types::Rejection::NoRollout {
            module: "counter".into()
        }),
        "the kind travels typed, not only as text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_canary_mid_rollout_ends_it_in_a_defined_state() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut run = start().await;
    let bound_ms = run.cluster.status().await.unwrap().failover_bound_ms;
    // A long gate, so the canary dies during it.
    release(&run.cluster, &run.client, "counter", "counter_v2", settings(4_000)).await;
    let canary = poll_async(Duration::from_secs(30), "the canary to switch", || async {
        let view = rollout(&run.client, "counter").await;
        view.switched.first().copied().filter(|_| view.steps == 1)
    })
    .await;
    // Let some tasks write version 2 states there, then lose the node: its
    // tasks fail over to nodes on version 1 (migrated back down) or to a
    // new canary.
    tokio::time::sleep(Duration::from_millis(2 * PERIOD_MS)).await;
    run.cluster.kill9(canary);
    let ended = await_rollout_end(&run.client, "counter", Duration::from_secs(90)).await;
    assert!(
        ended.state == "done" || ended.state == "reverted",
        "the rollout ended {}: {ended:?}",
        ended.state
    );
    eprintln!(
        "the rollout ended {} after losing canary {canary}: {ended:?}",
        ended.state
    );
    let version = if ended.state == "done" { 2 } else { 1 };
    run.cluster.restart(canary);
    run.cluster.wait_for_all_up(Duration::from_secs(30)).await;
    poll_async(Duration::from_secs(30), "every task on the final version", || async {
        tasks(&run.client)
            .await
            .iter()
            .all(|t| t.version == version && t.state_version == version && t.status == "running")
            .then_some(())
    })
    .await;
    // A task may go 1, 2 (canary), 1 (failed over), 2 (done).
    run.check_history(PERIOD_MS + bound_ms + 250, &[1, 2], false).await;
}
