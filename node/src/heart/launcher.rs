//! The heart's launcher: starts `baton-node` with a fresh incarnation,
//! records its pid and its exit in the ledger, and starts it again with
//! backoff (unless told not to), until shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::binaries::{Binaries, Running, describe};
use super::ledger::Backoff;
use super::shared::SharedLedger;
use super::slots::Boot;
use super::{BINARY_ENV, HEART_ADDR_ENV, HEART_PID_ENV, INCARNATION_ENV};
use crate::types::now_ms;

/// How the heart runs its node.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The installed `baton-node` executable, run while the heart has no
    /// permanent binary of its own (see `slots`).
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
    /// How the node writes its log lines: as the heart does.
    pub log_format: crate::process::LogFormat,
}

/// Runs the node until `shutdown` resolves, then stops it (SIGTERM, then
/// SIGKILL after the grace). Returns the exit code the heart itself should
/// exit with: the node's, when the heart stopped a running node; 0 when no
/// node was running by then (an earlier exit is in the heart's log).
///
/// The node runs from the binary `binaries` says to boot. A new trial stops
/// the running node and starts the trial binary; a trial process that exits,
/// or is not made permanent by its deadline, is reverted and the permanent
/// binary started again at once.
pub async fn supervise(
    options: &LaunchOptions,
    ledger: Arc<SharedLedger>,
    binaries: Arc<Binaries>,
    shutdown: impl Future<Output = ()>,
) -> i32 {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new();
    let mut changes = binaries.subscribe();
    loop {
        changes.borrow_and_update();
        let (mut boot, path) = {
            let binaries = binaries.clone();
            match tokio::task::spawn_blocking(move || binaries.prepare_boot()).await {
                Ok(chosen) => chosen,
                Err(e) => panic!("checking the node binary panicked: {e}"),
            }
        };
        let incarnation = format!("{:016x}", rand::random::<u64>());
        let started = Instant::now();
        match spawn(&path, boot.label(), options, &incarnation) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                ledger.update(|l| l.started(&incarnation));
                binaries.set_running(Some(Running {
                    boot: boot.clone(),
                    incarnation: incarnation.clone(),
                }));
                write_pid_file(options, pid);
                tracing::info!(
                    "started {} (pid {pid}, incarnation {incarnation})",
                    describe(&boot, &path)
                );
                let ending = watch(
                    &mut child,
                    &mut boot,
                    &incarnation,
                    &binaries,
                    &mut changes,
                    &mut shutdown,
                )
                .await;
                let shutting_down = matches!(ending, Ending::Shutdown);
                let status = match ending {
                    Ending::Exited(status) => status,
                    Ending::Shutdown | Ending::Swap => stop(&mut child, pid, options.stop_grace).await,
                };
                binaries.set_running(None);
                let (code, how) = record_exit(options, &ledger, &incarnation, status);
                if shutting_down {
                    return code;
                }
                if let Boot::Trial(trial) = &boot {
                    let reason = format!(
                        "the trial process exited ({how}) after {:.1} s, before it was made permanent",
                        started.elapsed().as_secs_f64()
                    );
                    binaries.revert_trial(&trial.hash, reason);
                }
                if binaries.boot() != boot {
                    // A swap, or a revert: the next binary starts at once.
                    continue;
                }
            }
            Err(e) => {
                tracing::error!("cannot start {}: {e}", describe(&boot, &path));
                if let Boot::Trial(trial) = &boot {
                    binaries.revert_trial(&trial.hash, format!("the trial binary cannot start: {e}"));
                    continue;
                }
            }
        }
        if !options.restart {
            tracing::warn!("not starting baton-node again (--no-restart); still vouching for its exit");
            loop {
                tokio::select! {
                    _ = &mut shutdown => return 0,
                    _ = changes.changed() => {
                        if matches!(binaries.boot(), Boot::Trial(_)) {
                            break;
                        }
                    }
                }
            }
            continue;
        }
        let wait = backoff.after_exit(started.elapsed());
        tracing::warn!("starting baton-node again in {wait:?}");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => return 0,
        }
    }
}

/// How a node process's watch ended.
enum Ending {
    /// It exited by itself.
    Exited(std::io::Result<ExitStatus>),
    /// The heart is stopping.
    Shutdown,
    /// Another binary is to run: a new trial, or this trial's deadline
    /// passed (and it was reverted).
    Swap,
}

/// Watches the running process until it exits, the heart stops, or another
/// binary is to run. A trial made permanent meanwhile runs on, as
/// permanent.
async fn watch(
    child: &mut Child,
    boot: &mut Boot,
    incarnation: &str,
    binaries: &Binaries,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Ending {
    let started = Instant::now();
    loop {
        let deadline = match &*boot {
            Boot::Trial(trial) => binaries.trial_deadline(&trial.hash),
            _ => None,
        };
        let until_deadline = deadline.map(|d| Duration::from_millis(d.saturating_sub(now_ms())));
        tokio::select! {
            status = child.wait() => return Ending::Exited(status),
            _ = shutdown.as_mut() => return Ending::Shutdown,
            _ = sleep_or_never(until_deadline) => {
                if let Boot::Trial(trial) = &*boot {
                    let reason = format!(
                        "the trial binary ran {:.1} s without being made permanent by its deadline",
                        started.elapsed().as_secs_f64()
                    );
                    binaries.revert_trial(&trial.hash, reason);
                    return Ending::Swap;
                }
            }
            _ = changes.changed() => {
                let now = binaries.boot();
                match (&*boot, &now) {
                    (Boot::Trial(trial), Boot::Permanent(permanent)) if trial == permanent => {
                        *boot = now.clone();
                        binaries.set_running(Some(Running {
                            boot: now,
                            incarnation: incarnation.to_string(),
                        }));
                    }
                    _ if now != *boot => {
                        tracing::info!("stopping the node to run {}", now.label());
                        return Ending::Swap;
                    }
                    _ => {}
                }
            }
        }
    }
}

async fn sleep_or_never(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

fn spawn(binary: &Path, label: &str, options: &LaunchOptions, incarnation: &str) -> std::io::Result<Child> {
    Command::new(binary)
        .env(BINARY_ENV, label)
        .arg("--config")
        .arg(&options.config_path)
        .env(INCARNATION_ENV, incarnation)
        .env(HEART_PID_ENV, std::process::id().to_string())
        .env(HEART_ADDR_ENV, &options.heart_addr)
        .env(crate::process::LOG_FORMAT_ENV, options.log_format.name())
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
) -> (i32, String) {
    let (code, how) = match status {
        Ok(status) => {
            let (how, code) = describe_exit(status);
            tracing::warn!("baton-node (incarnation {incarnation}) exited: {how}");
            ledger.update(|l| l.exited(incarnation, how.clone()));
            (code, how)
        }
        Err(e) => {
            // Not a proof of exit: the process may run on.
            tracing::error!("lost track of baton-node (incarnation {incarnation}): {e}; cannot vouch for it");
            ledger.update(|l| l.lost(incarnation));
            (1, format!("lost track of it: {e}"))
        }
    };
    if let Some(path) = &options.pid_file {
        let _ = std::fs::remove_file(path);
    }
    (code, how)
}

/// How a process ended, and the matching shell exit code.
fn describe_exit(status: ExitStatus) -> (String, i32) {
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
