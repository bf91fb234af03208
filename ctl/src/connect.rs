//! How batonctl connects to a node: TCP, then TLS, then the node's first
//! words, so that a node that refuses the client's certificate is known
//! before any request is sent.
//!
//! With TLS 1.3 the client finishes its handshake before the server has
//! checked the client's certificate; a node that refuses it says so in its
//! next record, an alert. tonic would send the request into that connection
//! and wait. So the client reads the first record itself: a node that took
//! the certificate greets with its HTTP/2 settings (a Baton node's HTTP/2
//! server speaks first), which are handed on to the HTTP/2 client
//! unchanged ([`Greeted`]); one that refused it ends the read with a typed
//! rustls alert. Without TLS the client waits for the settings the same
//! way, so that a node that expects TLS (and so says nothing) is known by
//! its silence.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Makes connections to nodes, over TLS when it has a config.
#[derive(Clone)]
pub struct NodeConnector {
    tls: Option<TlsConnector>,
}

/// A connection, as the HTTP/2 client reads it.
pub type NodeIo = TokioIo<Greeted>;

impl NodeConnector {
    pub fn new(tls: Option<rustls::ClientConfig>) -> Self {
        NodeConnector {
            tls: tls.map(|config| TlsConnector::from(Arc::new(config))),
        }
    }

    /// Connects to `addr` (`HOST:PORT`) and waits for the node's first
    /// words (over TLS, its first record after the handshake). Takes as
    /// long as that takes: the caller bounds it. (Without TLS, a node that
    /// expects TLS says nothing: the caller's budget ends it.)
    pub async fn connect(&self, addr: &str) -> io::Result<NodeIo> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let name = ServerName::try_from(host_of(addr).to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                Stream::Tls(Box::new(tls.connect(name, tcp).await?))
            }
        };
        let mut first = vec![0; 16 * 1024];
        let n = match &mut stream {
            Stream::Plain(s) => s.read(&mut first).await?,
            Stream::Tls(s) => s.read(&mut first).await?,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection before it said anything",
            ));
        }
        first.truncate(n);
        Ok(TokioIo::new(Greeted { first, read: 0, stream }))
    }
}

/// The host of `HOST:PORT`, without the brackets of an IPv6 address.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection whose first bytes were read ahead: they are read again
/// before the rest.
pub struct Greeted {
    first: Vec<u8>,
    read: usize,
    stream: Stream,
}

impl AsyncRead for Greeted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.first.len() {
            let n = (this.first.len() - this.read).min(buf.remaining());
            buf.put_slice(&this.first[this.read..this.read + n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Greeted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn hosts_lose_their_port_and_brackets() {
        assert_eq!(host_of("10.0.0.1:7001"), "10.0.0.1");
        assert_eq!(host_of("[::1]:7001"), "::1");
        assert_eq!(host_of("node-1.internal:7001"), "node-1.internal");
    }

    #[tokio::test]
    async fn the_bytes_read_ahead_come_first_then_the_rest() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"world").await.unwrap();
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut greeted = Greeted {
            first: b"hello ".to_vec(),
            read: 0,
            stream: Stream::Plain(tcp),
        };
        let mut all = String::new();
        greeted.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
        server.await.unwrap();
    }
}
