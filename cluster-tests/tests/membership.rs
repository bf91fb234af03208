//! Adding and removing nodes while a client keeps writing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use baton_cluster_tests::local_cluster::free_ports;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_proto::{AddNodeRequest, RemoveNodeRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_as_voter_and_worker_and_leave_under_writes() {
    let mut cluster = TestCluster::start(3).await;
    let voter_addr = cluster.local.add_node_layout(4).unwrap().addr.clone();
    let worker_addr = cluster.local.add_node_layout(5).unwrap().addr.clone();
    cluster.local.start(4).unwrap();
    cluster.local.start(5).unwrap();

    // A writer that keeps committing while membership changes.
    let cluster = Arc::new(cluster);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cluster, stop) = (cluster.clone(), stop.clone());
        tokio::spawn(async move {
            let client = cluster.client();
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w-{i}");
                if cluster.put(&client, &key, "v").await.is_ok() {
                    acknowledged.push(key);
                }
                i += 1;
            }
            acknowledged
        })
    };

    let client = cluster.client();
    let add = |id, addr: String, worker| {
        let request = AddNodeRequest { id, addr, worker };
        let client = &client;
        async move {
            client
                .call_with(&request, |mut c, r| async move { c.add_node(r).await })
                .await
        }
    };
    add(4, voter_addr, false).await.unwrap();
    add(5, worker_addr, true).await.unwrap();
    let status = cluster.status().await.unwrap();
    let role = |id: u64| status.members.iter().find(|m| m.id == id).map(|m| m.role.clone());
    assert_eq!(role(4).as_deref(), Some("voter"), "{status:?}");
    assert_eq!(role(5).as_deref(), Some("worker"), "{status:?}");

    client
        .call(|mut c| async move { c.remove_node(RemoveNodeRequest { id: 2 }).await })
        .await
        .unwrap();
    let status = cluster.status().await.unwrap();
    assert!(status.members.iter().all(|m| m.id != 2), "{status:?}");
    assert_eq!(status.members.len(), 4);

    // The removed node's peer calls are refused now, certificate or not.
    let certs = cluster.path().join("certs");
    let (cert, key) = batonctl::pki::node_cert_paths(&certs, 2);
    let tls = baton_node::tls::TlsMaterial::load_files(&batonctl::pki::ca_cert_path(&certs), &cert, &key).unwrap();
    let as_node_2 = baton_node::raft::PeerChannels::new(2, status.cluster_id.clone(), Some(tls));
    let channel = as_node_2.channel(1, &cluster.local.nodes[&1].addr).unwrap();
    // Node 1 refuses once it has applied the change (the leader may be ahead).
    poll_async(Duration::from_secs(10), "node 1 to refuse the removed node", || async {
        let request = as_node_2.request(baton_proto::NodeInfoRequest {}, Some(Duration::from_secs(2)));
        let result = baton_proto::peer_client::PeerClient::new(channel.clone())
            .node_info(request)
            .await;
        result.err().filter(|e| e.code() == tonic::Code::PermissionDenied)
    })
    .await;

    // A node that is no longer a member cannot be removed again.
    let again = client
        .call(|mut c| async move { c.remove_node(RemoveNodeRequest { id: 2 }).await })
        .await;
    assert!(again.unwrap_err().to_string().contains("not a member"));

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged.len() > 10,
        "the writer made too little progress: {}",
        acknowledged.len()
    );
    for key in &acknowledged {
        assert_eq!(
            cluster.get(&client, key).await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "{key} lost"
        );
    }
    // The new voter and the worker hold every acknowledged write.
    for id in [4, 5] {
        poll_async(Duration::from_secs(20), "the new node to catch up", || async {
            for key in &acknowledged {
                cluster.get_local(id, key).await.ok()??;
            }
            Some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_membership_requests_are_refused_and_change_nothing() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let before = cluster.status().await.unwrap();
    let existing = before.members[0].addr.clone();
    for request in [
        AddNodeRequest {
            id: 0,
            addr: "127.0.0.1:1".into(),
            worker: false,
        },
        AddNodeRequest {
            id: 9,
            addr: "no-port".into(),
            worker: false,
        },
        AddNodeRequest {
            id: 9,
            addr: existing,
            worker: false,
        },
        // Nothing listens there: refused at once, not added as a dead member.
        AddNodeRequest {
            id: 9,
            addr: format!("127.0.0.1:{}", free_ports(1).unwrap()[0]),
            worker: true,
        },
    ] {
        let result = client
            .call_with(&request, |mut c, r| async move { c.add_node(r).await })
            .await;
        let err = result.expect_err(&format!("{request:?} was accepted")).to_string();
        if request.worker {
            assert!(err.contains("does not answer"), "{err}");
        }
    }
    let after = cluster.status().await.unwrap();
    let members = |v: &batonctl::cmd::status::StatusView| {
        v.members
            .iter()
            .map(|m| (m.id, m.addr.clone(), m.role.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        members(&after),
        members(&before),
        "a refused request must change nothing"
    );
}
