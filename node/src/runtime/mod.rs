//! Running task modules: one wasmtime engine per node, components compiled
//! once per content hash, a fresh pooled instance per tick with a time budget
//! and a memory limit, a fence that stops a tick whose turn is over, and no
//! file system or network for the guest but fenced `tcp-exchange` calls.

mod engine;
mod errors;
mod fence;
mod host;
mod http_client;
mod http_grant;
mod module;
mod module_cache;
mod net;
mod outgoing;
mod task_logs;
mod waits;

pub use engine::{EARLIER_MAX_MODULE_BYTES, MAX_MODULE_BYTES, RuntimeLimits, TaskEngine};
pub use errors::{ModuleError, TickError};
pub use fence::{Fence, FenceError, FencingToken, Slot, TickFence, TickSlot};
pub use host::{SecretSource, TaskContext};
pub use http_client::{DEFAULT_MAX_RESPONSE_BYTES, HttpAccess, MAX_HTTP_CA_BYTES, MAX_HTTP_GRANTS, canonical_ca};
pub use http_grant::{HttpGrant, MAX_HOST_BYTES};
pub use module::{CompiledModule, content_hash};
pub use task_logs::{LogLevel, LogLine, TaskLogs};

/// The host side of the `baton:task/task` WIT world (`wit/task.wit`).
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "task",
        path: "../wit",
        // A call refused by the fence ends the tick there and then (a trap
        // the runner tells apart), rather than returning to the guest.
        imports: { "baton:task/host.tcp-exchange": trappable },
    });
}

/// The host side of the `migrating-task` world: a task that also exports
/// `migrate` and `can-downgrade`. Its host interface is the task world's.
pub(crate) mod migrating_bindings {
    wasmtime::component::bindgen!({
        world: "migrating-task",
        path: "../wit",
        with: {
            "baton:task/host": super::bindings::baton::task::host,
            "baton:task/secrets": super::bindings::baton::task::secrets,
        },
    });
}

/// What a successful tick returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The task's new state.
    pub state: Vec<u8>,
    /// Run the next tick after this many milliseconds, not at the schedule's time.
    pub next_in_ms: Option<u64>,
}

impl From<bindings::Outcome> for Outcome {
    fn from(o: bindings::Outcome) -> Self {
        Outcome {
            state: o.state,
            next_in_ms: o.next_in_ms,
        }
    }
}

impl From<migrating_bindings::Outcome> for Outcome {
    fn from(o: migrating_bindings::Outcome) -> Self {
        Outcome {
            state: o.state,
            next_in_ms: o.next_in_ms,
        }
    }
}
