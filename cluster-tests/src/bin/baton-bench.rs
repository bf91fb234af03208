//! `baton-bench`: Raft commit throughput and latency, and leader failover
//! after kill -9, on a 3-node cluster of release `baton-node` processes on
//! loopback with durable (fsync'd) storage. Prints a Markdown table.
//!
//! Run from the repository root: `scripts/bench.sh` (builds release binaries
//! first; `baton-node` must sit beside this binary).

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_cluster_tests::TestCluster;
use baton_cluster_tests::load::put_load;
use baton_node::config::TimingConfig;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Benchmarks a local Baton cluster")]
struct Args {
    /// Seconds of load per throughput phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients in the second phase.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Leader kills in the failover phase.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Heartbeat interval (default: the node's default).
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Election timeout range, as MIN-MAX in ms (default: the node's default).
    #[arg(long, value_parser = parse_range)]
    election_timeout_ms: Option<(u64, u64)>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (min, max) = s.split_once('-').ok_or("write MIN-MAX, like 150-300")?;
    Ok((
        min.parse().map_err(|_| "MIN is not a number")?,
        max.parse().map_err(|_| "MAX is not a number")?,
    ))
}

/// Kill -9 the leader, time until a write commits on a new leader; restart
/// the killed node and let it catch up; repeat.
async fn failover(cluster: &mut TestCluster, kills: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    for round in 0..kills {
        let old = cluster.wait_for_leader(Duration::from_secs(30)).await;
        let survivors: Vec<String> = cluster
            .local
            .nodes
            .values()
            .filter(|n| n.id != old)
            .map(|n| n.addr.clone())
            .collect();
        let client = cluster
            .client_for(&survivors)
            .with_retry_pause(Duration::from_millis(2));
        cluster
            .put(&client, "before-kill", "x")
            .await
            .expect("write before the kill");
        let killed_at = Instant::now();
        cluster.kill9(old);
        cluster
            .put(&client, &format!("after-kill-{round}"), "x")
            .await
            .expect("write after the kill");
        let took = killed_at.elapsed();
        times.push(took);
        eprintln!(
            "kill {}: node {old} killed, new leader committed after {:.0} ms",
            round + 1,
            took.as_secs_f64() * 1e3
        );
        cluster.restart(old);
        let marker = format!("rejoined-{round}");
        cluster
            .put(&client, &marker, "x")
            .await
            .expect("write after the restart");
        baton_cluster_tests::poll_async(Duration::from_secs(30), "the restarted node to catch up", || async {
            cluster.get_local(old, &marker).await.ok()?.map(|_| ())
        })
        .await;
    }
    times
}

/// p50 of 4 KiB append + fdatasync in `dir`: the disk's floor for a commit.
fn fsync_p50(dir: &std::path::Path) -> Duration {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&[0u8; 4096]).unwrap();
            file.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    let _ = std::fs::remove_file(path);
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    baton_node::tls::install_crypto_provider();
    let mut timing = TimingConfig::default();
    if let Some(ms) = args.heartbeat_interval_ms {
        timing.heartbeat_interval_ms = ms;
    }
    if let Some((min, max)) = args.election_timeout_ms {
        (timing.election_timeout_min_ms, timing.election_timeout_max_ms) = (min, max);
    }
    let cluster = Arc::new(TestCluster::start_with(3, timing.clone()).await);
    let fsync = fsync_p50(&cluster.path());
    eprintln!("3-node cluster up in {}; measuring...", cluster.path().display());
    let one = put_load(&cluster, "", 1, 16, 1000, args.seconds).await;
    let many = put_load(&cluster, "", args.clients, 16, 1000, args.seconds).await;
    let mut cluster = Arc::into_inner(cluster).expect("load tasks finished");
    let times = failover(&mut cluster, args.kills).await;

    println!(
        "Machine: {}; disk 4 KiB append+fdatasync p50 {:.2} ms\n",
        baton_cluster_tests::machine(),
        fsync.as_secs_f64() * 1e3
    );
    println!("| clients | commits/s | p50 | p99 | max | errors |");
    println!("|---|---|---|---|---|---|");
    for p in [&one, &many] {
        println!("| {} | {} |", p.clients, p.cells());
    }
    let mut sorted = times.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    println!("\n| leader failover after kill -9 (kill to first commit on the new leader) | median | max | kills |");
    println!("|---|---|---|---|");
    println!(
        "| 3 nodes, heartbeat {} ms, election timeout {}-{} ms | {:.0} ms | {:.0} ms | {} |",
        timing.heartbeat_interval_ms,
        timing.election_timeout_min_ms,
        timing.election_timeout_max_ms,
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        sorted.len()
    );
}
