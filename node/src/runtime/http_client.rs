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

use super::fence::{Fence, FenceError};
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

/// `pem` as a task's CA is kept: its certificates, each encoded anew, and
/// nothing else, so that the same certificates always read the same (and
/// hash the same in `tasks show`). A section that is not a certificate (a
/// private key pasted along, say) is refused: it would otherwise enter the
/// replicated log for good.
pub fn canonical_ca(pem: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine;
    use rustls::pki_types::pem::{PemObject, SectionKind};
    if pem.len() > MAX_HTTP_CA_BYTES {
        return Err(format!(
            "the task's CA is {} bytes; it may be at most {MAX_HTTP_CA_BYTES} bytes (a few CA certificates; \
             for a public CA, name none and the system's roots are used)",
            pem.len()
        ));
    }
    let mut out = String::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| format!("the task's CA: {e}"))?;
        if kind != SectionKind::Certificate {
            return Err(format!(
                "the task's CA holds a {kind:?} section; give CA certificates only (never a key)"
            ));
        }
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    if out.is_empty() {
        return Err("the task's CA holds no PEM certificate".into());
    }
    Ok(out.into_bytes())
}

/// Most HTTP servers one task may be granted.
pub const MAX_HTTP_GRANTS: usize = 32;

/// Largest CA (PEM) a task may name: it is kept in the task's spec, in
/// every node's state and snapshots.
pub const MAX_HTTP_CA_BYTES: usize = 16 * 1024;

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

    /// What a task's spec grants: the servers in `allow_http`
    /// (`scheme://host[:port]` each) and, when `ca_pem` is not empty, only
    /// that CA for HTTPS. The one rule `tasks add` checks a request with
    /// and the runner builds each task's access by.
    pub fn of_task(allow_http: &[String], ca_pem: &[u8]) -> Result<HttpAccess, String> {
        if allow_http.len() > MAX_HTTP_GRANTS {
            return Err(format!(
                "{} HTTP servers are granted; a task may be granted at most {MAX_HTTP_GRANTS}",
                allow_http.len()
            ));
        }
        let grants = allow_http
            .iter()
            .map(|text| HttpGrant::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        let access = HttpAccess::granted(grants);
        if ca_pem.is_empty() {
            return Ok(access);
        }
        if !access.grants.iter().any(|g| g.tls) {
            return Err("the task names a CA but is granted no https:// server to use it with".into());
        }
        access.with_ca(&canonical_ca(ca_pem)?)
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

/// The system's roots (read once, when the engine starts; certificates
/// that cannot be read are skipped and logged).
pub(crate) fn system_roots() -> Arc<rustls::ClientConfig> {
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

/// Requests one tick may make; past them `handle` answers
/// `connection-limit-reached`. Each is a socket and a task.
pub(crate) const MAX_REQUESTS_PER_TICK: u32 = 64;

/// What the requests of one tick share with it.
#[derive(Clone, Default)]
pub(crate) struct TickState {
    /// Set when the tick's store is dropped: a request body that ends after
    /// that was cut off by the tick's end, not finished by the guest.
    ended: Arc<std::sync::atomic::AtomicBool>,
    /// Why a request was cut off by the fence, if one was.
    cut_off: Arc<OnceLock<FenceError>>,
}

impl TickState {
    /// The tick is over.
    pub(crate) fn end(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn has_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why a request of the tick was cut off by its fence, if one was.
    pub(crate) fn cut_off(&self) -> Option<FenceError> {
        self.cut_off.get().cloned()
    }
}

/// The hooks of one tick's `wasi:http`.
pub(crate) struct TaskHttp {
    pub(crate) access: HttpAccess,
    pub(crate) fence: Fence,
    pub(crate) deadline: Instant,
    pub(crate) tick: TickState,
    /// Requests made so far (see [`MAX_REQUESTS_PER_TICK`]).
    pub(crate) requests: u32,
}

/// A response, and what is left of its connection to run.
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

impl WasiHttpHooks for TaskHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<Sent, Error>> + Send> {
        let bounds = Bounds {
            fence: self.fence.clone(),
            deadline: self.deadline,
            tick: self.tick.clone(),
        };
        let access = self.access.clone();
        Box::new(async move {
            // The guest may ask for less time until the response's head,
            // never for more.
            let head_by = match options.and_then(|o| o.connect_timeout.max(o.first_byte_timeout)) {
                Some(asked) => bounds.deadline.min(Instant::now() + asked),
                None => bounds.deadline,
            };
            send(request, access, bounds, head_by).await
        })
    }
}

/// What bounds a tick's request: its fence, its deadline, and the tick
/// itself.
#[derive(Clone)]
struct Bounds {
    fence: Fence,
    deadline: Instant,
    tick: TickState,
}

impl Bounds {
    /// Why the request must stop now, if it must, as the error that says
    /// so (`late` for `deadline` passed); a closed fence is recorded for
    /// the tick.
    fn stop(&self, late: fn() -> Error, deadline: Instant) -> Option<Error> {
        match Verdict::at(&self.fence, deadline, Instant::now()) {
            Verdict::GoOn => None,
            Verdict::OverBudget => Some(late()),
            Verdict::Fenced(e) => {
                let said = format!("cut off: {e}");
                let _ = self.tick.cut_off.set(e);
                Some(Error::InternalError(Some(said)))
            }
        }
    }

    /// Runs `step` while the fence holds and `deadline` is ahead.
    async fn run<T>(
        &self,
        deadline: Instant,
        late: fn() -> Error,
        step: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut step = pin!(step);
        loop {
            if let Some(stop) = self.stop(late, deadline) {
                return Err(stop);
            }
            let next = (Instant::now() + RECHECK).min(deadline);
            tokio::select! {
                biased;
                done = &mut step => return done,
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }
}

async fn send(
    request: http::Request<WasiBody>,
    access: HttpAccess,
    bounds: Bounds,
    head_by: Instant,
) -> Result<Sent, Error> {
    let uri = request.uri().clone();
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let authority = uri
        .authority()
        .ok_or(Error::HttpRequestUriInvalid)?
        .as_str()
        .to_string();
    // Only where a grant names: its own host and port are what is dialled.
    let grant = access
        .grants
        .iter()
        .find(|g| g.permits(tls, &authority))
        .ok_or(Error::HttpRequestDenied)?;
    let (host, port) = (grant.host.clone(), grant.port);
    let tcp = bounds
        .run(head_by, || Error::ConnectionTimeout, async {
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
    let stream: Box<dyn Io> = match tls {
        true => {
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::from(ip),
                Err(_) => {
                    rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?
                }
            };
            let config = access.tls.clone().unwrap_or_else(system_roots);
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = bounds
                .run(head_by, || Error::ConnectionTimeout, async {
                    connector.connect(name, tcp).await.map_err(tls_error)
                })
                .await?;
            Box::new(tls)
        }
        false => Box::new(tcp),
    };
    let (mut sender, conn) = bounds
        .run(head_by, || Error::ConnectionTimeout, async {
            hyper::client::conn::http1::Builder::new()
                .handshake::<_, WasiBody>(TokioIo::new(stream))
                .await
                .map_err(Error::from)
        })
        .await?;
    // The request names its scheme and authority; on the wire only the
    // path and query go (Host carries the authority). Its body is read
    // only while the tick may act (see [`FencedBody`]).
    let mut request = request.map(|inner| {
        FencedBody {
            inner,
            bounds: bounds.clone(),
        }
        .boxed_unsync()
    });
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    // The last question before the request is written.
    if let Some(stop) = bounds.stop(|| Error::ConnectionTimeout, head_by) {
        return Err(stop);
    }
    let mut conn = Some(conn);
    let response = bounds
        .run(head_by, || Error::HttpResponseTimeout, async {
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
    // What is left of the connection (the response's body, what is left of
    // the request's) runs under the same bounds, to the tick's own
    // deadline: cut off, the connection is reset, and a guest reading the
    // body is told.
    let rest: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        let Some(conn) = conn else { return Ok(()) };
        let deadline = bounds.deadline;
        bounds
            .run(deadline, || Error::HttpResponseTimeout, async {
                conn.await.map_err(Error::from)
            })
            .await
    });
    Ok((response, rest))
}

/// A request body that is read only while its tick may act, and that
/// fails, rather than ends, when the tick ended before the guest finished
/// it: a request cut off midway must never look complete to the server
/// (without a `Content-Length`, a plain end would send the last chunk).
struct FencedBody {
    inner: WasiBody,
    bounds: Bounds,
}

impl Body for FencedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let deadline = self.bounds.deadline;
        if let Some(stop) = self.bounds.stop(|| Error::ConnectionWriteTimeout, deadline) {
            return Poll::Ready(Some(Err(stop)));
        }
        if frame.is_none() && self.bounds.tick.has_ended() {
            let said = "cut off: the tick ended before the request's body did";
            return Poll::Ready(Some(Err(Error::InternalError(Some(said.into())))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        crate::tls::install_crypto_provider();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_task_is_granted_what_its_spec_names_and_nothing_else() {
        let none = HttpAccess::of_task(&[], b"").unwrap();
        assert!(none.grants.is_empty() && none.tls.is_none());
        let api = HttpAccess::of_task(&["https://api.example.com".into()], b"").unwrap();
        assert!(api.permits(true, "api.example.com:443"));
        assert!(!api.permits(false, "api.example.com:443"));
        assert!(api.tls.is_none(), "no CA named: the system's roots");
        let own = HttpAccess::of_task(&["https://10.0.0.5:8443".into()], ca_pem().as_bytes()).unwrap();
        assert!(own.tls.is_some());
    }

    #[test]
    fn a_spec_the_rule_refuses_says_why() {
        let refused = |grants: &[&str], ca: &[u8]| {
            let grants: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
            HttpAccess::of_task(&grants, ca).unwrap_err()
        };
        assert!(refused(&["ftp://x"], b"").contains("scheme://host[:port]"));
        let many: Vec<String> = (0..=MAX_HTTP_GRANTS).map(|i| format!("https://h{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(refused(&many, b"").contains("at most 32"));
        assert!(refused(&["http://10.0.0.5"], ca_pem().as_bytes()).contains("no https:// server"));
        assert!(refused(&["https://x"], b"not a certificate").contains("no PEM certificate"));
        let huge = vec![b'a'; MAX_HTTP_CA_BYTES + 1];
        assert!(refused(&["https://x"], &huge).contains("at most 16384 bytes"));
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let with_key = ca_pem() + &key;
        assert!(
            refused(&["https://x"], with_key.as_bytes()).contains("give CA certificates only (never a key)"),
            "a key went along"
        );
    }

    #[test]
    fn a_ca_is_kept_as_its_certificates_alone() {
        let pem = ca_pem();
        let canonical = canonical_ca(pem.as_bytes()).unwrap();
        let noisy = format!("a comment\r\n{}\n\n", pem.replace('\n', "\r\n"));
        assert_eq!(canonical_ca(noisy.as_bytes()).unwrap(), canonical);
        assert_eq!(
            canonical_ca(&canonical).unwrap(),
            canonical,
            "the form is a fixed point"
        );
        let two = canonical_ca(format!("{pem}{}", ca_pem()).as_bytes()).unwrap();
        assert_eq!(String::from_utf8(two).unwrap().matches("BEGIN CERTIFICATE").count(), 2);
    }
}
