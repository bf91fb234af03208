//! `baton-heart` as a process, on a scripted "node" (a shell script) in a
//! directory of its own, and the calls a test makes to it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_node::modules::signing::{SigningKey, sign_node_binary};
use baton_proto::heart_binaries_client::HeartBinariesClient;
use baton_proto::heart_client::HeartClient;
use baton_proto::{
    AwaitExitReply, AwaitExitRequest, HeartStatusReply, HeartStatusRequest, MakePermanentRequest, SignedBinary,
    StageBinaryChunk, TryBinaryRequest,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// A heart started on a scripted "node" in a directory of its own.
pub struct HeartUnderTest {
    process: Child,
    dir: tempfile::TempDir,
    command: Vec<String>,
    /// The heart's port, when it is not 0 (then the scripted node tells it).
    fixed_addr: Option<String>,
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A script that plays a node: it tells `$DIR` the heart's address, its
/// incarnation (`starts`) and `label` (`runs`), then runs `body`.
pub fn node_script(dir: &Path, label: &str, body: &str) -> String {
    format!(
        "#!/bin/sh\nDIR={}\necho \"$BATON_HEART_ADDR\" > \"$DIR/heart\"\n\
         echo \"$BATON_INCARNATION\" >> \"$DIR/starts\"\necho {label} >> \"$DIR/runs\"\n{body}\n",
        dir.display()
    )
}

/// Starts a heart (on a free port) whose installed node is the shell script
/// `body` (see [`node_script`]; its label is `installed`). `config_tail` is
/// added to the end of its config's `[heart]` table, and may open tables of
/// its own after it.
pub fn start_heart_with(body: &str, extra: &[&str], config_tail: &str) -> HeartUnderTest {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("node.sh");
    std::fs::write(&script, node_script(dir.path(), "installed", body)).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    start_heart_in(dir, &script, None, extra, config_tail)
}

/// Starts a heart whose installed node is `binary` (the real `baton-node`),
/// one node of its own cluster.
pub fn start_heart_with_binary(binary: &Path, config_tail: &str) -> HeartUnderTest {
    let addr = format!("127.0.0.1:{}", free_port());
    start_heart_in(tempfile::tempdir().unwrap(), binary, Some(addr), &[], config_tail)
}

fn start_heart_in(
    dir: tempfile::TempDir,
    binary: &Path,
    fixed_addr: Option<String>,
    extra: &[&str],
    config_tail: &str,
) -> HeartUnderTest {
    let port = free_port();
    let heart_addr = fixed_addr.as_deref().unwrap_or("127.0.0.1:0");
    let config = format!(
        "id = 1\nlisten_addr = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\ninsecure = true\n\n\
         [cluster]\ninitial_members = [{{ id = 1, addr = \"127.0.0.1:{port}\" }}]\n\n\
         [heart]\nlisten_addr = \"{heart_addr}\"\n{config_tail}\n"
    );
    let config_path = dir.path().join("node.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut command: Vec<String> = vec![
        "--config".into(),
        config_path.display().to_string(),
        "--node-binary".into(),
        binary.display().to_string(),
        "--pid-file".into(),
        dir.path().join("node.pid").display().to_string(),
    ];
    command.extend(extra.iter().map(|s| s.to_string()));
    let process = spawn_heart(&command);
    HeartUnderTest {
        process,
        dir,
        command,
        fixed_addr,
    }
}

/// As [`start_heart_with`], with the default config.
pub fn start_heart(body: &str, extra: &[&str]) -> HeartUnderTest {
    start_heart_with(body, extra, "")
}

fn spawn_heart(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_baton-heart"))
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

impl HeartUnderTest {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The address the heart last told its node.
    pub fn addr(&self) -> String {
        if let Some(addr) = &self.fixed_addr {
            return addr.clone();
        }
        poll(Duration::from_secs(20), "the heart's address", || {
            let text = std::fs::read_to_string(self.path().join("heart")).ok()?;
            let addr = text.trim().to_string();
            (!addr.is_empty()).then_some(addr)
        })
    }

    pub fn incarnations(&self) -> Vec<String> {
        self.lines("starts")
    }

    /// The labels of the scripts started, in order.
    pub fn runs(&self) -> Vec<String> {
        self.lines("runs")
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn node_pid(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(self.path().join("node.pid")).ok()?;
        Some(Pid::from_raw(text.trim().parse().ok()?))
    }

    /// Waits until the node has started `n` times; returns the incarnations.
    pub fn await_starts(&self, n: usize, within: Duration) -> Vec<String> {
        poll(within, &format!("{n} start(s)"), || {
            let starts = self.incarnations();
            (starts.len() >= n).then_some(starts)
        })
    }

    /// Waits until the scripts started are `expected`, in order.
    pub fn await_runs(&self, expected: &[&str], within: Duration) {
        poll(within, &format!("runs {expected:?}"), || {
            (self.runs() == expected).then_some(())
        });
        // Nothing further starts at once.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(self.runs(), expected, "started again");
    }

    async fn channel(&self) -> Channel {
        let endpoint = format!("http://{}", self.addr());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match tonic::transport::Endpoint::from_shared(endpoint.clone())
                .unwrap()
                .connect()
                .await
            {
                Ok(channel) => return channel,
                Err(e) if Instant::now() > deadline => panic!("the heart at {endpoint} never listened: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    pub async fn ask(&self, incarnation: &str, wait_ms: u32) -> AwaitExitReply {
        let request = AwaitExitRequest {
            incarnation: incarnation.to_string(),
            wait_ms,
        };
        HeartClient::new(self.channel().await)
            .await_exit(request)
            .await
            .expect("the heart answers")
            .into_inner()
    }

    pub async fn binaries(&self) -> HeartBinariesClient<Channel> {
        HeartBinariesClient::new(self.channel().await)
    }

    /// Stages `bytes` as node binary `version`, signed by `key`, in chunks
    /// of 64 KiB; returns its hash.
    pub async fn stage(&self, bytes: &[u8], version: &str, key: &SigningKey) -> Result<String, tonic::Status> {
        let hash = baton_node::heart::hash_reader(&mut &bytes[..]).unwrap();
        let (signer, signature) = sign_node_binary(key, version, &hash);
        let header = SignedBinary {
            hash: hash.clone(),
            version: version.into(),
            signer,
            signature,
            size: bytes.len() as u64,
        };
        self.stage_as(header, bytes).await.map(|_| hash)
    }

    /// Stages `bytes` under `header` as given.
    pub async fn stage_as(&self, header: SignedBinary, bytes: &[u8]) -> Result<bool, tonic::Status> {
        let mut chunks: Vec<StageBinaryChunk> = bytes
            .chunks(64 * 1024)
            .map(|data| StageBinaryChunk {
                header: None,
                data: data.to_vec(),
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(StageBinaryChunk::default());
        }
        chunks[0].header = Some(header);
        let reply = self
            .binaries()
            .await
            .stage_binary(futures::stream::iter(chunks))
            .await?;
        Ok(reply.into_inner().stored)
    }

    /// Stages the script `body` (see [`node_script`]) as binary `label`.
    pub async fn stage_script(&self, label: &str, body: &str, key: &SigningKey) -> String {
        let text = node_script(self.path(), label, body);
        self.stage(text.as_bytes(), label, key)
            .await
            .expect("the heart stages it")
    }

    pub async fn try_binary(&self, hash: &str, deadline: Duration) -> Result<(), tonic::Status> {
        let request = TryBinaryRequest {
            hash: hash.into(),
            deadline_ms: deadline.as_millis() as u64,
        };
        self.binaries().await.try_binary(request).await.map(|_| ())
    }

    pub async fn make_permanent(&self, hash: &str) -> Result<(), tonic::Status> {
        let request = MakePermanentRequest { hash: hash.into() };
        self.binaries().await.make_permanent(request).await.map(|_| ())
    }

    pub async fn status(&self) -> HeartStatusReply {
        self.binaries()
            .await
            .status(HeartStatusRequest {})
            .await
            .expect("the heart answers")
            .into_inner()
    }

    /// Waits until the heart's status satisfies `check`.
    pub async fn await_status(&self, what: &str, check: impl Fn(&HeartStatusReply) -> bool) -> HeartStatusReply {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status().await;
            if check(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {status:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the heart to stop and returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = kill(Pid::from_raw(self.process.id() as i32), Signal::SIGTERM);
        let process = &mut self.process;
        poll(Duration::from_secs(20), "the heart to exit", || {
            process.try_wait().unwrap().map(|status| status.code())
        })
    }

    /// Stops the heart (it stops its node) and starts it again, as systemd
    /// would, on the same config and directory.
    pub fn restart(&mut self) {
        self.terminate();
        self.respawn();
    }

    /// Kills the heart (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }

    /// Starts the heart again after it exited.
    pub fn respawn(&mut self) {
        let _ = std::fs::remove_file(self.path().join("heart"));
        self.process = spawn_heart(&self.command);
    }
}

pub fn poll<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
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
