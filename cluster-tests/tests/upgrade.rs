//! The rolling upgrade of the node binary on real processes, each node
//! under its heart: `batonctl upgrade BINARY` moves one node at a time
//! through drain, swap, rejoin and gate while counters and witnessed tasks
//! tick, and every node ends on the new binary, made permanent (and the
//! upgrade, started with --hold-version, is finalized once). A binary
//! that exits at start, never becomes healthy, or hangs through SIGTERM is
//! put back by its heart and the upgrade halts with the reason, the tasks
//! ticking on.
//!
//! The "new" binary is this build's baton-node, staged by hash (a heart's
//! installed binary is not in its store, so the same bytes make a trial of
//! their own); a broken one is a script signed as a release of this
//! version.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use baton_cluster_tests::history::{Expectations, check, collect};
use baton_cluster_tests::task_api::{start_counters, start_witnessed, witness_report};
use baton_cluster_tests::upgrades::{await_cluster_version, batonctl_upgrade, hash_of, no_task_stopped};
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::state::cluster_version::VersionRange;
use batonctl::cmd::status::fetch;

const COUNTERS: usize = 200;
const WITNESSED: usize = 20;
const PERIOD_MS: u64 = 250;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_moves_to_the_new_binary_one_at_a_time_and_no_task_notices() {
    let _one = ONE_AT_A_TIME.lock().await;
    let witness = Witness::start("127.0.0.1:0", Duration::from_millis(50)).await.unwrap();
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let mut names = start_counters(&cluster, &client, COUNTERS, PERIOD_MS).await;
    let witnessed = start_witnessed(&cluster, &client, &witness, WITNESSED, PERIOD_MS).await;
    names.extend(witnessed.iter().cloned());
    let binary = cluster.local.node_binary().to_path_buf();
    let hash = hash_of(&binary);
    await_cluster_version(&client, VersionRange::SUPPORTED.max).await;

    let started = Instant::now();
    let (ok, stdout, stderr) = batonctl_upgrade(
        &cluster,
        &[
            &binary.display().to_string(),
            "--min-healthy",
            "2s",
            "--healthy-deadline",
            "60s",
            "--hold-version",
        ],
    );
    assert!(ok, "the upgrade did not finish: {stdout}{stderr}");
    eprintln!("the upgrade took {:?}", started.elapsed());
    assert!(stdout.contains("done"), "{stdout}");
    // It held the cluster version (the binary before could come back) until
    // finalized, once.
    assert!(stdout.contains("upgrade finalize"), "{stdout}");
    let (ok, stdout, stderr) = batonctl_upgrade(&cluster, &["finalize"]);
    assert!(ok && !stdout.contains("upgrade finalize"), "{stdout}{stderr}");
    let (ok, _, stderr) = batonctl_upgrade(&cluster, &["finalize"]);
    assert!(!ok && stderr.contains("already finalized"), "{stderr}");

    let status = fetch(&client).await.unwrap();
    for member in &status.members {
        assert_eq!(member.binary, hash, "node {} runs another binary", member.id);
        assert_eq!(member.state, "up", "node {}", member.id);
        assert!(!member.drained, "node {} was left drained", member.id);
    }
    no_task_stopped(&client, &witness, &witnessed, names, PERIOD_MS).await;
}

/// A "release" that describes itself as this one and then does `body`
/// when started as a node.
fn broken_release(cluster: &TestCluster, name: &str, body: &str) -> std::path::PathBuf {
    let path = cluster.path().join(name);
    let describe =
        serde_json::to_string(&baton_node::state::cluster_version::ReleaseDescription::this_release()).unwrap();
    std::fs::write(
        &path,
        format!("#!/bin/sh\nif [ \"$1\" = --describe ]; then echo '{describe}'; exit 0; fi\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Each broken binary is put back by its node's heart, the upgrade halts
/// saying why, no node is left drained or on trial, and the tasks tick on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_exits_hangs_or_never_becomes_healthy_is_reverted_and_the_upgrade_halts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cases = [
        (
            "exits-at-start",
            "echo 'broken on purpose' >&2\nexit 3",
            "exit status 3",
        ),
        ("never-healthy", "exec sleep 1000", "did not come back"),
        (
            "hangs",
            "trap '' TERM\nwhile :; do sleep 0.1; done",
            "did not come back",
        ),
    ];
    for (name, body, reason) in cases {
        eprintln!("=== a binary that {name}");
        let witness = Witness::start("127.0.0.1:0", Duration::from_millis(50)).await.unwrap();
        let cluster = TestCluster::start(3).await;
        let client = cluster.client();
        let mut names = start_counters(&cluster, &client, 30, PERIOD_MS).await;
        let witnessed = start_witnessed(&cluster, &client, &witness, 10, PERIOD_MS).await;
        names.extend(witnessed.iter().cloned());
        let broken = broken_release(&cluster, name, body);
        await_cluster_version(&client, VersionRange::SUPPORTED.max).await;

        let (ok, stdout, stderr) = batonctl_upgrade(
            &cluster,
            &[
                &broken.display().to_string(),
                "--min-healthy",
                "1s",
                "--healthy-deadline",
                "8s",
            ],
        );
        assert!(!ok, "a broken binary upgraded: {stdout}");
        let said = format!("{stdout}{stderr}");
        assert!(
            said.contains("halted") && said.contains(reason),
            "{name}: the reason is not given: {said}"
        );

        // The reverted node is back on its installed binary, undrained,
        // and every task ticks on.
        let status = poll_async(
            Duration::from_secs(60),
            "every node back on its installed binary",
            || async {
                let status = fetch(&client).await.ok()?;
                status
                    .members
                    .iter()
                    .all(|m| m.binary == "installed" && m.state == "up" && !m.drained)
                    .then_some(status)
            },
        )
        .await;
        assert_eq!(status.members.len(), 3);
        let before: Vec<(String, u64)> = baton_cluster_tests::task_api::tasks(&client)
            .await
            .into_iter()
            .map(|t| (t.name, t.tick))
            .collect();
        poll_async(Duration::from_secs(30), "every task ticking after the halt", || async {
            let now = baton_cluster_tests::task_api::tasks(&client).await;
            before
                .iter()
                .all(|(name, tick)| now.iter().any(|t| &t.name == name && t.tick > *tick))
                .then_some(())
        })
        .await;
        let expect = Expectations {
            tasks: names.into_iter().collect::<BTreeSet<_>>(),
            max_gap_ms: PERIOD_MS + 1_500,
            counters: true,
        };
        check(&collect(&client).await.unwrap(), &expect).unwrap_or_else(|v| panic!("{name}: {v}"));
        // Seen from outside: no task ran twice at once through the reverts.
        let report = witness_report(&client, &witness, &witnessed).await;
        assert!(report.is_clean(), "{name}: {report}");

        // Aborting ends it.
        let (ok, stdout, _) = batonctl_upgrade(&cluster, &["abort"]);
        assert!(ok && stdout.contains("aborted"), "{stdout}");
    }
}
