//! `baton-node --config FILE`: runs one Baton node until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// A Baton node: keeps background tasks running across machines.
#[derive(Parser)]
#[command(name = "baton-node", version)]
struct Args {
    /// The node's TOML config file.
    #[arg(long, short, required_unless_present = "describe")]
    config: Option<PathBuf>,
    /// Print this binary's release and the cluster versions it supports, as
    /// JSON, and exit (`batonctl upgrade` reads it).
    #[arg(long, conflicts_with = "check")]
    describe: bool,
    /// Validate the config and exit.
    #[arg(long)]
    check: bool,
    /// How to write log lines to stderr: text, or one JSON object a line.
    #[arg(long, env = "BATON_LOG_FORMAT", value_enum, default_value_t)]
    log_format: baton_node::process::LogFormat,
}

fn main() -> ExitCode {
    // SAFETY: the first thing in main; no other thread has started.
    unsafe { baton_node::malloc::configure() };
    let args = Args::parse();
    if args.describe {
        println!(
            "{}",
            serde_json::to_string(&baton_node::state::cluster_version::ReleaseDescription::this_release())
                .expect("serializes")
        );
        return ExitCode::SUCCESS;
    }
    let Some(config_path) = args.config else {
        eprintln!("error: --config FILE is required");
        return ExitCode::from(2);
    };
    baton_node::process::init_logging("info,openraft=warn", args.log_format);
    baton_node::tls::install_crypto_provider();

    let config = match baton_node::process::load_config(&config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if args.check {
        println!(
            "{}: ok (node {}, cluster {})",
            config_path.display(),
            config.id,
            config.cluster_id()
        );
        return ExitCode::SUCCESS;
    }
    match baton_node::process::run_until_signal(|shutdown| baton_node::run(config, shutdown)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
