//! `baton-bench`: Raft commit throughput and latency, and leader failover
//! after kill -9, on a 3-node cluster of release `baton-node` processes on
//! loopback with durable (fsync'd) storage. Prints Markdown tables.
//!
//! Side by side with etcd (unless `--no-etcd`): the same load, put into a
//! 3-member etcd cluster on loopback (fsync on, mutual TLS as Baton has),
//! in rounds that alternate Baton, etcd, Baton, etcd, each on a fresh
//! cluster, so that drift on a shared machine hits both alike. Baton's
//! figures are reported as ratios to etcd's from the same run: absolute
//! figures move by 2x from one of these machines to the next.
//!
//! Each round also measures the ceiling of those calls (unless
//! `--no-reads`): the same clients on the same connections reading one key
//! from the leader's own state, with no Raft and no disk (Baton's `Get` with
//! `local`, etcd's serializable `Range`). A put pays such a call and Raft's
//! work on the same cores, so commits/s cannot pass reads/s.
//!
//! Run from the repository root: `scripts/bench.sh` (builds release binaries
//! first and installs Debian's `etcd-server` when it is missing;
//! `baton-node` must sit beside this binary).

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_cluster_tests::TestCluster;
use baton_cluster_tests::etcd::EtcdCluster;
use baton_cluster_tests::load::{Phase, etcd_local_read_load, etcd_put_load, local_read_load, put_load};
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
    /// Rounds of the load phases (each system on a fresh cluster per round).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Measure Baton alone, without etcd beside it.
    #[arg(long)]
    no_etcd: bool,
    /// An earlier build of `baton-node` (its `baton-heart` beside it) to
    /// measure in the same rounds, such as the commit before a change.
    #[arg(long)]
    baseline_binary: Option<std::path::PathBuf>,
    /// Bytes in each value written.
    #[arg(long, default_value_t = 16)]
    value_bytes: usize,
    /// Leader kills in the failover phase.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Heartbeat interval (default: the node's default).
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Election timeout range, as MIN-MAX in ms (default: the node's default).
    #[arg(long, value_parser = parse_range)]
    election_timeout_ms: Option<(u64, u64)>,
    /// Also measure each build while every node's `/metrics` is scraped
    /// every this many ms, beside the same build unscraped, in the same
    /// rounds (the cost of metrics).
    #[arg(long)]
    scraped_every_ms: Option<u64>,
    /// Skip the ceiling phases: the same clients reading one key from the
    /// leader's own state (no Raft, no disk), for Baton and etcd.
    #[arg(long)]
    no_reads: bool,
    /// Split each write phase's time per node: every node's log writes
    /// (one fsync each) and proposals, from its `/metrics` read before
    /// and after the phase.
    #[arg(long)]
    split: bool,
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

/// Each system's CPU per commit, mean over the rounds: what its servers
/// and its clients used on the machine's cores for each write, which a
/// stalling disk moves less than commits/s (the processes wait, not work).
/// It includes what the processes do when idle.
fn print_cpu(rounds: &[Round], systems: &[&str]) {
    println!(
        "\nCPU per commit, mean over the rounds: the servers' processes together, and the clients (this process):\n"
    );
    println!(
        "| system | clients | commits/s | servers' CPU per commit | clients' CPU per commit | servers' cores busy |"
    );
    println!("|---|---|---|---|---|---|");
    for system in systems {
        for many in [false, true] {
            let measured: Vec<&Phase> = phases(rounds, system, many)
                .into_iter()
                .filter(|p| p.cpu.is_some())
                .collect();
            let Some(first) = measured.first() else {
                continue;
            };
            let cpu = |p: &Phase| p.cpu.unwrap_or_default();
            let per_commit = |p: &Phase, used: Duration| used.as_secs_f64() * 1e6 / p.ops.max(1) as f64;
            println!(
                "| {system} | {} | {:.0} | {:.1} µs | {:.1} µs | {:.2} |",
                first.clients,
                mean(&measured, Phase::per_second),
                mean(&measured, |p| per_commit(p, cpu(p).servers)),
                mean(&measured, |p| per_commit(p, cpu(p).client)),
                mean(&measured, |p| cpu(p).servers.as_secs_f64() / p.elapsed.as_secs_f64()),
            );
        }
    }
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

/// The two load phases of one round: one client, then `clients`.
struct Round {
    system: String,
    round: usize,
    one: Phase,
    many: Phase,
    /// The same two phases reading without Raft, if measured.
    reads: Option<(Phase, Phase)>,
}

/// The phases `system` ran in every round: the many-client ones, or the
/// one-client ones.
fn phases<'a>(rounds: &'a [Round], system: &str, many: bool) -> Vec<&'a Phase> {
    rounds
        .iter()
        .filter(|r| r.system == system)
        .map(|r| if many { &r.many } else { &r.one })
        .collect()
}

/// The read phases `system` ran in every round.
fn read_phases<'a>(rounds: &'a [Round], system: &str, many: bool) -> Vec<&'a Phase> {
    rounds
        .iter()
        .filter(|r| r.system == system)
        .filter_map(|r| r.reads.as_ref())
        .map(|(one, many_reads)| if many { many_reads } else { one })
        .collect()
}

fn mean(phases: &[&Phase], f: impl Fn(&Phase) -> f64) -> f64 {
    phases.iter().map(|p| f(p)).sum::<f64>() / phases.len() as f64
}

/// One node's write histograms as its `/metrics` gives them: each durable
/// write of its Raft log (one fsync), and each proposal made on it.
#[derive(Clone, Copy, Default)]
struct NodeWrites {
    storage_commits: f64,
    storage_seconds: f64,
    proposals: f64,
    proposal_seconds: f64,
}

impl NodeWrites {
    /// Every node's, by id.
    async fn read_all(cluster: &TestCluster) -> Vec<(u64, NodeWrites)> {
        let mut all = Vec::new();
        for (id, node) in &cluster.local.nodes {
            let text = baton_cluster_tests::http::get(&node.metrics_addr, "/metrics", Duration::from_secs(10))
                .await
                .map(|answer| answer.body)
                .unwrap_or_else(|e| panic!("node {id}'s /metrics: {e}"));
            all.push((*id, NodeWrites::parse(&text)));
        }
        all.sort_by_key(|(id, _)| *id);
        all
    }

    fn parse(text: &str) -> NodeWrites {
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        NodeWrites {
            storage_commits: value("baton_storage_commit_duration_seconds_count"),
            storage_seconds: value("baton_storage_commit_duration_seconds_sum"),
            proposals: value("baton_raft_proposal_duration_seconds_count"),
            proposal_seconds: value("baton_raft_proposal_duration_seconds_sum"),
        }
    }

    fn since(&self, before: &NodeWrites) -> NodeWrites {
        NodeWrites {
            storage_commits: self.storage_commits - before.storage_commits,
            storage_seconds: self.storage_seconds - before.storage_seconds,
            proposals: self.proposals - before.proposals,
            proposal_seconds: self.proposal_seconds - before.proposal_seconds,
        }
    }
}

/// One write phase's nodes: what each wrote during it.
struct Split {
    round: usize,
    clients: usize,
    commits: u64,
    leader: u64,
    nodes: Vec<(u64, NodeWrites)>,
}

impl Split {
    fn of(
        round: usize,
        phase: &Phase,
        leader: u64,
        before: &[(u64, NodeWrites)],
        after: &[(u64, NodeWrites)],
    ) -> Split {
        let nodes = after
            .iter()
            .zip(before)
            .map(|((id, after), (_, before))| (*id, after.since(before)))
            .collect();
        Split {
            round,
            clients: phase.clients,
            commits: phase.ops,
            leader,
            nodes,
        }
    }
}

fn print_splits(splits: &[Split]) {
    println!(
        "\nEach node's Raft log writes during each phase (one fsync each), and its proposals (from the call on the leader to the apply):\n"
    );
    println!("| round | clients | node | client commits per log write | mean log write | proposals | mean proposal |");
    println!("|---|---|---|---|---|---|---|");
    for split in splits {
        for (id, writes) in &split.nodes {
            let role = if *id == split.leader { " (leader)" } else { "" };
            let per = |count: f64, seconds: f64| {
                if count > 0.0 {
                    format!("{:.3} ms", seconds / count * 1e3)
                } else {
                    "-".to_string()
                }
            };
            println!(
                "| {} | {} | {id}{role} | {:.2} | {} | {:.0} | {} |",
                split.round,
                split.clients,
                split.commits as f64 / writes.storage_commits.max(1.0),
                per(writes.storage_commits, writes.storage_seconds),
                writes.proposals,
                per(writes.proposals, writes.proposal_seconds),
            );
        }
    }
}

/// Each system's commits beside its reads without Raft on the same calls:
/// the share of the calls' ceiling that its writes reach.
fn print_ceiling(rounds: &[Round], no_etcd: bool) {
    println!(
        "\nThe calls' ceiling, mean over the rounds: the same clients reading one key from the leader's own state (no Raft, no disk). Commits/s cannot pass it:\n"
    );
    println!("| system | clients | reads/s | commits/s | commits / reads | read p50 | commit p50 |");
    println!("|---|---|---|---|---|---|---|");
    let systems: &[&str] = if no_etcd { &["Baton"] } else { &["Baton", "etcd"] };
    let rate = |p: &Phase| p.per_second();
    let p50 = |p: &Phase| ms(p.latency_us.value_at_quantile(0.5));
    for system in systems {
        for many in [false, true] {
            let (reads, puts) = (read_phases(rounds, system, many), phases(rounds, system, many));
            if reads.is_empty() {
                continue;
            }
            println!(
                "| {system} | {} | {:.0} | {:.0} | {:.2} | {:.2} ms | {:.2} ms |",
                reads[0].clients,
                mean(&reads, rate),
                mean(&puts, rate),
                mean(&puts, rate) / mean(&reads, rate),
                mean(&reads, p50),
                mean(&puts, p50),
            );
        }
    }
    if no_etcd {
        return;
    }
    for many in [false, true] {
        let (baton_reads, etcd_puts) = (read_phases(rounds, "Baton", many), phases(rounds, "etcd", many));
        if baton_reads.is_empty() {
            continue;
        }
        println!(
            "\n{} client(s): Baton's reads without Raft reach {:.2}x etcd's commits/s.",
            baton_reads[0].clients,
            mean(&baton_reads, rate) / mean(&etcd_puts, rate)
        );
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
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
    let mut rounds: Vec<Round> = Vec::new();
    let mut splits: Vec<Split> = Vec::new();
    let mut fsync = Duration::ZERO;
    let mut builds = vec![("Baton".to_string(), None, None)];
    if let Some(path) = &args.baseline_binary {
        builds.push(("Baton (baseline)".to_string(), Some(path.clone()), None));
    }
    if let Some(ms) = args.scraped_every_ms {
        let every = Duration::from_millis(ms);
        builds.push((format!("Baton, scraped every {ms} ms"), None, Some(every)));
    }
    for round in 1..=args.rounds {
        for (system, binary, scraped) in &builds {
            let mut cluster = match binary {
                Some(binary) => TestCluster::create_with_binary(3, timing.clone(), binary.clone()),
                None => TestCluster::create(3, timing.clone()),
            };
            for id in 1..=3 {
                cluster.local.start(id).expect("start node");
            }
            let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
            cluster.wait_for_all_up(Duration::from_secs(30)).await;
            let version = baton_cluster_tests::upgrades::await_settled_version(&cluster.client()).await;
            let cluster = Arc::new(cluster);
            fsync = fsync_p50(&cluster.path());
            eprintln!(
                "round {round}: {system}, 3 nodes at cluster version {version} in {}",
                cluster.path().display()
            );
            let scraper = scraped.map(|every| {
                let targets = cluster.local.nodes.values().map(|n| n.metrics_addr.clone()).collect();
                baton_cluster_tests::prometheus::spawn_scraper(targets, every)
            });
            let measured = args.split && binary.is_none() && scraped.is_none();
            let before = if measured {
                Some(NodeWrites::read_all(&cluster).await)
            } else {
                None
            };
            let one = put_load(&cluster, "", 1, args.value_bytes, 1000, args.seconds).await;
            let middle = if measured {
                Some(NodeWrites::read_all(&cluster).await)
            } else {
                None
            };
            let many = put_load(&cluster, "", args.clients, args.value_bytes, 1000, args.seconds).await;
            if let (Some(before), Some(middle)) = (before, middle) {
                let after = NodeWrites::read_all(&cluster).await;
                splits.push(Split::of(round, &one, leader, &before, &middle));
                splits.push(Split::of(round, &many, leader, &middle, &after));
            }
            // The ceiling, for the build measured (not a baseline's or a
            // scraped variant's: the call is the same).
            let reads = match (args.no_reads, binary, scraped) {
                (false, None, None) => Some((
                    local_read_load(&cluster, 1, args.seconds).await,
                    local_read_load(&cluster, args.clients, args.seconds).await,
                )),
                _ => None,
            };
            if let Some((scraper, scrapes)) = scraper {
                scraper.abort();
                eprintln!(
                    "{} scrapes answered",
                    scrapes.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
            drop(cluster);
            rounds.push(Round {
                system: system.clone(),
                round,
                one,
                many,
                reads,
            });
        }
        if args.no_etcd {
            continue;
        }
        let dir = tempfile::Builder::new()
            .prefix("baton-bench-etcd-")
            .tempdir()
            .expect("temp dir");
        let etcd = EtcdCluster::start(dir.path(), 3).await.expect("etcd cluster");
        eprintln!("round {round}: etcd, 3 members in {}", dir.path().display());
        let one = etcd_put_load(&etcd, 1, args.value_bytes, 1000, args.seconds).await;
        let many = etcd_put_load(&etcd, args.clients, args.value_bytes, 1000, args.seconds).await;
        let reads = if args.no_reads {
            None
        } else {
            Some((
                etcd_local_read_load(&etcd, 1, args.seconds).await,
                etcd_local_read_load(&etcd, args.clients, args.seconds).await,
            ))
        };
        drop(etcd);
        rounds.push(Round {
            system: "etcd".to_string(),
            round,
            one,
            many,
            reads,
        });
    }
    let mut cluster = TestCluster::start_with(3, timing.clone()).await;
    let times = failover(&mut cluster, args.kills).await;

    println!(
        "Machine: {}; disk 4 KiB append+fdatasync p50 {:.2} ms; {}-byte values\n",
        baton_cluster_tests::machine(),
        fsync.as_secs_f64() * 1e3,
        args.value_bytes
    );
    println!("| round | system | clients | commits/s | p50 | p99 | max | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rounds {
        for p in [&r.one, &r.many] {
            println!("| {} | {} | {} | {} |", r.round, r.system, p.clients, p.cells());
        }
        if let Some((one, many)) = &r.reads {
            for p in [one, many] {
                println!(
                    "| {} | {}, local reads | {} | {} |",
                    r.round,
                    r.system,
                    p.clients,
                    p.cells()
                );
            }
        }
    }
    if !args.no_reads {
        print_ceiling(&rounds, args.no_etcd);
    }
    if !splits.is_empty() {
        print_splits(&splits);
    }
    let systems: Vec<&str> = builds
        .iter()
        .map(|(system, _, _)| system.as_str())
        .chain((!args.no_etcd).then_some("etcd"))
        .collect();
    print_cpu(&rounds, &systems);
    if !args.no_etcd {
        println!("\nMean over the rounds, each build as a ratio to etcd:\n");
        println!(
            "| build | clients | etcd commits/s | its commits/s | its / etcd | etcd p50 | its p50 | etcd p99 | its p99 |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for (system, _, _) in &builds {
            for many in [false, true] {
                let (baton, etcd) = (phases(&rounds, system, many), phases(&rounds, "etcd", many));
                let rate = |p: &Phase| p.per_second();
                let p50 = |p: &Phase| ms(p.latency_us.value_at_quantile(0.5));
                let p99 = |p: &Phase| ms(p.latency_us.value_at_quantile(0.99));
                println!(
                    "| {system} | {} | {:.0} | {:.0} | {:.2} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
                    baton[0].clients,
                    mean(&etcd, rate),
                    mean(&baton, rate),
                    mean(&baton, rate) / mean(&etcd, rate),
                    mean(&etcd, p50),
                    mean(&baton, p50),
                    mean(&etcd, p99),
                    mean(&baton, p99),
                );
            }
        }
    }
    if args.scraped_every_ms.is_some() {
        println!("\nMean over the rounds, scraped as a ratio to unscraped (the same build):\n");
        println!(
            "| clients | unscraped commits/s | scraped commits/s | scraped / unscraped | unscraped p99 | scraped p99 |"
        );
        println!("|---|---|---|---|---|---|");
        let scraped_name = &builds.last().expect("the scraped build").0;
        for many in [false, true] {
            let (plain, scraped) = (phases(&rounds, "Baton", many), phases(&rounds, scraped_name, many));
            let rate = |p: &Phase| p.per_second();
            let p99 = |p: &Phase| ms(p.latency_us.value_at_quantile(0.99));
            println!(
                "| {} | {:.0} | {:.0} | {:.3} | {:.2} ms | {:.2} ms |",
                plain[0].clients,
                mean(&plain, rate),
                mean(&scraped, rate),
                mean(&scraped, rate) / mean(&plain, rate),
                mean(&plain, p99),
                mean(&scraped, p99),
            );
        }
    }
    // `--kills 0` skips the failover phase.
    if !times.is_empty() {
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
}
