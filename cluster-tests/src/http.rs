//! A small HTTP/1.0 client for the tests: a GET to a node's metrics
//! listener or to Prometheus' API, a POST to the status page or to a
//! WebDriver. HTTP/1.0 keeps the answer unchunked and ends it with the
//! connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How a request reaches its server: over plain TCP, or over TLS with
/// `config`, checking that the server's certificate names `server_name`.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls {
        config: Arc<rustls::ClientConfig>,
        server_name: String,
    },
}

/// An answer: its status code, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    /// Every header, names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` to `addr` as HTTP/1.1 with `headers` and `body` (its
/// Content-Length added), within `timeout`. For servers that answer with a
/// Content-Length (the status page, chromedriver, which refuses HTTP/1.0
/// and keeps a connection open after its answer).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    request_over(&Transport::Plain, addr, method, path, headers, body, timeout).await
}

/// [`request`] over `transport`.
pub async fn request_over(
    transport: &Transport,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    head.push_str(body);
    send_over(transport, addr, method, path, head, timeout).await
}

/// GETs `path` from `addr` (`HOST:PORT`) as HTTP/1.0 within `timeout`.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<Answer, String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    send(addr, "GET", path, request, timeout).await
}

async fn send(addr: &str, method: &str, path: &str, request: String, timeout: Duration) -> Result<Answer, String> {
    send_over(&Transport::Plain, addr, method, path, request, timeout).await
}

async fn send_over(
    transport: &Transport,
    addr: &str,
    method: &str,
    path: &str,
    request: String,
    timeout: Duration,
) -> Result<Answer, String> {
    let scheme = match transport {
        Transport::Plain => "http",
        Transport::Tls { .. } => "https",
    };
    let fail = |e: &dyn std::fmt::Display| format!("{method} {scheme}://{addr}{path}: {e}");
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| fail(&e))?;
        match transport {
            Transport::Plain => exchange(tcp, request).await.map_err(|e| fail(&e)),
            Transport::Tls { config, server_name } => {
                let name = rustls::pki_types::ServerName::try_from(server_name.clone()).map_err(|e| fail(&e))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| fail(&e))?;
                exchange(tls, request).await.map_err(|e| fail(&e))
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(&format!("no answer within {timeout:?}")))?
}

/// Where the answer in `bytes` ends, if it is all there: after its
/// Content-Length, or at the end of the connection without one.
fn answer_len(bytes: &[u8]) -> Option<usize> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    (bytes.len() >= end + length).then_some(end + length)
}

async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: String) -> Result<Answer, String> {
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A TLS server may close without close_notify once it answered.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => 0,
            Err(e) => return Err(e.to_string()),
        };
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        if let Some(len) = answer_len(&bytes) {
            bytes.truncate(len);
            break;
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let content_type = headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    Ok(Answer {
        status,
        content_type,
        headers,
        body: body.to_string(),
    })
}

/// Percent-encodes `text` for a query string.
pub fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
