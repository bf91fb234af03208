//! The replicated state machine: a [`ClusterState`] in memory, mirrored row by
//! row into redb, with snapshots for log compaction and new members.

use std::io::{self, Cursor};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Durability, ReadableTable};
use serde::{Deserialize, Serialize};

use super::db::{RaftDb, SM_DATA, SM_META, from_json, to_json};
use crate::cluster_state::{Change, ClusterState};
use crate::types::TypeConfig;
use crate::types::typ::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership};

/// A snapshot as stored in `sm_meta` under `snapshot`.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// openraft's state machine over [`RaftDb`]. Clones share the state.
#[derive(Clone)]
pub struct StateMachineStore {
    db: RaftDb,
    state: Arc<RwLock<Applied>>,
}

/// The in-memory image of what has been applied.
#[derive(Default)]
struct Applied {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    cluster: ClusterState,
}

impl StateMachineStore {
    /// Loads the state machine from the database.
    pub fn open(db: RaftDb) -> Result<Self, io::Error> {
        let last_applied = db
            .get_json::<Option<LogId>>(SM_META, "last_applied")?
            .flatten();
        let last_membership = db.get_json(SM_META, "last_membership")?.unwrap_or_default();
        let rows = db.read(|txn| {
            let table = txn.open_table(SM_DATA)?;
            let mut rows = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                rows.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(rows)
        })?;
        let applied = Applied {
            last_applied,
            last_membership,
            cluster: ClusterState::from_rows(rows),
        };
        Ok(StateMachineStore {
            db,
            state: Arc::new(RwLock::new(applied)),
        })
    }

    /// Reads the applied cluster state.
    pub fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&self
            .state
            .read()
            .expect("state machine lock poisoned")
            .cluster)
    }

    /// Index of the last applied log entry, 0 if none.
    pub fn last_applied_index(&self) -> u64 {
        self.state
            .read()
            .expect("state machine lock poisoned")
            .last_applied
            .as_ref()
            .map_or(0, |l| l.index())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data) = {
            let applied = self.state.read().expect("state machine lock poisoned");
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.last_membership.clone(),
            };
            (meta, to_json(&applied.cluster)?)
        };
        let stored = to_json(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })?;
        self.db
            .blocking(move |db| {
                db.write(Durability::Immediate, |txn| {
                    txn.open_table(SM_META)?
                        .insert("snapshot", stored.as_slice())?;
                    Ok(())
                })
            })
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.state.read().expect("state machine lock poisoned");
        Ok((
            applied.last_applied,
            applied.last_membership.clone(),
        ))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut changes: Vec<Change> = Vec::new();
        let mut responses = Vec::new();
        let (last_applied, last_membership) = {
            let mut batch = Vec::new();
            while let Some(item) = entries.try_next().await? {
                batch.push(item);
            }
            let mut applied = self.state.write().expect("state machine lock poisoned");
            for (entry, responder) in batch {
                applied.last_applied = Some(entry.log_id());
                let response = match &entry.payload {
                    EntryPayload::Blank => Default::default(),
                    EntryPayload::Normal(command) => {
                        let (response, mut changed) = applied.cluster.apply(command);
                        changes.append(&mut changed);
                        response
                    }
                    EntryPayload::Membership(membership) => {
                        applied.last_membership =
                            StoredMembership::new(Some(entry.log_id()), membership.clone());
                        Default::default()
                    }
                };
                if let Some(responder) = responder {
                    responses.push((responder, response));
                }
            }
            (
                to_json(&applied.last_applied)?,
                to_json(&applied.last_membership)?,
            )
        };
        self.db
            .blocking(move |db| {
                db.write(Durability::None, |txn| {
                    let mut data = txn.open_table(SM_DATA)?;
                    for change in &changes {
                        match &change.value {
                            Some(value) => data.insert(change.key.as_str(), value.as_slice())?,
                            None => data.remove(change.key.as_str())?,
                        };
                    }
                    let mut meta = txn.open_table(SM_META)?;
                    meta.insert("last_applied", last_applied.as_slice())?;
                    meta.insert("last_membership", last_membership.as_slice())?;
                    Ok(())
                })
            })
            .await?;
        for (responder, response) in responses {
            responder.send(response);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let cluster: ClusterState = from_json(&data)?;
        let rows = cluster.to_rows();
        let stored = to_json(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;
        let last_applied = to_json(&meta.last_log_id)?;
        let last_membership = to_json(&meta.last_membership)?;
        self.db
            .blocking(move |db| {
                db.write(Durability::Immediate, |txn| {
                    let mut table = txn.open_table(SM_DATA)?;
                    table.retain(|_, _| false)?;
                    for (k, v) in &rows {
                        table.insert(k.as_str(), v.as_slice())?;
                    }
                    let mut sm_meta = txn.open_table(SM_META)?;
                    sm_meta.insert("last_applied", last_applied.as_slice())?;
                    sm_meta.insert("last_membership", last_membership.as_slice())?;
                    sm_meta.insert("snapshot", stored.as_slice())?;
                    Ok(())
                })
            })
            .await?;
        let mut applied = self.state.write().expect("state machine lock poisoned");
        applied.cluster = cluster;
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let stored: Option<StoredSnapshot> = self.db.get_json(SM_META, "snapshot")?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Cursor::new(s.data),
        }))
    }
}
