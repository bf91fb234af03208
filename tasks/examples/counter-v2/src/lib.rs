//! `counter`, version 2: counts its ticks like version 1, but keeps the
//! count as `counter-v2:N` instead of version 1's plain `N` (or the 8
//! little-endian bytes of earlier builds of version 1). It
//! converts states both ways (Erlang's `code_change`): up from version 1's
//! format when a task switches to it, and back down when a rollback returns
//! a task to version 1. It tells the formats apart by their bytes, so it
//! does not depend on which release numbers the cluster gave the versions.

use baton_task_sdk::migrating::{Guest, Outcome};
use baton_task_sdk::state::{count as v1, read_count};

const PREFIX: &str = "counter-v2:";

/// The count in a state of either format (empty: a new task, 0).
fn count(state: &[u8]) -> Result<u64, String> {
    match std::str::from_utf8(state).ok().and_then(|s| s.strip_prefix(PREFIX)) {
        Some(n) => n.parse().map_err(|e| format!("bad counter-v2 state {n:?}: {e}")),
        None => read_count(state),
    }
}

fn v2(n: u64) -> Vec<u8> {
    format!("{PREFIX}{n}").into_bytes()
}

struct CounterV2;

impl Guest for CounterV2 {
    fn tick(previous: Vec<u8>) -> Result<Outcome, String> {
        let n = count(&previous)? + 1;
        Ok(Outcome { state: v2(n), next_in_ms: None })
    }

    fn migrate(from_version: u32, to_version: u32, state: Vec<u8>) -> Result<Vec<u8>, String> {
        let n = count(&state)?;
        Ok(match to_version < from_version {
            // Down: back to version 1's format.
            true => v1(n),
            false => v2(n),
        })
    }

    fn can_downgrade(_from_version: u32, _to_version: u32) -> bool {
        true
    }
}

baton_task_sdk::export_migrating!(CounterV2 with_types_in baton_task_sdk::migrating);
