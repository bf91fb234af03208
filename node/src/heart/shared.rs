//! The heart's ledger shared between the launcher, which writes it, and the
//! gRPC service, whose callers wait on it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::ledger::{Fate, Ledger};

/// A [`Ledger`] behind a lock, with a signal for every change.
pub struct SharedLedger {
    ledger: Mutex<Ledger>,
    changed: watch::Sender<u64>,
}

impl Default for SharedLedger {
    fn default() -> Self {
        SharedLedger {
            ledger: Mutex::new(Ledger::default()),
            changed: watch::channel(0).0,
        }
    }
}

impl SharedLedger {
    /// Changes the ledger and wakes every waiter.
    pub fn update(&self, change: impl FnOnce(&mut Ledger)) {
        change(&mut self.ledger.lock().expect("heart ledger lock poisoned"));
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn fate(&self, incarnation: &str) -> Fate {
        self.ledger
            .lock()
            .expect("heart ledger lock poisoned")
            .fate(incarnation)
    }

    /// The fate of `incarnation` once it is no longer running, or after
    /// `wait` (then `Running`).
    pub async fn await_exit(&self, incarnation: &str, wait: Duration) -> Fate {
        let mut changes = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let fate = self.fate(incarnation);
            if fate != Fate::Running {
                return fate;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.fate(incarnation),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_waiter_learns_of_the_exit_as_it_is_recorded() {
        let shared = Arc::new(SharedLedger::default());
        shared.update(|l| l.started("a"));
        let waiter = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.await_exit("a", Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        shared.update(|l| l.exited("a", "signal 9".into()));
        let fate = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fate, Fate::Exited("signal 9".into()));
    }

    #[tokio::test]
    async fn a_live_process_is_still_running_when_the_wait_ends() {
        let shared = SharedLedger::default();
        shared.update(|l| l.started("a"));
        assert_eq!(shared.await_exit("a", Duration::from_millis(20)).await, Fate::Running);
        assert_eq!(shared.await_exit("b", Duration::from_secs(30)).await, Fate::Unknown);
    }
}
