//! `counter`: its state is the number of its committed ticks, as a
//! little-endian u64. Every failover and swap test uses it: a counter whose
//! state differs from its committed tick count has lost or repeated a tick.

use baton_task_sdk::{Guest, Outcome, state};

struct Counter;

impl Guest for Counter {
    fn tick(previous: Vec<u8>) -> Result<Outcome, String> {
        let count = state::read_u64(&previous)? + 1;
        Ok(Outcome { state: count.to_le_bytes().to_vec(), next_in_ms: None })
    }
}

baton_task_sdk::export!(Counter with_types_in baton_task_sdk::bindings);
