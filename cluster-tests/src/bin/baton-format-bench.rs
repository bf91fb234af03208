//! The binary formats against the JSON ones, in one run on one machine:
//!
//! - commit throughput and latency of a 3-node cluster of release
//!   `baton-node` processes whose log, snapshots, proposals and
//!   AppendEntries are JSON (every node at `[testing] max_cluster_version =
//!   2`, which keeps the cluster below the binary formats: what the code
//!   wrote before them, byte for byte, as the v1 fixtures pin) beside one
//!   whose cluster rose to the binary formats, alternating JSON, binary,
//!   JSON, binary, ... so that drift on a shared machine hits both alike;
//! - the size of a snapshot of 10,000 counter tasks in each encoding (JSON;
//!   binary with tick histories as records; binary with histories as
//!   deltas, from cluster version 12), after 1, 120 and 256 ticks each, and
//!   how long it takes to encode and decode (`--rounds 0` prints this alone).
//!
//! Run it with `scripts/bench-formats.sh`; see BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_cluster_tests::load::{Phase, put_load};
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::codec::format::{Format, decode_state, encode_state};
use baton_node::config::TimingConfig;
use baton_node::state::cluster::{ClusterState, Rules};
use baton_node::state::cluster_version::{BINARY_FORMATS, COMPACT_HISTORY, ClusterVersion, VersionRange};
use baton_node::state::tasks::{Assignment, CatchUp, RestartPolicy, Schedule, TaskSpec, TickCommit};
use baton_node::types::{Command, ModuleVersion};
use batonctl::cmd::status::fetch;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Commit throughput and snapshot size, JSON formats against binary, in one run")]
struct Args {
    /// Seconds of load per phase.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Rounds; each runs a JSON cluster, then a binary one (0: the
    /// snapshots' table alone).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Concurrent clients in the second phase of each run.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Tasks in the snapshot.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
}

/// The phases of one cluster run: (clients, value bytes) and what it did.
struct Run {
    format: Format,
    phases: Vec<Phase>,
}

const LOADS: [(usize, usize); 3] = [(1, 16), (0, 16), (0, 1024)];

async fn run(format: Format, args: &Args) -> Run {
    let extra = match format {
        // Below the binary formats: the cluster writes JSON throughout.
        Format::Json => format!("[testing]\nmax_cluster_version = {}\n", BINARY_FORMATS - 1),
        Format::Binary => String::new(),
    };
    let cluster = Arc::new(TestCluster::start_with_config(3, TimingConfig::default(), &extra).await);
    let client = cluster.client();
    let expected = match format {
        Format::Json => BINARY_FORMATS - 1,
        Format::Binary => VersionRange::SUPPORTED.max,
    };
    poll_async(Duration::from_secs(30), "the cluster version to settle", || async {
        (fetch(&client).await.ok()?.cluster_version == expected).then_some(())
    })
    .await;
    let mut phases = Vec::new();
    for (clients, value_bytes) in LOADS {
        let clients = if clients == 0 { args.clients } else { clients };
        phases.push(put_load(&cluster, "", clients, value_bytes, 1000, args.seconds).await);
    }
    Run { format, phases }
}

fn name(format: Format) -> &'static str {
    match format {
        Format::Json => "JSON (before)",
        Format::Binary => "binary",
    }
}

/// A state of `tasks` counter tasks, each ticked `ticks` times (its
/// history keeps the last 256).
fn counters(tasks: usize, ticks: u64) -> ClusterState {
    let mut state = ClusterState::default();
    let module = ModuleVersion {
        name: "counter".into(),
        version: 1,
        hash: "ab".repeat(32),
        size: 120_000,
        migrates: false,
        down_to: Vec::new(),
        deployed_at_ms: 1_790_000_000_000,
        signer: "cd".repeat(32),
        signature: "ef".repeat(64),
    };
    state.apply(&Command::DeployModule(module), &Rules::FENCED);
    for i in 0..tasks {
        let name = format!("counter-{i:05}");
        let spec = TaskSpec {
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
        };
        state.apply(&Command::AddTask(spec), &Rules::FENCED);
        let owner = (i % 3) as u64 + 1;
        let assign = Command::AssignOwners(vec![Assignment {
            task: name.clone(),
            owner: Some(owner),
            expected_epoch: 0,
        }]);
        state.apply(&assign, &Rules::FENCED);
        for tick in 1..=ticks {
            let at = 1_790_000_000_000 + tick * 1000;
            let commit = TickCommit {
                task: name.clone(),
                epoch: 1,
                tick,
                node: owner,
                state: tick.to_le_bytes().to_vec(),
                next_due_ms: at + 1000,
                committed_at_ms: at,
                version: 1,
            };
            state.apply(&Command::CommitTick(commit), &Rules::FENCED);
        }
    }
    state
}

/// The encodings a snapshot's table compares: JSON (below the binary
/// formats), binary with tick histories as records (below
/// `COMPACT_HISTORY`), and binary with histories as deltas.
const SNAPSHOT_ENCODINGS: [ClusterVersion; 3] = [1, BINARY_FORMATS, COMPACT_HISTORY];

fn snapshot_rows(tasks: usize) -> Vec<String> {
    let mut rows = Vec::new();
    for ticks in [1, 120, 256] {
        let mut state = counters(tasks, ticks);
        let mut cells = Vec::new();
        for version in SNAPSHOT_ENCODINGS {
            state.cluster_version = version;
            let started = Instant::now();
            let bytes = encode_state(&state).expect("encode");
            let encode = started.elapsed();
            let started = Instant::now();
            let decoded = decode_state(&bytes).expect("decode");
            let decode = started.elapsed();
            assert_eq!(decoded, state, "a snapshot reads back as it was");
            cells.push((bytes.len(), encode, decode));
        }
        let mib = |bytes: usize| format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64);
        let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e3);
        let all =
            |f: &dyn Fn(&(usize, Duration, Duration)) -> String| cells.iter().map(f).collect::<Vec<_>>().join(" / ");
        rows.push(format!(
            "| {tasks} counters, {ticks} tick(s) each | {} | {} | {} | {:.1}x / {:.1}x | {} ms | {} ms |",
            mib(cells[0].0),
            mib(cells[1].0),
            mib(cells[2].0),
            cells[0].0 as f64 / cells[1].0 as f64,
            cells[1].0 as f64 / cells[2].0 as f64,
            all(&|c| ms(c.1)),
            all(&|c| ms(c.2)),
        ));
    }
    rows
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    baton_node::tls::install_crypto_provider();

    let mut runs = Vec::new();
    for round in 0..args.rounds {
        for format in [Format::Json, Format::Binary] {
            eprintln!("round {}: {} cluster", round + 1, name(format));
            runs.push(run(format, &args).await);
        }
    }
    eprintln!("snapshot sizes...");
    let snapshots = snapshot_rows(args.tasks);

    println!("Machine: {}\n", baton_cluster_tests::machine());
    // `--rounds 0`: the snapshots' table alone.
    if !runs.is_empty() {
        println!("| run | formats | clients | value | commits/s | p50 | p99 | max | errors |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (i, run) in runs.iter().enumerate() {
            for phase in &run.phases {
                println!(
                    "| {} | {} | {} | {} B | {} |",
                    i + 1,
                    name(run.format),
                    phase.clients,
                    phase.value_bytes,
                    phase.cells()
                );
            }
        }
        println!("\nMean over the runs, binary against JSON:\n");
        println!("| clients | value | JSON commits/s | binary commits/s | binary / JSON | JSON p50 | binary p50 |");
        println!("|---|---|---|---|---|---|---|");
        for (p, _) in LOADS.iter().enumerate() {
            let of = |format: Format| -> (f64, f64, usize, usize) {
                let phases: Vec<&Phase> = runs
                    .iter()
                    .filter(|r| r.format == format)
                    .map(|r| &r.phases[p])
                    .collect();
                let n = phases.len() as f64;
                let rate = phases.iter().map(|p| p.per_second()).sum::<f64>() / n;
                let p50 = phases
                    .iter()
                    .map(|p| p.latency_us.value_at_quantile(0.5) as f64)
                    .sum::<f64>()
                    / n;
                (rate, p50 / 1000.0, phases[0].clients, phases[0].value_bytes)
            };
            let (json, binary) = (of(Format::Json), of(Format::Binary));
            println!(
                "| {} | {} B | {:.0} | {:.0} | {:.2} | {:.2} ms | {:.2} ms |",
                json.2,
                json.3,
                json.0,
                binary.0,
                binary.0 / json.0,
                json.1,
                binary.1
            );
        }
    }
    println!(
        "\n| snapshot | JSON | binary, histories as records | binary, histories as deltas (cluster version 12) \
         | smaller: records than JSON / deltas than records | encode JSON / records / deltas \
         | decode JSON / records / deltas |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in snapshots {
        println!("{row}");
    }
}
