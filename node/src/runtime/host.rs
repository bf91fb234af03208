//! What a task instance may call: log, clock, its name and config, and a
//! WASI context with nothing in it (no files, no network, no environment).

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::baton::task::host::{Host, Level};

/// The task an instance runs for.
#[derive(Debug, Clone, Default)]
pub struct TaskContext {
    pub name: String,
    pub config: Vec<u8>,
}

/// The host state of one instance.
pub(crate) struct TaskHost {
    task: TaskContext,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
}

impl TaskHost {
    pub(crate) fn new(task: TaskContext, memory_bytes: usize) -> Self {
        TaskHost {
            task,
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(false)
                .build(),
        }
    }
}

impl WasiView for TaskHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Host for TaskHost {
    fn log(&mut self, level: Level, message: String) {
        let task = self.task.name.as_str();
        match level {
            Level::Debug => tracing::debug!(task, "{message}"),
            Level::Info => tracing::info!(task, "{message}"),
            Level::Warn => tracing::warn!(task, "{message}"),
            Level::Error => tracing::error!(task, "{message}"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn task_name(&mut self) -> String {
        self.task.name.clone()
    }

    fn task_config(&mut self) -> Vec<u8> {
        self.task.config.clone()
    }
}
