//! Each node's plain-HTTP listener, seen from outside: `/healthz`,
//! `/readyz` and `/metrics` answer on every node of a 3-node cluster, and a
//! real Prometheus server scraping them sees every node up, one leader, the
//! tasks, and the tick counters rising while the cluster runs; a killed
//! node shows as down, and its tasks' move as a failover; with the leader
//! killed too, the last node answers `/readyz` with 503. With `[metrics]
//! tls = true`, the same listener serves HTTPS: Prometheus scrapes it with
//! the cluster CA, and the admin certificate unlocks the status page's
//! manual steps.

use std::sync::Arc;
use std::time::Duration;

use baton_cluster_tests::http::{Transport, get, request_over};
use baton_cluster_tests::prometheus::Prometheus;
use baton_cluster_tests::task_api::{start_counters, task};
use baton_cluster_tests::{TestCluster, poll_async};

const TASKS: usize = 12;
const PERIOD_MS: u64 = 250;
const ANSWER: Duration = Duration::from_secs(5);

/// The sum of the query's series, once Prometheus answers with at least
/// one.
async fn sum(prometheus: &Prometheus, expr: &str) -> Option<f64> {
    let samples = prometheus.query(expr).await.ok()?;
    (!samples.is_empty()).then(|| samples.iter().map(|s| s.value).sum())
}

/// Waits until the node that answers says `name` is `status` (a node
/// behind the leader says so once it has applied the step).
async fn await_status(client: &batonctl::ClusterClient, name: &str, status: &str) {
    poll_async(Duration::from_secs(10), &format!("{name} {status}"), || async {
        (task(client, name).await.status == status).then_some(())
    })
    .await;
}

/// Some when the query's answer is `n` series, each `value`.
async fn each_of(prometheus: &Prometheus, expr: &str, n: usize, value: f64) -> Option<()> {
    let samples = prometheus.query(expr).await.ok()?;
    (samples.len() == n && samples.iter().all(|s| s.value == value)).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_node_and_sees_the_ticks_rise_and_a_failover() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    start_counters(&cluster, &client, TASKS, PERIOD_MS).await;
    let targets: Vec<String> = cluster.local.nodes.values().map(|n| n.metrics_addr.clone()).collect();

    for addr in &targets {
        poll_async(
            Duration::from_secs(30),
            &format!("{addr}/readyz to answer 200"),
            || async {
                let answer = get(addr, "/readyz", ANSWER).await.ok()?;
                (answer.status == 200).then_some(())
            },
        )
        .await;
        let health = get(addr, "/healthz", ANSWER).await.unwrap();
        assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
        let metrics = get(addr, "/metrics", ANSWER).await.unwrap();
        assert_eq!(metrics.status, 200);
        assert!(
            metrics.content_type.starts_with("application/openmetrics-text"),
            "{}",
            metrics.content_type
        );
        for name in [
            "baton_ticks_total{",
            "baton_tick_lateness_seconds_bucket{",
            "baton_tick_commit_lateness_seconds_bucket{le=\"0.05\"} ",
            "baton_raft_term ",
            "baton_raft_commit_index ",
            "baton_tasks{status=\"running\"} 12",
            "baton_storage_commit_duration_seconds_count ",
            "baton_writes_abandoned_total ",
            "baton_build_info{",
            "baton_grpc_requests_total{service=\"",
            "baton_ready ",
        ] {
            assert!(metrics.body.contains(name), "{addr}: no {name:?} in\n{}", metrics.body);
        }
        let missing = get(addr, "/nothing", ANSWER).await.unwrap();
        assert_eq!(missing.status, 404);
    }

    let prometheus = Prometheus::start(&cluster.path().join("prometheus"), &targets, Duration::from_millis(500))
        .unwrap_or_else(|e| panic!("{e}"));
    poll_async(Duration::from_secs(60), "Prometheus to see every node up", || {
        each_of(&prometheus, "up", 3, 1.0)
    })
    .await;
    let first = poll_async(Duration::from_secs(30), "a tick counted", || async {
        sum(&prometheus, "sum(baton_ticks_total{outcome=\"ok\"})")
            .await
            .filter(|n| *n > 0.0)
    })
    .await;
    // 12 tasks every 250 ms: about 48 ticks a second.
    poll_async(Duration::from_secs(30), "the tick counters to rise", || async {
        sum(&prometheus, "sum(baton_ticks_total{outcome=\"ok\"})")
            .await
            .filter(|n| *n >= first + 50.0)
    })
    .await;
    // Every node applies every tick commit, and observes how late it was.
    poll_async(
        Duration::from_secs(30),
        "every node to count tick commits' lateness",
        || async {
            sum(&prometheus, "count(baton_tick_commit_lateness_seconds_count > 0)")
                .await
                .filter(|n| *n == 3.0)
        },
    )
    .await;
    assert_eq!(sum(&prometheus, "sum(baton_raft_is_leader)").await, Some(1.0));
    // The followers answer the leader's appends (the leader itself may
    // have answered some too, if leadership moved while the cluster formed).
    let appends = "count(baton_grpc_requests_total{service=\"Raft\",method=\"AppendEntries\",code=\"OK\"} > 0)";
    let answering = sum(&prometheus, appends).await;
    assert!(answering >= Some(2.0), "nodes that answered appends: {answering:?}");
    assert_eq!(
        sum(&prometheus, "min(baton_tasks{status=\"running\"})").await,
        Some(TASKS as f64)
    );
    poll_async(Duration::from_secs(30), "every task owned once", || async {
        sum(&prometheus, "sum(baton_tasks_owned)")
            .await
            .filter(|n| *n == TASKS as f64)
    })
    .await;

    // A follower that owns tasks is killed: Prometheus sees it down, and
    // the leader counts the move of its tasks as a failover.
    let status = batonctl::cmd::status::fetch(&client).await.unwrap();
    let leader = status.leader.expect("a leader");
    let victim = status
        .members
        .iter()
        .find(|m| m.id != leader && m.tasks > 0)
        .map(|m| m.id)
        .expect("a follower that owns tasks");
    cluster.kill9(victim);
    poll_async(
        Duration::from_secs(30),
        "Prometheus to see the killed node down",
        || async {
            let up = prometheus.query("up").await.ok()?;
            let down: Vec<_> = up.iter().filter(|s| s.value == 0.0).collect();
            (down.len() == 1 && up.len() == 3).then_some(())
        },
    )
    .await;
    // Its heart vouched for its exit: the fast path.
    poll_async(Duration::from_secs(30), "the failover counted", || async {
        sum(&prometheus, "sum(baton_failovers_total{reason=\"process_gone\"})")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    poll_async(Duration::from_secs(30), "the survivors to own every task", || async {
        sum(&prometheus, "sum(baton_tasks_owned) and on() (sum(up) == 2)")
            .await
            .filter(|n| *n == TASKS as f64)
    })
    .await;
    // Counted once, however many rounds of placement came after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sum(&prometheus, "sum(baton_failovers_total)").await, Some(1.0));
    assert_eq!(
        sum(&prometheus, "sum(baton_failover_duration_seconds_count)").await,
        Some(1.0)
    );
    // The leader's calls to the dead node fail, and are counted as its.
    poll_async(
        Duration::from_secs(30),
        "the leader to count failed replication to the killed node",
        || async {
            let expr = format!("sum(baton_raft_replication_failures_total{{peer=\"{victim}\"}})");
            sum(&prometheus, &expr).await.filter(|n| *n >= 1.0)
        },
    )
    .await;

    // The leader killed too: the node left has no leader to follow, so it
    // is not ready (a load balancer or orchestrator takes it out), though
    // its process is healthy.
    let last = (1..=3).find(|id| *id != victim && *id != leader).unwrap();
    let addr = cluster.local.nodes[&last].metrics_addr.clone();
    cluster.kill9(leader);
    let not_ready = poll_async(Duration::from_secs(30), "/readyz to answer 503", || async {
        let answer = get(&addr, "/readyz", ANSWER).await.ok()?;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert!(not_ready.body.starts_with("not ready: "), "{}", not_ready.body);
    let health = get(&addr, "/healthz", ANSWER).await.unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
}

/// A client config for the metrics listener over TLS: the cluster CA as
/// the only root, and the certificate chain and key in `client`, if any.
fn tls_client(ca: &std::path::Path, client: Option<(&std::path::Path, &std::path::Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_prometheus_scrapes_with_the_cluster_ca_and_the_admin_certificate_unlocks_steps() {
    baton_node::tls::install_crypto_provider();
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    start_counters(&cluster, &client, 3, PERIOD_MS).await;
    // Every node restarted with `[metrics] tls = true`.
    let ids: Vec<u64> = cluster.local.nodes.keys().copied().collect();
    for id in &ids {
        assert!(
            cluster.local.stop(*id, Duration::from_secs(10)).unwrap(),
            "node {id} stopped cleanly"
        );
        let path = cluster.local.nodes[id].config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config: baton_node::config::NodeConfig = toml::from_str(&text).unwrap();
        config.metrics.as_mut().expect("a [metrics] table").tls = true;
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    }
    for id in &ids {
        cluster.restart(*id);
    }
    let (ca, admin_cert, admin_key) = cluster.local.admin_paths();
    let over = |config: &Arc<rustls::ClientConfig>, id: u64| Transport::Tls {
        config: config.clone(),
        server_name: baton_node::tls::node_dns_name(id),
    };
    let anonymous = tls_client(&ca, None);
    let admin = tls_client(&ca, Some((&admin_cert, &admin_key)));
    let mut targets = Vec::new();
    for id in &ids {
        let addr = cluster.local.nodes[id].metrics_addr.clone();
        // A scraper with the cluster CA and no certificate of its own.
        let ready = poll_async(
            Duration::from_secs(60),
            &format!("node {id}'s /readyz over TLS"),
            || async {
                let answer = request_over(&over(&anonymous, *id), &addr, "GET", "/readyz", &[], "", ANSWER)
                    .await
                    .ok()?;
                (answer.status == 200).then_some(answer)
            },
        )
        .await;
        assert_eq!(ready.body, "ready\n");
        let metrics = request_over(&over(&anonymous, *id), &addr, "GET", "/metrics", &[], "", ANSWER)
            .await
            .unwrap();
        assert!(metrics.body.contains("baton_raft_term "), "{}", metrics.body);
        // Plain HTTP gets no answer.
        assert!(
            get(&addr, "/healthz", ANSWER).await.is_err(),
            "plain HTTP answered over TLS"
        );
        targets.push((addr, baton_node::tls::node_dns_name(*id)));
    }

    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let addr = cluster.local.nodes[&leader].metrics_addr.clone();
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let pause = "step=pause-task&task=c000&back=%2Ftasks";
    let post = |config: &Arc<rustls::ClientConfig>, headers: Vec<(&'static str, String)>| {
        let (transport, addr) = (over(config, leader), addr.clone());
        async move {
            let headers: Vec<(&str, &str)> = std::iter::once(form)
                .chain(headers.iter().map(|(n, v)| (*n, v.as_str())))
                .collect();
            request_over(&transport, &addr, "POST", "/act", &headers, pause, ANSWER)
                .await
                .unwrap()
        }
    };
    // Without a certificate or token: refused, and the page names both
    // credentials.
    let refused = post(&anonymous, vec![]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("or show the admin certificate"),
        "{}",
        refused.body
    );
    // A node's certificate is no admin's.
    let certs = ca.parent().unwrap();
    let (node_cert, node_key) = batonctl::pki::node_cert_paths(certs, leader);
    let node = tls_client(&ca, Some((&node_cert, &node_key)));
    let refused = post(&node, vec![("X-Baton-Step", "1".into())]).await;
    assert_eq!(refused.status, 403, "a node's certificate: {}", refused.body);
    // The admin certificate, which a browser shows by itself: refused from
    // another site's page, and without a word of where it comes from
    // unless a script's header says so.
    let from_elsewhere: [Vec<(&'static str, String)>; 3] = [
        vec![("Origin", "https://evil.example".into())],
        vec![("Sec-Fetch-Site", "cross-site".into())],
        vec![],
    ];
    for headers in from_elsewhere {
        let refused = post(&admin, headers.clone()).await;
        assert_eq!(refused.status, 403, "{headers:?}: {}", refused.body);
        assert!(
            refused.body.contains("not sent from this node's page"),
            "{}",
            refused.body
        );
    }
    assert_eq!(
        task(&client, "c000").await.status,
        "running",
        "a refused step paused it"
    );
    // The admin certificate, from a script or the page itself: taken.
    let page = request_over(&over(&admin, leader), &addr, "GET", "/tasks", &[], "", ANSWER)
        .await
        .unwrap();
    assert!(
        page.body.contains("admin certificate") && page.body.contains("data-step="),
        "{}",
        page.body
    );
    let done = post(&admin, vec![("X-Baton-Step", "1".into())]).await;
    assert_eq!(
        (done.status, done.body.as_str()),
        (303, "Paused task c000.\n"),
        "a script with the admin certificate"
    );
    await_status(&client, "c000", "paused").await;
    let resume = "step=resume-task&task=c000&back=%2Ftasks";
    let origin = format!("https://{addr}");
    let headers = [form, ("Origin", origin.as_str())];
    let done = request_over(&over(&admin, leader), &addr, "POST", "/act", &headers, resume, ANSWER)
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.body.as_str()),
        (303, "Resumed task c000.\n"),
        "the page with the admin certificate"
    );
    assert!(
        done.header("set-cookie").is_some_and(|c| c.contains("Secure")),
        "over TLS a cookie is Secure: {:?}",
        done.headers
    );
    await_status(&client, "c000", "running").await;
    // A certificate of another CA fails the handshake.
    let other = tempfile::tempdir().unwrap();
    batonctl::pki::init(other.path(), &[batonctl::pki::NodeSpec::local(1)]).unwrap();
    let (other_cert, other_key) = batonctl::pki::admin_cert_paths(other.path());
    let foreign = tls_client(&ca, Some((&other_cert, &other_key)));
    let refused = request_over(&over(&foreign, leader), &addr, "GET", "/healthz", &[], "", ANSWER).await;
    assert!(refused.is_err(), "a foreign certificate was taken: {refused:?}");

    // A real Prometheus scrapes every node over HTTPS with the cluster CA.
    let prometheus = Prometheus::start_tls(
        &cluster.path().join("prometheus"),
        &targets,
        &ca,
        Duration::from_millis(500),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    poll_async(
        Duration::from_secs(60),
        "Prometheus to see every node up over TLS",
        || each_of(&prometheus, "up", 3, 1.0),
    )
    .await;
    poll_async(Duration::from_secs(30), "the running tasks counted over TLS", || {
        each_of(&prometheus, "baton_tasks{status=\"running\"}", 3, 3.0)
    })
    .await;
}
