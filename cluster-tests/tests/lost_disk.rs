//! A follower whose disk is lost (its data_dir deleted) and that is started
//! again with the same config: it stays out of Raft and says why, `status`
//! shows it as needing `batonctl nodes replace`, and after that command (run
//! as a user runs it, with the batonctl binary) it catches up and serves
//! every acknowledged write.

use std::process::Command;
use std::time::Duration;

use baton_cluster_tests::local_cluster::find_binary;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::api::member_probe::LOST_DATA;
use baton_proto::AddNodeRequest;
use batonctl::cmd::status::render;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_lost_its_disk_stays_out_until_replaced_then_serves_every_write() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let lost = (1..=3).find(|&id| id != leader).expect("a follower");
    let client = cluster.client();
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let key = format!("before-{i}");
        cluster.put(&client, &key, &key).await.expect("write before the loss");
        acknowledged.push(key);
    }

    cluster.kill9(lost);
    let data = cluster.local.nodes[&lost].dir.join("data");
    std::fs::remove_dir_all(&data).expect("delete the follower's data_dir");
    cluster.restart(lost);

    // It says so, and status shows what to run.
    let log_path = cluster.local.nodes[&lost].log_path();
    poll_async(
        Duration::from_secs(30),
        "the wiped node to say it has no data",
        || async {
            let log = std::fs::read_to_string(&log_path).ok()?;
            log.contains("has no data for cluster").then_some(())
        },
    )
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains(&format!("batonctl nodes replace {lost}")), "{log}");
    let view = cluster.wait_for_state(lost, LOST_DATA, Duration::from_secs(30)).await;
    assert!(
        render(&view).contains(&format!("run `batonctl nodes replace {lost}`")),
        "{}",
        render(&view)
    );

    // Writes go on without it; it holds none of them.
    for i in 0..50 {
        let key = format!("during-{i}");
        cluster
            .put(&client, &key, &key)
            .await
            .expect("write while the node is out");
        acknowledged.push(key);
    }
    assert_eq!(cluster.get_local(lost, "before-0").await.ok().flatten(), None);
    let member = view.members.iter().find(|m| m.id == lost).unwrap();
    assert_ne!(member.raft_state, "follower", "{member:?}");

    // The documented command.
    let (ca, cert, key) = cluster.local.admin_paths();
    let batonctl = find_binary("batonctl").expect("batonctl is built beside the tests");
    let out = Command::new(batonctl)
        .args(["nodes", "replace", &lost.to_string()])
        .env("BATON_ENDPOINTS", cluster.local.endpoints().join(","))
        .env("BATON_CA", ca)
        .env("BATON_CERT", cert)
        .env("BATON_KEY", key)
        .output()
        .expect("run batonctl");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("replaced node {lost}")), "{said}");

    // A voter again, up, and it serves every acknowledged write.
    poll_async(
        Duration::from_secs(30),
        "the replaced node to be an up voter",
        || async {
            let view = cluster.status().await.ok()?;
            view.members
                .iter()
                .any(|m| m.id == lost && m.role == "voter" && m.state == "up")
                .then_some(())
        },
    )
    .await;
    cluster
        .put(&client, "after", "after")
        .await
        .expect("write after the replace");
    acknowledged.push("after".into());
    poll_async(
        Duration::from_secs(30),
        "the replaced node to apply the last write",
        || async { cluster.get_local(lost, "after").await.ok()?.map(|_| ()) },
    )
    .await;
    for key in &acknowledged {
        let value = cluster.get_local(lost, key).await.expect("local read");
        assert_eq!(value.as_deref(), Some(key.as_bytes()), "{key} on node {lost}");
    }
    // Run again, it changes nothing.
    let replaced = client
        .call(|mut c| async move { c.replace_node(baton_proto::ReplaceNodeRequest { id: lost }).await })
        .await
        .expect("replace again");
    assert!(replaced.unchanged, "{replaced:?}");
}

/// The sole initial member of a cluster that grew by `nodes add` has no
/// other initial member to ask: it must learn that the cluster exists from
/// the calls of the members added since, and never form a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sole_initial_member_of_a_grown_cluster_never_forms_a_new_one_after_its_disk_is_lost() {
    let mut cluster = TestCluster::start(1).await;
    let client = cluster.client();
    for id in [2, 3] {
        let addr = cluster.local.add_node_layout(id).unwrap().addr.clone();
        cluster.local.start(id).unwrap();
        let request = AddNodeRequest {
            id,
            addr,
            worker: false,
        };
        // Retried while the previous addition's change is still settling.
        poll_async(Duration::from_secs(30), "the node to be added as a voter", || async {
            client
                .call_with(&request, |mut c, r| async move { c.add_node(r).await })
                .await
                .ok()
        })
        .await;
    }
    cluster.put(&client, "k", "acknowledged").await.expect("write");

    cluster.kill9(1);
    std::fs::remove_dir_all(cluster.local.nodes[&1].dir.join("data")).expect("delete node 1's data_dir");
    cluster.restart(1);

    let log_path = cluster.local.nodes[&1].log_path();
    poll_async(Duration::from_secs(30), "node 1 to say it has no data", || async {
        let log = std::fs::read_to_string(&log_path).ok()?;
        log.contains("has no data for cluster").then_some(())
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    // Formed once, at its first start (the log runs on across restarts).
    assert_eq!(
        log.matches("formed cluster from its initial members").count(),
        1,
        "{log}"
    );
    // The two it left elect a leader between them and keep the write.
    let client = cluster.client_for(&[2, 3].map(|id| cluster.local.nodes[&id].addr.clone()));
    let view = poll_async(
        Duration::from_secs(30),
        "nodes 2 and 3 to show node 1 lost-data",
        || async {
            let view = batonctl::cmd::status::fetch(&client).await.ok()?;
            view.members
                .iter()
                .any(|m| m.id == 1 && m.state == LOST_DATA)
                .then_some(view)
        },
    )
    .await;
    assert!(view.leader.is_some_and(|l| l != 1), "{view:?}");
    assert_eq!(
        cluster.get(&client, "k").await.unwrap().as_deref(),
        Some(b"acknowledged".as_slice())
    );
}
