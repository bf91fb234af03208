//! `batonctl` as an operator meets it, run as a process against a real
//! cluster: it says within seconds, and why, when it cannot reach the
//! cluster; a frozen endpoint costs a command about a second; an address
//! with a scheme is taken or explained; exit codes tell scripts what
//! happened; contexts name a cluster so that a command needs no flags.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use baton_cluster_tests::TestCluster;
use baton_cluster_tests::local_cluster::find_binary;
use batonctl::cmd::exit;
use batonctl::pki::{self, NodeSpec};

/// Runs batonctl with the cluster's admin credentials and `args`, with
/// `overrides` on top of them; returns what it printed and how long it
/// took.
fn batonctl(cluster: &TestCluster, overrides: &[(&str, &Path)], args: &[&str]) -> (Output, Duration) {
    let mut command = cluster.batonctl();
    command.args(args);
    for (name, value) in overrides {
        command.env(name, value);
    }
    let started = Instant::now();
    let out = command.output().expect("batonctl runs");
    let took = started.elapsed();
    eprintln!(
        "batonctl {} ({:?} in {took:?}):\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, took)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Well under the 30 s a command is given, with room for a loaded machine
/// (the promise is 3 s).
const FAST: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batonctl_says_within_seconds_why_it_cannot_reach_the_cluster() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let foreign = tempfile::tempdir().unwrap();
    pki::init(foreign.path(), &[NodeSpec::local(1)]).unwrap();

    // Nothing listens at any endpoint: two ports just closed.
    let closed: Vec<String> = (0..2)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        })
        .collect();
    let (out, took) = batonctl(&cluster, &[], &["status", "--endpoints", &closed.join(",")]);
    assert_eq!(out.status.code(), Some(exit::UNREACHABLE.into()));
    assert!(stderr(&out).contains("nothing listens there"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&closed[1]), "every endpoint is named");
    assert!(took < FAST, "{took:?}");

    // An admin certificate of another CA: the nodes refuse it.
    let (fcert, fkey) = pki::admin_cert_paths(foreign.path());
    let (out, took) = batonctl(&cluster, &[("BATON_CERT", &fcert), ("BATON_KEY", &fkey)], &["status"]);
    assert_eq!(out.status.code(), Some(exit::UNREACHABLE.into()));
    assert!(
        stderr(&out).contains("refused this client's certificate") && stderr(&out).contains("BATON_CERT"),
        "{}",
        stderr(&out)
    );
    assert!(took < FAST, "{took:?}");

    // A CA that is not the cluster's: the client refuses the nodes.
    let (out, took) = batonctl(
        &cluster,
        &[("BATON_CA", &pki::ca_cert_path(foreign.path()))],
        &["status"],
    );
    assert_eq!(out.status.code(), Some(exit::UNREACHABLE.into()));
    assert!(
        stderr(&out).contains("certificate was not accepted") && stderr(&out).contains("BATON_CA"),
        "{}",
        stderr(&out)
    );
    assert!(took < FAST, "{took:?}");

    // An address with the scheme that matches is taken; one that does not
    // is explained, and nothing is sent.
    let first = cluster.local.endpoints()[0].clone();
    let (out, _) = batonctl(&cluster, &[], &["status", "--endpoints", &format!("https://{first}/")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, _) = batonctl(&cluster, &[], &["status", "--endpoints", &format!("http://{first}")]);
    assert_eq!(out.status.code(), Some(exit::USAGE.into()));
    assert!(stderr(&out).contains("--insecure"), "{}", stderr(&out));

    // A frozen node first in the list: it accepts TCP connections (the
    // kernel does, into the backlog) and never answers. It costs the
    // command about a second, not a quarter of its timeout.
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoints = format!(
        "{},{}",
        frozen.local_addr().unwrap(),
        cluster.local.endpoints().join(",")
    );
    for _ in 0..2 {
        let (out, took) = batonctl(&cluster, &[], &["status", "--endpoints", &endpoints]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(took < Duration::from_millis(3_500), "a frozen endpoint cost {took:?}");
    }

    // Exit codes: a task that does not exist, and a command line that
    // names nothing to do.
    let (out, _) = batonctl(&cluster, &[], &["tasks", "show", "no-such-task"]);
    assert_eq!(out.status.code(), Some(exit::NOT_FOUND.into()), "{}", stderr(&out));
    let (out, _) = batonctl(&cluster, &[], &["tasks", "add", "t", "--module", "m"]);
    assert_eq!(out.status.code(), Some(exit::USAGE.into()), "{}", stderr(&out));
    drop(frozen);

    // Contexts: a named cluster, used with no flags or variables.
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("baton/contexts.toml");
    let (ca, cert, key) = cluster.local.admin_paths();
    let (ca, cert, key) = (
        ca.display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    let endpoints = cluster.local.endpoints().join(",");
    let out = with_contexts(
        &file,
        &[
            "context",
            "add",
            "test",
            "--endpoints",
            &endpoints,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ],
    );
    assert!(
        out.status.success() && stderr(&out).contains("the current context"),
        "{}",
        stderr(&out)
    );
    assert!(with_contexts(&file, &["status"]).status.success());
    let out = with_contexts(
        &file,
        &["context", "add", "other", "--insecure", "--endpoints", &closed[0]],
    );
    assert!(
        out.status.success() && stderr(&out).contains("context use other"),
        "{}",
        stderr(&out)
    );
    let out = with_contexts(&file, &["context", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "other");
    assert_eq!(
        (list[1]["name"].as_str(), list[1]["current"].as_bool()),
        (Some("test"), Some(true))
    );
    let out = with_contexts(&file, &["--context", "other", "status"]);
    assert_eq!(out.status.code(), Some(exit::UNREACHABLE.into()), "{}", stderr(&out));
    let out = with_contexts(&file, &["--context", "prod", "status"]);
    assert_eq!(out.status.code(), Some(exit::USAGE.into()));
    assert!(stderr(&out).contains("there are other, test"), "{}", stderr(&out));
    assert!(with_contexts(&file, &["context", "rm", "test"]).status.success());
    let out = with_contexts(&file, &["status"]);
    assert_eq!(out.status.code(), Some(exit::USAGE.into()), "no context is current now");
}

/// Runs batonctl with no BATON_* variables but the contexts file.
fn with_contexts(file: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(find_binary("batonctl").expect("batonctl is built beside the tests"));
    for name in [
        "BATON_ENDPOINTS",
        "BATON_CA",
        "BATON_CERT",
        "BATON_KEY",
        "BATON_INSECURE",
        "BATON_CONTEXT",
    ] {
        command.env_remove(name);
    }
    let out = command
        .env("BATON_CONTEXTS", file)
        .args(args)
        .output()
        .expect("batonctl runs");
    eprintln!(
        "batonctl {} ({:?}):\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tasks run-now`: a task that ticks once an hour ticks within seconds of
/// the command, as a witness outside the cluster sees it, and its schedule
/// goes on as before; an unknown task and a paused one are refused with
/// their exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_now_ticks_at_once_and_the_schedule_goes_on() {
    use baton_cluster_tests::task_api::{add, deploy, every, task};
    use baton_cluster_tests::witness::Witness;
    use baton_cluster_tests::{poll_async, task_api};

    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let witness = Witness::start("127.0.0.1:0", Duration::ZERO).await.unwrap();
    // A new cluster raises its version a step at a time, to the one that
    // knows the request.
    let highest = baton_node::state::cluster_version::VersionRange::SUPPORTED.max;
    baton_cluster_tests::upgrades::await_cluster_version(&client, highest).await;
    deploy(&cluster, &client, "witnessed").await;
    let addr = witness.addr().to_string();
    let mut request = every("slow", "witnessed", 3_600_000, &addr);
    request.allow_net = vec![addr.clone()];
    add(&client, request).await;
    let first = poll_async(Duration::from_secs(30), "slow's first tick", || async {
        let slow = task(&client, "slow").await;
        (slow.tick == 1).then_some(slow)
    })
    .await;
    // The ticks the witness saw (a tick the fence stopped and that ran again
    // calls it twice, with one tick number).
    let runs = || {
        let ticks: std::collections::BTreeSet<u64> = witness
            .runs()
            .into_iter()
            .filter(|r| r.task == "slow")
            .map(|r| r.tick)
            .collect();
        ticks.len()
    };
    assert_eq!(runs(), 1);

    let (out, _) = batonctl(&cluster, &[], &["tasks", "run-now", "slow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let asked = Instant::now();
    poll_async(
        Duration::from_secs(10),
        "the witness to see slow's second tick",
        || async { (runs() == 2).then_some(()) },
    )
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the tick came {:?} after the command, nearer its schedule than now",
        asked.elapsed()
    );
    let second = poll_async(Duration::from_secs(10), "slow's second tick committed", || async {
        let slow = task(&client, "slow").await;
        (slow.tick == 2).then_some(slow)
    })
    .await;
    assert_eq!(second.next_due_ms, first.next_due_ms, "the schedule goes on as it was");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs(), 2, "one tick asked for, one tick run");

    let (out, _) = batonctl(&cluster, &[], &["tasks", "run-now", "no-such-task"]);
    assert_eq!(out.status.code(), Some(exit::NOT_FOUND.into()), "{}", stderr(&out));
    let (out, _) = batonctl(&cluster, &[], &["tasks", "pause", "slow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, _) = batonctl(&cluster, &[], &["tasks", "run-now", "slow"]);
    assert_eq!(out.status.code(), Some(exit::FAILED.into()), "{}", stderr(&out));
    assert!(stderr(&out).contains("slow is not running"), "{}", stderr(&out));
    let names = std::collections::BTreeSet::from(["slow".to_string()]);
    let report = task_api::witness_report(&client, &witness, &names).await;
    assert!(report.is_clean(), "{report}");
}

/// batonctl running in the background (`--follow`), what it printed so
/// far, line by line, on stdout and on stderr.
struct Follower {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    err: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Follower {
    fn start(cluster: &TestCluster, endpoints: &str, args: &[&str]) -> Follower {
        use std::io::BufRead;
        let (ca, cert, key) = cluster.local.admin_paths();
        let mut child = Command::new(find_binary("batonctl").expect("batonctl is built beside the tests"))
            .env("BATON_ENDPOINTS", endpoints)
            .env("BATON_CA", ca)
            .env("BATON_CERT", cert)
            .env("BATON_KEY", key)
            .env_remove("BATON_INSECURE")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("batonctl starts");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    eprintln!("  follower: {line}");
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Follower { child, out, err }
    }

    fn out(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn err(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    /// Its exit code once it exits by itself.
    async fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let child = &mut self.child;
        baton_cluster_tests::poll_async(timeout, "the follower to exit", || {
            let status = child.try_wait().unwrap();
            async move { status.map(|s| s.code()) }
        })
        .await
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The numbers of the greetings in `lines` (`hello, world (#N)`), in order.
fn greetings(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.split("(#").nth(1)?.trim_end_matches(')').parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_logs_shows_the_owners_lines_and_follows_them_across_a_move() {
    use baton_cluster_tests::poll_async;
    use baton_cluster_tests::task_api::{add, deploy, every, set_drained, task};

    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    deploy(&cluster, &client, "greeter").await;
    add(&client, every("hello", "greeter", 200, r#"{"name": "world"}"#)).await;
    let owner = poll_async(Duration::from_secs(30), "hello's third tick", || async {
        let hello = task(&client, "hello").await;
        (hello.tick >= 3).then_some(hello.owner)
    })
    .await;
    // Asked of a node that is not the owner: it asks the owner.
    let other = (1..=3).find(|id| *id != owner).unwrap();
    let other_endpoint = cluster.local.nodes[&other].addr.clone();
    let at_other = [("BATON_ENDPOINTS", Path::new(&other_endpoint))];

    let (out, _) = batonctl(&cluster, &at_other, &["tasks", "logs", "hello", "-n", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "the newest two lines: {text}");
    let numbers = greetings(&lines);
    assert_eq!(numbers.len(), 2, "{text}");
    assert_eq!(numbers[1], numbers[0] + 1, "oldest first, one per tick: {text}");
    assert!(
        lines[0].contains(&format!("node {owner}")) && lines[0].contains(" info "),
        "{text}"
    );

    let (out, _) = batonctl(
        &cluster,
        &at_other,
        &["tasks", "logs", "hello", "-n", "1", "-o", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["node"], owner);
    assert_eq!(json["level"], "info");
    assert!(
        json["message"].as_str().unwrap().starts_with("hello, world (#"),
        "{json}"
    );

    let (out, took) = batonctl(&cluster, &[], &["tasks", "logs", "no-such-task"]);
    assert_eq!(out.status.code(), Some(exit::NOT_FOUND.into()), "{}", stderr(&out));
    assert!(stderr(&out).contains("no task named no-such-task"), "{}", stderr(&out));
    assert!(took < FAST, "an unknown task took {took:?}");
    let (out, _) = batonctl(&cluster, &[], &["tasks", "logs", "hello", "-n", "0"]);
    assert_eq!(out.status.code(), Some(exit::USAGE.into()), "{}", stderr(&out));

    // Followed: new lines as they come, then from the new owner after a
    // drain moves the task, then the end when the task is removed.
    let mut follower = Follower::start(
        &cluster,
        &cluster.local.endpoints().join(","),
        &["tasks", "logs", "hello", "-f", "-n", "1"],
    );
    poll_async(Duration::from_secs(20), "the follower to print three lines", || async {
        (greetings(&follower.out()).len() >= 3).then_some(())
    })
    .await;
    set_drained(&client, owner, true).await;
    let moved_to = poll_async(Duration::from_secs(30), "hello to move off its owner", || async {
        let hello = task(&client, "hello").await;
        (hello.owner != owner && hello.owner != 0).then_some(hello.owner)
    })
    .await;
    poll_async(
        Duration::from_secs(20),
        "the follower to print the new owner's lines",
        || async {
            let out = follower.out();
            let from_new = out.iter().filter(|l| l.contains(&format!("node {moved_to} "))).count();
            (from_new >= 2).then_some(())
        },
    )
    .await;
    assert!(
        follower.err().contains(&format!("task hello moved to node {moved_to}")),
        "the follower says where the task went: {}",
        follower.err()
    );
    // Every greeting, in order, none missing across the move (the old
    // owner's last lines come before the new owner's), and no line twice. (A
    // tick run again after a failure logs its greeting again, with another
    // time.)
    let printed = follower.out();
    let numbers = greetings(&printed);
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1),
        "every greeting, in order, across the move: {numbers:?}"
    );
    let distinct: std::collections::BTreeSet<&String> = printed.iter().collect();
    assert_eq!(distinct.len(), printed.len(), "a line printed twice: {printed:?}");
    let (out, _) = batonctl(&cluster, &[], &["tasks", "rm", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let code = follower.exit_code(Duration::from_secs(20)).await;
    assert_eq!(code, Some(exit::NOT_FOUND.into()), "{}", follower.err());
    assert!(follower.err().contains("task hello was removed"), "{}", follower.err());
    set_drained(&client, owner, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_what_happened_the_same_on_every_node_and_follow_it() {
    use baton_cluster_tests::poll_async;
    use baton_cluster_tests::task_api::{add, deploy, every, set_drained, task};

    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    // At the highest cluster version, a lost node's tasks move in one
    // command, told as one failover.
    let highest = baton_node::state::cluster_version::VersionRange::SUPPORTED.max;
    baton_cluster_tests::upgrades::await_cluster_version(&client, highest).await;
    deploy(&cluster, &client, "counter").await;
    for name in ["e1", "e2", "e3"] {
        add(&client, every(name, "counter", 200, "")).await;
    }
    let mut follower = Follower::start(
        &cluster,
        &cluster.local.endpoints().join(","),
        &["events", "-f", "-o", "json"],
    );
    let kinds_followed = |follower: &Follower| -> Vec<String> {
        follower
            .out()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    poll_async(
        Duration::from_secs(20),
        "the follower to print the events so far",
        || async {
            kinds_followed(&follower)
                .contains(&"task-added".to_string())
                .then_some(())
        },
    )
    .await;

    // A drain and an undrain of a node that owns a task, then a kill of
    // another that owns one (not the leader: its lease ends, its tasks move).
    let owners = || async {
        let tasks = futures::future::join_all(["e1", "e2", "e3"].map(|n| task(&client, n))).await;
        tasks.iter().map(|t| t.owner).collect::<Vec<u64>>()
    };
    let drained = owners().await[0];
    set_drained(&client, drained, true).await;
    poll_async(Duration::from_secs(30), "e1 to move off the drained node", || async {
        (task(&client, "e1").await.owner != drained).then_some(())
    })
    .await;
    set_drained(&client, drained, false).await;
    // Once the undrained node has its share back (one task each), nothing
    // moves until the kill.
    let settled = poll_async(Duration::from_secs(30), "one task on each node", || async {
        let now = owners().await;
        let distinct: std::collections::BTreeSet<u64> = now.iter().copied().filter(|o| *o != 0).collect();
        (distinct.len() == 3).then_some(now)
    })
    .await;
    let victim = settled.iter().copied().find(|id| *id != leader);
    if let Some(victim) = victim {
        cluster.kill9(victim);
    }
    let client = cluster.client_for(
        &(1..=3)
            .filter(|id| Some(*id) != victim)
            .map(|id| cluster.local.nodes[&id].addr.clone())
            .collect::<Vec<_>>(),
    );
    let (out, _) = batonctl(&cluster, &[], &["tasks", "pause", "e2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut wanted = vec![
        "leader",
        "members",
        "module-released",
        "task-added",
        "drained",
        "hand-off",
        "handed-off",
        "undrained",
        "task-paused",
    ];
    if victim.is_some() {
        wanted.push("failover");
    }
    poll_async(
        Duration::from_secs(30),
        "the follower to print every kind of change made",
        || async {
            let seen = kinds_followed(&follower);
            wanted.iter().all(|k| seen.iter().any(|s| s == k)).then_some(())
        },
    )
    .await;

    // The same events, under the same numbers, from each node still up.
    let listing = |id: u64| {
        let endpoint = cluster.local.nodes[&id].addr.clone();
        let (out, _) = batonctl(
            &cluster,
            &[("BATON_ENDPOINTS", Path::new(&endpoint))],
            &["events", "-n", "1000", "-o", "json"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let e: serde_json::Value = serde_json::from_str(l).expect("a JSON event a line");
                (
                    e["index"].as_u64().unwrap(),
                    e["position"].as_u64().unwrap(),
                    e["kind"].to_string(),
                    e["text"].to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let up: Vec<u64> = (1..=3).filter(|id| Some(*id) != victim).collect();
    let first = listing(up[0]);
    let second = listing(up[1]);
    let common = first.len().min(second.len());
    assert!(common > 5, "{first:?}");
    assert_eq!(first[..common], second[..common], "every node tells the same story");
    if let Some(victim) = victim {
        let failover = first.iter().find(|e| e.2 == "\"failover\"").expect("a failover");
        assert!(failover.3.contains(&format!("node {victim} is gone")), "{failover:?}");
    }
    let (out, _) = batonctl(&cluster, &[], &["events", "-n", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("20") || l.starts_with("(time not known)")),
        "{text}"
    );
    assert!(
        follower.child.try_wait().unwrap().is_none(),
        "a follower goes on: {}",
        follower.err()
    );
    drop(client);
}
