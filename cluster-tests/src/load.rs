//! Write load for the benchmarks: clients putting values as fast as they
//! can for a while, with a latency histogram.

use std::sync::Arc;
use std::time::{Duration, Instant};

use batonctl::ClusterClient;
use hdrhistogram::Histogram;

use crate::TestCluster;

/// What one load phase did.
pub struct Phase {
    pub clients: usize,
    /// Bytes in each value written.
    pub value_bytes: usize,
    pub ops: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub errors: u64,
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

/// `clients` clients (sharing up to 8 connections, as HTTP/2 multiplexes
/// calls) each put `value_bytes`-byte values for `seconds`, cycling through
/// `keys` keys of their own (named after `prefix`); a put counts when its
/// reply is back, that is once it is committed on a quorum and applied.
pub async fn put_load(
    cluster: &Arc<TestCluster>,
    prefix: &str,
    clients: usize,
    value_bytes: usize,
    keys: u64,
    seconds: u64,
) -> Phase {
    let connections: Vec<Arc<ClusterClient>> = (0..clients.min(8)).map(|_| Arc::new(cluster.client())).collect();
    for c in &connections {
        cluster.put(c, "warm-up", "x").await.expect("warm-up write");
    }
    let value = Arc::new("v".repeat(value_bytes));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (cluster, client, value) = (
                cluster.clone(),
                connections[i % connections.len()].clone(),
                value.clone(),
            );
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).unwrap();
                let (mut ops, mut errors) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match cluster
                        .put(&client, &format!("{prefix}c{i}-{}", ops % keys), &value)
                        .await
                    {
                        Ok(_) => {
                            hist.record(t.elapsed().as_micros() as u64).unwrap();
                            ops += 1;
                        }
                        Err(_) => errors += 1,
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
    };
    for task in tasks {
        let (hist, ops, errors) = task.await.unwrap();
        phase.latency_us.add(hist).unwrap();
        phase.ops += ops;
        phase.errors += errors;
    }
    phase.elapsed = started.elapsed();
    phase
}
