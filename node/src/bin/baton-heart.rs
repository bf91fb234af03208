//! `baton-heart --config FILE`: the per-machine heart. Starts `baton-node`
//! with the same config, starts it again when it dies, and vouches for its
//! exits so that its tasks can move at once. Stops the node and itself on
//! SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use baton_node::heart::LaunchOptions;
use clap::Parser;

/// The heart of one Baton machine: it supervises the node process.
#[derive(Parser)]
#[command(name = "baton-heart", version)]
struct Args {
    /// The node's TOML config file; it must have a [heart] table.
    #[arg(long, short)]
    config: PathBuf,
    /// The baton-node executable [default: beside baton-heart, else on PATH].
    #[arg(long)]
    node_binary: Option<PathBuf>,
    /// Start the node once and do not start it again when it exits; keep
    /// vouching for that exit until stopped (for test harnesses that
    /// restart nodes themselves).
    #[arg(long)]
    no_restart: bool,
    /// Keep the running node's pid in this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    baton_node::tls::install_crypto_provider();

    let config = match baton_node::config::NodeConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(node_binary) = args.node_binary.clone().or_else(find_node_binary) else {
        eprintln!("error: cannot find baton-node beside baton-heart or on PATH; pass --node-binary");
        return ExitCode::from(2);
    };
    let options = LaunchOptions {
        node_binary,
        config_path: args.config.clone(),
        restart: !args.no_restart,
        pid_file: args.pid_file.clone(),
        // The node's own grace, and a little for its exit.
        stop_grace: config.shutdown_grace() + Duration::from_secs(2),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signals = runtime.block_on(async { baton_node::signal::ShutdownSignal::install() });
    let mut signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot catch SIGTERM and SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(baton_node::heart::run(
        &config,
        options,
        async move { signals.recv().await },
    )) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `baton-node` beside this executable, else on PATH.
fn find_node_binary() -> Option<PathBuf> {
    let name = format!("baton-node{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe().ok()?.parent()?.join(&name);
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    })
}
