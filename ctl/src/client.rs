//! A control-API client for a whole cluster: it tries the endpoints in turn,
//! follows "not the leader" redirects (marked in metadata), and waits out
//! an election.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use baton_node::tls::{TlsError, TlsMaterial};
use baton_node::types::Rejection;
use baton_proto::control_client::ControlClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::cli::GlobalArgs;

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no endpoints: pass --endpoints HOST:PORT[,...] or set BATON_ENDPOINTS \
         (after `batonctl dev`, run `source baton-dev/env`)"
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

/// A client for the cluster's control API.
pub struct ClusterClient {
    endpoints: Vec<String>,
    tls: Option<TlsMaterial>,
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

    /// `tls: None` talks plain TCP.
    pub fn new(endpoints: Vec<String>, tls: Option<TlsMaterial>, timeout: Duration) -> Result<Self, ClientError> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        baton_node::tls::install_crypto_provider();
        let client = ClusterClient {
            endpoints,
            tls,
            timeout,
            channels: Mutex::new(HashMap::new()),
            preferred: Mutex::new(None),
            retry_pause: Duration::from_millis(100),
        };
        for endpoint in &client.endpoints {
            client.channel(endpoint)?;
        }
        Ok(client)
    }

    /// Sets the pause between rounds of retries (100 ms by default).
    pub fn with_retry_pause(mut self, pause: Duration) -> Self {
        self.retry_pause = pause;
        self
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut channels = self.channels.lock().expect("channel lock poisoned");
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let bad = |e: tonic::transport::Error| ClientError::BadEndpoint(addr.to_string(), e.to_string());
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| ClientError::BadEndpoint(addr.to_string(), e.to_string()))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(self.timeout)
            // A frozen or cut-off node keeps its TCP connection open: pings
            // find it out, so calls go elsewhere.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.client_config(None)).map_err(bad)?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// How long one attempt on one node may take: a quarter of the whole
    /// budget (at least 2 s), and never past the deadline.
    fn attempt_timeout(&self, deadline: Instant) -> Duration {
        let remaining = deadline.saturating_duration_since(Instant::now());
        (self.timeout / 4)
            .max(MIN_ATTEMPT)
            .min(remaining)
            .max(Duration::from_millis(1))
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
    pub async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(ControlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut queue: VecDeque<String> = VecDeque::new();
        let mut tried: Vec<String> = Vec::new();
        let mut last = Status::unavailable("no endpoint answered");
        loop {
            if queue.is_empty() {
                if !tried.is_empty() {
                    // Every endpoint failed this round (down, or an election is
                    // on): wait a little before the next round.
                    if Instant::now() >= deadline {
                        return Err(ClientError::Exhausted {
                            timeout: self.timeout,
                            tried: tried.join(", "),
                            last,
                        });
                    }
                    tokio::time::sleep(self.retry_pause).await;
                }
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
            let client = ControlClient::new(self.channel(&addr)?)
                .max_decoding_message_size(baton_node::api::CONTROL_MAX_MESSAGE_BYTES);
            // One node may not use up the whole budget: a frozen node accepts
            // connections and then answers nothing.
            let attempt = self.attempt_timeout(deadline);
            let answer = tokio::time::timeout(attempt, f(client)).await.unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "{addr} did not answer within {attempt:?}"
                )))
            });
            match answer {
                Ok(response) => {
                    *self.preferred.lock().expect("lock poisoned") = Some(addr);
                    return Ok(response.into_inner());
                }
                Err(status) => {
                    if !tried.contains(&addr) {
                        tried.push(addr.clone());
                    }
                    match classify(&status) {
                        Next::GiveUp => return Err(ClientError::Refused(status)),
                        Next::Redirect(leader) => queue.push_front(leader),
                        Next::TryElsewhere => {}
                    }
                    last = status;
                }
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Exhausted {
                    timeout: self.timeout,
                    tried: tried.join(", "),
                    last,
                });
            }
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
}
