//! A small HTTP/1.0 client for the tests: a GET to a node's metrics
//! listener or to Prometheus' API. HTTP/1.0 keeps the answer unchunked and
//! ends it with the connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: its status code and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// GETs `path` from `addr` (`HOST:PORT`) within `timeout`.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<Answer, String> {
    tokio::time::timeout(timeout, exchange(addr, path))
        .await
        .map_err(|_| format!("GET http://{addr}{path}: no answer within {timeout:?}"))?
}

async fn exchange(addr: &str, path: &str) -> Result<Answer, String> {
    let fail = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(fail)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(fail)?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.map_err(fail)?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET http://{addr}{path}: no end of headers in {text:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET http://{addr}{path}: no status line in {head:?}"))?;
    let content_type = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    Ok(Answer {
        status,
        content_type,
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
