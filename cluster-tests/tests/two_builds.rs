//! Mixed versions with two real builds: a cluster of an earlier release is
//! upgraded to this one while counters and witnessed tasks tick.
//!
//! The earlier release is this tree built as one (`BATON_BUILD_RELEASE`,
//! `BATON_BUILD_MAX_CLUSTER_VERSION`; see `upgrades::build_earlier_release`):
//! it calls itself 0.5.0-earlier and supports cluster versions up to 6, so
//! it lacks the one feature gated at 7, held upgrades (`--hold-version` and
//! `upgrade finalize`). The test checks that:
//! - the earlier cluster refuses the gated features (and those gated
//!   later: `tasks run-now`, HTTP grants, modules importing `wasi:http`,
//!   modules over 16 MiB, secrets)
//!   with a clear error and records nothing;
//! - an upgrade to this build aborted after one node leaves both builds
//!   running and holds nothing, yet the cluster version stays at 6 while any
//!   node runs the earlier one;
//! - once every node runs this build, the version rises to its highest by itself, the
//!   gated feature is taken, and the earlier build can no longer come back;
//! - no task stopped or ran twice (the history checker and the witness).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use baton_cluster_tests::local_cluster::find_binary;
use baton_cluster_tests::task_api::{start_counters, start_witnessed};
use baton_cluster_tests::upgrades::{
    await_cluster_version, batonctl_upgrade, build_earlier_release, hash_of, marked_copy, no_task_stopped,
    upgrade_command,
};
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::{TestCluster, poll_every};
use baton_node::state::cluster_version::{NODE_UPGRADES, VersionRange};
use batonctl::cmd::status::fetch;

/// Asks for a tick of `name` now.
async fn run_now(client: &batonctl::ClusterClient, name: &str) -> Result<(), batonctl::client::ClientError> {
    let request = baton_proto::TaskRequest { name: name.into() };
    client
        .call_with(&request, |mut c, r| async move { c.run_task_now(r).await })
        .await
        .map(|_| ())
}

const EARLIER: &str = "0.5.0-earlier";
const COUNTERS: usize = 60;
const WITNESSED: usize = 10;
const PERIOD_MS: u64 = 250;

/// `batonctl upgrade BINARY` with a short gate, held or not.
fn upgrade_args(binary: &std::path::Path, hold: bool) -> Vec<String> {
    let mut args = vec![binary.display().to_string()];
    // The upload of a 60 MiB debug build may take a while on a loaded machine.
    args.extend(
        [
            "--min-healthy",
            "2s",
            "--healthy-deadline",
            "60s",
            "--timeout-secs",
            "120",
        ]
        .map(String::from),
    );
    if hold {
        args.push("--hold-version".into());
    }
    args
}

/// Deploys example module `file` as `name`, signed with `key`, and returns
/// the cluster's refusal.
async fn refused_deploy(
    client: &batonctl::ClusterClient,
    key: &baton_node::modules::signing::SigningKey,
    name: &str,
    file: &str,
) -> String {
    let request = batonctl::cmd::modules::signed_deploy(name.into(), baton_cluster_tests::example_module(file), key);
    client
        .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_build_is_upgraded_to_this_one_and_the_gated_feature_waits_for_the_version() {
    let earlier = build_earlier_release(EARLIER, NODE_UPGRADES);
    let witness = Witness::start("127.0.0.1:0", Duration::from_millis(50)).await.unwrap();
    let cluster = TestCluster::start_with_binary(3, earlier.clone()).await;
    let client = cluster.client();
    let mut names = start_counters(&cluster, &client, COUNTERS, PERIOD_MS).await;
    let witnessed = start_witnessed(&cluster, &client, &witness, WITNESSED, PERIOD_MS).await;
    names.extend(witnessed.iter().cloned());
    await_cluster_version(&client, NODE_UPGRADES).await;
    let status = fetch(&client).await.unwrap();
    for member in &status.members {
        assert_eq!(member.version, EARLIER, "node {}", member.id);
        assert_eq!(member.max_cluster_version, NODE_UPGRADES, "node {}", member.id);
    }

    // The earlier build refuses the feature gated at 7, and records nothing.
    let this = find_binary("baton-node").expect("this build's baton-node is built beside the tests");
    let (ok, _, stderr) = batonctl_upgrade(&cluster, &[&this.display().to_string(), "--hold-version"]);
    assert!(!ok, "--hold-version was taken at cluster version 6");
    assert!(
        stderr.contains("--hold-version needs cluster version 7 and the cluster runs at 6"),
        "{stderr}"
    );
    let (ok, _, stderr) = batonctl_upgrade(&cluster, &["finalize"]);
    assert!(!ok && stderr.contains("needs cluster version 7"), "{stderr}");
    let (ok, stdout, _) = batonctl_upgrade(&cluster, &["status"]);
    assert!(
        ok && stdout.contains("no upgrade yet"),
        "a refused upgrade was recorded: {stdout}"
    );
    // So is `tasks run-now`, gated at 8.
    let refused = run_now(&client, "c000").await.unwrap_err().to_string();
    assert!(
        refused.contains("`tasks run-now` needs cluster version 8 and the cluster runs at 6"),
        "{refused}"
    );
    // And HTTP, gated at 9: a task's grants, and a module importing
    // wasi:http, which the earlier nodes would run without its grants.
    let mut granted = baton_cluster_tests::task_api::every("granted", "counter", 1000, "");
    granted.allow_http = vec!["https://api.example.com".into()];
    let refused = client
        .call_with(&granted, |mut c, r| async move { c.add_task(r).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("`tasks add --allow-http` needs cluster version 9 and the cluster runs at 6"),
        "{refused}"
    );
    // And secrets, gated at 11: the earlier nodes would drop them.
    let mut secretive = baton_cluster_tests::task_api::every("secretive", "counter", 1000, "");
    secretive.secrets = [("API_TOKEN".to_string(), b"t0ken".to_vec())].into();
    let refused = client
        .call_with(&secretive, |mut c, r| async move { c.add_task(r).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("`tasks add --secret` needs cluster version 11 and the cluster runs at 6"),
        "{refused}"
    );
    assert!(!refused.contains("t0ken"), "{refused}");
    let key = cluster.local.signing_key().expect("the cluster's signing key");
    let refused = refused_deploy(&client, &key, "webwatch", "webwatch").await;
    assert!(
        refused.contains("a module that imports wasi:http needs cluster version 9"),
        "{refused}"
    );
    // A Python task's module (19 MB, over the 16 MiB that 0.8.0 loads).
    let refused = refused_deploy(&client, &key, "counter", "counter_py").await;
    assert!(
        refused.contains("a module over 16 MiB") && refused.contains("needs cluster version 10"),
        "{refused}"
    );

    // An upgrade to this build, aborted once one node runs it: no upgrade
    // holds the version then, yet it stays at 6 while the other nodes run
    // the earlier build, which cannot read 7.
    let log = cluster.path().join("first-upgrade.log");
    let mut upgrade = upgrade_command(&cluster, &upgrade_args(&this, false));
    let file = std::fs::File::create(&log).expect("the upgrade's log");
    upgrade.stdout(file.try_clone().expect("the log again")).stderr(file);
    let mut upgrade = upgrade.spawn().expect("batonctl runs");
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    // Done: made permanent (an abort puts back the node in progress).
    poll_every(
        Duration::from_millis(500),
        Duration::from_secs(180),
        "one node done",
        || {
            if let Some(exit) = upgrade.try_wait().expect("wait for batonctl") {
                panic!("batonctl upgrade ended ({exit}) before a node was done:\n{}", said());
            }
            let (_, stdout, _) = batonctl_upgrade(&cluster, &["status"]);
            std::future::ready(stdout.contains(": done").then_some(()))
        },
    )
    .await;
    let (ok, stdout, stderr) = batonctl_upgrade(&cluster, &["abort"]);
    assert!(ok, "{stdout}{stderr}");
    let exit = upgrade.wait().expect("batonctl ends");
    eprintln!("batonctl upgrade ({exit}):\n{}", said());
    // As a set: releases sort as text ("0.10.0" before "0.5.0-earlier").
    let mixed: BTreeSet<String> = [EARLIER.to_string(), baton_node::VERSION.to_string()].into();
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        let status = fetch(&client).await.unwrap();
        let releases: BTreeSet<String> = status.members.iter().map(|m| m.version.clone()).collect();
        assert_eq!(releases, mixed, "both builds run after the abort");
        assert_eq!(
            status.cluster_version, NODE_UPGRADES,
            "the version rose while nodes run the earlier build"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The upgrade again, to the end (this build under a new hash, so that
    // the node already on it is upgraded like the others).
    let next = marked_copy(&this, &cluster.path(), "second");
    let (ok, stdout, stderr) = batonctl_upgrade(&cluster, &upgrade_args(&next, false));
    assert!(
        ok && stdout.contains("done"),
        "the upgrade did not finish: {stdout}{stderr}"
    );

    // Every node runs this build; the version rises by itself.
    let hash = hash_of(&next);
    let status = fetch(&client).await.unwrap();
    for member in &status.members {
        assert_eq!(
            (member.version.as_str(), member.binary.as_str()),
            (baton_node::VERSION, hash.as_str())
        );
        assert_eq!(member.state, "up", "node {}", member.id);
    }
    await_cluster_version(&client, VersionRange::SUPPORTED.max).await;

    // The earlier build cannot come back (it does not read version 7), and
    // the gated feature is taken.
    let (ok, _, stderr) = batonctl_upgrade(&cluster, &[&earlier.display().to_string()]);
    assert!(!ok && stderr.contains("supports cluster versions 1 to 6"), "{stderr}");
    let (ok, _, stderr) = batonctl_upgrade(&cluster, &["finalize"]);
    assert!(!ok && stderr.contains("did not hold the cluster version"), "{stderr}");
    let held = marked_copy(&this, &cluster.path(), "held");
    let (ok, stdout, stderr) = batonctl_upgrade(&cluster, &upgrade_args(&held, true));
    assert!(ok && stdout.contains("upgrade finalize"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = batonctl_upgrade(&cluster, &["finalize"]);
    assert!(ok, "{stdout}{stderr}");
    run_now(&client, "c000").await.expect("run-now at the highest version");

    // No task stopped or ran twice through all of it.
    no_task_stopped(&client, &witness, &witnessed, names, PERIOD_MS).await;
}
