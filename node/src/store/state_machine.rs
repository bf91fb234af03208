//! The replicated state machine: a [`ClusterState`] in memory, made durable
//! by snapshots.
//!
//! Applying an entry changes only memory: the entry itself is already durable
//! in the Raft log, which openraft never purges past the last snapshot. On
//! start-up the state is the last snapshot's, and openraft re-applies the log
//! entries after it. So an apply costs no disk write, and a snapshot (every
//! `timing.snapshot_after_entries` entries) costs one.
//!
//! A snapshot is built from a copy of the state taken under the lock, and
//! encoded and written after the lock is released, so applying goes on
//! meanwhile. It is stored as its metadata beside its data (the raw bytes,
//! not wrapped again), under [`SNAPSHOT_META_KEY`] and
//! [`SNAPSHOT_DATA_KEY`], both as JSON below the cluster version of the
//! binary formats and as protobuf from it on (`crate::codec::format`; the
//! state's own version picks); a store written before that layout, with
//! both in one JSON document under [`LEGACY_SNAPSHOT_KEY`], is still read.

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Durability, ReadableTable};
use serde::{Deserialize, Serialize};

use super::db::{RaftDb, SM_META, from_json};
use super::event_log::EventLog;
use crate::codec::format::{Format, decode_snapshot_meta, decode_state, encode_frozen, encode_snapshot_meta};
use crate::state::cluster::{ClusterState, Rules};
use crate::state::cluster_version::{ClusterVersion, OutOfRange, VersionRange};
use crate::state::command::Command;
use crate::state::events;
use crate::state::frozen::FrozenState;
use crate::state::tasks::TickCommit;
use crate::tasks::timeliness::{Summary, Timeliness};
use crate::types::typ::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership};
use crate::types::{NodeId, TypeConfig, now_ms};

/// The current snapshot's metadata (JSON or protobuf, as its data).
const SNAPSHOT_META_KEY: &str = "snapshot_meta";
/// The current snapshot's data: a [`ClusterState`] (JSON or protobuf), stored as is.
const SNAPSHOT_DATA_KEY: &str = "snapshot_data";
/// Where stores of earlier releases keep the snapshot: a
/// [`LegacySnapshot`] as JSON (its data a JSON array of numbers).
const LEGACY_SNAPSHOT_KEY: &str = "snapshot";

/// A snapshot as earlier releases stored it, under [`LEGACY_SNAPSHOT_KEY`].
#[derive(Serialize, Deserialize)]
struct LegacySnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// openraft's state machine over [`RaftDb`]. Clones share the state.
#[derive(Clone)]
pub struct StateMachineStore {
    db: RaftDb,
    /// The cluster versions this node can apply: an entry or a snapshot
    /// above them stops it (see [`crate::state::cluster_version`]).
    supported: VersionRange,
    state: Arc<RwLock<Applied>>,
    /// The last applied index, announced after every apply.
    applied: Arc<tokio::sync::watch::Sender<u64>>,
    /// How on time the tick commits this node applies are (node-local,
    /// never replicated).
    timeliness: Arc<Mutex<Timeliness>>,
    /// The same lateness over the node's life, for `/metrics` (if given).
    commit_lateness: Option<prometheus_client::metrics::histogram::Histogram>,
    /// What the applied entries told (`batonctl events`; node-local).
    events: Arc<EventLog>,
}

/// The in-memory image of what has been applied.
#[derive(Default)]
struct Applied {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    cluster: ClusterState,
}

impl StateMachineStore {
    /// Loads the last snapshot, if any, as the applied state, for a node
    /// that supports the cluster versions `supported`.
    pub fn open(db: RaftDb, supported: VersionRange) -> Result<Self, io::Error> {
        let applied = match load(&db)? {
            Some((meta, data)) => Applied {
                last_applied: meta.last_log_id,
                last_membership: meta.last_membership,
                cluster: decode_state(&data)?,
            },
            None => Applied::default(),
        };
        if let Some(refused) = supported.refuse(applied.cluster.cluster_version, "the stored snapshot") {
            return Err(io::Error::new(io::ErrorKind::Unsupported, refused));
        }
        // A crash between storing a snapshot and recording its version
        // leaves the record behind: it catches up here (a write only then).
        if applied.cluster.cluster_version > db.cluster_version()? {
            db.raise_cluster_version(applied.cluster.cluster_version)?;
        }
        let index = applied.last_applied.as_ref().map_or(0, |l| l.index());
        let events = EventLog::default();
        if let Some(last) = &applied.last_applied {
            events.continue_after(last.index());
        }
        Ok(StateMachineStore {
            db,
            supported,
            state: Arc::new(RwLock::new(applied)),
            applied: Arc::new(tokio::sync::watch::Sender::new(index)),
            timeliness: Arc::new(Mutex::new(Timeliness::new(now_ms()))),
            commit_lateness: None,
            events: Arc::new(events),
        })
    }

    /// This store, observing each tick commit's lateness into `histogram`
    /// (`baton_tick_commit_lateness_seconds`) besides its window.
    pub fn with_commit_lateness(self, histogram: prometheus_client::metrics::histogram::Histogram) -> Self {
        StateMachineStore {
            commit_lateness: Some(histogram),
            ..self
        }
    }

    /// How on time the tick commits this node applied over the last
    /// seconds were.
    pub fn timeliness(&self) -> Summary {
        self.timeliness
            .lock()
            .expect("timeliness lock poisoned")
            .summary(now_ms())
    }

    /// What the entries this node applied told.
    pub fn events(&self) -> &EventLog {
        &self.events
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

    /// Stores a snapshot durably as the current one, unless the store holds
    /// one as new or newer, and hands its data back. A build runs beside
    /// installs: one that took a copy of the state before a newer snapshot
    /// was installed must not put the older one back (the log before the
    /// newer one is purged, and a restart could not re-apply it).
    async fn save(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<Vec<u8>, io::Error> {
        let last_log_id = meta.last_log_id;
        // Beside its data, in the same format.
        let meta = encode_snapshot_meta(meta, Format::of(&data))?;
        self.db
            .blocking(move |db| {
                let written = db.write(Durability::Immediate, |txn| {
                    let mut table = txn.open_table(SM_META)?;
                    let stored = stored_snapshot(&table, false)?.and_then(|(meta, _)| meta.last_log_id);
                    if stored.is_some() && stored >= last_log_id {
                        return Ok(false);
                    }
                    table.insert(SNAPSHOT_META_KEY, meta.as_slice())?;
                    table.insert(SNAPSHOT_DATA_KEY, data.as_slice())?;
                    table.remove(LEGACY_SNAPSHOT_KEY)?;
                    Ok(true)
                })?;
                if !written {
                    tracing::info!("kept the stored snapshot: it is as new as this one or newer");
                }
                Ok(data)
            })
            .await
    }
}

impl StateMachineStore {
    /// Refuses what is at a cluster version above this node's range (`what`
    /// names it): applying nothing of it, this node stops, saying which
    /// release to run. A node below a cluster's version cannot read what it
    /// may write.
    fn check_version(&self, version: Option<ClusterVersion>, what: impl FnOnce() -> String) -> Result<(), io::Error> {
        match version.filter(|v| *v > self.supported.max) {
            Some(version) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                OutOfRange {
                    what: what(),
                    version,
                    range: self.supported,
                },
            )),
            None => Ok(()),
        }
    }

    /// Records a raised cluster version in the store at once, so that a
    /// binary that does not support it refuses the data dir at start-up,
    /// before it serves anything (see `RaftDb::cluster_version`).
    async fn record_version(&self, before: ClusterVersion) -> Result<(), io::Error> {
        let now = self.read(|s| s.cluster_version);
        if now > before {
            self.db.blocking(move |db| db.raise_cluster_version(now)).await?;
            tracing::info!("the cluster version is now {now}");
        }
        Ok(())
    }
}

/// The tick commits in `command`, batches opened.
fn tick_commits<'a>(command: &'a Command, out: &mut Vec<&'a TickCommit>) {
    match command {
        Command::CommitTick(commit) => out.push(commit),
        Command::Batch(commands) => commands.iter().for_each(|c| tick_commits(c, out)),
        _ => {}
    }
}

/// Reads the current snapshot's metadata (and its data, if `with_data`)
/// from the `sm_meta` table, in either layout; the newer if both are there.
fn stored_snapshot(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    with_data: bool,
) -> Result<Option<(SnapshotMeta, Vec<u8>)>, redb::Error> {
    let meta = table.get(SNAPSHOT_META_KEY)?.map(|v| v.value().to_vec());
    let current = match meta {
        Some(meta) => {
            let data = match with_data {
                true => table
                    .get(SNAPSHOT_DATA_KEY)?
                    .map(|v| v.value().to_vec())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the store holds a snapshot's metadata without its data",
                        )
                    })?,
                false => Vec::new(),
            };
            Some((decode_snapshot_meta(&meta)?, data))
        }
        None => None,
    };
    let legacy = match table.get(LEGACY_SNAPSHOT_KEY)? {
        Some(v) => {
            let legacy: LegacySnapshot = from_json(v.value())?;
            Some((legacy.meta, legacy.data))
        }
        None => None,
    };
    Ok(match (current, legacy) {
        (Some(current), Some(legacy)) if legacy.0.last_log_id > current.0.last_log_id => Some(legacy),
        (Some(current), _) => Some(current),
        (None, legacy) => legacy,
    })
}

/// Reads the current snapshot's metadata and data, in one read.
fn load(db: &RaftDb) -> Result<Option<(SnapshotMeta, Vec<u8>)>, io::Error> {
    db.read(|txn| stored_snapshot(&txn.open_table(SM_META)?, true))
}

/// Encodes `frozen` off the async runtime's threads.
async fn encode(frozen: FrozenState) -> Result<Vec<u8>, io::Error> {
    tokio::task::spawn_blocking(move || encode_frozen(&frozen))
        .await
        .map_err(io::Error::other)?
}

/// Has malloc give back what a snapshot's building or installing freed, on
/// a blocking thread and after what the snapshot's caller waits for.
fn release_memory_after_snapshot(freed: impl Send + 'static) {
    tokio::task::spawn_blocking(move || {
        drop(freed);
        let started = std::time::Instant::now();
        crate::malloc::release_free_memory();
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "malloc gave back free memory"
        );
    });
}

/// Decodes a snapshot's data off the async runtime's threads, handing the
/// data back.
async fn decode(data: Vec<u8>) -> Result<(ClusterState, Vec<u8>), io::Error> {
    tokio::task::spawn_blocking(move || decode_state(&data).map(|cluster| (cluster, data)))
        .await
        .map_err(io::Error::other)?
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let started = std::time::Instant::now();
        // The state frozen under the lock, its records shared; the encoding,
        // which takes far longer, after.
        let (meta, frozen) = {
            let applied = self.state.read().expect("state machine lock poisoned");
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.last_membership.clone(),
            };
            (meta, FrozenState::of(&applied.cluster))
        };
        let frozen_at = started.elapsed();
        let encoded = encode(frozen).await?;
        let encoded_at = started.elapsed();
        let data = self.save(&meta, encoded).await?;
        release_memory_after_snapshot(());
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        tracing::info!(
            index = meta.last_log_id.as_ref().map_or(0, |l| l.index()),
            bytes = data.len(),
            ms = ms(started.elapsed()),
            freeze_ms = ms(frozen_at),
            encode_ms = ms(encoded_at - frozen_at),
            save_ms = ms(started.elapsed() - encoded_at),
            "built a snapshot"
        );
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
        // The test switch is read here, in the shell, never in the rules.
        let rules = Rules {
            fenced: !crate::fencing::disabled(),
        };
        let version_before = self.read(|s| s.cluster_version);
        // Tick commits applied: when each was due (see `timeliness`).
        let mut ticks_due = Vec::new();
        // The newest proposal time among the tick commits applied so far.
        let mut newest_proposed = 0;
        while let Some((entry, responder)) = entries.try_next().await? {
            if let EntryPayload::Normal(command) = &entry.payload {
                self.check_version(command.raises_version_to(), || format!("log entry {}", entry.index()))?;
            }
            let mut applied = self.state.write().expect("state machine lock poisoned");
            applied.last_applied = Some(entry.log_id());
            let mut told = Vec::new();
            let response = match &entry.payload {
                EntryPayload::Blank => {
                    let leader = entry.log_id().leader_id;
                    told.push(events::of_leader(leader.node_id, leader.term));
                    Default::default()
                }
                EntryPayload::Normal(command) => {
                    let mut commits = Vec::new();
                    tick_commits(command, &mut commits);
                    // Each commit's task before it: when it was due, and
                    // whether its committer was handing it off.
                    let before: Vec<Option<(u64, bool)>> = commits
                        .iter()
                        .map(|c| {
                            let t = applied.cluster.tasks.get(&c.task)?;
                            Some((t.next_due_ms, t.handoff_to.is_some() && t.owner == Some(c.node)))
                        })
                        .collect();
                    let response = applied.cluster.apply(command, &rules);
                    let mut handed_off: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
                    for (commit, before) in commits.into_iter().zip(before) {
                        newest_proposed = newest_proposed.max(commit.committed_at_ms);
                        // Committed: the task's record is now this commit's.
                        let after = applied.cluster.tasks.get(&commit.task);
                        let landed = after.is_some_and(|t| {
                            t.tick == commit.tick && t.last_tick_at_ms == Some(commit.committed_at_ms)
                        });
                        if let (true, Some((due, handing_off))) = (landed, before) {
                            ticks_due.push((due, commit.committed_at_ms));
                            // The commit moved it to the node it was handed to.
                            if handing_off && after.is_some_and(|t| t.owner != Some(commit.node)) {
                                handed_off.entry(commit.node).or_default().push(commit.task.clone());
                            }
                        }
                    }
                    told = events::of_command(command, &response, &applied.cluster, handed_off);
                    response
                }
                EntryPayload::Membership(membership) => {
                    let roles = |m: &openraft::Membership<_, _>| -> (Vec<_>, Vec<_>) {
                        (m.voter_ids().collect(), m.learner_ids().collect())
                    };
                    let (before, after) = (roles(applied.last_membership.membership()), roles(membership));
                    told.extend(events::of_membership((&before.0, &before.1), (&after.0, &after.1)));
                    applied.last_membership = StoredMembership::new(Some(entry.log_id()), membership.clone());
                    Default::default()
                }
            };
            drop(applied);
            // Entries whose tick commits were proposed long before are a
            // catch-up: their time-less events get no time of this node's.
            let now = now_ms();
            let caught_up =
                newest_proposed > 0 && now.saturating_sub(newest_proposed) > crate::tasks::timeliness::WINDOW_MS;
            self.events.record(entry.index(), told, (!caught_up).then_some(now));
            if let Some(responder) = responder {
                responses.push((responder, response));
            }
        }
        if !ticks_due.is_empty() {
            let now = now_ms();
            let mut timeliness = self.timeliness.lock().expect("timeliness lock poisoned");
            // A commit proposed long before is a log replayed at start-up
            // or caught up after a partition: this node's lateness, not the
            // tick's.
            let fresh = ticks_due
                .into_iter()
                .filter(|&(_, proposed)| now.saturating_sub(proposed) <= crate::tasks::timeliness::WINDOW_MS);
            for (due, _) in fresh {
                timeliness.record(due, now);
                if let Some(histogram) = self.commit_lateness.as_ref().filter(|_| due > 0) {
                    histogram.observe(now.saturating_sub(due) as f64 / 1000.0);
                }
            }
        }
        self.record_version(version_before).await?;
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
        let started = std::time::Instant::now();
        let (cluster, data) = decode(snapshot.into_inner()).await?;
        self.check_version(Some(cluster.cluster_version), || "the snapshot from the leader".into())?;
        let version_before = self.read(|s| s.cluster_version);
        let data = self.save(meta, data).await?;
        tracing::info!(
            index = meta.last_log_id.as_ref().map_or(0, |l| l.index()),
            bytes = data.len(),
            ms = started.elapsed().as_millis() as u64,
            "installed a snapshot"
        );
        drop(data);
        let replaced = {
            let mut applied = self.state.write().expect("state machine lock poisoned");
            // The version only rises: a snapshot from a leader of a release
            // that does not record it (it reads as 1) keeps the one here.
            let version = applied.cluster.cluster_version.max(cluster.cluster_version);
            let replaced = std::mem::replace(&mut applied.cluster, cluster);
            applied.cluster.cluster_version = version;
            applied.last_applied = meta.last_log_id;
            applied.last_membership = meta.last_membership.clone();
            replaced
        };
        // The state replaced is freed off the lock and the async threads.
        release_memory_after_snapshot(replaced);
        self.events
            .continue_after(meta.last_log_id.as_ref().map_or(0, |l| l.index()));
        self.record_version(version_before).await?;
        self.applied.send_replace(self.last_applied_index());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let stored = self.db.blocking(|db| load(&db)).await?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Cursor::new(data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::RaftSnapshotBuilder;
    use openraft::storage::RaftStateMachine;

    use super::*;
    use crate::store::db::to_json;
    use crate::types::Command;

    fn cluster_with(key: &str) -> ClusterState {
        let mut cluster = ClusterState::default();
        cluster.apply(
            &Command::Put {
                key: key.to_string(),
                value: vec![255; 1000],
            },
            &Rules::FENCED,
        );
        cluster
    }

    #[tokio::test]
    async fn an_entry_above_the_nodes_cluster_versions_stops_it_before_anything_of_it_is_applied() {
        use openraft::vote::RaftLeaderIdExt;
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        let older = VersionRange { min: 1, max: 1 };
        let mut sm = StateMachineStore::open(db.clone(), older).unwrap();
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(1, 1);
        let put = |key: &str| Command::Put {
            key: key.into(),
            value: vec![1],
        };
        let raise = Command::Batch(vec![put("x"), Command::SetClusterVersion { version: 2 }].into());
        let entries: Vec<Result<EntryResponder<TypeConfig>, io::Error>> = vec![
            Ok((
                crate::types::typ::Entry::new_normal(LogId::new(leader, 1), put("a")),
                None,
            )),
            Ok((crate::types::typ::Entry::new_normal(LogId::new(leader, 2), raise), None)),
        ];
        let err = sm.apply(futures::stream::iter(entries)).await.unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "log entry 2 is at cluster version 2; this baton-node ({}) supports cluster version 1",
                crate::VERSION
            )),
            "{err}"
        );
        assert_eq!(sm.last_applied_index(), 1, "the entry before it applied");
        assert!(sm.read(|s| s.kv.contains_key("a") && !s.kv.contains_key("x")));
        assert_eq!(db.cluster_version().unwrap(), 1);

        // A node that supports it applies it and records it at once.
        let mut sm = StateMachineStore::open(db.clone(), VersionRange::SUPPORTED).unwrap();
        let raise = Command::SetClusterVersion { version: 2 };
        let entries: Vec<Result<EntryResponder<TypeConfig>, io::Error>> = vec![Ok((
            crate::types::typ::Entry::new_normal(LogId::new(leader, 2), raise),
            None,
        ))];
        sm.apply(futures::stream::iter(entries)).await.unwrap();
        assert_eq!(sm.read(|s| s.cluster_version), 2);
        assert_eq!(db.cluster_version().unwrap(), 2);
    }

    #[tokio::test]
    async fn events_are_read_off_applied_entries_timed_only_when_fresh_and_start_after_a_snapshot() {
        use openraft::vote::RaftLeaderIdExt;
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        let mut sm = StateMachineStore::open(db.clone(), VersionRange::SUPPORTED).unwrap();
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(1, 1);
        let drain = |node| Command::SetDrained { node, drained: true };
        // A tick commit proposed an hour ago: this node is catching up.
        let old_commit = Command::CommitTick(TickCommit {
            task: "gone".into(),
            epoch: 1,
            tick: 1,
            node: 1,
            state: Vec::new(),
            next_due_ms: 0,
            committed_at_ms: now_ms() - 3_600_000,
            version: 1,
        });
        let entries: Vec<Result<EntryResponder<TypeConfig>, io::Error>> = vec![
            Ok((crate::types::typ::Entry::new_blank(LogId::new(leader, 1)), None)),
            Ok((
                crate::types::typ::Entry::new_normal(LogId::new(leader, 2), drain(2)),
                None,
            )),
            Ok((
                crate::types::typ::Entry::new_normal(
                    LogId::new(leader, 3),
                    Command::Batch(vec![old_commit, drain(3)].into()),
                ),
                None,
            )),
        ];
        let before = now_ms();
        sm.apply(futures::stream::iter(entries)).await.unwrap();
        let page = sm.events().after(0, 0, 10);
        let told = page.events;
        let kinds: Vec<(u64, &str, bool)> = told
            .iter()
            .map(|r| (r.index, r.event.kind.name(), r.event.at_ms.is_some()))
            .collect();
        assert_eq!(
            kinds,
            [(1, "leader", true), (2, "drained", true), (3, "drained", false)],
            "the caught-up entry's event has no time of this node's"
        );
        assert!(told[1].event.at_ms.unwrap() >= before);
        assert_eq!((page.missing_through, page.told_through), (None, Some(3)));

        // A snapshot installed: the story goes on after it, and a reader
        // from before it learns that it missed some.
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(leader, 10)),
            ..SnapshotMeta::default()
        };
        let data = to_json(&cluster_with("k")).unwrap();
        sm.install_snapshot(&meta, Cursor::new(data)).await.unwrap();
        let page = sm.events().after(2, 0, 10);
        assert!(page.events.is_empty());
        assert_eq!(page.missing_through, Some((10, u32::MAX)));
    }

    #[tokio::test]
    async fn a_snapshot_above_the_nodes_cluster_versions_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        let mut sm = StateMachineStore::open(db.clone(), VersionRange { min: 1, max: 1 }).unwrap();
        let mut raised = cluster_with("k");
        raised.apply(&Command::SetClusterVersion { version: 2 }, &Rules::FENCED);
        let data = to_json(&raised).unwrap();
        let err = sm
            .install_snapshot(&SnapshotMeta::default(), Cursor::new(data.clone()))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the snapshot from the leader is at cluster version 2"),
            "{err}"
        );
        assert!(sm.read(|s| s.kv.is_empty()), "nothing of it was installed");

        // Nor is a stored one opened by such a node.
        let mut sm = StateMachineStore::open(db.clone(), VersionRange::SUPPORTED).unwrap();
        sm.install_snapshot(&SnapshotMeta::default(), Cursor::new(data))
            .await
            .unwrap();
        assert_eq!(db.cluster_version().unwrap(), 2);
        let err = StateMachineStore::open(db, VersionRange { min: 1, max: 1 })
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("the stored snapshot is at cluster version 2"),
            "{err}"
        );
    }

    #[test]
    fn the_snapshot_keys_on_disk_are_pinned() {
        // Stores written by every release are read by these names.
        assert_eq!(
            (SNAPSHOT_META_KEY, SNAPSHOT_DATA_KEY, LEGACY_SNAPSHOT_KEY),
            ("snapshot_meta", "snapshot_data", "snapshot")
        );
    }

    #[tokio::test]
    async fn a_snapshot_stored_by_an_earlier_release_is_read_and_rewritten_in_the_new_layout() {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        let legacy = to_json(&LegacySnapshot {
            meta: SnapshotMeta::default(),
            data: to_json(&cluster_with("old")).unwrap(),
        })
        .unwrap();
        db.write(Durability::Immediate, |txn| {
            txn.open_table(SM_META)?
                .insert(LEGACY_SNAPSHOT_KEY, legacy.as_slice())?;
            Ok(())
        })
        .unwrap();

        let mut sm = StateMachineStore::open(db.clone(), VersionRange::SUPPORTED).unwrap();
        assert_eq!(sm.read(|c| c.kv["old"].len()), 1000);
        let built = sm.build_snapshot().await.unwrap();
        // The data is stored as is: no JSON array of numbers around it.
        let stored = db
            .read(|txn| {
                Ok(txn
                    .open_table(SM_META)?
                    .get(SNAPSHOT_DATA_KEY)?
                    .map(|v| v.value().len()))
            })
            .unwrap();
        assert_eq!(stored, Some(built.snapshot.get_ref().len()));
        let legacy_left = db
            .read(|txn| Ok(txn.open_table(SM_META)?.get(LEGACY_SNAPSHOT_KEY)?.is_some()))
            .unwrap();
        assert!(!legacy_left, "the legacy snapshot is removed once rewritten");

        let reopened = StateMachineStore::open(db, VersionRange::SUPPORTED).unwrap();
        assert_eq!(reopened.read(|c| c.kv["old"].len()), 1000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_that_finishes_after_a_newer_install_does_not_put_the_older_snapshot_back() {
        use openraft::vote::RaftLeaderIdExt;
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        // Two handles on one store: one still at nothing applied (a build
        // that copied the state before the install), one that installs a
        // snapshot at index 100.
        let mut before = StateMachineStore::open(db.clone(), VersionRange::SUPPORTED).unwrap();
        let mut installer = StateMachineStore::open(db.clone(), VersionRange::SUPPORTED).unwrap();
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(1, 1);
        let newer = SnapshotMeta {
            last_log_id: Some(LogId::new(leader, 100)),
            ..SnapshotMeta::default()
        };
        let data = to_json(&cluster_with("newer")).unwrap();
        installer
            .install_snapshot(&newer, Cursor::new(data.clone()))
            .await
            .unwrap();
        before.build_snapshot().await.unwrap();

        let current = installer.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(current.meta.last_log_id, newer.last_log_id);
        assert_eq!(current.snapshot.into_inner(), data);
        assert_eq!(
            StateMachineStore::open(db, VersionRange::SUPPORTED)
                .unwrap()
                .last_applied_index(),
            100
        );
    }

    #[tokio::test]
    async fn an_installed_snapshot_replaces_the_state_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path()).unwrap();
        let mut sm = StateMachineStore::open(db.clone(), VersionRange::SUPPORTED).unwrap();
        let data = to_json(&cluster_with("new")).unwrap();
        sm.install_snapshot(&SnapshotMeta::default(), Cursor::new(data.clone()))
            .await
            .unwrap();
        assert!(sm.read(|c| c.kv.contains_key("new")));
        let current = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(current.snapshot.into_inner(), data);
        assert!(
            StateMachineStore::open(db, VersionRange::SUPPORTED)
                .unwrap()
                .read(|c| c.kv.contains_key("new"))
        );
    }
}
