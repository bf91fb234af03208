//! Write a Baton task in Rust in a few lines.
//!
//! ```ignore
//! use baton_task_sdk::{Guest, Outcome};
//!
//! struct Counter;
//!
//! impl Guest for Counter {
//!     fn tick(state: Vec<u8>) -> Result<Outcome, String> {
//!         let n = baton_task_sdk::state::read_count(&state)? + 1;
//!         Ok(Outcome { state: baton_task_sdk::state::count(n), next_in_ms: None })
//!     }
//! }
//!
//! baton_task_sdk::export!(Counter with_types_in baton_task_sdk::bindings);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file is a component that `batonctl modules deploy` accepts.

/// The generated bindings of the `baton:task/task` world.
pub mod bindings {
    wit_bindgen::generate!({
        world: "task",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export",
    });
}

/// The bindings of the `baton:task/migrating-task` world: a task whose
/// state format differs from its other versions' and that converts between
/// them (`migrate`, `can-downgrade`). Implement its `Guest` and export it
/// with `baton_task_sdk::export_migrating!(T with_types_in
/// baton_task_sdk::migrating);`.
pub mod migrating {
    wit_bindgen::generate!({
        world: "migrating-task",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_migrating",
    });
}

pub use bindings::baton::task::host::{self, FencingToken, Level};
pub use bindings::{Guest, Outcome, export};
pub use migrating::export_migrating;

/// This tick's fencing token: the task's epoch (it rises every time the
/// task changes owner) and the number this tick will commit as. Send it
/// with every request that changes something downstream, and have the
/// downstream refuse a token lower than the highest it has seen for the
/// task: a node that lost the task (frozen, cut off) is then refused even
/// if its request arrives late.
pub fn fencing_token() -> FencingToken {
    host::token()
}

/// The network, as far as the task was granted it (`--allow-net`).
pub mod net {
    /// Sends `request` over a new TCP connection to `addr` and returns the
    /// reply (what the peer sends until it closes), at most `max_reply`
    /// bytes. Fails without connecting when `addr` was not granted or this
    /// node no longer owns the task; never outlasts the tick's deadline.
    pub fn exchange(addr: &str, request: &[u8], max_reply: u32) -> Result<Vec<u8>, String> {
        super::host::tcp_exchange(addr, request, max_reply)
    }
}

/// The task's secrets (`batonctl tasks add --secret NAME=...`), opened by
/// the node running the tick when asked for. Keep a value out of the
/// task's state and logs: Baton never shows it, and cannot stop the task
/// from showing it.
pub mod secrets {
    /// The value of the task's secret `name`; an error, saying why, when
    /// it has none of that name or this node cannot open it.
    pub fn get(name: &str) -> Result<Vec<u8>, String> {
        crate::bindings::baton::task::secrets::get(name)
    }

    /// [`get`] as UTF-8 text.
    pub fn text(name: &str) -> Result<String, String> {
        String::from_utf8(get(name)?).map_err(|_| format!("secret {name} is not UTF-8 text"))
    }
}

/// Logging through the node.
pub mod log {
    use super::host::{Level, log};

    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Helpers for common state encodings.
pub mod state {
    /// Reads a little-endian u64 state; an empty state (a new task) is 0.
    pub fn read_u64(state: &[u8]) -> Result<u64, String> {
        match state.len() {
            0 => Ok(0),
            8 => Ok(u64::from_le_bytes(state.try_into().expect("8 bytes"))),
            n => Err(format!("expected an 8-byte counter state, got {n} bytes")),
        }
    }

    /// Reads a count kept as decimal text (`42`, which `batonctl tasks
    /// list` shows as a number), or as the 8 little-endian bytes of
    /// [`read_u64`]; an empty state (a new task) is 0. The two cannot be
    /// mistaken: 8 bytes that are all ASCII digits would be a count above
    /// 3.4 * 10^18 in the older form.
    pub fn read_count(state: &[u8]) -> Result<u64, String> {
        if !state.is_empty() && state.iter().all(u8::is_ascii_digit) {
            let text = std::str::from_utf8(state).expect("ASCII digits");
            return text.parse().map_err(|e| format!("count {text:?}: {e}"));
        }
        read_u64(state).map_err(|_| format!("expected a count as decimal text or 8 bytes, got {} bytes", state.len()))
    }

    /// A count as [`read_count`] reads it: decimal text.
    pub fn count(n: u64) -> Vec<u8> {
        n.to_string().into_bytes()
    }
}

/// Outgoing HTTP(S) requests, through `wasi:http`, to the servers the task
/// was granted (`scheme://host[:port]`). A server not granted is refused
/// without a connection; a request never outlasts the tick's deadline, nor
/// this node's turn with the task (it is cut off, and the tick ends, when
/// the task moves). HTTPS is verified against the system's roots, or only
/// the CA the task names.
pub mod http {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    /// The default cap on a response body [`get`] reads.
    pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

    /// A response: its status, headers and whole body.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Response {
        pub status: u16,
        /// Names in lower case, in the order received.
        pub headers: Vec<(String, Vec<u8>)>,
        pub body: Vec<u8>,
    }

    impl Response {
        /// The first header called `name` (any case).
        pub fn header(&self, name: &str) -> Option<&[u8]> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
        }
    }

    /// GETs `url` and reads at most [`DEFAULT_MAX_BODY`] bytes of its body.
    pub fn get(url: &str) -> Result<Response, String> {
        request("GET", url, &[], &[], DEFAULT_MAX_BODY)
    }

    /// Headers that tell a server which run of which task calls it:
    /// `baton-task` (its name), `baton-node` (the node running it) and
    /// `baton-fencing-token` (`EPOCH.TICK`, see [`crate::fencing_token`]).
    /// A server that refuses a token lower than the highest it has seen for
    /// the task refuses a node that lost the task, however late its request
    /// arrives.
    pub fn identity_headers() -> [(&'static str, Vec<u8>); 3] {
        let token = crate::fencing_token();
        [
            ("baton-task", crate::host::task_name().into_bytes()),
            ("baton-node", crate::host::node_id().to_string().into_bytes()),
            (
                "baton-fencing-token",
                format!("{}.{}", token.epoch, token.tick).into_bytes(),
            ),
        ]
    }

    /// Sends `method url` with `headers` and `body`, and reads the response
    /// and at most `max_body` bytes of its body (more fails the request).
    pub fn request(
        method: &str,
        url: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        max_body: usize,
    ) -> Result<Response, String> {
        let (scheme, authority, path) = split_url(url)?;
        let fail = |what: &str| format!("{method} {url}: {what}");
        let mut fields: Vec<(String, Vec<u8>)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
        // A body of known length: cut off midway, it cannot look complete.
        if !body.is_empty() && !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
            fields.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        let fields = Fields::from_list(&fields).map_err(|e| fail(&format!("header: {e:?}")))?;
        let outgoing = OutgoingRequest::new(fields);
        let method = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        outgoing.set_method(&method).map_err(|()| fail("bad method"))?;
        outgoing.set_scheme(Some(&scheme)).map_err(|()| fail("bad scheme"))?;
        outgoing.set_authority(Some(authority)).map_err(|()| fail("bad host"))?;
        outgoing
            .set_path_with_query(Some(path))
            .map_err(|()| fail("bad path"))?;
        let sending = outgoing.body().map_err(|()| fail("no request body"))?;
        // Sent first, so that the body's writes flow to the server as they
        // are made rather than fill a buffer no one reads yet.
        let pending = outgoing_handler::handle(outgoing, None).map_err(|e| fail(&describe(&e)))?;
        if !body.is_empty() {
            let stream = sending.write().map_err(|()| fail("no request body stream"))?;
            write_all(&stream, body).map_err(|e| fail(&format!("sending the body: {e}")))?;
        }
        OutgoingBody::finish(sending, None).map_err(|e| fail(&describe(&e)))?;
        let response = loop {
            match pending.get() {
                Some(answer) => break answer,
                None => pending.subscribe().block(),
            }
        };
        let response = response
            .map_err(|()| fail("the response was taken twice"))?
            .map_err(|e| fail(&describe(&e)))?;
        let status = response.status();
        let headers = response.headers().entries();
        let incoming = response.consume().map_err(|()| fail("no response body"))?;
        let mut read = Vec::new();
        {
            let stream = incoming.stream().map_err(|()| fail("no response body stream"))?;
            loop {
                // Waits through wasi:io/poll, where the node bounds them by
                // the tick's deadline and fence.
                match stream.read(64 * 1024) {
                    Ok(chunk) if chunk.is_empty() => stream.subscribe().block(),
                    Ok(chunk) => {
                        if read.len() + chunk.len() > max_body {
                            return Err(fail(&format!("the response body is over {max_body} bytes")));
                        }
                        read.extend_from_slice(&chunk);
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(fail(&format!("reading the body: {}", e.to_debug_string())));
                    }
                }
            }
        }
        let _trailers = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers: headers.into_iter().map(|(n, v)| (n.to_ascii_lowercase(), v)).collect(),
            body: read,
        })
    }

    /// Writes all of `bytes` to `stream` and waits until they are flushed,
    /// waiting through wasi:io/poll.
    fn write_all(stream: &wasip2::io::streams::OutputStream, mut bytes: &[u8]) -> Result<(), String> {
        let failed = |e: StreamError| match e {
            StreamError::Closed => "the stream closed".to_string(),
            StreamError::LastOperationFailed(e) => e.to_debug_string(),
        };
        while !bytes.is_empty() {
            let room = stream.check_write().map_err(failed)? as usize;
            if room == 0 {
                stream.subscribe().block();
                continue;
            }
            let now = room.min(bytes.len());
            stream.write(&bytes[..now]).map_err(failed)?;
            bytes = &bytes[now..];
        }
        // Every byte is written: a stream closed from here on was closed by
        // the sender, done with a body whose Content-Length it has filled
        // (how the request went, the response says).
        match stream.flush() {
            Ok(()) => {}
            Err(StreamError::Closed) => return Ok(()),
            Err(e) => return Err(failed(e)),
        }
        loop {
            stream.subscribe().block();
            match stream.check_write() {
                Ok(0) => continue,
                Ok(_) | Err(StreamError::Closed) => return Ok(()),
                Err(e) => return Err(failed(e)),
            }
        }
    }

    /// A wasi:http error in words.
    fn describe(e: &ErrorCode) -> String {
        match e {
            ErrorCode::HttpRequestDenied => {
                "refused: the task was not granted this server (scheme://host[:port])".into()
            }
            ErrorCode::TlsCertificateError => "the server's TLS certificate is not trusted".into(),
            ErrorCode::ConnectionRefused => "the connection was refused".into(),
            ErrorCode::ConnectionLimitReached => "refused: too many requests in one tick".into(),
            ErrorCode::ConnectionTimeout => "no connection before the tick's deadline".into(),
            ErrorCode::HttpResponseTimeout => "no response before the tick's deadline".into(),
            ErrorCode::HttpResponseBodySize(Some(n)) => format!("the response body is over {n} bytes"),
            other => format!("{other:?}"),
        }
    }

    /// `scheme://authority/path?query` as its parts.
    fn split_url(url: &str) -> Result<(Scheme, &str, &str), String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(format!("{url:?}: a URL starts with http:// or https://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => (&rest[..at], &rest[at..]),
            Some(_) => return Err(format!("{url:?}: a query follows a path, such as /?q=1")),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: the host is missing"));
        }
        Ok((scheme, authority, path))
    }
}
