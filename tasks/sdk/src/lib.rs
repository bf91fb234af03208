//! Write a Baton task in Rust in a few lines.
//!
//! ```ignore
//! use baton_task_sdk::{Guest, Outcome};
//!
//! struct Counter;
//!
//! impl Guest for Counter {
//!     fn tick(state: Vec<u8>) -> Result<Outcome, String> {
//!         let n = baton_task_sdk::state::read_count(&state)? + 1;
//!         Ok(Outcome { state: baton_task_sdk::state::count(n), next_in_ms: None })
//!     }
//! }
//!
//! baton_task_sdk::export!(Counter with_types_in baton_task_sdk::bindings);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file is a component that `batonctl modules deploy` accepts.

/// The generated bindings of the `baton:task/task` world.
pub mod bindings {
    wit_bindgen::generate!({
        world: "task",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export",
    });
}

/// The bindings of the `baton:task/migrating-task` world: a task whose
/// state format differs from its other versions' and that converts between
/// them (`migrate`, `can-downgrade`). Implement its `Guest` and export it
/// with `baton_task_sdk::export_migrating!(T with_types_in
/// baton_task_sdk::migrating);`.
pub mod migrating {
    wit_bindgen::generate!({
        world: "migrating-task",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_migrating",
    });
}

pub use bindings::baton::task::host::{self, FencingToken, Level};
pub use bindings::{Guest, Outcome, export};
pub use migrating::export_migrating;

/// This tick's fencing token: the task's epoch (it rises every time the
/// task changes owner) and the number this tick will commit as. Send it
/// with every request that changes something downstream, and have the
/// downstream refuse a token lower than the highest it has seen for the
/// task: a node that lost the task (frozen, cut off) is then refused even
/// if its request arrives late.
pub fn fencing_token() -> FencingToken {
    host::token()
}

/// The network, as far as the task was granted it (`--allow-net`).
pub mod net {
    /// Sends `request` over a new TCP connection to `addr` and returns the
    /// reply (what the peer sends until it closes), at most `max_reply`
    /// bytes. Fails without connecting when `addr` was not granted or this
    /// node no longer owns the task; never outlasts the tick's deadline.
    pub fn exchange(addr: &str, request: &[u8], max_reply: u32) -> Result<Vec<u8>, String> {
        super::host::tcp_exchange(addr, request, max_reply)
    }
}

/// Logging through the node.
pub mod log {
    use super::host::{Level, log};

    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Helpers for common state encodings.
pub mod state {
    /// Reads a little-endian u64 state; an empty state (a new task) is 0.
    pub fn read_u64(state: &[u8]) -> Result<u64, String> {
        match state.len() {
            0 => Ok(0),
            8 => Ok(u64::from_le_bytes(state.try_into().expect("8 bytes"))),
            n => Err(format!("expected an 8-byte counter state, got {n} bytes")),
        }
    }

    /// Reads a count kept as decimal text (`42`, which `batonctl tasks
    /// list` shows as a number), or as the 8 little-endian bytes of
    /// [`read_u64`]; an empty state (a new task) is 0. The two cannot be
    /// mistaken: 8 bytes that are all ASCII digits would be a count above
    /// 3.4 * 10^18 in the older form.
    pub fn read_count(state: &[u8]) -> Result<u64, String> {
        if !state.is_empty() && state.iter().all(u8::is_ascii_digit) {
            let text = std::str::from_utf8(state).expect("ASCII digits");
            return text.parse().map_err(|e| format!("count {text:?}: {e}"));
        }
        read_u64(state).map_err(|_| {
            format!(
                "expected a count as decimal text or 8 bytes, got {} bytes",
                state.len()
            )
        })
    }

    /// A count as [`read_count`] reads it: decimal text.
    pub fn count(n: u64) -> Vec<u8> {
        n.to_string().into_bytes()
    }
}
