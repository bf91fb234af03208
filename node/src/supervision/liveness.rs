//! The fast path's proof that a process is gone.
//!
//! When a peer's stream breaks, a new connection to its address tells us
//! more: refused means nothing listens there any more (the process died and
//! the kernel closed its sockets), and an answer from another incarnation
//! means the process was replaced. Either proves the old process can no
//! longer tick or lead. A timeout or an unreachable host proves nothing: the
//! machine may be frozen or cut off, and only the lease settles that.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::api::{NodeContext, probe};
use crate::types::NodeId;

/// How long the connection attempt may take before it proves nothing.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// Checks made when a port accepts but nobody answers on it.
const ATTEMPTS: u32 = 5;

/// Whether process `incarnation` of node `id`, last seen at `addr`, is
/// provably gone.
///
/// A dying process closes its sockets one by one: the peer may see its
/// connection close while its listener still accepts. So when the port
/// accepts and the node does not answer at once, look again shortly; a
/// node that answers slowly (frozen, overloaded) proves nothing.
pub async fn process_gone(context: &NodeContext, id: NodeId, addr: &str, incarnation: &str) -> bool {
    for attempt in 1..=ATTEMPTS {
        let started = std::time::Instant::now();
        match check(context, id, addr, incarnation).await {
            Some(gone) => return gone,
            None if attempt < ATTEMPTS && started.elapsed() < CONNECT_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
            }
            None => return false,
        }
    }
    false
}

/// One look: `Some(true)` gone, `Some(false)` alive or unknowable, `None`
/// accepted but did not answer.
async fn check(context: &NodeContext, id: NodeId, addr: &str, incarnation: &str) -> Option<bool> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => return Some(true),
        // The listener was closing as we connected: look again.
        Ok(Err(e)) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
            tracing::debug!("node {id} at {addr}: {e}; looking again");
            return None;
        }
        Ok(Err(e)) => {
            tracing::debug!("node {id} at {addr}: {e}; only its lease can tell");
            return Some(false);
        }
        Err(_) => {
            tracing::debug!("node {id} at {addr} did not accept within {CONNECT_TIMEOUT:?}; only its lease can tell");
            return Some(false);
        }
        Ok(Ok(_)) => {}
    }
    let answer = probe(context, id, addr).await?;
    tracing::debug!(
        "node {id} at {addr} answers as incarnation {} (the stream's was {incarnation})",
        answer.incarnation
    );
    Some(!incarnation.is_empty() && answer.incarnation != incarnation)
}
