//! `baton-python-bench`: what a task written in Python costs against the
//! same task in Rust, in process, on one engine:
//!
//! - compiling each module cold (no cache), with the process's peak
//!   resident memory during the compile, and the compiled code's size on
//!   disk;
//! - loading it again from the on-disk cache (a node's restart, or its
//!   second engine);
//! - a tick of the `counter` example in Rust and of `counter_py`, in
//!   interleaved rounds, and the process's resident memory after them.
//!
//! Prints Markdown tables. Run from the repository root:
//! `scripts/bench-python.sh`.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_cluster_tests::{example_module, machine, quantile};
use baton_node::runtime::{RuntimeLimits, TaskContext, TaskEngine};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Measures a Python task module against a Rust one")]
struct Args {
    /// Ticks measured for each module, in rounds.
    #[arg(long, default_value_t = 2000)]
    ticks: usize,
    /// Rounds the ticks are interleaved in, so that a busy moment of the
    /// machine falls on both modules alike.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
}

/// A line of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Starts a new peak for `VmHWM` at the current resident size.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() {
    let args = Args::parse();
    let modules = [("counter", "Rust"), ("counter_py", "Python")];
    println!("Machine: {}.\n", machine());

    // Cold compiles, each on an engine of its own with a cache of its own.
    println!(
        "| module | language | size | cold compile | peak RSS growth while compiling | compiled, on disk | load from the cache |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let scratch = tempfile::tempdir().expect("a scratch directory");
    for (name, language) in modules {
        let bytes = example_module(name);
        let cache = scratch.path().join(name);
        let engine = TaskEngine::new(RuntimeLimits::default(), Some(&cache)).expect("an engine");
        let before = status_kib("VmRSS");
        reset_peak();
        let started = Instant::now();
        engine.load(&bytes).expect("compiles");
        let cold = started.elapsed();
        let peak = status_kib("VmHWM").saturating_sub(before);
        drop(engine);
        // The cache is written in the background after a compile.
        let mut on_disk = 0;
        for _ in 0..100 {
            on_disk = dir_bytes(&cache);
            if on_disk > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let engine = TaskEngine::new(RuntimeLimits::default(), Some(&cache)).expect("an engine");
        let started = Instant::now();
        engine.load(&bytes).expect("loads");
        let cached = started.elapsed();
        println!(
            "| {name} | {language} | {:.1} MB | {:.2} s | {} | {:.1} MB | {:.0} ms |",
            bytes.len() as f64 / 1e6,
            cold.as_secs_f64(),
            mib(peak),
            on_disk as f64 / 1e6,
            cached.as_secs_f64() * 1e3
        );
    }

    // Ticks, interleaved.
    let engine = TaskEngine::new(RuntimeLimits::default(), Some(&scratch.path().join("ticks"))).expect("an engine");
    let loaded: Vec<_> = modules
        .iter()
        .map(|(name, _)| engine.load(&example_module(name)).expect("loads"))
        .collect();
    let task = || TaskContext {
        name: "bench".into(),
        ..TaskContext::default()
    };
    let rss_before = status_kib("VmRSS");
    // Warm up: the pool's first instances of each.
    for module in &loaded {
        let mut state = Vec::new();
        for _ in 0..50 {
            state = engine.tick(module, task(), &state).expect("a tick").state;
        }
    }
    let mut samples = vec![Vec::new(); loaded.len()];
    let mut states = vec![Vec::new(); loaded.len()];
    let per_round = args.ticks.div_ceil(args.rounds.max(1));
    for _ in 0..args.rounds.max(1) {
        for (i, module) in loaded.iter().enumerate() {
            for _ in 0..per_round {
                let started = Instant::now();
                states[i] = engine.tick(module, task(), &states[i]).expect("a tick").state;
                samples[i].push(started.elapsed().as_micros() as u64);
            }
        }
    }
    let rss_after = status_kib("VmRSS");
    println!();
    println!(
        "{} ticks of each, in {} rounds; each tick instantiates its module afresh from the pool.\n",
        per_round * args.rounds.max(1),
        args.rounds.max(1)
    );
    println!("| tick | p50 | p99 | mean |");
    println!("| --- | --- | --- | --- |");
    let mut p50 = Vec::new();
    for ((name, language), samples) in modules.iter().zip(&samples) {
        let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
        println!(
            "| {name} ({language}) | {} µs | {} µs | {mean:.0} µs |",
            quantile(samples, 0.5),
            quantile(samples, 0.99)
        );
        p50.push(quantile(samples, 0.5) as f64);
    }
    println!();
    println!(
        "Python's tick takes {:.1}x Rust's (p50). The process's resident memory went from {} to {} over the ticks.",
        p50[1] / p50[0],
        mib(rss_before),
        mib(rss_after)
    );
}
