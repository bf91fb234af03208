//! `baton-upgrade-bench`: the rolling upgrade of the node binary on local
//! clusters of release `baton-node` processes, each under its heart, with
//! counter tasks ticking and a client that keeps writing. For each cluster
//! size it upgrades every node to the same build staged as a new binary
//! (`batonctl upgrade`'s upload), and measures:
//!
//! - per-node upgrade time: from the node's swap (its `swapping` phase, by
//!   the leader's clock) to its being back on the new binary, caught up
//!   (`gating`): stop, start, rejoin and catch-up, without the gate;
//! - per-node time down, seen from outside: the bench connects to every
//!   node's port every 5 ms, and a node is down from the first connection
//!   refused (or not taken within 100 ms) to the next one taken: its stop
//!   to its serving again;
//! - the whole upgrade, minus the gates (`--min-healthy` per node);
//! - the gaps between consecutive committed ticks of every task during the
//!   upgrade, against the period;
//! - write latency seen by a client writing one key after another
//!   throughout, and its longest wait between two acknowledged writes
//!   (leadership moves once, when the leader's turn comes).
//!
//! Prints Markdown tables. Run from the repository root:
//! `scripts/bench-upgrade.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton_cluster_tests::outages::Outages;
use baton_cluster_tests::task_api::{add, deploy, every, history, now_ms, tasks};
use baton_cluster_tests::{TestCluster, machine, poll_async, quantile};
use baton_node::state::cluster_version::NODE_UPGRADES;
use baton_node::state::upgrades::UpgradeSettings;
use batonctl::ClusterClient;
use batonctl::cmd::status::fetch;
use batonctl::cmd::upgrade::{status, upload};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Benchmarks the rolling upgrade of the node binary on local Baton clusters")]
struct Args {
    /// Cluster sizes (voters), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3,5")]
    nodes: Vec<u64>,
    /// Counter tasks on each cluster.
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    /// Their period.
    #[arg(long, default_value_t = 250)]
    period_ms: u64,
    /// Each node's gate (`--min-healthy`).
    #[arg(long, default_value_t = 2_000)]
    min_healthy_ms: u64,
    /// The baton-node the clusters start on, its baton-heart beside it
    /// [default: this build's]. With `--upgrade-binary`, an older release
    /// upgraded to this one (`scripts/upgrade-soak.sh`).
    #[arg(long)]
    installed_binary: Option<std::path::PathBuf>,
    /// The baton-node every node is upgraded to [default: the installed
    /// one, staged as a new binary].
    #[arg(long)]
    upgrade_binary: Option<std::path::PathBuf>,
}

/// What one upgrade measured.
struct Measured {
    nodes: u64,
    per_node: Vec<u64>,
    down: Vec<u64>,
    whole_minus_gates: u64,
    gaps: Vec<u64>,
    writes: Vec<u64>,
    longest_write_wait: u64,
    failed_writes: usize,
}

/// Writes one key after another until `stop`; returns each acknowledged
/// write's latency, the longest time between two acknowledgements, and how
/// many writes failed (after the client's own retries).
async fn keep_writing(client: ClusterClient, stop: Arc<AtomicBool>) -> (Vec<u64>, u64, usize) {
    let (mut latencies, mut longest, mut failed) = (Vec::new(), 0u64, 0usize);
    let mut last_ack = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let request = baton_proto::PutRequest {
            key: format!("w{}", i % 100),
            value: i.to_le_bytes().to_vec(),
        };
        let started = Instant::now();
        match client
            .call_with(&request, |mut c, r| async move { c.put(r).await })
            .await
        {
            Ok(_) => {
                latencies.push(started.elapsed().as_millis() as u64);
                longest = longest.max(last_ack.elapsed().as_millis() as u64);
                last_ack = Instant::now();
            }
            Err(e) => {
                failed += 1;
                eprintln!("write {i} failed: {e}");
            }
        }
    }
    (latencies, longest, failed)
}

/// Adds the counters and waits until every node owns some.
async fn counters_on_every_node(
    cluster: &TestCluster,
    client: &ClusterClient,
    n: u64,
    args: &Args,
) -> BTreeSet<String> {
    deploy(cluster, client, "counter").await;
    let names: BTreeSet<String> = (0..args.tasks).map(|i| format!("c{i:04}")).collect();
    for name in &names {
        add(client, every(name, "counter", args.period_ms, "")).await;
    }
    poll_async(Duration::from_secs(120), "counters ticking on every node", || async {
        let all = tasks(client).await;
        let owners: BTreeSet<u64> = all.iter().map(|t| t.owner).collect();
        (all.iter().all(|t| t.tick >= 2) && owners == (1..=n).collect()).then_some(())
    })
    .await;
    names
}

async fn one_upgrade(args: &Args, n: u64) -> Measured {
    let cluster = match &args.installed_binary {
        Some(binary) => TestCluster::start_with_binary(n, binary.clone()).await,
        None => TestCluster::start(n).await,
    };
    let client = cluster.client();
    let names = counters_on_every_node(&cluster, &client, n, args).await;
    poll_async(Duration::from_secs(60), "the highest cluster version", || async {
        let view = fetch(&client).await.ok()?;
        // Upgrades need it; an older installed release may go no higher.
        (view.cluster_version >= NODE_UPGRADES).then_some(())
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(keep_writing(cluster.client(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let key = cluster.local.signing_key().unwrap();
    let binary = args
        .upgrade_binary
        .clone()
        .unwrap_or_else(|| cluster.local.node_binary().to_path_buf());
    let outages = Outages::watch_ports(
        (1..=n).map(|id| (id, cluster.local.nodes[&id].addr.clone())).collect(),
        Duration::from_millis(5),
        Duration::from_millis(100),
    );
    let started = now_ms();
    let settings = UpgradeSettings {
        min_healthy_ms: args.min_healthy_ms,
        healthy_deadline_ms: 120_000,
        auto_revert: true,
        hold_version: false,
    };
    upload(&client, &binary, &key, &settings)
        .await
        .expect("the upgrade starts");
    // When each node entered each phase, by the leader's clock.
    let mut entered: BTreeMap<(u64, String), u64> = BTreeMap::new();
    let ended = loop {
        let view = status(&client).await.unwrap().expect("an upgrade");
        for node in &view.nodes {
            if node.phase == "swapping" || node.phase == "gating" {
                entered
                    .entry((node.id, node.phase.clone()))
                    .or_insert(view.phase_started_ms);
            }
        }
        if !view.is_live() || view.state == "halted" {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ended.state, "done", "{ended:?}");
    let finished = ended.finished_at_ms.unwrap_or_else(now_ms);
    let after = fetch(&client).await.expect("status after the upgrade");
    let releases: BTreeSet<String> = after.members.iter().map(|m| m.version.clone()).collect();
    eprintln!(
        "{n} nodes: after the upgrade, releases {releases:?} at cluster version {}",
        after.cluster_version
    );
    let downs = outages.stop();
    let down: Vec<u64> = (1..=n)
        .map(|id| {
            downs
                .get(&id)
                .map_or(0, |spans| spans.iter().map(|(from, to)| to - from).sum())
        })
        .collect();
    eprintln!("{n} nodes: down from outside, per node: {down:?} ms");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (writes, longest_write_wait, failed_writes) = writer.await.unwrap();

    let per_node = (1..=n)
        .filter_map(|id| {
            let swap = entered.get(&(id, "swapping".to_string()))?;
            let gate = entered.get(&(id, "gating".to_string()))?;
            Some(gate.saturating_sub(*swap))
        })
        .collect();
    let mut gaps = Vec::new();
    let mut late_at: BTreeMap<u64, usize> = BTreeMap::new();
    for task in tasks(&client).await.into_iter().filter(|t| names.contains(&t.name)) {
        let during: Vec<u64> = history(&client, &task.name)
            .await
            .iter()
            .map(|t| t.committed_at_ms)
            .filter(|at| (started..=finished + args.period_ms).contains(at))
            .collect();
        gaps.extend(during.windows(2).map(|w| w[1] - w[0]));
        for w in during.windows(2).filter(|w| w[1] - w[0] > args.period_ms + 50) {
            *late_at.entry((w[1] - started) / 1000).or_insert(0usize) += 1;
        }
    }
    eprintln!("{n} nodes: ticks more than 50 ms late, by second since the upload: {late_at:?}");
    eprintln!(
        "{n} nodes: upgraded in {} ms ({} ms of gates)",
        finished - started,
        n * args.min_healthy_ms
    );
    Measured {
        nodes: n,
        per_node,
        down,
        whole_minus_gates: (finished - started).saturating_sub(n * args.min_healthy_ms),
        gaps,
        writes,
        longest_write_wait,
        failed_writes,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    baton_node::tls::install_crypto_provider();
    let mut results = Vec::new();
    for n in &args.nodes {
        results.push(one_upgrade(&args, *n).await);
    }
    println!(
        "Rolling upgrade of the node binary, release binaries, {} counters every {} ms, gate {} ms per node, on {}\n",
        args.tasks,
        args.period_ms,
        args.min_healthy_ms,
        machine()
    );
    println!(
        "| nodes | per-node upgrade p50 | max | down, seen from outside, p50 | max | whole upgrade minus gates | \
         tick gaps p50 | p99 | max | gaps above period + 50 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        let over = r.gaps.iter().filter(|g| **g > args.period_ms + 50).count();
        println!(
            "| {} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {over} of {} |",
            r.nodes,
            quantile(&r.per_node, 0.5),
            quantile(&r.per_node, 1.0),
            quantile(&r.down, 0.5),
            quantile(&r.down, 1.0),
            r.whole_minus_gates,
            quantile(&r.gaps, 0.5),
            quantile(&r.gaps, 0.99),
            quantile(&r.gaps, 1.0),
            r.gaps.len()
        );
    }
    println!("\n| nodes | writes | write p50 | p99 | max | longest wait between acknowledged writes | failed |");
    println!("|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {} | {} ms | {} ms | {} ms | {} ms | {} |",
            r.nodes,
            r.writes.len(),
            quantile(&r.writes, 0.5),
            quantile(&r.writes, 0.99),
            quantile(&r.writes, 1.0),
            r.longest_write_wait,
            r.failed_writes
        );
    }
}
