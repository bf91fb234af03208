//! A cluster of `baton-node` processes on this machine, laid out in one
//! directory: what `batonctl dev` runs and what the cluster tests drive.
//!
//! ```text
//! DIR/certs/            the CA, node and admin certificates
//! DIR/<id>/node.toml    each node's config (paths relative to it)
//! DIR/<id>/data/        its Raft data
//! DIR/<id>/node.log     its log (and its heart's)
//! DIR/<id>/node.pid     its process id while it runs
//! DIR/env               export lines for batonctl
//! ```
//!
//! Each node runs under its own `baton-heart` (see `baton_node::heart`),
//! which vouches for the node's exit so that a killed node's tasks move at
//! once. The hearts run with `--no-restart`: a node that dies stays down
//! until the cluster's owner starts it again, as a test or the tour expect.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;

use baton_node::config::{
    ClusterConfig, HeartConfig, InitialMember, MetricsConfig, ModulesConfig, NodeConfig, SecretsConfig, TimingConfig,
};
use baton_node::modules::signing;
use baton_node::tls::TlsMaterial;

use crate::pki::{self, NodeSpec, PkiError};

mod processes;

use processes::heart_binary_beside;

/// Errors setting up or running a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(
        "cannot find the baton-node binary beside batonctl or on PATH; build it with `cargo build --release` or pass --node-binary"
    )]
    NoNodeBinary,
    #[error(
        "cannot find the baton-heart binary beside {0}; build it with `cargo build --release` (it is built with baton-node)"
    )]
    NoHeartBinary(PathBuf),
    #[error("cannot start {binary}: {source}")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("no node {0} in this cluster")]
    UnknownNode(u64),
    #[error("cannot serialize a node config: {0}")]
    Config(#[from] toml::ser::Error),
}

/// The module signing key in a local cluster's directory (and `.pub`).
pub const SIGNING_KEY_FILE: &str = "signing.key";
/// The file under a local cluster's directory holding the token that
/// unlocks the nodes' status pages' manual steps (`[metrics]
/// admin_token_file`).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The key every node of a local cluster seals and opens task secrets with.
pub const SECRET_KEY_FILE: &str = "secret-key";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LocalClusterError + '_ {
    move |source| LocalClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One node of a local cluster.
pub struct LocalNode {
    pub id: u64,
    pub addr: String,
    /// Its `/metrics`, `/healthz` and `/readyz` listener, `127.0.0.1:PORT`
    /// (when the cluster was laid out with `[metrics]` tables).
    pub metrics_addr: String,
    pub dir: PathBuf,
    /// The heart process that started the node, while it runs.
    heart: Option<Child>,
    /// Whether its heart has written the node's pid since it was started.
    pid_seen: bool,
    /// Whether `reap_exited` has reported the node's exit.
    exit_reported: bool,
}

impl LocalNode {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("node.toml")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("node.pid")
    }
}

/// A local cluster's directory and processes. Dropping it kills every node
/// still running.
pub struct LocalCluster {
    pub dir: PathBuf,
    pub nodes: BTreeMap<u64, LocalNode>,
    initial: Vec<InitialMember>,
    timing: TimingConfig,
    node_binary: PathBuf,
    heart_binary: PathBuf,
    /// The public key of `DIR/signing.key`, the one key the nodes trust.
    trusted_key: String,
    /// Give each node a `[metrics]` table with a port of its own; without
    /// (for a release before 0.6.0, which refuses the table), nodes use the
    /// default listener, which only the first to start on the machine gets.
    metrics_tables: bool,
    /// The nodes' `[secrets] key_files`: `DIR/secret-key`, made with the
    /// cluster (none for an earlier release, which refuses the table).
    secret_keys: Vec<PathBuf>,
}

/// Writes a fresh random admin token to `path`, readable by its owner only.
fn write_admin_token(path: &Path) -> Result<(), LocalClusterError> {
    write_random_hex(path, 24)
}

/// Writes a fresh secret key (`[secrets] key_files`) to `path`, readable by
/// its owner only.
pub fn write_secret_key(path: &Path) -> Result<(), LocalClusterError> {
    write_random_hex(path, baton_node::secrets::KEY_BYTES)
}

/// Writes `len` random bytes to `path` in hex, readable by its owner only.
fn write_random_hex(path: &Path, len: usize) -> Result<(), LocalClusterError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err(Path::new("/dev/urandom")))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes()).map_err(io_err(path))
}

/// Finds `baton-node` beside the running executable, in the directory above
/// it (cargo puts test binaries in `deps/`), or on PATH.
pub fn find_node_binary() -> Result<PathBuf, LocalClusterError> {
    find_binary("baton-node").ok_or(LocalClusterError::NoNodeBinary)
}

/// Finds the executable `name` as `find_node_binary` does.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    baton_node::process::find_executable(name)
}

/// Ports this process has handed out: a port is free when it is returned
/// and taken only later, when its node starts, so two clusters laid out in
/// one process (tests run in parallel) must not be handed the same one.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Free loopback ports, found by binding them: distinct, never one this
/// process has handed out before, and below the kernel's range for the
/// source ports of outgoing connections where that leaves room (else any
/// free port).
pub fn free_ports(n: usize) -> Result<Vec<u16>, LocalClusterError> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Every listener is held until the end, so that no port is given twice.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    // Below the kernel's range for outgoing connections' own ports: a port
    // from that range, free now, may be taken as the source port of any
    // connection before its node binds it.
    let below = below_ephemeral();
    let mut tries = 0;
    while ports.len() < n {
        let listener = match below.clone() {
            Some(range) if tries < 1000 => {
                tries += 1;
                let span = u64::from(range.end - range.start);
                let port = range.start + (random() % span) as u16;
                match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(listener) => listener,
                    Err(_) => continue,
                }
            }
            _ => TcpListener::bind("127.0.0.1:0").map_err(io_err(Path::new("127.0.0.1:0")))?,
        };
        let port = listener.local_addr().map_err(io_err(Path::new("127.0.0.1:0")))?.port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        held.push(listener);
    }
    Ok(ports)
}

/// Ports from 10000 up to the first the kernel hands out as the source port
/// of an outgoing connection, if that leaves at least a thousand.
fn below_ephemeral() -> Option<std::ops::Range<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u16 = text.split_whitespace().next()?.parse().ok()?;
    (low > 11_000).then_some(10_000..low)
}

/// A random number, from the standard library's per-instance hash keys.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

impl LocalCluster {
    /// Lays out a new cluster of `n` voters in `dir` (which must not hold
    /// one already): certificates, ports, configs. Starts nothing.
    pub fn create(dir: &Path, n: u64, timing: TimingConfig, node_binary: PathBuf) -> Result<Self, LocalClusterError> {
        Self::lay_out(dir, n, timing, node_binary, true)
    }

    /// As [`LocalCluster::create`], with configs a release before 0.6.0 can
    /// read: no `[metrics]` table.
    pub fn create_for_earlier_release(
        dir: &Path,
        n: u64,
        timing: TimingConfig,
        node_binary: PathBuf,
    ) -> Result<Self, LocalClusterError> {
        Self::lay_out(dir, n, timing, node_binary, false)
    }

    fn lay_out(
        dir: &Path,
        n: u64,
        timing: TimingConfig,
        node_binary: PathBuf,
        metrics_tables: bool,
    ) -> Result<Self, LocalClusterError> {
        let heart_binary = heart_binary_beside(&node_binary)?;
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let dir = dir.canonicalize().map_err(io_err(dir))?;
        let specs: Vec<NodeSpec> = (1..=n).map(NodeSpec::local).collect();
        pki::init(&dir.join("certs"), &specs)?;
        let signing_key = signing::generate();
        let trusted_key = signing::write_key_pair(&dir.join(SIGNING_KEY_FILE), &signing_key)
            .map_err(|(path, source)| LocalClusterError::Io { path, source })?;
        let mut secret_keys = Vec::new();
        if metrics_tables {
            write_admin_token(&dir.join(ADMIN_TOKEN_FILE))?;
            let key = dir.join(SECRET_KEY_FILE);
            write_secret_key(&key)?;
            secret_keys.push(key);
        }
        let ports = free_ports(n as usize)?;
        let initial: Vec<InitialMember> = (1..=n)
            .zip(&ports)
            .map(|(id, port)| InitialMember {
                id,
                addr: format!("127.0.0.1:{port}"),
            })
            .collect();
        let mut cluster = LocalCluster {
            dir,
            nodes: BTreeMap::new(),
            initial: initial.clone(),
            timing,
            node_binary,
            heart_binary,
            trusted_key,
            metrics_tables,
            secret_keys,
        };
        for member in initial {
            cluster.lay_out_node(member.id, member.addr)?;
        }
        Ok(cluster)
    }

    /// Lays out one more node (not an initial member): a certificate, a
    /// port and a config. Add it to the cluster with `nodes add` once started.
    pub fn add_node_layout(&mut self, id: u64) -> Result<&LocalNode, LocalClusterError> {
        pki::add_node(&self.dir.join("certs"), &NodeSpec::local(id))?;
        let port = free_ports(1)?[0];
        self.lay_out_node(id, format!("127.0.0.1:{port}"))?;
        Ok(&self.nodes[&id])
    }

    fn lay_out_node(&mut self, id: u64, addr: String) -> Result<(), LocalClusterError> {
        let node_dir = self.dir.join(id.to_string());
        std::fs::create_dir_all(&node_dir).map_err(io_err(&node_dir))?;
        let certs = Path::new("..").join("certs");
        // Nodes on one machine each need a metrics port of their own.
        let metrics_addr = format!("127.0.0.1:{}", free_ports(1)?[0]);
        let config = NodeConfig {
            id,
            listen_addr: addr.clone(),
            advertise_addr: None,
            data_dir: PathBuf::from("data"),
            insecure: false,
            tls: Some(pki::node_tls_paths(&certs, id)),
            cluster: ClusterConfig {
                name: "dev".into(),
                initial_members: self.initial.clone(),
            },
            timing: self.timing.clone(),
            modules: ModulesConfig {
                trusted_keys: vec![self.trusted_key.clone()],
            },
            // Port 0: each heart binds a free port and tells its node.
            heart: Some(HeartConfig {
                listen_addr: "127.0.0.1:0".into(),
                advertise_addr: None,
                state_dir: None,
                // The dev key signs node binaries too (`batonctl upgrade`).
                trusted_keys: vec![self.trusted_key.clone()],
            }),
            limits: Default::default(),
            metrics: self.metrics_tables.then(|| MetricsConfig {
                admin_token_file: Some(self.dir.join(ADMIN_TOKEN_FILE)),
                ..MetricsConfig::at(&metrics_addr)
            }),
            testing: Default::default(),
            secrets: SecretsConfig {
                key_files: self.secret_keys.clone(),
            },
        };
        let text = format!(
            "# Node {id} of a local Baton cluster; run it with\n#   baton-node --config {}\n{}",
            node_dir.join("node.toml").display(),
            toml::to_string(&config)?
        );
        let path = node_dir.join("node.toml");
        std::fs::write(&path, text).map_err(io_err(&path))?;
        self.nodes.insert(
            id,
            LocalNode {
                id,
                addr,
                metrics_addr,
                dir: node_dir,
                heart: None,
                pid_seen: false,
                exit_reported: false,
            },
        );
        Ok(())
    }

    /// Gives every node `files` as its `[secrets] key_files` (the first
    /// seals), in its config; each reads them when it next starts. (Key
    /// rotation: docs/secrets.md.)
    pub fn set_secret_keys(&mut self, files: Vec<PathBuf>) -> Result<(), LocalClusterError> {
        for node in self.nodes.values() {
            let path = node.dir.join("node.toml");
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            let mut config: NodeConfig = toml::from_str(&text).map_err(|e| LocalClusterError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            config.secrets.key_files = files.clone();
            let header: String = text
                .lines()
                .take_while(|l| l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
            let written = format!("{header}{}", toml::to_string(&config)?);
            std::fs::write(&path, written).map_err(io_err(&path))?;
        }
        self.secret_keys = files;
        Ok(())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.addr.clone()).collect()
    }

    /// The `baton-node` its nodes run.
    pub fn node_binary(&self) -> &Path {
        &self.node_binary
    }

    /// The token that unlocks the status pages' manual steps, if the nodes
    /// were given one (clusters laid out with `[metrics]` tables).
    pub fn admin_token(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join(ADMIN_TOKEN_FILE)).ok()?;
        Some(text.trim().to_string())
    }

    /// Paths of the CA and admin certificate and key.
    pub fn admin_paths(&self) -> (PathBuf, PathBuf, PathBuf) {
        let certs = self.dir.join("certs");
        let (cert, key) = pki::admin_cert_paths(&certs);
        (pki::ca_cert_path(&certs), cert, key)
    }

    pub fn admin_tls(&self) -> Result<TlsMaterial, baton_node::tls::TlsError> {
        let (ca, cert, key) = self.admin_paths();
        TlsMaterial::load_files(&ca, &cert, &key)
    }

    /// The module signing key every node of this cluster trusts.
    pub fn signing_key_path(&self) -> PathBuf {
        self.dir.join(SIGNING_KEY_FILE)
    }

    /// Reads the cluster's module signing key.
    pub fn signing_key(&self) -> Result<signing::SigningKey, signing::SigningError> {
        signing::read_private_key(&self.signing_key_path())
    }

    /// Writes `DIR/env` with the variables batonctl reads.
    pub fn write_env(&self) -> Result<PathBuf, LocalClusterError> {
        let (ca, cert, key) = self.admin_paths();
        let text = format!(
            "export BATON_ENDPOINTS={}\nexport BATON_CA={}\nexport BATON_CERT={}\nexport BATON_KEY={}\n\
             export BATON_SIGNING_KEY={}\n",
            self.endpoints().join(","),
            ca.display(),
            cert.display(),
            key.display(),
            self.signing_key_path().display()
        );
        // Written beside, then renamed: a shell sourcing it meanwhile (a
        // test starts `batonctl upgrade` through it, then writes it again
        // for `upgrade status`) reads the old file or the new, never an
        // empty one.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join("env");
        let beside = self.dir.join(format!(".env.{}.{n}", std::process::id()));
        std::fs::write(&beside, text).map_err(io_err(&beside))?;
        std::fs::rename(&beside, &path).map_err(io_err(&path))?;
        Ok(path)
    }
}
