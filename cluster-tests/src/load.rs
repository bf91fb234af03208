//! Write load for the benchmarks: clients putting values as fast as they
//! can for a while, with a latency histogram.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hdrhistogram::Histogram;

use batonctl::ClusterClient;

use crate::TestCluster;
use crate::cpu::{CpuMeter, CpuUsed};
use crate::etcd::EtcdCluster;

/// What one load phase did.
pub struct Phase {
    pub clients: usize,
    /// Bytes in each value written.
    pub value_bytes: usize,
    pub ops: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub errors: u64,
    /// The CPU the servers and the clients used during the phase, if
    /// whoever ran it measured that.
    pub cpu: Option<CpuUsed>,
}

impl Phase {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The phase's cells for a Markdown table whose columns are
    /// commits/s, p50, p99, max and errors.
    pub fn cells(&self) -> String {
        let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
        format!(
            "{:.0} | {} | {} | {} | {}",
            self.per_second(),
            ms(self.latency_us.value_at_quantile(0.5)),
            ms(self.latency_us.value_at_quantile(0.99)),
            ms(self.latency_us.max()),
            self.errors
        )
    }
}

/// One connection's put: a key and a value in, whether it committed out.
pub type Put = Arc<dyn Fn(String, Arc<String>) -> BoxFuture<'static, bool> + Send + Sync>;

/// `clients` clients (sharing up to 8 connections, as HTTP/2 multiplexes
/// calls) each put `value_bytes`-byte values into Baton for `seconds`,
/// cycling through `keys` keys of their own (named after `prefix`); a put
/// counts when its reply is back, that is once it is committed on a quorum
/// and applied.
pub async fn put_load(
    cluster: &Arc<TestCluster>,
    prefix: &str,
    clients: usize,
    value_bytes: usize,
    keys: u64,
    seconds: u64,
) -> Phase {
    let connections = leader_clients(cluster, clients)
        .await
        .into_iter()
        .map(|client| -> Put {
            let cluster = cluster.clone();
            Arc::new(move |key: String, value: Arc<String>| {
                let (cluster, client) = (cluster.clone(), client.clone());
                Box::pin(async move { cluster.put(&client, &key, &value).await.is_ok() })
            })
        })
        .collect();
    run_load(
        connections,
        &cluster.node_pids(),
        prefix,
        clients,
        value_bytes,
        keys,
        seconds,
    )
    .await
}

/// A client for each connection `clients` clients share (up to 8), each
/// at the leader: its warm-up put follows the redirect there.
async fn leader_clients(cluster: &TestCluster, clients: usize) -> Vec<Arc<ClusterClient>> {
    let mut connected = Vec::new();
    for _ in 0..clients.min(8) {
        let client = Arc::new(cluster.client());
        cluster.put(&client, "warm-up", "x").await.expect("warm-up write");
        connected.push(client);
    }
    connected
}

/// The ceiling of [`put_load`]'s calls: `clients` clients over the same
/// connections to the leader each read a key from the leader's own state
/// (`Get` with `local`: no Raft, no disk) as fast as the answers come. A
/// put pays this call and Raft's work on the same cores, so no put load
/// through this API goes faster.
pub async fn local_read_load(cluster: &Arc<TestCluster>, clients: usize, seconds: u64) -> Phase {
    let connections = leader_clients(cluster, clients)
        .await
        .into_iter()
        .map(|client| -> Put {
            let cluster = cluster.clone();
            Arc::new(move |key: String, _value: Arc<String>| {
                let (cluster, client) = (cluster.clone(), client.clone());
                Box::pin(async move { cluster.read_local_via(&client, &key).await.is_ok() })
            })
        })
        .collect();
    run_load(connections, &cluster.node_pids(), "", clients, 0, 1000, seconds).await
}

/// [`local_read_load`] against etcd: serializable reads from its leader.
pub async fn etcd_local_read_load(etcd: &EtcdCluster, clients: usize, seconds: u64) -> Phase {
    let mut connections: Vec<Put> = Vec::new();
    for _ in 0..clients.min(8) {
        let client = etcd.client().await.expect("a connection to etcd's leader");
        connections.push(Arc::new(move |key: String, _value: Arc<String>| {
            let client = client.clone();
            Box::pin(async move { client.read_local(key.into_bytes()).await.is_ok() })
        }));
    }
    run_load(connections, &etcd.pids(), "", clients, 0, 1000, seconds).await
}

/// The same load as [`put_load`], put into etcd: each connection goes to
/// the member that leads, as Baton's client goes to Baton's leader.
pub async fn etcd_put_load(etcd: &EtcdCluster, clients: usize, value_bytes: usize, keys: u64, seconds: u64) -> Phase {
    let mut connections: Vec<Put> = Vec::new();
    for _ in 0..clients.min(8) {
        let client = etcd.client().await.expect("a connection to etcd's leader");
        client
            .put(b"warm-up".to_vec(), b"x".to_vec())
            .await
            .expect("warm-up write");
        connections.push(Arc::new(move |key: String, value: Arc<String>| {
            let client = client.clone();
            Box::pin(async move { client.put(key.into_bytes(), value.as_bytes().to_vec()).await.is_ok() })
        }));
    }
    run_load(connections, &etcd.pids(), "", clients, value_bytes, keys, seconds).await
}

/// Runs `clients` clients over `connections` (client i uses connection
/// i mod their number) for `seconds`, each putting as fast as its replies
/// come back. The phase counts the CPU the processes `servers` and this
/// process used over the same time, if `/proc` has them.
pub async fn run_load(
    connections: Vec<Put>,
    servers: &[u32],
    prefix: &str,
    clients: usize,
    value_bytes: usize,
    keys: u64,
    seconds: u64,
) -> Phase {
    let value = Arc::new("v".repeat(value_bytes));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let meter = CpuMeter::start(servers).ok();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (put, value) = (connections[i % connections.len()].clone(), value.clone());
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).unwrap();
                let (mut ops, mut errors) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if put(format!("{prefix}c{i}-{}", ops % keys), value.clone()).await {
                        hist.record(t.elapsed().as_micros() as u64).unwrap();
                        ops += 1;
                    } else {
                        errors += 1;
                    }
                }
                (hist, ops, errors)
            })
        })
        .collect();
    let mut phase = Phase {
        clients,
        value_bytes,
        ops: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new(3).unwrap(),
        errors: 0,
        cpu: None,
    };
    for task in tasks {
        let (hist, ops, errors) = task.await.unwrap();
        phase.latency_us.add(hist).unwrap();
        phase.ops += ops;
        phase.errors += errors;
    }
    phase.elapsed = started.elapsed();
    phase.cpu = meter.and_then(|meter| meter.used().ok());
    phase
}
