//! A real Prometheus server (Debian's `prometheus` package, which
//! `scripts/test.sh` installs when it is missing) scraping a test cluster's
//! nodes, queried through its HTTP API as an operator's dashboards and
//! alerts would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use batonctl::local_cluster::free_ports;

use crate::http::{encode_query, get};

/// A Prometheus process; dropping it kills it.
pub struct Prometheus {
    child: Child,
    /// `127.0.0.1:PORT` of its web API.
    pub addr: String,
}

/// One series of a query's answer: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub value: f64,
}

/// Where Debian puts the binary, or `prometheus` on the PATH.
pub fn find_prometheus() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/prometheus");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|path| path.is_file())
    })
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping `targets` (`HOST:PORT` of each
    /// node's metrics listener) every `interval`.
    pub fn start(dir: &Path, targets: &[String], interval: Duration) -> Result<Prometheus, String> {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let jobs = format!(
            "  - job_name: baton\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        Self::start_with_jobs(dir, &jobs, interval)
    }

    /// Starts Prometheus in `dir`, scraping over HTTPS each of `targets`
    /// (`HOST:PORT` and the name its certificate gives, `node-<id>.baton`)
    /// every `interval`, with `ca` as the only root.
    pub fn start_tls(
        dir: &Path,
        targets: &[(String, String)],
        ca: &Path,
        interval: Duration,
    ) -> Result<Prometheus, String> {
        let jobs: String = targets
            .iter()
            .map(|(addr, name)| {
                format!(
                    "  - job_name: '{name}'\n    scheme: https\n    tls_config:\n      ca_file: '{}'\n      \
                     server_name: '{name}'\n    static_configs:\n      - targets: ['{addr}']\n",
                    ca.display()
                )
            })
            .collect();
        Self::start_with_jobs(dir, &jobs, interval)
    }

    fn start_with_jobs(dir: &Path, jobs: &str, interval: Duration) -> Result<Prometheus, String> {
        let binary = find_prometheus().ok_or(
            "no prometheus binary: install Debian's `prometheus` package (scripts/test.sh does) or put one on the PATH",
        )?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = format!(
            "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n  evaluation_interval: {ms}ms\n\
             scrape_configs:\n{jobs}",
            ms = interval.as_millis()
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let port = free_ports(1).map_err(|e| e.to_string())?[0];
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("prometheus.log")).map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting prometheus: {e}"))?;
        Ok(Prometheus { child, addr })
    }

    /// The answer to the instant query `expr` (an error while Prometheus is
    /// not up yet, or the query is refused).
    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}", encode_query(expr));
        let answer = get(&self.addr, &path, Duration::from_secs(5)).await?;
        let json: serde_json::Value =
            serde_json::from_str(&answer.body).map_err(|e| format!("{expr}: not JSON ({e}): {}", answer.body))?;
        if json["status"] != "success" {
            return Err(format!("{expr}: {}", answer.body));
        }
        let results = json["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("{expr}: no result in {}", answer.body))?;
        results
            .iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("{expr}: no value in {r}"))?;
                let labels = r["metric"].as_object().cloned().unwrap_or_default();
                Ok(Sample { labels, value })
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `/metrics` from every one of `targets` every `every`, as a
/// Prometheus would, until the handle is aborted (for the benchmarks of
/// what scraping costs). Counts the scrapes that answered 200.
pub fn spawn_scraper(
    targets: Vec<String>,
    every: Duration,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let scraped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = scraped.clone();
    let handle = tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        loop {
            interval.tick().await;
            for target in &targets {
                if let Ok(answer) = get(target, "/metrics", every).await
                    && answer.status == 200
                {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    (handle, scraped)
}
