//! The README's "Three machines" section, run as written: its shell blocks,
//! in order, on a workstation (this test's own folder) and on four machines
//! (containers at the section's addresses, 10.77.0.11 to .14, on a network
//! of their own). A machine is a Linux of busybox and nothing else, on which
//! the release's `install.sh` runs; systemd's part is played by two
//! stand-ins, so that the commands need no change: `systemctl enable --now
//! baton-heart` in a machine lets its first process exec `baton-heart` (the
//! heart becomes PID 1, as under a unit it would be systemd's child), and
//! `scp` on the workstation copies with `docker cp`. `scripts/release.sh`
//! packs the static debug build of `scripts/test.sh` (by
//! `BATON_RELEASE_BINARIES`) rather than building a release.
//!
//! At the end the cluster must have its three voters and the worker, all
//! up, all on the binary the upgrade brought, each under a heart that is
//! its machine's first process, and the example task must tick.
//!
//! Needs the Docker engine, root, and busybox (Debian's `busybox-static`,
//! which `scripts/test.sh` installs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use baton_cluster_tests::containers::{LABEL, docker, static_binary, try_docker};
use baton_cluster_tests::poll_async;
use baton_node::tls::TlsMaterial;
use batonctl::ClusterClient;

/// The section's network and its machines' addresses.
const SUBNET: &str = "10.77.0.0/24";
const MACHINES: [u64; 4] = [1, 2, 3, 4];

fn machine_ip(n: u64) -> String {
    format!("10.77.0.1{n}")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Where a shell block runs.
#[derive(Debug, Clone, PartialEq)]
enum Place {
    Workstation,
    Machines(Vec<u64>),
}

/// The section's ```sh blocks, each with where its first line says it runs.
fn blocks(readme: &str) -> Vec<(Place, String)> {
    let start = readme
        .find("\n## Three machines\n")
        .expect("the README has a \"Three machines\" section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("a closed block");
        let block = &body[..close];
        let first = block.lines().next().unwrap_or_default();
        let place = if first.starts_with("# on your workstation") {
            Place::Workstation
        } else if first.starts_with("# on machines 1, 2 and 3") {
            Place::Machines(vec![1, 2, 3])
        } else if first.starts_with("# on machine 4") {
            Place::Machines(vec![4])
        } else {
            panic!("a block of the section does not say where it runs: {first:?}")
        };
        blocks.push((place, block.to_string()));
        rest = &body[close + 3..];
    }
    blocks
}

/// A machine's image: busybox, its applets, the `systemctl` stand-in, and a
/// first process that waits for it and then execs the heart.
fn machine_image() -> String {
    let busybox = Path::new("/bin/busybox");
    let bytes = std::fs::read(busybox).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; install Debian's busybox-static (scripts/test.sh does)",
            busybox.display()
        )
    });
    let systemctl = "#!/bin/sh\n\
        # The test's stand-in for systemd: lets the machine's first process exec the heart.\n\
        if [ \"$*\" != \"enable --now baton-heart\" ]; then\n  \
          echo \"systemctl (test stand-in): only 'enable --now baton-heart' is known\" >&2\n  exit 1\nfi\n\
        touch /run/baton-start\n";
    let tag = format!(
        "baton-machine:{}",
        &baton_node::runtime::content_hash(&[bytes.as_slice(), systemctl.as_bytes()].concat())[..16]
    );
    if try_docker(&["image", "inspect", "--format", "{{.Id}}", &tag]).is_ok() {
        return tag;
    }
    let root = tempfile::tempdir().unwrap();
    for dir in [
        "bin",
        "usr/bin",
        "usr/local/bin",
        "root",
        "tmp",
        "run",
        "etc",
        "var/lib",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    std::fs::copy(busybox, root.path().join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.path().join("bin").join(applet)).unwrap();
        }
    }
    let shim = root.path().join("usr/bin/systemctl");
    std::fs::write(&shim, systemctl).unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(root.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-c", "."])
        .output()
        .expect("tar");
    assert!(tar.status.success());
    let entry = r#"ENTRYPOINT ["/bin/sh", "-c", "while [ ! -e /run/baton-start ]; do sleep 0.2; done; exec /usr/local/bin/baton-heart --config /etc/baton/node.toml"]"#;
    let mut import = Command::new("docker")
        .args([
            "import",
            "--change",
            entry,
            "--change",
            &format!("LABEL {LABEL}.image=baton-machine"),
            "-",
            &tag,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker import");
    std::io::Write::write_all(&mut import.stdin.take().unwrap(), &tar.stdout).unwrap();
    let out = import.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// The machines' network and containers; dropped, they are removed (their
/// logs printed first if the test is failing).
struct Machines {
    network: String,
    names: BTreeMap<u64, String>,
}

impl Machines {
    fn start(run: &str) -> Machines {
        let image = machine_image();
        let network = format!("baton-{run}-machines");
        docker(&[
            "network",
            "create",
            "--subnet",
            SUBNET,
            "--label",
            &format!("{LABEL}={run}"),
            &network,
        ]);
        let mut machines = Machines {
            network,
            names: BTreeMap::new(),
        };
        for n in MACHINES {
            let name = format!("baton-{run}-machine{n}");
            docker(&[
                "run",
                "-d",
                "--name",
                &name,
                "--hostname",
                &format!("baton{n}"),
                "--label",
                &format!("{LABEL}={run}"),
                "--network",
                &machines.network,
                "--ip",
                &machine_ip(n),
                &image,
            ]);
            machines.names.insert(n, name);
        }
        machines
    }

    /// Runs `block` in machine `n`'s /root with `N` set, as root.
    fn run(&self, n: u64, block: &str) {
        let mut command = Command::new("docker");
        command.args([
            "exec",
            "-e",
            &format!("N={n}"),
            "-w",
            "/root",
            &self.names[&n],
            "sh",
            "-ec",
            block,
        ]);
        run_block(command, &format!("machine {n}"), block);
    }
}

/// Runs `command` (which runs `block` at `place`), shows what it printed,
/// and fails the test unless it succeeded.
fn run_block(mut command: Command, place: &str, block: &str) {
    let out = command.output().expect("the block's shell runs");
    eprintln!(
        "--- {place}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the block failed on {place}:\n{block}");
}

impl Drop for Machines {
    fn drop(&mut self) {
        for name in self.names.values() {
            if std::thread::panicking() {
                // The heart and the node log to stderr, which docker
                // replays as its own stderr.
                let logs = Command::new("docker").args(["logs", "--tail", "60", name]).output();
                let logs = logs
                    .map(|o| {
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        )
                    })
                    .unwrap_or_default();
                eprintln!("==== {name} ====\n{logs}");
            }
            let _ = try_docker(&["rm", "-f", name]);
        }
        let _ = try_docker(&["network", "rm", &self.network]);
    }
}

/// The workstation: a folder of its own, `~/baton` the source tree, and the
/// `scp` stand-in first on its PATH. Exported variables carry from one
/// block to the next, as in one terminal.
struct Workstation {
    dir: tempfile::TempDir,
}

impl Workstation {
    fn new(machines: &Machines) -> Workstation {
        let dir = tempfile::Builder::new().prefix("baton-workstation-").tempdir().unwrap();
        let home = dir.path().join("home");
        let shims = dir.path().join("shims");
        std::fs::create_dir_all(home.join("cluster")).unwrap();
        std::fs::create_dir_all(&shims).unwrap();
        std::os::unix::fs::symlink(repo(), home.join("baton")).unwrap();
        let mut cases = String::new();
        for (n, name) in &machines.names {
            cases.push_str(&format!("    root@{}:) machine={name} ;;\n", machine_ip(*n)));
        }
        let scp = format!(
            "#!/bin/sh\n# The test's stand-in for scp to a machine: docker cp into its /root.\nset -e\n\
             [ \"$1\" = -r ] && shift\nfor last; do :; done\ncase \"$last\" in\n{cases}    \
             *) echo \"scp (test stand-in): unknown machine $last\" >&2; exit 1 ;;\nesac\n\
             while [ \"$1\" != \"$last\" ]; do docker cp \"$1\" \"$machine:/root/\"; shift; done\n"
        );
        std::fs::write(shims.join("scp"), scp).unwrap();
        std::fs::set_permissions(shims.join("scp"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default());
        std::fs::write(
            dir.path().join("env"),
            format!(
                "export PATH={}\nexport HOME={}\n",
                shell_quote(&path),
                shell_quote(&home.to_string_lossy())
            ),
        )
        .unwrap();
        Workstation { dir }
    }

    /// The folder the README's workstation blocks run in.
    fn folder(&self) -> PathBuf {
        self.dir.path().join("home/cluster")
    }

    fn run(&self, block: &str) {
        let env = self.dir.path().join("env");
        let script = format!(
            ". {env}\n{block}\nfor v in PATH HOME $(compgen -e | grep '^BATON_'); do printf 'export %s=%q\\n' \"$v\" \
             \"${{!v}}\"; done > {env}\n",
            env = env.display()
        );
        let mut command = Command::new("bash");
        command
            .args(["-ec", &script])
            .current_dir(self.folder())
            .env("BATON_RELEASE_BINARIES", static_binary("."));
        run_block(command, "the workstation", block);
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_machines_section_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = blocks(&readme);
    assert!(blocks.len() >= 6, "the section lost blocks: {blocks:?}");
    let run = format!("{:08x}", rand::random::<u32>());
    let machines = Machines::start(&run);
    let workstation = Workstation::new(&machines);
    for (place, block) in &blocks {
        match place {
            Place::Workstation => workstation.run(block),
            Place::Machines(ns) => {
                for n in ns {
                    machines.run(*n, block);
                }
            }
        }
    }

    // What the section promised: three voters and a worker, all up, on the
    // upgrade's binary, each under a heart that is its machine's PID 1.
    let folder = workstation.folder();
    let certs = folder.join("certs");
    let tls = TlsMaterial::load_files(
        &certs.join("ca.pem"),
        &certs.join("admin.pem"),
        &certs.join("admin.key"),
    )
    .unwrap();
    let endpoints = MACHINES.iter().map(|n| format!("{}:7000", machine_ip(*n))).collect();
    let client = ClusterClient::new(endpoints, Some(tls), Duration::from_secs(10)).unwrap();
    let upgraded = {
        let mut file = std::fs::File::open(folder.join("next/baton/bin/baton-node")).unwrap();
        baton_node::heart::hash_reader(&mut file).unwrap()
    };
    let status = poll_async(Duration::from_secs(60), "four members up on the new binary", || async {
        let status = batonctl::cmd::status::fetch(&client).await.ok()?;
        (status.members.len() == 4 && status.members.iter().all(|m| m.state == "up" && m.binary == upgraded))
            .then_some(status)
    })
    .await;
    let roles: Vec<(u64, String)> = status.members.iter().map(|m| (m.id, m.role.clone())).collect();
    assert_eq!(
        roles,
        vec![
            (1, "voter".to_string()),
            (2, "voter".to_string()),
            (3, "voter".to_string()),
            (4, "worker".to_string())
        ]
    );
    for (n, name) in &machines.names {
        let comm = docker(&["exec", name, "cat", "/proc/1/comm"]);
        assert_eq!(comm, "baton-heart", "machine {n}'s first process");
    }
    let tick = |tasks: Vec<baton_proto::TaskInfo>| tasks.iter().find(|t| t.name == "every-second").map(|t| t.tick);
    let before = tick(baton_cluster_tests::task_api::tasks(&client).await).expect("the example task");
    poll_async(Duration::from_secs(30), "the example task ticking", || async {
        let now = tick(baton_cluster_tests::task_api::tasks(&client).await)?;
        (now > before).then_some(())
    })
    .await;
}

#[test]
fn every_block_of_the_section_says_where_it_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let places: Vec<Place> = blocks(&readme).into_iter().map(|(place, _)| place).collect();
    assert_eq!(places.first(), Some(&Place::Workstation));
    assert!(places.contains(&Place::Machines(vec![1, 2, 3])));
    assert!(places.contains(&Place::Machines(vec![4])));
}
