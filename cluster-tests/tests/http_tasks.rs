//! Tasks that call HTTP servers, on real processes. `webwatch` tasks, half
//! of them the Rust example and half the Python one, poll an HTTPS witness
//! (its certificate from a CA made in the test) that they were granted
//! with `batonctl tasks add --allow-http URL --http-ca FILE`. They commit
//! what they read; a task not granted the server (one in each language) is
//! refused without reaching it. Their owners are drained and frozen mid-request:
//! the witness must see no two runs of a task at once, and every committed
//! tick must be a request it answered. The frozen owner's requests not
//! yet written must have been cut off, not written late: the test fails if
//! the owner's checks let one through (it would be recorded as a run) or if
//! the freeze caught none (it would prove nothing).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use baton_cluster_tests::task_api::{add, deploy, every, set_drained, task, tasks, witness_report};
use baton_cluster_tests::upgrades::await_cluster_version;
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::runtime::content_hash;
use baton_node::state::cluster_version::VersionRange;
use batonctl::ClusterClient;

const TASKS: usize = 12;
/// Tasks granted another port of the witness's host (and trusting its CA),
/// and their modules: each must be refused before it reaches the witness.
const UNGRANTED: [(&str, &str); 2] = [("ungranted", "webwatch"), ("ungranted-py", "webwatch_py")];
const PERIOD_MS: u64 = 300;
/// How long the witness holds each request, as a slow API would.
const HOLD: Duration = Duration::from_millis(150);
const FREEZE: Duration = Duration::from_secs(3);
/// How long the witness puts off handshakes around a freeze: with the hold,
/// well within a tick's budget (1 s).
const HANDSHAKE_DELAY: Duration = Duration::from_millis(400);

fn batonctl(cluster: &TestCluster, args: &[&str]) -> Output {
    cluster.batonctl().args(args).output().expect("batonctl runs")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Adds `name` (a task of `module`) through the CLI, granted the witness
/// with its CA.
fn add_granted(cluster: &TestCluster, witness: &Witness, ca_file: &Path, name: &str, module: &str) {
    let url = witness.url();
    let config = format!(r#"{{"url": "{url}"}}"#);
    let grant = url.trim_end_matches('/');
    let every = format!("{PERIOD_MS}ms");
    ok(batonctl(
        cluster,
        &[
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
            grant,
            "--http-ca",
            ca_file.to_str().expect("a UTF-8 path"),
        ],
    ));
}

/// Waits until every task in `names` has ticked past the tick it had when
/// this was called.
async fn await_ticks(client: &ClusterClient, names: &BTreeSet<String>, what: &str) {
    let before: Vec<(String, u64)> = tasks(client)
        .await
        .into_iter()
        .filter(|t| names.contains(&t.name))
        .map(|t| (t.name, t.tick))
        .collect();
    poll_async(Duration::from_secs(60), what, || async {
        let now = tasks(client).await;
        before
            .iter()
            .all(|(name, tick)| now.iter().any(|t| &t.name == name && t.tick > *tick))
            .then_some(())
    })
    .await;
}

/// A node that owns some of `names` and is holding a request at the
/// witness now.
async fn an_owner_mid_request(client: &ClusterClient, witness: &Witness, names: &BTreeSet<String>, not: u64) -> u64 {
    poll_async(Duration::from_secs(30), "an owner with a request held", || async {
        let owners: BTreeSet<u64> = tasks(client)
            .await
            .into_iter()
            .filter(|t| names.contains(&t.name))
            .map(|t| t.owner)
            .collect();
        owners
            .into_iter()
            .find(|&o| o != 0 && o != not && witness.in_flight(o) > 0)
    })
    .await
}

/// Deploys `webwatch` and `webwatch_py` and adds `TASKS` tasks, half of
/// each, granted the witness through the CLI; their names.
async fn start_watching(cluster: &TestCluster, client: &ClusterClient, witness: &Witness) -> BTreeSet<String> {
    // HTTP grants, and modules that import wasi:http, wait for the version
    // every member can read them at; a new cluster climbs to it.
    await_cluster_version(client, VersionRange::SUPPORTED.max).await;
    deploy(cluster, client, "webwatch").await;
    deploy(cluster, client, "webwatch_py").await;
    let ca_file = cluster.path().join("witness-ca.pem");
    std::fs::write(&ca_file, witness.ca_pem()).unwrap();
    let names: BTreeSet<String> = (0..TASKS).map(|i| format!("web{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        let module = if i % 2 == 0 { "webwatch" } else { "webwatch_py" };
        add_granted(cluster, witness, &ca_file, name, module);
    }
    names
}

/// Freezes, for `FREEZE`, a follower that owns tasks while the witness
/// puts off every TLS handshake for `HANDSHAKE_DELAY` (so the follower is
/// all but surely frozen with a request not yet written), thaws it, and
/// waits until it is up and every task has ticked since.
async fn freeze_mid_request(
    cluster: &mut TestCluster,
    client: &ClusterClient,
    witness: &Witness,
    names: &BTreeSet<String>,
) {
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let frozen = an_owner_mid_request(client, witness, names, leader).await;
    witness.set_handshake_delay(HANDSHAKE_DELAY);
    // Each of its tasks' next request waits in the handshake.
    tokio::time::sleep(HANDSHAKE_DELAY + HOLD).await;
    cluster.freeze(frozen);
    tokio::time::sleep(FREEZE).await;
    witness.set_handshake_delay(Duration::ZERO);
    cluster.thaw(frozen);
    cluster.wait_for_state(frozen, "up", Duration::from_secs(30)).await;
    await_ticks(client, names, "every task ticking after the thaw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_poll_a_granted_https_server_one_owner_at_a_time() {
    let witness = Witness::start_https(HOLD).await.unwrap();
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let names = start_watching(&cluster, &client, &witness).await;
    // The same module, granted another port of the same host and trusting
    // the witness's CA: refused before the witness is reached (were the
    // grant not checked, its request would go through).
    for (name, module) in UNGRANTED {
        let mut ungranted = every(name, module, PERIOD_MS, &format!(r#"{{"url": "{}"}}"#, witness.url()));
        (ungranted.max_restarts, ungranted.restart_window_ms) = (2, 60_000);
        ungranted.allow_http = vec!["https://localhost:1".into()];
        ungranted.http_ca = witness.ca_pem().as_bytes().to_vec();
        add(&client, ungranted).await;
    }

    await_ticks(&client, &names, "every granted task ticking").await;
    // web00 runs the Rust example, web01 the Python one.
    for name in ["web00", "web01"] {
        let seen: serde_json::Value = serde_json::from_slice(&task(&client, name).await.state).unwrap();
        assert_eq!(
            (seen["status"].as_u64(), seen["bytes"].as_u64()),
            (Some(200), Some(2)),
            "{name}: {seen}"
        );
        assert!(seen["polls"].as_u64().unwrap() >= 1, "{name}: {seen}");
    }
    let web = task(&client, "web00").await;
    let grant = witness.url().trim_end_matches('/').to_string();
    assert_eq!(web.allow_http, std::slice::from_ref(&grant));
    assert_eq!(web.http_ca_sha256, content_hash(witness.ca_pem().as_bytes()));
    let shown = ok(batonctl(&cluster, &["tasks", "show", "web00"]));
    assert!(shown.contains(&format!("allow-http: {grant}")), "{shown}");
    assert!(
        shown.contains(&format!("its own CA (sha256 {})", web.http_ca_sha256)),
        "{shown}"
    );
    // Bad grants are refused, saying what is wrong, and add nothing.
    let refuse = |args: &[&str], why: &str| {
        let out = batonctl(
            &cluster,
            &[&["tasks", "add", "bad", "--module", "webwatch", "--every", "1s"], args].concat(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{args:?}: {stderr}");
    };
    refuse(
        &["--allow-http", "ftp://localhost"],
        "the scheme must be http:// or https://",
    );
    refuse(
        &["--allow-http", "https://localhost/feed"],
        "only a host and a port may follow the scheme",
    );
    refuse(
        &["--allow-http", &grant, "--http-ca", "/no/such/ca.pem"],
        "cannot read /no/such/ca.pem",
    );
    let not_pem = cluster.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    refuse(
        &["--allow-http", &grant, "--http-ca", not_pem.to_str().unwrap()],
        "the task's CA holds no PEM certificate",
    );
    assert!(tasks(&client).await.iter().all(|t| t.name != "bad"));
    for (name, _) in UNGRANTED {
        let failed = poll_async(Duration::from_secs(30), "the ungranted task failed", || async {
            let t = task(&client, name).await;
            (t.status == "failed").then_some(t)
        })
        .await;
        assert!(
            failed.failure.contains("not granted this server"),
            "{name}: {}",
            failed.failure
        );
    }

    // Owners drained, then frozen, while the witness holds their requests.
    let drained = an_owner_mid_request(&client, &witness, &names, 0).await;
    set_drained(&client, drained, true).await;
    poll_async(Duration::from_secs(60), "every task off the drained node", || async {
        let all = tasks(&client).await;
        all.iter()
            .filter(|t| names.contains(&t.name))
            .all(|t| t.owner != drained && t.owner != 0)
            .then_some(())
    })
    .await;
    await_ticks(&client, &names, "every task ticking after the drain").await;
    set_drained(&client, drained, false).await;
    // The frozen owner's requests not yet written when it froze were cut
    // off once it thawed, its turn over: it wrote none of them. A freeze
    // that caught none mid-handshake (its ticks were between requests on a
    // busy machine) proves nothing, so it is tried again, up to three times.
    let abandoned = witness.abandoned();
    for attempt in 1..=3 {
        freeze_mid_request(&mut cluster, &client, &witness, &names).await;
        if witness.abandoned() > abandoned {
            break;
        }
        eprintln!("freeze {attempt} caught no request mid-handshake");
    }
    assert!(
        witness.abandoned() > abandoned,
        "no request was cut off after the thaw: three freezes caught none mid-handshake"
    );

    let report = witness_report(&client, &witness, &names).await;
    eprintln!("{report}");
    assert!(report.is_clean(), "{report}");
    assert!(report.runs > TASKS * 5, "too few runs to tell: {report}");
    assert_eq!(witness.malformed(), 0, "requests without a task, node and token");
    assert!(
        witness.runs().iter().all(|r| !r.task.starts_with("ungranted")),
        "a task not granted the server reached it"
    );
}
