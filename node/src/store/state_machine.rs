//! The replicated state machine: a [`ClusterState`] in memory, made durable
//! by snapshots.
//!
//! Applying an entry changes only memory: the entry itself is already durable
//! in the Raft log, which openraft never purges past the last snapshot. On
//! start-up the state is the last snapshot's, and openraft re-applies the log
//! entries after it. So an apply costs no disk write, and a snapshot (every
//! `timing.snapshot_after_entries` entries) costs one.

use std::io::{self, Cursor};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::Durability;
use serde::{Deserialize, Serialize};

use super::db::{RaftDb, SM_META, from_json, to_json};
use crate::cluster_state::ClusterState;
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
    /// The last applied index, announced after every apply.
    applied: Arc<tokio::sync::watch::Sender<u64>>,
}

/// The in-memory image of what has been applied.
#[derive(Default)]
struct Applied {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    cluster: ClusterState,
}

impl StateMachineStore {
    /// Loads the last snapshot, if any, as the applied state.
    pub fn open(db: RaftDb) -> Result<Self, io::Error> {
        let applied = match db.get_json::<StoredSnapshot>(SM_META, "snapshot")? {
            Some(snapshot) => Applied {
                last_applied: snapshot.meta.last_log_id,
                last_membership: snapshot.meta.last_membership,
                cluster: from_json(&snapshot.data)?,
            },
            None => Applied::default(),
        };
        let index = applied.last_applied.as_ref().map_or(0, |l| l.index());
        Ok(StateMachineStore {
            db,
            state: Arc::new(RwLock::new(applied)),
            applied: Arc::new(tokio::sync::watch::Sender::new(index)),
        })
    }

    /// Reads the applied cluster state.
    pub fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&self.state.read().expect("state machine lock poisoned").cluster)
    }

    /// Changes whenever entries have been applied (or a snapshot installed).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
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

    /// Stores `snapshot` durably as the current one.
    async fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), io::Error> {
        let stored = to_json(&StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        })?;
        self.db
            .blocking(move |db| {
                db.write(Durability::Immediate, |txn| {
                    txn.open_table(SM_META)?.insert("snapshot", stored.as_slice())?;
                    Ok(())
                })
            })
            .await
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
        self.save(&meta, &data).await?;
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
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut responses = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let mut applied = self.state.write().expect("state machine lock poisoned");
            applied.last_applied = Some(entry.log_id());
            let response = match &entry.payload {
                EntryPayload::Blank => Default::default(),
                EntryPayload::Normal(command) => applied.cluster.apply(command),
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id()), membership.clone());
                    Default::default()
                }
            };
            if let Some(responder) = responder {
                responses.push((responder, response));
            }
        }
        for (responder, response) in responses {
            responder.send(response);
        }
        self.applied.send_replace(self.last_applied_index());
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let cluster: ClusterState = from_json(&data)?;
        self.save(meta, &data).await?;
        let mut applied = self.state.write().expect("state machine lock poisoned");
        applied.cluster = cluster;
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();
        drop(applied);
        self.applied.send_replace(self.last_applied_index());
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
