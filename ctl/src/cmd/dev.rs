//! `batonctl dev`: a local cluster in one command, for trying Baton out.
//!
//! Starts N `baton-node` processes on free loopback ports with fresh
//! certificates, waits for a leader, writes `DIR/env`, prints a short tour,
//! and on Ctrl-C or SIGTERM stops every node cleanly. A node that dies is not
//! restarted, so that killing one shows failover; restart it by hand with
//! `baton-node --config DIR/<id>/node.toml`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_node::config::TimingConfig;
use serde_json::json;

use super::CmdError;
use super::status;
use crate::cli::{DevArgs, OutputFormat};
use crate::client::ClusterClient;
use crate::local_cluster::{LocalCluster, LocalClusterError, find_node_binary};
use crate::output;

/// A file that marks a directory as made by `batonctl dev`, so a later run
/// may wipe it.
const MARKER: &str = ".baton-dev";

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("--nodes must be from 1 to 9; got {0}")]
    BadNodeCount(u64),
    #[error("{0} exists and was not made by `batonctl dev`; pass another --data-dir or remove it")]
    NotADevDir(PathBuf),
    #[error(transparent)]
    LocalCluster(#[from] LocalClusterError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the cluster elected no leader within {0:?}; see the node logs in {1}")]
    NoLeader(Duration, PathBuf),
}

/// Empties `dir` if a previous `batonctl dev` made it; refuses any other
/// non-empty directory.
fn prepare_dir(dir: &Path) -> Result<(), DevError> {
    let io = |source| DevError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if !empty {
            if !dir.join(MARKER).exists() {
                return Err(DevError::NotADevDir(dir.to_path_buf()));
            }
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(
        dir.join(MARKER),
        "made by batonctl dev; the next run wipes this directory\n",
    )
    .map_err(io)
}

pub async fn run(args: DevArgs, format: OutputFormat) -> Result<(), CmdError> {
    if !(1..=9).contains(&args.nodes) {
        return Err(DevError::BadNodeCount(args.nodes).into());
    }
    let binary = match args.node_binary {
        Some(path) => path,
        None => find_node_binary().map_err(DevError::from)?,
    };
    let mut stop = baton_node::signal::ShutdownSignal::install().map_err(|source| DevError::Io {
        path: "signal handlers".into(),
        source,
    })?;
    prepare_dir(&args.data_dir)?;
    let mut cluster =
        LocalCluster::create(&args.data_dir, args.nodes, TimingConfig::default(), binary).map_err(DevError::from)?;
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in &ids {
        cluster.start(*id).map_err(DevError::from)?;
    }
    let tls = cluster.admin_tls().map_err(crate::ClientError::from)?;
    let client = ClusterClient::new(cluster.endpoints(), Some(tls), Duration::from_secs(5))?;

    let wait = Duration::from_secs(60);
    let started = Instant::now();
    let leader = async {
        loop {
            if let Ok(view) = status::fetch(&client).await
                && view.leader.is_some()
            {
                return Some(view);
            }
            if started.elapsed() > wait {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let view = tokio::select! {
        view = leader => view,
        _ = stop.recv() => {
            stop_all(&mut cluster, &ids)?;
            return Ok(());
        }
    };
    let Some(view) = view else {
        return Err(DevError::NoLeader(wait, cluster.dir.clone()).into());
    };
    let env_path = cluster.write_env().map_err(DevError::from)?;
    let examples_dir = match args.examples {
        Some(dir) => dir,
        None => {
            let exe = std::env::current_exe().ok();
            let beside = exe
                .as_deref()
                .and_then(Path::parent)
                .map(release_dirs)
                .unwrap_or_default();
            let candidates = example_dirs(std::env::current_dir().ok(), beside);
            candidates
                .iter()
                .find(|dir| dir.join("counter.wasm").is_file())
                .cloned()
                .unwrap_or_else(|| candidates[0].clone())
        }
    };
    let examples = start_examples(&client, &examples_dir, &cluster).await;
    copy_example_modules(&examples_dir, &cluster.dir.join("modules"));

    let dir = cluster.dir.display().to_string();
    let nodes: Vec<_> = cluster
        .nodes
        .values()
        .map(|n| {
            json!({"id": n.id, "addr": n.addr, "metrics": format!("http://{}/metrics", n.metrics_addr),
                "status_page": format!("http://{}/", n.metrics_addr), "config": n.config_path(), "log": n.log_path()})
        })
        .collect();
    output::print(
        format,
        &json!({"dir": dir, "env": env_path, "leader": view.leader, "nodes": nodes, "tasks": examples,
            "admin_token_file": cluster.dir.join(crate::local_cluster::ADMIN_TOKEN_FILE)}),
        || tour(&cluster, &env_path, view.leader.unwrap_or(0), &examples),
    );

    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                for id in cluster.reap_exited() {
                    eprintln!(
                        "node {id} exited (its heart logged how in {dir}/{id}/node.log); it is not restarted. \
                         restart it with:\n  \
                         baton-node --config {dir}/{id}/node.toml 2>>{dir}/{id}/node.log & echo $! > {dir}/{id}/node.pid\n\
                         (without its heart, which stays to vouch for the exit: if it dies again, its tasks move \
                         when its lease ends)"
                    );
                }
            }
        }
    }
    stop_all(&mut cluster, &ids)
}

/// Stops every node with SIGTERM (SIGKILL after a grace period).
fn stop_all(cluster: &mut LocalCluster, ids: &[u64]) -> Result<(), CmdError> {
    let dir = cluster.dir.display().to_string();
    eprintln!("stopping {} node(s)...", ids.len());
    for id in ids {
        let clean = cluster.stop(*id, Duration::from_secs(15)).map_err(DevError::from)?;
        if !clean {
            eprintln!("node {id} did not stop cleanly; see {dir}/{id}/node.log");
        }
    }
    eprintln!("stopped. the data stays in {dir} until the next `batonctl dev`");
    Ok(())
}

/// Example modules `batonctl dev` copies to DIR/modules/ for the tour's hot
/// swap: (file built by scripts/build-tasks.sh, name in DIR/modules).
const EXAMPLE_MODULES: [(&str, &str); 4] = [
    ("counter.wasm", "counter-v1.wasm"),
    ("counter_v2.wasm", "counter-v2.wasm"),
    ("counter_v3_broken.wasm", "counter-v3-broken.wasm"),
    ("greeter.wasm", "greeter.wasm"),
];

/// Where `scripts/build-tasks.sh` puts the example modules, under a
/// repository.
const BUILT_EXAMPLES: &str = "tasks/target/wasm32-wasip2/release";

/// Where a release puts the example modules, for batonctl in `bin`:
/// `examples/` beside it, the unpacked archive's `baton/examples/` (batonctl
/// in `baton/bin/`), and where `install.sh` puts them (batonctl in
/// `/usr/local/bin`, the modules in `/usr/local/share/baton/examples`).
fn release_dirs(bin: &Path) -> Vec<PathBuf> {
    let up = bin.join("..");
    vec![
        bin.join("examples"),
        up.join("examples"),
        up.join("share").join("baton").join("examples"),
    ]
}

/// Where to look for the example modules, in order: under the current
/// directory `cwd`, in `beside` (where a release puts them, beside
/// batonctl), and in the repository batonctl was built from (so `batonctl
/// dev` finds them from any directory).
fn example_dirs(cwd: Option<PathBuf>, beside: Vec<PathBuf>) -> Vec<PathBuf> {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(BUILT_EXAMPLES);
    cwd.map(|cwd| cwd.join(BUILT_EXAMPLES))
        .into_iter()
        .chain(beside)
        .chain([repository])
        .collect()
}

/// Copies the example modules into `to`, saying which are missing.
fn copy_example_modules(from: &Path, to: &Path) {
    if let Err(e) = std::fs::create_dir_all(to) {
        eprintln!("cannot make {}: {e}", to.display());
        return;
    }
    for (built, name) in EXAMPLE_MODULES {
        if let Err(e) = std::fs::copy(from.join(built), to.join(name)) {
            eprintln!(
                "example module {} not copied to {} ({e}); build it with scripts/build-tasks.sh",
                from.join(built).display(),
                to.display()
            );
        }
    }
}

/// The example tasks: counters ticking every second and a greeter driven by
/// its config. Returns the tasks started; none if the modules are not built.
async fn start_examples(client: &ClusterClient, dir: &Path, cluster: &LocalCluster) -> Vec<String> {
    let Ok(counter) = std::fs::read(dir.join("counter.wasm")) else {
        eprintln!(
            "no example modules in {} (build them with scripts/build-tasks.sh); starting without tasks",
            dir.display()
        );
        return Vec::new();
    };
    let greeter = std::fs::read(dir.join("greeter.wasm")).ok();
    let modules = [("counter", Some(counter)), ("greeter", greeter)];
    let key = match cluster.signing_key() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("cannot read the cluster's signing key: {e}; starting without tasks");
            return Vec::new();
        }
    };
    for (name, bytes) in modules.into_iter().filter_map(|(n, b)| Some((n, b?))) {
        let request = super::modules::signed_deploy(name.into(), bytes, &key);
        let deployed = client
            .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
            .await;
        if let Err(e) = deployed {
            eprintln!("cannot deploy the example module {name}: {e}");
            return Vec::new();
        }
    }
    let mut tasks: Vec<(String, &str, u64, &str)> = (1..=3)
        .map(|i| (format!("counter-{i}"), "counter", 1_000, ""))
        .collect();
    tasks.push(("greeter".into(), "greeter", 5_000, r#"{"name": "dev"}"#));
    let mut started = Vec::new();
    for (name, module, every_ms, config) in tasks {
        let request = super::tasks::every_request(&name, module, every_ms, config);
        let added = client
            .call_with(&request, |mut c, r| async move { c.add_task(r).await })
            .await;
        match added {
            Ok(_) => started.push(name),
            Err(e) if module == "greeter" => eprintln!("the greeter example did not start: {e}"),
            Err(e) => eprintln!("cannot add the example task {name}: {e}"),
        }
    }
    started
}

fn tour(cluster: &LocalCluster, env_path: &Path, leader: u64, tasks: &[String]) -> String {
    let first = cluster.nodes.keys().next().copied().unwrap_or(1);
    let leader = if leader == 0 { first } else { leader };
    let dir = cluster.dir.display();
    let tasks_line = if tasks.is_empty() {
        "no example tasks (build them with scripts/build-tasks.sh)".to_string()
    } else {
        format!("example tasks: {}", tasks.join(", "))
    };
    format!(
        "\
Baton dev cluster: {n} nodes, leader is node {leader}; {tasks_line}.
  data, configs and logs: {dir}/<id>/

In another terminal:
  source {env}
  batonctl status                     # leader, term, commit index, members
  batonctl tasks list                 # owners, epochs, ticks, states
  batonctl tasks history counter-1    # committed ticks: which node, which epoch
  kill -9 $(cat {dir}/{leader}/node.pid)   # kill the leader, then:
  batonctl status                     # a new leader within a second; the old one down
  batonctl tasks list                 # its tasks tick on other nodes, at epoch + 1
  baton-node --config {dir}/{leader}/node.toml 2>>{dir}/{leader}/node.log & echo $! > {dir}/{leader}/node.pid
                                      # restart it; it catches up and gets tasks again
  batonctl nodes drain {first}              # its tasks move off, each after its current tick
  batonctl nodes undrain {first}
  batonctl tasks pause counter-2; batonctl tasks resume counter-2
  batonctl modules deploy counter {dir}/modules/counter-v2.wasm --min-healthy 3s
                                      # hot swap: a canary node first, then the others, each
                                      # gated; states migrate to v2's format, counts intact
  batonctl tasks list                 # VERSION 2 on every task
  batonctl modules deploy counter {dir}/modules/counter-v3-broken.wasm --min-healthy 3s
                                      # v3 traps: the canary's gate fails, it reverts by itself
  batonctl modules history counter    # every version and how its rollout ended
  batonctl rollout status counter -o json
  batonctl kv put greeting hello      # a plain write committed through Raft
  batonctl nodes list -o json         # every command has --output json
  curl -s http://{metrics}/metrics | grep baton_ticks_total
                                      # Prometheus metrics; /healthz and /readyz beside them
  open http://{metrics}/           # the status page, live; sign in with the token in
                                      # {dir}/admin-token for manual steps

Ctrl-C here stops every node.
",
        n = cluster.nodes.len(),
        metrics = cluster.nodes.get(&first).map_or("", |n| n.metrics_addr.as_str()),
        env = env_path.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_are_looked_for_here_beside_batonctl_and_in_its_repository() {
        let dirs = example_dirs(Some("/work/x".into()), release_dirs(Path::new("/opt/baton/bin")));
        assert_eq!(dirs[0], Path::new("/work/x/tasks/target/wasm32-wasip2/release"));
        assert_eq!(dirs[1], Path::new("/opt/baton/bin/examples"));
        assert_eq!(dirs[2], Path::new("/opt/baton/bin/../examples"), "the unpacked archive");
        assert_eq!(
            dirs[3],
            Path::new("/opt/baton/bin/../share/baton/examples"),
            "where install.sh puts them"
        );
        assert!(
            dirs[4].ends_with("ctl/../tasks/target/wasm32-wasip2/release"),
            "{:?}",
            dirs[4]
        );
        assert_eq!(example_dirs(None, Vec::new()).len(), 1);
    }
}
