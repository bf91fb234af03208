//! Baton nodes in Docker containers, for the chaos tests.
//!
//! The engine here has no registry, so nothing is pulled: the image is made
//! from scratch with `docker import` of a tar holding the static
//! `baton-heart` and `baton-node` (built by `scripts/build-static-node.sh`),
//! tagged by their sha256 and made again only when one changes. The heart
//! is each container's first process, as systemd's unit is on a machine: it
//! starts the node beside it, starts it again when it exits, and keeps node
//! binaries for upgrades in a directory of its own. A cluster
//! gets a private network with fixed addresses, a host directory per node
//! (config, data) and shared certificates, all labelled with the run's id;
//! dropping the cluster removes its containers and network, and a failing
//! test prints every node's log first. While it runs, the test holds
//! `/tmp/baton-chaos-<run>.lock`, so `scripts/chaos-clean.sh` can tell a
//! live run from one whose test process was killed.
//!
//! Faults: `docker kill`, `stop` and `pause`; network partitions and packet
//! loss with iptables in a node's network namespace (entered with
//! `nsenter`, since the image has no tools), in a chain of their own that
//! healing flushes; delay by `baton-netdelay` holding each queued packet
//! (NFQUEUE), since this kernel has no netem; and a full disk, on a node
//! whose data directory is a small tmpfs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use baton_node::config::{ClusterConfig, InitialMember, ModulesConfig, NodeConfig, TestingConfig, TimingConfig};
use baton_node::heart::HeartConfig;
use baton_node::modules::signing;
use baton_node::tls::TlsMaterial;
use batonctl::ClusterClient;
use batonctl::pki::{self, NodeSpec};

/// The label every container and network of a test run carries.
pub const LABEL: &str = "baton.test";

/// The port every node listens on inside its container.
const PORT: u16 = 7000;

/// The iptables chain the faults add their rules to.
const CHAIN: &str = "BATON-CHAOS";

/// The size of a small-disk node's data directory.
const SMALL_DISK: &str = "256m";

/// The port every node's heart listens on inside its container.
const HEART_PORT: u16 = 7001;

/// Where a node's heart keeps its binaries inside the container: a volume
/// of its own, not the node's data disk (which a fault may fill or wipe).
const HEART_DIR: &str = "/var/lib/baton-heart";

/// A static binary of this workspace, where scripts/test.sh (which builds
/// every binary for the static target) and scripts/build-static-node.sh
/// put it.
pub fn static_binary(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/x86_64-unknown-linux-gnu/debug")
        .join(name)
}

/// The static node binary.
pub fn static_node_binary() -> PathBuf {
    static_binary("baton-node")
}

/// Runs `docker ARGS`, returning its stdout; panics with its stderr.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

/// Runs `docker ARGS`: its stdout, or its stderr as the error.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker ({e}); the chaos tests need the Docker engine"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// The node image for the static binaries, made if the engine lacks it:
/// `baton-node:<first 16 hex digits of the sha256 of both binaries>`.
pub fn node_image() -> String {
    let binaries = ["baton-heart", "baton-node"];
    let mut hashes = String::new();
    for name in binaries {
        let path = static_binary(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the static binaries with scripts/build-static-node.sh (scripts/test.sh does)",
                path.display()
            )
        });
        hashes.push_str(&baton_node::runtime::content_hash(&bytes));
    }
    let tag = format!(
        "baton-node:{}",
        &baton_node::runtime::content_hash(hashes.as_bytes())[..16]
    );
    if try_docker(&["image", "inspect", "--format", "{{.Id}}", &tag]).is_ok() {
        return tag;
    }
    let root = tempfile::tempdir().unwrap();
    for name in binaries {
        std::fs::copy(static_binary(name), root.path().join(name)).unwrap();
    }
    std::fs::create_dir(root.path().join("tmp")).unwrap();
    let tar = Command::new("tar")
        .args(["-C"])
        .arg(root.path())
        .args(["-c", "baton-heart", "baton-node", "tmp"])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "tar: {}", String::from_utf8_lossy(&tar.stderr));
    let mut import = Command::new("docker")
        .args([
            "import",
            "--change",
            r#"ENTRYPOINT ["/baton-heart"]"#,
            "--change",
            &format!("LABEL {LABEL}.image=baton-node"),
            "-",
            &tag,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker import");
    import.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let out = import.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Images of older binaries are of no more use (one still in use by a
    // running test stays: removing it fails).
    let filter = format!("label={LABEL}.image=baton-node");
    let current = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    let images = try_docker(&["images", "-q", "--no-trunc", "--filter", &filter]).unwrap_or_default();
    for image in images.split_whitespace().filter(|i| *i != current) {
        let _ = try_docker(&["rmi", image]);
    }
    tag
}

/// One node container.
#[derive(Debug, Clone)]
pub struct ContainerNode {
    pub id: u64,
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    /// Whether its data directory is a small tmpfs (for the full disk).
    pub small_disk: bool,
}

/// How a container cluster is laid out.
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    pub timing: TimingConfig,
    /// The node whose data directory is a small tmpfs that a test can fill.
    pub small_disk: Option<u64>,
    /// `[testing] unsafe_disable_fencing` on every node: the suite's test
    /// of its own teeth.
    pub unsafe_disable_fencing: bool,
}

/// Where a node container looks for the file whose presence stalls its
/// hand-offs (`[testing] stall_hand_offs_file`), in its data directory.
const STALL_FILE: &str = "stall-hand-offs";

impl ContainerNode {
    pub fn addr(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    /// Where its heart is reached.
    pub fn heart_addr(&self) -> String {
        format!("{}:{HEART_PORT}", self.ip)
    }
}

/// A cluster of node containers on a private network.
pub struct ContainerCluster {
    pub run: String,
    pub network: String,
    /// The host's address on the network (its gateway): where a test's own
    /// services (the witness) listen for the containers.
    pub gateway: String,
    pub nodes: BTreeMap<u64, ContainerNode>,
    pub image: String,
    dir: tempfile::TempDir,
    /// Held while the run lives (see `scripts/chaos-clean.sh`).
    lock: PathBuf,
    _held: std::fs::File,
    /// `baton-netdelay` processes, one per node while a delay lasts.
    delayers: std::sync::Mutex<Vec<std::process::Child>>,
}

impl ContainerCluster {
    /// Lays out and starts `n` nodes, each in its container with its own
    /// data directory and a fixed address.
    pub fn start(n: u64, options: ContainerOptions) -> ContainerCluster {
        let image = node_image();
        let run = format!("{:08x}", rand::random::<u32>());
        let lock = PathBuf::from(format!("/tmp/baton-chaos-{run}.lock"));
        let held = std::fs::File::create(&lock).unwrap();
        held.lock().expect("lock the run's lock file");
        let network = format!("baton-{run}");
        let subnet = create_network(&network, &run);
        let dir = tempfile::Builder::new()
            .prefix(&format!("baton-chaos-{run}-"))
            .tempdir()
            .unwrap();
        let nodes: BTreeMap<u64, ContainerNode> = (1..=n)
            .map(|id| {
                let node = ContainerNode {
                    id,
                    name: format!("baton-{run}-{id}"),
                    ip: format!("{subnet}.{}", 10 + id),
                    dir: dir.path().join(id.to_string()),
                    small_disk: options.small_disk == Some(id),
                };
                (id, node)
            })
            .collect();
        let specs: Vec<NodeSpec> = nodes
            .values()
            .map(|n| NodeSpec {
                id: n.id,
                hosts: vec![n.ip.clone(), n.name.clone()],
            })
            .collect();
        pki::init(&dir.path().join("certs"), &specs).unwrap();
        let key = signing::generate();
        let trusted = signing::write_key_pair(&dir.path().join("signing.key"), &key).unwrap();
        let initial: Vec<InitialMember> = nodes
            .values()
            .map(|n| InitialMember {
                id: n.id,
                addr: n.addr(),
            })
            .collect();
        let cluster = ContainerCluster {
            run,
            gateway: format!("{subnet}.1"),
            network,
            nodes,
            image,
            dir,
            lock,
            _held: held,
            delayers: Default::default(),
        };
        for node in cluster.nodes.values() {
            let data = node.dir.join("data");
            std::fs::create_dir_all(&data).unwrap();
            std::fs::create_dir_all(node.dir.join("heart")).unwrap();
            if node.small_disk {
                let size = format!("size={SMALL_DISK}");
                run_host("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &data.to_string_lossy()]);
            }
            let certs = Path::new("/etc/baton/certs");
            let config = NodeConfig {
                id: node.id,
                listen_addr: format!("0.0.0.0:{PORT}"),
                advertise_addr: Some(node.addr()),
                data_dir: PathBuf::from("/var/lib/baton"),
                insecure: false,
                tls: Some(pki::node_tls_paths(certs, node.id)),
                cluster: ClusterConfig {
                    name: "chaos".into(),
                    initial_members: initial.clone(),
                },
                timing: options.timing.clone(),
                modules: ModulesConfig {
                    trusted_keys: vec![trusted.clone()],
                },
                heart: Some(HeartConfig {
                    listen_addr: format!("0.0.0.0:{HEART_PORT}"),
                    advertise_addr: Some(node.heart_addr()),
                    state_dir: Some(PathBuf::from(HEART_DIR)),
                    trusted_keys: vec![trusted.clone()],
                }),
                limits: Default::default(),
                metrics: Default::default(),
                testing: TestingConfig {
                    unsafe_disable_fencing: options.unsafe_disable_fencing,
                    stall_hand_offs_file: Some(Path::new("/var/lib/baton").join(STALL_FILE)),
                    max_cluster_version: None,
                },
                secrets: Default::default(),
            };
            std::fs::write(node.dir.join("node.toml"), toml::to_string(&config).unwrap()).unwrap();
            cluster.run_container(node);
        }
        cluster
    }

    fn run_container(&self, node: &ContainerNode) {
        let mount = |host: &Path, inside: &str, mode: &str| format!("{}:{inside}:{mode}", host.display());
        docker(&[
            "run",
            "-d",
            "--name",
            &node.name,
            "--hostname",
            &node.name,
            "--label",
            &format!("{LABEL}={}", self.run),
            "--network",
            &self.network,
            "--ip",
            &node.ip,
            "--env",
            "BATON_LOG=info",
            "-v",
            &mount(&self.dir.path().join("certs"), "/etc/baton/certs", "ro"),
            "-v",
            &mount(&node.dir.join("node.toml"), "/etc/baton/node.toml", "ro"),
            "-v",
            &mount(&node.dir.join("data"), "/var/lib/baton", "rw"),
            "-v",
            &mount(&node.dir.join("heart"), HEART_DIR, "rw"),
            &self.image,
            "--config",
            "/etc/baton/node.toml",
        ]);
    }

    /// Where the cluster's files are kept on the host.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A client for every node, with the admin certificate.
    pub fn client(&self) -> ClusterClient {
        self.client_without(0)
    }

    /// A client for every node but `skip` (a lost node's address would
    /// stall each call until its attempt times out).
    pub fn client_without(&self, skip: u64) -> ClusterClient {
        self.client_excluding(&[skip])
    }

    /// A client for every node not in `skip`.
    pub fn client_excluding(&self, skip: &[u64]) -> ClusterClient {
        let certs = self.dir.path().join("certs");
        let (cert, key) = pki::admin_cert_paths(&certs);
        let tls = TlsMaterial::load_files(&pki::ca_cert_path(&certs), &cert, &key).unwrap();
        let endpoints = self
            .nodes
            .values()
            .filter(|n| !skip.contains(&n.id))
            .map(|n| n.addr())
            .collect();
        ClusterClient::new(endpoints, Some(tls), Duration::from_secs(10)).unwrap()
    }

    /// The module signing key every node trusts.
    pub fn signing_key(&self) -> signing::SigningKey {
        signing::read_private_key(&self.dir.path().join("signing.key")).unwrap()
    }

    fn name(&self, id: u64) -> &str {
        &self.nodes[&id].name
    }

    /// `docker kill`: SIGKILL, the machine lost at once.
    pub fn kill(&self, id: u64) {
        docker(&["kill", self.name(id)]);
    }

    /// `docker start`: the node again, on the same data and address.
    pub fn start_again(&self, id: u64) {
        docker(&["start", self.name(id)]);
    }

    /// `docker stop`: SIGTERM, then SIGKILL after `grace_secs`.
    pub fn stop(&self, id: u64, grace_secs: u64) {
        docker(&["stop", "-t", &grace_secs.to_string(), self.name(id)]);
    }

    /// `docker pause` / `unpause`: the cgroup freezer.
    pub fn pause(&self, id: u64) {
        docker(&["pause", self.name(id)]);
    }

    pub fn unpause(&self, id: u64) {
        docker(&["unpause", self.name(id)]);
    }

    /// Whether node `id`'s container is running (not exited, maybe paused).
    pub fn is_running(&self, id: u64) -> bool {
        docker(&["inspect", "--format", "{{.State.Running}}", self.name(id)]) == "true"
    }

    /// The pid of node `id`'s process, as the host sees it.
    fn pid(&self, id: u64) -> String {
        docker(&["inspect", "--format", "{{.State.Pid}}", self.name(id)])
    }

    /// Runs a shell script in node `id`'s network namespace (the host's
    /// iptables, the container's tables).
    fn in_netns(&self, id: u64, script: &str) -> Result<(), String> {
        let pid = self.pid(id);
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-n", "sh", "-ec", script])
            .output()
            .map_err(|e| format!("cannot run nsenter ({e}); the network faults need util-linux and iptables"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        }
    }

    /// Adds `rules` to node `id`'s fault chain in one step (the chain is
    /// made, and hooked into INPUT and OUTPUT, on first use in this
    /// container's life).
    fn add_rules(&self, id: u64, rules: &[String]) {
        let mut script = format!(
            "if ! iptables -w -n -L {CHAIN} >/dev/null 2>&1; then\n  iptables -w -N {CHAIN}\n  \
             iptables -w -I INPUT -j {CHAIN}\n  iptables -w -I OUTPUT -j {CHAIN}\nfi\n"
        );
        for rule in rules {
            script.push_str(&format!("iptables -w -A {CHAIN} {rule}\n"));
        }
        self.in_netns(id, &script)
            .unwrap_or_else(|e| panic!("iptables on node {id}: {e}\n{script}"));
    }

    /// Cuts the network between every node of `side` and every other node,
    /// both ways: each node of `side` drops what comes from, and what goes
    /// to, the others. The test's own traffic (from the host) still flows.
    pub fn partition(&self, side: &[u64]) {
        for &id in side {
            let rules: Vec<String> = self
                .nodes
                .values()
                .filter(|n| !side.contains(&n.id))
                .flat_map(|other| [format!("-s {} -j DROP", other.ip), format!("-d {} -j DROP", other.ip)])
                .collect();
            self.add_rules(id, &rules);
        }
    }

    /// Cuts every node of `side` off from the others with a firewall's
    /// REJECT rules: each answers every TCP segment from the others with a
    /// reset, as a rejecting host firewall or network policy would. No
    /// connection between the sides can be made or kept (a reply to what
    /// the node sends is rejected too), and to the nodes on the other side
    /// each looks like a port where nothing listens, as if its process were
    /// gone, while it runs on.
    pub fn partition_rejecting(&self, side: &[u64]) {
        for &id in side {
            let rules: Vec<String> = self
                .nodes
                .values()
                .filter(|n| !side.contains(&n.id))
                .map(|other| format!("-p tcp -s {} -j REJECT --reject-with tcp-reset", other.ip))
                .collect();
            self.add_rules(id, &rules);
        }
    }

    /// Every node but `id`.
    fn peers(&self, id: u64) -> impl Iterator<Item = &ContainerNode> {
        self.nodes.values().filter(move |n| n.id != id)
    }

    /// One-way loss: node `id` hears nothing from the other nodes, while
    /// what it sends still reaches them.
    pub fn drop_inbound(&self, id: u64) {
        let rules: Vec<String> = self.peers(id).map(|other| format!("-s {} -j DROP", other.ip)).collect();
        self.add_rules(id, &rules);
    }

    /// Every node drops each packet to or from another node with
    /// probability `p` (the iptables statistic match: this kernel has no
    /// netem).
    pub fn lose_packets(&self, p: f64) {
        for node in self.nodes.values() {
            let rules: Vec<String> = self
                .peers(node.id)
                .flat_map(|other| {
                    ["-s", "-d"].map(|dir| {
                        format!(
                            "{dir} {} -m statistic --mode random --probability {p} -j DROP",
                            other.ip
                        )
                    })
                })
                .collect();
            self.add_rules(node.id, &rules);
        }
    }

    /// Every packet from a node to another waits `ms` before it leaves:
    /// `baton-netdelay` in each node's network namespace holds what an
    /// NFQUEUE rule sends it (`--queue-bypass`: should it die, packets flow).
    pub fn delay(&self, ms: u64) {
        let delayer = batonctl::local_cluster::find_binary("baton-netdelay")
            .expect("baton-netdelay is built beside the tests (scripts/test.sh builds it)");
        for node in self.nodes.values() {
            let child = Command::new("nsenter")
                .args(["-t", &self.pid(node.id), "-n"])
                .arg(&delayer)
                .args(["--delay-ms", &ms.to_string()])
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start baton-netdelay for node {}: {e}", node.id));
            self.delayers.lock().unwrap().push(child);
            let rules: Vec<String> = self
                .peers(node.id)
                .map(|other| format!("-d {} -j NFQUEUE --queue-num 0 --queue-bypass", other.ip))
                .collect();
            self.add_rules(node.id, &rules);
        }
    }

    /// Removes every network fault from every running node.
    pub fn heal(&self) {
        for node in self.nodes.values() {
            if self.is_running(node.id) {
                let _ = self.in_netns(node.id, &format!("iptables -w -F {CHAIN} 2>/dev/null || true"));
            }
        }
        self.stop_delayers();
    }

    fn stop_delayers(&self) {
        for mut child in self.delayers.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Fills node `id`'s small data disk to the last byte.
    pub fn fill_disk(&self, id: u64) {
        let node = &self.nodes[&id];
        assert!(node.small_disk, "node {id} has no small disk to fill");
        let mut file = std::fs::File::create(node.dir.join("data/filler")).unwrap();
        let block = vec![0u8; 1 << 20];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling node {id}'s disk: {e}"),
            }
        }
        let _ = file.sync_all();
    }

    /// Deletes everything in node `id`'s data_dir (a lost disk replaced by
    /// an empty one); the node must be stopped.
    pub fn wipe_data(&self, id: u64) {
        let data = self.nodes[&id].dir.join("data");
        for entry in std::fs::read_dir(&data).unwrap() {
            let path = entry.unwrap().path();
            match path.is_dir() {
                true => std::fs::remove_dir_all(&path).unwrap(),
                false => std::fs::remove_file(&path).unwrap(),
            }
        }
    }

    /// Frees what `fill_disk` took.
    pub fn free_disk(&self, id: u64) {
        std::fs::remove_file(self.nodes[&id].dir.join("data/filler")).unwrap();
    }

    /// The exit code of a stopped container.
    /// Stalls node `id`'s hand-offs (its workers neither hand off nor tick
    /// a task being handed off), or lets them go again.
    pub fn stall_hand_offs(&self, id: u64, stall: bool) {
        let file = self.nodes[&id].dir.join("data").join(STALL_FILE);
        match stall {
            true => std::fs::write(&file, b"").unwrap(),
            false => std::fs::remove_file(&file).unwrap(),
        }
    }

    pub fn exit_code(&self, id: u64) -> i64 {
        docker(&["inspect", "--format", "{{.State.ExitCode}}", self.name(id)])
            .parse()
            .unwrap()
    }

    /// Every node's recent log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in self.nodes.values() {
            let log = self.log_tail(node.id, "80");
            out.push_str(&format!("==== node {} ({}) ====\n{log}\n", node.id, node.name));
        }
        out
    }

    /// Node `id`'s whole log.
    pub fn log(&self, id: u64) -> String {
        self.log_tail(id, "all")
    }

    fn log_tail(&self, id: u64, lines: &str) -> String {
        // The node logs to stderr; docker logs replays both streams.
        Command::new("docker")
            .args(["logs", "--tail", lines, self.name(id)])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_else(|e| format!("docker logs: {e}"))
    }
}

impl Drop for ContainerCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.stop_delayers();
        remove_run(&self.run);
        for node in self.nodes.values().filter(|n| n.small_disk) {
            let _ = Command::new("umount").arg(node.dir.join("data")).status();
        }
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Runs a host command; panics with its stderr.
fn run_host(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes every container and network labelled with run `run`.
pub fn remove_run(run: &str) {
    let filter = format!("label={LABEL}={run}");
    let containers = try_docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
    for id in containers.split_whitespace() {
        let _ = try_docker(&["rm", "-f", "-v", id]);
    }
    let networks = try_docker(&["network", "ls", "-q", "--filter", &filter]).unwrap_or_default();
    for id in networks.split_whitespace() {
        let _ = try_docker(&["network", "rm", id]);
    }
}

/// Creates network `name` on a free 172.31.X.0/24; returns "172.31.X".
fn create_network(name: &str, run: &str) -> String {
    let start = rand::random::<u8>() as u16;
    for i in 0..256u16 {
        let x = (start + i) % 256;
        let prefix = format!("172.31.{x}");
        let created = try_docker(&[
            "network",
            "create",
            "--label",
            &format!("{LABEL}={run}"),
            "--subnet",
            &format!("{prefix}.0/24"),
            name,
        ]);
        match created {
            Ok(_) => return prefix,
            Err(e) if e.contains("overlap") => continue,
            Err(e) => panic!("docker network create: {e}"),
        }
    }
    panic!("no free 172.31.X.0/24 subnet for the test network");
}
