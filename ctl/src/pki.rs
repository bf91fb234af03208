//! The cluster's certificates: one CA, a certificate per node naming
//! `node-<id>.baton` and the node's addresses, and an admin client
//! certificate naming `admin.baton`.

use std::path::{Path, PathBuf};

use baton_node::tls::{ADMIN_DNS_NAME, node_dns_name};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Errors making certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0:?} is not a node spec: write ID=HOST[,HOST...], like 1=10.0.0.1,node1.internal")]
    BadSpec(String),
    #[error("{0} already exists; choose an empty --dir or remove the old files first")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read the CA in {dir}: {why}; run `batonctl certs init --dir {dir}` first")]
    NoCa { dir: String, why: String },
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("list at least one node: --node ID=HOST[,HOST...] or --local-nodes N")]
    NoNodes,
}

/// A node to issue a certificate for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: u64,
    /// Names and IPs the node is reached by.
    pub hosts: Vec<String>,
}

impl NodeSpec {
    /// Parses `ID=HOST[,HOST...]`.
    pub fn parse(spec: &str) -> Result<NodeSpec, PkiError> {
        let bad = || PkiError::BadSpec(spec.to_string());
        let (id, hosts) = spec.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        let hosts: Vec<String> = hosts
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if id == 0 || hosts.is_empty() {
            return Err(bad());
        }
        Ok(NodeSpec { id, hosts })
    }

    /// A node on this machine.
    pub fn local(id: u64) -> NodeSpec {
        NodeSpec {
            id,
            hosts: vec!["127.0.0.1".into(), "localhost".into()],
        }
    }
}

/// Where `certs init` put things.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}
pub fn node_cert_paths(dir: &Path, id: u64) -> (PathBuf, PathBuf) {
    (dir.join(format!("node-{id}.pem")), dir.join(format!("node-{id}.key")))
}
/// Node `id`'s `[tls]` table, for certificates kept in `dir`.
pub fn node_tls_paths(dir: &Path, id: u64) -> baton_node::config::TlsPaths {
    let (cert, key) = node_cert_paths(dir, id);
    baton_node::config::TlsPaths {
        ca: ca_cert_path(dir),
        cert,
        key,
    }
}

pub fn admin_cert_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("admin.pem"), dir.join("admin.key"))
}

/// Writes a new CA, a certificate per node and the admin certificate into
/// `dir`. Returns the files written.
pub fn init(dir: &Path, nodes: &[NodeSpec]) -> Result<Vec<PathBuf>, PkiError> {
    if nodes.is_empty() {
        return Err(PkiError::NoNodes);
    }
    let ca_key_path = dir.join("ca.key");
    let (admin_cert, admin_key) = admin_cert_paths(dir);
    let mut targets = vec![
        ca_cert_path(dir),
        ca_key_path.clone(),
        admin_cert.clone(),
        admin_key.clone(),
    ];
    for node in nodes {
        let (cert, key) = node_cert_paths(dir, node.id);
        targets.extend([cert, key]);
    }
    if let Some(existing) = targets.iter().find(|p| p.exists()) {
        return Err(PkiError::Exists(existing.clone()));
    }
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Named for its key, so that a browser holding the admin certificates
    // of several clusters offers each node the one its CA signed (it picks
    // by the CA's name).
    let tag: String = ca_key
        .public_key_raw()
        .iter()
        .rev()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    ca_params.distinguished_name = name(&format!("baton cluster CA {tag}"));
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write(&ca_cert_path(dir), &ca_cert.pem(), false)?;
    write(&ca_key_path, &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca_params, ca_key);

    for node in nodes {
        issue_node(dir, &issuer, node)?;
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![ADMIN_DNS_NAME.to_string()])?;
    params.distinguished_name = name("baton admin");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    write(&admin_cert, &params.signed_by(&key, &issuer)?.pem(), false)?;
    write(&admin_key, &key.serialize_pem(), true)?;
    Ok(targets)
}

/// Issues a certificate for one more node with the CA already in `dir`.
pub fn add_node(dir: &Path, node: &NodeSpec) -> Result<Vec<PathBuf>, PkiError> {
    let (cert, key) = node_cert_paths(dir, node.id);
    if let Some(existing) = [&cert, &key].into_iter().find(|p| p.exists()) {
        return Err(PkiError::Exists(existing.clone()));
    }
    let no_ca = |why: String| PkiError::NoCa {
        dir: dir.display().to_string(),
        why,
    };
    let ca_pem = std::fs::read_to_string(ca_cert_path(dir)).map_err(|e| no_ca(e.to_string()))?;
    let ca_key_pem = std::fs::read_to_string(dir.join("ca.key")).map_err(|e| no_ca(e.to_string()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| no_ca(e.to_string()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| no_ca(e.to_string()))?;
    issue_node(dir, &issuer, node)?;
    Ok(vec![cert, key])
}

fn issue_node(dir: &Path, issuer: &Issuer<'_, KeyPair>, node: &NodeSpec) -> Result<(), PkiError> {
    let key = KeyPair::generate()?;
    let mut sans = vec![node_dns_name(node.id)];
    sans.extend(node.hosts.iter().cloned());
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = name(&format!("baton node {}", node.id));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let (cert_path, key_path) = node_cert_paths(dir, node.id);
    write(&cert_path, &params.signed_by(&key, issuer)?.pem(), false)?;
    write(&key_path, &key.serialize_pem(), true)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, contents).map_err(err)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_parse_and_bad_ones_are_explained() {
        assert_eq!(
            NodeSpec::parse("2=10.0.0.2,n2").unwrap(),
            NodeSpec {
                id: 2,
                hosts: vec!["10.0.0.2".into(), "n2".into()]
            }
        );
        for bad in ["2", "x=1.2.3.4", "0=h", "3="] {
            assert!(matches!(NodeSpec::parse(bad), Err(PkiError::BadSpec(_))), "{bad}");
        }
    }

    #[test]
    fn init_writes_loadable_material_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[NodeSpec::local(1), NodeSpec::local(2)]).unwrap();
        let (cert, key) = node_cert_paths(dir.path(), 2);
        baton_node::tls::TlsMaterial::load_files(&ca_cert_path(dir.path()), &cert, &key).unwrap();
        assert!(matches!(
            init(dir.path(), &[NodeSpec::local(1)]),
            Err(PkiError::Exists(_))
        ));
        add_node(dir.path(), &NodeSpec::local(3)).unwrap();
        assert!(node_cert_paths(dir.path(), 3).0.exists());
        // Each cluster's CA has a name of its own.
        let other = tempfile::tempdir().unwrap();
        init(other.path(), &[NodeSpec::local(1)]).unwrap();
        let ca_name = |dir: &Path| {
            use rustls::pki_types::pem::PemObject;
            let der = rustls::pki_types::CertificateDer::from_pem_file(ca_cert_path(dir)).unwrap();
            let prefix = b"baton cluster CA ";
            let at = der
                .windows(prefix.len())
                .position(|w| w == prefix)
                .expect("the CA's name");
            String::from_utf8_lossy(&der[at..at + prefix.len() + 8]).into_owned()
        };
        assert!(
            ca_name(dir.path()).contains("baton cluster CA "),
            "{}",
            ca_name(dir.path())
        );
        assert_ne!(ca_name(dir.path()), ca_name(other.path()));
        assert!(matches!(
            add_node(dir.path(), &NodeSpec::local(3)),
            Err(PkiError::Exists(_))
        ));
    }
}
