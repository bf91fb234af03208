//! Mutual TLS: loading the cluster's PEM files, building tonic's server and
//! client configs, and telling who a peer is from its certificate.
//!
//! Identities live in DNS subject-alternative names: a node's certificate
//! names `node-<id>.baton`, the admin client's names `admin.baton`. Both are
//! signed by the cluster CA, which is the only root a node trusts.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::TlsPaths;
use crate::types::NodeId;

/// The DNS name that identifies node `id` in its certificate.
pub fn node_dns_name(id: NodeId) -> String {
    format!("node-{id}.baton")
}

/// The DNS name that identifies the admin client in its certificate.
pub const ADMIN_DNS_NAME: &str = "admin.baton";

/// Who is on the other end of a connection, by certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerIdentity {
    Node(NodeId),
    Admin,
}

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{key}: {path} holds no PEM {what}; use the files `batonctl certs init` wrote")]
    NoPem {
        key: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("{0} cannot be used for TLS; use the files `batonctl certs init` wrote")]
    Invalid(String),
}

/// A node's or client's certificates, as PEM.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl TlsMaterial {
    /// Reads and checks the three PEM files.
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        Self::load_files(&paths.ca, &paths.cert, &paths.key)
    }

    /// Reads and checks a CA certificate, a certificate and its key.
    pub fn load_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                key,
                path: path.display().to_string(),
                source,
            })
        };
        let ca_pem = read("ca", ca)?;
        let cert_pem = read("cert", cert)?;
        let key_pem = read("key", key)?;
        let no_pem = |key, path: &Path, what| TlsError::NoPem {
            key,
            path: path.display().to_string(),
            what,
        };
        if CertificateDer::pem_slice_iter(&ca_pem)
            .next()
            .is_none_or(|c| c.is_err())
        {
            return Err(no_pem("ca", ca, "certificate"));
        }
        if CertificateDer::pem_slice_iter(&cert_pem)
            .next()
            .is_none_or(|c| c.is_err())
        {
            return Err(no_pem("cert", cert, "certificate"));
        }
        if rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
            return Err(no_pem("key", key, "private key"));
        }
        Ok(TlsMaterial {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// The cluster CA as the only root.
    fn ca_roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        let invalid = |e: &dyn std::fmt::Display| TlsError::Invalid(format!("the CA certificate: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(cert.map_err(|e| invalid(&e))?).map_err(|e| invalid(&e))?;
        }
        Ok(roots)
    }

    /// Our certificate chain and its key.
    fn chain_and_key(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>), TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Invalid(format!("the certificate: {e}")))?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| TlsError::Invalid(format!("the key: {e}")))?;
        Ok((chain, key))
    }

    /// Server side: present our certificate, require a client certificate
    /// from the cluster CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// The same client side as a rustls config, for a client that makes
    /// its own connections (batonctl, to read a node's first words): the
    /// cluster CA as the only root, our certificate, HTTP/2 by ALPN.
    pub fn rustls_client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let invalid = |what: String| TlsError::Invalid(what);
        let roots = self.ca_roots()?;
        let (chain, key) = self.chain_and_key()?;
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid(format!("the certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// The metrics listener's side (`[metrics] tls = true`): present our
    /// certificate, and take a client certificate from the cluster CA if
    /// one is shown (the admin's unlocks the status page's manual steps),
    /// but serve clients without one too (Prometheus, a browser). HTTP/1.1
    /// by ALPN.
    pub fn metrics_server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let invalid = |what: String| TlsError::Invalid(what);
        let roots = self.ca_roots()?;
        let clients = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| invalid(format!("the CA certificate: {e}")))?;
        let (chain, key) = self.chain_and_key()?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(clients)
            .with_single_cert(chain, key)
            .map_err(|e| invalid(format!("the certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Client side: trust only the cluster CA, present our certificate, and
    /// when `server_name` is set, require the server's certificate to name it.
    pub fn client_config(&self, server_name: Option<&str>) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        match server_name {
            Some(name) => config.domain_name(name),
            None => config,
        }
    }
}

/// Reads the identity from a peer's leaf certificate (already verified
/// against the cluster CA by the TLS handshake).
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Option<PeerIdentity> {
    let leaf = certs.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::DNSName(dns) => identity_from_dns(dns),
        _ => None,
    })
}

fn identity_from_dns(dns: &str) -> Option<PeerIdentity> {
    if dns == ADMIN_DNS_NAME {
        return Some(PeerIdentity::Admin);
    }
    let id = dns.strip_prefix("node-")?.strip_suffix(".baton")?.parse().ok()?;
    Some(PeerIdentity::Node(id))
}

/// Remembers the identities of certificates already seen, so that a busy
/// connection does not parse its peer's certificate on every call.
#[derive(Default)]
pub struct IdentityCache {
    seen: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Option<PeerIdentity>>>,
}

/// Certificates remembered at most; the cache starts over when full.
const IDENTITY_CACHE_ENTRIES: usize = 1024;

impl IdentityCache {
    /// The identity of the leaf certificate in `certs`, as [`peer_identity`].
    pub fn identify(&self, certs: &[CertificateDer<'_>]) -> Option<PeerIdentity> {
        let leaf = certs.first()?.as_ref();
        let mut seen = self.seen.lock().expect("identity cache lock poisoned");
        if let Some(identity) = seen.get(leaf) {
            return *identity;
        }
        let identity = peer_identity(certs);
        if seen.len() >= IDENTITY_CACHE_ENTRIES {
            seen.clear();
        }
        seen.insert(leaf.to_vec(), identity);
        identity
    }
}

/// Installs ring as rustls' process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_read_from_dns_names() {
        assert_eq!(identity_from_dns("node-7.baton"), Some(PeerIdentity::Node(7)));
        assert_eq!(identity_from_dns("admin.baton"), Some(PeerIdentity::Admin));
        assert_eq!(identity_from_dns("node-x.baton"), None);
        assert_eq!(identity_from_dns("localhost"), None);
        assert_eq!(node_dns_name(3), "node-3.baton");
    }
}
