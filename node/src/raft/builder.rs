//! Building the `Raft` handle from a node's config.

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};

use crate::config::NodeConfig;
use crate::state::cluster_version::VersionRange;
use crate::store::{LogStore, RaftDb, StateMachineStore};
use crate::types::{NodeId, Raft, TypeConfig};

/// openraft's config for our timing settings. Pre-vote is on, so a node
/// that was partitioned away cannot disrupt the quorum when it returns.
/// openraft builds no snapshot of its own accord: the node asks for each,
/// at indexes of its own (`spawn_snapshot_schedule`), so that nodes do not
/// all build at once.
pub fn openraft_config(config: &NodeConfig) -> Result<Arc<Config>, openraft::ConfigError> {
    let t = &config.timing;
    let raft_config = Config {
        cluster_name: config.cluster_id(),
        heartbeat_interval: t.heartbeat_interval_ms,
        election_timeout_min: t.election_timeout_min_ms,
        election_timeout_max: t.election_timeout_max_ms,
        install_snapshot_timeout: 10_000,
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 1_000,
        enable_pre_vote: Some(true),
        // Replicate entries as soon as they are written locally, so that the
        // leader's fsync overlaps the followers' instead of preceding it.
        broadcast_submitted_on_append: Some(true),
        ..Default::default()
    };
    Ok(Arc::new(raft_config.validate()?))
}

/// Starts Raft for node `id` on the store in `db`, with `network`; each
/// durable write of the log is timed into `metrics`, and each tick commit's
/// lateness observed there.
pub async fn start_raft<N>(
    id: NodeId,
    raft_config: Arc<Config>,
    db: RaftDb,
    network: N,
    supported: VersionRange,
    metrics: &crate::metrics::Metrics,
) -> Result<(Raft, StateMachineStore), crate::NodeError>
where
    N: openraft::network::RaftNetworkFactory<TypeConfig>,
    N::Network: openraft::network::NetSnapshot<TypeConfig, SnapshotData = crate::types::typ::SnapshotData>,
{
    let state_machine = StateMachineStore::open(db.clone(), supported)
        .map_err(crate::store::StoreError::Io)?
        .with_commit_lateness(metrics.tick_commit_lateness.clone());
    let mut log = LogStore::timed(db, metrics.storage_commit_duration.clone()).map_err(crate::store::StoreError::Io)?;
    // The entries in the log now were written before this process: their
    // events are replays (see `crate::store::EventLog`).
    let in_log = openraft::storage::RaftLogStorage::get_log_state(&mut log)
        .await
        .map_err(crate::store::StoreError::Io)?;
    (state_machine.events()).set_replayed_until(in_log.last_log_id.map(|l| l.index()));
    let raft = Raft::new(id, raft_config, network, log, state_machine.clone())
        .await
        .map_err(|e| crate::NodeError::Raft(e.to_string()))?;
    Ok((raft, state_machine))
}
