//! The fast path's proof that a process is gone.
//!
//! When a peer's stream breaks, its process may have died, or the network
//! between us may have failed, or a firewall may be rejecting us. Only two
//! things prove the first:
//!
//! - **Its heart says so.** The `baton-heart` that started the process has
//!   reaped it (see [`crate::heart`]): asked with the incarnation the
//!   stream carried, it answers as soon as `waitpid` returns.
//! - **Another incarnation answers as that node** at its address, over
//!   mutual TLS with the node's certificate, when the node has no heart. A
//!   node's data directory is locked by the process that has it open, so a
//!   new process of that node runs only once the old one has released it,
//!   by exiting. That holds for one machine per node id with its data on a
//!   local disk; it does not where a lock can be lost while its holder runs
//!   (a network file system whose lock lease expired, a volume detached by
//!   force, a pod rescheduled under the same name while the old one still
//!   runs). A node with a heart is taken on its heart's word alone.
//!
//! A refused or reset connection proves nothing: a REJECT rule, a rejecting
//! network policy or another program on the port answers the same way for a
//! live node. Neither does a timeout or an unreachable host: the machine
//! may be frozen or cut off. Then only the lease settles it.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{NodeContext, probe};
use crate::heart::ask_exit;
use crate::types::NodeId;

/// Whether process `incarnation` of node `id`, last seen at `addr` with
/// its heart at `heart_addr` (empty when it has none), is provably gone.
/// Waits for the heart's word for up to `wait`.
pub async fn process_gone(
    context: &NodeContext,
    id: NodeId,
    addr: &str,
    heart_addr: &str,
    incarnation: &str,
    wait: Duration,
) -> bool {
    if incarnation.is_empty() {
        return false;
    }
    if !heart_addr.is_empty() {
        return match ask_exit(&context.channels, id, heart_addr, incarnation, wait).await {
            Ok(reply) if reply.exited => {
                tracing::info!(
                    "node {id}'s heart vouches that its process {incarnation} is gone ({})",
                    reply.detail
                );
                true
            }
            Ok(reply) => {
                tracing::debug!(
                    "node {id}'s heart: process {incarnation} {}; only its lease can tell",
                    reply.detail
                );
                false
            }
            Err(status) => {
                tracing::debug!(
                    "node {id}'s heart at {heart_addr}: {}; only its lease can tell",
                    status.message()
                );
                false
            }
        };
    }
    match probe(context, id, addr).await {
        Some(answer) if replaced(incarnation, &answer.incarnation) => {
            tracing::info!(
                "node {id} answers at {addr} as incarnation {}: its process {incarnation} is gone",
                answer.incarnation
            );
            true
        }
        _ => {
            tracing::debug!("nothing proves node {id}'s process {incarnation} gone; only its lease can tell");
            false
        }
    }
}

/// Opens the connection to node `id`'s heart ahead of need (one call that
/// does not wait), so that asking it when the node's stream breaks costs no
/// connection set-up and TLS handshake on the fast path.
pub fn warm_heart(context: &Arc<NodeContext>, id: NodeId, heart_addr: &str, incarnation: &str) {
    if heart_addr.is_empty() || incarnation.is_empty() {
        return;
    }
    let (context, heart_addr, incarnation) = (context.clone(), heart_addr.to_string(), incarnation.to_string());
    tokio::spawn(async move {
        if let Err(status) = ask_exit(&context.channels, id, &heart_addr, &incarnation, Duration::ZERO).await {
            tracing::debug!(
                "node {id}'s heart at {heart_addr} does not answer yet: {}",
                status.message()
            );
        }
    });
}

/// Whether a node that answers as incarnation `answering` proves that
/// incarnation `last` is gone.
pub fn replaced(last: &str, answering: &str) -> bool {
    !last.is_empty() && !answering.is_empty() && last != answering
}

#[cfg(test)]
mod tests {
    use super::replaced;

    #[test]
    fn only_another_incarnation_answering_proves_the_last_one_gone() {
        assert!(replaced("a", "b"));
        assert!(!replaced("a", "a"));
        assert!(!replaced("", "b"));
        assert!(!replaced("a", ""));
    }
}
