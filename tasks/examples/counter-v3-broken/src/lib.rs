//! `counter`, version 3, broken on purpose: every tick traps. Deploy it over
//! version 2 to watch a rollout's canary gate fail and the rollout revert by
//! itself; no task's state is ever written by it.

use baton_task_sdk::{Guest, Outcome};

struct BrokenCounter;

impl Guest for BrokenCounter {
    fn tick(_previous: Vec<u8>) -> Result<Outcome, String> {
        panic!("counter v3 is broken on purpose: every tick traps")
    }
}

baton_task_sdk::export!(BrokenCounter with_types_in baton_task_sdk::bindings);
