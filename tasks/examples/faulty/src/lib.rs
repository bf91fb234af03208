//! `faulty`: counts like `counter`, and misbehaves as its JSON config says:
//!
//! - `{"trap": true}`: every tick traps (a Rust panic aborts the instance);
//! - `{"trap_every": N}`: tick number N, 2N, ... traps;
//! - `{"fail": true}`: every tick returns an error;
//! - `{"spin": true}`: every tick loops forever (the node's time budget stops it);
//! - `{"sleep_ms": N}`: every tick sleeps N ms (waiting in `wasi:io/poll`,
//!   where no guest code runs: the node's budget and fence stop it there too);
//! - `{"get": URL, "times": N}`: every tick GETs the URL N times (once
//!   without `times`), failing at the first error;
//! - `{"blocking_get": "HOST:PORT"}`: every tick GETs `http://HOST:PORT/`
//!   and reads the body with `wasi:io`'s `blocking-read` (which waits in
//!   the host, not in `wasi:io/poll`), failing at the first error;
//! - `{"allocate_mib": N}`: every tick allocates N MiB (past the memory limit it fails);
//! - `{"remember": true}`: every tick fails if its instance's memory still
//!   holds what an earlier tick wrote there (each tick has a fresh instance,
//!   so only the state carries over).

use std::sync::atomic::{AtomicU64, Ordering};

use baton_task_sdk::{Guest, Outcome, host, state};
use serde::Deserialize;

/// The last tick this instance ran, in its linear memory (zero at start).
static EARLIER_TICK: AtomicU64 = AtomicU64::new(0);

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    trap: bool,
    trap_every: u64,
    fail: bool,
    spin: bool,
    sleep_ms: u64,
    get: Option<String>,
    blocking_get: Option<String>,
    times: Option<u32>,
    allocate_mib: u64,
    remember: bool,
}

struct Faulty;

impl Guest for Faulty {
    fn tick(previous: Vec<u8>) -> Result<Outcome, String> {
        let raw = host::task_config();
        let config: Config = if raw.is_empty() {
            Config::default()
        } else {
            serde_json::from_slice(&raw).map_err(|e| format!("bad config: {e}"))?
        };
        let count = state::read_u64(&previous)? + 1;
        if config.remember {
            let earlier = EARLIER_TICK.swap(count, Ordering::Relaxed);
            if earlier != 0 {
                return Err(format!("faulty: tick {count} found tick {earlier}'s memory"));
            }
        }
        if config.trap || (config.trap_every > 0 && count % config.trap_every == 0) {
            panic!("faulty: trapping on tick {count} as configured");
        }
        if config.fail {
            return Err(format!("faulty: failing tick {count} as configured"));
        }
        if config.spin {
            let mut x: u64 = count;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        if config.sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(config.sleep_ms));
        }
        if let Some(url) = &config.get {
            for _ in 0..config.times.unwrap_or(1) {
                baton_task_sdk::http::get(url)?;
            }
        }
        if let Some(authority) = &config.blocking_get {
            blocking_get(authority)?;
        }
        if config.allocate_mib > 0 {
            let block = vec![1u8; (config.allocate_mib * 1024 * 1024) as usize];
            std::hint::black_box(&block);
        }
        Ok(Outcome { state: count.to_le_bytes().to_vec(), next_in_ms: None })
    }
}

/// GETs `http://{authority}/` and reads its body with `blocking-read`.
fn blocking_get(authority: &str) -> Result<usize, String> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "authority")?;
    request.set_path_with_query(Some("/")).map_err(|()| "path")?;
    let body = request.body().map_err(|()| "body")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match pending.get() {
            Some(answer) => break answer,
            None => pending.subscribe().block(),
        }
    };
    let response = response.map_err(|()| "taken twice")?.map_err(|e| format!("{e:?}"))?;
    let incoming = response.consume().map_err(|()| "no body")?;
    let stream = incoming.stream().map_err(|()| "no body stream")?;
    let mut read = 0;
    loop {
        match stream.blocking_read(4096) {
            Ok(chunk) => read += chunk.len(),
            Err(StreamError::Closed) => return Ok(read),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

baton_task_sdk::export!(Faulty with_types_in baton_task_sdk::bindings);
