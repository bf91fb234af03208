//! The metrics listener over TLS (`[metrics] tls = true`), and who its
//! clients are.
//!
//! Handshakes run beside the accept loop, each within [`HANDSHAKE`] and at
//! most [`MAX_HANDSHAKES`] at once, so that a client that connects and says
//! nothing holds up no one else. A client may show a certificate of the
//! cluster CA; the admin's (`admin.baton`) is a credential for the status
//! page's manual steps, as the admin token is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::tls::{IdentityCache, PeerIdentity};

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// Handshakes under way at most; a connection beyond them is closed.
pub const MAX_HANDSHAKES: usize = 256;

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

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshaken: mpsc::Sender<(TlsStream<TcpStream>, Client)>,
) {
    let identities = Arc::new(IdentityCache::default());
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "metrics listener: {MAX_HANDSHAKES} TLS handshakes under way; closed a connection");
            continue;
        };
        let (acceptor, identities, handshaken) = (acceptor.clone(), identities.clone(), handshaken.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let shown = tls.get_ref().1.peer_certificates().unwrap_or_default();
                    let admin_certificate = identities.identify(shown) == Some(PeerIdentity::Admin);
                    let client = Client {
                        addr,
                        admin_certificate,
                    };
                    let _ = handshaken.send((tls, client)).await;
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
