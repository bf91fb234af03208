//! Which nodes were down when, seen from outside: a watcher connects to
//! every node's port every few milliseconds, and a node is down from the
//! first connection refused (or not taken in time) to the next one taken:
//! its process stopped serving, or its machine is gone, until one serves
//! again. (A call such as the cluster's status would not do: a follower
//! sends the caller to the leader, which answers for it.) The rolling
//! upgrade's promise that it never takes a node down while another is down
//! is checked on these intervals ([`two_down_at_once`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::task_api::now_ms;

/// A time interval in ms since the Unix epoch, `[from, to)`.
pub type Span = (u64, u64);

/// Each node's down intervals; an interval still open ends at the stop.
pub type Downs = BTreeMap<u64, Vec<Span>>;

/// One look at a node: whether it answered.
type Probe = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync>;

/// A running watcher; [`Outages::stop`] ends it and returns what it saw.
pub struct Outages {
    seen: Arc<Mutex<Downs>>,
    open: Arc<Mutex<BTreeMap<u64, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Outages {
    /// Starts connecting to each `(id, HOST:PORT)` every `every`: a node is
    /// down while its port takes no connection within `answer` (its process
    /// stopped serving, to its next one serving), whatever its load.
    pub fn watch_ports(nodes: Vec<(u64, String)>, every: Duration, answer: Duration) -> Outages {
        let probes = nodes
            .into_iter()
            .map(|(id, addr)| {
                let probe: Probe = Box::new(move || {
                    let addr = addr.clone();
                    Box::pin(async move {
                        tokio::time::timeout(answer, tokio::net::TcpStream::connect(addr))
                            .await
                            .is_ok_and(|r| r.is_ok())
                    })
                });
                (id, probe)
            })
            .collect();
        Self::start(probes, every)
    }

    fn start(probes: Vec<(u64, Probe)>, every: Duration) -> Outages {
        let seen: Arc<Mutex<Downs>> = Arc::default();
        let open: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
        let tasks = probes
            .into_iter()
            .map(|(id, probe)| {
                let (seen, open) = (seen.clone(), open.clone());
                tokio::spawn(async move {
                    loop {
                        let asked = now_ms();
                        let answered = probe().await;
                        {
                            let mut open = open.lock().unwrap();
                            match (answered, open.get(&id).copied()) {
                                (false, None) => {
                                    open.insert(id, asked);
                                }
                                (true, Some(since)) => {
                                    open.remove(&id);
                                    seen.lock().unwrap().entry(id).or_default().push((since, asked));
                                }
                                _ => {}
                            }
                        }
                        tokio::time::sleep(every).await;
                    }
                })
            })
            .collect();
        Outages { seen, open, tasks }
    }

    /// Stops watching; every node's down intervals, an open one ending now.
    pub fn stop(self) -> Downs {
        for task in &self.tasks {
            task.abort();
        }
        let now = now_ms();
        let mut downs = self.seen.lock().unwrap().clone();
        for (id, since) in self.open.lock().unwrap().iter() {
            downs.entry(*id).or_default().push((*since, now));
        }
        downs
    }
}

/// The first moment two nodes were down together, as (node, node, from,
/// to), or None.
pub fn two_down_at_once(downs: &Downs) -> Option<(u64, u64, Span)> {
    let mut all: Vec<(u64, Span)> = downs
        .iter()
        .flat_map(|(id, spans)| spans.iter().map(|s| (*id, *s)))
        .collect();
    all.sort_by_key(|(_, (from, _))| *from);
    let mut first: Option<(u64, u64, Span)> = None;
    for (i, (a, (_, a_to))) in all.iter().enumerate() {
        for (b, (b_from, b_to)) in &all[i + 1..] {
            if b_from >= a_to {
                break;
            }
            if a != b {
                let span = (*b_from, (*a_to).min(*b_to));
                if first.is_none_or(|(_, _, (from, _))| span.0 < from) {
                    first = Some((*a, *b, span));
                }
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downs(spans: &[(u64, Span)]) -> Downs {
        let mut downs = Downs::new();
        for (id, span) in spans {
            downs.entry(*id).or_default().push(*span);
        }
        downs
    }

    #[test]
    fn one_node_down_at_a_time_is_not_two() {
        assert_eq!(two_down_at_once(&Downs::new()), None);
        assert_eq!(
            two_down_at_once(&downs(&[(1, (0, 10)), (2, (10, 20)), (1, (30, 40))])),
            None
        );
    }

    #[test]
    fn overlapping_outages_of_two_nodes_are_found_with_their_overlap() {
        let found = two_down_at_once(&downs(&[(1, (0, 10)), (3, (50, 70)), (2, (60, 90))]));
        assert_eq!(found, Some((3, 2, (60, 70))));
        // A long outage overlapping a later, short one of another node.
        let found = two_down_at_once(&downs(&[(1, (0, 100)), (1, (200, 210)), (2, (40, 45))]));
        assert_eq!(found, Some((1, 2, (40, 45))));
    }

    #[test]
    fn a_node_overlapping_itself_is_not_two() {
        assert_eq!(two_down_at_once(&downs(&[(1, (0, 10)), (1, (5, 20))])), None);
    }
}
