//! The witness: a downstream service that sees what tasks *do*, not what
//! the cluster commits. Every tick of the `witnessed` example module calls
//! it once (a `tcp-exchange` of `task=NAME node=ID epoch=E tick=T`); it
//! holds each call for a while, as a slow API would, and records per call
//! the task, the node, the fencing token, and when the call began and ended
//! on the witness's own clock. Calls are recorded even when the caller gave
//! up on them: a downstream system goes on working after its client hangs
//! up, so an abandoned call still counts as a run. An HTTPS witness
//! ([`Witness::start_https`]) does the same for the requests of the
//! `webwatch` example, which name the task, node and token in headers.
//!
//! The checker over those records ([`check`](crate::witness_check::check))
//! says whether two runs of one task ever overlapped in time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// One call a tick made, as the witness saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub task: String,
    pub node: u64,
    pub epoch: u64,
    pub tick: u64,
    /// Microseconds since the witness started, when the call arrived.
    pub began_us: u64,
    /// When the witness answered it, or found its caller gone.
    pub ended_us: u64,
}

/// How often a held call is checked for a caller that is gone. A caller
/// that dies is seen gone only at the write after the one its death makes
/// the peer refuse: up to two of these late. At 5 ms, a kill that the heart
/// vouches for moved a task in less than that, and the witness reported its
/// dead owner's run as overlapping the new one by 1-2 ms (CI, 2026-12-05).
const PROBE_EVERY: Duration = Duration::from_millis(1);

impl Run {
    /// The run's fencing token, comparable as a pair.
    pub fn token(&self) -> (u64, u64) {
        (self.epoch, self.tick)
    }

    /// Parses a call's request, `task=NAME node=ID epoch=E tick=T`.
    fn parse(request: &str, began_us: u64, ended_us: u64) -> Option<Run> {
        let mut run = Run {
            task: String::new(),
            node: 0,
            epoch: 0,
            tick: 0,
            began_us,
            ended_us,
        };
        for field in request.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "task" => run.task = value.to_string(),
                "node" => run.node = value.parse().ok()?,
                "epoch" => run.epoch = value.parse().ok()?,
                "tick" => run.tick = value.parse().ok()?,
                _ => return None,
            }
        }
        (!run.task.is_empty()).then_some(run)
    }
}

/// What a witness records, shared by the calls it holds.
struct Ledger {
    started: Instant,
    runs: Mutex<Vec<Run>>,
    hold_ms: AtomicU64,
    /// Requests that did not parse (a broken module would show here).
    malformed: AtomicU64,
    /// How long an HTTPS witness waits before it takes up a connection's
    /// TLS handshake.
    handshake_delay_ms: AtomicU64,
    /// HTTPS connections that ended before a whole request head came.
    abandoned: AtomicU64,
    /// Calls being held now, per calling node.
    in_flight: Mutex<BTreeMap<u64, usize>>,
    /// The `authorization` header of each task's latest HTTPS request that
    /// had one (a secret sent as a bearer token).
    authorizations: Mutex<BTreeMap<String, String>>,
}

impl Ledger {
    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn hold(&self) -> Duration {
        Duration::from_millis(self.hold_ms.load(Ordering::Relaxed))
    }

    /// Counts a call of `request`'s node as held (`delta` 1) or no longer
    /// (-1).
    fn count(&self, request: &str, delta: isize) {
        if let Some(node) = Run::parse(request, 0, 0).map(|r| r.node) {
            let mut calls = self.in_flight.lock().expect("witness lock poisoned");
            let n: &mut usize = calls.entry(node).or_insert(0);
            *n = n.saturating_add_signed(delta);
        }
    }

    fn record(&self, request: &str, began_us: u64) {
        match Run::parse(request, began_us, self.now_us()) {
            Some(run) => self.runs.lock().expect("witness lock poisoned").push(run),
            None => {
                self.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A running witness; dropping it stops it.
pub struct Witness {
    addr: SocketAddr,
    ledger: Arc<Ledger>,
    /// The CA of an HTTPS witness's certificate (for `localhost`), PEM.
    ca_pem: Option<String>,
    server: JoinHandle<()>,
}

impl Witness {
    /// Listens on `bind` (`127.0.0.1:0` for process tests; a container
    /// network's gateway address for containers) and holds each call `hold`.
    pub async fn start(bind: &str, hold: Duration) -> std::io::Result<Witness> {
        Witness::serve(bind, hold, None).await
    }

    /// A witness for tasks that call it over HTTPS (the `webwatch` example):
    /// it takes a request's task, node and fencing token from its `baton-*`
    /// headers, holds it `hold`, and answers `ok`; a run ends there, or
    /// when the caller closes or resets the connection first. Its
    /// certificate names `localhost` and comes from a CA made here
    /// ([`Witness::ca_pem`]).
    pub async fn start_https(hold: Duration) -> std::io::Result<Witness> {
        let (config, ca_pem) = https_identity();
        Witness::serve("127.0.0.1:0", hold, Some((TlsAcceptor::from(config), ca_pem))).await
    }

    async fn serve(bind: &str, hold: Duration, https: Option<(TlsAcceptor, String)>) -> std::io::Result<Witness> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let ledger = Arc::new(Ledger {
            started: Instant::now(),
            runs: Mutex::new(Vec::new()),
            hold_ms: AtomicU64::new(hold.as_millis() as u64),
            malformed: AtomicU64::new(0),
            handshake_delay_ms: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
            authorizations: Mutex::new(BTreeMap::new()),
        });
        let (acceptor, ca_pem) = https.unzip();
        let server = tokio::spawn({
            let ledger = ledger.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let ledger = ledger.clone();
                    match acceptor.clone() {
                        None => tokio::spawn(hold_tcp_call(stream, ledger)),
                        Some(acceptor) => tokio::spawn(hold_https_call(stream, acceptor, ledger)),
                    };
                }
            }
        });
        Ok(Witness {
            addr,
            ledger,
            ca_pem,
            server,
        })
    }

    /// The address tasks call (their config and their `--allow-net` grant).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An HTTPS witness's URL (a task's config and, without its path, its
    /// `--allow-http` grant).
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.addr.port())
    }

    /// The CA an HTTPS witness's certificate comes from, PEM (a task's
    /// `--http-ca`).
    pub fn ca_pem(&self) -> &str {
        self.ca_pem.as_deref().expect("an HTTPS witness (Witness::start_https)")
    }

    /// Holds every call from now on for `hold`.
    pub fn set_hold(&self, hold: Duration) {
        self.ledger.hold_ms.store(hold.as_millis() as u64, Ordering::Relaxed);
    }

    /// Makes an HTTPS witness wait `delay` before it takes up each new
    /// connection's handshake: a caller frozen meanwhile is frozen before
    /// its request is written, so only the caller's own checks keep it from
    /// writing the request once it is thawed (and its turn is over).
    pub fn set_handshake_delay(&self, delay: Duration) {
        self.ledger
            .handshake_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// HTTPS connections that ended (closed, reset, or a failed handshake)
    /// before a whole request head came: requests their callers cut off.
    pub fn abandoned(&self) -> u64 {
        self.ledger.abandoned.load(Ordering::Relaxed)
    }

    /// Every run recorded so far.
    pub fn runs(&self) -> Vec<Run> {
        self.ledger.runs.lock().expect("witness lock poisoned").clone()
    }

    /// How many calls from node `node` the witness is holding now.
    pub fn in_flight(&self, node: u64) -> usize {
        let calls = self.ledger.in_flight.lock().expect("witness lock poisoned");
        calls.get(&node).copied().unwrap_or(0)
    }

    /// The `authorization` header of task `task`'s latest HTTPS request
    /// that had one.
    pub fn authorization(&self, task: &str) -> Option<String> {
        let seen = self.ledger.authorizations.lock().expect("witness lock poisoned");
        seen.get(task).cloned()
    }

    /// How many requests did not parse.
    pub fn malformed(&self) -> u64 {
        self.ledger.malformed.load(Ordering::Relaxed)
    }
}

/// One `tcp-exchange` call: its request to the end of the caller's
/// sending side, held with a byte written every [`PROBE_EVERY`] (a write
/// that fails means the caller is gone), then `ok`.
async fn hold_tcp_call(mut stream: TcpStream, ledger: Arc<Ledger>) {
    let mut request = Vec::new();
    let read = (&mut stream).take(4096).read_to_end(&mut request).await;
    let began_us = ledger.now_us();
    if read.is_err() {
        return;
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    ledger.count(&request, 1);
    let answer_at = tokio::time::Instant::now() + ledger.hold();
    let mut gone = false;
    while tokio::time::Instant::now() < answer_at {
        if stream.write_all(b".").await.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(PROBE_EVERY.min(answer_at - tokio::time::Instant::now())).await;
    }
    if !gone {
        let _ = stream.write_all(b"ok").await;
    }
    ledger.count(&request, -1);
    ledger.record(&request, began_us);
}

/// Longest request head an HTTPS witness reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// One HTTPS request: its head read, held (or until the caller closes or
/// resets the connection, which the witness sees at once since it reads
/// meanwhile), then answered `ok`.
async fn hold_https_call(stream: TcpStream, acceptor: TlsAcceptor, ledger: Arc<Ledger>) {
    let abandoned = || {
        ledger.abandoned.fetch_add(1, Ordering::Relaxed);
    };
    tokio::time::sleep(Duration::from_millis(ledger.handshake_delay_ms.load(Ordering::Relaxed))).await;
    let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await else {
        return abandoned();
    };
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return abandoned(),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD_BYTES {
            ledger.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    let began_us = ledger.now_us();
    let head = String::from_utf8_lossy(&head).into_owned();
    let request = identity(&head);
    if let (Some(task), Some(authorization)) = (header(&head, "baton-task"), header(&head, "authorization")) {
        let mut seen = ledger.authorizations.lock().expect("witness lock poisoned");
        seen.insert(task, authorization);
    }
    ledger.count(&request, 1);
    let gone = tokio::select! {
        _ = tokio::time::sleep(ledger.hold()) => false,
        _ = closed(&mut tls) => true,
    };
    if !gone {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
        let _ = tls.write_all(answer).await;
        let _ = tls.shutdown().await;
    }
    ledger.count(&request, -1);
    ledger.record(&request, began_us);
}

/// Reads until the peer closes or resets the connection.
async fn closed(stream: &mut (impl AsyncRead + Unpin)) {
    let mut buf = [0u8; 1024];
    while let Ok(1..) = stream.read(&mut buf).await {}
}

/// The `task=... node=... epoch=... tick=...` a request's `baton-task`,
/// `baton-node` and `baton-fencing-token` (`EPOCH.TICK`) headers name;
/// empty (so malformed) when one is missing.
fn identity(head: &str) -> String {
    let header = |name: &str| header(head, name);
    let fields = (|| {
        let (epoch, tick) = header("baton-fencing-token")?
            .split_once('.')
            .map(|(e, t)| (e.to_string(), t.to_string()))?;
        Some(format!(
            "task={} node={} epoch={epoch} tick={tick}",
            header("baton-task")?,
            header("baton-node")?
        ))
    })();
    fields.unwrap_or_default()
}

/// The value of header `name` in a request head, if it has it.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A CA (PEM), and a server config with a certificate it signed for
/// `localhost`: for HTTPS servers in tests and benchmarks.
pub fn https_identity() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    baton_node::tls::install_crypto_provider();
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("a server key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("a server certificate");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::try_from(key.serialize_der()).expect("the server key"),
        )
        .expect("a server config");
    (Arc::new(config), ca.pem())
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_the_task_node_and_token() {
        let run = Run::parse("task=w-1 node=2 epoch=3 tick=4", 10, 20).unwrap();
        assert_eq!((run.task.as_str(), run.node, run.token()), ("w-1", 2, (3, 4)));
        assert_eq!(Run::parse("task=w node=x", 0, 0), None);
        assert_eq!(Run::parse("", 0, 0), None);
    }

    #[tokio::test]
    async fn the_witness_records_each_call_with_its_hold() {
        let witness = Witness::start("127.0.0.1:0", Duration::from_millis(30)).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(witness.addr()).await.unwrap();
        stream.write_all(b"task=a node=1 epoch=1 tick=1").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        assert!(reply.ends_with(b"ok") && reply.len() > 2, "{reply:?}");
        let runs = witness.runs();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].ended_us - runs[0].began_us >= 30_000);
        assert_eq!(witness.in_flight(1), 0);
    }

    #[tokio::test]
    async fn a_call_is_in_flight_while_it_is_held() {
        let witness = Witness::start("127.0.0.1:0", Duration::from_secs(2)).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(witness.addr()).await.unwrap();
        stream.write_all(b"task=a node=7 epoch=1 tick=1").await.unwrap();
        stream.shutdown().await.unwrap();
        crate::poll_async(Duration::from_secs(3), "the call in flight", || async {
            (witness.in_flight(7) == 1).then_some(())
        })
        .await;
        assert_eq!(witness.in_flight(1), 0);
    }

    #[test]
    fn an_https_request_names_its_run_in_headers() {
        let head = "GET / HTTP/1.1\r\nhost: localhost\r\nBaton-Task: w-1\r\nbaton-node: 2\r\n\
                    baton-fencing-token: 3.4\r\n\r\n";
        let run = Run::parse(&identity(head), 0, 0).unwrap();
        assert_eq!((run.task.as_str(), run.node, run.token()), ("w-1", 2, (3, 4)));
        assert_eq!(identity("GET / HTTP/1.1\r\nbaton-task: w\r\n\r\n"), "");
    }

    #[tokio::test]
    async fn an_https_witness_holds_a_request_and_sees_its_caller_leave() {
        use rustls::pki_types::pem::PemObject;
        let witness = Witness::start_https(Duration::from_millis(30)).await.unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(witness.ca_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let addr = witness.addr();
        let call = |tick: u64| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut tls = connector.connect(name, tcp).await.unwrap();
                let head = format!(
                    "GET / HTTP/1.1\r\nhost: localhost\r\nbaton-task: a\r\nbaton-node: 1\r\n\
                     baton-fencing-token: 1.{tick}\r\n\r\n"
                );
                tls.write_all(head.as_bytes()).await.unwrap();
                tls
            }
        };
        let mut answered = Vec::new();
        call(1).await.read_to_end(&mut answered).await.unwrap();
        assert!(
            answered.ends_with(b"\r\n\r\nok"),
            "{}",
            String::from_utf8_lossy(&answered)
        );
        let runs = witness.runs();
        assert_eq!((runs.len(), runs[0].token()), (1, (1, 1)));
        assert!(runs[0].ended_us - runs[0].began_us >= 30_000);

        witness.set_hold(Duration::from_secs(5));
        let left = call(2).await;
        crate::poll_async(Duration::from_secs(3), "the request in flight", || async {
            (witness.in_flight(1) == 1).then_some(())
        })
        .await;
        drop(left);
        crate::poll_async(Duration::from_secs(3), "the run to end", || async {
            (witness.runs().len() == 2).then_some(())
        })
        .await;
        let run = &witness.runs()[1];
        assert!(run.ended_us - run.began_us < 1_000_000, "{run:?}");
        assert_eq!(witness.malformed(), 0);
    }

    #[tokio::test]
    async fn a_run_ends_when_its_caller_is_gone() {
        let witness = Witness::start("127.0.0.1:0", Duration::from_secs(5)).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(witness.addr()).await.unwrap();
        stream.write_all(b"task=a node=1 epoch=1 tick=1").await.unwrap();
        stream.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
        crate::poll_async(Duration::from_secs(3), "the run to end", || async {
            let runs = witness.runs();
            (runs.len() == 1).then_some(())
        })
        .await;
        let run = &witness.runs()[0];
        assert!(run.ended_us - run.began_us < 1_000_000, "{run:?}");
    }
}
