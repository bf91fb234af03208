//! What a task instance may call: log, clock, its name, config and fencing
//! token, and `tcp-exchange` to the addresses its task was granted (fenced
//! and bounded by the tick's deadline), and its secrets (opened when asked
//! for), in a WASI context with nothing in it: no files, no environment, no
//! sockets of its own.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::baton::task::host::{self as wit, Host, Level};
use super::bindings::baton::task::secrets;
use super::fence::{Fence, FencingToken, Slot};
use super::http_client::{HttpAccess, TaskHttp, TickState};
use super::net;
use super::task_logs::{LogLevel, TaskLogs};

/// Where a task's `baton:task/secrets` calls find its secrets' values.
pub trait SecretSource: Send + Sync {
    /// The value of the task's secret `name`, or why there is none.
    fn get(&self, name: &str) -> Result<Vec<u8>, String>;
}

/// The task an instance runs for.
#[derive(Clone, Default)]
pub struct TaskContext {
    pub name: String,
    pub config: Vec<u8>,
    /// `HOST:PORT` addresses the task may reach with `tcp-exchange`; nothing
    /// else on the network is reachable, and with none, nothing at all.
    pub allow_net: Vec<String>,
    /// The node running the tick.
    pub node: u64,
    /// The tick's fencing token.
    pub token: FencingToken,
    /// Whether the tick may still run and act; checked at every effectful
    /// host call and while the guest runs.
    pub fence: Fence,
    /// The tick slot it holds, given up while it waits on the network.
    pub slot: Slot,
    /// The HTTP servers it may call (`wasi:http`), and how.
    pub http: HttpAccess,
    /// Its secrets, if it has a source of them.
    pub secrets: Option<Arc<dyn SecretSource>>,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("name", &self.name)
            .field("node", &self.node)
            .field("token", &self.token)
            .field("allow_net", &self.allow_net)
            .finish_non_exhaustive()
    }
}

/// The host state of one instance.
pub(crate) struct TaskHost {
    pub(crate) task: TaskContext,
    /// When the call's time budget ends.
    pub(crate) deadline: Instant,
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    http_hooks: TaskHttp,
    pub(crate) limits: StoreLimits,
    /// Where the lines it logs are kept for `batonctl tasks logs`.
    logs: Arc<TaskLogs>,
}

impl TaskHost {
    pub(crate) fn new(task: TaskContext, logs: Arc<TaskLogs>, memory_bytes: usize, deadline: Instant) -> Self {
        let http_hooks = TaskHttp {
            access: task.http.clone(),
            fence: task.fence.clone(),
            deadline,
            tick: TickState::default(),
            requests: 0,
        };
        TaskHost {
            logs,
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            http_hooks,
            task,
            deadline,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(false)
                .build(),
        }
    }
}

impl TaskHost {
    /// Its `wasi:io/poll`: waits bounded by the tick's budget and fence.
    pub(crate) fn waits(&mut self) -> super::waits::Waits<'_> {
        super::waits::Waits {
            table: &mut self.table,
            task: &self.task,
            deadline: self.deadline,
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

impl TaskHost {
    /// What its requests share with the tick.
    pub(crate) fn tick_state(&self) -> &TickState {
        &self.http_hooks.tick
    }

    /// Counts one more request; false past [`MAX_REQUESTS_PER_TICK`].
    pub(crate) fn count_request(&mut self) -> bool {
        self.http_hooks.requests += 1;
        self.http_hooks.requests <= super::http_client::MAX_REQUESTS_PER_TICK
    }
}

/// The tick is over before its resources go (the fields drop after this):
/// a request body that ends from here on was cut off.
impl Drop for TaskHost {
    fn drop(&mut self) {
        self.http_hooks.tick.end();
    }
}

impl WasiHttpView for TaskHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.http_hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl Host for TaskHost {
    fn log(&mut self, level: Level, message: String) {
        let task = self.task.name.as_str();
        let kept = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let token = &self.task.token;
        self.logs
            .push(task, crate::types::now_ms(), kept, token.tick, token.epoch, &message);
        match level {
            Level::Debug => tracing::debug!(task, "{message}"),
            Level::Info => tracing::info!(task, "{message}"),
            Level::Warn => tracing::warn!(task, "{message}"),
            Level::Error => tracing::error!(task, "{message}"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        crate::types::now_ms()
    }

    fn task_name(&mut self) -> String {
        self.task.name.clone()
    }

    fn task_config(&mut self) -> Vec<u8> {
        self.task.config.clone()
    }

    fn token(&mut self) -> wit::FencingToken {
        wit::FencingToken {
            epoch: self.task.token.epoch,
            tick: self.task.token.tick,
        }
    }

    fn node_id(&mut self) -> u64 {
        self.task.node
    }

    fn tcp_exchange(
        &mut self,
        addr: String,
        request: Vec<u8>,
        max_reply_bytes: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        // The grant first: a refused address says so even to a stale owner.
        let addrs = match net::granted(&addr, &self.task.allow_net, self.deadline) {
            Ok(addrs) => addrs,
            Err(e) => return Ok(Err(e)),
        };
        // A fence that refuses ends the tick: this node's turn is over. The
        // call runs until the tick's deadline or the lease's end, whichever
        // comes first, asking again as it waits (a renewal moves the
        // lease's end on).
        self.task.fence.permit(Instant::now())?;
        let fence = self.task.fence.clone();
        let permit = move || fence.permit(Instant::now()).map_err(|e| e.to_string());
        let deadline = self.deadline;
        let reply = self
            .task
            .slot
            .released(|| net::exchange(&addrs, &request, max_reply_bytes as usize, deadline, &permit));
        // Cut off by the lease's end (or frozen past it): the tick is over
        // for the same reason, whatever the network said.
        self.task.fence.permit(Instant::now())?;
        Ok(reply.map_err(|e| format!("{addr}: {e}")))
    }
}

impl secrets::Host for TaskHost {
    fn get(&mut self, name: String) -> Result<Vec<u8>, String> {
        match &self.task.secrets {
            Some(source) => source.get(&name),
            None => Err(format!("task {} has no secrets", self.task.name)),
        }
    }
}
