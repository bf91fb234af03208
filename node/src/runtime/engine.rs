//! The node's one wasmtime engine, and ticking a task on it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::Outcome;
use super::bindings::Task;
use super::errors::{ModuleError, TickError};
use super::host::{TaskContext, TaskHost};
use super::module::{CompiledModule, compile, content_hash};

/// How often the engine's epoch advances: the resolution of tick budgets.
const EPOCH_TICK: Duration = Duration::from_millis(10);

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
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            tick_budget: Duration::from_secs(1),
            memory_bytes: 64 * 1024 * 1024,
            max_instances: 256,
            max_module_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Compiles task modules and runs their ticks. Cheap to share behind an Arc.
pub struct TaskEngine {
    engine: Engine,
    linker: Linker<TaskHost>,
    limits: RuntimeLimits,
    /// Compiled modules by content hash: each is compiled once.
    modules: Mutex<HashMap<String, Arc<CompiledModule>>>,
    /// Held while compiling, so a module is compiled once however many ask.
    compiling: Mutex<()>,
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
            .max_memory_size(limits.memory_bytes);
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
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| format!("{e:#}"))?;
        Task::add_to_linker::<TaskHost, HasSelf<TaskHost>>(&mut linker, |host| host).map_err(|e| format!("{e:#}"))?;
        start_epoch_ticker(&engine);
        Ok(Arc::new(TaskEngine {
            engine,
            linker,
            limits,
            modules: Mutex::new(HashMap::new()),
            compiling: Mutex::new(()),
        }))
    }

    /// The module with content hash `hash`, if it is already compiled.
    pub fn loaded(&self, hash: &str) -> Option<Arc<CompiledModule>> {
        self.modules
            .lock()
            .expect("module cache lock poisoned")
            .get(hash)
            .cloned()
    }

    /// Checks and compiles `bytes`, once per content hash.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, ModuleError> {
        if bytes.len() > self.limits.max_module_bytes {
            return Err(ModuleError::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_module_bytes,
            });
        }
        let hash = content_hash(bytes);
        if let Some(module) = self.loaded(&hash) {
            return Ok(module);
        }
        // One compilation at a time: when a node starts or takes over many
        // tasks of one module, their workers all ask at once, and must not
        // each compile it.
        let _compiling = self.compiling.lock().expect("compile lock poisoned");
        if let Some(module) = self.loaded(&hash) {
            return Ok(module);
        }
        let module = Arc::new(compile(&self.engine, &self.linker, bytes)?);
        self.modules
            .lock()
            .expect("module cache lock poisoned")
            .insert(hash, module.clone());
        Ok(module)
    }

    /// Runs one tick of `task` on `module` from `state`, in a fresh instance
    /// (so nothing but the committed state carries over between ticks).
    /// Blocking: call it from a blocking thread.
    pub fn tick(&self, module: &CompiledModule, task: TaskContext, state: &[u8]) -> Result<Outcome, TickError> {
        let mut store = Store::new(&self.engine, TaskHost::new(task, self.limits.memory_bytes));
        store.limiter(|host| &mut host.limits);
        // The epoch advances every EPOCH_TICK, and the next advance may come
        // at once: one tick more than the budget's worth guarantees the tick
        // at least its whole budget (and at most EPOCH_TICK more).
        let budget_ticks = self.limits.tick_budget.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64;
        store.set_epoch_deadline(budget_ticks.max(1) + 1);
        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| TickError::Instantiate(format!("{e:#}")))?;
        match instance.call_tick(&mut store, state) {
            Ok(Ok(outcome)) => Ok(Outcome {
                state: outcome.state,
                next_in_ms: outcome.next_in_ms,
            }),
            Ok(Err(message)) => Err(TickError::Failed(message)),
            Err(e) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                Err(TickError::OverBudget(self.limits.tick_budget))
            }
            Err(e) => Err(TickError::Trapped(format!("{e:#}"))),
        }
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` until the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("baton-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch thread");
}
