//! The binaries as a user runs them: config errors, `batonctl` errors, and
//! `batonctl dev` from start to Ctrl-C.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use baton_cluster_tests::local_cluster::find_binary;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn binary(name: &str) -> std::path::PathBuf {
    find_binary(name).unwrap_or_else(|| panic!("{name} is built beside the tests (cargo test --workspace builds it)"))
}

fn write_config(dir: &Path, port: u16, extra: &str, members: &str) -> std::path::PathBuf {
    let n = std::fs::read_dir(dir).unwrap().count();
    let path = dir.join(format!("node-{n}.toml"));
    let text = format!(
        "id = 1\nlisten_addr = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\ninsecure = true\n{extra}\n\
         [cluster]\ninitial_members = [{members}]\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn baton_node_refuses_a_bad_config_before_binding_anything() {
    let dir = tempfile::tempdir().unwrap();
    // Hold the configured port: a node that tried to bind before validating
    // would fail with "cannot listen on" (exit 1) instead of the config error.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let me = format!("{{ id = 1, addr = \"127.0.0.1:{port}\" }}");
    let cases = [
        (
            write_config(dir.path(), port, "heartbeat = 5", &me),
            "unknown field `heartbeat`",
        ),
        (
            write_config(
                dir.path(),
                port,
                "",
                &format!("{me}, {{ id = 1, addr = \"127.0.0.1:1\" }}"),
            ),
            "duplicate node id 1",
        ),
        (
            write_config(
                dir.path(),
                port,
                "[timing]\nheartbeat_interval_ms = 900\nelection_timeout_min_ms = 300",
                &me,
            ),
            "timing.election_timeout_min_ms",
        ),
        (
            write_config(dir.path(), port, "advertise_addr = \"nowhere\"", &me),
            "advertise_addr",
        ),
    ];
    for (config, expected) in cases {
        let text = std::fs::read_to_string(&config).unwrap();
        let out = Command::new(binary("baton-node"))
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "config:\n{text}\nstderr: {stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in: {stderr}");
        // It never got to binding, and wrote nothing.
        assert!(!stderr.contains("cannot listen"), "{stderr}");
        assert!(!dir.path().join("data").exists());
    }
    let missing = Command::new(binary("baton-node"))
        .args(["--config", "/nonexistent/node.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read config file"));

    let good = write_config(dir.path(), port, "", &me);
    let out = Command::new(binary("baton-node"))
        .arg("--config")
        .arg(&good)
        .arg("--check")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--log-format json` (here through `BATON_LOG_FORMAT`, as a heart passes
/// it on): every line the node writes to stderr while it runs is one JSON
/// object, its fields beside the message. A metrics port that is taken
/// stops the node with what to change.
#[test]
fn baton_node_logs_json_lines_and_names_a_taken_metrics_port() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let port = baton_cluster_tests::local_cluster::free_ports(1).unwrap()[0];
    let me = format!("{{ id = 1, addr = \"127.0.0.1:{port}\" }}");
    let config = write_config(
        dir.path(),
        port,
        &format!("[metrics]\nlisten = \"127.0.0.1:{taken}\""),
        &me,
    );
    let out = Command::new(binary("baton-node"))
        .arg("--config")
        .arg(&config)
        .env("BATON_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{taken} for metrics"))
            && stderr.contains("change [metrics] listen"),
        "{stderr}"
    );

    let metrics = baton_cluster_tests::local_cluster::free_ports(1).unwrap()[0];
    let config = write_config(
        dir.path(),
        port,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\""),
        &me,
    );
    let mut node = Command::new(binary("baton-node"))
        .arg("--config")
        .arg(&config)
        .env("BATON_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = node.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let serving = loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no \"serving\" line within 30 s; lines: {seen:#?}"));
        let object: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        seen.push(line);
        if object["message"] == "serving" {
            break object;
        }
    };
    // batonctl talks plain TCP to it (the node speaks first without TLS
    // too), by an http:// address.
    let asked = Instant::now();
    let answered = loop {
        let started = Instant::now();
        let out = Command::new(binary("batonctl"))
            .args([
                "--insecure",
                "--endpoints",
                &format!("http://127.0.0.1:{port}"),
                "status",
            ])
            .output()
            .unwrap();
        if out.status.success() {
            break started.elapsed();
        }
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = node.kill();
    let _ = node.wait();
    assert!(answered < Duration::from_secs(5), "status took {answered:?}");
    assert_eq!(serving["level"], "INFO", "{serving}");
    assert_eq!(serving["node"], 1, "{serving}");
    assert_eq!(
        serving["metrics"],
        format!("http://127.0.0.1:{metrics}/metrics"),
        "{serving}"
    );
    assert!(
        serving["timestamp"].is_string() && serving["target"] == "baton_node::node",
        "{serving}"
    );
}

#[test]
fn batonctl_explains_what_is_missing() {
    let out = Command::new(binary("batonctl"))
        .arg("status")
        .env_remove("BATON_ENDPOINTS")
        .env_remove("BATON_CONTEXT")
        .env("BATON_CONTEXTS", "/nonexistent/contexts.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BATON_ENDPOINTS"));
    let out = Command::new(binary("batonctl"))
        .args(["status", "--endpoints", "127.0.0.1:1"])
        .env_remove("BATON_CA")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca"));
    let out = Command::new(binary("batonctl"))
        .args(["certs", "init", "--dir", "/tmp/x", "--node", "zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ID=HOST"));

    // Signing keys: a pair is made once and never overwritten; a deploy
    // without one says how to sign.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ops.key");
    let keys_new = || {
        Command::new(binary("batonctl"))
            .arg("keys")
            .arg("new")
            .arg(&key)
            .output()
            .unwrap()
    };
    let out = keys_new();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(dir.path().join("ops.key.pub")).unwrap();
    assert!(baton_node::modules::signing::parse_public_key(&public).is_ok());
    let out = keys_new();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwritten"));
    let out = Command::new(binary("batonctl"))
        .args([
            "--insecure",
            "--endpoints",
            "127.0.0.1:1",
            "modules",
            "deploy",
            "m",
            "/dev/null",
        ])
        .env_remove("BATON_SIGNING_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--signing-key"));
}

#[test]
fn batonctl_prints_completion_scripts() {
    for (shell, mark) in [
        ("bash", "_batonctl()"),
        ("zsh", "#compdef batonctl"),
        ("fish", "complete -c batonctl"),
    ] {
        let out = Command::new(binary("batonctl"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains(mark) && script.contains("history"),
            "{shell}:\n{script}"
        );
    }
    let out = Command::new(binary("batonctl"))
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Stops `batonctl dev` and its nodes when the test ends, even by a panic.
struct DevGuard {
    child: std::process::Child,
    data: std::path::PathBuf,
}

impl Drop for DevGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for id in 1..=3 {
            let pid_file = self.data.join(id.to_string()).join("node.pid");
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn batonctl_dev_runs_a_cluster_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let output = std::fs::File::create(dir.path().join("dev.out")).unwrap();
    // Run from a directory that is not the repository: it finds the
    // example modules where it was built.
    let child = Command::new(binary("batonctl"))
        .current_dir(dir.path())
        .args(["dev", "--nodes", "3", "--data-dir"])
        .arg(&data)
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .unwrap();
    let mut guard = DevGuard {
        child,
        data: data.clone(),
    };
    let dev = &mut guard.child;
    let deadline = Instant::now() + Duration::from_secs(60);
    let env = data.join("env");
    // batonctl with the variables of DIR/env, as `source DIR/env` gives them.
    let batonctl = |args: &[&str]| -> Option<std::process::Output> {
        let vars = std::fs::read_to_string(&env).ok()?;
        let mut cmd = Command::new(binary("batonctl"));
        cmd.args(args).args(["--output", "json"]);
        for line in vars.lines() {
            let (k, v) = line.trim_start_matches("export ").split_once('=')?;
            cmd.env(k, v);
        }
        cmd.output().ok()
    };
    let batonctl_json = |args: &[&str]| -> Option<serde_json::Value> {
        let out = batonctl(args)?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok())?
    };
    let status_json = loop {
        assert!(Instant::now() < deadline, "batonctl dev formed no cluster");
        assert!(dev.try_wait().unwrap().is_none(), "batonctl dev exited early");
        if let Some(json) = batonctl_json(&["status"])
            && json["leader"].is_u64()
        {
            break json;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status_json["members"].as_array().unwrap().len(), 3);
    // The example tasks tick.
    loop {
        assert!(Instant::now() < deadline, "the example tasks did not tick");
        let ticking = batonctl_json(&["tasks", "list"]).and_then(|tasks| {
            let tasks = tasks.as_array()?.clone();
            let counters = tasks
                .iter()
                .filter(|t| t["module"] == "counter" && t["tick"].as_u64().is_some_and(|n| n >= 2))
                .count();
            (counters == 3 && tasks.len() == 4).then_some(())
        });
        if ticking.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The tour's hot swap, with the example modules DIR/modules holds:
    // version 2 rolls out; the broken version 3 reverts and the command fails.
    let modules = data.join("modules");
    let v2 = modules.join("counter-v2.wasm");
    let v3 = modules.join("counter-v3-broken.wasm");
    assert!(v2.is_file() && v3.is_file() && modules.join("counter-v1.wasm").is_file());
    let deploy = |file: &Path| {
        let file = file.to_str().unwrap();
        batonctl(&["modules", "deploy", "counter", file, "--min-healthy", "1s"]).unwrap()
    };
    let out = deploy(&v2);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("done [####################] 3/3 node(s)"));
    let on_v2 = batonctl_json(&["tasks", "list"]).unwrap();
    let counters: Vec<_> = on_v2
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["module"] == "counter")
        .collect();
    assert!(counters.iter().all(|t| t["version"] == 2), "{on_v2}");
    let out = deploy(&v3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is reverted: version 3 is failing"),
        "{err}"
    );
    let history = batonctl_json(&["modules", "history", "counter"]).unwrap();
    let outcomes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes[..2], ["deployed", "rolled out"], "{history}");
    assert!(outcomes[2].starts_with("reverted: "), "{history}");

    let mut pids = Vec::new();
    for id in 1..=3 {
        let node = data.join(id.to_string());
        assert!(node.join("node.toml").is_file() && node.join("node.log").is_file());
        pids.push(
            std::fs::read_to_string(node.join("node.pid"))
                .unwrap()
                .trim()
                .parse::<i32>()
                .unwrap(),
        );
    }

    kill(Pid::from_raw(dev.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    let exit = loop {
        if let Some(status) = dev.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "batonctl dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "batonctl dev exited with {exit}");
    for pid in pids {
        assert!(
            kill(Pid::from_raw(pid), None).is_err(),
            "node process {pid} is still running"
        );
    }
    for id in 1..=3 {
        let log = std::fs::read_to_string(data.join(id.to_string()).join("node.log")).unwrap();
        assert!(
            log.contains("stopped cleanly"),
            "node {id} did not stop cleanly:\n{log}"
        );
    }
}
