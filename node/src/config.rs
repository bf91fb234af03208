//! The node's TOML configuration, validated before anything binds a socket.
//!
//! Relative paths in the file are resolved against the file's directory, so a
//! config directory can be moved as a whole.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::heart::HeartConfig;
use crate::types::NodeId;

/// A `baton-node` configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id: a positive integer, unique in the cluster.
    pub id: NodeId,
    /// Address the gRPC server binds, `IP:PORT`.
    pub listen_addr: String,
    /// Address peers and clients dial, `HOST:PORT`; defaults to `listen_addr`.
    #[serde(default)]
    pub advertise_addr: Option<String>,
    /// Directory for the Raft log, state machine and snapshots.
    pub data_dir: PathBuf,
    /// Serve plain TCP without TLS or certificate checks. For experiments only.
    #[serde(default)]
    pub insecure: bool,
    /// Certificates for mutual TLS; required unless `insecure = true`.
    #[serde(default)]
    pub tls: Option<TlsPaths>,
    /// Which cluster this node belongs to.
    pub cluster: ClusterConfig,
    /// Timers; the defaults suit a LAN.
    #[serde(default)]
    pub timing: TimingConfig,
    /// Task modules: who may sign them.
    #[serde(default)]
    pub modules: ModulesConfig,
    /// The keys task secrets are sealed with (docs/secrets.md).
    #[serde(default, skip_serializing_if = "SecretsConfig::is_default")]
    pub secrets: SecretsConfig,
    /// The machine's heart (`baton-heart`), which starts this node and
    /// vouches for its exit so that its tasks can move at once when its
    /// process dies. Optional: without it, a dead node's tasks move when its
    /// lease ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart: Option<HeartConfig>,
    /// What one task may keep and be given.
    #[serde(default, skip_serializing_if = "LimitsConfig::is_default")]
    pub limits: LimitsConfig,
    /// The plain-HTTP listener for Prometheus (`/metrics`), `/healthz` and
    /// `/readyz`. Without the table, the node listens at the default address
    /// if it can (see [`NodeConfig::metrics`]); the table is new in 0.6.0,
    /// and a node or heart of an earlier release refuses a config that has
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// Switches for Baton's own fault-injection tests. Never set them in
    /// production.
    #[serde(default, skip_serializing_if = "TestingConfig::is_default")]
    pub testing: TestingConfig,
}

/// What one task may keep and be given: caps that keep every commit small
/// enough to replicate. Give every node the same values: a tick over the cap
/// fails on the node that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The largest state a tick may return, in bytes. A tick over it fails
    /// with a reason that names the task and the cap, and is retried, then
    /// the task marked failed, like any failing tick: nothing larger is ever
    /// proposed.
    pub max_state_bytes: usize,
    /// The largest config `batonctl tasks add` accepts, in bytes.
    pub max_config_bytes: usize,
}

/// `[metrics]`: the node's plain-HTTP listener for Prometheus' `/metrics`,
/// `/healthz`, `/readyz` and the status page (see `docs/metrics.md` and
/// `docs/status-page.md`). It changes nothing in the cluster unless
/// `admin_token_file` is set, and then only for whoever shows that token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve it at all.
    pub enabled: bool,
    /// The address it binds, `IP:PORT`. Loopback by default: to let a
    /// Prometheus on another machine scrape it, bind the machine's address
    /// (or `0.0.0.0:9464`) and keep the port behind your firewall.
    pub listen: String,
    /// A file holding the token that unlocks the status page's manual steps
    /// (pause a task, drain a node, pause a rollout...): one line of at
    /// least [`crate::web::AdminToken::MIN_CHARS`] characters. Without it
    /// the page is read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve the status page (true by default). It shows to anyone who can
    /// reach the listener what `batonctl status` and `tasks list` show to
    /// the admin: turn it off where the port is open to more than your
    /// operators (to a Prometheus elsewhere, say) and keep `/metrics`.
    #[serde(default = "serve_status_page", skip_serializing_if = "is_true")]
    pub status_page: bool,
    /// Serve HTTPS rather than plain HTTP, with the node's own certificate
    /// from `[tls]` (it names `node-<id>.baton`; a scraper verifies it
    /// against the cluster CA under that name). A client may show a
    /// certificate of the cluster CA: the admin's (`batonctl certs init`'s
    /// `admin.pem`) unlocks the status page's manual steps, as the token
    /// does. Clients without one are served as before.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn serve_status_page() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// The metrics listener's default address: the port OpenTelemetry's
/// Prometheus exporters use by default, on loopback.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

impl MetricsConfig {
    /// The listener at `listen`.
    pub fn at(listen: impl Into<String>) -> MetricsConfig {
        MetricsConfig {
            enabled: true,
            listen: listen.into(),
            admin_token_file: None,
            status_page: true,
            tls: false,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig::at(DEFAULT_METRICS_LISTEN)
    }
}

/// The default of both caps.
pub const DEFAULT_CAP_BYTES: usize = 64 * 1024;

/// The most either cap may be: a command carrying a state or config at the
/// cap must fit the largest command a node proposes or forwards
/// ([`crate::raft::MAX_COMMAND_BYTES`], 8 MiB) in its current encoding
/// (JSON, up to four bytes per byte), and replicate within seconds on a
/// loaded machine.
pub const MAX_CAP_BYTES: usize = 512 * 1024;

impl LimitsConfig {
    pub fn is_default(&self) -> bool {
        self == &LimitsConfig::default()
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_state_bytes: DEFAULT_CAP_BYTES,
            max_config_bytes: DEFAULT_CAP_BYTES,
        }
    }
}

/// Switches for Baton's own fault-injection tests: some break its
/// guarantees on purpose, so that its chaos tests can show they catch the
/// breakage; others make a rare path happen on demand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    /// UNSAFE: ticks start without a lease (no self-fencing) and the state
    /// machine takes tick commits from any node at any epoch and tick (no
    /// fencing token). Every node of a cluster must agree on it. Tasks then
    /// run twice after a partition or a pause; the chaos suite's "teeth"
    /// test sets it to show that the history checker notices.
    #[serde(default)]
    pub unsafe_disable_fencing: bool,
    /// Stuck workers, on purpose: while this file exists, this node's
    /// workers neither hand off nor tick a task that is being handed off to
    /// another node, so the leader must force each hand-off once its
    /// patience runs out (`supervision::forced_handoff_patience`). It breaks
    /// no guarantee (a forced hand-off waits out any tick the owner may have
    /// started); the chaos suite creates the file on one node for one fault
    /// to show that, from outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_hand_offs_file: Option<PathBuf>,
    /// Act as an older release in the cluster version's rules: report no
    /// cluster version above this one, so the cluster's version is held
    /// there, and refuse a data dir or a log above it, as that release
    /// would. The version tests set it on one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cluster_version: Option<u32>,
}

impl TestingConfig {
    pub fn is_default(&self) -> bool {
        self == &TestingConfig::default()
    }
}

/// Which keys may sign task modules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulesConfig {
    /// ed25519 public keys (64 hex digits, the `.pub` of `batonctl keys
    /// new`). A module is deployed only if one of them signed it; with none,
    /// no module can be deployed.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

/// The keys of task secrets (`batonctl tasks add --secret`; docs/secrets.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Files of 32-byte AES keys, each 64 hex digits (`openssl rand -hex
    /// 32`), readable by their owner alone. The first seals the secrets
    /// this node takes; every one opens the secrets sealed with it. Every
    /// node that may run a task with secrets needs the keys they are sealed
    /// with; rotating one is `docs/secrets.md`'s four steps.
    #[serde(default)]
    pub key_files: Vec<PathBuf>,
}

impl SecretsConfig {
    pub fn is_default(&self) -> bool {
        self.key_files.is_empty()
    }
}

/// PEM files for mutual TLS, as written by `batonctl certs init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This node's certificate, signed by the cluster CA.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// The cluster a node forms or joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A name for the cluster; part of its id.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    /// The voters a new cluster starts with. Every node of the cluster,
    /// including workers added later, carries the same list: with the name it
    /// makes the cluster id, and nodes with different lists refuse each other.
    pub initial_members: Vec<InitialMember>,
}

/// One of the voters a new cluster starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialMember {
    pub id: NodeId,
    /// The member's advertised address, `HOST:PORT`.
    pub addr: String,
}

/// Timers, in milliseconds.
///
/// The defaults suit a LAN. Followers refuse to vote while their leader's
/// lease (`election_timeout_max_ms` since its last heartbeat) runs, so after
/// a leader crash the first pre-vote, at a random election timeout, is
/// refused and the second one wins: failover takes about two election
/// timeouts, ~450 ms median with these defaults (see BENCHMARKS.md). Raise
/// all three together on slower networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingConfig {
    /// How often the leader sends heartbeats to followers.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in
    /// [election_timeout_min_ms, election_timeout_max_ms) starts an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How often every node renews its task lease with the leader.
    pub lease_renew_ms: u64,
    /// How long a renewal holds, from the time the node sent it. A node that
    /// cannot renew stops ticking before its lease ends; the leader moves the
    /// tasks of a node whose lease has ended (at once when the node's process
    /// is provably gone). Must cover several renewals and an election.
    pub lease_ms: u64,
    /// How long a graceful shutdown may take before the node exits anyway.
    pub shutdown_grace_ms: u64,
    /// Build a snapshot (and compact the log) about every this many applied
    /// entries: each node at indexes of its own, so that the nodes do not
    /// build at once (see `crate::raft::snapshot_schedule`). A node's first
    /// snapshot comes after half to one and a half times this many.
    pub snapshot_after_entries: u64,
}

impl Default for TimingConfig {
    fn default() -> Self {
        TimingConfig {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 250,
            lease_renew_ms: 100,
            lease_ms: 1_000,
            shutdown_grace_ms: 10_000,
            snapshot_after_entries: 20_000,
        }
    }
}

/// What a failover adds beyond timers: the leader's scan, the reassignment's
/// commit, and the new owner's start.
pub const FAILOVER_OVERHEAD_MS: u64 = 100;

fn default_cluster_name() -> String {
    "baton".to_string()
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} has {} problem(s):\n{}", problems.len(), format_problems(problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

/// One invalid key and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, dotted (`timing.heartbeat_interval_ms`).
    pub key: String,
    pub message: String,
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {}: {}", p.key, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

impl NodeConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = NodeConfig::parse(&text, base).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Parses TOML and resolves relative paths against `base`; no validation.
    pub fn parse(text: &str, base: &Path) -> Result<NodeConfig, String> {
        let mut config: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.data_dir);
        if let Some(tls) = &mut config.tls {
            resolve(&mut tls.ca);
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        if let Some(dir) = config.heart.as_mut().and_then(|h| h.state_dir.as_mut()) {
            resolve(dir);
        }
        if let Some(file) = config.metrics.as_mut().and_then(|m| m.admin_token_file.as_mut()) {
            resolve(file);
        }
        config.secrets.key_files.iter_mut().for_each(resolve);
        Ok(config)
    }

    /// Every problem with this config; empty when it is valid.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_string(),
                message,
            })
        };

        if self.id == 0 {
            problem(
                "id",
                "node ids start at 1; set a positive integer unique in the cluster".into(),
            );
        }
        let listen = self.listen_addr.parse::<SocketAddr>();
        if listen.is_err() {
            problem(
                "listen_addr",
                format!(
                    "{:?} is not an IP:PORT address; write it like \"127.0.0.1:7001\"",
                    self.listen_addr
                ),
            );
        }
        match &self.advertise_addr {
            Some(addr) => {
                if let Err(why) = check_host_port(addr) {
                    problem("advertise_addr", why);
                }
            }
            None => {
                if listen.is_ok_and(|a| a.ip().is_unspecified()) {
                    problem(
                        "advertise_addr",
                        format!(
                            "listen_addr {} listens on every interface, so peers cannot dial it; \
                             set advertise_addr to this node's reachable HOST:PORT",
                            self.listen_addr
                        ),
                    );
                }
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            problem("data_dir", "must name a directory for this node's Raft data".into());
        }
        match (&self.tls, self.insecure) {
            (Some(_), true) => problem(
                "insecure",
                "insecure = true turns TLS off, but a [tls] section is set too; remove one of them".into(),
            ),
            (None, false) => problem(
                "tls",
                "missing: set [tls] ca, cert and key (make them with `batonctl certs init --dir DIR`), \
                 or set insecure = true for an experiment without TLS"
                    .into(),
            ),
            (Some(tls), false) => {
                for (key, path) in [("tls.ca", &tls.ca), ("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                    if !path.is_file() {
                        problem(
                            key,
                            format!(
                                "file {} does not exist; make it with `batonctl certs init --dir DIR` \
                                 or fix the path",
                                path.display()
                            ),
                        );
                    }
                }
            }
            (None, true) => {}
        }
        if let Some(heart) = &self.heart {
            for (key, message) in heart.problems(&self.listen_addr) {
                problem(&key, message);
            }
        }
        self.validate_cluster(&mut problem);
        self.validate_timing(&mut problem);
        self.validate_limits(&mut problem);
        self.validate_metrics(&mut problem);
        let supported = crate::state::cluster_version::VersionRange::SUPPORTED;
        if let Some(cap) = self.testing.max_cluster_version
            && !supported.contains(cap)
        {
            problem(
                "testing.max_cluster_version",
                format!("({cap}) must be within what this release supports: {supported}"),
            );
        }
        for (i, key) in self.modules.trusted_keys.iter().enumerate() {
            if let Err(e) = crate::modules::signing::parse_public_key(key) {
                problem(
                    &format!("modules.trusted_keys[{i}]"),
                    format!("{e}; use the .pub file that `batonctl keys new` writes"),
                );
            }
        }
        if let Err(why) = crate::secrets::Keyring::load(&self.secrets.key_files) {
            problem("secrets.key_files", why);
        }
        problems
    }

    fn validate_cluster(&self, problem: &mut impl FnMut(&str, String)) {
        if self.cluster.name.is_empty() || !self.cluster.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            problem(
                "cluster.name",
                format!("{:?} must be non-empty letters, digits and '-'", self.cluster.name),
            );
        }
        let members = &self.cluster.initial_members;
        if members.is_empty() {
            problem(
                "cluster.initial_members",
                "is empty; list the voters the cluster starts with, e.g. [{ id = 1, addr = \"10.0.0.1:7001\" }]".into(),
            );
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for member in members {
            if member.id == 0 {
                problem("cluster.initial_members", "node ids start at 1; found id 0".into());
            }
            if !ids.insert(member.id) {
                problem(
                    "cluster.initial_members",
                    format!("duplicate node id {}; every member needs its own id", member.id),
                );
            }
            if let Err(why) = check_host_port(&member.addr) {
                problem("cluster.initial_members", format!("member {}: {why}", member.id));
            } else if !addrs.insert(member.addr.as_str()) {
                problem(
                    "cluster.initial_members",
                    format!("duplicate address {}; every member needs its own address", member.addr),
                );
            }
            if member.id == self.id && member.addr != self.advertised() {
                problem(
                    "cluster.initial_members",
                    format!(
                        "this node (id {}) is listed at {}, but it advertises {}; make them the same",
                        self.id,
                        member.addr,
                        self.advertised()
                    ),
                );
            }
        }
    }

    /// The metrics listener this node runs, and whether its config chose it
    /// (`[metrics]`): a chosen address that cannot be bound stops the node,
    /// the default one only turns the listener off (so that a config written
    /// for 0.5.0, two nodes on one machine say, still starts).
    pub fn metrics(&self) -> (MetricsConfig, bool) {
        match &self.metrics {
            Some(metrics) => (metrics.clone(), true),
            None => (MetricsConfig::default(), false),
        }
    }

    fn validate_metrics(&self, problem: &mut impl FnMut(&str, String)) {
        let Some(table) = self.metrics.as_ref().filter(|m| m.enabled) else {
            return;
        };
        let Ok(metrics) = table.listen.parse::<SocketAddr>() else {
            problem(
                "metrics.listen",
                format!(
                    "{:?} is not an IP:PORT address; write it like \"{DEFAULT_METRICS_LISTEN}\", or set \
                     metrics.enabled = false",
                    table.listen
                ),
            );
            return;
        };
        if let Some(file) = table.admin_token_file.as_ref().filter(|_| table.status_page)
            && let Err(why) = crate::web::AdminToken::load(file)
        {
            problem("metrics.admin_token_file", why);
        }
        if table.tls && (self.insecure || self.tls.is_none()) {
            problem(
                "metrics.tls",
                "serves the node's own certificate, and this node has no [tls] section (insecure = true): \
                 configure [tls], or set metrics.tls = false"
                    .into(),
            );
        }
        let heart = self
            .heart
            .as_ref()
            .map(|h| ("heart.listen_addr", h.listen_addr.as_str()));
        for (key, other) in [("listen_addr", self.listen_addr.as_str())].into_iter().chain(heart) {
            if other
                .parse::<SocketAddr>()
                .is_ok_and(|other| same_socket(metrics, other))
            {
                problem(
                    "metrics.listen",
                    format!("{metrics} is {key}'s address too; give the metrics listener a port of its own"),
                );
            }
        }
    }

    fn validate_limits(&self, problem: &mut impl FnMut(&str, String)) {
        let caps = [
            ("limits.max_state_bytes", self.limits.max_state_bytes),
            ("limits.max_config_bytes", self.limits.max_config_bytes),
        ];
        for (key, value) in caps {
            if value == 0 || value > MAX_CAP_BYTES {
                problem(
                    key,
                    format!(
                        "({value}) must be from 1 to {MAX_CAP_BYTES} bytes, so that every commit fits the \
                         messages between nodes (the default is {DEFAULT_CAP_BYTES})"
                    ),
                );
            }
        }
    }

    fn validate_timing(&self, problem: &mut impl FnMut(&str, String)) {
        let t = &self.timing;
        if t.heartbeat_interval_ms == 0 {
            problem("timing.heartbeat_interval_ms", "must be at least 1".into());
        }
        if t.election_timeout_min_ms <= t.heartbeat_interval_ms {
            problem(
                "timing.election_timeout_min_ms",
                format!(
                    "({}) must be greater than timing.heartbeat_interval_ms ({}), or followers start \
                     elections between heartbeats; use at least 3x the heartbeat",
                    t.election_timeout_min_ms, t.heartbeat_interval_ms
                ),
            );
        }
        if t.election_timeout_max_ms <= t.election_timeout_min_ms {
            problem(
                "timing.election_timeout_max_ms",
                format!(
                    "({}) must be greater than timing.election_timeout_min_ms ({}): the gap is the \
                     randomness that avoids split votes",
                    t.election_timeout_max_ms, t.election_timeout_min_ms
                ),
            );
        }
        if t.lease_renew_ms == 0 {
            problem("timing.lease_renew_ms", "must be at least 1".into());
        }
        if t.lease_ms < 3 * t.lease_renew_ms {
            problem(
                "timing.lease_ms",
                format!(
                    "({}) must cover at least 3 renewals (timing.lease_renew_ms = {}), or one late \
                     renewal costs a node its tasks; raise lease_ms or lower lease_renew_ms",
                    t.lease_ms, t.lease_renew_ms
                ),
            );
        }
        if t.lease_ms < 2 * t.election_timeout_max_ms {
            problem(
                "timing.lease_ms",
                format!(
                    "({}) must cover an election (2 x timing.election_timeout_max_ms = {}), or nodes lose \
                     their leases while the cluster elects a leader; raise lease_ms",
                    t.lease_ms,
                    2 * t.election_timeout_max_ms
                ),
            );
        }
        if t.shutdown_grace_ms == 0 {
            problem("timing.shutdown_grace_ms", "must be at least 1".into());
        }
        if t.snapshot_after_entries == 0 {
            problem("timing.snapshot_after_entries", "must be at least 1".into());
        }
    }

    /// The address peers and clients dial.
    pub fn advertised(&self) -> &str {
        self.advertise_addr.as_deref().unwrap_or(&self.listen_addr)
    }

    /// The cluster id: the name and a fingerprint of the initial members.
    pub fn cluster_id(&self) -> String {
        let mut members: Vec<_> = self.cluster.initial_members.iter().collect();
        members.sort_by_key(|m| m.id);
        let mut hash = Sha256::new();
        for m in members {
            hash.update(format!("{}={};", m.id, m.addr));
        }
        format!("{}-{}", self.cluster.name, hex::encode(&hash.finalize()[..6]))
    }

    /// Whether this node is one of the initial voters.
    pub fn is_initial_member(&self) -> bool {
        self.cluster.initial_members.iter().any(|m| m.id == self.id)
    }

    /// The longest a running task of a lost node waits before it runs again
    /// elsewhere: a new leader may first need an election (the old leader's
    /// Raft lease, then a vote), then waits one lease before it declares
    /// anyone dead, then reassigns (one scan and one commit).
    pub fn failover_bound_ms(&self) -> u64 {
        let t = &self.timing;
        2 * t.election_timeout_max_ms + t.lease_ms + t.lease_renew_ms + FAILOVER_OVERHEAD_MS
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.timing.shutdown_grace_ms)
    }
}

/// Checks a `HOST:PORT` address (host may be a name or an IP).
pub fn check_host_port(addr: &str) -> Result<(), String> {
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        if socket.ip().is_unspecified() {
            return Err(format!("{addr:?} is not dialable; use an address peers can reach"));
        }
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!(
            "{addr:?} has no port; write HOST:PORT, like \"node1.internal:7001\""
        ));
    };
    let host_ok = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !host.starts_with('-');
    if !host_ok {
        return Err(format!("{addr:?}: {host:?} is not a host name or IP address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{addr:?}: port {port:?} must be a number from 1 to 65535")),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

/// Whether two listeners would contend for one socket: the same port, on
/// the same address or where either binds every address.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
