//! The Raft log and vote, stored in redb. The vote is fsync'd before
//! `save_vote` returns; log entries are fsync'd, in groups, by one writer
//! thread before openraft is told they are persisted (see `log_writer`),
//! and read meanwhile from the log's tail in memory (see `log_tail`).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::ReadableTable;

use super::db::{LOG, META, RaftDb};
use super::log_tail::LogTail;
use super::log_writer::{LogChange, LogWriter};
use crate::codec::format::{decode_entry, decode_log_id, decode_vote, encode_entry, encode_log_id, encode_vote};
use crate::raft::message_limits::APPEND_BUDGET_BYTES;
use crate::types::TypeConfig;
use crate::types::typ::{Entry, LogId, Vote};

/// openraft's log storage over [`RaftDb`]. Clones share the database, the
/// log's tail and the writer thread.
#[derive(Clone)]
pub struct LogStore {
    db: RaftDb,
    tail: Arc<Mutex<LogTail>>,
    writer: Arc<LogWriter>,
    /// The most entry bytes read for one AppendEntries.
    append_budget: u64,
}

impl LogStore {
    pub fn new(db: RaftDb) -> Result<Self, io::Error> {
        Self::open(db, APPEND_BUDGET_BYTES, None)
    }

    /// A store that times each durable write of the log into `commit_time`.
    pub fn timed(db: RaftDb, commit_time: prometheus_client::metrics::histogram::Histogram) -> Result<Self, io::Error> {
        Self::open(db, APPEND_BUDGET_BYTES, Some(commit_time))
    }

    /// A store whose replication reads stop at `append_budget` bytes.
    pub fn with_append_budget(db: RaftDb, append_budget: u64) -> Result<Self, io::Error> {
        Self::open(db, append_budget, None)
    }

    fn open(
        db: RaftDb,
        append_budget: u64,
        commit_time: Option<prometheus_client::metrics::histogram::Histogram>,
    ) -> Result<Self, io::Error> {
        let next = db.read(|txn| Ok(txn.open_table(LOG)?.last()?.map(|(index, _)| index.value())))?;
        let purged = match db.get_bytes(META, "last_purged")? {
            Some(bytes) => decode_log_id(&bytes)?,
            None => None,
        };
        let next = next.or(purged.map(|p| p.index())).map_or(0, |last| last + 1);
        let tail = Arc::new(Mutex::new(LogTail::new(next)));
        let writer = Arc::new(LogWriter::start(db.clone(), tail.clone(), commit_time)?);
        Ok(LogStore {
            db,
            tail,
            writer,
            append_budget,
        })
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, LogTail> {
        self.tail.lock().expect("log tail lock poisoned")
    }

    /// The entries of `start..=end` (`None`: to the last), the first always
    /// and the rest within `budget` stored bytes: the newest from the tail,
    /// those below it from the database. The database's view is taken under
    /// the tail's lock, so that the two agree: an entry that leaves the tail
    /// after it was stored before it, and a truncation after it changes
    /// neither.
    fn read_entries(&self, start: u64, end: Option<u64>, budget: u64) -> Result<Vec<Entry>, io::Error> {
        let (newest, view) = {
            let tail = self.tail();
            let newest = tail.read(start, end, budget);
            let below = start < newest.first;
            (newest, below.then(|| self.db.begin_read()).transpose()?)
        };
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        if let Some(view) = view {
            let below = end.map_or(newest.first - 1, |end| end.min(newest.first - 1));
            let read = || -> Result<(Vec<Vec<u8>>, bool), redb::Error> {
                let table = view.open_table(LOG)?;
                let (mut rows, mut bytes) = (Vec::new(), 0u64);
                for row in table.range(start..=below)? {
                    let (_, value) = row?;
                    let value = value.value();
                    if !within_budget(rows.len(), bytes, value.len() as u64, budget) {
                        return Ok((rows, true));
                    }
                    bytes += value.len() as u64;
                    rows.push(value.to_vec());
                }
                Ok((rows, false))
            };
            let (rows, cut) = read().map_err(super::db::io_error)?;
            for row in &rows {
                bytes += row.len() as u64;
                entries.push(decode_entry(row)?);
            }
            if cut {
                // Cut short by the budget: nothing newer goes.
                return Ok(entries);
            }
        }
        for (entry, size) in newest.entries {
            if !within_budget(entries.len(), bytes, size, budget) {
                break;
            }
            bytes += size;
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// Whether a read that holds `rows` entries of `bytes` in all may take one
/// of `next` bytes more: the first always, the rest within `budget`.
fn within_budget(rows: usize, bytes: u64, next: u64, budget: u64) -> bool {
    rows == 0 || bytes + next <= budget
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
        self.read_entries(start, end, u64::MAX)
    }

    /// The entries one AppendEntries carries: those in `start..end` up to
    /// the append budget in stored bytes, and always the first, so that the
    /// message stays within what peers accept (see
    /// [`crate::raft::message_limits`]).
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        if end <= start {
            return Ok(Vec::new());
        }
        self.read_entries(start, Some(end - 1), self.append_budget)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.db
            .get_bytes(META, "vote")?
            .map(|bytes| decode_vote(&bytes))
            .transpose()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = match self.db.get_bytes(META, "last_purged")? {
            Some(bytes) => decode_log_id(&bytes)?,
            None => None,
        };
        // The newest entry is the tail's, when it holds any; else the
        // database's last, else the last purged.
        let newest = self.tail().last_log_id();
        let last_log_id = match newest {
            Some(newest) => Some(newest),
            None => {
                let last = self.db.read(|txn| {
                    let table = txn.open_table(LOG)?;
                    Ok(table.last()?.map(|(_, v)| v.value().to_vec()))
                })?;
                match last {
                    Some(bytes) => Some(decode_entry(&bytes)?.log_id()),
                    None => last_purged_log_id,
                }
            }
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
        // Through the writer, after the appends queued before it: openraft
        // takes every append under an older vote as persisted once a newer
        // vote is.
        let vote = encode_vote(vote, self.db.format())?;
        self.writer.change(|done| LogChange::Vote { vote, done }).await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // In the format every member reads (see `codec::format`).
        let format = self.db.format();
        let (mut rows, mut ids, mut kept) = (Vec::new(), Vec::new(), Vec::new());
        for entry in entries {
            let bytes = encode_entry(&entry, format)?;
            let id = entry.log_id();
            kept.push((entry, bytes.len() as u64));
            rows.push((id.index(), bytes));
            ids.push(id);
        }
        // Readable at once (openraft reads them back to replicate them
        // before they are durable); the writer stores them, fsyncs, and
        // then reports them persisted.
        self.tail().append(kept).map_err(io::Error::other)?;
        self.writer.append(rows, ids, callback).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        // Gone from the tail first: nothing reads them from the database
        // while the writer removes them there (the tail covers `from` on).
        self.tail().truncate(from);
        self.writer.change(|done| LogChange::Truncate { from, done }).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let last_purged = encode_log_id(&log_id, self.db.format())?;
        let upto = log_id.index();
        self.tail().purge(upto);
        let purge = |done| LogChange::Purge {
            upto,
            last_purged,
            done,
        };
        self.writer.change(purge).await
    }
}

#[cfg(test)]
mod tests {
    use redb::Durability;

    use super::*;
    use crate::types::Command;

    #[tokio::test]
    async fn a_log_written_before_the_raise_in_json_and_after_it_in_binary_reads_back_whole() {
        use crate::codec::format::Format;
        use openraft::vote::RaftLeaderIdExt;
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        assert_eq!(db.format(), Format::Json);
        LogStore::new(db.clone())
            .unwrap()
            .save_vote(&Vote::new(1, 1))
            .await
            .unwrap();
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(1, 1);
        let entry = |index: u64| {
            let put = Command::Put {
                key: format!("k{index}"),
                value: vec![index as u8; 3],
            };
            Entry::new_normal(LogId::new(leader, index), put)
        };
        let write = |index: u64, format: Format| {
            let bytes = encode_entry(&entry(index), format).unwrap();
            db.write(Durability::Immediate, |txn| {
                txn.open_table(LOG)?.insert(index, bytes.as_slice())?;
                Ok(())
            })
            .unwrap();
        };
        write(1, db.format());
        db.raise_cluster_version(crate::state::cluster_version::BINARY_FORMATS)
            .unwrap();
        assert_eq!(db.format(), Format::Binary);
        write(2, db.format());
        // A store opened over that log, as at a restart.
        let mut store = LogStore::new(db.clone()).unwrap();
        store.save_vote(&Vote::new_committed(2, 1)).await.unwrap();

        let formats: Vec<Format> = db
            .read(|txn| {
                let table = txn.open_table(LOG)?;
                let rows = table.range(1..=2)?.map(|r| r.map(|(_, v)| Format::of(v.value())));
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(formats, [Format::Json, Format::Binary]);
        assert_eq!(store.try_get_log_entries(1..=2).await.unwrap(), [entry(1), entry(2)]);
        assert_eq!(store.get_log_state().await.unwrap().last_log_id, Some(entry(2).log_id));
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new_committed(2, 1)));
        assert_eq!(
            Format::of(&store.db.get_bytes(META, "vote").unwrap().unwrap()),
            Format::Binary
        );
    }

    #[test]
    fn a_read_takes_the_first_entry_whatever_its_size_and_the_rest_within_the_budget() {
        assert!(within_budget(0, 0, 10_000, 100), "the first entry always goes");
        assert!(within_budget(1, 60, 40, 100));
        assert!(!within_budget(1, 60, 41, 100));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replication_reads_stop_at_the_append_budget() {
        use openraft::vote::RaftLeaderIdExt;
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        // Ten entries of about 4 KiB of JSON each (1 KiB of bytes as numbers).
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(1, 1);
        let rows: Vec<(u64, Vec<u8>)> = (1..=10)
            .map(|index| {
                let command = Command::Put {
                    key: format!("k{index:02}"),
                    value: vec![200; 1024],
                };
                let entry = Entry::new_normal(LogId::new(leader, index), command);
                (index, crate::store::db::to_json(&entry).unwrap())
            })
            .collect();
        let size = rows[0].1.len() as u64;
        db.write(Durability::Immediate, |txn| {
            let mut table = txn.open_table(LOG)?;
            for (index, bytes) in &rows {
                table.insert(*index, bytes.as_slice())?;
            }
            Ok(())
        })
        .unwrap();
        let mut store = LogStore::with_append_budget(db.clone(), 3 * size + size / 2).unwrap();
        let read = store.limited_get_log_entries(1, 11).await.unwrap();
        assert_eq!(read.iter().map(|e| e.index()).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(store.limited_get_log_entries(9, 11).await.unwrap().len(), 2);
        // Newer entries, appended through the store, sit in its tail: a read
        // goes on from the database into the tail within the same budget.
        let newer: Vec<Entry> = (11..=12)
            .map(|index| {
                let command = Command::Put {
                    key: format!("k{index:02}"),
                    value: vec![200; 1024],
                };
                Entry::new_normal(LogId::new(leader, index), command)
            })
            .collect();
        store.append(newer, IOFlushed::noop()).await.unwrap();
        let read = store.limited_get_log_entries(9, 13).await.unwrap();
        assert_eq!(read.iter().map(|e| e.index()).collect::<Vec<_>>(), vec![9, 10, 11]);
        let read = store.limited_get_log_entries(11, 13).await.unwrap();
        assert_eq!(read.iter().map(|e| e.index()).collect::<Vec<_>>(), vec![11, 12]);
        let mut tiny = LogStore::with_append_budget(db, 1).unwrap();
        assert_eq!(
            tiny.limited_get_log_entries(4, 11).await.unwrap().len(),
            1,
            "never empty"
        );
        assert!(tiny.limited_get_log_entries(4, 4).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_entries_read_back_at_once_and_from_the_database_once_stored() {
        use openraft::vote::RaftLeaderIdExt;
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(1, 1);
        let entry = |index: u64| {
            let put = Command::Put {
                key: format!("k{index}"),
                value: vec![index as u8],
            };
            Entry::new_normal(LogId::new(leader, index), put)
        };
        let mut store = LogStore::new(db.clone()).unwrap();
        use openraft::type_config::TypeConfigExt;
        let (flushed_tx, flushed) = TypeConfig::oneshot();
        store
            .append((1..=3).map(entry), IOFlushed::signal(flushed_tx))
            .await
            .unwrap();
        // Readable before the writer reports them durable.
        assert_eq!(
            store.try_get_log_entries(1..=3).await.unwrap(),
            [entry(1), entry(2), entry(3)]
        );
        flushed.await.unwrap().unwrap();
        // A vote saved after an append is durable only with the append:
        // openraft takes the append as persisted once the vote is.
        store.append([entry(4)], IOFlushed::noop()).await.unwrap();
        store.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        let fresh = LogStore::new(db.clone()).unwrap();
        assert_eq!(fresh.tail().read(0, None, u64::MAX).first, 5, "entry 4 is stored");
        store.truncate_after(Some(entry(2).log_id)).await.unwrap();
        store.purge(entry(1).log_id).await.unwrap();
        // A store opened anew (as after a restart) reads the database only.
        let mut reopened = LogStore::new(db).unwrap();
        assert_eq!(reopened.try_get_log_entries(0..).await.unwrap(), [entry(2)]);
        let state = reopened.get_log_state().await.unwrap();
        assert_eq!(
            (state.last_purged_log_id, state.last_log_id),
            (Some(entry(1).log_id), Some(entry(2).log_id))
        );
    }

    #[test]
    fn index_bounds_cover_every_range_form() {
        assert_eq!(index_bounds(&(3..7)), (3, Some(6)));
        assert_eq!(index_bounds(&(3..=7)), (3, Some(7)));
        assert_eq!(index_bounds(&(3..)), (3, None));
        assert_eq!(index_bounds(&(..0)), (1, Some(0)));
        assert_eq!(index_bounds(&(..)), (0, None));
    }
}
