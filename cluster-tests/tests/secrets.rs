//! Task secrets on real processes, checked from outside. Three `webwatch`
//! tasks (Rust and Python) are given a secret through the CLI (as an
//! argument, from a file and from the environment) and send it to an
//! HTTPS witness as a bearer token: the witness must see each task's
//! value. The cluster's key is then rotated as `docs/secrets.md` says
//! (every node given a new key to open with, then to seal with, each step a
//! restart of every node in turn; `secrets rotate`; the old key taken away
//! and the nodes restarted again) and the tasks must go on sending their
//! values. Throughout, no CLI output, status page,
//! node log or file under the cluster's directory (data, logs, snapshots,
//! configs) may hold a value in plain text; the test also shows that the
//! data files do hold each task and its secret's name, so the values'
//! absence is their sealing, not a record missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_cluster_tests::http::get;
use baton_cluster_tests::local_cluster::write_secret_key;
use baton_cluster_tests::task_api::{deploy, task, tasks};
use baton_cluster_tests::upgrades::await_cluster_version;
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::config::TimingConfig;
use baton_node::state::cluster_version::VersionRange;
use batonctl::ClusterClient;

const PERIOD_MS: u64 = 300;
/// The secret's name in every task.
const NAME: &str = "API_TOKEN";

/// Everything the test saw Baton print or serve, to search for the values.
#[derive(Default)]
struct Seen {
    outputs: Vec<(String, String)>,
}

impl Seen {
    fn keep(&mut self, what: impl Into<String>, text: impl Into<String>) -> String {
        let text = text.into();
        self.outputs.push((what.into(), text.clone()));
        text
    }
}

/// Runs batonctl against the cluster with `env` set; its stdout (it must
/// succeed), with stdout and stderr kept in `seen`.
fn batonctl(cluster: &TestCluster, seen: &mut Seen, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = cluster
        .batonctl()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("batonctl runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    seen.keep(format!("batonctl {} (stderr)", args.join(" ")), stderr.clone());
    assert!(out.status.success(), "batonctl {}: {stderr}", args.join(" "));
    seen.keep(format!("batonctl {}", args.join(" ")), stdout)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                Ok(t) if t.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files under `dir` that hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|f| std::fs::read(f).is_ok_and(|bytes| contains(&bytes, needle)))
        .collect()
}

/// Restarts every node, one at a time, each up again before the next.
async fn restart_each(cluster: &mut TestCluster) {
    let ids: Vec<u64> = cluster.local.nodes.keys().copied().collect();
    for id in ids {
        cluster.local.stop(id, Duration::from_secs(10)).expect("stop a node");
        cluster.restart(id);
        cluster.wait_for_all_up(Duration::from_secs(60)).await;
    }
}

/// Waits until the witness has seen each task send its value, with a
/// tick committed since `since` (ticks by task).
async fn await_bearers(
    client: &ClusterClient,
    witness: &Witness,
    values: &BTreeMap<String, String>,
    since: &BTreeMap<String, u64>,
    what: &str,
) {
    poll_async(Duration::from_secs(90), what, || async {
        let now: BTreeMap<String, u64> = tasks(client).await.into_iter().map(|t| (t.name, t.tick)).collect();
        values
            .iter()
            .all(|(task, value)| {
                let ticked = now.get(task).copied().unwrap_or(0) > since.get(task).copied().unwrap_or(0);
                ticked && witness.authorization(task).as_deref() == Some(format!("Bearer {value}").as_str())
            })
            .then_some(())
    })
    .await;
}

async fn ticks(client: &ClusterClient) -> BTreeMap<String, u64> {
    tasks(client).await.into_iter().map(|t| (t.name, t.tick)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_their_tasks_through_a_rotation_and_nothing_else_shows_them() {
    let witness = Witness::start_https(Duration::ZERO).await.unwrap();
    // Snapshots every few hundred entries, so that they are among the
    // files searched.
    let timing = TimingConfig {
        snapshot_after_entries: 200,
        ..TimingConfig::default()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    let client = cluster.client();
    await_cluster_version(&client, VersionRange::SUPPORTED.max).await;
    deploy(&cluster, &client, "webwatch").await;
    deploy(&cluster, &client, "webwatch_py").await;

    let outside = tempfile::tempdir().unwrap();
    let ca_file = outside.path().join("witness-ca.pem");
    std::fs::write(&ca_file, witness.ca_pem()).unwrap();
    let url = witness.url();
    let config = format!(r#"{{"url": "{url}", "bearer_secret": "{NAME}"}}"#);
    let grant = url.trim_end_matches('/').to_string();
    let every = format!("{PERIOD_MS}ms");
    // Values no other text would hold by chance.
    let value = |task: &str| format!("{task}-v4lue-{:016x}", rand::random::<u64>());
    let mut values: BTreeMap<String, String> = ["sync-arg", "sync-file", "sync-env"]
        .into_iter()
        .map(|t| (t.to_string(), value(t)))
        .collect();
    let secret_file = outside.path().join("token");
    std::fs::write(&secret_file, format!("{}\n", values["sync-file"])).unwrap();

    let mut seen = Seen::default();
    let ca = ca_file.to_str().unwrap();
    let base = |name: &'static str, module: &'static str| {
        vec![
            "tasks",
            "add",
            name,
            "--module",
            module,
            "--every",
            &every,
            "--config",
            &config,
            "--allow-http",
            &grant,
            "--http-ca",
            ca,
        ]
    };
    let from_arg = format!("{NAME}={}", values["sync-arg"]);
    let mut args = base("sync-arg", "webwatch");
    args.extend(["--secret", &from_arg]);
    batonctl(&cluster, &mut seen, &args, &[]);
    let from_file = format!("{NAME}={}", secret_file.display());
    let mut args = base("sync-file", "webwatch_py");
    args.extend(["--secret-file", &from_file]);
    batonctl(&cluster, &mut seen, &args, &[]);
    // Through a follower alone: it sends batonctl on to the leader, which
    // seals the value.
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = cluster
        .local
        .nodes
        .values()
        .find(|n| n.id != leader)
        .unwrap()
        .addr
        .clone();
    let from_env = format!("{NAME}=SYNC_TOKEN");
    let mut args = base("sync-env", "webwatch");
    args.extend(["--secret-env", &from_env]);
    let env = [
        ("SYNC_TOKEN", values["sync-env"].as_str()),
        ("BATON_ENDPOINTS", &follower),
    ];
    let added = batonctl(&cluster, &mut seen, &args, &env);
    assert!(added.contains("sync-env"), "{added}");

    // The witness sees each task's own value.
    await_bearers(
        &client,
        &witness,
        &values,
        &BTreeMap::new(),
        "each task sending its secret",
    )
    .await;

    // What the cluster shows: names and key ids, never a value.
    let first_key = task(&client, "sync-arg").await.secrets[0].key_id.clone();
    for name in values.keys() {
        let info = task(&client, name).await;
        let shown: Vec<(&str, &str)> = info
            .secrets
            .iter()
            .map(|s| (s.name.as_str(), s.key_id.as_str()))
            .collect();
        assert_eq!(shown, [(NAME, first_key.as_str())], "{name}");
        let text = batonctl(&cluster, &mut seen, &["tasks", "show", name], &[]);
        assert!(
            text.contains(&format!("secrets:    {NAME} (key {first_key})")),
            "{text}"
        );
        batonctl(&cluster, &mut seen, &["tasks", "show", name, "-o", "json"], &[]);
        batonctl(&cluster, &mut seen, &["tasks", "history", name], &[]);
        batonctl(&cluster, &mut seen, &["tasks", "logs", name], &[]);
    }
    let keys = batonctl(&cluster, &mut seen, &["secrets", "keys"], &[]);
    assert!(
        keys.contains(&first_key) && keys.contains("held, seals new secrets"),
        "{keys}"
    );

    // Rotation, as docs/secrets.md says: a new key on every node, first
    // to open with only, then to seal with, each step a restart of one node
    // at a time (no node ever seals with a key another lacks); then one
    // command.
    let old_key = cluster.local.dir.join("secret-key");
    let new_key = cluster.local.dir.join("secret-key-2");
    write_secret_key(&new_key).unwrap();
    cluster
        .local
        .set_secret_keys(vec![old_key.clone(), new_key.clone()])
        .unwrap();
    restart_each(&mut cluster).await;
    cluster
        .local
        .set_secret_keys(vec![new_key.clone(), old_key.clone()])
        .unwrap();
    restart_each(&mut cluster).await;
    let client = cluster.client();
    let rotated = batonctl(&cluster, &mut seen, &["secrets", "rotate"], &[]);
    assert!(rotated.starts_with("sealed 3 secret(s) again with key "), "{rotated}");
    let second_key = task(&client, "sync-arg").await.secrets[0].key_id.clone();
    assert_ne!(second_key, first_key);
    assert!(rotated.contains(&second_key), "{rotated}");
    for name in values.keys() {
        assert_eq!(task(&client, name).await.secrets[0].key_id, second_key, "{name}");
    }
    // Each node keeps the events of what it applied since it started:
    // every node has applied the rotation.
    let events = batonctl(&cluster, &mut seen, &["events", "-n", "1000"], &[]);
    assert!(events.contains("3 task secret(s) sealed again with key"), "{events}");
    let again = batonctl(&cluster, &mut seen, &["secrets", "rotate"], &[]);
    assert!(again.starts_with("sealed 0 secret(s) again"), "{again}");
    let keys = batonctl(&cluster, &mut seen, &["secrets", "keys", "-o", "json"], &[]);
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    let count = |id: &str| {
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == id)
            .unwrap()["secrets"]
            .clone()
    };
    assert_eq!((count(&second_key), count(&first_key)), (3.into(), 0.into()), "{keys}");

    // The old key taken away: every node restarted with the new one alone,
    // and the tasks go on sending their values.
    cluster.local.set_secret_keys(vec![new_key.clone()]).unwrap();
    std::fs::remove_file(&old_key).unwrap();
    restart_each(&mut cluster).await;
    let client = cluster.client();
    let before = ticks(&client).await;
    await_bearers(
        &client,
        &witness,
        &values,
        &before,
        "each task sending its secret with the new key",
    )
    .await;
    for name in values.keys() {
        assert_eq!(task(&client, name).await.status, "running", "{name}");
    }

    // A new value for one task's secret, in place: its next request
    // carries it, and the task keeps its ticks.
    let mut every_value: Vec<String> = values.values().cloned().collect();
    let replaced = value("sync-arg");
    every_value.push(replaced.clone());
    let before = ticks(&client).await;
    let set = format!("{NAME}=NEW_TOKEN");
    let shown = batonctl(
        &cluster,
        &mut seen,
        &["tasks", "set-secrets", "sync-arg", "--secret-env", &set],
        &[("NEW_TOKEN", &replaced)],
    );
    assert!(
        shown.contains(&format!("secrets:    {NAME} (key {second_key})")),
        "{shown}"
    );
    values.insert("sync-arg".into(), replaced);
    await_bearers(&client, &witness, &values, &before, "the new value sent").await;
    assert!(task(&client, "sync-arg").await.tick > before["sync-arg"]);

    // Everything else Baton shows.
    batonctl(&cluster, &mut seen, &["tasks", "list"], &[]);
    batonctl(&cluster, &mut seen, &["tasks", "list", "-o", "json"], &[]);
    batonctl(&cluster, &mut seen, &["status"], &[]);
    batonctl(&cluster, &mut seen, &["events", "-n", "1000"], &[]);
    for node in cluster.local.nodes.values() {
        let addr = node.metrics_addr.clone();
        for path in ["/", "/tasks", "/tasks/sync-arg", "/tasks/sync-file", "/metrics"] {
            let page = get(&addr, path, Duration::from_secs(10)).await.unwrap();
            assert_eq!(page.status, 200, "{addr}{path}");
            if path == "/tasks/sync-arg" {
                let named = format!("<code>{NAME}</code> (key <code>{second_key}</code>)");
                assert!(page.body.contains(&named), "{}", page.body);
            }
            seen.keep(format!("{addr}{path}"), page.body);
        }
    }

    // No value anywhere: outputs, pages, and every file of the cluster
    // (each node's data dir, log and config).
    let dir = cluster.local.dir.clone();
    for value in &every_value {
        for (what, text) in &seen.outputs {
            assert!(!text.contains(value.as_str()), "{what} shows a secret's value:\n{text}");
        }
        let holding = files_holding(&dir, value.as_bytes());
        assert!(
            holding.is_empty(),
            "these files hold a secret's value in plain text: {holding:?}"
        );
    }
    // The search would have found them: the file the value was read from
    // holds it, and the data files hold the tasks and their secrets' names.
    assert_eq!(
        files_holding(outside.path(), values["sync-file"].as_bytes()),
        [secret_file]
    );
    let logs: String = cluster
        .local
        .nodes
        .values()
        .map(|n| std::fs::read_to_string(n.log_path()).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("built a snapshot"),
        "no snapshot was built, so none was searched"
    );
    for id in cluster.local.nodes.keys() {
        let data = dir.join(id.to_string()).join("data");
        for needle in ["sync-arg", NAME] {
            assert!(
                !files_holding(&data, needle.as_bytes()).is_empty(),
                "node {id}'s data files do not hold {needle}"
            );
        }
    }
}
