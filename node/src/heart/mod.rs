//! The heart (`baton-heart`): a small per-machine supervisor, after Erlang's
//! `heart`. It starts `baton-node`, starts it again with backoff when it
//! dies, vouches for its exit, and swaps its binary.
//!
//! The swap is what a rolling upgrade stands on. The heart keeps node
//! binaries by content hash, each signed by a key in `[heart]
//! trusted_keys`, with a permanent and a trial slot (`slots`). Trying a
//! binary stops the node and starts the trial binary once; unless the trial
//! is made permanent before its deadline, the heart stops it (if it still
//! runs) and boots the permanent binary again, so a binary that crashes at
//! start, hangs, or never passes its health gate cannot keep the machine
//! down. The heart checks a binary's hash and signature before every start,
//! and a heart that restarts mid-trial reverts the trial. Without a
//! permanent binary it boots its installed one (`--node-binary`). It is
//! never upgraded in the same step as its node.
//!
//! The vouching is what makes the crash fast path safe. When a node's
//! heartbeat stream breaks, the leader (or, for a leader, its followers)
//! would like to move its tasks at once rather than after its lease; but a
//! refused or reset connection is no proof that the process is gone: a
//! firewall's REJECT rule, a rejecting network policy or another process on
//! the address answers the same way for a live node, which would then tick
//! on while its tasks start elsewhere. The heart is the parent of the node
//! process: when `waitpid` has returned, the process can no longer run a
//! tick, start a call or lead (bytes its kernel had already sent may still
//! arrive; a task's calls are closed with a reset, which discards what is
//! unsent, and the fencing token covers the rest). The heart passes each
//! process its own pid too (`BATON_HEART_PID`), and the node takes the
//! incarnation only if the heart is its parent: a wrapper that forks in
//! between would be reaped while the node ran on. So the node tells its peers where its heart
//! listens (with every heartbeat), the heart passes each process it starts
//! a fresh incarnation (`BATON_INCARNATION`), and a peer asks the heart
//! `AwaitExit(incarnation)`; only "exited" moves tasks early. A heart that
//! cannot be reached, or that did not start that incarnation, proves
//! nothing, and the lease decides.
//!
//! The heart serves with its node's own certificate, so the caller checks
//! that it speaks to the heart of the node it asks about.
//!
//! # Layout
//!
//! - `ledger`: the incarnations started and how each ended; the restart
//!   backoff (pure).
//! - `slots`: the permanent and trial binaries, and the rules of a trial
//!   (pure).
//! - `binary_store`: binaries by hash with their signatures, and the slots
//!   record, on disk.
//! - `binaries`: the store, the slots and the running binary as one handle.
//! - `binaries_service`: the `HeartBinaries` gRPC service (stage, try,
//!   make permanent, status).
//! - `shared`: the ledger shared with waiting callers.
//! - `launcher`: starting, reaping and restarting the node.
//! - `service`: the `Heart` gRPC service.
//! - `client`: how a peer asks a heart.
//! - `run`: binding the port and running it all until shutdown.

mod binaries;
mod binaries_service;
mod binary_store;
mod client;
mod config;
mod launcher;
mod ledger;
mod run;
mod service;
mod shared;
mod slots;

pub use binaries::MAX_TRIAL;
pub use binary_store::{MAX_BINARY_BYTES, SignedBinary, StoreError, hash_reader};
pub use client::ask_exit;
pub use config::HeartConfig;
pub use launcher::LaunchOptions;
pub use run::{HeartError, run};
pub use shared::SharedLedger;

/// The environment variable through which a heart tells the node process
/// it starts its incarnation.
pub const INCARNATION_ENV: &str = "BATON_INCARNATION";

/// The environment variable through which a heart tells the node process
/// its own pid: the node takes the incarnation only if that is its parent.
pub const HEART_PID_ENV: &str = "BATON_HEART_PID";

/// The environment variable through which a heart tells the node process
/// the address peers reach it at (its `advertise_addr`, or the address it
/// bound, which may have been port 0).
pub const HEART_ADDR_ENV: &str = "BATON_HEART_ADDR";

/// The environment variable through which a heart tells the node process
/// which binary it started: a hash from its store, or "installed".
pub const BINARY_ENV: &str = "BATON_BINARY";

/// The binary this process runs, as the heart that started it said
/// ("installed", or a hash of its store); empty without a heart.
pub fn running_binary(heart_addr: &Option<String>) -> String {
    match heart_addr {
        Some(_) => std::env::var(BINARY_ENV)
            .ok()
            .filter(|b| b.len() <= 64 && b.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// This process's incarnation, and the address of the heart that started it
/// (if one did). The heart's incarnation counts only when the heart is this
/// process's parent, which alone can reap it: a node started through a
/// wrapper that forks (a shell script without `exec`, `sudo`, `timeout`),
/// or by hand with the variables inherited, would otherwise run on after
/// its heart vouched for an exit. Otherwise a fresh incarnation, and no
/// heart: the lease decides.
pub fn incarnation_and_heart(config: &crate::config::NodeConfig) -> (String, Option<String>) {
    let given = std::env::var(INCARNATION_ENV).ok();
    let heart_pid = std::env::var(HEART_PID_ENV).ok().and_then(|p| p.parse::<i32>().ok());
    let parent = nix::unistd::getppid().as_raw();
    // The heart's own word on its address; else the config's.
    let heart_addr = std::env::var(HEART_ADDR_ENV)
        .ok()
        .or_else(|| config.heart.as_ref().map(|h| h.advertised().to_string()));
    let heart_addr_known = heart_addr.is_some();
    let parent_is = ParentIs {
        pid: parent,
        heart_as_init: parent == 1 && init_is_a_heart(),
    };
    match decide_incarnation(given, heart_pid, parent_is, heart_addr) {
        Some((incarnation, heart)) => {
            die_with_parent(parent);
            (incarnation, Some(heart))
        }
        None => {
            if let Some(pid) = heart_pid.filter(|&pid| pid != parent && pid > 0)
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
            {
                // The heart that started this process died before it could
                // be tied to it; the restarted heart starts the node again.
                heart_gone();
            }
            if std::env::var_os(INCARNATION_ENV).is_some() {
                tracing::warn!(
                    heart_pid = ?heart_pid,
                    parent,
                    heart_addr_known,
                    "{INCARNATION_ENV} is set, but the heart that set it is not this process's parent \
                     (started through a wrapper that forks, or by hand?); no heart can vouch for this process"
                );
            }
            (format!("{:016x}", rand::random::<u64>()), None)
        }
    }
}

/// Ties this process's life to its heart's: the kernel kills it (SIGKILL)
/// when the heart exits. A node that outlived a heart killed by force
/// would run on unvouched, beside the node that the restarted heart starts
/// on the same data, and hold its database. If the heart has already gone,
/// this process exits at once.
fn die_with_parent(heart_pid: i32) {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!("cannot tie this process to its heart (prctl: {e}); it would outlive a killed heart");
    }
    if nix::unistd::getppid().as_raw() != heart_pid {
        heart_gone();
    }
}

fn heart_gone() -> ! {
    eprintln!("error: the heart that started this node exited as it started; the restarted heart starts it again");
    std::process::exit(1);
}

/// This process's parent: its pid, and whether it is init (pid 1) and that
/// init is a heart (a container whose first process is `baton-heart`).
#[derive(Debug, Clone, Copy)]
struct ParentIs {
    pid: i32,
    heart_as_init: bool,
}

/// Whether this pid namespace's init is `baton-heart`.
fn init_is_a_heart() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|comm| comm.trim() == "baton-heart")
}

/// The heart's incarnation and address, if the heart that gave them is the
/// parent, its address is known and the incarnation is sane. Init (pid 1)
/// counts only when it is a heart itself: a node whose heart died is
/// reparented to init, which must not pass for its heart.
fn decide_incarnation(
    given: Option<String>,
    heart_pid: Option<i32>,
    parent: ParentIs,
    heart_addr: Option<String>,
) -> Option<(String, String)> {
    let incarnation =
        given.filter(|i| !i.is_empty() && i.len() <= 64 && i.chars().all(|c| c.is_ascii_alphanumeric()))?;
    let heart_addr = heart_addr.filter(|a| !a.is_empty())?;
    let parent_ok = parent.pid > 1 || (parent.pid == 1 && parent.heart_as_init);
    (heart_pid? == parent.pid && parent_ok).then_some((incarnation, heart_addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heart() -> Option<String> {
        Some("127.0.0.1:7101".into())
    }

    #[test]
    fn the_incarnation_counts_only_from_a_heart_that_is_the_parent() {
        let given = || Some("0123456789abcdef".to_string());
        let parent = |pid| ParentIs {
            pid,
            heart_as_init: false,
        };
        assert_eq!(
            decide_incarnation(given(), Some(40), parent(40), heart()),
            Some(("0123456789abcdef".into(), "127.0.0.1:7101".into()))
        );
        // A wrapper in between, or the variables inherited by hand.
        assert_eq!(decide_incarnation(given(), Some(40), parent(41), heart()), None);
        assert_eq!(decide_incarnation(given(), None, parent(40), heart()), None);
        // No heart in the config, or no sane incarnation.
        assert_eq!(decide_incarnation(given(), Some(40), parent(40), None), None);
        assert_eq!(
            decide_incarnation(Some("a b".into()), Some(40), parent(40), heart()),
            None
        );
        assert_eq!(decide_incarnation(None, Some(40), parent(40), heart()), None);
    }

    #[test]
    fn init_counts_as_the_heart_only_when_init_is_a_heart() {
        let given = || Some("0123456789abcdef".to_string());
        // Reparented to init after the heart died: init is no heart.
        let plain_init = ParentIs {
            pid: 1,
            heart_as_init: false,
        };
        assert_eq!(decide_incarnation(given(), Some(1), plain_init, heart()), None);
        // A container whose first process is the heart.
        let heart_init = ParentIs {
            pid: 1,
            heart_as_init: true,
        };
        assert!(decide_incarnation(given(), Some(1), heart_init, heart()).is_some());
        assert_eq!(decide_incarnation(given(), Some(40), heart_init, heart()), None);
    }
}
