//! The `[heart]` table of a node's config: where the machine's heart
//! listens. The heart and its node read the same file.

use std::net::SocketAddr;

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
}

impl HeartConfig {
    /// The address peers dial.
    pub fn advertised(&self) -> &str {
        self.advertise_addr.as_deref().unwrap_or(&self.listen_addr)
    }

    /// Every problem with this table, as (key, message), given the node's
    /// own listen address.
    pub fn problems(&self, node_listen_addr: &str) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match self.listen_addr.parse::<SocketAddr>() {
            Err(_) => problems.push((
                "heart.listen_addr",
                format!(
                    "{:?} is not an IP:PORT address; write it like \"127.0.0.1:7101\"",
                    self.listen_addr
                ),
            )),
            Ok(listen) => {
                if node_listen_addr.parse::<SocketAddr>().is_ok_and(|n| n == listen) {
                    problems.push((
                        "heart.listen_addr",
                        format!(
                            "{} is the node's own listen_addr; give the heart a port of its own",
                            self.listen_addr
                        ),
                    ));
                }
                if self.advertise_addr.is_none() && listen.ip().is_unspecified() {
                    problems.push((
                        "heart.advertise_addr",
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
            problems.push(("heart.advertise_addr", why));
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
