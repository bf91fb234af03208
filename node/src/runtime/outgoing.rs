//! `wasi:http/outgoing-handler`, as a task calls it: the request's server
//! must be granted (else `HTTP-request-denied`, and nothing is sent), and
//! the tick's fence must hold (else the tick ends there, as at any other
//! call with an outside effect); then wasmtime-wasi-http's own handler
//! builds the request and hands it to [`super::http_client`], which checks
//! both again as it sends.

use std::time::Instant;

use wasmtime::component::{Linker, Resource};
use wasmtime::{StoreContextMut, Trap};
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{RequestOptions, WasiHttpView};

use super::host::TaskHost;
use super::waits::Verdict;

/// The `wasi:http` release wasmtime-wasi-http defines (its
/// `wit/deps/http.wit`): the handler is replaced under this name, which
/// the component linker then gives every guest importing a 0.2 release.
/// Check it when that crate's pin in `Cargo.toml` moves: were it another,
/// the stock handler would stay for most guests, and only the send hook's
/// own checks (the grant, the fence) would stand.
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// Replaces wasmtime-wasi-http's `handle` in `linker` with [`handle`].
pub(crate) fn shadow_handle(linker: &mut Linker<TaskHost>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = linker.instance(OUTGOING_HANDLER).and_then(|mut instance| {
        instance.func_wrap(
            "handle",
            |mut store: StoreContextMut<'_, TaskHost>,
             (request, options): (Resource<HostOutgoingRequest>, Option<Resource<RequestOptions>>)| {
                handle(store.data_mut(), request, options).map(|answer| (answer,))
            },
        )
    });
    linker.allow_shadowing(false);
    defined
}

type Answer = Result<Resource<HostFutureIncomingResponse>, ErrorCode>;

fn handle(
    host: &mut TaskHost,
    request: Resource<HostOutgoingRequest>,
    options: Option<Resource<RequestOptions>>,
) -> wasmtime::Result<Answer> {
    let (scheme, authority) = {
        let asked = host.http().table.get(&request)?;
        (asked.scheme.clone(), asked.authority.clone().unwrap_or_default())
    };
    let tls = match scheme {
        // A request without a scheme goes over HTTPS.
        None | Some(Scheme::Https) => true,
        Some(Scheme::Http) => false,
        Some(Scheme::Other(_)) => return Ok(Err(ErrorCode::HttpProtocolError)),
    };
    // The grant first: a refused server says so even to a stale owner.
    if !host.task.http.permits(tls, &authority) {
        return Ok(Err(ErrorCode::HttpRequestDenied));
    }
    // Then the fence (and the budget), as the epoch checks ask them.
    match Verdict::at(&host.task.fence, host.deadline, Instant::now()) {
        Verdict::GoOn => {}
        Verdict::OverBudget => return Err(Trap::Interrupt.into()),
        Verdict::Fenced(e) => return Err(e.into()),
    }
    if !host.count_request() {
        return Ok(Err(ErrorCode::ConnectionLimitReached));
    }
    let mut view = host.http();
    match outgoing_handler::Host::handle(&mut view, request, options) {
        Ok(pending) => Ok(Ok(pending)),
        // An error code for the guest, or a trap.
        Err(e) => e.downcast().map(Err),
    }
}
