//! A control-API client for a whole cluster: it tries the endpoints in turn,
//! follows "not the leader" redirects (marked in metadata), and waits out
//! an election.
//!
//! It fails fast where waiting cannot help. Reaching an endpoint (TCP, TLS
//! and HTTP/2) gets [`CONNECT_BUDGET`], so a frozen node costs a command
//! about a second before the next is tried. When no endpoint can be reached
//! at all, the command ends with why, per endpoint ([`Unreachable`]): at once
//! for a certificate either side refused, after [`UNREACHABLE_GRACE`] when
//! nothing listens (a node restarting is back within it). Causes are read
//! from the typed errors in the source chain (I/O kinds, rustls errors),
//! never from their text.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use baton_node::tls::{TlsError, TlsMaterial};

use crate::connect::NodeConnector;
pub use crate::unreachable::{Unreachable, unreachable_cause};
use crate::unreachable::{chain, unreachable_message};
use baton_node::types::Rejection;
use baton_proto::control_client::ControlClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::cli::GlobalArgs;

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no endpoints: pass --endpoints HOST:PORT[,...], set BATON_ENDPOINTS \
         (after `batonctl dev`, run `source baton-dev/env`), or pick a context (`batonctl context list`)"
    )]
    NoEndpoints,
    #[error(
        "{0} is missing: pass --ca, --cert and --key (or BATON_CA, BATON_CERT, BATON_KEY), or --insecure for a cluster without TLS"
    )]
    MissingCert(&'static str),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{0:?} is not a valid endpoint: {1}")]
    BadEndpoint(String, String),
    #[error("{}", unreachable_message(.causes, *.insecure))]
    Unreachable {
        /// Each endpoint tried in the last round, and why it failed.
        causes: Vec<(String, Unreachable)>,
        insecure: bool,
    },
    #[error("{}", status_message(.0))]
    Refused(Status),
    #[error("no node could serve the request within {timeout:?} (tried {tried}); last error: {}", status_message(.last))]
    Exhausted {
        timeout: Duration,
        tried: String,
        last: Status,
    },
}

impl ClientError {
    /// Why the cluster's state refused the request, typed, when that is
    /// what happened (a node sends it as the status details).
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            ClientError::Refused(status) => baton_node::codec::rejection::from_status(status),
            _ => None,
        }
    }
}

/// `HOST:PORT` from an endpoint as a user may write it. A scheme is taken
/// when it matches the client (`https://` with TLS, `http://` with
/// --insecure), and a trailing slash is dropped; anything else is
/// explained.
pub fn endpoint_address(raw: &str, tls: bool) -> Result<String, String> {
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, raw),
    };
    match (scheme.as_deref(), tls) {
        (None, _) | (Some("https"), true) | (Some("http"), false) => {}
        (Some("https"), false) => {
            return Err("https:// needs TLS, and --insecure talks plain TCP: drop the scheme or --insecure".into());
        }
        (Some("http"), true) => {
            return Err(
                "nodes speak TLS unless started with insecure = true: write HOST:PORT (or \
                 https://HOST:PORT), or pass --insecure for an insecure cluster"
                    .into(),
            );
        }
        (Some(other), _) => {
            return Err(format!(
                "unknown scheme {other}://: write HOST:PORT, the node's listen address"
            ));
        }
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err("an endpoint is HOST:PORT, without a path".into());
    }
    let port = rest.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(port))) if !host.is_empty() && port != 0 => Ok(rest.to_string()),
        _ => Err("write HOST:PORT, with the node's port (its listen address, like 127.0.0.1:7001)".into()),
    }
}

fn status_message(status: &Status) -> String {
    format!("{}: {}", code_name(status.code()), status.message())
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "unauthenticated",
        Code::FailedPrecondition => "failed precondition",
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::ResourceExhausted => "too large",
        Code::Aborted => "refused",
        _ => "error",
    }
}

/// What to do after a failed call.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Retry at the leader's address.
    Redirect(String),
    /// Try another endpoint (this one is down, or knows no leader yet).
    TryElsewhere,
    /// The request itself was refused; retrying will not help.
    GiveUp,
}

/// Decides from the status's code and metadata, never from its message.
fn classify(status: &Status) -> Next {
    let metadata = status.metadata();
    let not_leader = metadata.get(baton_proto::NOT_LEADER_HEADER).is_some();
    let leader_addr = metadata
        .get(baton_proto::LEADER_ADDR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match (status.code(), not_leader, leader_addr) {
        (_, true, Some(addr)) => Next::Redirect(addr),
        (_, true, None) => Next::TryElsewhere,
        (Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled, _, _) => Next::TryElsewhere,
        // A node shutting down sent HTTP/2 GOAWAY before taking the call:
        // it did not refuse anything. (Like the codes above, and until
        // calls carry ids a node can recognise, a write whose answer was
        // lost may be sent again.)
        (Code::Internal, _, _) if shut_by_node(status) => Next::TryElsewhere,
        _ => Next::GiveUp,
    }
}

/// Whether the status stands for the node closing the connection in order
/// (a GOAWAY with no error) rather than for an answer.
fn shut_by_node(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = error.source();
    }
    false
}

/// The shortest time one attempt on one node is given.
const MIN_ATTEMPT: Duration = Duration::from_secs(2);

/// How long reaching one endpoint may take (TCP, TLS, HTTP/2): a frozen
/// node accepts the TCP connection and then answers nothing.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(1);

/// How long a command keeps trying while nothing listens at any endpoint
/// before it says so.
pub const UNREACHABLE_GRACE: Duration = Duration::from_secs(2);

/// How long one attempt on one node may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// A share of the budget: a node that takes the call and never answers
    /// (a stale leader cut off from its quorum) does not use it all.
    Share,
    /// Whatever is left of the budget: uploads, whose answer comes only
    /// once every byte is in and stored.
    Rest,
}

/// Whether a round in which no endpoint could be reached ends the command,
/// every endpoint having refused for `refusing_for` (rounds in a row):
/// certificates do not mend while it waits; a refused connection may be a
/// node restarting, so that gets `UNREACHABLE_GRACE`; a silent node only
/// ends it at the deadline.
fn unreachable_is_final(causes: &[(String, Unreachable)], refusing_for: Duration) -> bool {
    !causes.is_empty()
        && (causes.iter().all(|(_, c)| c.is_permanent())
            || (refusing_for >= UNREACHABLE_GRACE && causes.iter().all(|(_, c)| c.refuses())))
}

/// A client for the cluster's control API.
pub struct ClusterClient {
    endpoints: Vec<String>,
    connector: NodeConnector,
    insecure: bool,
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    /// The endpoint that last answered, tried first next time.
    preferred: Mutex<Option<String>>,
    /// Pause between rounds when every endpoint failed.
    retry_pause: Duration,
}

impl ClusterClient {
    /// Builds a client from the global arguments.
    pub fn from_args(args: &GlobalArgs) -> Result<Self, ClientError> {
        if args.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err(ClientError::NoEndpoints);
        }
        let tls = if args.insecure {
            None
        } else {
            let ca = args
                .ca
                .as_ref()
                .ok_or(ClientError::MissingCert("the CA certificate (--ca)"))?;
            let cert = args
                .cert
                .as_ref()
                .ok_or(ClientError::MissingCert("the admin certificate (--cert)"))?;
            let key = args
                .key
                .as_ref()
                .ok_or(ClientError::MissingCert("the admin key (--key)"))?;
            Some(TlsMaterial::load_files(ca, cert, key)?)
        };
        Self::new(args.endpoints.clone(), tls, Duration::from_secs(args.timeout_secs))
    }

    /// `tls: None` talks plain TCP. Endpoints are `HOST:PORT`, or with the
    /// scheme that matches `tls` ([`endpoint_address`]).
    pub fn new(endpoints: Vec<String>, tls: Option<TlsMaterial>, timeout: Duration) -> Result<Self, ClientError> {
        let endpoints = endpoints
            .into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .map(|e| endpoint_address(&e, tls.is_some()).map_err(|why| ClientError::BadEndpoint(e, why)))
            .collect::<Result<Vec<String>, ClientError>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        baton_node::tls::install_crypto_provider();
        let insecure = tls.is_none();
        let tls = tls.map(|tls| tls.rustls_client_config()).transpose()?;
        let client = ClusterClient {
            endpoints,
            connector: NodeConnector::new(tls),
            insecure,
            timeout,
            channels: Mutex::new(HashMap::new()),
            preferred: Mutex::new(None),
            retry_pause: Duration::from_millis(100),
        };
        for endpoint in &client.endpoints {
            client.endpoint(endpoint)?;
        }
        Ok(client)
    }

    /// Sets the pause between rounds of retries (100 ms by default).
    pub fn with_retry_pause(mut self, pause: Duration) -> Self {
        self.retry_pause = pause;
        self
    }

    /// How tonic sees `addr`: plain HTTP/2, since the connector makes the
    /// TLS connection itself.
    fn endpoint(&self, addr: &str) -> Result<Endpoint, ClientError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ClientError::BadEndpoint(addr.to_string(), e.to_string()))?
            .connect_timeout(CONNECT_BUDGET)
            .timeout(self.timeout)
            // A frozen or cut-off node keeps its TCP connection open: pings
            // find it out, so calls go elsewhere.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        Ok(endpoint)
    }

    /// A connection to `addr`, made within `budget` (TCP, TLS and the
    /// HTTP/2 greeting) or failed with why.
    async fn connect(&self, addr: &str, budget: Duration) -> Result<Channel, Unreachable> {
        if let Some(channel) = self.channels.lock().expect("channel lock poisoned").get(addr) {
            return Ok(channel.clone());
        }
        // A redirect may name an address this client was not given.
        let endpoint = self.endpoint(addr).map_err(|e| Unreachable::Other(e.to_string()))?;
        let connector = self.connector.clone();
        let target = addr.to_string();
        let connect = endpoint.connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let (connector, target) = (connector.clone(), target.clone());
            async move { connector.connect(&target).await }
        }));
        let channel = match tokio::time::timeout(budget, connect).await {
            Err(_) => return Err(Unreachable::NoAnswer(budget)),
            Ok(Err(e)) => return Err(unreachable_cause(&e).unwrap_or_else(|| Unreachable::Other(chain(&e)))),
            Ok(Ok(channel)) => channel,
        };
        self.channels
            .lock()
            .expect("channel lock poisoned")
            .insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Drops the connection to `addr`, so that the next attempt connects
    /// afresh within its budget.
    fn forget(&self, addr: &str) {
        self.channels.lock().expect("channel lock poisoned").remove(addr);
    }

    /// How long one attempt on one node may take: a quarter of the whole
    /// budget (at least 2 s), or what is left of it; never past the
    /// deadline.
    fn attempt_timeout(&self, attempt: Attempt, deadline: Instant) -> Duration {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let share = match attempt {
            Attempt::Share => (self.timeout / 4).max(MIN_ATTEMPT),
            Attempt::Rest => remaining,
        };
        share.min(remaining).max(Duration::from_millis(1))
    }

    /// Calls `f` with a copy of `request`, as [`call`](Self::call) does.
    pub async fn call_with<Req, T, F, Fut>(&self, request: &Req, mut f: F) -> Result<T, ClientError>
    where
        Req: Clone,
        F: FnMut(ControlClient<Channel>, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call(|client| f(client, request.clone())).await
    }

    /// Calls `f` on a node that can serve it: the preferred endpoint first,
    /// then the others, following leader redirects, until `timeout`.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: FnMut(ControlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_within(Attempt::Share, f).await
    }

    /// As [`call`](Self::call), for calls that take long by nature
    /// (uploads): an attempt may use all that is left of the budget. A node
    /// that freezes meanwhile is still found out by the HTTP/2 pings.
    pub async fn call_long<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: FnMut(ControlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_within(Attempt::Rest, f).await
    }

    async fn call_within<T, F, Fut>(&self, attempt: Attempt, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(ControlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut queue: VecDeque<String> = VecDeque::new();
        let mut tried: Vec<String> = Vec::new();
        let mut last = Status::unavailable("no endpoint answered");
        // This round's endpoints that could not be reached, and whether
        // any could.
        let mut unreachable: Vec<(String, Unreachable)> = Vec::new();
        let mut reached = false;
        // Since when every round has found every endpoint refusing.
        let mut refusing_since: Option<Instant> = None;
        loop {
            if queue.is_empty() {
                if !tried.is_empty() {
                    if reached || !unreachable.iter().all(|(_, c)| c.refuses()) {
                        refusing_since = None;
                    } else {
                        refusing_since.get_or_insert_with(Instant::now);
                    }
                    let refusing_for = refusing_since.map_or(Duration::ZERO, |since| since.elapsed());
                    if !reached && unreachable_is_final(&unreachable, refusing_for) {
                        return Err(self.unreachable(unreachable));
                    }
                    // Every endpoint failed this round (down, or an election is
                    // on): wait a little before the next round.
                    if Instant::now() >= deadline {
                        return Err(self.gave_up(tried, last, reached, unreachable));
                    }
                    tokio::time::sleep(self.retry_pause).await;
                }
                unreachable.clear();
                reached = false;
                let preferred = self.preferred.lock().expect("lock poisoned").clone();
                queue.extend(preferred.clone());
                queue.extend(
                    self.endpoints
                        .iter()
                        .filter(|e| Some(*e) != preferred.as_ref())
                        .cloned(),
                );
            }
            let addr = queue.pop_front().expect("queue refilled above");
            if !tried.contains(&addr) {
                tried.push(addr.clone());
            }
            let budget = CONNECT_BUDGET
                .min(deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1));
            let channel = match self.connect(&addr, budget).await {
                Ok(channel) => channel,
                Err(cause) => {
                    unreachable.push((addr, cause));
                    if Instant::now() >= deadline {
                        return Err(self.gave_up(tried, last, reached, unreachable));
                    }
                    continue;
                }
            };
            let client =
                ControlClient::new(channel).max_decoding_message_size(baton_node::api::CONTROL_MAX_MESSAGE_BYTES);
            // One node may not use up the whole budget: a node may take the
            // call and never answer.
            let limit = self.attempt_timeout(attempt, deadline);
            let answer = tokio::time::timeout(limit, f(client)).await.unwrap_or_else(|_| {
                // Its connection may be to a node frozen since: the next
                // attempt connects afresh, within its budget.
                self.forget(&addr);
                Err(Status::deadline_exceeded(format!(
                    "{addr} did not answer within {limit:?}"
                )))
            });
            match answer {
                Ok(response) => {
                    *self.preferred.lock().expect("lock poisoned") = Some(addr);
                    return Ok(response.into_inner());
                }
                Err(status) => {
                    if let Some(cause) = unreachable_cause(&status) {
                        // The connection failed under the call (a certificate
                        // refused after the handshake, a node gone since).
                        self.forget(&addr);
                        unreachable.push((addr, cause));
                    } else {
                        reached = true;
                        match classify(&status) {
                            Next::GiveUp => return Err(ClientError::Refused(status)),
                            Next::Redirect(leader) => queue.push_front(leader),
                            Next::TryElsewhere => {}
                        }
                    }
                    last = status;
                }
            }
            if Instant::now() >= deadline {
                return Err(self.gave_up(tried, last, reached, unreachable));
            }
        }
    }

    fn unreachable(&self, causes: Vec<(String, Unreachable)>) -> ClientError {
        ClientError::Unreachable {
            causes,
            insecure: self.insecure,
        }
    }

    /// The error at the deadline: why each endpoint could not be reached
    /// if none could this round, else the last answer.
    fn gave_up(
        &self,
        tried: Vec<String>,
        last: Status,
        reached: bool,
        unreachable: Vec<(String, Unreachable)>,
    ) -> ClientError {
        if !reached && !unreachable.is_empty() {
            return self.unreachable(unreachable);
        }
        ClientError::Exhausted {
            timeout: self.timeout,
            tried: tried.join(", "),
            last,
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    fn not_leader(message: &str, leader_addr: Option<&'static str>) -> Status {
        let mut status = Status::failed_precondition(message);
        let metadata = status.metadata_mut();
        metadata.insert(baton_proto::NOT_LEADER_HEADER, MetadataValue::from_static("1"));
        if let Some(addr) = leader_addr {
            metadata.insert(baton_proto::LEADER_ADDR_HEADER, MetadataValue::from_static(addr));
        }
        status
    }

    #[test]
    fn a_redirect_names_the_leader() {
        let status = not_leader("whatever the words", Some("127.0.0.1:7002"));
        assert_eq!(classify(&status), Next::Redirect("127.0.0.1:7002".into()));
    }

    #[test]
    fn no_leader_yet_and_unavailable_nodes_are_retried_elsewhere() {
        assert_eq!(classify(&not_leader("whatever the words", None)), Next::TryElsewhere);
        assert_eq!(classify(&Status::unavailable("connection refused")), Next::TryElsewhere);
    }

    #[test]
    fn a_refusal_that_mentions_a_leader_is_still_a_refusal() {
        // Only the metadata makes a redirect: the words do not.
        let status = Status::failed_precondition("this node is not the leader; node 2 at 127.0.0.1:7002 is");
        assert_eq!(classify(&status), Next::GiveUp);
    }

    #[test]
    fn refusals_are_final() {
        assert_eq!(
            classify(&Status::invalid_argument("keys must be 1 to 256 bytes")),
            Next::GiveUp
        );
        assert_eq!(classify(&Status::permission_denied("admin only")), Next::GiveUp);
        assert_eq!(
            classify(&Status::failed_precondition("cannot remove the last voter")),
            Next::GiveUp
        );
    }

    #[test]
    fn every_rejection_a_client_can_meet_is_final_and_typed() {
        for rejection in baton_node::codec::rejection::samples() {
            let status = baton_node::api::rejected(&rejection);
            assert_eq!(classify(&status), Next::GiveUp, "{rejection:?}");
            let err = ClientError::Refused(status);
            assert_eq!(err.rejection().as_ref(), Some(&rejection));
            assert!(err.to_string().ends_with(&rejection.to_string()), "{err}");
        }
        // A refusal that is not the state's carries no rejection.
        let err = ClientError::Refused(Status::failed_precondition("cannot remove the last voter"));
        assert_eq!(err.rejection(), None);
    }

    #[test]
    fn a_client_needs_an_endpoint() {
        assert!(matches!(
            ClusterClient::new(vec![" ".into()], None, Duration::from_secs(1)),
            Err(ClientError::NoEndpoints)
        ));
    }

    #[test]
    fn an_endpoint_may_carry_the_scheme_that_matches_the_client() {
        assert_eq!(endpoint_address("10.0.0.1:7001", true).unwrap(), "10.0.0.1:7001");
        assert_eq!(endpoint_address("https://node-1:7001/", true).unwrap(), "node-1:7001");
        assert_eq!(endpoint_address("HTTP://[::1]:7001", false).unwrap(), "[::1]:7001");
        assert!(
            endpoint_address("http://10.0.0.1:7001", true)
                .unwrap_err()
                .contains("--insecure")
        );
        assert!(
            endpoint_address("https://10.0.0.1:7001", false)
                .unwrap_err()
                .contains("needs TLS")
        );
        assert!(
            endpoint_address("grpc://10.0.0.1:7001", true)
                .unwrap_err()
                .contains("unknown scheme")
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1:",
            ":7001",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "h:7001/api",
        ] {
            assert!(endpoint_address(bad, true).is_err(), "{bad}");
        }
        let err = ClusterClient::new(vec!["http://127.0.0.1:7001".into()], None, Duration::from_secs(1));
        assert!(err.is_ok());
        let err = ClusterClient::new(vec!["127.0.0.1".into()], None, Duration::from_secs(1));
        assert!(matches!(err, Err(ClientError::BadEndpoint(..))));
    }

    #[test]
    fn certificates_end_a_command_at_once_and_silence_only_at_its_deadline() {
        let at = |cause: Unreachable| vec![("n:1".to_string(), cause)];
        let cert = Unreachable::CertificateRefused("UnknownCA".into());
        assert!(unreachable_is_final(&at(cert.clone()), Duration::ZERO));
        assert!(!unreachable_is_final(
            &at(Unreachable::NothingListens),
            Duration::from_millis(500)
        ));
        assert!(unreachable_is_final(
            &at(Unreachable::NothingListens),
            UNREACHABLE_GRACE
        ));
        let silent = Unreachable::NoAnswer(CONNECT_BUDGET);
        assert!(!unreachable_is_final(&at(silent.clone()), Duration::from_secs(20)));
        let mixed = vec![
            ("a:1".to_string(), Unreachable::NothingListens),
            ("b:1".to_string(), silent),
        ];
        assert!(!unreachable_is_final(&mixed, Duration::from_secs(20)));
        assert!(!unreachable_is_final(&[], Duration::from_secs(20)));
        let message = ClientError::Unreachable {
            causes: at(cert),
            insecure: false,
        }
        .to_string();
        assert!(message.contains("n:1: the node refused this client's certificate (TLS alert UnknownCA)"));
        assert!(message.contains("BATON_CERT"), "{message}");
    }
}
