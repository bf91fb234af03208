//! What a task instance may call: log, clock, its name and config, and a
//! WASI context with nothing in it (no files, no environment) but the
//! network addresses its task was granted.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::baton::task::host::{Host, Level};

/// The task an instance runs for.
#[derive(Debug, Clone, Default)]
pub struct TaskContext {
    pub name: String,
    pub config: Vec<u8>,
    /// `HOST:PORT` addresses the task may open TCP connections to; nothing
    /// else on the network is reachable, and with none, nothing at all.
    pub allow_net: Vec<String>,
}

/// A WASI context that grants exactly the task's network grants: TCP
/// connections to the listed addresses (and the ephemeral local bind a
/// connection needs), name lookups when a grant names a host; no UDP, no
/// files, no environment.
fn wasi_for(task: &TaskContext) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    if task.allow_net.is_empty() {
        return builder.build();
    }
    let allowed: Arc<HashSet<SocketAddr>> = Arc::new(
        task.allow_net
            .iter()
            .filter_map(|a| a.to_socket_addrs().ok())
            .flatten()
            .collect(),
    );
    let names_hosts = task.allow_net.iter().any(|a| a.parse::<SocketAddr>().is_err());
    builder
        .allow_tcp(true)
        .allow_udp(false)
        .allow_ip_name_lookup(names_hosts)
        .socket_addr_check(move |addr, usage| {
            let ok = match usage {
                SocketAddrUse::TcpConnect => allowed.contains(&addr),
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            Box::pin(async move { ok })
        });
    builder.build()
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
            wasi: wasi_for(&task),
            task,
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
        crate::types::now_ms()
    }

    fn task_name(&mut self) -> String {
        self.task.name.clone()
    }

    fn task_config(&mut self) -> Vec<u8> {
        self.task.config.clone()
    }
}
