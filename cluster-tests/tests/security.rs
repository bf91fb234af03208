//! Mutual TLS and bad input: who is refused, and that a node keeps serving
//! after garbage and oversized requests.

use std::io::Write;
use std::time::{Duration, Instant};

use baton_cluster_tests::TestCluster;
use baton_node::raft::PeerChannels;
use baton_node::tls::TlsMaterial;
use baton_proto::peer_client::PeerClient;
use baton_proto::raft_client::RaftClient;
use baton_proto::{NodeInfoRequest, PutRequest, RaftRequest};
use batonctl::ClusterClient;
use batonctl::client::{ClientError, Unreachable};
use batonctl::pki::{self, NodeSpec};
use tonic::Code;

/// Certificates from a CA that is not the cluster's.
fn foreign_pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    pki::init(dir.path(), &[NodeSpec::local(1)]).unwrap();
    dir
}

fn node_tls(certs: &std::path::Path, ca: &std::path::Path, id: u64) -> TlsMaterial {
    let (cert, key) = pki::node_cert_paths(certs, id);
    TlsMaterial::load_files(ca, &cert, &key).unwrap()
}

async fn node_info(channels: &PeerChannels, id: u64, addr: &str) -> Result<u64, tonic::Status> {
    let channel = channels.channel(id, addr).unwrap();
    let request = channels.request(NodeInfoRequest {}, Some(Duration::from_secs(2)));
    Ok(PeerClient::new(channel).node_info(request).await?.into_inner().node_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_decide_who_may_call_what() {
    let cluster = TestCluster::start(3).await;
    let status = cluster.status().await.unwrap();
    let certs = cluster.path().join("certs");
    let ca = pki::ca_cert_path(&certs);
    let (id, addr) = (1, cluster.local.nodes[&1].addr.clone());

    // A member node with the cluster's CA and id may make peer calls.
    let member = PeerChannels::new(2, status.cluster_id.clone(), Some(node_tls(&certs, &ca, 2)));
    assert_eq!(node_info(&member, id, &addr).await.unwrap(), 1);

    // A node presenting a certificate from another CA is refused at the handshake.
    let foreign = foreign_pki();
    let outsider_tls = node_tls(foreign.path(), &ca, 1);
    let outsider = PeerChannels::new(2, status.cluster_id.clone(), Some(outsider_tls));
    assert!(
        node_info(&outsider, id, &addr).await.is_err(),
        "a foreign CA's certificate was accepted"
    );

    // A node of this CA that claims another cluster is refused.
    let other_cluster = PeerChannels::new(2, "other-000000000000".into(), Some(node_tls(&certs, &ca, 2)));
    let err = node_info(&other_cluster, id, &addr).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("cluster id mismatch"), "{err:?}");

    // A node certificate cannot make control calls; the admin's can.
    let (cert, key) = pki::node_cert_paths(&certs, 2);
    let node_as_admin = ClusterClient::new(
        vec![addr.clone()],
        Some(TlsMaterial::load_files(&ca, &cert, &key).unwrap()),
        Duration::from_secs(3),
    )
    .unwrap();
    let err = batonctl::cmd::status::fetch(&node_as_admin).await.unwrap_err();
    assert!(err.to_string().contains("admin certificate"), "{err}");

    // The admin client of another CA is refused too.
    let (fcert, fkey) = pki::admin_cert_paths(foreign.path());
    let foreign_admin = ClusterClient::new(
        vec![addr.clone()],
        Some(TlsMaterial::load_files(&ca, &fcert, &fkey).unwrap()),
        Duration::from_secs(2),
    )
    .unwrap();
    let started = Instant::now();
    let err = batonctl::cmd::status::fetch(&foreign_admin).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Unreachable { causes, .. }
            if matches!(causes[..], [(_, Unreachable::CertificateRefused(_))])),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    eprintln!("an admin of another CA: {err}");

    // A client that trusts another CA refuses the node's certificate.
    let (acert, akey) = pki::admin_cert_paths(&certs);
    let wrong_ca = ClusterClient::new(
        vec![addr.clone()],
        Some(TlsMaterial::load_files(&pki::ca_cert_path(foreign.path()), &acert, &akey).unwrap()),
        Duration::from_secs(2),
    )
    .unwrap();
    let err = batonctl::cmd::status::fetch(&wrong_ca).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Unreachable { causes, .. }
            if matches!(causes[..], [(_, Unreachable::NodeCertificate(_))])),
        "{err:?}"
    );
    eprintln!("a client of another CA: {err}");

    // Plain TCP gets nowhere, and is told to drop --insecure.
    let plain = ClusterClient::new(vec![addr], None, Duration::from_secs(2)).unwrap();
    let err = batonctl::cmd::status::fetch(&plain).await.unwrap_err();
    eprintln!("a plain client: {err}");
    assert!(err.to_string().contains("--insecure"), "{err:?}");

    assert!(cluster.status().await.unwrap().leader.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_requests_get_errors_and_the_node_keeps_serving() {
    let cluster = TestCluster::start(3).await;
    let status = cluster.status().await.unwrap();
    let certs = cluster.path().join("certs");
    let ca = pki::ca_cert_path(&certs);
    let addr = cluster.local.nodes[&1].addr.clone();

    // Raw garbage on the TCP port.
    for _ in 0..3 {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let _ = stream.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef]);
        let _ = stream.write_all(&vec![0x42; 64 * 1024]);
    }

    // A Raft call whose payload is not an openraft message, addressed to
    // node 1's storage (unaddressed, it is refused before it is read).
    let member = PeerChannels::new(2, status.cluster_id.clone(), Some(node_tls(&certs, &ca, 2)));
    let storage = PeerClient::new(member.channel(1, &addr).unwrap())
        .node_info(member.request(NodeInfoRequest {}, None))
        .await
        .unwrap()
        .into_inner()
        .storage_id;
    let mut raft = RaftClient::new(member.channel(1, &addr).unwrap());
    let garbage = |addressed: bool| {
        let mut request = member.request(
            RaftRequest {
                payload: b"{not json".to_vec(),
                ..Default::default()
            },
            None,
        );
        if addressed {
            request
                .metadata_mut()
                .insert(baton_proto::TARGET_STORAGE_HEADER, storage.parse().unwrap());
        }
        request
    };
    let err = raft.append_entries(garbage(true)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = raft.append_entries(garbage(false)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("names no storage"), "{err:?}");

    // A control request over the size limit, and a value over the value limit.
    let client = cluster.client_for(&[addr]);
    let huge = PutRequest {
        key: "huge".into(),
        value: vec![7; baton_node::api::CONTROL_MAX_MESSAGE_BYTES + 1024 * 1024],
    };
    let err = client
        .call_with(&huge, |mut c, r| async move { c.put(r).await })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("too large") || err.to_string().contains("message length"),
        "{err}"
    );
    let big = PutRequest {
        key: "big".into(),
        value: vec![7; 70 * 1024],
    };
    let err = client
        .call_with(&big, |mut c, r| async move { c.put(r).await })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
    let empty_key = PutRequest {
        key: String::new(),
        value: vec![],
    };
    let err = client
        .call_with(&empty_key, |mut c, r| async move { c.put(r).await })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("keys must be"), "{err}");

    // Nothing was written, and every node still serves.
    let all = cluster.client();
    assert_eq!(cluster.get(&all, "huge").await.unwrap(), None);
    assert_eq!(cluster.get(&all, "big").await.unwrap(), None);
    cluster.put(&all, "after", "ok").await.unwrap();
    for id in 1..=3 {
        // Each node answers from its own state (status itself is the leader's).
        assert_eq!(cluster.get_local(id, "huge").await.unwrap(), None);
        batonctl::cmd::status::fetch(&cluster.node_client(id)).await.unwrap();
    }
}
