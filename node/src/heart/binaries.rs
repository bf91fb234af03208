//! The heart's binaries as one handle: the store, the slots record, the
//! keys trusted to sign binaries, and which binary the running node process
//! was started from. The launcher and the gRPC service share it; every
//! change to the slots is written to disk before it takes effect, and
//! wakes the launcher.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use tokio::sync::watch;

use super::binary_store::{BinaryStore, StoreError};
use super::slots::{Boot, Revert, SlotError, Slots};
use crate::types::now_ms;

/// The longest a trial may run before it must be made permanent.
pub const MAX_TRIAL: Duration = Duration::from_secs(3600);

/// Why a call on the heart's binaries was refused.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Slot(#[from] SlotError),
    #[error("binary {0} is on trial but its process has not started yet; ask again once it runs")]
    NotRunning(String),
    #[error("a trial's deadline must be 1 ms to {} s", MAX_TRIAL.as_secs())]
    Deadline,
}

/// The node process the heart runs, and what it was started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub boot: Boot,
    pub incarnation: String,
}

/// What the heart can say of its binaries.
#[derive(Debug, Clone)]
pub struct BinariesStatus {
    pub slots: Slots,
    pub running: Option<Running>,
    pub installed: PathBuf,
}

struct State {
    slots: Slots,
    running: Option<Running>,
}

/// See the module docs.
pub struct Binaries {
    store: BinaryStore,
    trusted: Vec<VerifyingKey>,
    installed: PathBuf,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Binaries {
    /// Opens the store in `dir`. A trial found there was interrupted by the
    /// heart's own exit, and is reverted at once.
    /// A record that cannot be read, or a revert that cannot be written,
    /// does not keep the heart from booting a binary: it boots its
    /// installed binary (or reverts in memory) and says why.
    pub fn open(dir: &Path, trusted: Vec<VerifyingKey>, installed: PathBuf) -> Result<Self, StoreError> {
        let store = BinaryStore::open(dir)?;
        let mut slots = store.load_slots().unwrap_or_else(|e| {
            tracing::error!("{e}; booting the installed binary {}", installed.display());
            Slots::default()
        });
        if let Some(revert) = slots.recover(now_ms()) {
            tracing::warn!("reverted the trial of {}: {}", revert.binary, revert.reason);
            if let Err(e) = store.save_slots(&slots) {
                tracing::error!("cannot record the revert: {e}; the permanent binary boots all the same");
            }
        }
        Ok(Binaries {
            store,
            trusted,
            installed,
            state: Mutex::new(State { slots, running: None }),
            changed: watch::channel(0).0,
        })
    }

    pub fn store(&self) -> &BinaryStore {
        &self.store
    }

    pub fn trusted(&self) -> &[VerifyingKey] {
        &self.trusted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("heart binaries lock poisoned")
    }

    /// Wakes on every change to the slots.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What should run now.
    pub fn boot(&self) -> Boot {
        self.lock().slots.boot()
    }

    /// The trial's deadline, if `hash` is still on trial.
    pub fn trial_deadline(&self, hash: &str) -> Option<u64> {
        let state = self.lock();
        let trial = state.slots.trial.as_ref().filter(|t| t.binary.hash == hash)?;
        Some(trial.deadline_unix_ms)
    }

    /// Changes the slots through `change`, durably, and wakes the launcher.
    fn change<T>(&self, change: impl FnOnce(&mut Slots) -> Result<T, SlotError>) -> Result<T, BinariesError> {
        let mut state = self.lock();
        let mut slots = state.slots.clone();
        let value = change(&mut slots)?;
        if slots != state.slots {
            self.store.save_slots(&slots)?;
            state.slots = slots;
            drop(state);
            self.changed.send_modify(|n| *n += 1);
        }
        Ok(value)
    }

    /// What to start next, and its executable, after checking it: a trial
    /// that fails its check is reverted, and a permanent binary that fails
    /// it gives way to the installed one. Reads whole files: call it off
    /// the async threads.
    pub fn prepare_boot(&self) -> (Boot, PathBuf) {
        loop {
            let boot = self.boot();
            let binary = match &boot {
                Boot::Installed => return (boot, self.installed.clone()),
                Boot::Permanent(binary) | Boot::Trial(binary) => binary.clone(),
            };
            let checked = self
                .store
                .check(
                    &binary.hash,
                    matches!(boot, Boot::Trial(_)).then_some(&self.trusted[..]),
                )
                .and_then(|_| self.store.path(&binary.hash));
            match (checked, &boot) {
                (Ok(path), _) => return (boot, path),
                (Err(e), Boot::Trial(_)) => {
                    self.revert_trial(&binary.hash, format!("the trial binary failed its check: {e}"));
                }
                (Err(e), _) => {
                    tracing::error!(
                        "the permanent binary {binary} failed its check: {e}; booting the installed binary {}",
                        self.installed.display()
                    );
                    return (Boot::Installed, self.installed.clone());
                }
            }
        }
    }

    /// The node process now running, or none.
    pub fn set_running(&self, running: Option<Running>) {
        self.lock().running = running;
    }

    /// Puts staged binary `hash` on trial for `deadline`; true if this
    /// started a trial (false: it already was on trial). Checks the binary
    /// first: call it off the async threads.
    pub fn try_binary(&self, hash: &str, deadline: Duration) -> Result<bool, BinariesError> {
        if deadline.is_zero() || deadline > MAX_TRIAL {
            return Err(BinariesError::Deadline);
        }
        let binary = self.store.check(hash, Some(&self.trusted))?;
        let until = now_ms() + u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        let started = self.change(|slots| slots.begin_trial(binary.clone(), until))?;
        if started {
            tracing::info!("trying {binary} for up to {deadline:?}");
        }
        Ok(started)
    }

    /// Makes the running trial binary `hash` permanent; true if it was on
    /// trial (false: it already was permanent).
    pub fn make_permanent(&self, hash: &str) -> Result<bool, BinariesError> {
        let made = {
            // Checked and changed under one lock: a trial process that is
            // exiting is no longer `running` (the launcher clears it as it
            // reaps), so a crashed trial is never made permanent.
            let mut state = self.lock();
            let runs_it = matches!(&state.running, Some(Running { boot: Boot::Trial(b), .. }) if b.hash == hash);
            let on_trial = state.slots.trial.as_ref().is_some_and(|t| t.binary.hash == hash);
            if on_trial && !runs_it {
                return Err(BinariesError::NotRunning(hash.to_string()));
            }
            let mut slots = state.slots.clone();
            let made = slots.make_permanent(hash)?;
            if made {
                self.store.save_slots(&slots)?;
                state.slots = slots;
            }
            made
        };
        if made {
            self.changed.send_modify(|n| *n += 1);
            tracing::info!("made {} permanent", super::slots::short(hash));
            // Binaries neither permanent nor on trial only take room.
            let removed = self.store.remove_all_but(&[hash]);
            if removed > 0 {
                tracing::info!("removed {removed} binary(ies) no longer permanent");
            }
        }
        Ok(made)
    }

    /// Reverts the trial of `hash`, if it is still on trial, for `reason`.
    pub fn revert_trial(&self, hash: &str, reason: String) -> Option<Revert> {
        let on_trial = |slots: &Slots| slots.trial.as_ref().is_some_and(|t| t.binary.hash == hash);
        let revert = self.change(|slots| match on_trial(slots) {
            true => Ok(slots.revert(reason.clone(), now_ms())),
            false => Ok(None),
        });
        match revert {
            Ok(Some(revert)) => {
                tracing::warn!("reverted the trial of {}: {}", revert.binary, revert.reason);
                Some(revert)
            }
            Ok(None) => None,
            Err(e) => {
                // The record could not be written: the trial stays on disk
                // and a restarted heart reverts it (see `Slots::recover`).
                tracing::error!("cannot record the revert of {}: {e}", super::slots::short(hash));
                let mut state = self.lock();
                let revert = on_trial(&state.slots)
                    .then(|| state.slots.revert(reason, now_ms()))
                    .flatten();
                drop(state);
                self.changed.send_modify(|n| *n += 1);
                revert
            }
        }
    }

    pub fn status(&self) -> BinariesStatus {
        let state = self.lock();
        BinariesStatus {
            slots: state.slots.clone(),
            running: state.running.clone(),
            installed: self.installed.clone(),
        }
    }
}

/// A binary's label in logs.
pub fn describe(boot: &Boot, path: &Path) -> String {
    match boot {
        Boot::Installed => format!("the installed binary {}", path.display()),
        Boot::Permanent(b) => format!("the permanent binary {b}"),
        Boot::Trial(b) => format!("the trial binary {b}"),
    }
}
