//! `witnessed`: a counter whose every tick calls a witness service (the
//! `HOST:PORT` in its config, which the task must be granted with
//! `--allow-net`) with its name, its node and its fencing token, and counts
//! only once the witness answered. The witness (`cluster-tests`) records
//! when each call began and ended, so a test can see whether two nodes ever
//! ran the task at once.

use baton_task_sdk::{Guest, Outcome, fencing_token, host, net};

struct Witnessed;

impl Guest for Witnessed {
    fn tick(state: Vec<u8>) -> Result<Outcome, String> {
        let n = baton_task_sdk::state::read_u64(&state)?;
        let witness = String::from_utf8(host::task_config()).map_err(|e| e.to_string())?;
        let token = fencing_token();
        let call = format!(
            "task={} node={} epoch={} tick={}",
            host::task_name(),
            host::node_id(),
            token.epoch,
            token.tick
        );
        // The witness writes a byte now and then while it holds the call
        // (to notice a caller that is gone), and "ok" when it answers.
        let reply = net::exchange(witness.trim(), call.as_bytes(), 64 * 1024)?;
        if !reply.ends_with(b"ok") {
            return Err(format!("the witness answered {:?}", String::from_utf8_lossy(&reply)));
        }
        Ok(Outcome {
            state: (n + 1).to_le_bytes().to_vec(),
            next_in_ms: None,
        })
    }
}

baton_task_sdk::export!(Witnessed with_types_in baton_task_sdk::bindings);
