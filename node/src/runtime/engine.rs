//! The node's one wasmtime engine, and ticking a task on it.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use super::Outcome;
use super::bindings::Task;
use super::errors::{ModuleError, TickError};
use super::fence::FenceError;
use super::host::{TaskContext, TaskHost};
use super::module::{CompiledModule, compile, content_hash};
use super::module_cache::{Bytes, ModuleCache};
use super::task_logs::TaskLogs;
use super::waits::Verdict;

/// Freed instance slots decommitted together (see `TaskEngine::new`).
const DECOMMIT_BATCH: usize = 16;

/// How much of a freed instance's linear memory is reset in place, page by
/// dirty page, rather than handed back to the kernel (see `TaskEngine::new`):
/// enough for a Rust task's 1 MiB stack, its data and a small heap.
const KEEP_RESIDENT_BYTES: usize = 4 * 1024 * 1024;
/// The same for an instance's tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 * 1024;

/// How much nicer than the node's own threads those that compile modules
/// are: at 10 more, such a thread gets about a tenth of the CPU one of the
/// node's gets when both want it.
const COMPILE_NICER_BY: i32 = 10;

/// How often the engine's epoch advances: the resolution of tick budgets.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest module a node loads: a Python task's component embeds its
/// interpreter (19 MB for the examples), with room for the libraries a
/// task bundles. Deploying one over [`EARLIER_MAX_MODULE_BYTES`] needs
/// cluster version 10 (`LARGE_MODULES`).
pub const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;

/// The largest module that nodes of 0.8.0 and earlier fetch and load.
pub const EARLIER_MAX_MODULE_BYTES: usize = 16 * 1024 * 1024;

/// Bounds on what a task may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeLimits {
    /// Wall-clock budget of one tick; past it the tick is interrupted.
    pub tick_budget: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Instances that may exist at once (the pool's size).
    pub max_instances: u32,
    /// Largest module accepted.
    pub max_module_bytes: usize,
    /// Largest state a tick may return (`[limits] max_state_bytes`).
    pub max_state_bytes: usize,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            tick_budget: Duration::from_secs(1),
            memory_bytes: 64 * 1024 * 1024,
            max_instances: 256,
            max_module_bytes: MAX_MODULE_BYTES,
            max_state_bytes: crate::config::DEFAULT_CAP_BYTES,
        }
    }
}

/// Compiles task modules and runs their ticks. Cheap to share behind an Arc.
pub struct TaskEngine {
    engine: Engine,
    linker: Linker<TaskHost>,
    limits: RuntimeLimits,
    /// Compiled modules by content hash: each is compiled once.
    modules: ModuleCache,
    /// When the epoch thread, which ends ticks at their budgets, last
    /// advanced the epoch (its own monotonic clock, in ms).
    epoch_beat: Arc<EpochBeat>,
    /// The lines task modules logged on this node.
    logs: Arc<TaskLogs>,
}

/// Compiling is background work: wasmtime compiles a module's functions
/// on rayon's global pool, whose threads are made here (once a process),
/// [`COMPILE_NICER_BY`] nicer than the node. Compiling a Python task's
/// 19 MB component takes seconds of both cores of a small machine; at the
/// node's own priority, Raft's calls to peers timed out meanwhile.
fn lower_compile_priority() {
    // Fails only if the pool already exists: made by an earlier engine in
    // this process, which lowered it then.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("baton-compile-{i}"))
        .start_handler(|_| at_compile_priority())
        .build_global();
}

/// Makes the calling thread [`COMPILE_NICER_BY`] nicer than it is (at most
/// 19). Lowering needs no privilege; should it fail, the thread compiles
/// at its own priority.
fn at_compile_priority() {
    let Some(nice) = own_nice() else {
        return;
    };
    let target = (nice + COMPILE_NICER_BY).min(19);
    let lower = thread_priority::ThreadPriorityValue::try_from(crossplatform_for_nice(target))
        .map(thread_priority::ThreadPriority::Crossplatform)
        .map_err(|e| e.to_string())
        .and_then(|p| thread_priority::set_current_thread_priority(p).map_err(|e| format!("{e:?}")));
    if let Err(e) = lower {
        tracing::debug!("compile threads keep the node's priority: {e}");
    }
}

/// The calling thread's nice value (Linux's `/proc/thread-self/stat`).
fn own_nice() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // After the command's closing parenthesis come the state (field 3)
    // and the rest; nice is field 19.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(16)?.parse().ok()
}

/// The cross-platform value that `thread-priority` sets as nice `nice`
/// for a thread of the normal policy (it maps 0..=99 onto 19..=-20).
fn crossplatform_for_nice(nice: i32) -> u8 {
    (0..=99u8)
        .find(|&p| (39.0 * (1.0 - f32::from(p) / 99.0)) as i32 - 20 == nice)
        .unwrap_or(0)
}

/// The epoch thread's last beat: ticks end at their budgets only while it
/// beats, so a node whose thread stopped is not ready.
#[derive(Debug)]
struct EpochBeat {
    since: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl TaskEngine {
    /// An engine with a pooling allocator sized by `limits`, epoch-based
    /// budgets, and (with `cache_dir`) compiled code cached on disk.
    pub fn new(limits: RuntimeLimits, cache_dir: Option<&Path>) -> Result<Arc<Self>, String> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances * 4)
            .total_memories(limits.max_instances * 2)
            .total_tables(limits.max_instances * 4)
            .total_stacks(limits.max_instances)
            .max_memory_size(limits.memory_bytes)
            // A tick instantiates its module afresh, and each freed slot's
            // memory goes back to the kernel with madvise, whose TLB
            // shootdowns interrupt every core: in batches, far fewer (75 % to
            // 86 % of a 10,000 ticks/s demand on 4 nodes; keeping 1 MiB
            // resident and resetting it with memset fell to 48 % instead).
            .decommit_batch_size(DECOMMIT_BATCH);
        // Where the kernel can say which pages an instance wrote (Linux 6.7's
        // PAGEMAP_SCAN), only those are reset, in place: no madvise, so no
        // TLB shootdown, and the next tick on the slot takes no page faults.
        // At 10,000 ticks/s, making and dropping the fresh instances took 16 %
        // of the nodes' CPU against 0.7 % for the guests' own code, and much
        // of the kernel's 41 % was those faults, zeroing and shootdowns.
        // Without the scan, keeping memory resident means a memset of all of
        // it, which is slower.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES);
        }
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_reservation(limits.memory_bytes as u64)
            .memory_guard_size(64 * 1024)
            .memory_reservation_for_growth(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = cache_dir {
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(
                Cache::new(cache).map_err(|e| format!("module cache in {}: {e:#}", dir.display()))?,
            ));
        }
        lower_compile_priority();
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| format!("{e:#}"))?;
        // A guest's waits end with its tick's budget and fence.
        super::waits::shadow_waits(&mut linker, TaskHost::waits).map_err(|e| format!("{e:#}"))?;
        // wasi:http, its outgoing handler through Baton's grants and fence.
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker).map_err(|e| format!("{e:#}"))?;
        super::outgoing::shadow_handle(&mut linker).map_err(|e| format!("{e:#}"))?;
        Task::add_to_linker::<TaskHost, HasSelf<TaskHost>>(&mut linker, |host| host).map_err(|e| format!("{e:#}"))?;
        let epoch_beat = Arc::new(EpochBeat {
            since: std::time::Instant::now(),
            last_ms: Default::default(),
        });
        start_epoch_ticker(&engine, epoch_beat.clone());
        // Read now rather than at a tick's first HTTPS request, on the
        // node's runtime.
        let _ = super::http_client::system_roots();
        Ok(Arc::new(TaskEngine {
            engine,
            linker,
            limits,
            logs: Arc::new(TaskLogs::default()),
            modules: ModuleCache::default(),
            epoch_beat,
        }))
    }

    /// How long ago the epoch thread last advanced the epoch (it does every
    /// 10 ms while the engine runs).
    pub fn since_epoch_beat(&self) -> Duration {
        let beat = &self.epoch_beat;
        let last = Duration::from_millis(beat.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        beat.since.elapsed().saturating_sub(last)
    }

    /// The module with content hash `hash`, if it is already compiled.
    pub fn loaded(&self, hash: &str) -> Option<Arc<CompiledModule>> {
        self.modules.get(hash)
    }

    /// The lines task modules logged on this node.
    pub fn logs(&self) -> &Arc<TaskLogs> {
        &self.logs
    }

    /// The wall-clock budget of one tick.
    pub fn tick_budget(&self) -> Duration {
        self.limits.tick_budget
    }

    /// The largest module this engine accepts.
    pub fn max_module_bytes(&self) -> usize {
        self.limits.max_module_bytes
    }

    /// The content hashes of the modules compiled so far.
    pub fn loaded_hashes(&self) -> std::collections::BTreeSet<String> {
        self.modules.hashes()
    }

    /// Checks and compiles `bytes`, once per content hash.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, ModuleError> {
        self.check_size(bytes)?;
        let hash = content_hash(bytes);
        self.load_once(&hash, || Some(Ok(Cow::Borrowed(bytes))))
            .expect("the bytes are given")
    }

    /// The module with content hash `hash`, compiled from what `read` gives
    /// (`None` when this node does not have the bytes yet). `read` is called
    /// only when the module is not compiled yet, and by one caller at a
    /// time: the workers of a node that starts or takes over many tasks of
    /// one module hold one copy of its bytes between them, not one each.
    pub fn load_stored(
        &self,
        hash: &str,
        read: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<Result<Arc<CompiledModule>, ModuleError>> {
        self.load_once(hash, || {
            let bytes = read()?;
            let checked = self.check_size(&bytes).and_then(|()| {
                let actual = content_hash(&bytes);
                if actual == hash {
                    Ok(Cow::Owned(bytes))
                } else {
                    Err(ModuleError::Damaged {
                        expected: hash.to_string(),
                        actual,
                    })
                }
            });
            Some(checked)
        })
    }

    /// Refuses modules over the size limit.
    fn check_size(&self, bytes: &[u8]) -> Result<(), ModuleError> {
        if bytes.len() > self.limits.max_module_bytes {
            return Err(ModuleError::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_module_bytes,
            });
        }
        Ok(())
    }

    /// Module `hash` from the cache, or compiled from what `read` gives.
    fn load_once<'a>(
        &self,
        hash: &str,
        read: impl FnOnce() -> Bytes<'a>,
    ) -> Option<Result<Arc<CompiledModule>, ModuleError>> {
        self.modules
            .load_once(hash, read, |bytes| self.compile_at_low_priority(bytes))
    }

    /// Compiles `bytes` on a thread of its own at the compile threads'
    /// priority: parsing and validating a large module is work of the
    /// calling thread.
    fn compile_at_low_priority(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, ModuleError> {
        let module = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("baton-compile".into())
                .spawn_scoped(scope, || {
                    at_compile_priority();
                    compile(&self.engine, &self.linker, bytes)
                })
                .map_err(|e| ModuleError::Invalid(format!("cannot start a thread to compile it: {e}")))?
                .join()
                .map_err(|_| ModuleError::Invalid("compiling it panicked".into()))?
        })?;
        Ok(Arc::new(module))
    }

    /// A store for one call into a task, with its memory limit, its time
    /// budget and its fence. Fails when the fence already refuses.
    ///
    /// The epoch advances every `EPOCH_TICK`; at each advance the guest
    /// stops to ask whether its budget is spent and whether its fence still
    /// holds (this node's lease, its ownership), so a tick is interrupted
    /// within about an epoch of either ending, however long its loops.
    fn store(&self, task: TaskContext) -> Result<Store<TaskHost>, TickError> {
        let now = Instant::now();
        task.fence.permit(now).map_err(TickError::Fenced)?;
        let deadline = now + self.limits.tick_budget;
        let mut store = Store::new(
            &self.engine,
            TaskHost::new(task, self.logs.clone(), self.limits.memory_bytes, deadline),
        );
        store.limiter(|host| &mut host.limits);
        store.epoch_deadline_callback(|context| {
            let host = context.data();
            match Verdict::at(&host.task.fence, host.deadline, Instant::now()) {
                Verdict::GoOn => Ok(UpdateDeadline::Continue(1)),
                Verdict::OverBudget => Ok(UpdateDeadline::Interrupt),
                Verdict::Fenced(e) => Err(e.into()),
            }
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }

    /// A trap, as a tick error (an interrupt is a blown budget, a fence
    /// error a tick stopped because its turn is over).
    fn trapped(&self, e: wasmtime::Error) -> TickError {
        if let Some(fenced) = e.downcast_ref::<FenceError>() {
            return TickError::Fenced(fenced.clone());
        }
        match e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            true => TickError::OverBudget(self.limits.tick_budget),
            false => TickError::Trapped(format!("{e:#}")),
        }
    }

    /// An instance that could not be made, as a tick error. Making one runs
    /// guest code, so the epoch callback may stop it there too: a closed
    /// fence is this node's turn ending, not the module's fault, and an
    /// interrupt is the budget spent.
    fn not_started(&self, e: wasmtime::Error) -> TickError {
        match self.trapped(e) {
            TickError::Trapped(message) => TickError::Instantiate(message),
            stopped => stopped,
        }
    }

    /// Converts `state` from version `from`'s format to version `to`'s with
    /// `module` (the newer of the two); a module without `migrate` keeps
    /// one format, and the state passes unchanged. Blocking.
    pub fn migrate(
        &self,
        module: &CompiledModule,
        task: TaskContext,
        from: u32,
        to: u32,
        state: &[u8],
    ) -> Result<Vec<u8>, TickError> {
        let Some(pre) = &module.migrating else {
            return Ok(state.to_vec());
        };
        let mut store = self.store(task)?;
        let instance = pre.instantiate(&mut store).map_err(|e| self.not_started(e))?;
        match instance.call_migrate(&mut store, from, to, state) {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(message)) => Err(TickError::Failed(format!(
                "migrating the state from version {from} to {to}: {message}"
            ))),
            Err(e) => Err(self.trapped(e)),
        }
    }

    /// Whether `module` (version `from`) converts its states to version
    /// `to`'s; true for a module without `migrate` (one format). Blocking.
    pub fn can_downgrade(&self, module: &CompiledModule, from: u32, to: u32) -> Result<bool, TickError> {
        let Some(pre) = &module.migrating else {
            return Ok(true);
        };
        let mut store = self.store(TaskContext::default())?;
        let instance = pre.instantiate(&mut store).map_err(|e| self.not_started(e))?;
        instance
            .call_can_downgrade(&mut store, from, to)
            .map_err(|e| self.trapped(e))
    }

    /// Runs one tick of `task` on `module` from `state`, in a fresh instance
    /// (so nothing but the committed state carries over between ticks).
    /// Blocking: call it from a blocking thread.
    pub fn tick(&self, module: &CompiledModule, task: TaskContext, state: &[u8]) -> Result<Outcome, TickError> {
        let name = task.name.clone();
        let mut store = self.store(task)?;
        let instance = module.pre.instantiate(&mut store).map_err(|e| self.not_started(e))?;
        let result = instance.call_tick(&mut store, state);
        self.outcome(&name, result, store.data())
    }

    /// The first tick of a task on `module` (version `to`) from a state
    /// version `from` wrote: migrated up and ticked in one instance, so the
    /// swap costs little more than the tick. Blocking.
    pub fn tick_migrated(
        &self,
        module: &CompiledModule,
        task: TaskContext,
        from: u32,
        to: u32,
        state: &[u8],
    ) -> Result<Outcome, TickError> {
        let Some(pre) = &module.migrating else {
            return self.tick(module, task, state);
        };
        let name = task.name.clone();
        let mut store = self.store(task)?;
        let instance = pre.instantiate(&mut store).map_err(|e| self.not_started(e))?;
        let state = match instance.call_migrate(&mut store, from, to, state) {
            Ok(Ok(state)) => state,
            Ok(Err(message)) => {
                return Err(TickError::Failed(format!(
                    "migrating the state from version {from} to {to}: {message}"
                )));
            }
            Err(e) => return Err(self.trapped(e)),
        };
        let result = instance.call_tick(&mut store, &state);
        self.outcome(&name, result, store.data())
    }

    /// A tick's result as an outcome or a tick error. A tick that failed
    /// once its fence had closed was fenced, whatever it said: a request
    /// cut off at the lease's end fails in the guest's hands, and the guest
    /// may return that failure before the fence stops it.
    fn outcome<O: Into<Outcome>>(
        &self,
        task: &str,
        result: wasmtime::Result<Result<O, String>>,
        host: &TaskHost,
    ) -> Result<Outcome, TickError> {
        // A request of the tick cut off by its fence, or the fence closed
        // now.
        let fenced = || {
            host.tick_state()
                .cut_off()
                .or_else(|| match Verdict::at(&host.task.fence, host.deadline, Instant::now()) {
                    Verdict::Fenced(e) => Some(e),
                    Verdict::GoOn | Verdict::OverBudget => None,
                })
        };
        let result = match result {
            Ok(returned) => returned.map(Into::into).map_err(TickError::Failed),
            Err(e) => Err(self.trapped(e)),
        };
        match result {
            Err(TickError::Failed(message) | TickError::Trapped(message)) if let Some(e) = fenced() => {
                tracing::debug!(task, "a tick whose fence closed ended so: {message}");
                Err(TickError::Fenced(e))
            }
            Ok(outcome) if outcome.state.len() > self.limits.max_state_bytes => Err(TickError::StateTooLarge {
                task: task.to_string(),
                size: outcome.state.len(),
                limit: self.limits.max_state_bytes,
            }),
            other => other,
        }
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` until the engine is gone.
fn start_epoch_ticker(engine: &Engine, beat: Arc<EpochBeat>) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("baton-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                let now = beat.since.elapsed().as_millis() as u64;
                beat.last_ms.store(now, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping is thread-priority's (unix.rs, `to_posix` for normal
    /// policies); `node/tests/runtime.rs` checks the nice value it sets.
    #[test]
    fn every_nice_value_has_the_cross_platform_value_that_sets_it() {
        assert_eq!(crossplatform_for_nice(19), 0);
        for nice in -20..=19 {
            let p = crossplatform_for_nice(nice);
            assert_eq!((39.0 * (1.0 - f32::from(p) / 99.0)) as i32 - 20, nice, "{nice} -> {p}");
        }
    }

    #[test]
    fn a_thread_reads_its_own_nice_value() {
        let nice = own_nice().expect("Linux's /proc");
        assert!((-20..=19).contains(&nice), "{nice}");
    }
}
