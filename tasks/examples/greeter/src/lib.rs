//! `greeter`: driven by its JSON config (`{"name": "world", "every_ms": 5000}`),
//! logs a greeting each tick and keeps a JSON state `{"greetings": N, "last": "..."}`.

use baton_task_sdk::{Guest, Outcome, host, log};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    /// Optional: ask to run again after this long instead of the schedule.
    #[serde(default)]
    every_ms: Option<u64>,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    greetings: u64,
    last: String,
}

struct Greeter;

impl Guest for Greeter {
    fn tick(previous: Vec<u8>) -> Result<Outcome, String> {
        let config: Config = serde_json::from_slice(&host::task_config())
            .map_err(|e| format!("config must be JSON like {{\"name\": \"world\"}}: {e}"))?;
        let mut state: State = if previous.is_empty() {
            State::default()
        } else {
            serde_json::from_slice(&previous).map_err(|e| format!("unreadable state: {e}"))?
        };
        state.greetings += 1;
        state.last = format!("hello, {} (#{})", config.name, state.greetings);
        log::info(&state.last);
        let bytes = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        Ok(Outcome { state: bytes, next_in_ms: config.every_ms })
    }
}

baton_task_sdk::export!(Greeter with_types_in baton_task_sdk::bindings);
