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
    /// How to write log lines to stderr: text, or one JSON object a line.
    /// Set as `BATON_LOG_FORMAT`, the node it starts writes the same.
    #[arg(long, env = "BATON_LOG_FORMAT", value_enum, default_value_t)]
    log_format: baton_node::process::LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    baton_node::process::init_logging("info", args.log_format);
    baton_node::tls::install_crypto_provider();

    let config = match baton_node::process::load_config(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let node_binary = args
        .node_binary
        .clone()
        .or_else(|| baton_node::process::find_executable("baton-node"));
    let Some(node_binary) = node_binary else {
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
        heart_addr: String::new(),
        log_format: args.log_format,
    };
    match baton_node::process::run_until_signal(|shutdown| baton_node::heart::run(&config, options, shutdown)) {
        Ok(Ok(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Ok(Err(e)) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
