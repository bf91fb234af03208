//! What Baton's daemons (`baton-node`, `baton-heart`) share around their
//! `run`: logging, a runtime whose shutdown signals are caught from before
//! start-up, and finding a sibling executable.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;

use crate::config::NodeConfig;

/// A future that resolves on the first SIGTERM or Ctrl-C.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The variable that sets `--log-format`; a heart sets it for its node.
pub const LOG_FORMAT_ENV: &str = "BATON_LOG_FORMAT";

/// How the daemons write their log lines (`--log-format`, or the
/// `BATON_LOG_FORMAT` variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text an event, for people.
    #[default]
    Text,
    /// One JSON object a line, for log collectors: `timestamp`, `level`,
    /// `target`, `message`, and the event's fields (`task`, `node`, ...)
    /// beside them.
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Logs to stderr, filtered by `BATON_LOG` (else `default_filter`), as
/// `format` says; text in colour only on a terminal.
pub fn init_logging(default_filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logger.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logger.json().flatten_event(true).with_current_span(false).init(),
    }
}

/// Loads and validates the config at `path` before anything binds; on a
/// problem, prints it and gives the exit code for bad config (2).
pub fn load_config(path: &Path) -> Result<NodeConfig, ExitCode> {
    NodeConfig::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Starts a multi-thread runtime, catches SIGTERM and SIGINT from then on
/// (so that one arriving during start-up still gets an orderly shutdown),
/// and runs `main` with the future that resolves on the first of them.
/// Says why on failure to start either.
pub fn run_until_signal<F: Future>(main: impl FnOnce(Shutdown) -> F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut signals = runtime
        .block_on(async { crate::signal::ShutdownSignal::install() })
        .map_err(|e| format!("cannot catch SIGTERM and SIGINT: {e}"))?;
    let shutdown: Shutdown = Box::pin(async move { signals.recv().await });
    Ok(runtime.block_on(main(shutdown)))
}

/// The executable `name` beside the running one, in the directory above it
/// (cargo puts test binaries in `deps/`), or on PATH.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join(&name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    })
}
