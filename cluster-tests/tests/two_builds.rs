//! Mixed versions with two real builds: a cluster of an earlier release is
//! upgraded to this one while counters and witnessed tasks tick.
//!
//! The earlier release is this tree built as one (`BATON_BUILD_RELEASE`,
//! `BATON_BUILD_MAX_CLUSTER_VERSION`; see `upgrades::build_earlier_release`):
//! it calls itself 0.5.0-earlier and supports cluster versions up to 6, so
//! it lacks the one feature gated at 7, held upgrades (`--hold-version` and
//! `upgrade finalize`). The test checks that:
//! - the earlier cluster refuses the gated feature with a clear error and
//!   records nothing;
//! - during the upgrade the nodes run both builds, and the cluster version
//!   stays at 6 while any node runs the earlier one;
//! - once every node runs this build, the version rises to 7 by itself, the
//!   gated feature is taken, and the earlier build can no longer come back;
//! - no task stopped or ran twice (the history checker and the witness).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use baton_cluster_tests::history::{Expectations, check, collect};
use baton_cluster_tests::local_cluster::find_binary;
use baton_cluster_tests::task_api::{start_counters, start_witnessed, witness_report};
use baton_cluster_tests::upgrades::{
    await_cluster_version, batonctl_upgrade, build_earlier_release, hash_of, marked_copy, upgrade_command,
    upgrade_output,
};
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::state::cluster_version::{HELD_UPGRADES, NODE_UPGRADES};
use batonctl::cmd::status::fetch;

const EARLIER: &str = "0.5.0-earlier";
const COUNTERS: usize = 60;
const WITNESSED: usize = 10;
const PERIOD_MS: u64 = 250;

/// What the nodes ran, seen from outside while the upgrade went on.
#[derive(Default)]
struct Seen {
    /// Each distinct set of releases the members reported at one moment.
    release_sets: BTreeSet<Vec<String>>,
    /// The highest cluster version reported while some member ran the
    /// earlier release.
    highest_while_mixed: u32,
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

    // The upgrade to this build, watched from outside as it goes.
    let args = [
        this.display().to_string(),
        "--min-healthy".into(),
        "2s".into(),
        "--healthy-deadline".into(),
        "60s".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut upgrade = tokio::process::Command::from(upgrade_command(&cluster, &args));
    let upgrade = upgrade.kill_on_drop(true).output();
    tokio::pin!(upgrade);
    let mut seen = Seen::default();
    let out = loop {
        tokio::select! {
            out = &mut upgrade => break out.expect("batonctl runs"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let Ok(status) = fetch(&client).await else { continue };
                let releases: BTreeSet<String> = status.members.iter().map(|m| m.version.clone()).collect();
                if releases.contains(EARLIER) {
                    seen.highest_while_mixed = seen.highest_while_mixed.max(status.cluster_version);
                }
                seen.release_sets.insert(releases.into_iter().collect());
            }
        }
    };
    let (ok, stdout, stderr) = upgrade_output(&args, &out);
    assert!(
        ok && stdout.contains("done"),
        "the upgrade did not finish: {stdout}{stderr}"
    );
    eprintln!(
        "the upgrade took {:?}; releases seen: {:?}",
        started.elapsed(),
        seen.release_sets
    );
    let mixed = vec![EARLIER.to_string(), baton_node::VERSION.to_string()];
    assert!(
        seen.release_sets.contains(&mixed),
        "no moment with both builds was seen: {:?}",
        seen.release_sets
    );
    assert_eq!(
        seen.highest_while_mixed, NODE_UPGRADES,
        "the cluster version rose while a node ran the earlier build"
    );

    // Every node runs this build; the version rises by itself.
    let hash = hash_of(&this);
    let status = fetch(&client).await.unwrap();
    for member in &status.members {
        assert_eq!(
            (member.version.as_str(), member.binary.as_str()),
            (baton_node::VERSION, hash.as_str())
        );
        assert_eq!(member.state, "up", "node {}", member.id);
    }
    await_cluster_version(&client, HELD_UPGRADES).await;

    // The earlier build cannot come back (it does not read version 7), and
    // the gated feature is taken.
    let (ok, _, stderr) = batonctl_upgrade(&cluster, &[&earlier.display().to_string()]);
    assert!(!ok && stderr.contains("supports cluster versions 1 to 6"), "{stderr}");
    let (ok, _, stderr) = batonctl_upgrade(&cluster, &["finalize"]);
    assert!(!ok && stderr.contains("did not hold the cluster version"), "{stderr}");
    let next = marked_copy(&this, &cluster.path(), "held");
    let (ok, stdout, stderr) = batonctl_upgrade(
        &cluster,
        &[
            &next.display().to_string(),
            "--min-healthy",
            "2s",
            "--healthy-deadline",
            "60s",
            "--hold-version",
        ],
    );
    assert!(ok && stdout.contains("upgrade finalize"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = batonctl_upgrade(&cluster, &["finalize"]);
    assert!(ok, "{stdout}{stderr}");

    // No task stopped or ran twice through all of it.
    let report = witness_report(&client, &witness, &witnessed).await;
    eprintln!("{report}");
    assert!(report.is_clean(), "{report}");
    let last = baton_cluster_tests::task_api::tasks(&client).await;
    poll_async(
        Duration::from_secs(30),
        "every task ticking after the upgrades",
        || async {
            let now = baton_cluster_tests::task_api::tasks(&client).await;
            last.iter()
                .all(|before| now.iter().any(|t| t.name == before.name && t.tick > before.tick))
                .then_some(())
        },
    )
    .await;
    let expect = Expectations {
        tasks: names,
        max_gap_ms: PERIOD_MS + 1_500,
        counters: true,
    };
    let histories = collect(&client).await.unwrap();
    let summary = check(&histories, &expect).unwrap_or_else(|v| panic!("{v}"));
    eprintln!(
        "history: {} tasks, {} ticks, largest gap {} ms ({})",
        summary.tasks, summary.ticks, summary.max_gap_ms, summary.max_gap_task
    );
}
