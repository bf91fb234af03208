//! openraft's storage conformance suite, run against the redb store.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

use super::{LogStore, RaftDb, StateMachineStore};
use crate::types::TypeConfig;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = RaftDb::open(dir.path()).expect("open store");
        let sm = StateMachineStore::open(db.clone(), crate::state::cluster_version::VersionRange::SUPPORTED)
            .expect("open state machine");
        Ok((dir, LogStore::new(db).expect("open the log"), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_passes_openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RedbBuilder).await
}

#[test]
fn cluster_id_survives_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = RaftDb::open(dir.path()).unwrap();
        assert_eq!(db.cluster_id().unwrap(), None);
        db.set_cluster_id("test-1234").unwrap();
    }
    let db = RaftDb::open(dir.path()).unwrap();
    assert_eq!(db.cluster_id().unwrap().as_deref(), Some("test-1234"));
}
