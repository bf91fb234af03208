//! `baton-heart` as a process, driving child programs scripted to run on,
//! die young, exit with a code or stop on SIGTERM: it vouches for an exit
//! as soon as it has reaped the process and for nothing else, starts a
//! dead node again with backoff, and passes SIGTERM on.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_proto::heart_client::HeartClient;
use baton_proto::{AwaitExitReply, AwaitExitRequest};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A heart started on a scripted "node" in a directory of its own.
struct HeartUnderTest {
    process: Child,
    dir: tempfile::TempDir,
}

impl Drop for HeartUnderTest {
    fn drop(&mut self) {
        if let Some(pid) = self.node_pid() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a heart (on a free port) whose node is the shell script `body`
/// (it can use `$BATON_INCARNATION` and `$DIR`; each start is logged to
/// `$DIR/starts`, and the heart's address it was told to `$DIR/heart`).
fn start_heart(body: &str, extra: &[&str]) -> HeartUnderTest {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("node.sh");
    let text = format!(
        "#!/bin/sh\nDIR={}\necho \"$BATON_HEART_ADDR\" > \"$DIR/heart\"\n\
         echo \"$BATON_INCARNATION\" >> \"$DIR/starts\"\n{body}\n",
        dir.path().display()
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let config = format!(
        "id = 1\nlisten_addr = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\ninsecure = true\n\n\
         [cluster]\ninitial_members = [{{ id = 1, addr = \"127.0.0.1:{port}\" }}]\n\n\
         [heart]\nlisten_addr = \"127.0.0.1:0\"\n"
    );
    let config_path = dir.path().join("node.toml");
    std::fs::File::create(&config_path)
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let process = Command::new(env!("CARGO_BIN_EXE_baton-heart"))
        .arg("--config")
        .arg(&config_path)
        .arg("--node-binary")
        .arg(&script)
        .arg("--pid-file")
        .arg(dir.path().join("node.pid"))
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    HeartUnderTest { process, dir }
}

impl HeartUnderTest {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The address the heart told its node.
    fn addr(&self) -> String {
        poll(Duration::from_secs(20), "the heart's address", || {
            let text = std::fs::read_to_string(self.path().join("heart")).ok()?;
            let addr = text.trim().to_string();
            (!addr.is_empty()).then_some(addr)
        })
    }

    fn incarnations(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("starts"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn node_pid(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(self.path().join("node.pid")).ok()?;
        Some(Pid::from_raw(text.trim().parse().ok()?))
    }

    /// Waits until the node has started `n` times; returns the incarnations.
    fn await_starts(&self, n: usize, within: Duration) -> Vec<String> {
        poll(within, &format!("{n} start(s)"), || {
            let starts = self.incarnations();
            (starts.len() >= n).then_some(starts)
        })
    }

    async fn ask(&self, incarnation: &str, wait_ms: u32) -> AwaitExitReply {
        let endpoint = format!("http://{}", self.addr());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut client = loop {
            match HeartClient::connect(endpoint.clone()).await {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("the heart at {endpoint} never listened: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let request = AwaitExitRequest {
            incarnation: incarnation.to_string(),
            wait_ms,
        };
        client
            .await_exit(request)
            .await
            .expect("the heart answers")
            .into_inner()
    }

    /// Asks the heart to stop and returns its exit code.
    fn terminate(&mut self) -> Option<i32> {
        let _ = kill(Pid::from_raw(self.process.id() as i32), Signal::SIGTERM);
        let process = &mut self.process;
        poll(Duration::from_secs(20), "the heart to exit", || {
            process.try_wait().unwrap().map(|status| status.code())
        })
    }
}

fn poll<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

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
