//! `netprobe`: connects over TCP to the address in its config (plain text,
//! like `127.0.0.1:7000`), sends `ping`, and keeps the reply as its state.
//! A task gets no network unless `tasks add --allow-net` grants the address,
//! so without a grant every tick fails.

use std::io::{Read, Write};
use std::net::TcpStream;

use baton_task_sdk::{Guest, Outcome, host};

struct NetProbe;

impl Guest for NetProbe {
    fn tick(_state: Vec<u8>) -> Result<Outcome, String> {
        let addr = String::from_utf8(host::task_config()).map_err(|e| e.to_string())?;
        let mut stream = TcpStream::connect(addr.trim()).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.write_all(b"ping").map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).map_err(|e| e.to_string())?;
        Ok(Outcome { state: reply, next_in_ms: None })
    }
}

baton_task_sdk::export!(NetProbe with_types_in baton_task_sdk::bindings);
