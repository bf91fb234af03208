//! How a tick's outgoing HTTP requests are sent (`wasi:http`, the hook
//! [`WasiHttpHooks::send_request`] of wasmtime-wasi-http, which Baton
//! writes itself rather than take the stock one: that trusts only a
//! compiled-in root list and waits up to ten minutes).
//!
//! - Only to a server a grant names ([`HttpGrant`]), checked again here
//!   beside the check at the call ([`super::outgoing`]).
//! - Every step (connect, TLS, sending, the response's head) within the
//!   tick's deadline and while the tick's fence holds, asked again every
//!   [`RECHECK`] as the guest's own waits are: a request whose tick's turn
//!   ended is dropped where it stands, its connection reset so that a
//!   request cut off midway never reaches the server looking complete.
//!   The fence is asked once more just before the request is written.
//! - TLS against the system's roots, or only the CA the task names.
//! - The response body capped ([`HttpAccess::max_response_bytes`]).

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::fence::Fence;
use super::http_grant::HttpGrant;
use super::waits::{RECHECK, Verdict};

/// What a task may reach over HTTP, and how.
#[derive(Clone)]
pub struct HttpAccess {
    /// The servers it may call; none, none at all.
    pub grants: Vec<HttpGrant>,
    /// The TLS client config its requests use: only the CA the task names
    /// ([`HttpAccess::with_ca`]), or with none the system's roots (read at
    /// the first request that needs them).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Largest response body a request may read.
    pub max_response_bytes: u64,
}

/// The default cap on a response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

impl Default for HttpAccess {
    fn default() -> Self {
        HttpAccess {
            grants: Vec::new(),
            tls: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl std::fmt::Debug for HttpAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAccess")
            .field("grants", &self.grants)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl HttpAccess {
    /// Access to `grants`, trusting the system's roots.
    pub fn granted(grants: Vec<HttpGrant>) -> HttpAccess {
        HttpAccess {
            grants,
            ..HttpAccess::default()
        }
    }

    /// The same access, trusting only the CA certificates in `ca_pem`.
    pub fn with_ca(self, ca_pem: &[u8]) -> Result<HttpAccess, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| format!("the task's CA: {e}"))?;
            roots.add(cert).map_err(|e| format!("the task's CA: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the task's CA holds no PEM certificate".into());
        }
        Ok(HttpAccess {
            tls: Some(Arc::new(client_config(roots))),
            ..self
        })
    }

    /// Whether a grant lets a request with `tls` reach `authority`.
    pub fn permits(&self, tls: bool, authority: &str) -> bool {
        self.grants.iter().any(|g| g.permits(tls, authority))
    }
}

fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The system's roots (read once; certificates that cannot be read are
/// skipped and logged).
fn system_roots() -> Arc<rustls::ClientConfig> {
    static SYSTEM: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!("reading the system's TLS roots: {e}");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, skipped) = roots.add_parsable_certificates(found.certs);
            if skipped > 0 {
                tracing::warn!("skipped {skipped} of the system's TLS roots that could not be used");
            }
            tracing::debug!("{added} system TLS roots for tasks' HTTPS requests");
            Arc::new(client_config(roots))
        })
        .clone()
}

/// The hooks of one tick's `wasi:http`.
pub(crate) struct TaskHttp {
    pub(crate) access: HttpAccess,
    pub(crate) fence: Fence,
    pub(crate) deadline: Instant,
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for TaskHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let (access, fence, deadline) = (self.access.clone(), self.fence.clone(), self.deadline);
        Box::new(async move {
            let deadline = match options.and_then(|o| o.connect_timeout.max(o.first_byte_timeout)) {
                // The guest may ask for less time, never for more.
                Some(asked) => deadline.min(Instant::now() + asked),
                None => deadline,
            };
            send(request, access, fence, deadline).await
        })
    }
}

/// Runs `step` while the fence holds and the deadline is ahead; `late` is
/// the error for a deadline passed.
async fn bounded<T>(
    fence: &Fence,
    deadline: Instant,
    late: fn() -> Error,
    step: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let mut step = pin!(step);
    loop {
        let now = Instant::now();
        match Verdict::at(fence, deadline, now) {
            Verdict::GoOn => {}
            Verdict::OverBudget => return Err(late()),
            Verdict::Fenced(e) => return Err(Error::InternalError(Some(format!("cut off: {e}")))),
        }
        let next = (now + RECHECK).min(deadline);
        tokio::select! {
            biased;
            done = &mut step => return done,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

async fn send(
    mut request: http::Request<WasiBody>,
    access: HttpAccess,
    fence: Fence,
    deadline: Instant,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    let uri = request.uri().clone();
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let authority = uri
        .authority()
        .ok_or(Error::HttpRequestUriInvalid)?
        .as_str()
        .to_string();
    let grant = access
        .grants
        .iter()
        .find(|g| g.permits(tls, &authority))
        .ok_or(Error::HttpRequestDenied)?;
    let (host, port) = (grant.host.clone(), grant.port);
    let tcp = bounded(&fence, deadline, || Error::ConnectionTimeout, async {
        tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(Error::Connect)
    })
    .await?;
    // Dropped before the end (the fence closed, the deadline passed), the
    // connection is reset, not closed: what is unsent is discarded rather
    // than delivered looking complete.
    #[allow(deprecated, reason = "a reset on drop is what is wanted here")]
    tcp.set_linger(Some(Duration::ZERO)).map_err(Error::Connect)?;
    let _ = tcp.set_nodelay(true);
    type Stream = Box<dyn Io>;
    let stream: Stream = match tls {
        true => {
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::from(ip),
                Err(_) => {
                    rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?
                }
            };
            let config = access.tls.clone().unwrap_or_else(system_roots);
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = bounded(&fence, deadline, || Error::ConnectionTimeout, async {
                connector.connect(name, tcp).await.map_err(tls_error)
            })
            .await?;
            Box::new(tls)
        }
        false => Box::new(tcp),
    };
    let (mut sender, conn) = bounded(&fence, deadline, || Error::ConnectionTimeout, async {
        hyper::client::conn::http1::Builder::new()
            .handshake::<_, WasiBody>(TokioIo::new(stream))
            .await
            .map_err(Error::from)
    })
    .await?;
    // The request names its scheme and authority; on the wire only the
    // path and query go (Host carries the authority).
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    // The last question before the request is written.
    if let Verdict::Fenced(e) = Verdict::at(&fence, deadline, Instant::now()) {
        return Err(Error::InternalError(Some(format!("not sent: {e}"))));
    }
    let mut conn = Some(conn);
    let response = bounded(&fence, deadline, || Error::HttpResponseTimeout, async {
        let mut sending = pin!(sender.send_request(request));
        // The connection is driven while the response's head is awaited.
        std::future::poll_fn(|cx| {
            if let Poll::Ready(response) = sending.as_mut().poll(cx) {
                return Poll::Ready(response.map_err(Error::from));
            }
            if let Some(driving) = conn.as_mut() {
                let ended = ready!(Pin::new(driving).poll(cx));
                conn = None;
                if let Err(e) = ended {
                    return Poll::Ready(Err(Error::from(e)));
                }
                return sending.as_mut().poll(cx).map_err(Error::from);
            }
            Poll::Pending
        })
        .await
    })
    .await?;
    let cap = access.max_response_bytes;
    let response = response.map(|incoming| {
        Capped {
            incoming,
            left: cap,
            cap,
        }
        .boxed_unsync()
    });
    // What is left of the connection runs as the body is read, and ends
    // with the tick (the response it belongs to is dropped then).
    let rest: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        match conn {
            Some(conn) => conn.await.map_err(Error::from),
            None => Ok(()),
        }
    });
    Ok((response, rest))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A TLS failure as `wasi:http` names it: a certificate the roots do not
/// vouch for, or another TLS error.
fn tls_error(e: std::io::Error) -> Error {
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    match certificate {
        true => Error::TlsCertificateError,
        false => Error::Tls(e),
    }
}

/// A response body that fails once it has given more than its cap.
struct Capped {
    incoming: hyper::body::Incoming,
    left: u64,
    cap: u64,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.incoming).poll_frame(cx));
        let Some(frame) = frame else { return Poll::Ready(None) };
        let frame = frame.map_err(Error::from)?;
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.left {
                return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.cap)))));
            }
            self.left -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
