//! etcd beside Baton, so that a benchmark can report Baton's figures as
//! ratios to etcd's, measured in the same run on the same machine (absolute
//! figures on these shared machines move by 2x from one machine to the
//! next).
//!
//! Three `etcd` members (Debian's `etcd-server`, 3.4) on loopback, each
//! with its own data dir, fsync on (etcd's default), and mutual TLS on both
//! the client and the peer ports with certificates from Baton's own `certs
//! init`, as a Baton cluster has. The client speaks etcd's gRPC `KV.Put`
//! with the two messages it needs, written here after etcd's `rpc.proto`
//! (`etcdserverpb`), so no etcd client library is needed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use baton_node::tls::TlsMaterial;
use batonctl::local_cluster::free_ports;
use batonctl::pki::{self, NodeSpec};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

/// etcd's `PutRequest` (etcdserverpb, rpc.proto), the fields a plain put uses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// etcd's `ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// etcd's `PutResponse`, without the previous value (not asked for).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// etcd's `RangeRequest`, the fields a read of one key uses. A
/// serializable read is answered from the member's own store, without
/// Raft: the same as Baton's `Get` with `local`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// etcd's `RangeResponse`, without the values (not read here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

/// etcd's `StatusRequest` (Maintenance): empty.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

/// etcd's `StatusResponse`, the fields that tell who leads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(uint64, tag = "4")]
    pub leader: u64,
}

/// A 3-member etcd cluster on loopback; dropping it kills the members.
pub struct EtcdCluster {
    members: Vec<Child>,
    /// `https://127.0.0.1:PORT` of each member's client port.
    pub client_urls: Vec<String>,
    certs: PathBuf,
}

/// Where Debian's `etcd-server` puts the binary, or `etcd` on the PATH.
pub fn find_etcd() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/etcd");
    if debian.is_file() {
        return Some(debian);
    }
    batonctl::local_cluster::find_binary("etcd")
}

impl EtcdCluster {
    /// The members' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(Child::id).collect()
    }

    /// Starts `n` members under `dir` (their data, certificates and logs)
    /// and waits until a put commits.
    pub async fn start(dir: &Path, n: u64) -> anyhow::Result<EtcdCluster> {
        let etcd =
            find_etcd().context("etcd is not installed: `apt-get install etcd-server` (scripts/bench.sh does)")?;
        let certs = dir.join("certs");
        let specs: Vec<NodeSpec> = (1..=n).map(NodeSpec::local).collect();
        pki::init(&certs, &specs).context("certificates for etcd")?;
        let ports = free_ports(2 * n as usize)?;
        let peer_url = |i: usize| format!("https://127.0.0.1:{}", ports[2 * i + 1]);
        let client_urls: Vec<String> = (0..n as usize)
            .map(|i| format!("https://127.0.0.1:{}", ports[2 * i]))
            .collect();
        let initial_cluster = (0..n as usize)
            .map(|i| format!("m{}={}", i + 1, peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let ca = pki::ca_cert_path(&certs);
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            client_urls: client_urls.clone(),
            certs: certs.clone(),
        };
        for (i, client_url) in client_urls.iter().enumerate() {
            let (cert, key) = pki::node_cert_paths(&certs, i as u64 + 1);
            let data = dir.join(format!("m{}", i + 1));
            std::fs::create_dir_all(&data)?;
            let log = std::fs::File::create(dir.join(format!("m{}.log", i + 1)))?;
            let child = Command::new(&etcd)
                .arg("--name")
                .arg(format!("m{}", i + 1))
                .arg("--data-dir")
                .arg(&data)
                .arg("--listen-client-urls")
                .arg(client_url)
                .arg("--advertise-client-urls")
                .arg(client_url)
                .arg("--listen-peer-urls")
                .arg(peer_url(i))
                .arg("--initial-advertise-peer-urls")
                .arg(peer_url(i))
                .arg("--initial-cluster")
                .arg(&initial_cluster)
                .arg("--initial-cluster-state")
                .arg("new")
                .arg("--initial-cluster-token")
                .arg("baton-bench")
                .args(["--client-cert-auth", "--peer-client-cert-auth"])
                .arg("--trusted-ca-file")
                .arg(&ca)
                .arg("--cert-file")
                .arg(&cert)
                .arg("--key-file")
                .arg(&key)
                .arg("--peer-trusted-ca-file")
                .arg(&ca)
                .arg("--peer-cert-file")
                .arg(&cert)
                .arg("--peer-key-file")
                .arg(&key)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("start {}", etcd.display()))?;
            cluster.members.push(child);
        }
        let started = std::time::Instant::now();
        loop {
            let attempt = async {
                cluster
                    .client()
                    .await?
                    .put(b"warm-up".to_vec(), b"x".to_vec())
                    .await
                    .map_err(anyhow::Error::from)
            };
            match attempt.await {
                Ok(()) => break,
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => bail!(
                    "etcd did not commit a put within 30 s ({e:#}); see {}/m*.log",
                    dir.display()
                ),
            }
        }
        Ok(cluster)
    }

    /// A new connection to the member that leads now, as Baton's client
    /// goes to its leader: a put sent to a follower would cost etcd a
    /// forward that Baton's figures do not include.
    pub async fn client(&self) -> anyhow::Result<EtcdClient> {
        let (cert, key) = pki::admin_cert_paths(&self.certs);
        let tls = TlsMaterial::load_files(&pki::ca_cert_path(&self.certs), &cert, &key)?;
        for url in &self.client_urls {
            let channel = Endpoint::from_shared(url.clone())?
                .tls_config(tls.client_config(Some("127.0.0.1")))?
                .timeout(Duration::from_secs(20))
                .connect()
                .await;
            let Ok(channel) = channel else { continue };
            let client = EtcdClient { channel };
            if let Ok(status) = client.status().await
                && status.header.is_some_and(|h| h.member_id == status.leader)
            {
                return Ok(client);
            }
        }
        bail!("no etcd member says it leads")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A connection to an etcd cluster that puts.
#[derive(Clone)]
pub struct EtcdClient {
    channel: Channel,
}

impl EtcdClient {
    async fn unary<Req, Resp>(&self, path: &'static str, request: Req) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec: ProstCodec<Req, Resp> = ProstCodec::default();
        let reply = grpc
            .unary(tonic::Request::new(request), PathAndQuery::from_static(path), codec)
            .await?;
        Ok(reply.into_inner())
    }

    /// `Maintenance.Status` of the member this connection reaches.
    pub async fn status(&self) -> Result<StatusResponse, tonic::Status> {
        self.unary("/etcdserverpb.Maintenance/Status", StatusRequest {}).await
    }

    /// `KV.Put`: answered once the put is committed on a quorum and applied.
    pub async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), tonic::Status> {
        self.unary::<_, PutResponse>("/etcdserverpb.KV/Put", PutRequest { key, value })
            .await
            .map(|_| ())
    }

    /// `KV.Range` of one key, serializable: answered by the member this
    /// connection reaches from its own store, with no Raft and no disk.
    pub async fn read_local(&self, key: Vec<u8>) -> Result<(), tonic::Status> {
        let request = RangeRequest {
            key,
            serializable: true,
        };
        self.unary::<_, RangeResponse>("/etcdserverpb.KV/Range", request)
            .await
            .map(|_| ())
    }
}
