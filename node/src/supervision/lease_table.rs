//! The leader's view of every node's lease: pure bookkeeping, driven by the
//! heartbeat streams and the fast-path checks, read by the supervisor.
//!
//! A node's lease runs for `lease` from the moment the leader received its
//! last renewal. The node itself counts from the earlier moment it *sent*
//! that renewal, so its own view of the lease always ends first. A leader
//! starting a new term knows nothing of the renewals its predecessor
//! granted: it treats every node as renewed at the start of its term, which
//! is the "wait one full lease before declaring anyone dead" rule.
//!
//! A node whose lease ran out before its next renewal arrived (a freeze, a
//! partition) has *lapsed*: its tasks may already be on their way to other
//! nodes, in a write this leader has decided on but not yet appended. It
//! stays down, and its renewals go unacknowledged, until the committed
//! state shows it owns nothing; only then may it hold a lease again. So a
//! thawed node can never get a lease back in time to run a task that moved.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::types::NodeId;

/// A node's health as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Renewing on time.
    Up,
    /// Renewals are late (or it has not renewed since this leader took over),
    /// but its lease may still run: it keeps its tasks and gets no new ones.
    Suspect,
    /// Its lease has ended, or its process is provably gone: its tasks move.
    Down,
}

#[derive(Debug, Clone)]
struct NodeLease {
    /// When the leader last received a renewal (or when its term began).
    renewed_at: Instant,
    /// Whether it renewed in this term.
    renewed: bool,
    incarnation: Option<String>,
    /// The node said it is shutting down.
    leaving: bool,
    /// The process that renewed last is provably gone.
    gone: bool,
    /// The node said it has yet to apply the log up to the leader's commit.
    catching_up: bool,
    /// Its lease ran out before it renewed again: down until it owns nothing.
    lapsed: bool,
}

/// Every node's lease, for one leader term.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    lease: Duration,
    /// Renewals later than this make a node suspect.
    late: Duration,
    term: u64,
    term_started: Instant,
    nodes: BTreeMap<NodeId, NodeLease>,
}

impl LeaseTable {
    /// An empty table; renewals are expected every `renew`.
    pub fn new(lease: Duration, renew: Duration, now: Instant) -> Self {
        LeaseTable {
            lease,
            late: (renew * 3).min(lease / 2),
            term: 0,
            term_started: now,
            nodes: BTreeMap::new(),
        }
    }

    /// Starts over when this node begins leading term `term`: every lease
    /// granted before is assumed to run for one more full lease from `now`.
    /// Returns whether the term is new.
    pub fn begin_term(&mut self, term: u64, now: Instant) -> bool {
        if term == self.term {
            return false;
        }
        self.term = term;
        self.term_started = now;
        self.nodes.clear();
        true
    }

    /// Records a renewal from `node` received at `at`. A new incarnation
    /// clears what was known of the old process.
    pub fn renew(&mut self, node: NodeId, incarnation: &str, leaving: bool, at: Instant) {
        let lease = self.lease;
        let unknown_too_long = at.saturating_duration_since(self.term_started) > lease;
        let entry = self.nodes.entry(node).or_insert_with(|| NodeLease {
            renewed_at: at,
            renewed: true,
            incarnation: None,
            leaving,
            gone: false,
            catching_up: false,
            lapsed: unknown_too_long,
        });
        if at.saturating_duration_since(entry.renewed_at) > lease {
            entry.lapsed = true;
        }
        // A process proven gone may have lost its tasks already; one that
        // renews all the same was not gone after all (a proof that was
        // wrong): either way it is down until it owns nothing.
        entry.lapsed |= entry.gone;
        if entry.incarnation.as_deref() != Some(incarnation) {
            entry.incarnation = Some(incarnation.to_string());
            entry.gone = false;
        }
        entry.renewed_at = entry.renewed_at.max(at);
        entry.renewed = true;
        entry.leaving = leaving;
    }

    /// The process `incarnation` of `node` is provably gone (its heart
    /// vouches for its exit, or another incarnation answers; see
    /// `liveness`). Ignored when
    /// another incarnation has renewed since; a node not heard from in this
    /// term (a dead leader, seen by the follower that replaced it) is
    /// recorded as gone.
    pub fn mark_gone(&mut self, node: NodeId, incarnation: &str) -> bool {
        let entry = self.nodes.entry(node).or_insert_with(|| NodeLease {
            renewed_at: self.term_started,
            renewed: false,
            incarnation: Some(incarnation.to_string()),
            leaving: false,
            gone: false,
            catching_up: false,
            lapsed: false,
        });
        if entry.incarnation.as_deref() != Some(incarnation) || entry.gone {
            return false;
        }
        entry.gone = true;
        true
    }

    /// How `node` is doing at `now`.
    pub fn health(&self, node: NodeId, now: Instant) -> Health {
        let Some(entry) = self.nodes.get(&node) else {
            return match now.saturating_duration_since(self.term_started) > self.lease {
                true => Health::Down,
                false => Health::Suspect,
            };
        };
        let age = now.saturating_duration_since(entry.renewed_at);
        if entry.gone || entry.lapsed || age > self.lease {
            Health::Down
        } else if age > self.late || !entry.renewed {
            Health::Suspect
        } else {
            Health::Up
        }
    }

    /// Whether `node`'s lease ran out before it renewed again, and it may
    /// still own tasks: its renewals must not be acknowledged.
    pub fn lapsed(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| n.lapsed)
    }

    /// The committed state shows that lapsed `node` owns nothing any more:
    /// it may hold a lease again.
    pub fn restore(&mut self, node: NodeId) -> bool {
        match self.nodes.get_mut(&node) {
            Some(entry) if entry.lapsed => {
                entry.lapsed = false;
                entry.gone = false;
                true
            }
            _ => false,
        }
    }

    /// Whether the process that renewed last for `node` was proven gone.
    pub fn gone(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| n.gone)
    }

    /// The nodes that have lapsed.
    pub fn lapsed_nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.lapsed).map(|(id, _)| *id).collect()
    }

    /// Records whether `node` said it is still catching up on the log.
    pub fn set_catching_up(&mut self, node: NodeId, catching_up: bool) {
        if let Some(entry) = self.nodes.get_mut(&node) {
            entry.catching_up = catching_up;
        }
    }

    /// Whether `node` said, in its last renewal, that it is catching up.
    pub fn catching_up(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| n.catching_up)
    }

    /// Whether `node` said it is shutting down.
    pub fn leaving(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| n.leaving)
    }

    /// The incarnation that renewed last for `node`.
    pub fn incarnation(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).and_then(|n| n.incarnation.as_deref())
    }

    /// When this node began leading the current term.
    pub fn term_started(&self) -> Instant {
        self.term_started
    }

    /// When `node` last renewed, if it did in this term.
    pub fn renewed_at(&self, node: NodeId) -> Option<Instant> {
        self.nodes.get(&node).filter(|n| n.renewed).map(|n| n.renewed_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(1000);
    const RENEW: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn table(t0: Instant) -> LeaseTable {
        let mut table = LeaseTable::new(LEASE, RENEW, t0);
        table.begin_term(1, t0);
        table
    }

    #[test]
    fn a_node_is_up_while_it_renews_suspect_when_late_and_down_when_its_lease_ends() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", false, t0);
        assert_eq!(t.health(2, t0 + ms(100)), Health::Up);
        assert_eq!(t.health(2, t0 + ms(400)), Health::Suspect);
        assert_eq!(t.health(2, t0 + ms(1000)), Health::Suspect, "the lease still runs");
        assert_eq!(t.health(2, t0 + ms(1001)), Health::Down);
        t.renew(2, "a", false, t0 + ms(1002));
        assert_eq!(
            t.health(2, t0 + ms(1003)),
            Health::Down,
            "a late renewal does not bring it back by itself"
        );
        assert!(t.lapsed(2));
        assert!(t.restore(2), "once it owns nothing");
        t.renew(2, "a", false, t0 + ms(1100));
        assert_eq!(t.health(2, t0 + ms(1101)), Health::Up);
        assert!(!t.restore(2), "nothing to restore");
    }

    #[test]
    fn a_node_whose_lease_ran_out_stays_down_however_often_it_renews_until_restored() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", false, t0);
        // Frozen for three leases, then renewing on time again.
        for k in 0..10 {
            t.renew(2, "a", false, t0 + ms(3000 + 100 * k));
            assert_eq!(t.health(2, t0 + ms(3000 + 100 * k)), Health::Down);
        }
        assert_eq!(t.lapsed_nodes(), vec![2]);
        // Renewing within the lease never lapses.
        t.renew(3, "a", false, t0);
        t.renew(3, "a", false, t0 + ms(1000));
        assert!(!t.lapsed(3));
    }

    #[test]
    fn a_node_first_heard_of_after_a_full_lease_of_the_term_has_lapsed() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", false, t0 + ms(999));
        assert!(!t.lapsed(2), "within the first lease of the term");
        t.renew(3, "a", false, t0 + ms(1001));
        assert!(t.lapsed(3), "its tasks may have been moved by now");
    }

    #[test]
    fn a_process_taken_for_gone_that_renews_all_the_same_stays_down_until_restored() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", false, t0);
        assert!(t.mark_gone(2, "a"));
        t.renew(2, "a", false, t0 + ms(5));
        assert!(t.lapsed(2) && t.gone(2));
        assert_eq!(t.health(2, t0 + ms(6)), Health::Down);
        assert!(t.restore(2));
        t.renew(2, "a", false, t0 + ms(10));
        assert_eq!(t.health(2, t0 + ms(11)), Health::Up);
    }

    #[test]
    fn a_new_process_after_a_proven_death_has_lapsed() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", false, t0);
        t.renew(3, "a", false, t0);
        assert!(t.mark_gone(2, "a"));
        t.renew(2, "b", false, t0 + ms(5));
        assert!(t.lapsed(2), "its tasks were moved (or are being moved)");
        t.renew(3, "b", false, t0 + ms(5));
        assert!(!t.lapsed(3), "a restart nobody saw as a death keeps its tasks");
    }

    #[test]
    fn a_node_is_catching_up_as_its_last_renewal_said() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.set_catching_up(2, true);
        assert!(!t.catching_up(2), "nothing is known of a node that never renewed");
        t.renew(2, "a", false, t0);
        t.set_catching_up(2, true);
        assert!(t.catching_up(2));
        assert_eq!(t.health(2, t0), Health::Up, "alive all the same");
        t.renew(2, "a", false, t0 + ms(100));
        t.set_catching_up(2, false);
        assert!(!t.catching_up(2));
    }

    #[test]
    fn a_new_leader_waits_one_full_lease_before_it_declares_anyone_dead() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", false, t0);
        assert!(t.begin_term(2, t0 + ms(5000)));
        assert_eq!(
            t.health(2, t0 + ms(5999)),
            Health::Suspect,
            "unknown in this term: keeps its tasks"
        );
        assert_eq!(t.health(3, t0 + ms(6000)), Health::Suspect);
        assert_eq!(t.health(3, t0 + ms(6001)), Health::Down);
        assert!(!t.begin_term(2, t0 + ms(7000)), "the same term changes nothing");
    }

    #[test]
    fn a_provably_gone_process_is_down_at_once_unless_a_new_incarnation_renewed() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", false, t0);
        assert!(t.mark_gone(2, "a"));
        assert_eq!(t.health(2, t0 + ms(1)), Health::Down);
        t.renew(2, "b", false, t0 + ms(2));
        assert!(t.restore(2), "once the old process's tasks have moved");
        assert_eq!(
            t.health(2, t0 + ms(3)),
            Health::Up,
            "the new process is a new node life"
        );
        assert!(!t.mark_gone(2, "a"), "news of the old process changes nothing now");
        assert_eq!(t.health(2, t0 + ms(3)), Health::Up);
    }

    #[test]
    fn a_dead_leader_seen_by_its_successor_is_down_at_once() {
        let t0 = Instant::now();
        let mut t = table(t0);
        assert!(t.mark_gone(1, "old"));
        assert!(!t.mark_gone(1, "old"), "only news once");
        assert_eq!(t.health(1, t0 + ms(1)), Health::Down);
        t.renew(1, "new", false, t0 + ms(2));
        assert!(t.restore(1));
        assert_eq!(t.health(1, t0 + ms(3)), Health::Up, "it came back as a new process");
    }

    #[test]
    fn a_leaving_node_is_reported_until_it_renews_without_the_flag() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", true, t0);
        assert!(t.leaving(2));
        t.renew(2, "b", false, t0 + ms(10));
        assert!(!t.leaving(2));
        assert_eq!(t.incarnation(2), Some("b"));
    }

    #[test]
    fn renewals_arriving_out_of_order_never_shorten_a_lease() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.renew(2, "a", false, t0 + ms(500));
        t.renew(2, "a", false, t0 + ms(100));
        assert_eq!(t.renewed_at(2), Some(t0 + ms(500)));
    }
}
