//! `netprobe`: sends `ping` to the address in its config (plain text, like
//! `127.0.0.1:7000`) and keeps the reply as its state. A task gets no
//! network unless `tasks add --allow-net` grants the address, so without a
//! grant every tick fails.

use baton_task_sdk::{Guest, Outcome, host, net};

struct NetProbe;

impl Guest for NetProbe {
    fn tick(_state: Vec<u8>) -> Result<Outcome, String> {
        let addr = String::from_utf8(host::task_config()).map_err(|e| e.to_string())?;
        let reply = net::exchange(addr.trim(), b"ping", 1024 * 1024)?;
        Ok(Outcome { state: reply, next_in_ms: None })
    }
}

baton_task_sdk::export!(NetProbe with_types_in baton_task_sdk::bindings);
