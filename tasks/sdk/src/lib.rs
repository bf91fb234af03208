//! Write a Baton task in Rust in a few lines.
//!
//! ```ignore
//! use baton_task_sdk::{Guest, Outcome};
//!
//! struct Counter;
//!
//! impl Guest for Counter {
//!     fn tick(state: Vec<u8>) -> Result<Outcome, String> {
//!         let n = baton_task_sdk::state::read_u64(&state)? + 1;
//!         Ok(Outcome { state: n.to_le_bytes().to_vec(), next_in_ms: None })
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

pub use bindings::baton::task::host::{self, Level};
pub use bindings::{Guest, Outcome, export};
pub use migrating::export_migrating;

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
}
