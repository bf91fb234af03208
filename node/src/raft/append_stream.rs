//! AppendEntries pipelined on one long-lived call per follower
//! (`Raft.StreamAppendEntries`), from cluster version
//! [`STREAMED_APPEND`](crate::state::cluster_version::STREAMED_APPEND).
//!
//! openraft hands each follower's replication to the network as a stream
//! of AppendEntries requests, made as entries are appended and commits
//! advance. With unary calls (openraft's `stream_append_sequential`, what
//! nodes do below that version) each request waits for the answer to the
//! one before it: a round trip, HTTP/2 headers both ways and a timer per
//! request, and an entry-less request that carries a commit holds back the
//! next one with entries. On one stream the leader sends each request as
//! openraft makes it, and the follower answers each, in order, once it has
//! flushed its entries (openraft's `Raft::stream_append`).
//!
//! The answers are the unary call's append replies: PartialSuccess naming
//! the last log id the follower holds, Conflict, or HigherVote; the
//! follower's answers end with the first Conflict or HigherVote. The pure
//! [`InFlight`] pairs each answer with the request it answers, which gives
//! a Conflict the log id openraft wants, and says when the oldest
//! unanswered request is overdue: `rpc_timeout` of its bytes after it was
//! sent or after the answer before it, whichever is later, as a unary call
//! times out, but with at least [`ANSWER_PATIENCE`] where a unary call has
//! openraft's 37.5 ms. An overdue stream, or one that ends with requests
//! unanswered, is an error that openraft retries at once (not
//! `Unreachable`, which it backs off from), and openraft opens the next
//! stream from the last entry the follower acknowledged.
//!
//! At most [`MAX_UNANSWERED`] requests wait for their answers on a stream;
//! the next is taken from openraft only when one is answered. There
//! is one stream per follower at a time: a stream given up stops taking
//! requests (see [`outgoing`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::RaftRequest;
use baton_proto::raft_client::RaftClient;
use futures::stream::{BoxStream, Stream, StreamExt};
use openraft::errors::NetworkError;
use prost::Message;
use tokio::sync::Notify;
use tonic::Streaming;
use tonic::transport::Channel;

use super::message_limits::rpc_timeout;
use super::peer_channels::{CONNECT_TIMEOUT, PeerChannels};
use crate::codec::DecodeError;
use crate::codec::raft::{append_entries_to, append_reply_from};
use crate::metrics::ReplicationCall;
use crate::types::NodeId;
use crate::types::typ::{AppendEntriesRequest, AppendEntriesResponse, LogId, RpcError, StreamAppendResult};

/// Requests sent on one stream and not yet answered, at most. One more waits
/// in openraft, gathering the entries appended meanwhile: a request for
/// each entry as it comes, at 10,000 ticks a second, had a follower
/// answer 20-30 at a time, late enough for the deadline to give its
/// stream up (BENCHMARKS.md, "Streamed AppendEntries"). Two lets an
/// entry-less request that moves the commit go beside one with entries.
pub const MAX_UNANSWERED: usize = 2;

/// The least time a stream's oldest unanswered request is given before the
/// stream is given up, where openraft allows an AppendEntries its
/// heartbeat's soft TTL (37.5 ms). A unary call that times out is sent
/// again on a fresh call; an answer on a stream that is slow is still
/// coming (TCP does not lose it), and giving the stream up costs more
/// than waiting: the next stream opens a call and resends everything
/// unanswered to a follower that is already behind. Under load, with the
/// soft TTL, each new stream to a busy follower was given up in turn for a
/// second or more while that follower's ticks started late (BENCHMARKS.md,
/// "Streamed AppendEntries"). A follower that is gone is found by the
/// connection's keepalive (a ping every 1 s, answered within 1 s) or by
/// this.
pub const ANSWER_PATIENCE: Duration = Duration::from_secs(1);

// Opening a stream waits the patience, which must leave a connection the
// time it may take to open.
const _: () = assert!(ANSWER_PATIENCE.as_millis() >= CONNECT_TIMEOUT.as_millis());

/// One request sent on the stream and not yet answered.
#[derive(Debug)]
struct Sent {
    prev: Option<LogId>,
    last: Option<LogId>,
    bytes: usize,
    carries_entries: bool,
    at: Instant,
}

/// The requests sent on one stream and not yet answered, oldest first.
#[derive(Debug, Default)]
pub struct InFlight {
    sent: VecDeque<Sent>,
    last_answer: Option<Instant>,
}

/// An answer, paired with the request it answers.
#[derive(Debug)]
pub struct Answer {
    /// What openraft's replication takes.
    pub result: StreamAppendResult,
    /// The request carried entries (an entry-less one only moves the
    /// commit, or probes).
    pub carried_entries: bool,
    /// The stream is over after this answer: a conflict, a higher vote,
    /// or a follower that took only part of the request.
    pub ends: bool,
}

/// An answer that cannot be paired with its request.
#[derive(Debug, thiserror::Error)]
pub enum Unpaired {
    #[error("it answered an append it was not sent")]
    Unasked,
    #[error("it answered a conflict to an append from the start of the log, which cannot conflict")]
    ConflictAtStart,
    #[error("it answered without an append reply")]
    NoReply,
    #[error("it claims to hold {matching:?}, outside what the append it answers was sent after and up to")]
    OutOfRange { matching: Option<LogId> },
    #[error("its answer does not decode: {0}")]
    Malformed(#[from] DecodeError),
}

impl InFlight {
    /// Notes a request as sent at `at`, `bytes` long on the wire.
    pub fn sent(&mut self, rpc: &AppendEntriesRequest, bytes: usize, at: Instant) {
        let last = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        self.sent.push_back(Sent {
            prev: rpc.prev_log_id,
            last,
            bytes,
            carries_entries: !rpc.entries.is_empty(),
            at,
        });
    }

    /// Pairs the next answer, received at `at`, with the oldest request.
    pub fn answer(&mut self, reply: AppendEntriesResponse, at: Instant) -> Result<Answer, Unpaired> {
        let sent = self.sent.pop_front().ok_or(Unpaired::Unasked)?;
        self.last_answer = Some(at);
        if matches!(reply, AppendEntriesResponse::Conflict) && sent.prev.is_none() {
            return Err(Unpaired::ConflictAtStart);
        }
        let partial = match &reply {
            AppendEntriesResponse::PartialSuccess(matching) => Some(*matching),
            _ => None,
        };
        // A follower cannot hold less than what the request was sent after
        // (it would have answered a conflict) nor more than it was sent.
        if let Some(matching) = partial
            && (matching < sent.prev || matching > sent.last)
        {
            return Err(Unpaired::OutOfRange { matching });
        }
        let ends_short = partial.is_some_and(|matching| matching != sent.last);
        let result = reply.into_stream_result(sent.prev, sent.last);
        let ends = result.is_err() || ends_short;
        Ok(Answer {
            result,
            carried_entries: sent.carries_entries,
            ends,
        })
    }

    /// How many requests wait for their answers.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// When the oldest unanswered request is overdue, with `base` allowed
    /// for one request (as [`open`] passes it, openraft's per-request
    /// timeout but at least [`ANSWER_PATIENCE`]): `None` when nothing
    /// waits.
    pub fn deadline(&self, base: Duration) -> Option<Instant> {
        let oldest = self.sent.front()?;
        let from = self.last_answer.map_or(oldest.at, |answered| answered.max(oldest.at));
        Some(from + rpc_timeout(base, oldest.bytes))
    }
}

/// Where a stream reports what it replicated (the `replication` part of
/// `batonctl status`).
#[derive(Clone)]
pub struct Progress {
    pub target: NodeId,
    pub channels: Arc<PeerChannels>,
}

/// The answers of one open stream, as openraft's replication reads them.
pub type Answers = BoxStream<'static, Result<StreamAppendResult, RpcError>>;

/// What the answers coming back share with the requests going out.
pub struct Shared {
    in_flight: Arc<Mutex<InFlight>>,
    /// Wakes a reader that waits with nothing in flight when a request is
    /// sent, so that it starts that request's clock.
    sent: Arc<Notify>,
    /// Wakes the requests waiting for room when an answer comes.
    answered: Arc<Notify>,
    /// Ends the requests when dropped with the reader of the answers.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The requests going out on one stream. (A type of its own: tonic's call
/// future is not provably `Send` with a boxed `dyn Stream` as its request,
/// a compiler limit with higher-ranked lifetimes.)
pub struct Requests(BoxStream<'static, RaftRequest>);

impl Stream for Requests {
    type Item = RaftRequest;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<RaftRequest>> {
        self.0.as_mut().poll_next(cx)
    }
}

/// `input`'s requests as they go on the stream, each noted in flight as
/// tonic takes it to send.
///
/// They end when the answers are dropped (with [`Shared`]'s stop): once
/// its response has begun, hyper goes on sending a call's requests
/// whether or not anyone reads the answers, and openraft's input belongs
/// to the follower's replication, not to one stream. A stream given up
/// (overdue, or over after a conflict) must stop taking requests that
/// the next stream is to send.
pub fn outgoing<S>(input: S) -> (Requests, Shared)
where
    S: Stream<Item = AppendEntriesRequest> + Send + Unpin + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shared = Shared {
        in_flight: Arc::default(),
        sent: Arc::default(),
        answered: Arc::default(),
        _stop: stop,
    };
    let (in_flight, sent) = (shared.in_flight.clone(), shared.sent.clone());
    let room = (input, shared.in_flight.clone(), shared.answered.clone());
    let requests = futures::stream::unfold(room, |(mut input, in_flight, answered)| async move {
        // A request is taken from openraft only once there is room for it,
        // so that the entries appended meanwhile go in it together.
        loop {
            let full = lock(&in_flight).len() >= MAX_UNANSWERED;
            if !full {
                break;
            }
            answered.notified().await;
        }
        let rpc = input.next().await?;
        Some((rpc, (input, in_flight, answered)))
    });
    let requests = requests
        .take_until(stopped)
        .map(move |rpc| {
            let message = RaftRequest {
                append_entries: Some(append_entries_to(&rpc)),
                ..Default::default()
            };
            lock(&in_flight).sent(&rpc, message.encoded_len(), Instant::now());
            sent.notify_one();
            message
        })
        .boxed();
    (Requests(requests), shared)
}

/// Opens the stream of `request` (the requests of [`outgoing`], with the
/// call's headers) to the follower behind `client`, and returns its
/// answers. Fails with the call's status if the follower refuses the
/// stream (a node without it answers UNIMPLEMENTED), or if it is not open
/// within `base`, at least [`ANSWER_PATIENCE`]. The oldest unanswered
/// request is overdue [`InFlight::deadline`] of that same time.
pub async fn open(
    mut client: RaftClient<Channel>,
    request: tonic::Request<Requests>,
    shared: Shared,
    base: Duration,
    progress: Progress,
) -> Result<Answers, tonic::Status> {
    let base = base.max(ANSWER_PATIENCE);
    let opened = tokio::time::timeout(base, client.stream_append_entries(request)).await;
    let replies = match opened {
        Ok(opened) => opened?.into_inner(),
        Err(_) => {
            return Err(tonic::Status::deadline_exceeded(format!(
                "node {} did not open the append stream within {base:?}",
                progress.target
            )));
        }
    };
    let reader = Reader {
        replies,
        shared,
        base,
        progress,
    };
    Ok(futures::stream::unfold(Some(reader), answer).boxed())
}

/// The next item of the answers: the reader goes on unless the stream is
/// over.
async fn answer(reader: Option<Reader>) -> Option<(Result<StreamAppendResult, RpcError>, Option<Reader>)> {
    let mut reader = reader?;
    match reader.next().await {
        Ok(None) => None,
        Ok(Some(answer)) => {
            if answer.carried_entries && answer.result.is_ok() {
                reader.progress.channels.note_replicated(reader.progress.target);
            }
            let ends = answer.ends;
            Some((Ok(answer.result), (!ends).then_some(reader)))
        }
        Err(e) => {
            let progress = &reader.progress;
            progress
                .channels
                .note_replication_error(progress.target, ReplicationCall::Append, e.to_string());
            Some((Err(e), None))
        }
    }
}

fn lock(in_flight: &Mutex<InFlight>) -> std::sync::MutexGuard<'_, InFlight> {
    in_flight.lock().expect("append stream lock poisoned")
}

/// Reads one stream's answers and pairs each with its request.
struct Reader {
    replies: Streaming<baton_proto::RaftReply>,
    shared: Shared,
    base: Duration,
    progress: Progress,
}

impl Reader {
    /// The next answer; `None` when the follower ended the stream with
    /// every request answered.
    async fn next(&mut self) -> Result<Option<Answer>, RpcError> {
        let target = self.progress.target;
        loop {
            let deadline = lock(&self.shared.in_flight).deadline(self.base);
            let overdue = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            let reply = tokio::select! {
                // An answer that came before the deadline passed but is
                // read after it (openraft reads answers between its own
                // waits) is still in time.
                biased;
                reply = self.replies.next() => reply,
                // Overdue is what a unary call's timeout is (tonic reports
                // it as CANCELLED, a `Network` error): openraft sends again
                // at once and backs off only after eleven in a row. As
                // `Unreachable`, one slow answer made the next stream wait
                // openraft's 200 ms backoff, and that follower's ticks
                // started late.
                () = overdue => {
                    let waiting = lock(&self.shared.in_flight).len();
                    return Err(RpcError::Network(NetworkError::from_string(format!(
                        "node {target} did not answer the oldest of {waiting} appends in flight in time"
                    ))));
                }
                () = self.shared.sent.notified(), if deadline.is_none() => continue,
            };
            return match reply {
                None if lock(&self.shared.in_flight).is_empty() => Ok(None),
                None => Err(RpcError::Network(NetworkError::from_string(format!(
                    "node {target} ended the append stream with {} appends unanswered",
                    lock(&self.shared.in_flight).len()
                )))),
                Some(Err(status)) => Err(super::network::rpc_error(status)),
                Some(Ok(reply)) => {
                    let paired = reply
                        .append_entries
                        .ok_or(Unpaired::NoReply)
                        .and_then(|typed| Ok(append_reply_from(typed)?))
                        .and_then(|reply| lock(&self.shared.in_flight).answer(reply, Instant::now()));
                    self.shared.answered.notify_one();
                    paired.map(Some).map_err(|unpaired| {
                        RpcError::Network(NetworkError::from_string(format!(
                            "node {target}'s append stream: {unpaired}"
                        )))
                    })
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::typ::{Entry, Vote};
    use openraft::EntryPayload;
    use openraft::raft::StreamAppendError;
    use openraft::vote::RaftLeaderIdExt;

    type LeaderId = <crate::types::TypeConfig as openraft::RaftTypeConfig>::LeaderId;

    fn log_id(index: u64) -> LogId {
        LogId::new(LeaderId::new_committed(1, 1), index)
    }

    /// A request after `prev` with entries up to `last` (none if equal).
    fn request(prev: Option<u64>, last: u64) -> AppendEntriesRequest {
        let first = prev.map_or(1, |p| p + 1);
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: prev.map(log_id),
            leader_commit: None,
            entries: (first..=last)
                .map(|i| Entry {
                    log_id: log_id(i),
                    payload: EntryPayload::Blank,
                })
                .collect(),
        }
    }

    #[test]
    fn answers_pair_with_requests_in_order() {
        let t0 = Instant::now();
        let mut in_flight = InFlight::default();
        in_flight.sent(&request(Some(3), 5), 100, t0);
        in_flight.sent(&request(Some(5), 5), 10, t0);
        in_flight.sent(&request(Some(5), 9), 100, t0);
        let first = in_flight
            .answer(AppendEntriesResponse::PartialSuccess(Some(log_id(5))), t0)
            .unwrap();
        assert_eq!(first.result.unwrap(), Some(log_id(5)));
        assert!(first.carried_entries && !first.ends);
        // A unary-style Success means the whole request.
        let second = in_flight.answer(AppendEntriesResponse::Success, t0).unwrap();
        assert_eq!(second.result.unwrap(), Some(log_id(5)));
        assert!(!second.carried_entries && !second.ends);
        // A conflict gets the log id its request was sent after, and ends.
        let third = in_flight.answer(AppendEntriesResponse::Conflict, t0).unwrap();
        assert!(matches!(third.result, Err(StreamAppendError::Conflict(id)) if id == log_id(5)));
        assert!(third.ends);
        assert!(in_flight.is_empty());
        assert!(matches!(
            in_flight.answer(AppendEntriesResponse::Success, t0),
            Err(Unpaired::Unasked)
        ));
    }

    #[test]
    fn a_partial_answer_or_a_higher_vote_ends_the_stream() {
        let t0 = Instant::now();
        let mut in_flight = InFlight::default();
        in_flight.sent(&request(Some(3), 9), 100, t0);
        in_flight.sent(&request(Some(9), 12), 100, t0);
        let partial = in_flight
            .answer(AppendEntriesResponse::PartialSuccess(Some(log_id(6))), t0)
            .unwrap();
        assert_eq!(partial.result.unwrap(), Some(log_id(6)));
        assert!(partial.ends);
        let higher = in_flight
            .answer(AppendEntriesResponse::HigherVote(Vote::new(2, 2)), t0)
            .unwrap();
        assert!(matches!(higher.result, Err(StreamAppendError::HigherVote(_))));
        assert!(higher.ends);
    }

    #[test]
    fn a_follower_cannot_claim_more_than_it_was_sent_or_less_than_it_was_sent_after() {
        let t0 = Instant::now();
        let mut in_flight = InFlight::default();
        in_flight.sent(&request(Some(3), 5), 100, t0);
        in_flight.sent(&request(Some(5), 7), 100, t0);
        assert!(matches!(
            in_flight.answer(AppendEntriesResponse::PartialSuccess(Some(log_id(6))), t0),
            Err(Unpaired::OutOfRange { .. })
        ));
        assert!(matches!(
            in_flight.answer(AppendEntriesResponse::PartialSuccess(Some(log_id(4))), t0),
            Err(Unpaired::OutOfRange { .. })
        ));
    }

    #[test]
    fn a_conflict_at_the_start_of_the_log_is_refused() {
        let mut in_flight = InFlight::default();
        in_flight.sent(&request(None, 2), 100, Instant::now());
        assert!(matches!(
            in_flight.answer(AppendEntriesResponse::Conflict, Instant::now()),
            Err(Unpaired::ConflictAtStart)
        ));
    }

    /// What the stub follower does with a stream.
    #[derive(Clone, Copy)]
    enum Script {
        /// Answers nothing until it has this many requests, then each as
        /// it comes: a client that waits for each answer before the next
        /// request gets none unless it is one.
        Hold(usize),
        /// Answers the first of three, then fails the call.
        FailAfterOne,
        /// Answers the first of three, then ends the call cleanly.
        EndAfterOne,
        /// Takes requests and answers none.
        Stall,
        /// Answers each request this long after it comes.
        Slow(Duration),
    }

    struct Stub(Script);

    type Replies = BoxStream<'static, Result<baton_proto::RaftReply, tonic::Status>>;

    fn reply_to(rpc: &baton_proto::state::v1::AppendEntries) -> Result<baton_proto::RaftReply, tonic::Status> {
        let rpc = crate::codec::raft::append_entries_from(rpc.clone()).expect("the client sends typed appends");
        let matching = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        Ok(baton_proto::RaftReply {
            append_entries: Some(crate::codec::raft::append_reply_to(
                &AppendEntriesResponse::PartialSuccess(matching),
            )),
            ..Default::default()
        })
    }

    #[tonic::async_trait]
    impl baton_proto::raft_server::Raft for Stub {
        type StreamAppendEntriesStream = Replies;

        async fn stream_append_entries(
            &self,
            request: tonic::Request<Streaming<RaftRequest>>,
        ) -> Result<tonic::Response<Replies>, tonic::Status> {
            let mut incoming = request.into_inner();
            let script = self.0;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut held = Vec::new();
                let mut received = 0;
                while let Ok(Some(request)) = incoming.message().await {
                    if let Script::Slow(delay) = script {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(reply_to(request.append_entries.as_ref().expect("typed")));
                        continue;
                    }
                    held.push(request.append_entries.expect("typed"));
                    received += 1;
                    match (script, held.len()) {
                        (Script::Hold(n), _) if received >= n => {
                            for rpc in held.drain(..) {
                                let _ = tx.send(reply_to(&rpc));
                            }
                        }
                        (Script::FailAfterOne | Script::EndAfterOne, 1) => {
                            let _ = tx.send(reply_to(&held[0]));
                        }
                        (Script::FailAfterOne, 3) => {
                            let _ = tx.send(Err(tonic::Status::unavailable("the stub fails")));
                            return;
                        }
                        (Script::EndAfterOne, 3) => return,
                        _ => {}
                    }
                }
            });
            Ok(tonic::Response::new(
                tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed(),
            ))
        }

        async fn append_entries(
            &self,
            _: tonic::Request<RaftRequest>,
        ) -> Result<tonic::Response<baton_proto::RaftReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("stub"))
        }

        async fn vote(
            &self,
            _: tonic::Request<RaftRequest>,
        ) -> Result<tonic::Response<baton_proto::RaftReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("stub"))
        }

        async fn pre_vote(
            &self,
            _: tonic::Request<RaftRequest>,
        ) -> Result<tonic::Response<baton_proto::RaftReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("stub"))
        }

        async fn install_snapshot(
            &self,
            _: tonic::Request<baton_proto::SnapshotRequest>,
        ) -> Result<tonic::Response<baton_proto::RaftReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("stub"))
        }

        async fn stream_snapshot(
            &self,
            _: tonic::Request<Streaming<baton_proto::SnapshotChunk>>,
        ) -> Result<tonic::Response<baton_proto::RaftReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("stub"))
        }

        async fn transfer_leader(
            &self,
            _: tonic::Request<RaftRequest>,
        ) -> Result<tonic::Response<baton_proto::RaftReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("stub"))
        }
    }

    /// A client of a stub follower on a loopback port, or of a server
    /// without the Raft service at all (`None`), which answers every call
    /// UNIMPLEMENTED as a node of a release without the call does.
    async fn client_of(script: Option<Script>) -> RaftClient<Channel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let router = tonic::transport::Server::builder()
            .add_optional_service(script.map(|script| baton_proto::raft_server::RaftServer::new(Stub(script))));
        tokio::spawn(router.serve_with_incoming(incoming));
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        RaftClient::new(channel)
    }

    async fn open_to(script: Option<Script>, requests: Vec<AppendEntriesRequest>) -> Result<Answers, tonic::Status> {
        let channels = PeerChannels::new(1, "test".into(), None);
        open_within(script, requests, Duration::from_secs(2), channels).await
    }

    /// [`open_to`], with openraft's allowance for one request as `base`,
    /// noting its progress in `channels`.
    async fn open_within(
        script: Option<Script>,
        requests: Vec<AppendEntriesRequest>,
        base: Duration,
        channels: Arc<PeerChannels>,
    ) -> Result<Answers, tonic::Status> {
        let client = client_of(script).await;
        let progress = Progress { target: 2, channels };
        // openraft's input is endless: requests are made as entries come.
        let input = futures::stream::iter(requests)
            .chain(futures::stream::pending())
            .boxed();
        let (requests, shared) = outgoing(input);
        open(client, tonic::Request::new(requests), shared, base, progress).await
    }

    fn three() -> Vec<AppendEntriesRequest> {
        vec![request(Some(3), 5), request(Some(5), 5), request(Some(5), 8)]
    }

    #[tokio::test]
    async fn requests_are_pipelined_and_answered_in_order() {
        let answers = open_to(Some(Script::Hold(MAX_UNANSWERED)), three()).await.unwrap();
        let answers: Vec<_> = tokio::time::timeout(Duration::from_secs(20), answers.take(3).collect())
            .await
            .expect("the follower answers only once it holds two requests: they must be sent before any answer");
        let matched: Vec<_> = answers.into_iter().map(|a| a.unwrap().unwrap()).collect();
        assert_eq!(matched, vec![Some(log_id(5)), Some(log_id(5)), Some(log_id(8))]);
    }

    #[tokio::test]
    async fn no_more_requests_than_the_cap_wait_for_answers() {
        let mut answers = open_to(Some(Script::Hold(MAX_UNANSWERED + 1)), three()).await.unwrap();
        let failed = answers.next().await.unwrap().unwrap_err();
        assert!(
            failed
                .to_string()
                .contains(&format!("{MAX_UNANSWERED} appends in flight")),
            "{failed}"
        );
    }

    #[tokio::test]
    async fn a_call_that_fails_midway_yields_its_answers_then_the_error_then_ends() {
        let mut answers = open_to(Some(Script::FailAfterOne), three()).await.unwrap();
        assert_eq!(answers.next().await.unwrap().unwrap().unwrap(), Some(log_id(5)));
        let failed = answers.next().await.unwrap().unwrap_err();
        assert!(matches!(failed, RpcError::Unreachable(_)), "{failed}");
        assert!(answers.next().await.is_none());
    }

    #[tokio::test]
    async fn a_call_that_ends_with_requests_unanswered_is_an_error() {
        let mut answers = open_to(Some(Script::EndAfterOne), three()).await.unwrap();
        assert_eq!(answers.next().await.unwrap().unwrap().unwrap(), Some(log_id(5)));
        let failed = answers.next().await.unwrap().unwrap_err();
        assert!(failed.to_string().contains("2 appends unanswered"), "{failed}");
        assert!(answers.next().await.is_none());
    }

    /// openraft's allowance for one AppendEntries: its heartbeat's soft TTL.
    const SOFT_TTL: Duration = Duration::from_micros(37_500);

    /// Opens a stream to a follower that answers nothing, with `base`
    /// allowed per request, and returns the error it ends with, checked to
    /// be a unary call's timeout (retried at once, not backed off from),
    /// and how long it took.
    async fn overdue_stall(base: Duration) -> (RpcError, Duration) {
        let started = Instant::now();
        let channels = PeerChannels::new(1, "test".into(), None);
        let mut answers = open_within(Some(Script::Stall), three(), base, channels.clone())
            .await
            .unwrap();
        let failed = tokio::time::timeout(Duration::from_secs(20), answers.next())
            .await
            .expect("a silent follower's stream is given up")
            .unwrap()
            .unwrap_err();
        assert!(matches!(failed, RpcError::Network(_)), "{failed}");
        assert!(answers.next().await.is_none());
        let counted = channels.failures_of(2, ReplicationCall::Append);
        assert_eq!(counted, 1, "the stream given up is counted once");
        (failed, started.elapsed())
    }

    /// openraft allows a request 37.5 ms; a stream gives the oldest at
    /// least [`ANSWER_PATIENCE`].
    #[tokio::test]
    async fn a_follower_that_answers_nothing_is_overdue_after_the_patience() {
        let (_, waited) = overdue_stall(SOFT_TTL).await;
        assert!(
            waited >= ANSWER_PATIENCE,
            "overdue after {waited:?}, before the patience"
        );
    }

    #[tokio::test]
    async fn a_follower_that_answers_nothing_is_overdue_after_the_allowance() {
        let (failed, waited) = overdue_stall(Duration::from_secs(2)).await;
        assert!(failed.to_string().contains("2 appends in flight"), "{failed}");
        assert!(
            waited >= Duration::from_secs(2),
            "overdue after {waited:?}, before its 2 s"
        );
    }

    /// openraft allows a request its heartbeat's 37.5 ms; a follower that
    /// answers each in 200 ms is slow, not gone, and keeps its stream.
    #[tokio::test]
    async fn a_slow_follower_keeps_its_stream_within_the_patience() {
        let slow = Script::Slow(Duration::from_millis(200));
        let channels = PeerChannels::new(1, "test".into(), None);
        let answers = open_within(Some(slow), three(), SOFT_TTL, channels).await.unwrap();
        let answers: Vec<_> = tokio::time::timeout(Duration::from_secs(20), answers.take(3).collect())
            .await
            .expect("three answers");
        let matched: Vec<_> = answers.into_iter().map(|a| a.unwrap().unwrap()).collect();
        assert_eq!(matched, vec![Some(log_id(5)), Some(log_id(5)), Some(log_id(8))]);
    }

    #[tokio::test]
    async fn a_stream_given_up_stops_taking_requests() {
        let client = client_of(Some(Script::Stall)).await;
        let progress = Progress {
            target: 2,
            channels: PeerChannels::new(1, "test".into(), None),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(request(Some(3), 5)).unwrap();
        let (requests, shared) = outgoing(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
        let base = Duration::from_millis(200);
        let mut answers = open(client, tonic::Request::new(requests), shared, base, progress)
            .await
            .unwrap();
        assert!(answers.next().await.unwrap().is_err(), "overdue");
        assert!(answers.next().await.is_none());
        drop(answers);
        // The requests' source (openraft's, for the next stream too) is let go.
        let started = Instant::now();
        while !tx.is_closed() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the given-up stream still takes requests"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_node_without_the_stream_refuses_it_as_unimplemented() {
        let Err(refused) = open_to(None, three()).await else {
            panic!("a server without the Raft service opened an append stream");
        };
        assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused}");
    }

    #[test]
    fn the_oldest_request_is_due_from_its_send_or_the_answer_before() {
        let base = Duration::from_millis(50);
        let t0 = Instant::now();
        let mut in_flight = InFlight::default();
        assert_eq!(in_flight.deadline(base), None, "nothing in flight, nothing due");
        in_flight.sent(&request(Some(1), 2), 0, t0);
        in_flight.sent(&request(Some(2), 3), 0, t0 + Duration::from_millis(5));
        assert_eq!(in_flight.deadline(base), Some(t0 + base));
        // The first is answered late: the second's clock starts then.
        let answered = t0 + Duration::from_millis(40);
        in_flight.answer(AppendEntriesResponse::Success, answered).unwrap();
        assert_eq!(in_flight.deadline(base), Some(answered + base));
        // A request sent after the last answer is due from its send.
        in_flight.answer(AppendEntriesResponse::Success, answered).unwrap();
        let later = answered + Duration::from_millis(100);
        in_flight.sent(&request(Some(3), 4), 0, later);
        assert_eq!(in_flight.deadline(base), Some(later + base));
        // Bytes add the time the slowest allowed transfer takes.
        in_flight.answer(AppendEntriesResponse::Success, later).unwrap();
        in_flight.sent(&request(Some(4), 5), 8 << 20, later);
        assert_eq!(in_flight.deadline(base), Some(later + rpc_timeout(base, 8 << 20)));
    }
}
