//! Harness for Baton's multi-process tests and benchmarks: a cluster of real
//! `baton-node` processes on loopback, with a client, kill/restart, and the
//! nodes' logs printed when a test fails.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use baton_node::config::TimingConfig;
use baton_proto::{GetRequest, PutRequest};
use batonctl::cmd::status::{StatusView, fetch};
use batonctl::local_cluster::{LocalCluster, find_node_binary};
use batonctl::{ClientError, ClusterClient};
use nix::sys::signal::Signal;

pub use batonctl::local_cluster;

pub mod browser;
pub mod chaos;
pub mod chaos_report;
pub mod containers;
pub mod cpu;
pub mod downstream;
pub mod etcd;
pub mod history;
pub mod http;
pub mod late_ticks;
pub mod load;
pub mod outages;
pub mod prometheus;
pub mod task_api;
pub mod upgrades;
pub mod witness;
pub mod witness_check;

/// A cluster of real node processes in a temporary directory. Dropping it
/// kills the nodes; if the test is failing, it prints their logs first.
pub struct TestCluster {
    pub local: LocalCluster,
    dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// Lays out and starts `n` voters with default timing, and waits for a leader.
    pub async fn start(n: u64) -> TestCluster {
        Self::start_with(n, TimingConfig::default()).await
    }

    /// Lays out and starts `n` voters with `timing`, and waits for a leader.
    pub async fn start_with(n: u64, timing: TimingConfig) -> TestCluster {
        Self::create(n, timing).started(n).await
    }

    /// Lays out and starts `n` voters running `binary` (with the
    /// `baton-heart` beside it), and waits for a leader.
    pub async fn start_with_binary(n: u64, binary: PathBuf) -> TestCluster {
        Self::create_with_binary(n, TimingConfig::default(), binary)
            .started(n)
            .await
    }

    /// Starts the `n` voters laid out, and waits for a leader and every
    /// member up.
    pub async fn started(mut self, n: u64) -> TestCluster {
        for id in 1..=n {
            self.local.start(id).expect("start node");
        }
        self.wait_for_leader(Duration::from_secs(30)).await;
        self.wait_for_all_up(Duration::from_secs(30)).await;
        self
    }

    /// Polls until the leader reports every member up (renewing its lease).
    pub async fn wait_for_all_up(&self, timeout: Duration) -> StatusView {
        let client = self.client();
        poll_async(timeout, "every member up", || async {
            let view = fetch(&client).await.ok()?;
            view.members.iter().all(|m| m.state == "up").then_some(view)
        })
        .await
    }

    /// Polls until the leader reports node `id` in `state`.
    pub async fn wait_for_state(&self, id: u64, state: &str, timeout: Duration) -> StatusView {
        let client = self.client();
        poll_async(timeout, &format!("node {id} to be {state}"), || async {
            let view = fetch(&client).await.ok()?;
            view.members
                .iter()
                .any(|m| m.id == id && m.state == state)
                .then_some(view)
        })
        .await
    }

    /// Lays out and starts `n` voters whose configs also hold `extra` (TOML
    /// appended to each, such as a `[testing]` table), and waits for a leader.
    pub async fn start_with_config(n: u64, timing: TimingConfig, extra: &str) -> TestCluster {
        let mut cluster = Self::create(n, timing);
        cluster.append_config(extra);
        for id in 1..=n {
            cluster.local.start(id).expect("start node");
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        cluster.wait_for_all_up(Duration::from_secs(30)).await;
        cluster
    }

    /// Appends `extra` (TOML, such as a `[testing]` table) to the config of
    /// every node laid out so far.
    pub fn append_config(&self, extra: &str) {
        for node in self.local.nodes.values() {
            let path = node.config_path();
            let text = std::fs::read_to_string(&path).expect("read node config");
            std::fs::write(&path, format!("{text}\n{extra}\n")).expect("write node config");
        }
    }

    /// Lays out `n` voters without starting them.
    pub fn create(n: u64, timing: TimingConfig) -> TestCluster {
        let binary = find_node_binary().expect("baton-node is built beside the tests (scripts/test.sh builds it)");
        let dir = Self::temp_dir();
        let local = LocalCluster::create(dir.path(), n, timing, binary).expect("lay out cluster");
        TestCluster { local, dir: Some(dir) }
    }

    /// Lays out `n` voters that run `binary` (with the `baton-heart` beside
    /// it), without starting them: benchmarks and upgrade tests run an
    /// earlier build this way, so the configs are those an earlier release
    /// reads (no `[metrics]` table).
    pub fn create_with_binary(n: u64, timing: TimingConfig, binary: PathBuf) -> TestCluster {
        let dir = Self::temp_dir();
        let local = LocalCluster::create_for_earlier_release(dir.path(), n, timing, binary).expect("lay out cluster");
        TestCluster { local, dir: Some(dir) }
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("baton-test-")
            .tempdir()
            .expect("temp dir")
    }

    /// Lays out, starts and adds worker `id`, which catches up by the log or
    /// a snapshot; returns the time from `nodes add` until it has applied
    /// `marker`, a key written before the call.
    pub async fn join_worker(&mut self, client: &ClusterClient, id: u64, marker: &str) -> Duration {
        let addr = self.local.add_node_layout(id).expect("lay out the worker").addr.clone();
        self.local.start(id).expect("start the worker");
        let started = Instant::now();
        let request = baton_proto::AddNodeRequest { id, addr, worker: true };
        client
            .call_with(&request, |mut c, r| async move { c.add_node(r).await })
            .await
            .expect("add the worker");
        poll_async(Duration::from_secs(600), "the worker to catch up", || async {
            self.get_local(id, marker).await.ok()?.map(|_| ())
        })
        .await;
        started.elapsed()
    }

    pub fn path(&self) -> PathBuf {
        self.local.dir.clone()
    }

    /// A client for all the nodes.
    pub fn client(&self) -> ClusterClient {
        self.client_for(&self.local.endpoints())
    }

    /// A client that waits for a deploy as long as `batonctl modules
    /// deploy` does (the leader compiles the module before it answers).
    pub fn deploy_client(&self) -> ClusterClient {
        let tls = self.local.admin_tls().expect("admin certs");
        let timeout = Duration::from_secs(batonctl::cmd::modules::DEPLOY_TIMEOUT_SECS);
        ClusterClient::new(self.local.endpoints(), Some(tls), timeout).expect("client")
    }

    /// The `batonctl` built beside the tests, set to reach every node with
    /// the cluster's admin certificate (through its environment, which a
    /// caller may override), ready for its arguments.
    pub fn batonctl(&self) -> std::process::Command {
        let (ca, cert, key) = self.local.admin_paths();
        let binary = local_cluster::find_binary("batonctl").expect("batonctl is built beside the tests");
        let mut command = std::process::Command::new(binary);
        command
            .env("BATON_ENDPOINTS", self.local.endpoints().join(","))
            .env("BATON_CA", ca)
            .env("BATON_CERT", cert)
            .env("BATON_KEY", key)
            .env_remove("BATON_INSECURE");
        command
    }

    /// A client for some endpoints only.
    pub fn client_for(&self, endpoints: &[String]) -> ClusterClient {
        let tls = self.local.admin_tls().expect("admin certs");
        ClusterClient::new(endpoints.to_vec(), Some(tls), Duration::from_secs(20)).expect("client")
    }

    /// A client that talks to node `id` alone, and gives up quickly.
    pub fn node_client(&self, id: u64) -> ClusterClient {
        let tls = self.local.admin_tls().expect("admin certs");
        ClusterClient::new(
            vec![self.local.nodes[&id].addr.clone()],
            Some(tls),
            Duration::from_secs(2),
        )
        .expect("client")
    }

    pub async fn status(&self) -> Result<StatusView, ClientError> {
        fetch(&self.client()).await
    }

    /// Polls until the cluster reports a leader that is up and leading; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let client = self.client();
        poll_async(timeout, "a leader", || async {
            let view = fetch(&client).await.ok()?;
            let leader = view.leader?;
            // The leader itself must say so: a view from a follower can name
            // a leader that was just unseated.
            let settled = view
                .members
                .iter()
                .any(|m| m.id == leader && m.state == "up" && m.raft_state == "leader");
            settled.then_some(leader)
        })
        .await
    }

    /// Polls until a leader other than `old` is elected.
    pub async fn wait_for_new_leader(&self, old: u64, timeout: Duration) -> u64 {
        let client = self.client();
        poll_async(timeout, "a new leader", || async {
            let leader = fetch(&client).await.ok()?.leader?;
            (leader != old).then_some(leader)
        })
        .await
    }

    pub async fn put(&self, client: &ClusterClient, key: &str, value: &str) -> Result<u64, ClientError> {
        let request = PutRequest {
            key: key.to_string(),
            value: value.as_bytes().to_vec(),
        };
        let reply = client
            .call_with(&request, |mut c, r| async move { c.put(r).await })
            .await?;
        Ok(reply.log_index)
    }

    /// Reads `key` from node `id`'s own state machine.
    pub async fn get_local(&self, id: u64, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        self.read_local_via(&self.node_client(id), key).await
    }

    /// Reads `key` from the state machine of the node `client` reaches,
    /// without Raft (`Get` with `local`).
    pub async fn read_local_via(&self, client: &ClusterClient, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let request = GetRequest {
            key: key.to_string(),
            local: true,
        };
        let reply = client
            .call_with(&request, |mut c, r| async move { c.get(r).await })
            .await?;
        Ok(reply.found.then_some(reply.value))
    }

    /// Reads `key` linearizably through the leader.
    pub async fn get(&self, client: &ClusterClient, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let request = GetRequest {
            key: key.to_string(),
            local: false,
        };
        let reply = client
            .call_with(&request, |mut c, r| async move { c.get(r).await })
            .await?;
        Ok(reply.found.then_some(reply.value))
    }

    /// The process ids of the nodes running now, from the pid files their
    /// hearts write.
    pub fn node_pids(&self) -> Vec<u32> {
        self.local
            .nodes
            .values()
            .filter_map(|node| std::fs::read_to_string(node.pid_path()).ok()?.trim().parse().ok())
            .collect()
    }

    pub fn kill9(&mut self, id: u64) {
        self.local.signal(id, Signal::SIGKILL).expect("kill node");
    }

    /// Freezes node `id` (SIGSTOP): its process stays, its sockets stay open,
    /// and it answers nothing.
    pub fn freeze(&mut self, id: u64) {
        self.local.signal(id, Signal::SIGSTOP).expect("stop node");
    }

    /// Lets a frozen node run again (SIGCONT).
    pub fn thaw(&mut self, id: u64) {
        self.local.signal(id, Signal::SIGCONT).expect("continue node");
    }

    pub fn restart(&mut self, id: u64) {
        self.local.start(id).expect("restart node");
    }

    /// Every node's log, for a failing test.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in self.local.nodes.values() {
            let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            out.push_str(&format!("==== node {} ({}) ====\n", node.id, node.log_path().display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Keeps the directory after the test (for debugging).
    pub fn keep(&mut self) -> PathBuf {
        self.dir.take().map(|d| d.keep()).unwrap_or_else(|| self.path())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            eprintln!("cluster directory kept at {}", self.keep().display());
        } else if std::env::var_os("BATON_KEEP_TEST_DIRS").is_some() {
            eprintln!(
                "cluster directory kept at {} (BATON_KEEP_TEST_DIRS)",
                self.keep().display()
            );
        }
    }
}

/// The bytes of an example task module (scripts/build-tasks.sh builds them).
pub fn example_module(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tasks/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example modules with scripts/build-tasks.sh",
            path.display()
        )
    })
}

/// `component` with a custom section appended that brings it to `size`
/// bytes (at least), filled from `seed` so that every round has new bytes.
pub fn padded(component: &[u8], size: usize, seed: u64) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"baton-bench-padding";
    let fill = size.saturating_sub(component.len() + name.len() + 16).max(8);
    let mut payload = Vec::with_capacity(fill + name.len() + 4);
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 0..fill {
        // xorshift: incompressible filler.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload.push(x as u8);
    }
    let mut out = component.to_vec();
    out.push(0); // a custom section
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// The `q` quantile (0 to 1) of `values`, nearest rank; 0 when empty.
pub fn quantile(values: &[u64], q: f64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => 0,
        n => sorted[((n - 1) as f64 * q).round() as usize],
    }
}

/// The machine a benchmark ran on: cores and CPU model.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

/// Polls `check` every 50 ms until it returns `Some`, or panics at `timeout`.
pub async fn poll_async<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_every(Duration::from_millis(50), timeout, what, check).await
}

/// Polls `check` every `interval` until it returns `Some`, or panics at
/// `timeout`: for checks that cost the cluster much (listing 100,000 tasks).
pub async fn poll_every<T, F, Fut>(interval: Duration, timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(interval).await;
    }
}

/// The sizes a node's log gives in its lines that say `what` (as
/// `bytes=N`), such as "built a snapshot" and "installed a snapshot".
pub fn logged_bytes(log: &str, what: &str) -> Vec<usize> {
    logged_numbers(log, what, "bytes")
}

/// The numbers a node's log gives as `field=N` in its lines that say
/// `what`, in the order logged.
pub fn logged_numbers<T: std::str::FromStr>(log: &str, what: &str, field: &str) -> Vec<T> {
    let key = format!(" {field}=");
    log.lines()
        .filter(|line| line.contains(what))
        .filter_map(|line| line.split(&key).nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}
