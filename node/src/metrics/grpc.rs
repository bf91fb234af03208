//! `baton_grpc_requests_total{service, method, code}`: a tower layer on the
//! node's gRPC server that counts every call when it ends, by its status.
//!
//! A call's status comes in the response's headers when it fails before
//! any message (a "trailers-only" answer, as every refusal is), else in
//! the trailers after its last message; a call whose response is dropped
//! before either (the client went away) counts as `Cancelled`. Methods are
//! labelled from the fixed list the build takes from the protos
//! (`baton_proto::GRPC_METHODS`): any other path counts as `other`, so a
//! client cannot grow the set of series.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::Frame;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tonic::Code;
use tonic::codegen::{BoxFuture, Service, http};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CallLabels {
    service: &'static str,
    method: &'static str,
    code: &'static str,
}

/// The calls counted, and the names they are counted under.
#[derive(Debug, Clone)]
pub struct GrpcCalls {
    pub(crate) counts: Family<CallLabels, Counter>,
    names: Arc<HashMap<&'static str, (&'static str, &'static str)>>,
}

impl Default for GrpcCalls {
    fn default() -> Self {
        let names = baton_proto::GRPC_METHODS
            .iter()
            .map(|(path, service, method)| (*path, (*service, *method)))
            .collect();
        GrpcCalls {
            counts: Family::default(),
            names: Arc::new(names),
        }
    }
}

impl GrpcCalls {
    /// The (service, method) a request path names, or ("other", "other").
    fn name(&self, path: &str) -> (&'static str, &'static str) {
        self.names.get(path).copied().unwrap_or(("other", "other"))
    }

    fn count(&self, (service, method): (&'static str, &'static str), code: Code) {
        self.counts
            .get_or_create(&CallLabels {
                service,
                method,
                code: code_name(code),
            })
            .inc();
    }
}

/// gRPC's name for `code`, as gRPC's own metrics write it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The status a header map carries, if any.
fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// The layer: wrap the server's routes with it.
#[derive(Debug, Clone)]
pub struct GrpcCounting {
    calls: GrpcCalls,
}

impl GrpcCounting {
    pub fn new(calls: GrpcCalls) -> GrpcCounting {
        GrpcCounting { calls }
    }
}

impl<S> tower_layer::Layer<S> for GrpcCounting {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            calls: self.calls.clone(),
        }
    }
}

/// The server's routes, counting each call.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    calls: GrpcCalls,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Counted<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // Open from the start: a caller that gives up (its deadline, a
        // cancel) while the handler works drops the future, and with it
        // the call, counted as cancelled.
        let mut open = OpenCall {
            calls: self.calls.clone(),
            name: self.calls.name(request.uri().path()),
            counted: false,
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            if let Some(code) = status_in(response.headers()) {
                open.end(code);
            }
            Ok(response.map(|inner| CountedBody {
                inner,
                open: Some(open),
            }))
        })
    }
}

/// A call whose status is not counted yet; dropped uncounted, it counts as
/// cancelled.
#[derive(Debug)]
struct OpenCall {
    calls: GrpcCalls,
    name: (&'static str, &'static str),
    counted: bool,
}

impl OpenCall {
    fn end(&mut self, code: Code) {
        if !self.counted {
            self.counted = true;
            self.calls.count(self.name, code);
        }
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its call when the trailers pass.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        open: Option<OpenCall>,
    }
}

impl<B: http_body::Body> http_body::Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(|t| status_in(t).unwrap_or(Code::Unknown)),
            Poll::Ready(Some(Err(_))) => Some(Code::Internal),
            // The body ended without trailers: no status was sent.
            Poll::Ready(None) => Some(Code::Unknown),
            Poll::Pending => None,
        };
        if let (Some(code), Some(open)) = (ended, this.open.as_mut()) {
            open.end(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_protos_is_named_and_others_are_not() {
        let calls = GrpcCalls::default();
        assert_eq!(calls.name("/baton.v1.Control/Status"), ("Control", "Status"));
        assert_eq!(calls.name("/baton.v1.Raft/AppendEntries"), ("Raft", "AppendEntries"));
        assert_eq!(calls.name("/baton.v1.Control/NoSuchThing"), ("other", "other"));
        assert!(baton_proto::GRPC_METHODS.len() > 30, "{:?}", baton_proto::GRPC_METHODS);
    }

    #[test]
    fn a_call_counts_once_and_a_dropped_one_as_cancelled() {
        let calls = GrpcCalls::default();
        let mut open = OpenCall {
            calls: calls.clone(),
            name: ("Control", "Status"),
            counted: false,
        };
        open.end(Code::Ok);
        open.end(Code::Internal);
        drop(open);
        drop(OpenCall {
            calls: calls.clone(),
            name: ("Control", "Status"),
            counted: false,
        });
        let count = |code| {
            calls
                .counts
                .get_or_create(&CallLabels {
                    service: "Control",
                    method: "Status",
                    code,
                })
                .get()
        };
        assert_eq!((count("OK"), count("Internal"), count("Canceled")), (1, 0, 1));
    }
}
