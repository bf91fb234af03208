//! The one thread that changes the Raft log and the vote on disk, with
//! group commit.
//!
//! `append` hands its entries here (and to the in-memory tail, where they
//! are readable at once) and returns; this thread writes every change that
//! queued up meanwhile (appends, truncations, purges and votes, in the
//! order they were made) in one transaction, makes it durable with one
//! fsync, and then tells openraft the appended entries are persisted and
//! the other changes are done. Until openraft hears back, it counts the
//! entries as written but not persisted: a follower does not acknowledge
//! them and a leader does not count its own copy toward the quorum. So a
//! crash before the fsync loses only entries nobody was told about.
//!
//! The vote goes through this thread too: openraft counts every append made
//! under an earlier vote as persisted once a newer vote is, so a vote must
//! never be durable before the appends queued ahead of it.
//!
//! The thread stops at its first failure: every change after it is refused
//! unwritten, so the log on disk never has a hole where a failed batch was.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};

use openraft::storage::IOFlushed;
use redb::Durability;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::db::{LOG, META, RaftDb};
use super::log_tail::LogTail;
use crate::types::TypeConfig;
use crate::types::typ::LogId;

/// Encoded bytes of appends queued and not yet stored, at most: `append`
/// waits beyond it, so a slow disk slows the writers down instead of
/// filling memory.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// A change to the log or the vote on disk.
pub(crate) enum LogChange {
    /// Entries to store; `callback` hears once they are durable.
    Append {
        rows: Vec<(u64, Vec<u8>)>,
        ids: Vec<LogId>,
        callback: IOFlushed<TypeConfig>,
        /// Its share of [`MAX_QUEUED_BYTES`], held until it is stored.
        _queued: OwnedSemaphorePermit,
    },
    /// Removes the entries from `from` on.
    Truncate {
        from: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Removes the entries up to `upto`, and records `last_purged`.
    Purge {
        upto: u64,
        last_purged: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Saves the vote.
    Vote {
        vote: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// A handle to the writer thread; the thread exits when the last handle goes.
pub(crate) struct LogWriter {
    changes_tx: mpsc::Sender<LogChange>,
    queued: Arc<Semaphore>,
}

impl LogWriter {
    /// Starts the thread over `db`; it marks what it stored in `tail`.
    /// Each group's write is timed into `commit_time`, if given.
    pub(crate) fn start(
        db: RaftDb,
        tail: Arc<Mutex<LogTail>>,
        commit_time: Option<prometheus_client::metrics::histogram::Histogram>,
    ) -> io::Result<LogWriter> {
        let (changes_tx, changes_rx) = mpsc::channel::<LogChange>();
        std::thread::Builder::new()
            .name("baton-log-writer".into())
            .spawn(move || {
                let mut failed: Option<String> = None;
                while let Ok(first) = changes_rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(changes_rx.try_iter());
                    let result = match &failed {
                        Some(why) => Err(why.clone()),
                        None => {
                            let started = std::time::Instant::now();
                            let written = write_batch(&db, &tail, &batch);
                            if let Some(histogram) = &commit_time {
                                histogram.observe(started.elapsed().as_secs_f64());
                            }
                            written
                        }
                    };
                    if let Err(why) = &result {
                        failed.get_or_insert_with(|| why.clone());
                    }
                    report(batch, &result);
                }
            })?;
        Ok(LogWriter {
            changes_tx,
            queued: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
        })
    }

    /// Queues an append of `rows` (with their ids), waiting first while
    /// more than [`MAX_QUEUED_BYTES`] are queued.
    pub(crate) async fn append(
        &self,
        rows: Vec<(u64, Vec<u8>)>,
        ids: Vec<LogId>,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error> {
        let bytes: usize = rows.iter().map(|(_, row)| row.len()).sum();
        let share = bytes.clamp(1, MAX_QUEUED_BYTES) as u32;
        let queued = self
            .queued
            .clone()
            .acquire_many_owned(share)
            .await
            .map_err(|_| stopped())?;
        self.send(LogChange::Append {
            rows,
            ids,
            callback,
            _queued: queued,
        })
    }

    /// Queues the change `make` builds around its answer's sender, and
    /// waits for the answer.
    pub(crate) async fn change(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> LogChange,
    ) -> Result<(), io::Error> {
        let (done, finished) = oneshot::channel();
        self.send(make(done))?;
        finished.await.map_err(|_| stopped())?
    }

    fn send(&self, change: LogChange) -> Result<(), io::Error> {
        self.changes_tx.send(change).map_err(|_| stopped())
    }
}

fn stopped() -> io::Error {
    io::Error::other("the log writer thread has stopped")
}

/// Writes `batch` in one durable transaction, in order, and marks the
/// stored entries in the tail; a panic counts as a failure.
fn write_batch(db: &RaftDb, tail: &Mutex<LogTail>, batch: &[LogChange]) -> Result<(), String> {
    let written = catch_unwind(AssertUnwindSafe(|| {
        db.write(Durability::Immediate, |txn| {
            let mut log = txn.open_table(LOG)?;
            let mut meta = txn.open_table(META)?;
            for change in batch {
                match change {
                    LogChange::Append { rows, .. } => {
                        for (index, bytes) in rows {
                            log.insert(*index, bytes.as_slice())?;
                        }
                    }
                    LogChange::Truncate { from, .. } => {
                        log.retain_in(*from.., |_, _| false)?;
                    }
                    LogChange::Purge { upto, last_purged, .. } => {
                        meta.insert("last_purged", last_purged.as_slice())?;
                        log.retain_in(..=*upto, |_, _| false)?;
                    }
                    LogChange::Vote { vote, .. } => {
                        meta.insert("vote", vote.as_slice())?;
                    }
                }
            }
            Ok(())
        })
    }));
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("writing the log: {e}")),
        Err(_) => return Err("the log writer panicked".into()),
    }
    let mut tail = tail.lock().expect("log tail lock poisoned");
    for change in batch {
        if let LogChange::Append { ids, .. } = change {
            tail.stored(ids);
        }
    }
    Ok(())
}

/// Tells each change of `batch` how it went. Newest first: openraft keeps
/// the highest flushed position, so the older appends' reports change
/// nothing, and its core wakes once for the batch rather than once per
/// append (its forwarder waits a timer tick, a millisecond, between wakes
/// that come close together).
fn report(batch: Vec<LogChange>, result: &Result<(), String>) {
    let outcome = || result.clone().map_err(io::Error::other);
    for change in batch.into_iter().rev() {
        match change {
            LogChange::Append { callback, .. } => callback.io_completed(outcome()),
            LogChange::Truncate { done, .. } | LogChange::Purge { done, .. } | LogChange::Vote { done, .. } => {
                let _ = done.send(outcome());
            }
        }
    }
}
