//! The Raft log and vote, stored in redb. The vote is fsync'd before
//! `save_vote` returns; log entries are fsync'd, in groups, before openraft
//! is told they are persisted (see `flusher`).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{Durability, ReadableTable};

use super::db::{LOG, META, RaftDb, from_json, to_json};
use super::flusher::Flusher;
use crate::types::TypeConfig;
use crate::types::typ::{Entry, LogId, Vote};

/// openraft's log storage over [`RaftDb`]. Clones share the database and
/// the fsync thread.
#[derive(Clone)]
pub struct LogStore {
    db: RaftDb,
    flusher: Arc<Flusher>,
}

impl LogStore {
    pub fn new(db: RaftDb) -> Self {
        let flusher = Arc::new(Flusher::start(db.clone()));
        LogStore { db, flusher }
    }
}

fn index_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end_inclusive = match range.end_bound() {
        Bound::Included(x) => Some(*x),
        Bound::Excluded(0) => return (1, Some(0)),
        Bound::Excluded(x) => Some(x - 1),
        Bound::Unbounded => None,
    };
    (start, end_inclusive)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = index_bounds(&range);
        if end.is_some_and(|end| end < start) {
            return Ok(Vec::new());
        }
        let rows = self.db.read(|txn| {
            let table = txn.open_table(LOG)?;
            let mut rows = Vec::new();
            let iter = match end {
                Some(end) => table.range(start..=end)?,
                None => table.range(start..)?,
            };
            for row in iter {
                let (_, value) = row?;
                rows.push(value.value().to_vec());
            }
            Ok(rows)
        })?;
        rows.iter().map(|bytes| from_json::<Entry>(bytes)).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.db.get_json(META, "vote")
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last = self.db.read(|txn| {
            let table = txn.open_table(LOG)?;
            Ok(table.last()?.map(|(_, v)| v.value().to_vec()))
        })?;
        let last_purged_log_id: Option<LogId> = self.db.get_json(META, "last_purged")?;
        let last_log_id = match last {
            Some(bytes) => Some(from_json::<Entry>(&bytes)?.log_id()),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = to_json(vote)?;
        self.db
            .blocking(move |db| {
                db.write(Durability::Immediate, |txn| {
                    txn.open_table(META)?.insert("vote", bytes.as_slice())?;
                    Ok(())
                })
            })
            .await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            rows.push((entry.index(), to_json(&entry)?));
        }
        // Readable at once (openraft may read them back before they are
        // durable); the flusher fsyncs and then reports them persisted. The
        // write itself skips the fsync, but it may wait for redb's write lock
        // while the flusher holds it through one, so it runs off the async
        // workers.
        self.db
            .blocking(move |db| {
                db.write(Durability::None, |txn| {
                    let mut table = txn.open_table(LOG)?;
                    for (index, bytes) in &rows {
                        table.insert(*index, bytes.as_slice())?;
                    }
                    Ok(())
                })
            })
            .await?;
        self.flusher.flush_then(callback)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        self.db
            .blocking(move |db| {
                db.write(Durability::Immediate, |txn| {
                    txn.open_table(LOG)?.retain_in(from.., |_, _| false)?;
                    Ok(())
                })
            })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let bytes = to_json(&log_id)?;
        let upto = log_id.index();
        self.db
            .blocking(move |db| {
                db.write(Durability::Immediate, |txn| {
                    txn.open_table(META)?.insert("last_purged", bytes.as_slice())?;
                    txn.open_table(LOG)?.retain_in(..=upto, |_, _| false)?;
                    Ok(())
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::index_bounds;

    #[test]
    fn index_bounds_cover_every_range_form() {
        assert_eq!(index_bounds(&(3..7)), (3, Some(6)));
        assert_eq!(index_bounds(&(3..=7)), (3, Some(7)));
        assert_eq!(index_bounds(&(3..)), (3, None));
        assert_eq!(index_bounds(&(..0)), (1, Some(0)));
        assert_eq!(index_bounds(&(..)), (0, None));
    }
}
