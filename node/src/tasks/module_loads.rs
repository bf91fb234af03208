//! The module a task's worker needs, looked for by one worker at a time on
//! this node, while the others wait without a thread.
//!
//! Looking for a module (reading its file, compiling it) blocks, so it runs
//! on tokio's blocking pool. When a node takes on thousands of tasks of a
//! module it has not loaded yet, their workers all ask at once: each used to
//! take a blocking thread of its own to wait for the compile, or to find the
//! bytes not yet fetched, every 100 ms. The pool grew to its cap of 512
//! threads on a node running 2,500 tasks, and it never shrank: tokio keeps a
//! thread for as long as it is used every 10 s, and the ticks that followed,
//! handed to the idle threads in turn, used them all. Each kept its stack,
//! wasmtime's signal stack and its malloc caches. Here the workers wait on
//! an async gate per module, and one of them at a time looks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long workers wait after a look found a module's bytes missing
/// before the next look (the fetcher brings them meanwhile).
pub const MISSING_POLL: Duration = Duration::from_millis(100);

/// How long a failure to load a module is the answer for every worker that
/// asks, without a look: a module that does not compile is not compiled
/// again by each of thousands of waiting workers in turn.
const FAILURE_KEPT: Duration = Duration::from_secs(5);

/// What one look for a module found.
pub enum Look<T> {
    /// The module, compiled.
    Loaded(T),
    /// This node does not have the module's bytes yet.
    Missing,
    /// The module is here and does not load.
    Failed(String),
}

/// Per-module gates for the workers looking for modules. One per node.
pub struct ModuleLoads {
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Gate>>>>,
    /// [`FAILURE_KEPT`], but in tests.
    failure_kept: Duration,
}

impl Default for ModuleLoads {
    fn default() -> Self {
        ModuleLoads {
            gates: Mutex::default(),
            failure_kept: FAILURE_KEPT,
        }
    }
}

#[derive(Default)]
struct Gate {
    /// When the last look found the module's bytes missing.
    missing_at: Option<Instant>,
    /// When the last look found that the module does not load, and why.
    failed: Option<(Instant, String)>,
}

impl ModuleLoads {
    /// Module `hash`: `loaded` if that has it (no thread, no gate), else what
    /// `look` finds, run on a blocking thread by one caller at a time, and
    /// again no sooner than [`MISSING_POLL`] after a look found it missing.
    /// Waits while the module is missing; returns why it does not load, if
    /// it does not (the same answer to every caller for [`FAILURE_KEPT`]).
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
            let held = gate.clone().lock_owned().await;
            if let Some(module) = loaded() {
                drop(held);
                self.forget(hash, &gate);
                return Ok(module);
            }
            if let Some((at, why)) = &held.failed
                && at.elapsed() < self.failure_kept
            {
                return Err(why.clone());
            }
            // Another worker looked a moment ago and found nothing.
            let since = held.missing_at.map(|at| at.elapsed());
            if let Some(wait) = since.and_then(|since| MISSING_POLL.checked_sub(since)) {
                drop(held);
                tokio::time::sleep(wait).await;
                continue;
            }
            // The gate goes with the look: a worker dropped while it waits
            // for the look (its task moved away) does not let another look
            // start beside it.
            let look = look.clone();
            let found = tokio::task::spawn_blocking(move || {
                let found = look();
                (found, held)
            })
            .await;
            let (found, mut held) = match found {
                Ok(done) => done,
                // The look panicked, or the node is stopping: the gate was
                // dropped with it.
                Err(e) => return Err(format!("looking for it failed: {e}")),
            };
            match found {
                Look::Loaded(module) => {
                    drop(held);
                    self.forget(hash, &gate);
                    return Ok(module);
                }
                Look::Failed(why) => {
                    held.missing_at = None;
                    held.failed = Some((Instant::now(), why.clone()));
                    return Err(why);
                }
                Look::Missing => {
                    held.missing_at = Some(Instant::now());
                    held.failed = None;
                    drop(held);
                    tokio::time::sleep(MISSING_POLL).await;
                }
            }
        }
    }

    /// The gate of module `hash`, made on first use.
    fn gate(&self, hash: &str) -> Arc<tokio::sync::Mutex<Gate>> {
        let mut gates = self.gates.lock().expect("module gates poisoned");
        match gates.get(hash) {
            Some(gate) => gate.clone(),
            None => gates.entry(hash.to_string()).or_default().clone(),
        }
    }

    /// Takes out the gate of a loaded module: later callers find it loaded
    /// without one, and those still waiting on it find it loaded too. (The
    /// gate of a module that did not load stays, a few bytes a module.)
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
        let arrived = std::time::Instant::now();
        for worker in workers {
            assert_eq!(worker.await.unwrap(), Ok(7));
        }
        // Every worker has it within about a poll of its arrival.
        assert!(arrived.elapsed() < Duration::from_secs(2), "{:?}", arrived.elapsed());
        assert_eq!(looks.most_at_once.load(Ordering::SeqCst), 1, "one look at a time");
        // About one look per poll while missing, and one that loads: not
        // one per worker per poll (1,200 and more).
        let total = looks.total.load(Ordering::SeqCst);
        assert!((2..=12).contains(&total), "{total} looks");
        assert_eq!(loads.gated(), 0, "a loaded module keeps no gate");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_dropped_during_its_look_keeps_others_from_looking_beside_it() {
        let loads = Arc::new(ModuleLoads::default());
        let looks = Arc::new(Looks::default());
        let stored = Arc::new(AtomicBool::new(true));
        let loaded = Arc::new(Mutex::new(None));
        let looking = Arc::new(AtomicBool::new(false));
        let slow_look = {
            let (looks, stored, loaded, looking) = (looks.clone(), stored.clone(), loaded.clone(), looking.clone());
            move || {
                looking.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                looks.look(&stored, &loaded)
            }
        };
        let spawn = |look: _| {
            let (loads, cached) = (loads.clone(), loaded.clone());
            tokio::spawn(async move { loads.load("m", move || *cached.lock().unwrap(), look).await })
        };
        let first = spawn(slow_look.clone());
        while !looking.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Its task moves away while it looks.
        first.abort();
        let second = spawn(slow_look);
        assert_eq!(second.await.unwrap(), Ok(7));
        assert_eq!(looks.most_at_once.load(Ordering::SeqCst), 1, "one look at a time");
        assert_eq!(
            looks.total.load(Ordering::SeqCst),
            1,
            "the second found the first's module"
        );
    }

    #[tokio::test]
    async fn a_loaded_module_needs_no_look_and_a_failure_is_every_waiters_for_a_while() {
        let loads = Arc::new(ModuleLoads {
            failure_kept: Duration::from_millis(300),
            ..ModuleLoads::default()
        });
        let loaded = loads
            .load(
                "m",
                || Some(1),
                || -> Look<u32> { panic!("no look for a loaded module") },
            )
            .await;
        assert_eq!(loaded, Ok(1));
        assert_eq!(loads.gated(), 0);

        let looks = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let (loads, looks) = (loads.clone(), looks.clone());
                tokio::spawn(async move {
                    let look = move || {
                        looks.fetch_add(1, Ordering::SeqCst);
                        Look::<u32>::Failed("not a component".into())
                    };
                    loads.load("bad", || None, look).await
                })
            })
            .collect();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Err("not a component".to_string()));
        }
        assert_eq!(looks.load(Ordering::SeqCst), 1, "one look answers every waiter");
        // Once the failure is old, the next caller looks again.
        tokio::time::sleep(loads.failure_kept).await;
        let again = loads.load("bad", || None, || Look::Loaded(2)).await;
        assert_eq!(again, Ok(2));
        assert_eq!(loads.gated(), 0);
    }
}
