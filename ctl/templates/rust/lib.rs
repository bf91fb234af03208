//! {{name}}: a Baton task in Rust.
//!
//! Each tick gets the state the last tick committed (empty for a new task)
//! and returns the next one. This one counts its ticks, as decimal text
//! (`batonctl tasks list` shows it as a number), and logs its config:
//! `batonctl tasks add {{name}} --module {{name}} --every 10s --config hello`.

use baton_task_sdk::{Guest, Outcome, host, log, state};

struct Task;

impl Guest for Task {
    fn tick(previous: Vec<u8>) -> Result<Outcome, String> {
        let ticks = state::read_count(&previous)? + 1;
        let config = String::from_utf8_lossy(&host::task_config()).into_owned();
        log::info(&format!("tick {ticks}; config {config:?}"));
        Ok(Outcome {
            state: state::count(ticks),
            next_in_ms: None,
        })
    }
}

baton_task_sdk::export!(Task with_types_in baton_task_sdk::bindings);
