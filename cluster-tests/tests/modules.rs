//! Deploying task modules: signed by a trusted key and checked before
//! anything is recorded, recorded through Raft, and fetched by every node.

use std::time::Duration;

use baton_cluster_tests::{TestCluster, example_module, poll_async};
use baton_node::modules::signing;
use baton_proto::{DeployModuleReply, DeployModuleRequest, ListModulesRequest};
use batonctl::cmd::modules::signed_deploy;
use batonctl::{ClientError, ClusterClient};

async fn send(client: &ClusterClient, request: DeployModuleRequest) -> Result<DeployModuleReply, ClientError> {
    client
        .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
        .await
}

/// Deploys `component` as `name`, signed with the cluster's key.
async fn deploy(
    cluster: &TestCluster,
    client: &ClusterClient,
    name: &str,
    component: Vec<u8>,
) -> Result<DeployModuleReply, ClientError> {
    let key = cluster.local.signing_key().unwrap();
    send(client, signed_deploy(name.into(), component, &key)).await
}

async fn module_names(client: &ClusterClient) -> Vec<String> {
    let reply = client
        .call(|mut c| async move { c.list_modules(ListModulesRequest {}).await })
        .await
        .unwrap();
    reply.modules.into_iter().map(|m| m.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_module_is_recorded_once_and_reaches_every_node() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let counter = example_module("counter");
    let reply = deploy(&cluster, &client, "counter", counter.clone()).await.unwrap();
    let module = reply.module.unwrap();
    assert_eq!(
        (module.name.as_str(), module.version, module.size),
        ("counter", 1, counter.len() as u64)
    );
    assert_eq!(module.hash, baton_node::runtime::content_hash(&counter));
    // The record carries who signed it, and the signature checks out.
    let key = cluster.local.signing_key().unwrap().verifying_key();
    assert_eq!(module.signer, signing::public_key_text(&key));
    signing::verify(&[key], "counter", &module.hash, &module.signer, &module.signature).unwrap();

    // The same bytes again change nothing; other bytes under the name are
    // version 2, rolled out; a third version waits for that rollout.
    let again = deploy(&cluster, &client, "counter", counter.clone()).await.unwrap();
    assert!(!again.rollout_started);
    let again = again.module.unwrap();
    assert_eq!((again.version, again.hash.as_str()), (1, module.hash.as_str()));
    // `faulty` makes HTTP requests: a module importing wasi:http waits for
    // the cluster version that grants them, which a new cluster climbs to.
    let highest = baton_node::state::cluster_version::VersionRange::SUPPORTED.max;
    baton_cluster_tests::upgrades::await_cluster_version(&client, highest).await;
    let next = deploy(&cluster, &client, "counter", example_module("faulty"))
        .await
        .unwrap();
    assert!(next.rollout_started);
    assert_eq!(next.module.unwrap().version, 2);
    let err = deploy(&cluster, &client, "counter", example_module("greeter"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rollout abort counter"), "{err}");

    // Every node lists it and holds its bytes.
    for id in 1..=3 {
        let node = cluster.node_client(id);
        let path = cluster
            .path()
            .join(id.to_string())
            .join("data/modules")
            .join(format!("{}.wasm", module.hash));
        poll_async(Duration::from_secs(20), "every node to hold the module", || async {
            let listed = module_names(&node).await == ["counter"];
            (listed && std::fs::read(&path).ok()? == counter).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_that_are_not_task_components_are_refused_and_nothing_is_recorded() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("script", b"#!/bin/sh\necho hi\n".to_vec(), "not WebAssembly"),
        (
            "core",
            wat::parse_str("(module (func (export \"tick\")))").unwrap(),
            "core WebAssembly module",
        ),
        (
            "empty",
            wat::parse_str("(component)").unwrap(),
            "does not implement the baton:task world",
        ),
        ("Bad Name", example_module("counter"), "must be 1 to 64 characters"),
        // Over the control messages' cap, itself over the largest module.
        (
            "huge",
            vec![0; baton_node::api::CONTROL_MAX_MESSAGE_BYTES + 1024 * 1024],
            "the limit is",
        ),
    ];
    for (name, bytes, expected) in cases {
        let err = deploy(&cluster, &client, name, bytes).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{name}: expected {expected:?} in {err}");
    }
    assert!(module_names(&client).await.is_empty());
    let status = cluster.status().await.unwrap();
    assert!(status.members.iter().all(|m| m.state == "up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_untrusted_and_tampered_modules_are_refused_and_change_nothing() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let counter = example_module("counter");
    let unsigned = DeployModuleRequest {
        name: "counter".into(),
        component: counter.clone(),
        signer: String::new(),
        signature: String::new(),
        rollout: None,
    };
    let stranger = signing::generate();
    let untrusted = signed_deploy("counter".into(), counter.clone(), &stranger);
    // Signed by the trusted key, but for other bytes (and for another name).
    let key = cluster.local.signing_key().unwrap();
    let tampered = DeployModuleRequest {
        component: counter.clone(),
        ..signed_deploy("counter".into(), example_module("faulty"), &key)
    };
    let renamed = DeployModuleRequest {
        name: "counter2".into(),
        ..signed_deploy("counter".into(), counter.clone(), &key)
    };
    let cases = [
        (unsigned, "is not signed"),
        (untrusted, "does not trust"),
        (tampered, "does not match"),
        (renamed, "does not match"),
    ];
    for (request, expected) in cases {
        let err = send(&client, request).await.unwrap_err().to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
    assert!(
        module_names(&client).await.is_empty(),
        "a refused deploy recorded something"
    );
    for id in 1..=3 {
        let stored = cluster.path().join(id.to_string()).join("data/modules");
        let files = std::fs::read_dir(&stored).map(|d| d.count()).unwrap_or(0);
        assert_eq!(files, 0, "node {id} stored a refused module");
    }
    // The trusted key still works.
    deploy(&cluster, &client, "counter", counter).await.unwrap();
}
