//! The witness: a downstream service that sees what tasks *do*, not what
//! the cluster commits. Every tick of the `witnessed` example module calls
//! it once (a `tcp-exchange` of `task=NAME node=ID epoch=E tick=T`); it
//! holds each call for a while, as a slow API would, and records per call
//! the task, the node, the fencing token, and when the call began and ended
//! on the witness's own clock. Calls are recorded even when the caller gave
//! up on them: a downstream system goes on working after its client hangs
//! up, so an abandoned call still counts as a run.
//!
//! The checker over those records ([`check`](crate::witness_check::check))
//! says whether two runs of one task ever overlapped in time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One call a tick made, as the witness saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub task: String,
    pub node: u64,
    pub epoch: u64,
    pub tick: u64,
    /// Microseconds since the witness started, when the call arrived.
    pub began_us: u64,
    /// When the witness answered it, or found its caller gone.
    pub ended_us: u64,
}

/// How often a held call is checked for a caller that is gone. A caller
/// that dies is seen gone only at the write after the one its death makes
/// the peer refuse: up to two of these late. At 5 ms, a kill that the heart
/// vouches for moved a task in less than that, and the witness reported its
/// dead owner's run as overlapping the new one by 1-2 ms (CI, 2026-12-05).
const PROBE_EVERY: Duration = Duration::from_millis(1);

impl Run {
    /// The run's fencing token, comparable as a pair.
    pub fn token(&self) -> (u64, u64) {
        (self.epoch, self.tick)
    }

    /// Parses a call's request, `task=NAME node=ID epoch=E tick=T`.
    fn parse(request: &str, began_us: u64, ended_us: u64) -> Option<Run> {
        let mut run = Run {
            task: String::new(),
            node: 0,
            epoch: 0,
            tick: 0,
            began_us,
            ended_us,
        };
        for field in request.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "task" => run.task = value.to_string(),
                "node" => run.node = value.parse().ok()?,
                "epoch" => run.epoch = value.parse().ok()?,
                "tick" => run.tick = value.parse().ok()?,
                _ => return None,
            }
        }
        (!run.task.is_empty()).then_some(run)
    }
}

/// A running witness; dropping it stops it.
pub struct Witness {
    addr: SocketAddr,
    runs: Arc<Mutex<Vec<Run>>>,
    hold_ms: Arc<AtomicU64>,
    /// Requests that did not parse (a broken module would show here).
    malformed: Arc<AtomicU64>,
    /// Calls being held now, per calling node.
    in_flight: Arc<Mutex<std::collections::BTreeMap<u64, usize>>>,
    server: JoinHandle<()>,
}

impl Witness {
    /// Listens on `bind` (`127.0.0.1:0` for process tests; a container
    /// network's gateway address for containers) and holds each call `hold`.
    pub async fn start(bind: &str, hold: Duration) -> std::io::Result<Witness> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let runs = Arc::new(Mutex::new(Vec::new()));
        let hold_ms = Arc::new(AtomicU64::new(hold.as_millis() as u64));
        let malformed = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(Mutex::new(std::collections::BTreeMap::<u64, usize>::new()));
        let started = Instant::now();
        let server = tokio::spawn({
            let (runs, hold_ms, malformed, in_flight) =
                (runs.clone(), hold_ms.clone(), malformed.clone(), in_flight.clone());
            async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (runs, hold_ms, malformed, in_flight) =
                        (runs.clone(), hold_ms.clone(), malformed.clone(), in_flight.clone());
                    tokio::spawn(async move {
                        let mut request = Vec::new();
                        let read = (&mut stream).take(4096).read_to_end(&mut request).await;
                        let began_us = started.elapsed().as_micros() as u64;
                        if read.is_err() {
                            return;
                        }
                        let caller = Run::parse(&String::from_utf8_lossy(&request), 0, 0).map(|r| r.node);
                        let count = |delta: isize| {
                            if let Some(node) = caller {
                                let mut calls = in_flight.lock().expect("witness lock poisoned");
                                let n: &mut usize = calls.entry(node).or_insert(0);
                                *n = n.saturating_add_signed(delta);
                            }
                        };
                        count(1);
                        let hold = Duration::from_millis(hold_ms.load(Ordering::Relaxed));
                        let answer_at = tokio::time::Instant::now() + hold;
                        let mut gone = false;
                        while tokio::time::Instant::now() < answer_at {
                            if stream.write_all(b".").await.is_err() {
                                gone = true;
                                break;
                            }
                            tokio::time::sleep(PROBE_EVERY.min(answer_at - tokio::time::Instant::now())).await;
                        }
                        if !gone {
                            let _ = stream.write_all(b"ok").await;
                        }
                        count(-1);
                        let ended_us = started.elapsed().as_micros() as u64;
                        match Run::parse(&String::from_utf8_lossy(&request), began_us, ended_us) {
                            Some(run) => runs.lock().expect("witness lock poisoned").push(run),
                            None => {
                                malformed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
        });
        Ok(Witness {
            addr,
            runs,
            hold_ms,
            malformed,
            in_flight,
            server,
        })
    }

    /// The address tasks call (their config and their `--allow-net` grant).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds every call from now on for `hold`.
    pub fn set_hold(&self, hold: Duration) {
        self.hold_ms.store(hold.as_millis() as u64, Ordering::Relaxed);
    }

    /// Every run recorded so far.
    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().expect("witness lock poisoned").clone()
    }

    /// How many calls from node `node` the witness is holding now.
    pub fn in_flight(&self, node: u64) -> usize {
        let calls = self.in_flight.lock().expect("witness lock poisoned");
        calls.get(&node).copied().unwrap_or(0)
    }

    /// How many requests did not parse.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_the_task_node_and_token() {
        let run = Run::parse("task=w-1 node=2 epoch=3 tick=4", 10, 20).unwrap();
        assert_eq!((run.task.as_str(), run.node, run.token()), ("w-1", 2, (3, 4)));
        assert_eq!(Run::parse("task=w node=x", 0, 0), None);
        assert_eq!(Run::parse("", 0, 0), None);
    }

    #[tokio::test]
    async fn the_witness_records_each_call_with_its_hold() {
        let witness = Witness::start("127.0.0.1:0", Duration::from_millis(30)).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(witness.addr()).await.unwrap();
        stream.write_all(b"task=a node=1 epoch=1 tick=1").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        assert!(reply.ends_with(b"ok") && reply.len() > 2, "{reply:?}");
        let runs = witness.runs();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].ended_us - runs[0].began_us >= 30_000);
        assert_eq!(witness.in_flight(1), 0);
    }

    #[tokio::test]
    async fn a_call_is_in_flight_while_it_is_held() {
        let witness = Witness::start("127.0.0.1:0", Duration::from_secs(2)).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(witness.addr()).await.unwrap();
        stream.write_all(b"task=a node=7 epoch=1 tick=1").await.unwrap();
        stream.shutdown().await.unwrap();
        crate::poll_async(Duration::from_secs(3), "the call in flight", || async {
            (witness.in_flight(7) == 1).then_some(())
        })
        .await;
        assert_eq!(witness.in_flight(1), 0);
    }

    #[tokio::test]
    async fn a_run_ends_when_its_caller_is_gone() {
        let witness = Witness::start("127.0.0.1:0", Duration::from_secs(5)).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(witness.addr()).await.unwrap();
        stream.write_all(b"task=a node=1 epoch=1 tick=1").await.unwrap();
        stream.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
        crate::poll_async(Duration::from_secs(3), "the run to end", || async {
            let runs = witness.runs();
            (runs.len() == 1).then_some(())
        })
        .await;
        let run = &witness.runs()[0];
        assert!(run.ended_us - run.began_us < 1_000_000, "{run:?}");
    }
}
