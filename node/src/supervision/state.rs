//! What the supervision parts of a node share: its own lease, the leader's
//! view of everyone's leases, and the timing they run on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::lease_table::LeaseTable;
use super::local_lease::LocalLease;
use crate::config::TimingConfig;
use crate::placement::NodeView;
use crate::types::NodeId;

/// A node's supervision state.
#[derive(Debug)]
pub struct Supervision {
    pub lease_ms: u64,
    pub renew: Duration,
    /// The promise `batonctl status` prints (see `NodeConfig::failover_bound_ms`).
    pub failover_bound_ms: u64,
    /// Until when this node may start ticks.
    pub lease: LocalLease,
    /// The leader's view of every node (meaningful while this node leads).
    leases: Mutex<LeaseTable>,
    /// Wakes the supervisor when a node is proven gone or asks to leave.
    pub wake: Notify,
    /// This node is shutting down: its tasks should move off it.
    leaving: AtomicBool,
    /// This node is stopping: every tick in flight must end now.
    stopping: AtomicBool,
    /// Nodes whose renewals this leader no longer acknowledges (being
    /// removed), with how many removals under way hold each.
    revoked: Mutex<std::collections::BTreeMap<NodeId, usize>>,
    /// Ticks running on blocking threads right now.
    in_flight: std::sync::Arc<AtomicUsize>,
    /// Processes this node proved gone while following (a dead leader),
    /// and when: applied to the lease table if this node leads next.
    gone: Mutex<Vec<(NodeId, String, Instant)>>,
    /// The supervisor's latest view of the nodes (while this node leads).
    view: Mutex<NodeView>,
}

impl Supervision {
    pub fn new(timing: &TimingConfig, failover_bound_ms: u64) -> Self {
        let lease = Duration::from_millis(timing.lease_ms);
        let renew = Duration::from_millis(timing.lease_renew_ms);
        Supervision {
            lease_ms: timing.lease_ms,
            renew,
            failover_bound_ms,
            lease: LocalLease::new(lease),
            leases: Mutex::new(LeaseTable::new(lease, renew, Instant::now())),
            wake: Notify::new(),
            leaving: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            in_flight: Default::default(),
            revoked: Default::default(),
            gone: Mutex::new(Vec::new()),
            view: Mutex::new(NodeView::default()),
        }
    }

    /// Remembers that process `incarnation` of `node` is gone.
    pub fn note_gone(&self, node: NodeId, incarnation: &str) {
        let mut gone = self.gone.lock().expect("gone lock poisoned");
        gone.retain(|(n, _, _)| *n != node);
        gone.push((node, incarnation.to_string(), Instant::now()));
    }

    /// The processes noted gone within the last lease: news that matters to
    /// a leader just elected in their place. Older news is dropped, so a
    /// node that has come back since is not taken for dead.
    pub fn noted_gone(&self) -> Vec<(NodeId, String)> {
        let lease = Duration::from_millis(self.lease_ms);
        let mut gone = self.gone.lock().expect("gone lock poisoned");
        gone.retain(|(_, _, at)| at.elapsed() < lease);
        gone.iter().map(|(n, i, _)| (*n, i.clone())).collect()
    }

    /// Reads or updates the leader's lease table.
    pub fn leases<T>(&self, f: impl FnOnce(&mut LeaseTable) -> T) -> T {
        f(&mut self.leases.lock().expect("lease table lock poisoned"))
    }

    /// Keeps the supervisor's latest view of the nodes.
    pub fn set_view(&self, view: &NodeView) {
        self.view.lock().expect("view lock poisoned").clone_from(view);
    }

    /// The supervisor's latest view of the nodes.
    pub fn view(&self) -> NodeView {
        self.view.lock().expect("view lock poisoned").clone()
    }

    pub fn set_leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    /// Stops acknowledging `node`'s renewals (or, for this node, renewing
    /// its own lease) until the returned guard is dropped, so that its lease
    /// runs out before its tasks are moved (a removal). Removals of one node
    /// that overlap each hold their own guard.
    pub fn revoke(&self, node: NodeId) -> Revocation<'_> {
        *self
            .revoked
            .lock()
            .expect("revoked lock poisoned")
            .entry(node)
            .or_insert(0) += 1;
        Revocation {
            supervision: self,
            node,
        }
    }

    pub fn is_revoked(&self, node: NodeId) -> bool {
        self.revoked.lock().expect("revoked lock poisoned").contains_key(&node)
    }

    /// Every tick in flight must stop (their fences refuse from now on),
    /// and none may start.
    pub fn stop_ticking(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Counts a tick as running until the guard is dropped.
    pub fn tick_in_flight(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.in_flight.clone())
    }

    /// Waits (up to `wait`) until no tick runs; true when none does.
    pub async fn ticks_stopped(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// A tick running on a blocking thread, counted until dropped.
pub struct InFlight(std::sync::Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A node's renewals held back while a removal is under way; dropping it
/// lets them through again (see [`Supervision::revoke`]).
pub struct Revocation<'a> {
    supervision: &'a Supervision,
    node: NodeId,
}

impl Drop for Revocation<'_> {
    fn drop(&mut self) {
        let mut revoked = self.supervision.revoked.lock().expect("revoked lock poisoned");
        if let Some(holders) = revoked.get_mut(&self.node) {
            *holders -= 1;
            if *holders == 0 {
                revoked.remove(&self.node);
            }
        }
    }
}
