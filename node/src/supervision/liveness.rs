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

/// Whether process `incarnation` of node `id`, last seen at `addr`, is
/// provably gone.
pub async fn process_gone(context: &NodeContext, id: NodeId, addr: &str, incarnation: &str) -> bool {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => return true,
        Ok(Err(_)) | Err(_) => return false,
        Ok(Ok(_)) => {}
    }
    probe(context, id, addr)
        .await
        .is_some_and(|info| !incarnation.is_empty() && info.incarnation != incarnation)
}
