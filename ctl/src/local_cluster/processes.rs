//! Starting, signalling and stopping a local cluster's nodes, each under a
//! `baton-heart` of its own that keeps its pid in `node.pid`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{LocalCluster, LocalClusterError, find_binary, io_err};

impl LocalCluster {
    /// Starts node `id` under a heart of its own (both log to `node.log`).
    /// A heart from an earlier start is stopped first (and its node, if it
    /// still runs, killed).
    pub fn start(&mut self, id: u64) -> Result<(), LocalClusterError> {
        let (heart_binary, node_binary) = (self.heart_binary.clone(), self.node_binary.clone());
        let node = self.nodes.get_mut(&id).ok_or(LocalClusterError::UnknownNode(id))?;
        if let Some(mut old) = node.heart.take() {
            if let Some(pid) = read_pid(&node.pid_path()) {
                kill_and_await_reap(&node.pid_path(), pid);
            }
            let _ = old.kill();
            let _ = old.wait();
        }
        let log_path = node.log_path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        let log_err = log.try_clone().map_err(io_err(&log_path))?;
        let _ = std::fs::remove_file(node.pid_path());
        let heart = Command::new(&heart_binary)
            .arg("--config")
            .arg(node.config_path())
            .arg("--node-binary")
            .arg(&node_binary)
            .arg("--no-restart")
            .arg("--pid-file")
            .arg(node.pid_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| LocalClusterError::Spawn {
                binary: heart_binary.clone(),
                source,
            })?;
        node.heart = Some(heart);
        node.pid_seen = false;
        node.exit_reported = false;
        Ok(())
    }

    /// The pid of node `id`'s running process, waiting up to 10 s for a
    /// heart just started to start it.
    pub fn node_pid(&mut self, id: u64) -> Option<Pid> {
        let node = self.nodes.get_mut(&id)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = read_pid(&node.pid_path()) {
                node.pid_seen = true;
                return Some(pid);
            }
            let heart_runs = node.heart.as_mut().is_some_and(|h| matches!(h.try_wait(), Ok(None)));
            if node.pid_seen || !heart_runs || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` to node `id`'s process; with SIGKILL, also waits until
    /// its heart has reaped it (and so can vouch for its exit).
    pub fn signal(&mut self, id: u64, signal: Signal) -> Result<(), LocalClusterError> {
        if !self.nodes.contains_key(&id) {
            return Err(LocalClusterError::UnknownNode(id));
        }
        let Some(pid) = self.node_pid(id) else { return Ok(()) };
        match signal {
            Signal::SIGKILL => kill_and_await_reap(&self.nodes[&id].pid_path(), pid),
            _ => {
                let _ = kill(pid, signal);
            }
        }
        Ok(())
    }

    /// Stops node `id` with SIGTERM, waiting up to `grace` before SIGKILL.
    /// Returns whether it exited cleanly (status 0) in time.
    pub fn stop(&mut self, id: u64, grace: Duration) -> Result<bool, LocalClusterError> {
        let node = self.nodes.get_mut(&id).ok_or(LocalClusterError::UnknownNode(id))?;
        let Some(mut heart) = node.heart.take() else {
            return Ok(stop_adopted(&node.pid_path(), grace));
        };
        // The heart passes SIGTERM on, waits for the node and exits as it did
        // (0 if its node had exited before).
        let _ = kill(Pid::from_raw(heart.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let clean = loop {
            match heart.try_wait() {
                Ok(Some(status)) => break status.success(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    if let Some(pid) = read_pid(&node.pid_path()) {
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                    let _ = heart.kill();
                    let _ = heart.wait();
                    break false;
                }
            }
        };
        // A node restarted by hand after its heart's one exited (the tour).
        if node.pid_path().exists() {
            return Ok(stop_adopted(&node.pid_path(), grace) && clean);
        }
        Ok(clean)
    }

    /// Nodes whose process has exited since the last call (their hearts log
    /// how).
    pub fn reap_exited(&mut self) -> Vec<u64> {
        let mut exited = Vec::new();
        for node in self.nodes.values_mut() {
            let Some(heart) = &mut node.heart else { continue };
            let heart_ended = !matches!(heart.try_wait(), Ok(None));
            let pid_file = node.pid_path().exists();
            node.pid_seen |= pid_file;
            if !node.exit_reported && (heart_ended || (node.pid_seen && !pid_file)) {
                node.exit_reported = true;
                exited.push(node.id);
            }
        }
        exited
    }
}

/// Stops a node that was restarted by hand and recorded its pid in
/// `node.pid` (as the dev tour shows). Returns whether it exited in time.
fn stop_adopted(pid_path: &Path, grace: Duration) -> bool {
    let Some(pid) = read_pid(pid_path) else {
        return true;
    };
    if kill(pid, Signal::SIGTERM).is_err() {
        let _ = std::fs::remove_file(pid_path);
        return true;
    }
    let deadline = Instant::now() + grace;
    while kill(pid, None).is_ok() {
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(pid_path);
    true
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut heart) = node.heart.take() {
                if let Some(pid) = read_pid(&node.pid_path()) {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                let _ = heart.kill();
                let _ = heart.wait();
                let _ = std::fs::remove_file(node.pid_path());
            }
        }
    }
}

/// Kills node process `pid` and waits (up to 5 s) until its heart has
/// reaped it, which it shows by removing the pid file (after recording the
/// exit, so that it can vouch for it by then).
fn kill_and_await_reap(pid_path: &Path, pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while read_pid(pid_path) == Some(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The pid in a pid file, if it holds one.
fn read_pid(path: &Path) -> Option<Pid> {
    let pid = std::fs::read_to_string(path).ok()?.trim().parse::<i32>().ok()?;
    Some(Pid::from_raw(pid))
}

/// `baton-heart` beside `node_binary`, else found as `find_node_binary` does.
pub(super) fn heart_binary_beside(node_binary: &Path) -> Result<PathBuf, LocalClusterError> {
    let name = format!("baton-heart{}", std::env::consts::EXE_SUFFIX);
    let beside = node_binary.with_file_name(&name);
    if beside.is_file() {
        return Ok(beside);
    }
    find_binary("baton-heart").ok_or_else(|| LocalClusterError::NoHeartBinary(node_binary.to_path_buf()))
}
