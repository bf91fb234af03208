//! `witnessed`, version 2, broken on purpose: every tick calls the witness
//! as version 1 does (so the witness sees it run) and then fails. Deployed
//! over version 1, its canary's gate fails and the rollout reverts while
//! ticks of it are in flight; the witness must still see one run of a task
//! at a time, and no state of it is ever committed.

use baton_task_sdk::{Guest, Outcome, fencing_token, host, net};

struct BrokenWitnessed;

impl Guest for BrokenWitnessed {
    fn tick(_state: Vec<u8>) -> Result<Outcome, String> {
        let witness = String::from_utf8(host::task_config()).map_err(|e| e.to_string())?;
        let token = fencing_token();
        let call = format!(
            "task={} node={} epoch={} tick={}",
            host::task_name(),
            host::node_id(),
            token.epoch,
            token.tick
        );
        net::exchange(witness.trim(), call.as_bytes(), 64 * 1024)?;
        Err("witnessed v2 is broken on purpose: every tick fails after its call".into())
    }
}

baton_task_sdk::export!(BrokenWitnessed with_types_in baton_task_sdk::bindings);
