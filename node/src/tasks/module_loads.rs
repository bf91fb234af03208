//! The module a task's worker needs, looked for by one worker at a time on
//! this node, while the others wait without a thread.
//!
//! Looking for a module (reading its file, compiling it) blocks, so it runs
//! on tokio's blocking pool. When a node takes on thousands of tasks of a
//! module it has not loaded yet, their workers all ask at once: each used to
//! take a blocking thread of its own to wait for the compile, or to find the
//! bytes not yet fetched, every 100 ms. The pool grew to hundreds of threads
//! (369 on a node running 2,500 tasks), and it never shrank: tokio keeps a
//! thread for as long as it is used every 10 s, and the ticks that followed,
//! handed to whichever idle thread was next, used them all in turn. Each kept
//! its stack, wasmtime's signal stack and its malloc caches: about 30 MiB on
//! such a node. Here the workers wait on an async gate per module, and one of
//! them at a time looks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long workers wait after a look found a module's bytes missing
/// before the next look (the fetcher brings them meanwhile).
pub const MISSING_POLL: Duration = Duration::from_millis(100);

/// What one look for a module found.
pub enum Look<T> {
    Loaded(T),
    /// This node does not have the module's bytes yet.
    Missing,
    /// The module is here and does not load.
    Failed(String),
}

/// Per-module gates for the workers looking for modules. One per node.
#[derive(Default)]
pub struct ModuleLoads {
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Gate>>>>,
}

#[derive(Default)]
struct Gate {
    /// When the last look found the module's bytes missing.
    missing_at: Option<Instant>,
}

impl ModuleLoads {
    /// Module `hash`: `loaded` if that has it (no thread, no gate), else what
    /// `look` finds, run on a blocking thread by one caller at a time, and
    /// again no sooner than [`MISSING_POLL`] after a look found it missing.
    /// Waits while the module is missing; returns why it does not load, if
    /// it does not.
    pub async fn load<T: Send + 'static>(
        &self,
        hash: &str,
        loaded: impl Fn() -> Option<T>,
        look: impl Fn() -> Look<T> + Clone + Send + 'static,
    ) -> Result<T, String> {
        loop {
            if let Some(module) = loaded() {
                return Ok(module);
            }
            let gate = self.gate(hash);
            let mut held = gate.clone().lock_owned().await;
            if let Some(module) = loaded() {
                self.forget(hash, &gate);
                return Ok(module);
            }
            // Another worker looked a moment ago and found nothing.
            let since = held.missing_at.map(|at| at.elapsed());
            if let Some(wait) = since.and_then(|since| MISSING_POLL.checked_sub(since)) {
                drop(held);
                tokio::time::sleep(wait).await;
                continue;
            }
            let look = look.clone();
            let found = tokio::task::spawn_blocking(look)
                .await
                .unwrap_or_else(|e| Look::Failed(format!("loading it failed: {e}")));
            match found {
                Look::Loaded(module) => {
                    drop(held);
                    self.forget(hash, &gate);
                    return Ok(module);
                }
                Look::Failed(e) => {
                    held.missing_at = None;
                    return Err(e);
                }
                Look::Missing => {
                    held.missing_at = Some(Instant::now());
                    drop(held);
                    tokio::time::sleep(MISSING_POLL).await;
                }
            }
        }
    }

    fn gate(&self, hash: &str) -> Arc<tokio::sync::Mutex<Gate>> {
        self.gates
            .lock()
            .expect("module gates poisoned")
            .entry(hash.to_string())
            .or_default()
            .clone()
    }

    /// Takes out the gate of a loaded module: later callers find it loaded
    /// without one, and those still waiting on it find it loaded too.
    fn forget(&self, hash: &str, gate: &Arc<tokio::sync::Mutex<Gate>>) {
        let mut gates = self.gates.lock().expect("module gates poisoned");
        if gates.get(hash).is_some_and(|held| Arc::ptr_eq(held, gate)) {
            gates.remove(hash);
        }
    }

    /// Modules with a gate: being looked for, or that did not load.
    #[cfg(test)]
    fn gated(&self) -> usize {
        self.gates.lock().expect("module gates poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Counts looks, and the most that ran at once.
    #[derive(Default)]
    struct Looks {
        running: AtomicUsize,
        most_at_once: AtomicUsize,
        total: AtomicUsize,
    }

    impl Looks {
        fn look(&self, stored: &AtomicBool, loaded: &Mutex<Option<u32>>) -> Look<u32> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            self.total.fetch_add(1, Ordering::SeqCst);
            // A read and a compile take a while.
            std::thread::sleep(Duration::from_millis(5));
            let found = if stored.load(Ordering::SeqCst) {
                *loaded.lock().unwrap() = Some(7);
                Look::Loaded(7)
            } else {
                Look::Missing
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            found
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_workers_waiting_for_a_module_look_one_at_a_time_and_once_per_poll() {
        let loads = Arc::new(ModuleLoads::default());
        let looks = Arc::new(Looks::default());
        let stored = Arc::new(AtomicBool::new(false));
        let loaded = Arc::new(Mutex::new(None));
        let workers: Vec<_> = (0..300)
            .map(|_| {
                let (loads, looks, stored, loaded) = (loads.clone(), looks.clone(), stored.clone(), loaded.clone());
                tokio::spawn(async move {
                    let cached = loaded.clone();
                    loads
                        .load(
                            "m",
                            move || *cached.lock().unwrap(),
                            move || looks.look(&stored, &loaded),
                        )
                        .await
                })
            })
            .collect();
        // The fetcher brings the bytes after a few polls.
        tokio::time::sleep(MISSING_POLL * 4).await;
        stored.store(true, Ordering::SeqCst);
        for worker in workers {
            assert_eq!(worker.await.unwrap(), Ok(7));
        }
        assert_eq!(looks.most_at_once.load(Ordering::SeqCst), 1, "one look at a time");
        // About one look per poll while missing, and one that loads: not
        // one per worker per poll (1,200 and more).
        let total = looks.total.load(Ordering::SeqCst);
        assert!((2..=12).contains(&total), "{total} looks");
        assert_eq!(loads.gated(), 0, "a loaded module keeps no gate");
    }

    #[tokio::test]
    async fn a_loaded_module_needs_no_look_and_a_failure_is_said() {
        let loads = ModuleLoads::default();
        let loaded = loads
            .load(
                "m",
                || Some(1),
                || -> Look<u32> { panic!("no look for a loaded module") },
            )
            .await;
        assert_eq!(loaded, Ok(1));
        assert_eq!(loads.gated(), 0);
        let failed = loads
            .load("bad", || None, || Look::<u32>::Failed("not a component".into()))
            .await;
        assert_eq!(failed, Err("not a component".to_string()));
        // The next caller looks again (the worker waits a while first).
        let again = loads.load("bad", || None, || Look::Loaded(2)).await;
        assert_eq!(again, Ok(2));
        assert_eq!(loads.gated(), 0);
    }
}
