//! `baton-node --config FILE`: runs one Baton node until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// A Baton node: keeps background tasks running across machines.
#[derive(Parser)]
#[command(name = "baton-node", version)]
struct Args {
    /// The node's TOML config file.
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the config and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
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
    if args.check {
        println!(
            "{}: ok (node {}, cluster {})",
            args.config.display(),
            config.id,
            config.cluster_id()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Catch SIGTERM and Ctrl-C from here on, so that one arriving during
    // start-up still gets an orderly shutdown.
    let signals = runtime.block_on(async { baton_node::signal::ShutdownSignal::install() });
    let mut signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot catch SIGTERM and SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(baton_node::run(config, async move { signals.recv().await })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
