//! Tasks written in Python, on real processes: counters of the Rust
//! `counter` module ticking on 3 nodes take a new version of the module
//! written in Python (`tasks/python/examples/counter`) through the ordinary
//! canary rollout. Each task's state is migrated up as it switches (from
//! `N` to `{"count":N}`, by the Python module's `migrate`), every count goes
//! on from where it was, and the history checker reads every committed
//! tick. The Python module is 19 MB (it embeds CPython), over the 16 MiB an
//! earlier release loads: the cluster takes it at version 10.

use std::time::Duration;

use baton_cluster_tests::history::{Expectations, check, collect, counter_count};
use baton_cluster_tests::task_api::{await_all_on_version, await_rollout_end, release, rollout, start_counters, tasks};
use baton_cluster_tests::upgrades::await_cluster_version;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::state::cluster_version::VersionRange;
use baton_proto::RolloutSettings;

const TASKS: usize = 30;
const PERIOD_MS: u64 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_counter_rolls_out_over_the_rust_one_with_its_migrate() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    await_cluster_version(&client, VersionRange::SUPPORTED.max).await;
    let names = start_counters(&cluster, &client, TASKS, PERIOD_MS).await;

    let settings = RolloutSettings {
        canary: 1,
        max_parallel: 2,
        min_healthy_ms: 1_000,
        // Each node compiles the 19 MB module (at a low priority) before
        // its tasks switch; a loaded machine takes its time.
        healthy_deadline_ms: 120_000,
        no_auto_revert: false,
    };
    let version = release(&cluster, &client, "counter", "counter_py", settings).await;
    assert_eq!(version, 2);
    let done = await_rollout_end(&client, "counter", Duration::from_secs(240)).await;
    assert_eq!(done.state, "done", "{done:?}");
    // A canary, then the other two nodes (together, or one by one as each
    // has compiled the module).
    assert!(done.steps >= 2, "no canary step: {done:?}");
    await_all_on_version(&client, 2).await;
    assert_eq!(rollout(&client, "counter").await.state, "done");

    // Every task goes on counting in Python's format.
    let switched = tasks(&client).await;
    poll_async(
        Duration::from_secs(30),
        "every task ticking on the Python version",
        || async {
            let now = tasks(&client).await;
            now.iter()
                .all(|t| switched.iter().any(|s| s.name == t.name && t.tick >= s.tick + 3))
                .then_some(())
        },
    )
    .await;
    for t in tasks(&client).await {
        assert!(t.state.starts_with(br#"{"count":"#), "{}: {:?}", t.name, t.state);
        assert_eq!(counter_count(&t.state), Ok(t.tick), "{}", t.name);
        assert!(t.failure.is_empty(), "{}: {}", t.name, t.failure);
    }

    // Every committed tick, in order, versions 1 then 2, no count lost or
    // repeated across the change of language and format. Each node has
    // compiled the module before its tasks switch (the rollout waits for
    // it); the gap allows for a loaded machine.
    let histories = collect(&client).await.unwrap();
    let expect = Expectations {
        tasks: names,
        max_gap_ms: 10_000,
        counters: true,
    };
    let summary = check(&histories, &expect).unwrap_or_else(|v| panic!("{v}"));
    for h in &histories {
        let versions: Vec<u32> = h.ticks.iter().map(|t| t.version).collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]) && versions.iter().all(|v| [1, 2].contains(v)),
            "task {}'s versions: {versions:?}",
            h.name
        );
    }
    eprintln!(
        "history: {} tasks, {} ticks, largest gap {} ms ({})",
        summary.tasks, summary.ticks, summary.max_gap_ms, summary.max_gap_task
    );
}
