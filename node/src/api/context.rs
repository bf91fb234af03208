//! What every service of a node shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::modules::ModuleStore;
use crate::raft::{PeerChannels, Proposer, Refusals, StorageIdentity};
use crate::runtime::TaskEngine;
use crate::store::StateMachineStore;
use crate::supervision::Supervision;
use crate::types::{NodeId, Raft};

/// The node's identity and handles, shared by its services.
pub struct NodeContext {
    pub id: NodeId,
    pub cluster_id: String,
    pub version: String,
    /// The cluster versions this process supports (its release's range,
    /// capped by `[testing] max_cluster_version`).
    pub versions: crate::state::cluster_version::VersionRange,
    /// Fresh for every process start.
    pub incarnation: String,
    /// The heart that started this process and can vouch for its exit.
    pub heart_addr: Option<String>,
    /// The binary this process runs, as its heart said ("installed" or a
    /// hash); empty without a heart.
    pub binary: String,
    /// This node's side of its heart's binaries, if a heart started it.
    pub heart: Option<crate::upgrade::HeartLink>,
    pub started_at: Instant,
    /// The data directory's storage id (see [`crate::raft::identity`]).
    pub storage: StorageIdentity,
    /// Raft calls refused as addressed to another storage.
    pub refusals: Arc<Refusals>,
    pub raft: Raft,
    /// Batches writes into Raft entries.
    pub proposer: Proposer,
    /// Batches the writes this node forwards to the leader.
    pub forwards: crate::tasks::ForwardQueue,
    pub state_machine: StateMachineStore,
    pub channels: Arc<PeerChannels>,
    /// Since when commits, applies and replication have stood still, if
    /// they have.
    pub progress: Arc<crate::raft::Progress>,
    /// Compiles and runs task modules.
    pub engine: Arc<TaskEngine>,
    /// Module bytes this node holds.
    pub modules: ModuleStore,
    /// When each peer last answered this node.
    pub last_contact: Mutex<HashMap<NodeId, Instant>>,
    /// Leases: this node's own, and (while it leads) everyone's.
    pub supervision: Supervision,
    /// Public keys whose signatures on modules this node accepts.
    pub trusted_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// The keys it seals and opens task secrets with (`[secrets]`).
    pub secret_keys: Arc<crate::secrets::Keyring>,
    /// This node's tick counts per module version.
    pub tick_health: crate::rollout::TickHealth,
    /// What the leader heard from every node, for rollout gates.
    pub observed: crate::rollout::health::Observed,
    /// What this node counts, for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What one task may keep and be given (`[limits]`).
    pub limits: crate::config::LimitsConfig,
    /// The test-only switches this process runs with (`[testing]`).
    pub testing: crate::config::TestingConfig,
}

impl NodeContext {
    pub fn record_contact(&self, id: NodeId) {
        self.last_contact
            .lock()
            .expect("contact lock poisoned")
            .insert(id, Instant::now());
    }

    pub fn last_contact_ms(&self, id: NodeId) -> Option<u64> {
        if id == self.id {
            return Some(0);
        }
        let contacts = self.last_contact.lock().expect("contact lock poisoned");
        contacts.get(&id).map(|at| at.elapsed().as_millis() as u64)
    }
}
