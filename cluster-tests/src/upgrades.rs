//! Helpers for the tests of rolling upgrades of the node binary: running
//! `batonctl upgrade`, naming a binary as the hearts do, waiting for a
//! cluster version, and building a real earlier release of this tree.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use baton_node::state::cluster_version::ClusterVersion;
use batonctl::ClusterClient;
use batonctl::cmd::status::fetch;
use batonctl::local_cluster::find_binary;

use crate::{TestCluster, poll_async};

/// `batonctl upgrade ARGS` against `cluster`, with its admin certificate
/// and signing key, ready to run.
pub fn upgrade_command<S: AsRef<str>>(cluster: &TestCluster, args: &[S]) -> Command {
    let env = cluster.local.write_env().expect("the env file");
    let script = format!(
        ". {} && exec {} upgrade {}",
        env.display(),
        find_binary("batonctl")
            .expect("batonctl is built beside the tests")
            .display(),
        joined(args)
    );
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    command
}

/// Runs `batonctl upgrade ARGS` against `cluster`; returns (success,
/// stdout, stderr).
pub fn batonctl_upgrade<S: AsRef<str>>(cluster: &TestCluster, args: &[S]) -> (bool, String, String) {
    let out = upgrade_command(cluster, args).output().expect("batonctl runs");
    upgrade_output(args, &out)
}

/// Prints what `batonctl upgrade ARGS` said and returns (success, stdout,
/// stderr).
fn upgrade_output<S: AsRef<str>>(args: &[S], out: &std::process::Output) -> (bool, String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    eprintln!("batonctl upgrade {}:\n{stdout}{stderr}", joined(args));
    (out.status.success(), stdout, stderr)
}

fn joined<S: AsRef<str>>(args: &[S]) -> String {
    args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
}

/// The sha256 of `path`, as the hearts name binaries.
pub fn hash_of(path: &Path) -> String {
    let mut file = std::fs::File::open(path).expect("open the binary");
    baton_node::heart::hash_reader(&mut file).expect("read the binary")
}

/// Waits until the cluster runs at `version` (the leader raises it one step
/// every half second once every member supports the next).
pub async fn await_cluster_version(client: &ClusterClient, version: ClusterVersion) {
    poll_async(
        Duration::from_secs(60),
        &format!("cluster version {version}"),
        || async {
            let status = fetch(client).await.ok()?;
            (status.cluster_version == version).then_some(())
        },
    )
    .await;
}

/// Waits until the cluster runs at the highest version every member
/// supports, and returns it. A new cluster starts at version 1 and rises one
/// step every half second, so a benchmark that starts at once measures its
/// first seconds under older versions' rules (writes not yet forwarded in
/// batches, say).
pub async fn await_settled_version(client: &ClusterClient) -> ClusterVersion {
    poll_async(Duration::from_secs(60), "the cluster version to settle", || async {
        let status = fetch(client).await.ok()?;
        let shared = status.members.iter().map(|m| m.max_cluster_version).min()?;
        (status.version_held_by.is_empty() && status.cluster_version == shared).then_some(shared)
    })
    .await
}

/// A real `baton-node` of this tree built as an earlier release would be:
/// it says it is `release` and supports cluster versions up to `max`
/// (`BATON_BUILD_RELEASE` and `BATON_BUILD_MAX_CLUSTER_VERSION`).
///
/// `scripts/test.sh` builds it before any test, in the shared target
/// directory (so it costs one more build of `baton-node` rather than every
/// dependency again), keeps it aside and names it in `BATON_EARLIER_NODE`;
/// this checks that the binary there is the release asked for. Run alone,
/// without that variable, the test builds it here into a target directory
/// of its own, `target/earlier-release`, so that the two builds do not
/// rebuild each other: minutes the first time, later only what changed.
/// The target and flags of the running tests (`scripts/static-target.sh`)
/// are kept.
pub fn build_earlier_release(release: &str, max: ClusterVersion) -> PathBuf {
    if let Some(prebuilt) = std::env::var_os("BATON_EARLIER_NODE") {
        let prebuilt = PathBuf::from(prebuilt);
        let described = Command::new(&prebuilt)
            .arg("--describe")
            .output()
            .unwrap_or_else(|e| panic!("BATON_EARLIER_NODE={}: {e}", prebuilt.display()));
        let description: baton_node::state::cluster_version::ReleaseDescription =
            serde_json::from_slice(&described.stdout).unwrap_or_else(|e| {
                panic!(
                    "BATON_EARLIER_NODE={} --describe: {e}: {}",
                    prebuilt.display(),
                    String::from_utf8_lossy(&described.stdout)
                )
            });
        assert!(
            description.version == release && description.max_cluster_version == max,
            "BATON_EARLIER_NODE={} is release {} up to cluster version {}, not {release} up to {max}: \
             build it as scripts/test.sh does, or unset the variable",
            prebuilt.display(),
            description.version,
            description.max_cluster_version
        );
        return prebuilt;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds cluster-tests");
    let target_dir = root.join("target/earlier-release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(root)
        .args(["build", "--locked", "-p", "baton-node", "--bin", "baton-node"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("BATON_BUILD_RELEASE", release)
        .env("BATON_BUILD_MAX_CLUSTER_VERSION", max.to_string());
    let mut out = target_dir.clone();
    if let Ok(target) = std::env::var("BATON_TEST_TARGET") {
        build.args(["--target", &target]);
        out.push(target);
    }
    eprintln!(
        "building baton-node as release {release} (cluster versions up to {max}) in {}",
        target_dir.display()
    );
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "the earlier release did not build: {status}");
    out.join("debug/baton-node")
}

/// A copy of `binary` in `dir` with `mark` appended: the same program under
/// another hash, which the hearts take as a new release.
pub fn marked_copy(binary: &Path, dir: &Path, mark: &str) -> PathBuf {
    let mut bytes = std::fs::read(binary).expect("read the node binary");
    bytes.extend_from_slice(format!("\nbaton-test-release {mark}\n").as_bytes());
    let path = dir.join(format!("baton-node-{mark}"));
    std::fs::write(&path, bytes).expect("write the marked copy");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("make it executable");
    path
}

/// After an upgrade: every task ticks again after it, the witness saw no
/// overlap or re-run among `witnessed`, and no task's history has a gap
/// beyond a period and a generous allowance for a debug build on two cores
/// (hand-offs move a task at once; a longer gap would be a stop).
pub async fn no_task_stopped(
    client: &ClusterClient,
    witness: &crate::witness::Witness,
    witnessed: &std::collections::BTreeSet<String>,
    names: std::collections::BTreeSet<String>,
    period_ms: u64,
) {
    let after: Vec<(String, u64)> = crate::task_api::tasks(client)
        .await
        .into_iter()
        .map(|t| (t.name, t.tick))
        .collect();
    poll_async(
        Duration::from_secs(30),
        "every task ticking after the upgrade",
        || async {
            let now = crate::task_api::tasks(client).await;
            after
                .iter()
                .all(|(name, tick)| now.iter().any(|t| &t.name == name && t.tick > *tick))
                .then_some(())
        },
    )
    .await;
    let report = crate::task_api::witness_report(client, witness, witnessed).await;
    eprintln!("{report}");
    assert!(report.is_clean(), "{report}");
    let expect = crate::history::Expectations {
        tasks: names,
        max_gap_ms: period_ms + 1_500,
        counters: true,
    };
    let histories = crate::history::collect(client).await.expect("the histories");
    let summary = crate::history::check(&histories, &expect).unwrap_or_else(|v| panic!("{v}"));
    eprintln!(
        "history: {} tasks, {} ticks, largest gap {} ms ({})",
        summary.tasks, summary.ticks, summary.max_gap_ms, summary.max_gap_task
    );
}
