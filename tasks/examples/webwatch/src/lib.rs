//! `webwatch`: GETs the URL in its JSON config (`{"url":
//! "https://example.com/feed"}`) every tick and keeps, as JSON, how many
//! times it polled, the last status, size and a hash of the body, and how
//! many times the body changed. With `"post": "TEXT"` it POSTs the text
//! instead. Every request names the task, its node and its fencing token
//! in `baton-*` headers ([`http::identity_headers`]). With
//! `"bearer_secret": "NAME"` it also sends the task's secret NAME as
//! `authorization: Bearer VALUE` (`batonctl tasks add --secret`). The task must be
//! granted the URL's server (scheme, host and port); without a grant every
//! tick fails, refused.

use baton_task_sdk::{Guest, Outcome, host, http, log, secrets};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    post: Option<String>,
    /// The name of the secret to send as a bearer token.
    #[serde(default)]
    bearer_secret: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Seen {
    polls: u64,
    changes: u64,
    status: u16,
    bytes: usize,
    /// FNV-1a of the last body, in hex.
    hash: String,
}

struct WebWatch;

impl Guest for WebWatch {
    fn tick(state: Vec<u8>) -> Result<Outcome, String> {
        let config: Config =
            serde_json::from_slice(&host::task_config()).map_err(|e| format!("config must be JSON with a url: {e}"))?;
        let mut seen: Seen = match state.is_empty() {
            true => Seen::default(),
            false => serde_json::from_slice(&state).map_err(|e| format!("state: {e}"))?,
        };
        let identity = http::identity_headers();
        let mut headers: Vec<(&str, &[u8])> = identity.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let bearer = match &config.bearer_secret {
            Some(name) => Some([&b"Bearer "[..], &secrets::get(name)?].concat()),
            None => None,
        };
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer));
        }
        let (method, body) = match &config.post {
            None => ("GET", &b""[..]),
            Some(text) => ("POST", text.as_bytes()),
        };
        let response = http::request(method, &config.url, &headers, body, http::DEFAULT_MAX_BODY)?;
        let hash = format!("{:016x}", fnv1a(&response.body));
        if hash != seen.hash {
            if seen.polls > 0 {
                log::info(&format!(
                    "{} changed: {} bytes, status {}",
                    config.url,
                    response.body.len(),
                    response.status
                ));
            }
            seen.changes += 1;
        }
        seen.polls += 1;
        seen.status = response.status;
        seen.bytes = response.body.len();
        seen.hash = hash;
        Ok(Outcome {
            state: serde_json::to_vec(&seen).map_err(|e| e.to_string())?,
            next_in_ms: None,
        })
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

baton_task_sdk::export!(WebWatch with_types_in baton_task_sdk::bindings);
