//! A task owner's writes go to the leader: through the local proposer when
//! this node leads, or over the peer API when another does.
//!
//! Forwarded writes are batched, as the leader's proposer batches its own:
//! they queue here, and a call to the leader goes as soon as the call
//! before it has been answered, carrying everything that queued meanwhile as
//! one `Batch` (from the cluster version that lets peers send them, see
//! [`FORWARDED_BATCHES`]). A lone write goes at once; under load, thousands
//! of tick commits a second share calls instead of each paying for a gRPC
//! request of its own. The leader answers a batch with a batch, and each
//! write gets its own answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_proto::ProposeRequest;
use openraft::async_runtime::watch::WatchReceiver;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::NodeContext;
use crate::codec::format::{Format, encode_command};
use crate::raft::batching::take_batch;
use crate::raft::{Committed, MAX_BATCH_BYTES, MAX_COMMAND_BYTES, ProposeError, encoded_len, peer_client};
use crate::state::cluster_version::FORWARDED_BATCHES;
use crate::types::{Command, CommandResponse, NodeId};

/// Forwarded calls to the leader in flight at once; more writes queue and
/// join the next call. One, as for the leader's own proposer (see
/// `raft/proposer.rs`): fewer, larger batches cost the cluster less CPU.
const MAX_IN_FLIGHT: usize = 1;
// What the leader's proposer takes as one command holds a whole batch and
// what batching adds (a few bytes per write).
const _: () = assert!(2 * MAX_BATCH_BYTES <= MAX_COMMAND_BYTES);

/// Most writes in one forwarded batch.
const MAX_BATCH_COMMANDS: usize = 1024;
/// How long the leader may take to answer a forwarded call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A write waiting to be forwarded.
struct Pending {
    leader: NodeId,
    addr: String,
    command: Command,
    /// Its size as the leader's proposer measures it (`encoded_len`).
    bytes: usize,
    format: Format,
    reply_tx: oneshot::Sender<Result<Committed, ProposeError>>,
}

/// The queue of writes this node forwards to the leader.
pub struct ForwardQueue {
    tx: mpsc::UnboundedSender<Pending>,
    /// Taken by [`spawn_forwarder`].
    rx: Mutex<Option<mpsc::UnboundedReceiver<Pending>>>,
}

impl Default for ForwardQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        ForwardQueue {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

/// Resolves when this node's Raft knows a leader other than `leader` (or
/// none), with the new one.
async fn leader_changed(raft: &crate::types::Raft, leader: NodeId) -> Option<NodeId> {
    // The server's metrics, which change with the leader and not with every
    // entry: this waits beside every forwarded batch.
    let mut metrics = raft.server_metrics();
    loop {
        let current = metrics.borrow_and_update().current_leader;
        if current != Some(leader) {
            return current;
        }
        if metrics.changed().await.is_err() {
            // Raft stopped: nothing here will change again.
            std::future::pending::<()>().await;
        }
    }
}

/// Proposes `command` on the leader, wherever it is.
pub async fn propose_on_leader(context: &NodeContext, command: Command) -> Result<Committed, ProposeError> {
    let (leader, addr) = crate::types::leader(&context.raft);
    match (leader, addr) {
        (Some(leader), _) if leader == context.id => context.proposer.propose(command).await,
        (Some(leader), Some(addr)) => {
            // In the format every member reads (see `codec::format`).
            let version = context.state_machine.read(|s| s.cluster_version);
            let format = Format::at(version);
            // Measured as the leader's proposer measures what it is given,
            // so that a batch within this node's budget is within its own.
            let bytes = encoded_len(&command);
            if bytes > MAX_COMMAND_BYTES {
                return Err(ProposeError::TooLarge {
                    bytes,
                    limit: MAX_COMMAND_BYTES,
                });
            }
            if version < FORWARDED_BATCHES {
                return call(context, leader, &addr, &command, format).await;
            }
            let (reply_tx, reply_rx) = oneshot::channel();
            context
                .forwards
                .tx
                .send(Pending {
                    leader,
                    addr,
                    command,
                    bytes,
                    format,
                    reply_tx,
                })
                .map_err(|_| ProposeError::Stopped("the forwarder has stopped".into()))?;
            // Once queued, the write may have gone to the leader.
            reply_rx
                .await
                .map_err(|_| ProposeError::Unanswered("the forwarder stopped before the leader answered".into()))?
        }
        _ => Err(ProposeError::NotLeader {
            leader_id: None,
            leader_addr: None,
        }),
    }
}

/// Starts the task that forwards queued writes in batches; abort the handle
/// to stop it.
pub fn spawn_forwarder(context: Arc<NodeContext>) -> JoinHandle<()> {
    let rx = context.forwards.rx.lock().expect("forward queue lock poisoned").take();
    tokio::spawn(async move {
        let Some(mut rx) = rx else {
            return;
        };
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        // A write that could not join the last batch: it starts the next.
        let mut held: Option<Pending> = None;
        loop {
            let first = match held.take() {
                Some(pending) => pending,
                None => match rx.recv().await {
                    Some(pending) => pending,
                    None => return,
                },
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut bytes = first.bytes;
            let mut batch = take_batch(first, &mut rx, &mut held, MAX_BATCH_COMMANDS, |batch, next| {
                let joins = joins(&batch[0], bytes, next);
                if joins {
                    bytes += next.bytes;
                }
                joins
            });
            // As the proposer does: a write whose caller stopped waiting
            // (a stopped worker, a cancelled call) is not sent.
            let taken = batch.len();
            batch.retain(|pending| !pending.reply_tx.is_closed());
            context.metrics.writes_abandoned.inc_by((taken - batch.len()) as u64);
            if batch.is_empty() {
                continue;
            }
            let context = context.clone();
            tokio::spawn(async move {
                send_batch(&context, batch).await;
                drop(slot);
            });
        }
    })
}

/// Whether `next` joins a batch that `first` started and that holds `bytes`:
/// to the same leader, in the same format, within [`MAX_BATCH_BYTES`] (half
/// of what the leader's proposer takes as one command, [`MAX_COMMAND_BYTES`]:
/// a batch adds a few bytes per write).
fn joins(first: &Pending, bytes: usize, next: &Pending) -> bool {
    next.leader == first.leader
        && next.addr == first.addr
        && next.format == first.format
        && bytes + next.bytes <= MAX_BATCH_BYTES
}

/// Sends `batch` to its leader as one call, and gives each write its answer.
async fn send_batch(context: &NodeContext, mut batch: Vec<Pending>) {
    let (leader, addr, format) = (batch[0].leader, batch[0].addr.clone(), batch[0].format);
    if batch.len() == 1 {
        let Pending { command, reply_tx, .. } = batch.pop().expect("one pending write");
        let _ = reply_tx.send(call(context, leader, &addr, &command, format).await);
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply_tx)).unzip();
    let count = commands.len();
    match call(context, leader, &addr, &Command::Batch(commands.into()), format).await {
        Ok(Committed {
            log_index,
            response: CommandResponse::Batch(responses),
        }) if responses.len() == count => {
            for (reply_tx, response) in replies.into_iter().zip(responses) {
                let _ = reply_tx.send(Ok(Committed { log_index, response }));
            }
        }
        Ok(other) => {
            // A leader answers a batch with a batch of as many answers:
            // anything else leaves each write's fate unknown.
            let err = ProposeError::Unanswered(format!(
                "leader {leader} answered a batch of {count} writes with {:?}",
                other.response
            ));
            for reply_tx in replies {
                let _ = reply_tx.send(Err(err.clone()));
            }
        }
        Err(err) => {
            for reply_tx in replies {
                let _ = reply_tx.send(Err(err.clone()));
            }
        }
    }
}

/// One Propose call to the leader.
async fn call(
    context: &NodeContext,
    leader: NodeId,
    addr: &str,
    command: &Command,
    format: Format,
) -> Result<Committed, ProposeError> {
    // Nothing has been sent yet: the write is not in the log.
    let channel = context
        .channels
        .channel(leader, addr)
        .map_err(|e| ProposeError::Stopped(format!("leader {leader} at {addr}: {e}")))?;
    let payload = encode_command(command, format).map_err(|e| ProposeError::Refused(e.to_string()))?;
    let request = context
        .channels
        .request(ProposeRequest { command: payload }, Some(CALL_TIMEOUT));
    // A leader cut off from this node leaves the call hanging until its
    // timeout; once this node hears of another leader, the caller retries
    // there at once. Every command a node forwards names the epoch it
    // expects, so a retry of one that did commit is refused (a tick's as
    // out of order, found committed).
    let mut client = peer_client(channel);
    let reply = tokio::select! {
        reply = client.propose(request) => reply,
        new = leader_changed(&context.raft, leader) => {
            return Err(ProposeError::Unanswered(format!(
                "leadership moved from {leader} to {new:?} during the call"
            )));
        }
    };
    let reply = reply
        .map_err(|status| leader_refused(leader, addr, &status))?
        .into_inner();
    crate::codec::propose::committed(reply)
        .map_err(|e| ProposeError::Unanswered(format!("leader {leader} at {addr} answered what cannot be read: {e}")))
}

/// What a forwarded write's failed call means for the write. The leader's
/// own answers say what it did: not the leader (nothing written), or
/// refused before anything was proposed: FAILED_PRECONDITION or
/// INVALID_ARGUMENT (`propose_error`, the peer gate's checks, a command it
/// cannot decode), PERMISSION_DENIED or UNAUTHENTICATED (the gate). Of
/// these tonic makes only PERMISSION_DENIED itself, for a connection the
/// peer refuses as insecure, before any call. Anything else (a timeout, a connection
/// lost, the leader's UNAVAILABLE for a write it could not see through,
/// INTERNAL) leaves the write's fate unknown.
fn leader_refused(leader: NodeId, addr: &str, status: &tonic::Status) -> ProposeError {
    if status.metadata().get(baton_proto::NOT_LEADER_HEADER).is_some() {
        return ProposeError::NotLeader {
            leader_id: None,
            leader_addr: None,
        };
    }
    match status.code() {
        tonic::Code::FailedPrecondition
        | tonic::Code::InvalidArgument
        | tonic::Code::PermissionDenied
        | tonic::Code::Unauthenticated => {
            ProposeError::Refused(format!("leader {leader} refused it: {}", status.message()))
        }
        _ => ProposeError::Unanswered(format!("leader {leader} at {addr}: {}", status.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(leader: NodeId, format: Format, bytes: usize) -> Pending {
        Pending {
            leader,
            addr: format!("127.0.0.1:700{leader}"),
            command: Command::Delete { key: "k".into() },
            bytes,
            format,
            reply_tx: oneshot::channel().0,
        }
    }

    #[test]
    fn a_failed_call_is_refused_only_when_the_leader_said_so() {
        let not_leader = crate::api::propose_error(ProposeError::NotLeader {
            leader_id: Some(2),
            leader_addr: None,
        });
        assert!(matches!(
            leader_refused(1, "a", &not_leader),
            ProposeError::NotLeader { .. }
        ));
        for refused in [
            crate::api::propose_error(ProposeError::Refused("no".into())),
            crate::api::propose_error(ProposeError::TooLarge { bytes: 9, limit: 8 }),
            // The peer gate's and the Propose handler's own refusals.
            tonic::Status::failed_precondition("cluster id mismatch"),
            tonic::Status::invalid_argument("malformed command: unknown format"),
            tonic::Status::permission_denied("the certificate names node 3"),
            tonic::Status::unauthenticated("no client certificate"),
        ] {
            assert!(
                matches!(leader_refused(1, "a", &refused), ProposeError::Refused(_)),
                "{refused:?}"
            );
        }
        for unknown in [
            tonic::Status::deadline_exceeded("timeout expired"),
            tonic::Status::cancelled("h2 stream reset"),
            tonic::Status::unavailable("connection refused"),
            crate::api::propose_error(ProposeError::Indeterminate),
            tonic::Status::internal("the reply could not be encoded"),
        ] {
            let err = leader_refused(1, "127.0.0.1:7001", &unknown);
            assert!(matches!(err, ProposeError::Unanswered(_)), "{unknown:?}");
            assert!(err.to_string().contains("may or may not have been committed"), "{err}");
        }
    }

    #[test]
    fn a_batch_goes_to_one_leader_in_one_format_within_half_a_command() {
        let first = pending(1, Format::Binary, 100);
        assert!(joins(&first, 100, &pending(1, Format::Binary, 200)));
        assert!(!joins(&first, 100, &pending(2, Format::Binary, 200)), "another leader");
        assert!(!joins(&first, 100, &pending(1, Format::Json, 200)), "another format");
        assert!(joins(&first, MAX_BATCH_BYTES - 10, &pending(1, Format::Binary, 10)));
        assert!(!joins(&first, MAX_BATCH_BYTES - 10, &pending(1, Format::Binary, 11)));
    }
}
