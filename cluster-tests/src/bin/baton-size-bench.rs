//! `baton-size-bench`: what size costs, on a 3-node cluster of release
//! `baton-node` processes on loopback with durable storage.
//!
//! - **Commit latency by size**: writes of 1 KiB, 16 KiB and 64 KiB (a
//!   task's state travels in its tick's commit the same way: one command in
//!   one Raft entry, JSON-encoded), by one client and by 16, for
//!   `--seconds` each.
//! - **Join time by snapshot size**: the cluster's state grown to each size
//!   in `--snapshots-mb` with 64 KiB values, a snapshot built that holds it
//!   (the log behind it purged), then a new worker added; the time from
//!   `nodes add` until the worker has applied the last write.
//!
//! Prints Markdown tables. Run from the repository root:
//! `scripts/bench-sizes.sh` (builds release binaries first).

use std::sync::Arc;
use std::time::Duration;

use baton_cluster_tests::TestCluster;
use baton_cluster_tests::load::put_load;
use baton_node::config::TimingConfig;
use clap::Parser;
use futures::future::join_all;

#[derive(Parser)]
#[command(about = "Commit latency by size and join time by snapshot size on a local Baton cluster")]
struct Args {
    /// Seconds of load per size and client count.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Snapshot sizes to join at, in MB (JSON bytes), increasing.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,400")]
    snapshots_mb: Vec<usize>,
}

/// The sizes whose commit latency is measured.
const SIZES: [usize; 3] = [1024, 16 * 1024, 64 * 1024];

/// The value that grows the state: the largest a put takes.
const GROW_BYTES: usize = 64 * 1024;

/// Snapshots come every this many entries; openraft keeps 1,000 entries
/// behind one, so a node that joins later must take a snapshot.
const SNAPSHOT_AFTER: u64 = 500;

struct Join {
    snapshot_bytes: usize,
    took: Duration,
}

/// Grows the state to `target` bytes of snapshot, waits for a snapshot that
/// holds it, adds worker `id`, and times its catching up.
async fn join_at(cluster: &mut TestCluster, target: usize, id: u64, grown: &mut usize) -> Join {
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.node_client(leader);
    // A value of 64 KiB of 'g' costs about 4 bytes a byte as JSON.
    let per_value = 4 * GROW_BYTES;
    let value = "g".repeat(GROW_BYTES);
    let wanted = target.div_ceil(per_value);
    let (cluster_ref, client_ref, value_ref, from) = (&*cluster, &client, &value, *grown);
    join_all((0..16).map(|writer| async move {
        for i in (from + writer..wanted).step_by(16) {
            cluster_ref
                .put(client_ref, &format!("grow-{i:06}"), value_ref)
                .await
                .unwrap_or_else(|e| panic!("write {i}: {e}"));
        }
    }))
    .await;
    *grown = (*grown).max(wanted);
    // Small writes until the leader has built a snapshot of the target size.
    let log_path = cluster.local.nodes[&leader].log_path();
    let mut i = 0u64;
    let snapshot_bytes = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(bytes) = baton_cluster_tests::logged_bytes(&log, "built a snapshot")
            .into_iter()
            .filter(|&b| b >= target)
            .max()
        {
            break bytes;
        }
        let _ = cluster.put(&client, &format!("tick-{id}-{i}"), "v").await;
        i += 1;
    };
    let last = format!("last-{id}");
    cluster.put(&client, &last, "v").await.expect("the last write");

    let took = cluster.join_worker(&client, id, &last).await;
    Join { snapshot_bytes, took }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    baton_node::tls::install_crypto_provider();
    // Latency on a cluster with the default timing (a snapshot every
    // 20,000 entries), four keys per client so that the state stays small.
    let cluster = Arc::new(TestCluster::start_with(3, TimingConfig::default()).await);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    eprintln!(
        "3-node cluster up in {}; measuring commit latency...",
        cluster.path().display()
    );
    let mut phases = Vec::new();
    for size in SIZES {
        for clients in [1, 16] {
            let phase = put_load(&cluster, &format!("s{size}-"), clients, size, 4, args.seconds).await;
            eprintln!("{size} bytes, {clients} clients: {} commits", phase.ops);
            phases.push(phase);
        }
    }
    drop(cluster);

    // Joins on a cluster that snapshots often, past its first purge: from
    // there on a new node needs a snapshot.
    let timing = TimingConfig {
        snapshot_after_entries: SNAPSHOT_AFTER,
        ..TimingConfig::default()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    eprintln!("3-node cluster up in {}; measuring joins...", cluster.path().display());
    let client = cluster.client();
    for i in 0..(SNAPSHOT_AFTER * 3) {
        let _ = cluster.put(&client, &format!("fill-{i}"), "v").await;
    }
    let mut joins = Vec::new();
    let mut grown = 0;
    for (n, mb) in args.snapshots_mb.iter().enumerate() {
        let join = join_at(&mut cluster, mb * 1_000_000, 4 + n as u64, &mut grown).await;
        eprintln!(
            "joined by a snapshot of {} bytes in {:.1} s",
            join.snapshot_bytes,
            join.took.as_secs_f64()
        );
        joins.push(join);
    }

    println!("Machine: {}\n", baton_cluster_tests::machine());
    println!("| write size | clients | commits/s | p50 | p99 | max | errors |");
    println!("|---|---|---|---|---|---|---|");
    for p in &phases {
        println!("| {} KiB | {} | {} |", p.value_bytes / 1024, p.clients, p.cells());
    }
    println!("\n| snapshot (JSON bytes) | x the 64 MiB message limit | new worker caught up in |");
    println!("|---|---|---|");
    for j in &joins {
        println!(
            "| {:.0} MB | {:.2} | {:.1} s |",
            j.snapshot_bytes as f64 / 1e6,
            j.snapshot_bytes as f64 / baton_node::raft::PEER_MAX_MESSAGE_BYTES as f64,
            j.took.as_secs_f64()
        );
    }
}
