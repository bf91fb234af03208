//! The redb database behind a node's Raft storage.
//!
//! Durability: whatever Raft is told is written survives a crash. The log
//! and the vote are written by one thread, in the order they were made,
//! each batch in one transaction with `Durability::Immediate`, which fsyncs
//! before openraft hears of it (see `log_writer`); snapshots commit the
//! same way. The state machine itself lives in memory and is rebuilt from
//! the last snapshot and the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::format::{AppliedVersion, Format};
use crate::raft::StorageIdentity;
use crate::state::cluster_version::{self, ClusterVersion};

/// Raft log entries by index, as JSON.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft metadata (vote, last purged log id) and node metadata (cluster id).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The state machine's last snapshot.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

/// Errors opening or using a node's store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}; check data_dir and its permissions")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot open the store at {path}: {source}; is another baton-node using this data_dir? \
         stop it, or give this node its own data_dir"
    )]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("store I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The most redb keeps of the file in memory. redb keeps every page it
/// writes, up to 1 GiB by default: the log's pages until a snapshot purges
/// them, and each snapshot's value as one page (32 MiB for a snapshot of
/// 20 MB), so a node's memory grew by tens of MiB between snapshots. Little
/// is read back: recent entries come from the log's tail in memory
/// (`log_tail.rs`) and the state machine lives in memory. What does read
/// the file (the log's purge after a snapshot, a follower far behind, a
/// snapshot sent, a restart's replay) reads the kernel's page cache.
const CACHE_BYTES: usize = 8 << 20;

/// A handle to the database, cheap to clone.
#[derive(Clone)]
pub struct RaftDb {
    db: Arc<Database>,
    identity: StorageIdentity,
    /// The highest cluster version applied here, which picks the format
    /// the log store and the state machine write (`codec::format`).
    applied_version: AppliedVersion,
}

/// META keys of the storage identity (see [`crate::raft::identity`]).
const STORAGE_ID: &str = "storage_id";
const STORAGE_LEGACY: &str = "storage_legacy";
/// META key of the highest cluster version applied here.
const CLUSTER_VERSION: &str = "cluster_version";

impl RaftDb {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join("raft.redb");
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let db = Arc::new(db);
        let identity = Self::identify(&db)?;
        let raft_db = RaftDb {
            db,
            identity,
            applied_version: AppliedVersion::new(cluster_version::FIRST),
        };
        raft_db.applied_version.raise(raft_db.cluster_version()?);
        Ok(raft_db)
    }

    /// The format to write in, by the highest cluster version applied here.
    pub fn format(&self) -> Format {
        self.applied_version.format()
    }

    /// The highest cluster version applied here, shared (it picks the format
    /// of what the node sends, too).
    pub fn applied_version(&self) -> AppliedVersion {
        self.applied_version.clone()
    }

    /// The store's identity, created with the store: a fresh id, marked
    /// legacy when the store already held Raft state (a store of a release
    /// before storage ids, whose membership records none).
    fn identify(db: &Database) -> Result<StorageIdentity, std::io::Error> {
        let mut txn = db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(std::io::Error::other)?;
        let identity = {
            let log = txn.open_table(LOG).map_err(db_error)?;
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let sm_meta = txn.open_table(SM_META).map_err(db_error)?;
            let stored = |key: &str| -> Result<Option<Vec<u8>>, std::io::Error> {
                Ok(meta.get(key).map_err(db_error)?.map(|v| v.value().to_vec()))
            };
            match stored(STORAGE_ID)? {
                Some(id) => StorageIdentity {
                    id: from_json(&id)?,
                    legacy: stored(STORAGE_LEGACY)?
                        .map(|v| from_json(&v))
                        .transpose()?
                        .unwrap_or(false),
                },
                None => {
                    let has_raft_state = !log.is_empty().map_err(db_error)?
                        || !sm_meta.is_empty().map_err(db_error)?
                        || stored("vote")?.is_some();
                    let identity = StorageIdentity {
                        legacy: has_raft_state,
                        ..StorageIdentity::fresh()
                    };
                    meta.insert(STORAGE_ID, to_json(&identity.id)?.as_slice())
                        .map_err(db_error)?;
                    meta.insert(STORAGE_LEGACY, to_json(&identity.legacy)?.as_slice())
                        .map_err(db_error)?;
                    identity
                }
            }
        };
        txn.commit().map_err(db_error)?;
        Ok(identity)
    }

    /// Which storage this is (see [`crate::raft::identity`]).
    pub fn identity(&self) -> &StorageIdentity {
        &self.identity
    }

    /// Runs `f` in a write transaction and commits it with `durability`.
    pub(crate) fn write<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, std::io::Error> {
        let mut txn = self.db.begin_write().map_err(|e| io_error(e.into()))?;
        txn.set_durability(durability).map_err(std::io::Error::other)?;
        let out = f(&txn).map_err(io_error)?;
        txn.commit().map_err(|e| io_error(e.into()))?;
        Ok(out)
    }

    /// A read transaction: what every write committed so far holds.
    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, std::io::Error> {
        self.db.begin_read().map_err(|e| io_error(e.into()))
    }

    /// Runs `f` in a read transaction.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, std::io::Error> {
        let run = || -> Result<T, redb::Error> {
            let txn = self.db.begin_read()?;
            f(&txn)
        };
        run().map_err(io_error)
    }

    /// Runs blocking store work off the async runtime's worker threads.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(RaftDb) -> Result<T, std::io::Error> + Send + 'static,
    ) -> Result<T, std::io::Error> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(db))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Reads a JSON value from a string-keyed table.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, std::io::Error> {
        self.get_bytes(table, key)?.map(|b| from_json(&b)).transpose()
    }

    /// Reads a value from a string-keyed table, as stored.
    pub(crate) fn get_bytes(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, std::io::Error> {
        self.read(|txn| Ok(txn.open_table(table)?.get(key)?.map(|v| v.value().to_vec())))
    }

    /// The cluster id this data directory belongs to, if it has joined one.
    pub fn cluster_id(&self) -> Result<Option<String>, std::io::Error> {
        self.get_json(META, "cluster_id")
    }

    /// The highest cluster version this data directory has applied (see
    /// `crate::state::cluster_version`); 1 if it never applied a raise.
    pub fn cluster_version(&self) -> Result<ClusterVersion, std::io::Error> {
        Ok(self.get_json(META, CLUSTER_VERSION)?.unwrap_or(cluster_version::FIRST))
    }

    /// Records that this data directory has applied cluster version
    /// `version`, durably; never lowers what is recorded.
    pub fn raise_cluster_version(&self, version: ClusterVersion) -> Result<(), std::io::Error> {
        let bytes = to_json(&version)?;
        self.write(Durability::Immediate, |txn| {
            let mut meta = txn.open_table(META)?;
            let recorded: ClusterVersion = match meta.get(CLUSTER_VERSION)? {
                Some(v) => from_json(v.value())?,
                None => cluster_version::FIRST,
            };
            if version > recorded {
                meta.insert(CLUSTER_VERSION, bytes.as_slice())?;
            }
            Ok(())
        })?;
        self.applied_version.raise(version);
        Ok(())
    }

    /// Records the cluster id this data directory belongs to, durably.
    pub fn set_cluster_id(&self, cluster_id: &str) -> Result<(), std::io::Error> {
        let bytes = to_json(&cluster_id)?;
        self.write(Durability::Immediate, |txn| {
            txn.open_table(META)?.insert("cluster_id", bytes.as_slice())?;
            Ok(())
        })
    }
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, std::io::Error> {
    serde_json::to_vec(value).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    serde_json::from_slice(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn db_error(e: impl Into<redb::Error>) -> std::io::Error {
    io_error(e.into())
}

pub(crate) fn io_error(e: redb::Error) -> std::io::Error {
    std::io::Error::other(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(db: &RaftDb, key: &str) -> Option<Vec<u8>> {
        db.read(|txn| Ok(txn.open_table(META)?.get(key)?.map(|v| v.value().to_vec())))
            .unwrap()
    }

    #[test]
    fn a_new_store_gets_a_storage_id_kept_on_disk_as_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let first = RaftDb::open(dir.path()).unwrap().identity().clone();
        assert!(!first.legacy);
        let db = RaftDb::open(dir.path()).unwrap();
        assert_eq!(db.identity(), &first, "the id is created once and kept");
        assert_eq!(raw(&db, STORAGE_ID).unwrap(), format!("\"{}\"", first.id).into_bytes());
        assert_eq!(raw(&db, STORAGE_LEGACY).unwrap(), b"false");
    }

    #[test]
    fn a_store_with_raft_state_and_no_storage_id_is_legacy() {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        // As a release before storage ids left it: a vote, no id.
        db.write(Durability::Immediate, |txn| {
            let mut meta = txn.open_table(META)?;
            meta.insert("vote", b"{}".as_slice())?;
            meta.remove(STORAGE_ID)?;
            meta.remove(STORAGE_LEGACY)?;
            Ok(())
        })
        .unwrap();
        drop(db);
        let db = RaftDb::open(dir.path()).unwrap();
        assert!(db.identity().legacy);
        assert_eq!(raw(&db, STORAGE_LEGACY).unwrap(), b"true");
    }

    #[test]
    fn the_cluster_version_is_kept_as_pinned_and_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        assert_eq!(db.cluster_version().unwrap(), 1, "a store that never raised it is at 1");
        assert_eq!(raw(&db, CLUSTER_VERSION), None);
        db.raise_cluster_version(2).unwrap();
        db.raise_cluster_version(1).unwrap();
        assert_eq!(raw(&db, CLUSTER_VERSION).unwrap(), b"2");
        drop(db);
        assert_eq!(RaftDb::open(dir.path()).unwrap().cluster_version().unwrap(), 2);
    }
}
