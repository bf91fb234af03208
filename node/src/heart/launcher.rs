//! The heart's launcher: starts `baton-node` with a fresh incarnation,
//! records its pid and its exit in the ledger, and starts it again with
//! backoff (unless told not to), until shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::ledger::Backoff;
use super::shared::SharedLedger;
use super::{HEART_ADDR_ENV, HEART_PID_ENV, INCARNATION_ENV};

/// How the heart runs its node.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The `baton-node` executable.
    pub node_binary: PathBuf,
    /// The config file, passed to the node as `--config`.
    pub config_path: PathBuf,
    /// Start the node again when it exits (with backoff). Without, the heart
    /// starts it once and, after it exits, only vouches for that exit until
    /// it is stopped itself (for harnesses that restart nodes by hand).
    pub restart: bool,
    /// A file that holds the running node's pid, removed once its exit is
    /// recorded.
    pub pid_file: Option<PathBuf>,
    /// How long a node asked to stop (SIGTERM) may take before SIGKILL.
    pub stop_grace: Duration,
    /// Where peers reach the heart, told to the node (set by `run` once it
    /// has bound its port).
    pub heart_addr: String,
}

/// Runs the node until `shutdown` resolves, then stops it (SIGTERM, then
/// SIGKILL after the grace). Returns the exit code the heart itself should
/// exit with: the node's, when the heart stopped a running node; 0 when no
/// node was running by then (an earlier exit is in the heart's log).
pub async fn supervise(options: &LaunchOptions, ledger: Arc<SharedLedger>, shutdown: impl Future<Output = ()>) -> i32 {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new();
    loop {
        let incarnation = format!("{:016x}", rand::random::<u64>());
        let started = Instant::now();
        match spawn(options, &incarnation) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                ledger.update(|l| l.started(&incarnation));
                write_pid_file(options, pid);
                tracing::info!(
                    "started {} (pid {pid}, incarnation {incarnation})",
                    options.node_binary.display()
                );
                let status = tokio::select! {
                    status = child.wait() => status,
                    _ = &mut shutdown => {
                        let status = stop(&mut child, pid, options.stop_grace).await;
                        return record_exit(options, &ledger, &incarnation, status);
                    }
                };
                record_exit(options, &ledger, &incarnation, status);
            }
            Err(e) => tracing::error!("cannot start {}: {e}", options.node_binary.display()),
        }
        if !options.restart {
            tracing::warn!("not starting baton-node again (--no-restart); still vouching for its exit");
            shutdown.await;
            return 0;
        }
        let wait = backoff.after_exit(started.elapsed());
        tracing::warn!("starting baton-node again in {wait:?}");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => return 0,
        }
    }
}

fn spawn(options: &LaunchOptions, incarnation: &str) -> std::io::Result<Child> {
    Command::new(&options.node_binary)
        .arg("--config")
        .arg(&options.config_path)
        .env(INCARNATION_ENV, incarnation)
        .env(HEART_PID_ENV, std::process::id().to_string())
        .env(HEART_ADDR_ENV, &options.heart_addr)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// Records the exit (before the pid file goes, so that whoever sees the
/// file gone can already get the heart's word); returns its exit code.
fn record_exit(
    options: &LaunchOptions,
    ledger: &SharedLedger,
    incarnation: &str,
    status: std::io::Result<ExitStatus>,
) -> i32 {
    let code = match status {
        Ok(status) => {
            let (how, code) = describe(status);
            tracing::warn!("baton-node (incarnation {incarnation}) exited: {how}");
            ledger.update(|l| l.exited(incarnation, how));
            code
        }
        Err(e) => {
            // Not a proof of exit: the process may run on.
            tracing::error!("lost track of baton-node (incarnation {incarnation}): {e}; cannot vouch for it");
            ledger.update(|l| l.lost(incarnation));
            1
        }
    };
    if let Some(path) = &options.pid_file {
        let _ = std::fs::remove_file(path);
    }
    code
}

/// How a process ended, and the matching shell exit code.
fn describe(status: ExitStatus) -> (String, i32) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (format!("exit status {code}"), code),
        (None, Some(signal)) => (format!("signal {signal}"), 128 + signal),
        _ => ("ended".into(), 1),
    }
}

fn write_pid_file(options: &LaunchOptions, pid: u32) {
    if let Some(path) = &options.pid_file
        && let Err(e) = std::fs::write(path, format!("{pid}\n"))
    {
        tracing::warn!("cannot write the pid file {}: {e}", path.display());
    }
}

/// Asks the node to stop (SIGTERM) and waits up to `grace`, then kills it.
async fn stop(child: &mut Child, pid: u32, grace: Duration) -> std::io::Result<ExitStatus> {
    // Pid 0 would signal the heart's own process group.
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!("baton-node did not stop within {grace:?}; killing it");
            let _ = child.kill().await;
            child.wait().await
        }
    }
}
