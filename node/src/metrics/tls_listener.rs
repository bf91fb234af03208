//! The metrics listener over TLS (`[metrics] tls = true`), and who its
//! clients are.
//!
//! Handshakes run beside the accept loop, each within [`HANDSHAKE`], at
//! most [`MAX_HANDSHAKES`] at once and [`MAX_HANDSHAKES_PER_ADDRESS`] from
//! one address, so that a client that connects and says nothing holds up
//! neither the listener nor clients elsewhere. A client may show a
//! certificate of the cluster CA; the admin's (`admin.baton`) is a
//! credential for the status page's manual steps, as the admin token is.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::tls::{IdentityCache, PeerIdentity};

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// Handshakes under way at most; a connection beyond them is closed.
pub const MAX_HANDSHAKES: usize = 256;

/// Handshakes under way from one IP address at most.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 16;

/// At most one warning about refused connections in this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Who sent a request to the metrics listener: where from, and whether it
/// showed the admin certificate (over TLS only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: SocketAddr,
    pub admin_certificate: bool,
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.admin_certificate {
            true => write!(f, "{} (admin certificate)", self.addr),
            false => write!(f, "{}", self.addr),
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Client {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Client {
            addr: *stream.remote_addr(),
            admin_certificate: false,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Client {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        *stream.remote_addr()
    }
}

/// A TCP listener whose connections come out after their TLS handshake,
/// with who sent them. Dropping it stops accepting.
pub struct TlsListener {
    local: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, Client)>,
    accepting: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl TlsListener {
    /// Accepts on `listener`, handshaking with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, handshaken) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            local,
            handshaken,
            accepting,
        })
    }
}

/// Handshakes under way, by the address they come from.
#[derive(Default)]
struct Underway {
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

impl Underway {
    /// Counts one more from `ip`, unless it has its fill or all have
    /// theirs.
    fn start(self: &Arc<Self>, ip: IpAddr) -> Option<Handshaking> {
        let mut by_address = self.by_address.lock().expect("handshakes lock poisoned");
        let total: usize = by_address.values().sum();
        let from_ip = by_address.get(&ip).copied().unwrap_or(0);
        if total >= MAX_HANDSHAKES || from_ip >= MAX_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        by_address.insert(ip, from_ip + 1);
        Some(Handshaking {
            underway: self.clone(),
            ip,
        })
    }
}

/// One handshake under way, counted until dropped.
struct Handshaking {
    underway: Arc<Underway>,
    ip: IpAddr,
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        let mut by_address = self.underway.by_address.lock().expect("handshakes lock poisoned");
        if let Some(n) = by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_address.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshaken: mpsc::Sender<(TlsStream<TcpStream>, Client)>,
) {
    let identities = Arc::new(IdentityCache::default());
    let underway = Arc::new(Underway::default());
    let mut refused = 0u64;
    let mut warned: Option<Instant> = None;
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(handshaking) = underway.start(addr.ip()) else {
            refused += 1;
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    %addr,
                    "metrics listener: closed {refused} connection(s) with too many TLS handshakes under way \
                     ({MAX_HANDSHAKES_PER_ADDRESS} from one address, {MAX_HANDSHAKES} in all)"
                );
                (refused, warned) = (0, Some(Instant::now()));
            }
            continue;
        };
        let (acceptor, identities, handshaken) = (acceptor.clone(), identities.clone(), handshaken.clone());
        tokio::spawn(async move {
            let _handshaking = handshaking;
            let deadline = tokio::time::Instant::now() + HANDSHAKE;
            match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let shown = tls.get_ref().1.peer_certificates().unwrap_or_default();
                    let admin_certificate = identities.identify(shown) == Some(PeerIdentity::Admin);
                    let client = Client {
                        addr,
                        admin_certificate,
                    };
                    // The server takes connections as fast as it can; one
                    // it does not take by the deadline is dropped.
                    let _ = tokio::time::timeout_at(deadline, handshaken.send((tls, client))).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, "metrics listener: TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%addr, "metrics listener: no TLS handshake within {HANDSHAKE:?}"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Client;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (it runs until dropped): nothing more
            // will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Client {
            addr: self.local,
            admin_certificate: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_capped_per_address_and_in_all() {
        let underway = Arc::new(Underway::default());
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let mut held: Vec<Handshaking> = (0..MAX_HANDSHAKES_PER_ADDRESS)
            .map(|_| underway.start(one).expect("within the cap"))
            .collect();
        assert!(underway.start(one).is_none(), "one address past its cap");
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(underway.start(other).is_some(), "another address is served");
        held.pop();
        assert!(underway.start(one).is_some(), "a finished handshake frees its place");
        drop(held);
        // Many addresses fill the whole cap.
        let many: Vec<Handshaking> = (0..MAX_HANDSHAKES)
            .map(|i| {
                let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
                underway.start(ip).expect("within the cap")
            })
            .collect();
        assert!(underway.start(other).is_none(), "past the cap in all");
        drop(many);
        assert!(underway.by_address.lock().unwrap().is_empty(), "every count returned");
    }
}
