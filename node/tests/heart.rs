//! `baton-heart` as a process, driving child programs scripted to run on,
//! die young, exit with a code or stop on SIGTERM: it vouches for an exit
//! as soon as it has reaped the process and for nothing else, starts a
//! dead node again with backoff, and passes SIGTERM on.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use baton_proto::AwaitExitRequest;
use baton_proto::heart_client::HeartClient;
use nix::sys::signal::{Signal, kill};
use support::heart::{free_port, poll, start_heart};

#[tokio::test]
async fn the_heart_vouches_for_a_killed_node_at_once_and_for_nothing_else() {
    let heart = start_heart("exec sleep 1000", &[]);
    let first = heart.await_starts(1, Duration::from_secs(20))[0].clone();
    let pid = poll(Duration::from_secs(10), "the pid file", || heart.node_pid());

    let alive = heart.ask(&first, 50).await;
    assert!(!alive.exited, "{alive:?}");
    assert_eq!(alive.detail, "still running");
    let stranger = heart.ask("0123456789abcdef", 5_000).await;
    assert!(!stranger.exited, "an incarnation it did not start: {stranger:?}");
    assert_eq!(stranger.detail, "not started by this heart");

    let waiting = {
        let (endpoint, first) = (heart.addr(), first.clone());
        tokio::spawn(async move {
            let mut client = HeartClient::connect(format!("http://{endpoint}")).await.unwrap();
            let request = AwaitExitRequest {
                incarnation: first,
                wait_ms: 5_000,
            };
            let reply = client.await_exit(request).await.unwrap().into_inner();
            (reply, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Instant::now();
    kill(pid, Signal::SIGKILL).unwrap();
    let (reply, answered) = waiting.await.unwrap();
    assert!(reply.exited, "{reply:?}");
    assert_eq!(reply.detail, "signal 9");
    assert!(
        answered - killed < Duration::from_secs(1),
        "the heart took {:?} to vouch for a killed process",
        answered - killed
    );

    // It starts the node again, as a new incarnation; the old one stays exited.
    let starts = heart.await_starts(2, Duration::from_secs(20));
    assert_ne!(starts[1], first);
    assert!(heart.ask(&first, 0).await.exited);
    assert!(!heart.ask(&starts[1], 0).await.exited);
}

#[tokio::test]
async fn a_node_that_dies_young_is_started_again_with_growing_pauses() {
    let heart = start_heart("exit 1", &[]);
    let started = Instant::now();
    let starts = heart.await_starts(4, Duration::from_secs(20));
    // Pauses of 100, 200 and 400 ms come before the fourth start.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "four starts after {:?}: no backoff",
        started.elapsed()
    );
    let distinct: std::collections::BTreeSet<&String> = starts.iter().collect();
    assert_eq!(
        distinct.len(),
        starts.len(),
        "every start is a new incarnation: {starts:?}"
    );
    let reply = heart.ask(&starts[0], 0).await;
    assert!(reply.exited && reply.detail == "exit status 1", "{reply:?}");
}

#[tokio::test]
async fn with_no_restart_the_heart_starts_the_node_once_and_vouches_until_stopped() {
    let mut heart = start_heart("exit 3", &["--no-restart"]);
    let first = heart.await_starts(1, Duration::from_secs(20))[0].clone();
    let reply = heart.ask(&first, 5_000).await;
    assert!(reply.exited && reply.detail == "exit status 3", "{reply:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(heart.incarnations().len(), 1, "started again despite --no-restart");
    assert!(heart.ask(&first, 0).await.exited, "it vouches on after the exit");
    // Its node had exited before: the heart itself stops cleanly.
    assert_eq!(heart.terminate(), Some(0));
}

#[tokio::test]
async fn sigterm_reaches_the_node_and_the_heart_exits_as_it_did() {
    let mut heart = start_heart(
        "trap 'echo stopped >> \"$DIR/stopped\"; exit 0' TERM\nwhile :; do sleep 0.05; done",
        &[],
    );
    heart.await_starts(1, Duration::from_secs(20));
    poll(Duration::from_secs(10), "the pid file", || heart.node_pid());
    assert_eq!(heart.terminate(), Some(0));
    assert!(heart.path().join("stopped").exists(), "the node never saw SIGTERM");
    assert!(
        !heart.path().join("node.pid").exists(),
        "the pid file outlived the node"
    );
}

#[test]
fn a_config_without_a_heart_table_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config: PathBuf = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "id = 1\nlisten_addr = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\ninsecure = true\n\n\
             [cluster]\ninitial_members = [{{ id = 1, addr = \"127.0.0.1:{port}\" }}]\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_baton-heart"))
        .arg("--config")
        .arg(&config)
        .arg("--node-binary")
        .arg("/bin/true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has no [heart] table") && stderr.contains("listen_addr"),
        "{stderr}"
    );
}
