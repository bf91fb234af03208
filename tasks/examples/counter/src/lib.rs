//! `counter`: its state is the number of its committed ticks, as decimal
//! text (`tasks list` shows it as a number). Every failover and swap test
//! uses it: a counter whose state differs from its committed tick count has
//! lost or repeated a tick. It reads the 8 little-endian bytes that earlier
//! builds of it wrote, so a cluster running one can deploy this over it; a
//! rollback to such a build would find states it cannot read.

use baton_task_sdk::{Guest, Outcome, state};

struct Counter;

impl Guest for Counter {
    fn tick(previous: Vec<u8>) -> Result<Outcome, String> {
        let count = state::read_count(&previous)? + 1;
        Ok(Outcome { state: state::count(count), next_in_ms: None })
    }
}

baton_task_sdk::export!(Counter with_types_in baton_task_sdk::bindings);
