//! The `[heart]` table of a node's config: where the machine's heart
//! listens, where it keeps node binaries, and which keys may sign them. The
//! heart and its node read the same file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::check_host_port;

/// Where `baton-heart` serves (see [`crate::heart`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartConfig {
    /// Address the heart binds, `IP:PORT`; not the node's own port. Port 0
    /// takes a free port, which the heart tells its node (for tests and
    /// one-machine clusters: peers learn it from the node's heartbeats).
    pub listen_addr: String,
    /// Address peers dial to ask the heart, `HOST:PORT`; defaults to
    /// `listen_addr`.
    #[serde(default)]
    pub advertise_addr: Option<String>,
    /// Where the heart keeps node binaries by content hash and its record of
    /// which is permanent and which on trial; defaults to `heart` in the
    /// node's `data_dir`. Relative paths are from the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// ed25519 public keys (64 hex digits, the `.pub` of `batonctl keys
    /// new`) that may sign node binaries. With none, the heart runs only its
    /// installed binary and refuses every upgrade.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
}

impl HeartConfig {
    /// The address peers dial.
    pub fn advertised(&self) -> &str {
        self.advertise_addr.as_deref().unwrap_or(&self.listen_addr)
    }

    /// Where the heart keeps its binaries, for a node whose data lives in
    /// `data_dir`.
    pub fn state_dir(&self, data_dir: &Path) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| data_dir.join("heart"))
    }

    /// The keys that may sign node binaries; the malformed ones are reported
    /// by [`HeartConfig::problems`].
    pub fn trusted(&self) -> Vec<crate::modules::signing::VerifyingKey> {
        self.trusted_keys
            .iter()
            .filter_map(|k| crate::modules::signing::parse_public_key(k).ok())
            .collect()
    }

    /// Every problem with this table, as (key, message), given the node's
    /// own listen address.
    pub fn problems(&self, node_listen_addr: &str) -> Vec<(String, String)> {
        let mut problems: Vec<(String, String)> = Vec::new();
        match self.listen_addr.parse::<SocketAddr>() {
            Err(_) => problems.push((
                "heart.listen_addr".into(),
                format!(
                    "{:?} is not an IP:PORT address; write it like \"127.0.0.1:7101\"",
                    self.listen_addr
                ),
            )),
            Ok(listen) => {
                if node_listen_addr.parse::<SocketAddr>().is_ok_and(|n| n == listen) {
                    problems.push((
                        "heart.listen_addr".into(),
                        format!(
                            "{} is the node's own listen_addr; give the heart a port of its own",
                            self.listen_addr
                        ),
                    ));
                }
                if self.advertise_addr.is_none() && listen.ip().is_unspecified() {
                    problems.push((
                        "heart.advertise_addr".into(),
                        format!(
                            "heart.listen_addr {} listens on every interface, so peers cannot dial it; \
                             set heart.advertise_addr to this machine's reachable HOST:PORT",
                            self.listen_addr
                        ),
                    ));
                }
            }
        }
        if let Some(addr) = &self.advertise_addr
            && let Err(why) = check_host_port(addr)
        {
            problems.push(("heart.advertise_addr".into(), why));
        }
        for (i, key) in self.trusted_keys.iter().enumerate() {
            if let Err(e) = crate::modules::signing::parse_public_key(key) {
                problems.push((
                    format!("heart.trusted_keys[{i}]"),
                    format!("{e}; use the .pub file that `batonctl keys new` writes"),
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heart(listen: &str, advertise: Option<&str>) -> HeartConfig {
        HeartConfig {
            listen_addr: listen.into(),
            advertise_addr: advertise.map(str::to_string),
            state_dir: None,
            trusted_keys: Vec::new(),
        }
    }

    #[test]
    fn a_heart_on_a_port_of_its_own_is_valid() {
        assert!(heart("127.0.0.1:7101", None).problems("127.0.0.1:7001").is_empty());
        assert_eq!(heart("127.0.0.1:7101", None).advertised(), "127.0.0.1:7101");
        assert!(
            heart("127.0.0.1:0", None).problems("127.0.0.1:7001").is_empty(),
            "a free port"
        );
    }

    #[test]
    fn a_heart_on_the_nodes_port_is_refused() {
        let problems = heart("127.0.0.1:7001", None).problems("127.0.0.1:7001");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].1.contains("port of its own"), "{problems:?}");
    }

    #[test]
    fn a_heart_on_every_interface_needs_an_advertised_address() {
        let problems = heart("0.0.0.0:7101", None).problems("127.0.0.1:7001");
        assert_eq!(problems[0].0, "heart.advertise_addr");
        assert!(
            heart("0.0.0.0:7101", Some("10.0.0.1:7101"))
                .problems("127.0.0.1:7001")
                .is_empty()
        );
    }

    #[test]
    fn a_bad_heart_address_is_named() {
        let problems = heart("localhost", None).problems("127.0.0.1:7001");
        assert_eq!(problems[0].0, "heart.listen_addr");
    }
}
