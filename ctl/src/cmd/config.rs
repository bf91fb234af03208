//! `batonctl config node`: a node's config file for a machine of a cluster,
//! written from the cluster's member list, checked as the node would check
//! it (but for the certificate files, which live on the machine).

use std::path::PathBuf;

use baton_node::config::{
    ClusterConfig, HeartConfig, InitialMember, ModulesConfig, NodeConfig, TestingConfig, TimingConfig,
};

use super::CmdError;
use crate::cli::ConfigCommand;
use crate::pki;

/// The port a node listens on when a member is given without one.
pub const NODE_PORT: u16 = 7000;

/// The port the machine's heart listens on.
pub const HEART_PORT: u16 = 7001;

pub fn run(command: ConfigCommand) -> Result<(), CmdError> {
    match command {
        ConfigCommand::Node {
            id,
            cluster,
            members,
            addr,
            trusted_keys,
            data_dir,
            certs,
        } => {
            let members = members.iter().map(|m| parse_member(m)).collect::<Result<Vec<_>, _>>()?;
            let keys = trusted_keys
                .iter()
                .map(|path| {
                    std::fs::read_to_string(path)
                        .map(|k| k.trim().to_string())
                        .map_err(|source| CmdError::File {
                            path: path.clone(),
                            source,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let config = node_config(id, &cluster, members, addr.as_deref(), keys, data_dir, certs)?;
            print!("{}", render(&config)?);
            Ok(())
        }
    }
}

/// `ID=HOST[:PORT]`, the port 7000 when left out.
fn parse_member(text: &str) -> Result<InitialMember, CmdError> {
    let bad = || {
        CmdError::Usage(format!(
            "--member {text:?}: write a member as ID=HOST[:PORT], like 1=10.0.0.11 or 2=10.0.0.12:7000"
        ))
    };
    let (id, host) = text.split_once('=').ok_or_else(bad)?;
    let id: u64 = id.trim().parse().map_err(|_| bad())?;
    Ok(InitialMember {
        id,
        addr: with_port(host.trim(), NODE_PORT),
    })
}

/// `HOST` with `port` unless it names one.
fn with_port(host: &str, port: u16) -> String {
    match baton_node::config::check_host_port(host) {
        Ok(()) => host.to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

/// The config of node `id` of cluster `cluster`: listening on every
/// interface and advertising its member address (or `addr`, for a node
/// joining later), its heart on port 7001 of the same host, certificates
/// under `certs`, data in `data_dir`.
pub fn node_config(
    id: u64,
    cluster: &str,
    members: Vec<InitialMember>,
    addr: Option<&str>,
    trusted_keys: Vec<String>,
    data_dir: PathBuf,
    certs: PathBuf,
) -> Result<NodeConfig, CmdError> {
    if members.is_empty() {
        return Err(CmdError::Usage(
            "name the cluster's initial members: --member 1=HOST --member 2=HOST --member 3=HOST".into(),
        ));
    }
    let advertise = match (addr, members.iter().find(|m| m.id == id)) {
        (Some(addr), _) => with_port(addr, NODE_PORT),
        (None, Some(member)) => member.addr.clone(),
        (None, None) => {
            return Err(CmdError::Usage(format!(
                "node {id} is not among the initial members: give its address with --addr HOST[:PORT] (a node that \
                 joins later keeps the initial member list, which names the cluster)"
            )));
        }
    };
    let (host, port) = advertise
        .rsplit_once(':')
        .ok_or_else(|| CmdError::Usage(format!("{advertise:?} is not HOST:PORT")))?;
    let config = NodeConfig {
        id,
        listen_addr: format!("0.0.0.0:{port}"),
        advertise_addr: Some(advertise.clone()),
        data_dir,
        insecure: false,
        tls: Some(pki::node_tls_paths(&certs, id)),
        cluster: ClusterConfig {
            name: cluster.to_string(),
            initial_members: members,
        },
        timing: TimingConfig::default(),
        modules: ModulesConfig {
            trusted_keys: trusted_keys.clone(),
        },
        heart: Some(HeartConfig {
            listen_addr: format!("0.0.0.0:{HEART_PORT}"),
            advertise_addr: Some(format!("{host}:{HEART_PORT}")),
            state_dir: None,
            trusted_keys,
        }),
        limits: Default::default(),
        metrics: Default::default(),
        testing: TestingConfig::default(),
        // A cluster's secret key is made once and copied to every machine
        // (docs/secrets.md), as its CA is.
        secrets: Default::default(),
    };
    // The certificates are checked where the node runs.
    let problems: Vec<String> = config
        .validate()
        .into_iter()
        .filter(|p| !p.key.starts_with("tls."))
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    match problems.is_empty() {
        true => Ok(config),
        false => Err(CmdError::Usage(format!(
            "this config would not start a node:\n  {}",
            problems.join("\n  ")
        ))),
    }
}

/// The config as TOML, under a comment saying what it is.
fn render(config: &NodeConfig) -> Result<String, CmdError> {
    let toml = toml::to_string(config).map_err(|e| CmdError::Usage(format!("cannot write the config: {e}")))?;
    Ok(format!(
        "# Node {} of Baton cluster {:?}, written by `batonctl config node`.\n\
         # Check it on the machine with `baton-node --config FILE --check`; every key\n\
         # is explained in configs/container/node.toml of the source tree.\n{toml}",
        config.id, config.cluster.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<InitialMember> {
        ["1=10.77.0.11", "2=10.77.0.12", "3=10.77.0.13:7100"]
            .iter()
            .map(|m| parse_member(m).unwrap())
            .collect()
    }

    #[test]
    fn a_member_takes_port_7000_unless_it_names_one() {
        let m = members();
        assert_eq!(m[0].addr, "10.77.0.11:7000");
        assert_eq!(m[2].addr, "10.77.0.13:7100");
        for bad in ["10.77.0.11", "x=10.77.0.11", ""] {
            assert!(parse_member(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_member_gets_its_own_address_and_its_heart_beside_it() {
        let config = node_config(3, "prod", members(), None, vec![], "/var/lib/baton".into(), "/c".into()).unwrap();
        assert_eq!(config.listen_addr, "0.0.0.0:7100");
        assert_eq!(config.advertise_addr.as_deref(), Some("10.77.0.13:7100"));
        let heart = config.heart.as_ref().unwrap();
        assert_eq!(heart.advertise_addr.as_deref(), Some("10.77.0.13:7001"));
        assert_eq!(config.tls.as_ref().unwrap().cert, PathBuf::from("/c/node-3.pem"));
        // What it writes reads back as the same config.
        let text = render(&config).unwrap();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn a_node_joining_later_needs_its_address_and_a_bad_key_is_refused() {
        let refused = node_config(4, "prod", members(), None, vec![], "/d".into(), "/c".into()).unwrap_err();
        assert!(refused.to_string().contains("--addr"), "{refused}");
        let joining = node_config(
            4,
            "prod",
            members(),
            Some("10.77.0.14"),
            vec![],
            "/d".into(),
            "/c".into(),
        )
        .unwrap();
        assert_eq!(joining.advertise_addr.as_deref(), Some("10.77.0.14:7000"));
        let bad_key = node_config(
            1,
            "prod",
            members(),
            None,
            vec!["nope".into()],
            "/d".into(),
            "/c".into(),
        );
        assert!(bad_key.unwrap_err().to_string().contains("trusted_keys"));
    }
}
