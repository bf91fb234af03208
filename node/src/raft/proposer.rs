//! Batches concurrent writes into one Raft entry.
//!
//! Writes queue up here; a batch goes to Raft as soon as the batch before
//! it has been applied, carrying everything that queued meanwhile, except
//! the writes whose callers have stopped waiting for them. A lone
//! write goes at once, so batching costs no latency when the cluster is
//! idle; under load, thousands of writes a second share entries, fsyncs and
//! round trips instead of each paying for its own.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::batching::take_batch;
use super::message_limits::{MAX_BATCH_BYTES, MAX_COMMAND_BYTES, encoded_len};
use crate::types::typ::RaftError;
use crate::types::{Command, CommandResponse, NodeId, Raft};

/// Batches allowed in Raft at once; more writes queue up and join the next.
/// One, measured against four (BENCHMARKS.md, "One batch in flight"): on
/// two busy cores the larger entries cost less CPU per write (each entry
/// pays for appends to every node and an apply on each), which cut tick
/// lateness and raised commits with 64 clients; with one client nothing
/// changes, as it never has two writes waiting.
const MAX_IN_FLIGHT: usize = 1;
/// Most commands in one entry.
const MAX_BATCH_COMMANDS: usize = 1024;

/// Why a proposed write did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    #[error("leadership changed while the write was in flight; it may or may not have been committed; retry it")]
    Indeterminate,
    /// Raft refused the write (a membership change while another is in
    /// progress, say); not the state machine's [`crate::types::Rejection`].
    #[error("{0}")]
    Refused(String),
    #[error("raft is not running on this node ({0}); try another node")]
    Stopped(String),
    /// A write forwarded to the leader that got no answer it could read (a
    /// timeout, a lost connection, leadership moving during the call): it
    /// may or may not have been committed.
    #[error("{0}; the write may or may not have been committed; retry it")]
    Unanswered(String),
    /// Refused before it reached Raft: nothing was written.
    #[error("the command is {bytes} bytes encoded, over the {limit} bytes a node proposes; nothing was written")]
    TooLarge { bytes: usize, limit: usize },
}

impl From<RaftError<crate::types::typ::ClientWriteError>> for ProposeError {
    fn from(err: RaftError<crate::types::typ::ClientWriteError>) -> Self {
        use openraft::errors::ClientWriteError as E;
        match err {
            RaftError::APIError(E::ForwardToLeader(f)) => ProposeError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            RaftError::APIError(E::LogEntryDiscarded(_)) => ProposeError::Indeterminate,
            RaftError::APIError(e) => ProposeError::Refused(e.to_string()),
            RaftError::Fatal(e) => ProposeError::Stopped(e.to_string()),
        }
    }
}

/// A write that committed: where, and what applying it answered.
#[derive(Debug, Clone)]
pub struct Committed {
    pub log_index: u64,
    pub response: CommandResponse,
}

struct Pending {
    command: Command,
    /// The command's encoded size.
    bytes: usize,
    reply_tx: oneshot::Sender<Result<Committed, ProposeError>>,
}

/// The handle through which a node proposes writes. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    queue_tx: mpsc::UnboundedSender<Pending>,
    /// Each proposal's time from here to its apply.
    duration: prometheus_client::metrics::histogram::Histogram,
}

impl Proposer {
    /// Starts the batching task; it ends when the last handle is dropped.
    /// It counts into `abandoned` the writes it drops because their
    /// callers stopped waiting.
    pub fn start(
        raft: Raft,
        duration: prometheus_client::metrics::histogram::Histogram,
        abandoned: prometheus_client::metrics::counter::Counter,
    ) -> Proposer {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, queue_rx, abandoned));
        Proposer { queue_tx, duration }
    }

    /// Proposes `command` and waits until it is committed and applied.
    /// A command over [`MAX_COMMAND_BYTES`] encoded is refused at once.
    pub async fn propose(&self, command: Command) -> Result<Committed, ProposeError> {
        let bytes = encoded_len(&command);
        if bytes > MAX_COMMAND_BYTES {
            return Err(ProposeError::TooLarge {
                bytes,
                limit: MAX_COMMAND_BYTES,
            });
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let stopped = || ProposeError::Stopped("the proposer has stopped".into());
        let started = std::time::Instant::now();
        self.queue_tx
            .send(Pending {
                command,
                bytes,
                reply_tx,
            })
            .map_err(|_| stopped())?;
        let committed = reply_rx.await.map_err(|_| stopped())??;
        self.duration.observe(started.elapsed().as_secs_f64());
        Ok(committed)
    }
}

async fn run(
    raft: Raft,
    mut queue_rx: mpsc::UnboundedReceiver<Pending>,
    abandoned: prometheus_client::metrics::counter::Counter,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // A write that did not fit the last batch: it starts the next.
    let mut held: Option<Pending> = None;
    loop {
        let first = match held.take() {
            Some(pending) => pending,
            None => match queue_rx.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.bytes;
        let mut batch = take_batch(first, &mut queue_rx, &mut held, MAX_BATCH_COMMANDS, |_, next| {
            let joins = joins_batch(bytes, next.bytes);
            if joins {
                bytes += next.bytes;
            }
            joins
        });
        // A write whose caller gave up while it queued (a cancelled call, a
        // forwarded batch its follower stopped waiting for, a stopped
        // worker) is not proposed: nobody waits for its answer, and under
        // load it would take the place of writes still waited for. Its
        // caller saw no answer, so not writing it is one of the outcomes it
        // must already allow.
        let taken = batch.len();
        batch.retain(|pending| !pending.reply_tx.is_closed());
        abandoned.inc_by((taken - batch.len()) as u64);
        if batch.is_empty() {
            continue;
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            submit(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Whether a command of `next` encoded bytes joins a batch of `bytes`: a
/// batch stays within [`MAX_BATCH_BYTES`] (a larger command goes alone).
fn joins_batch(bytes: usize, next: usize) -> bool {
    bytes + next <= MAX_BATCH_BYTES
}

async fn submit(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let Pending { command, reply_tx, .. } = batch.pop().expect("one pending write");
        let written = raft.client_write(command).await;
        let committed = written.map(|w| Committed {
            log_index: w.log_id.index,
            response: w.data,
        });
        let _ = reply_tx.send(committed.map_err(ProposeError::from));
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply_tx)).unzip();
    match raft.client_write(Command::Batch(commands.into())).await {
        Ok(written) => {
            let log_index = written.log_id.index;
            let CommandResponse::Batch(responses) = written.data else {
                unreachable!("the state machine answers a batch with a batch")
            };
            for (reply_tx, response) in replies.into_iter().zip(responses) {
                let _ = reply_tx.send(Ok(Committed { log_index, response }));
            }
        }
        Err(e) => {
            let err = ProposeError::from(e);
            for reply_tx in replies {
                let _ = reply_tx.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_their_byte_limit_and_a_large_command_goes_alone() {
        assert!(joins_batch(100, 200));
        assert!(joins_batch(MAX_BATCH_BYTES - 10, 10));
        assert!(!joins_batch(MAX_BATCH_BYTES - 10, 11));
        // A command larger than a batch never joins one (it starts its own).
        assert!(!joins_batch(1, MAX_BATCH_BYTES));
    }
}
