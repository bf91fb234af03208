//! `baton-swap-bench`: hot code swap on a 3-node cluster of release
//! `baton-node` processes on loopback, with counter tasks ticking.
//!
//! Each round deploys a new version of `counter` (version 2's code, padded
//! with a custom section to the module size asked for, so every round is a
//! new release of a realistic size) with a canary and one batch of two
//! nodes, and measures:
//!
//! - per-node swap latency: from the step that switched a node (its
//!   `RolloutStep`, by the leader's clock) to each of its tasks' first tick
//!   committed on the new version;
//! - deploy to every node switched, minus the canary's gate time;
//! - the gaps between consecutive committed ticks of every task during the
//!   rollout;
//!
//! and, in process, the swap's own cost per task for 10,000 tasks: finding
//! the version a task's node runs and migrating its state, beside a plain
//! tick for scale. Prints Markdown tables.
//!
//! Run from the repository root: `scripts/bench-swap.sh`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_cluster_tests::task_api::{add, deploy, every, history, now_ms, rollout, tasks};
use baton_cluster_tests::{TestCluster, example_module, machine, padded, poll_async, quantile};
use baton_node::rollout::RolloutSettings;
use baton_node::runtime::{RuntimeLimits, TaskContext, TaskEngine};
use baton_node::state::cluster::{ClusterState, Rules};
use baton_node::state::tasks::{Assignment, CatchUp, RestartPolicy, Schedule, TaskSpec};
use baton_node::types::{Command, ModuleVersion};
use batonctl::ClusterClient;
use batonctl::cmd::modules::signed_deploy;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Benchmarks hot code swaps on a local Baton cluster")]
struct Args {
    /// Counter tasks on the cluster.
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    /// Their period.
    #[arg(long, default_value_t = 250)]
    period_ms: u64,
    /// Rollouts measured.
    #[arg(long, default_value_t = 5)]
    rollouts: usize,
    /// Each step's gate (min healthy time).
    #[arg(long, default_value_t = 1_000)]
    gate_ms: u64,
    /// The size every released module is padded to.
    #[arg(long, default_value_t = 1024 * 1024)]
    module_bytes: usize,
    /// Tasks in the in-process swap cost measurement.
    #[arg(long, default_value_t = 10_000)]
    swap_tasks: usize,
}

/// What one rollout measured.
#[derive(Default)]
struct Round {
    swap_latency: Vec<u64>,
    deploy_to_switched: u64,
    gaps: Vec<u64>,
}

async fn one_rollout(cluster: &TestCluster, client: &ClusterClient, args: &Args, round: u64) -> Round {
    let key = cluster.local.signing_key().unwrap();
    let bytes = padded(&example_module("counter_v2"), args.module_bytes, round);
    let request = baton_proto::DeployModuleRequest {
        rollout: Some(baton_proto::RolloutSettings {
            canary: 1,
            max_parallel: 2,
            min_healthy_ms: args.gate_ms,
            healthy_deadline_ms: 60_000,
            no_auto_revert: false,
        }),
        ..signed_deploy("counter".into(), bytes, &key)
    };
    let deployed_at = now_ms();
    let reply = client
        .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
        .await
        .unwrap();
    let version = reply.module.unwrap().version;
    // Watch the steps closely: when each node was switched.
    let mut switched_at: BTreeMap<u64, u64> = BTreeMap::new();
    let ended = loop {
        let view = rollout(client, "counter").await;
        for node in &view.switched {
            switched_at.entry(*node).or_insert(view.step_started_ms);
        }
        if !view.is_live() {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(ended.state, "done", "round {round}: {ended:?}");
    let all_switched = switched_at.values().max().copied().unwrap_or(deployed_at);
    let finished = ended.finished_at_ms.unwrap_or_else(now_ms);
    // Every task's first tick on the new version, after its node switched.
    poll_async(Duration::from_secs(30), "every task on the new version", || async {
        tasks(client)
            .await
            .iter()
            .all(|t| t.state_version == version)
            .then_some(())
    })
    .await;
    let mut measured = Round {
        deploy_to_switched: (all_switched - deployed_at).saturating_sub(args.gate_ms),
        ..Round::default()
    };
    for task in tasks(client).await {
        let ticks = history(client, &task.name).await;
        if let Some(first) = ticks.iter().find(|t| t.version == version)
            && let Some(at) = switched_at.get(&first.node)
        {
            measured.swap_latency.push(first.committed_at_ms.saturating_sub(*at));
        }
        let during: Vec<u64> = ticks
            .iter()
            .map(|t| t.committed_at_ms)
            .filter(|at| (deployed_at..=finished + args.period_ms).contains(at))
            .collect();
        measured.gaps.extend(during.windows(2).map(|w| w[1] - w[0]));
    }
    eprintln!(
        "round {round}: version {version} on every node {} ms after the deploy (gate {} ms), done after {} ms",
        all_switched - deployed_at,
        args.gate_ms,
        finished - deployed_at
    );
    measured
}

/// The swap's own cost per task, in process: for each of `n` tasks, find the
/// version its node runs (a rollout under way) and run its first tick there
/// (state migrated up, then ticked); and a plain tick of the same module.
/// Returns (first tick µs per task, plain tick µs per task): the difference
/// is what the swap costs.
fn swap_cost(n: usize) -> (f64, f64) {
    let engine = TaskEngine::new(RuntimeLimits::default(), None).unwrap();
    let v1 = engine.load(&example_module("counter")).unwrap();
    let v2 = engine.load(&example_module("counter_v2")).unwrap();
    let record = |version: u32, module: &baton_node::runtime::CompiledModule| ModuleVersion {
        name: "counter".into(),
        version,
        hash: module.hash.clone(),
        size: module.size as u64,
        migrates: module.migrates,
        down_to: vec![1],
        deployed_at_ms: 0,
        signer: String::new(),
        signature: String::new(),
    };
    let mut state = ClusterState::default();
    let settings = RolloutSettings::default();
    state.apply(
        &Command::AddRelease {
            module: record(1, &v1),
            settings,
            now_ms: 0,
        },
        &Rules::FENCED,
    );
    let mut assignments = Vec::new();
    for i in 0..n {
        let name = format!("t{i:05}");
        state.apply(
            &Command::AddTask(TaskSpec {
                name: name.clone(),
                module: "counter".into(),
                schedule: Schedule::EveryMs(1000),
                catch_up: CatchUp::RunOnce,
                restart: RestartPolicy::default(),
                config: Vec::new(),
                allow_net: Vec::new(),
                allow_http: Vec::new(),
                http_ca: Vec::new(),
                secrets: Vec::new(),
            }),
            &Rules::FENCED,
        );
        assignments.push(Assignment {
            task: name,
            owner: Some(1),
            expected_epoch: 0,
        });
    }
    state.apply(&Command::AssignOwners(assignments), &Rules::FENCED);
    state.apply(
        &Command::AddRelease {
            module: record(2, &v2),
            settings,
            now_ms: 0,
        },
        &Rules::FENCED,
    );
    state.apply(
        &Command::RolloutStep {
            module: "counter".into(),
            version: 2,
            switch: vec![1],
            now_ms: 0,
        },
        &Rules::FENCED,
    );
    let old_state = 41u64.to_le_bytes();
    let task = || TaskContext {
        name: "t".into(),
        ..TaskContext::default()
    };
    let plain = || {
        let started = Instant::now();
        for _ in 0..n {
            engine.tick(&v2, task(), b"counter-v2:41").unwrap();
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    // Plain ticks before and after, so that warming up and drift do not
    // favour either side.
    let before = plain();
    let started = Instant::now();
    for i in 0..n {
        let name = format!("t{i:05}");
        let release = state.version_for(&state.tasks[name.as_str()].spec.module, 1).unwrap();
        let module = engine.loaded(&release.hash).unwrap();
        let outcome = engine
            .tick_migrated(&module, task(), 1, release.version, &old_state)
            .unwrap();
        assert_eq!(outcome.state, b"counter-v2:42");
    }
    let swap_tick = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    (swap_tick, (before + plain()) / 2.0)
}

fn row(what: &str, values: &[u64], goal: &str) -> String {
    format!(
        "| {what} | {} | {} ms | {} ms | {} ms | {goal} |",
        values.len(),
        quantile(values, 0.5),
        quantile(values, 0.99),
        quantile(values, 1.0)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    baton_node::tls::install_crypto_provider();
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    deploy(&cluster, &client, "counter").await;
    for i in 0..args.tasks {
        add(&client, every(&format!("c{i:04}"), "counter", args.period_ms, "")).await;
    }
    poll_async(Duration::from_secs(60), "tasks ticking on every node", || async {
        let all = tasks(&client).await;
        let owners: std::collections::BTreeSet<u64> = all.iter().map(|t| t.owner).collect();
        (owners.len() == 3 && all.iter().all(|t| t.tick > 1)).then_some(())
    })
    .await;
    let mut rounds = Vec::new();
    for round in 0..args.rollouts {
        rounds.push(one_rollout(&cluster, &client, &args, round as u64 + 1).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (first_tick_us, tick_us) = tokio::task::spawn_blocking({
        let n = args.swap_tasks;
        move || swap_cost(n)
    })
    .await
    .unwrap();

    let latency: Vec<u64> = rounds.iter().flat_map(|r| r.swap_latency.clone()).collect();
    let to_switched: Vec<u64> = rounds.iter().map(|r| r.deploy_to_switched).collect();
    let gaps: Vec<u64> = rounds.iter().flat_map(|r| r.gaps.clone()).collect();
    let over_period = gaps.iter().filter(|g| **g > args.period_ms * 3 / 2).count();
    println!(
        "Hot code swap: {} counters every {} ms on 3 release nodes; {} rollouts of a {} KiB module (canary, \
         then 2 nodes, {} ms gates); {}\n",
        args.tasks,
        args.period_ms,
        args.rollouts,
        args.module_bytes / 1024,
        args.gate_ms,
        machine()
    );
    println!("| measure | samples | p50 | p99 | max | goal |\n|---|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "swap latency (node switched -> task's first tick on the new version)",
            &latency,
            &format!("p99 <= {} ms", args.period_ms + 50)
        )
    );
    println!(
        "{}",
        row(
            "deploy -> every node switched, minus the gate",
            &to_switched,
            "< 1000 ms"
        )
    );
    println!(
        "{}",
        row(
            "gap between consecutive ticks during a rollout",
            &gaps,
            &format!("none above one period ({} ms) late", args.period_ms)
        )
    );
    println!(
        "\n{over_period} of {} gaps exceeded 1.5 periods (a missed tick).\n",
        gaps.len()
    );
    println!(
        "| in process, {} tasks | per task |\n|---|---|\n| first tick on the new version (find the node's version, migrate, tick) | {first_tick_us:.1} µs |\n| a plain tick of the same module | {tick_us:.1} µs |\n| the swap's own cost (the difference; goal <= 50 µs; negative is noise) | {:.1} µs |",
        args.swap_tasks,
        first_tick_us - tick_us
    );
}
