//! A downstream service for `netprobe` tasks: it answers every 4-byte
//! `ping` with a fixed number of bytes, which the task keeps as its state
//! (an API poller keeping a response). Cluster tests use it to give tasks
//! states of a chosen size.

use std::io::{Read, Write};
use std::net::TcpListener;

/// Serves on `bind` (port 0 for any), answering every ping with `size`
/// bytes, on a thread of its own for the life of the process; returns the
/// address it listens on.
pub fn answering(bind: &str, size: usize) -> std::io::Result<String> {
    let listener = TcpListener::bind(bind)?;
    let addr = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut ping = [0u8; 4];
                if stream.read_exact(&mut ping).is_ok() {
                    let _ = stream.write_all(&vec![b'x'; size]);
                }
            });
        }
    });
    Ok(addr)
}
