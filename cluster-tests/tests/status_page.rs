//! The status page, seen from outside: every node of a 3-node cluster
//! serves it; it reads the cluster as `batonctl` does; it takes no manual
//! step without the admin token, nor from another site's page; and a real
//! browser (headless Chromium) sees it update live, signs in, pauses and
//! resumes a task, drains and undrains a node, and sees a killed node's
//! tasks move, while a witness outside the cluster sees the paused task
//! stop and no task run on two nodes at once.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_cluster_tests::browser::Browser;
use baton_cluster_tests::http::{Answer, get, request};
use baton_cluster_tests::task_api::{history, start_counters, start_witnessed, task, tasks, witness_report};
use baton_cluster_tests::upgrades::await_cluster_version;
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::{TestCluster, poll_async};
use baton_node::state::cluster_version::VersionRange;

const ANSWER: Duration = Duration::from_secs(10);
const PERIOD_MS: u64 = 250;

/// Waits for the page's notice to start with `text` (a step's form posts,
/// and the browser follows the answer's redirect), and returns it.
async fn notice(browser: &Browser, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let shown = browser.text("#notice").await.unwrap_or_default();
        if shown.starts_with(text) {
            return shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 15 s for the notice {text:?}; {} shows {shown:?}",
            browser.url().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(addr: &str, path: &str, headers: &[(&str, &str)], form: &str) -> Answer {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request(addr, "POST", path, &all, form, ANSWER).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_the_page_and_its_steps_need_the_token_from_this_site() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let names = start_counters(&cluster, &client, 6, PERIOD_MS).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let token = cluster.local.admin_token().expect("a local cluster has an admin token");

    for node in cluster.local.nodes.values() {
        let addr = &node.metrics_addr;
        let overview = get(addr, "/", ANSWER).await.unwrap();
        assert_eq!(overview.status, 200, "{addr}: {}", overview.body);
        assert!(
            overview.content_type.starts_with("text/html"),
            "{}",
            overview.content_type
        );
        assert!(
            overview.body.contains(&format!("<b id=\"leader\">node {leader}</b>")),
            "node {}: {}",
            node.id,
            overview.body
        );
        assert!(overview.body.contains("<b id=\"tasks-running\">6</b>"));
        let all = get(addr, "/tasks", ANSWER).await.unwrap();
        assert!(
            all.body.contains("<p id=\"task-count\">6 of 6 tasks</p>"),
            "{}",
            all.body
        );
        for name in &names {
            assert!(all.body.contains(&format!("data-task=\"{name}\"")), "{name}");
        }
        // The page says what the cluster says (polled: a task may move
        // between the two looks).
        poll_async(
            Duration::from_secs(20),
            "the filtered count to match the cluster's",
            || async {
                let owned_by_1 = tasks(&client).await.iter().filter(|t| t.owner == 1).count();
                let filtered = get(addr, "/tasks?module=counter&owner=1&page=abc", ANSWER).await.ok()?;
                let count = format!("<p id=\"task-count\">{owned_by_1} of 6 tasks</p>");
                filtered.body.contains(&count).then_some(())
            },
        )
        .await;
        let one = get(addr, "/tasks/c000", ANSWER).await.unwrap();
        assert_eq!(one.status, 200);
        assert!(one.body.contains("<h1>Task c000</h1>") && one.body.contains("<table id=\"history\">"));
        assert!(
            one.body.contains("Sign in to see what its module logged"),
            "a module's lines only to the signed in: {}",
            one.body
        );
        let nodes = get(addr, "/nodes", ANSWER).await.unwrap();
        assert_eq!(nodes.body.matches("<tr data-node=").count(), 3, "{}", nodes.body);
        let modules = get(addr, "/modules", ANSWER).await.unwrap();
        assert!(modules.body.contains("<td>counter</td>"), "{}", modules.body);
        assert_eq!(get(addr, "/tasks/nothing-here", ANSWER).await.unwrap().status, 404);
        // Reading needs no token, so the page offers no step until signed in.
        assert!(all.body.contains("sign in for manual steps") && !all.body.contains("data-step="));
    }

    let addr = &cluster.local.nodes[&leader].metrics_addr;
    let pause = "step=pause-task&task=c000&back=%2Ftasks";
    let bearer = format!("Bearer {token}");
    let from_here = format!("http://{addr}");
    let refused = [
        ("no token", vec![]),
        (
            "a wrong token",
            vec![("Authorization", "Bearer not-the-token-at-all-000")],
        ),
        (
            "another site's page",
            vec![("Authorization", bearer.as_str()), ("Origin", "http://evil.example")],
        ),
    ];
    let run_now = "step=run-now&task=c000&back=%2Ftasks";
    for (what, headers) in refused {
        for step in [pause, run_now] {
            let answer = post(addr, "/act", &headers, step).await;
            assert_eq!(answer.status, 403, "{what}: {}", answer.body);
        }
        assert_eq!(task(&client, "c000").await.status, "running", "{what} paused it");
    }
    let done = post(addr, "/act", &[("Authorization", &bearer)], pause).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), Some("/tasks"));
    assert_eq!(done.body, "Paused task c000.\n");
    assert_eq!(task(&client, "c000").await.status, "paused");

    // A follower names the leader, which takes the steps.
    let follower = cluster.local.nodes.keys().copied().find(|id| *id != leader).unwrap();
    let there = &cluster.local.nodes[&follower].metrics_addr;
    let resume = "step=resume-task&task=c000&back=%2Ftasks%2Fc000";
    let redirected = post(there, "/act", &[("Authorization", &bearer)], resume).await;
    assert_eq!(redirected.header("location"), Some("/tasks/c000"));
    assert!(
        redirected
            .body
            .starts_with(&format!("refused: this node is not the leader; node {leader} at")),
        "{}",
        redirected.body
    );
    assert_eq!(task(&client, "c000").await.status, "paused");

    // The sign-in form sets a session cookie, which takes steps in the
    // token's place from this page, and only from it.
    let wrong = post(addr, "/login", &[], "token=not-the-token-at-all-000").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let signed_in = post(addr, "/login", &[], &format!("token={token}")).await;
    assert_eq!(signed_in.status, 303);
    let port = addr.rsplit(':').next().unwrap();
    let session = signed_in
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .map(|(_, value)| value.split(';').next().unwrap().to_string())
        .find(|cookie| cookie.starts_with(&format!("baton_admin_{port}=")))
        .expect("a session cookie named for the port");
    assert!(!session.contains(&token), "the cookie must not hold the token itself");
    for (what, headers) in [
        ("no Origin", vec![("Cookie", session.as_str())]),
        (
            "another site's Origin",
            vec![("Cookie", session.as_str()), ("Origin", "http://evil.example")],
        ),
        (
            "a same-site page",
            vec![("Cookie", session.as_str()), ("Sec-Fetch-Site", "same-site")],
        ),
    ] {
        let answer = post(addr, "/act", &headers, resume).await;
        assert_eq!(answer.status, 403, "a session with {what}: {}", answer.body);
        assert_eq!(
            task(&client, "c000").await.status,
            "paused",
            "a session with {what} resumed it"
        );
    }
    let resumed = post(addr, "/act", &[("Cookie", &session), ("Origin", &from_here)], resume).await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    assert_eq!(task(&client, "c000").await.status, "running");
    let page = request(addr, "GET", "/tasks", &[("Cookie", &session)], "", ANSWER)
        .await
        .unwrap();
    assert!(
        page.body.contains("data-step=\"pause-task\""),
        "signed in, the page offers steps"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    // On a follower, the signed-in reader is sent to the leader's page.
    let elsewhere = request(there, "GET", "/tasks", &[("Authorization", &bearer)], "", ANSWER)
        .await
        .unwrap();
    assert!(elsewhere.body.contains("id=\"steps-elsewhere\"") && !elsewhere.body.contains("data-step="));
    // Signed in, a task's page shows what its module logged, from its
    // owner, on any node (the counter logs nothing).
    for at in [addr, there] {
        let page = request(at, "GET", "/tasks/c000", &[("Authorization", &bearer)], "", ANSWER)
            .await
            .unwrap();
        assert!(
            page.body.contains("id=\"log-lines\"") && page.body.contains("(its owner) yet"),
            "{}",
            page.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sees_the_page_live_and_takes_manual_steps_that_a_witness_confirms() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let witness = Witness::start("127.0.0.1:0", Duration::ZERO).await.unwrap();
    let names = start_witnessed(&cluster, &client, &witness, 4, PERIOD_MS).await;
    // "Run now" needs the cluster version that knows it; a new cluster
    // raises its version a step at a time.
    await_cluster_version(&client, VersionRange::SUPPORTED.max).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let token = cluster.local.admin_token().unwrap();
    let base = format!("http://{}", cluster.local.nodes[&leader].metrics_addr);
    let browser = Browser::start(&cluster.path().join("chromedriver.log"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Live: the tick count changes without a reload.
    browser.open(&format!("{base}/tasks")).await.unwrap();
    assert_eq!(browser.text("#task-count").await.unwrap(), "4 of 4 tasks");
    browser.eval("window.loadedOnce = true; return null;").await.unwrap();
    let tick_cell = "tr[data-task=\"w00\"] td:nth-child(6)";
    let first: u64 = browser.text(tick_cell).await.unwrap().parse().unwrap();
    poll_async(
        Duration::from_secs(20),
        "the page to show a later tick by itself",
        || async {
            let now: u64 = browser.text(tick_cell).await.ok()?.parse().ok()?;
            (now > first).then_some(())
        },
    )
    .await;
    let kept = browser.eval("return window.loadedOnce === true;").await.unwrap();
    assert_eq!(
        kept,
        serde_json::Value::Bool(true),
        "the page was reloaded, not updated"
    );
    assert!(browser.find("button[data-step]").await.unwrap().is_none());
    // Signing in.
    browser.open(&format!("{base}/login")).await.unwrap();
    browser.type_into("input[name=token]", &token).await.unwrap();
    browser.click("form[action=\"/login\"] button").await.unwrap();
    notice(&browser, "Signed in.").await;

    // Pause a task from its page: the cluster says paused, and the witness
    // sees it stop.
    browser.open(&format!("{base}/tasks/w00")).await.unwrap();
    browser.click("button[data-step=\"pause-task\"]").await.unwrap();
    notice(&browser, "Paused task w00.").await;
    assert_eq!(task(&client, "w00").await.status, "paused");
    // A tick in flight when the pause committed may still reach the
    // witness, at most one past the last committed; none after it.
    let paused_at = task(&client, "w00").await.tick;
    let runs_of = |name: &str| {
        witness
            .runs()
            .into_iter()
            .filter(|r| r.task == name)
            .collect::<Vec<_>>()
    };
    tokio::time::sleep(Duration::from_millis(10 * PERIOD_MS)).await;
    let late: Vec<_> = runs_of("w00").into_iter().filter(|r| r.tick > paused_at + 1).collect();
    assert!(late.is_empty(), "the witness saw the paused task run: {late:?}");
    let paused_runs = runs_of("w00").len();
    browser.click("button[data-step=\"resume-task\"]").await.unwrap();
    notice(&browser, "Resumed task w00.").await;
    browser.click("button[data-step=\"run-now\"]").await.unwrap();
    notice(&browser, "Asked task w00 for a tick now.").await;
    poll_async(Duration::from_secs(20), "the witness to see w00 run again", || async {
        (runs_of("w00").len() > paused_runs).then_some(())
    })
    .await;

    // Drain a node from the nodes page: its tasks move off, seen by the
    // cluster, then undrain it.
    let drained = cluster.local.nodes.keys().copied().find(|id| *id != leader).unwrap();
    browser.open(&format!("{base}/nodes")).await.unwrap();
    browser
        .click(&format!("tr[data-node=\"{drained}\"] button[data-step=\"drain\"]"))
        .await
        .unwrap();
    notice(&browser, &format!("Drained node {drained}")).await;
    poll_async(
        Duration::from_secs(30),
        "the drained node's tasks to move off",
        || async {
            let all = tasks(&client).await;
            all.iter().all(|t| t.owner != drained).then_some(())
        },
    )
    .await;
    browser
        .click(&format!("tr[data-node=\"{drained}\"] button[data-step=\"undrain\"]"))
        .await
        .unwrap();
    notice(&browser, &format!("Undrained node {drained}")).await;

    if let Some(dir) = std::env::var_os("BATON_SCREENSHOTS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        // After the steps: the strips show the moves, the page its buttons.
        browser.open(&format!("{base}/")).await.unwrap();
        browser.screenshot(&dir.join("status-page-overview.png")).await.unwrap();
        browser.open(&format!("{base}/tasks")).await.unwrap();
        browser.screenshot(&dir.join("status-page-tasks.png")).await.unwrap();
    }

    // A failover, seen without a reload: a follower is killed, and the
    // task table shows its tasks on other nodes, each strip with a move.
    browser.open(&format!("{base}/tasks")).await.unwrap();
    browser.eval("window.loadedOnce = true; return null;").await.unwrap();
    let killed = cluster.local.nodes.keys().copied().find(|id| *id != leader).unwrap();
    // Tasks that have ticked on the node to kill (one just handed to it may
    // not have, and would show no move when it goes back).
    let lost: Vec<String> = poll_async(
        Duration::from_secs(30),
        "a task ticking on the node to kill",
        || async {
            let mut ticked_there = Vec::new();
            for t in tasks(&client).await.into_iter().filter(|t| t.owner == killed) {
                if history(&client, &t.name)
                    .await
                    .last()
                    .is_some_and(|tick| tick.node == killed)
                {
                    ticked_there.push(t.name);
                }
            }
            (!ticked_there.is_empty()).then_some(ticked_there)
        },
    )
    .await;
    let moves_of =
        |name: &str| format!("return document.querySelectorAll('tr[data-task=\"{name}\"] .strip i.moved').length;");
    let mut moves_before = Vec::new();
    for name in &lost {
        moves_before.push(browser.eval(&moves_of(name)).await.unwrap().as_u64().unwrap());
    }
    cluster.kill9(killed);
    // Each lost task shows on another node as soon as it is placed, and a
    // new move in its strip once that node has committed a tick. (Its heart
    // starts the killed node again, which may later get tasks back.)
    for (name, before) in lost.iter().zip(moves_before) {
        let owner = format!("tr[data-task=\"{name}\"] td:nth-child(4)");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen_elsewhere = false;
        loop {
            let shown = browser.text(&owner).await.unwrap_or_default();
            seen_elsewhere |= shown.starts_with("node ") && shown != format!("node {killed}");
            let moves = browser
                .eval(&moves_of(name))
                .await
                .ok()
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            if seen_elsewhere && moves > before {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page never showed {name} moved off node {killed} (shows {shown:?}, {moves} moves)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let kept = browser.eval("return window.loadedOnce === true;").await.unwrap();
    assert_eq!(
        kept,
        serde_json::Value::Bool(true),
        "the page was reloaded, not updated"
    );

    let all: BTreeSet<String> = names;
    let report = witness_report(&client, &witness, &all).await;
    assert!(report.is_clean(), "{report}");
}
