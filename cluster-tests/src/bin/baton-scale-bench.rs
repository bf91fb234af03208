//! `baton-scale-bench`: many tasks on one cluster of release `baton-node`
//! processes on loopback: 3 voters and `--workers` workers (learners), every
//! node under its heart, as `batonctl dev` runs them.
//!
//! 1. Adds `--tasks` counter tasks every `--period-ms` (64 callers at once)
//!    and waits until every one has ticked.
//! 2. Measures, over `--seconds`, the ticks committed per second against
//!    the ticks the schedules ask for, from outside: the sum of the tasks'
//!    tick counts (`tasks list`) at the start and the end of the window;
//!    and how overdue the tasks are at those moments (a task's next tick
//!    due in the past and not yet committed). When the nodes report it,
//!    the leader's own lateness figure (from `status`) beside it; and,
//!    read from every node's `/metrics` once a second, how many ticks
//!    started more than 32, 64 and 128 ms late on each node, and in which
//!    seconds more than 128 ms (see `baton_cluster_tests::late_ticks`);
//!    how many tick commits each node applied more than 50, 100 and 250 ms
//!    past their due time (the leader's is `status`'s figure, here over the
//!    whole window); and the leader's figure at the end of each 10 s of the
//!    window.
//! 3. Resident memory of each node before the tasks and after, per task.
//! 4. The last snapshot the leader built: its size and how long it took.
//! 5. Kill -9 of a worker: the time until every task it owned has
//!    committed a tick on another node, and the leader's reassignment write.
//! 6. A new worker joins: the time from `nodes add` until it has applied a
//!    write made just before.
//!
//! 7. With `--status-page-loads N`: how long each status page takes to load
//!    from the leader and from a follower, beside `/metrics` and a
//!    `tasks list` of every task in the same run.
//!
//! Prints Markdown tables. `--node-binary` runs another build of
//! `baton-node` (its `baton-heart` beside it), such as the commit before a
//! change, for figures measured side by side in one session. Its configs
//! are those a release before 0.6.0 reads, with no `[metrics]` table, so
//! the rows read from each node's `/metrics` are missing; for those, copy
//! this benchmark beside the other build's binaries and run it from there.
//!
//! Run from the repository root: `scripts/bench-scale.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use baton_cluster_tests::late_ticks::LateTicks;
use baton_cluster_tests::task_api::{add, deploy, every, now_ms, set_drained, tasks};
use baton_cluster_tests::{TestCluster, logged_bytes, machine, poll_every, quantile};
use baton_node::config::TimingConfig;
use baton_proto::TaskInfo;
use batonctl::ClusterClient;
use batonctl::local_cluster::LocalCluster;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Benchmarks many tasks on a local Baton cluster")]
struct Args {
    /// Counter tasks.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Their period.
    #[arg(long, default_value_t = 1_000)]
    period_ms: u64,
    /// Workers beside the 3 voters.
    #[arg(long, default_value_t = 1)]
    workers: u64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Another `baton-node` to run (default: the one beside this binary).
    #[arg(long)]
    node_binary: Option<PathBuf>,
    /// Skip the kill of a worker and the join of a new one.
    #[arg(long)]
    no_faults: bool,
    /// Build a snapshot after this many entries (the nodes' default if
    /// unset): a lower figure makes the new worker join by a snapshot.
    #[arg(long)]
    snapshot_after: Option<u64>,
    /// Every task on the first worker: the voters are drained while the
    /// tasks are added, and undrained just before that worker's kill -9, so
    /// the kill loses every task (for the reassignment of them all).
    #[arg(long)]
    all_on_one_worker: bool,
    /// Add the tasks as soon as the module is deployed, as a user does,
    /// rather than once every node has compiled it: each node's workers
    /// then start before their module is there. Memory per task is then
    /// measured from the deploy, and includes the module on all nodes but
    /// the one that took the deploy.
    #[arg(long)]
    add_at_once: bool,
    /// Run the voters as a release that supports cluster versions up to
    /// this one (`[testing] max_cluster_version`), which holds the whole
    /// cluster there: the same binary, measured as an older release.
    #[arg(long)]
    max_cluster_version: Option<u32>,
    /// GET every node's `/metrics` every this many ms through the measured
    /// window, as a Prometheus would (the cost of metrics).
    #[arg(long)]
    scrape_every_ms: Option<u64>,
    /// After the window, load each status page this many times from the
    /// leader and from a follower (`scripts/bench-status-page.sh`).
    #[arg(long)]
    status_page_loads: Option<usize>,
}

/// A figure of a process's `/proc/PID/status` ("VmRSS:" in KiB, "Threads:").
fn status_figure(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    status_figure(pid, "VmRSS:")
}

/// CPU time a process has used, user and system, in ms (from /proc; the
/// kernel counts it in ticks of 10 ms).
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are the 12th and 13th of them.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * 10
}

/// The leader's lateness p99 (`status`, the commits of the last 10 s) at
/// the end of each 10 s of `window`, in ms: a stall in one of them shows,
/// whatever the moment the run ends.
async fn leader_figures_through(cluster: &TestCluster, window: Duration) -> Vec<u64> {
    let mut p99s = Vec::new();
    let started = Instant::now();
    let every = Duration::from_millis(baton_node::tasks::timeliness::WINDOW_MS);
    while started.elapsed() + every <= window {
        tokio::time::sleep(every).await;
        if let Some(ticks) = cluster.status().await.ok().and_then(|s| s.ticks) {
            p99s.push(ticks.late_p99_ms);
        }
    }
    p99s
}

/// Each node's resident memory in KiB, read every second for `window`.
async fn rss_through(local: &LocalCluster, window: Duration) -> BTreeMap<u64, Vec<u64>> {
    let mut read: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let started = Instant::now();
    while started.elapsed() < window {
        for (id, pid) in pids(local) {
            read.entry(id).or_default().push(rss_kib(pid));
        }
        tokio::time::sleep(Duration::from_secs(1).min(window.saturating_sub(started.elapsed()))).await;
    }
    read
}

/// Waits until the module just deployed is compiled on every node: each
/// node's fetcher logs it, except on the node that took the deploy, which
/// compiled it then.
async fn compiled_everywhere(local: &LocalCluster, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let compiled = local
            .nodes
            .values()
            .filter(|n| std::fs::read_to_string(n.log_path()).is_ok_and(|log| log.contains("compiled module")))
            .count();
        if compiled + 1 >= local.nodes.len() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The machine's cores.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time all the node processes have used, in ms.
fn nodes_cpu_ms(local: &LocalCluster) -> u64 {
    pids(local).values().map(|&pid| cpu_ms(pid)).sum()
}

/// The node processes' pids, by node id (from their pid files).
fn pids(local: &LocalCluster) -> BTreeMap<u64, u32> {
    local
        .nodes
        .values()
        .filter_map(|n| {
            let pid = std::fs::read_to_string(n.pid_path()).ok()?.trim().parse().ok()?;
            Some((n.id, pid))
        })
        .collect()
}

/// One look at every task from outside.
struct Sample {
    at_ms: u64,
    ticks: u64,
    /// How far past its due time each running task's next tick is (0 when
    /// not yet due), in ms.
    overdue_ms: Vec<u64>,
}

async fn sample(client: &ClusterClient) -> Sample {
    let all = tasks(client).await;
    let at_ms = now_ms();
    Sample {
        at_ms,
        ticks: all.iter().map(|t| t.tick).sum(),
        overdue_ms: all
            .iter()
            .filter(|t| t.status == "running" && t.next_due_ms > 0)
            .map(|t| at_ms.saturating_sub(t.next_due_ms))
            .collect(),
    }
}

/// Adds `n` counters every `period_ms` with 64 callers at once; returns
/// the time it took.
async fn add_tasks(cluster: &TestCluster, n: usize, period_ms: u64) -> Duration {
    let started = Instant::now();
    let mut adds = tokio::task::JoinSet::new();
    let clients: Vec<std::sync::Arc<ClusterClient>> = (0..8).map(|_| std::sync::Arc::new(cluster.client())).collect();
    for caller in 0..64 {
        let client = clients[caller % clients.len()].clone();
        adds.spawn(async move {
            for i in (caller..n).step_by(64) {
                add(&client, every(&format!("t{i:06}"), "counter", period_ms, "")).await;
            }
        });
    }
    adds.join_all().await;
    started.elapsed()
}

/// How often to list every task while waiting: a list of 100,000 tasks is
/// about 10 MB for the leader to build and send.
fn list_interval(tasks: usize) -> Duration {
    Duration::from_millis((tasks as u64 / 10).clamp(200, 5_000))
}

/// Loads each status page `loads` times from node `id` and prints a row per
/// page: p50, p99 and max load time and the page's size; `/metrics` and a
/// `tasks list` of every task beside them, as peers.
async fn time_status_page(cluster: &TestCluster, client: &ClusterClient, id: u64, role: &str, loads: usize) {
    let addr = &cluster.local.nodes[&id].metrics_addr;
    let paths = [
        "/",
        "/tasks",
        "/tasks?status=running&page=50",
        "/tasks?name=t0099",
        "/tasks/t000042",
        "/nodes",
        "/modules",
        "/metrics",
    ];
    for path in paths {
        let mut ms = Vec::with_capacity(loads);
        let mut bytes = 0;
        for _ in 0..loads {
            let started = Instant::now();
            let answer = baton_cluster_tests::http::get(addr, path, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            ms.push(started.elapsed().as_micros() as u64);
            bytes = answer.body.len();
        }
        load_row(
            &format!("node {id} ({role})"),
            &format!("`{path}`"),
            ms,
            &format!("{} KiB", bytes / 1024),
        );
    }
    let mut ms = Vec::with_capacity(loads);
    for _ in 0..loads {
        let started = Instant::now();
        let all = tasks(client).await;
        ms.push(started.elapsed().as_micros() as u64);
        assert!(!all.is_empty());
    }
    load_row(
        &format!("any ({role} run)"),
        "`batonctl tasks list` (gRPC, every task)",
        ms,
        "-",
    );
}

/// A row of the page-load table: p50, p99 and max of `us` (microseconds),
/// in milliseconds.
fn load_row(from: &str, what: &str, mut us: Vec<u64>, size: &str) {
    us.sort_unstable();
    let ms = |q: f64| quantile(&us, q) as f64 / 1000.0;
    println!(
        "| {from} | {what} | {:.1} | {:.1} | {:.1} | {size} |",
        ms(0.5),
        ms(0.99),
        ms(1.0)
    );
}

fn owned_by(all: &[TaskInfo], node: u64) -> Vec<String> {
    all.iter().filter(|t| t.owner == node).map(|t| t.name.clone()).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    baton_node::tls::install_crypto_provider();
    let mut timing = TimingConfig::default();
    if let Some(entries) = args.snapshot_after {
        timing.snapshot_after_entries = entries;
    }
    let mut cluster = match &args.node_binary {
        Some(binary) => TestCluster::create_with_binary(3, timing, binary.clone()),
        None => TestCluster::create(3, timing),
    };
    if let Some(cap) = args.max_cluster_version {
        cluster.append_config(&format!("[testing]\nmax_cluster_version = {cap}"));
    }
    for id in 1..=3 {
        cluster.local.start(id).expect("start node");
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let mut next_id = 4;
    for _ in 0..args.workers {
        join(&mut cluster, &client, next_id).await;
        next_id += 1;
    }
    cluster.wait_for_all_up(Duration::from_secs(60)).await;
    eprintln!(
        "{} nodes up in {}; adding {} tasks...",
        3 + args.workers,
        cluster.path().display(),
        args.tasks
    );
    let rss_start: BTreeMap<u64, u64> = pids(&cluster.local)
        .into_iter()
        .map(|(id, pid)| (id, rss_kib(pid)))
        .collect();
    deploy(&cluster, &client, "counter").await;
    // A compiled module is a node's fixed cost, whatever its number of
    // tasks: the memory per task is measured from when every node has it.
    if !args.add_at_once && !compiled_everywhere(&cluster.local, Duration::from_secs(60)).await {
        eprintln!("the module was not compiled on every node within 60 s; measuring from now");
    }
    if args.all_on_one_worker {
        assert!(args.workers >= 1, "--all-on-one-worker needs a worker");
        for voter in 1..=3 {
            set_drained(&client, voter, true).await;
        }
    }
    let rss_before: BTreeMap<u64, u64> = pids(&cluster.local)
        .into_iter()
        .map(|(id, pid)| (id, rss_kib(pid)))
        .collect();

    let add_took = add_tasks(&cluster, args.tasks, args.period_ms).await;
    eprintln!(
        "added in {:.1} s; waiting for every task to tick...",
        add_took.as_secs_f64()
    );
    let placed = Instant::now();
    // A list of every task costs the leader much at scale: not too often.
    let list_every = list_interval(args.tasks);
    poll_every(list_every, Duration::from_secs(600), "every task to tick", || async {
        tasks(&client).await.iter().all(|t| t.tick >= 1).then_some(())
    })
    .await;
    let all_ticking = placed.elapsed() + add_took;
    // Let the first ticks' catch-up settle before the window.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let scraper = args.scrape_every_ms.map(|ms| {
        let targets = cluster.local.nodes.values().map(|n| n.metrics_addr.clone()).collect();
        baton_cluster_tests::prometheus::spawn_scraper(targets, Duration::from_millis(ms))
    });
    let cpu_before = nodes_cpu_ms(&cluster.local);
    let first = sample(&client).await;
    let metrics: Vec<(u64, String)> = (cluster.local.nodes.iter())
        .map(|(id, n)| (*id, n.metrics_addr.clone()))
        .collect();
    let window = Duration::from_secs(args.seconds);
    // The second offsets below count from here: this lines them up with
    // the nodes' logs.
    eprintln!(
        "the window starts at {} ms since the epoch (its seconds count from here)",
        baton_cluster_tests::task_api::now_ms()
    );
    let (rss_during, late, leader_windows) = tokio::join!(
        rss_through(&cluster.local, window),
        LateTicks::read(&metrics, window),
        leader_figures_through(&cluster, window)
    );
    let last = sample(&client).await;
    let scrapes = scraper.map(|(scraper, scrapes)| {
        scraper.abort();
        scrapes.load(std::sync::atomic::Ordering::Relaxed)
    });
    let cpu_used_ms = nodes_cpu_ms(&cluster.local).saturating_sub(cpu_before);
    let status = cluster.status().await.expect("status");
    let rss_after: BTreeMap<u64, u64> = pids(&cluster.local)
        .into_iter()
        .map(|(id, pid)| (id, rss_kib(pid)))
        .collect();
    // Each thread keeps its stack, wasmtime's signal stack and malloc's
    // caches: a node's memory grows with its threads.
    let threads_after: Vec<String> = pids(&cluster.local)
        .into_iter()
        .map(|(id, pid)| format!("node {id}: {}", status_figure(pid, "Threads:")))
        .collect();
    let committed_per_s = (last.ticks - first.ticks) as f64 * 1000.0 / (last.at_ms - first.at_ms) as f64;
    let demand_per_s = args.tasks as f64 * 1000.0 / args.period_ms as f64;
    let mut overdue: Vec<u64> = first.overdue_ms.iter().chain(&last.overdue_ms).copied().collect();
    overdue.sort_unstable();

    let leader_log = std::fs::read_to_string(cluster.local.nodes[&leader].log_path()).unwrap_or_default();
    let snapshot = snapshot_line(&leader_log, "built a snapshot");

    println!("Machine: {}\n", machine());
    println!(
        "{} counter tasks every {} ms on 3 voters and {} worker(s){}; node binary {}, at cluster version {}\n",
        args.tasks,
        args.period_ms,
        args.workers,
        match args.all_on_one_worker {
            true => ", all on the first worker",
            false => "",
        },
        cluster.local.node_binary().display(),
        status.cluster_version
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| tasks added (64 callers) | {:.1} s, {:.0}/s |",
        add_took.as_secs_f64(),
        args.tasks as f64 / add_took.as_secs_f64()
    );
    println!(
        "| every task ticking, from the first add | {:.1} s |",
        all_ticking.as_secs_f64()
    );
    println!("| ticks due per second | {demand_per_s:.0} |");
    match (args.scrape_every_ms, scrapes) {
        (Some(ms), Some(n)) => println!("| every node's /metrics scraped every {ms} ms | {n} scrapes answered |"),
        _ => println!("| /metrics scraped | no |"),
    }
    println!(
        "| ticks committed per second ({} s, from outside) | {committed_per_s:.0} ({:.1} % of the demand) |",
        args.seconds,
        100.0 * committed_per_s / demand_per_s
    );
    println!(
        "| overdue at a random moment, p50 / p99 / max (from outside) | {} / {} / {} ms |",
        quantile(&overdue, 0.5),
        quantile(&overdue, 0.99),
        quantile(&overdue, 1.0)
    );
    if let Some(ticks) = &status.ticks {
        println!(
            "| the leader's figure: committed per second, late p50 / p99 / max | {:.0}/s; {} / {} / {} ms |",
            ticks.committed_per_second, ticks.late_p50_ms, ticks.late_p99_ms, ticks.late_max_ms
        );
    }
    if !leader_windows.is_empty() {
        let mut sorted = leader_windows.clone();
        sorted.sort_unstable();
        let shown: Vec<String> = leader_windows.iter().map(u64::to_string).collect();
        println!(
            "| the leader's late p99 in each 10 s of the window: median, highest (each) | {} ms, {} ms ({} ms) |",
            quantile(&sorted, 0.5),
            quantile(&sorted, 1.0),
            shown.join(", ")
        );
    }
    let window_ms = (last.at_ms - first.at_ms).max(1) as f64;
    println!(
        "| CPU of the nodes over the window: of the machine's cores, per committed tick | {:.0} % of {} cores, {:.0} µs |",
        100.0 * cpu_used_ms as f64 / window_ms / cores() as f64,
        cores(),
        cpu_used_ms as f64 * 1000.0 / (last.ticks - first.ticks).max(1) as f64
    );
    if !args.add_at_once {
        let module_took: Vec<String> = rss_before
            .iter()
            .map(|(id, kib)| {
                let start = rss_start.get(id).copied().unwrap_or(0);
                format!("node {id}: {:.1} MiB", kib.saturating_sub(start) as f64 / 1024.0)
            })
            .collect();
        println!(
            "| memory the compiled module took, before any task (not counted per task below) | {} |",
            module_took.join(", ")
        );
    }
    for (id, after) in &rss_after {
        let before = rss_before.get(id).copied().unwrap_or(0);
        let per_task = |kib: u64| kib.saturating_sub(before) as f64 / args.tasks as f64;
        let during = rss_during.get(id).map_or(&[][..], Vec::as_slice);
        println!(
            "| node {id} resident memory: {}, after, per task (the median and the highest of each second's in the window) | {} MiB, {} MiB, {:.1} KiB ({:.1} / {:.1} KiB) |",
            if args.add_at_once {
                "after the deploy"
            } else {
                "with the module compiled"
            },
            before / 1024,
            after / 1024,
            per_task(*after),
            per_task(quantile(during, 0.5)),
            per_task(quantile(during, 1.0))
        );
    }
    println!("| threads of each node at the end | {} |", threads_after.join(", "));
    match snapshot {
        Some((bytes, ms)) => println!(
            "| the leader's last snapshot: size, build time | {:.1} MB, {ms} ms |",
            bytes as f64 / 1e6
        ),
        None => println!("| the leader's last snapshot | none built in the run |"),
    }
    match late.by_node.is_empty() {
        true => println!(
            "| late tick starts and commits, each node | not read: no node's /metrics answered with the lateness histogram (with --node-binary the nodes have no [metrics] table) |"
        ),
        false => late.rows().iter().for_each(|row| println!("{row}")),
    }
    // The faults last, their rows after the rest: a run that fails in them
    // has printed everything before.
    if let Some(loads) = args.status_page_loads {
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");
        println!(
            "\n### The status page with {} tasks ({loads} loads each, one after another, while the tasks tick)\n",
            args.tasks
        );
        println!("| from | page | p50 ms | p99 ms | max ms | size |");
        println!("|---|---|---|---|---|---|");
        time_status_page(&cluster, &client, leader, "leader", loads).await;
        time_status_page(&cluster, &client, follower, "follower", loads).await;
    }
    if !args.no_faults {
        if args.all_on_one_worker {
            for voter in 1..=3 {
                set_drained(&client, voter, false).await;
            }
        }
        let f = kill_and_join(&mut cluster, &client, leader, &mut next_id).await;
        println!(
            "| kill -9 of worker {}: its {} tasks all ticking elsewhere (looked every {:.1} s) | {:.2} s |",
            f.killed,
            f.moved,
            list_every.as_secs_f64(),
            f.moved_in.as_secs_f64()
        );
        println!("| the leader's reassignment | {} |", f.reassign_write);
        println!(
            "| a new worker joins: `nodes add` to applied | {:.2} s |",
            f.join_took.as_secs_f64()
        );
        match &f.installed {
            Some((bytes, ms)) => println!(
                "| the new worker's snapshot: size, install time | {:.1} MB, {ms} ms |",
                *bytes as f64 / 1e6
            ),
            None => println!("| the new worker's snapshot | none: it caught up by the log |"),
        }
    }
}

/// The size and time of the last snapshot a node's log says it `did`
/// ("built a snapshot", "installed a snapshot").
fn snapshot_line(log: &str, did: &str) -> Option<(u64, u64)> {
    log.lines().rev().find(|l| l.contains(did)).map(|l| {
        let bytes = logged_bytes(l, did).first().copied().unwrap_or(0) as u64;
        let ms = l
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ms="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        (bytes, ms)
    })
}

struct Faults {
    killed: u64,
    moved: usize,
    moved_in: Duration,
    reassign_write: String,
    join_took: Duration,
    /// The snapshot the new worker installed, if it joined by one: bytes, ms.
    installed: Option<(u64, u64)>,
}

/// Adds worker `id`; returns how long `nodes add` took until the worker had
/// applied a write made just before.
async fn join(cluster: &mut TestCluster, client: &ClusterClient, id: u64) -> Duration {
    let marker = format!("before-{id}");
    cluster
        .put(client, &marker, "x")
        .await
        .expect("a write before the join");
    cluster.join_worker(client, id, &marker).await
}

async fn kill_and_join(cluster: &mut TestCluster, client: &ClusterClient, leader: u64, next_id: &mut u64) -> Faults {
    let all = tasks(client).await;
    let worker = (4..*next_id)
        .max_by_key(|id| owned_by(&all, *id).len())
        .expect("a worker");
    let moved = owned_by(&all, worker);
    let leader_log = cluster.local.nodes[&leader].log_path();
    let logged_before = std::fs::metadata(&leader_log).map_or(0, |m| m.len() as usize);
    let killed_at = now_ms();
    let started = Instant::now();
    cluster.kill9(worker);
    // Each look lists every task, which costs the leader much at scale.
    poll_every(
        list_interval(all.len()),
        Duration::from_secs(300),
        "the killed worker's tasks to tick elsewhere",
        || async {
            let now: BTreeMap<String, TaskInfo> =
                tasks(client).await.into_iter().map(|t| (t.name.clone(), t)).collect();
            moved
                .iter()
                .all(|name| {
                    now.get(name)
                        .is_some_and(|t| t.owner != worker && t.last_tick_at_ms.is_some_and(|at| at > killed_at))
                })
                .then_some(())
        },
    )
    .await;
    let moved_in = started.elapsed();
    // The largest reassignment the leader logged after the kill (placing
    // new tasks logs the same line, before it).
    let log = std::fs::read_to_string(&leader_log).unwrap_or_default();
    let reassigned = |l: &&str| -> usize {
        let count = l.split("reassigned ").nth(1).and_then(|r| r.split(' ').next());
        count.and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let reassign_write = log
        .get(logged_before..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("task(s)"))
        .max_by_key(reassigned)
        .filter(|l| reassigned(l) > 0)
        .and_then(|l| l.split("reassigned").nth(1))
        .map(|l| format!("reassigned{l}"))
        .unwrap_or_else(|| "(not logged)".into());
    let id = *next_id;
    *next_id += 1;
    let join_took = join(cluster, client, id).await;
    let joiner_log = std::fs::read_to_string(cluster.local.nodes[&id].log_path()).unwrap_or_default();
    let installed = snapshot_line(&joiner_log, "installed a snapshot");
    Faults {
        installed,
        killed: worker,
        moved: moved.len(),
        moved_in,
        reassign_write,
        join_took,
    }
}
