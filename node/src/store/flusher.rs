//! Group commit for the Raft log: appends are written without an fsync, and
//! this thread makes them durable with one fsync for every append that
//! queued up meanwhile, then tells openraft they are persisted.
//!
//! Until openraft hears back, it counts the entries as written but not
//! persisted: a follower does not acknowledge them and a leader does not
//! count its own copy toward the quorum. So a crash before the fsync loses
//! only entries nobody was told about.

use std::io;
use std::sync::mpsc;

use openraft::storage::IOFlushed;
use redb::Durability;

use super::db::RaftDb;
use crate::types::TypeConfig;

/// A handle to the flush thread; the thread exits when the last handle goes.
pub(crate) struct Flusher {
    pending_tx: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl Flusher {
    pub(crate) fn start(db: RaftDb) -> Flusher {
        let (pending_tx, pending_rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        std::thread::Builder::new()
            .name("baton-log-fsync".into())
            .spawn(move || {
                while let Ok(first) = pending_rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(pending_rx.try_iter());
                    // An immediate commit makes every earlier commit durable.
                    let result = db.write(Durability::Immediate, |_| Ok(()));
                    // Newest first: openraft keeps the highest flushed
                    // position, so the older ones change nothing, and its
                    // core wakes once for the batch rather than once per
                    // append (its forwarder waits a timer tick, a
                    // millisecond, between wakes that come close together).
                    for callback in batch.into_iter().rev() {
                        callback.io_completed(match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        });
                    }
                }
            })
            .expect("spawn the log fsync thread");
        Flusher { pending_tx }
    }

    /// Reports `callback` once everything written so far is durable.
    pub(crate) fn flush_then(&self, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error> {
        self.pending_tx
            .send(callback)
            .map_err(|_| io::Error::other("the log fsync thread has stopped"))
    }
}
