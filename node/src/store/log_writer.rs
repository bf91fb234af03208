//! The one thread that changes the Raft log on disk, with group commit.
//!
//! `append` hands its entries here (and to the in-memory tail, where they
//! are readable at once) and returns; this thread writes every change that
//! queued up meanwhile (appends, truncations, purges, in the order they
//! were made) in one transaction, makes it durable with one fsync, and
//! then tells openraft the appended entries are persisted and the
//! truncations and purges are done. Until openraft hears back, it counts
//! the entries as written but not persisted: a follower does not
//! acknowledge them and a leader does not count its own copy toward the
//! quorum. So a crash before the fsync loses only entries nobody was told
//! about.
//!
//! One transaction per batch, on one thread: before, each append was a
//! transaction of its own on a blocking thread, and the fsync a second,
//! empty one on this thread.

use std::io;
use std::sync::{Arc, Mutex, mpsc};

use openraft::storage::IOFlushed;
use redb::Durability;
use tokio::sync::oneshot;

use super::db::{LOG, META, RaftDb};
use super::log_tail::LogTail;
use crate::types::TypeConfig;
use crate::types::typ::LogId;

/// A change to the log on disk.
pub(crate) enum LogChange {
    /// Entries to store; `callback` hears once they are durable.
    Append {
        rows: Vec<(u64, Vec<u8>)>,
        ids: Vec<LogId>,
        callback: IOFlushed<TypeConfig>,
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
}

/// A handle to the writer thread; the thread exits when the last handle goes.
pub(crate) struct LogWriter {
    changes_tx: mpsc::Sender<LogChange>,
}

impl LogWriter {
    /// Starts the thread over `db`; it marks what it stored in `tail`.
    pub(crate) fn start(db: RaftDb, tail: Arc<Mutex<LogTail>>) -> LogWriter {
        let (changes_tx, changes_rx) = mpsc::channel::<LogChange>();
        std::thread::Builder::new()
            .name("baton-log-writer".into())
            .spawn(move || {
                while let Ok(first) = changes_rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(changes_rx.try_iter());
                    write_batch(&db, &tail, batch);
                }
            })
            .expect("spawn the log writer thread");
        LogWriter { changes_tx }
    }

    pub(crate) fn send(&self, change: LogChange) -> Result<(), io::Error> {
        self.changes_tx
            .send(change)
            .map_err(|_| io::Error::other("the log writer thread has stopped"))
    }
}

/// Writes `batch` in one durable transaction, in order, then reports.
fn write_batch(db: &RaftDb, tail: &Mutex<LogTail>, batch: Vec<LogChange>) {
    let result = db.write(Durability::Immediate, |txn| {
        let mut log = txn.open_table(LOG)?;
        for change in &batch {
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
                    txn.open_table(META)?.insert("last_purged", last_purged.as_slice())?;
                    log.retain_in(..=*upto, |_, _| false)?;
                }
            }
        }
        Ok(())
    });
    let outcome = || match &result {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    };
    if result.is_ok() {
        let mut tail = tail.lock().expect("log tail lock poisoned");
        for change in &batch {
            if let LogChange::Append { ids, .. } = change {
                tail.stored(ids);
            }
        }
    }
    // Newest first: openraft keeps the highest flushed position, so the
    // older appends' reports change nothing, and its core wakes once for
    // the batch rather than once per append (its forwarder waits a timer
    // tick, a millisecond, between wakes that come close together).
    for change in batch.into_iter().rev() {
        match change {
            LogChange::Append { callback, .. } => callback.io_completed(outcome()),
            LogChange::Truncate { done, .. } | LogChange::Purge { done, .. } => {
                let _ = done.send(outcome());
            }
        }
    }
}
