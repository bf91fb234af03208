//! Why a module was refused, and why a tick failed.

use std::time::Duration;

use super::fence::FenceError;

/// Why a module was refused at deploy. Nothing is recorded when this happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("the module is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the file is not WebAssembly (no \\0asm header); give the .wasm file cargo built for wasm32-wasip2")]
    NotWasm,
    #[error(
        "the file is a core WebAssembly module, not a component; build it with \
         `cargo build --target wasm32-wasip2` (see tasks/sdk) or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("the component does not compile: {0}")]
    Invalid(String),
    #[error("this node's copy of module {expected} is damaged: its bytes hash to {actual}")]
    Damaged { expected: String, actual: String },
    #[error("the component imports something Baton does not offer to tasks: {0}")]
    UnsupportedImports(String),
    #[error(
        "the component does not implement the baton:task world (it must export \
         `tick: func(state: list<u8>) -> result<outcome, string>`; see wit/task.wit): {0}"
    )]
    WrongInterface(String),
}

/// Why a tick did not produce a new state. The state stays as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TickError {
    #[error("the tick returned an error: {0}")]
    Failed(String),
    #[error("the tick trapped: {0}")]
    Trapped(String),
    #[error("the tick ran past its {0:?} budget and was interrupted")]
    OverBudget(Duration),
    #[error("the task could not be started: {0}")]
    Instantiate(String),
    /// The state the tick returned is over the cap; nothing was proposed.
    #[error(
        "task {task} returned a state of {size} bytes, over the cap of {limit} bytes ([limits] \
         max_state_bytes): keep less in the task's state, or raise the cap on every node"
    )]
    StateTooLarge { task: String, size: usize, limit: usize },
    /// Not the module's fault: this node's turn with the task is over (its
    /// lease ended, or the task moved), so the tick was not started or was
    /// stopped before it could act again.
    #[error("the tick was stopped: {0}")]
    Fenced(FenceError),
}
