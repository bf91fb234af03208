//! `batonctl upgrade BINARY` and `batonctl upgrade status|pause|resume|abort`:
//! the rolling upgrade of the node binary.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use baton_node::modules::signing::{read_private_key, sign_node_binary};
use baton_node::state::cluster_version::ReleaseDescription;
use baton_node::state::upgrades::UpgradeSettings;
use baton_proto::{
    ControlUpgradeRequest, SignedBinary, UpgradeStatusReply, UpgradeStatusRequest, UploadNodeBinaryChunk,
    UploadNodeBinaryHeader,
};
use serde::Serialize;

use super::CmdError;
use crate::cli::{OutputFormat, UpgradeArgs, UpgradeCommand};
use crate::client::{ClientError, ClusterClient};
use crate::output;

/// How often `--watch` asks.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// How long a followed upgrade is still followed while no node can be
/// reached.
const WATCH_PATIENCE: Duration = Duration::from_secs(60);

/// Bytes per uploaded chunk.
const CHUNK_BYTES: usize = 1 << 20;

/// How long `BINARY --describe` may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An upgrade as `upgrade status --output json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UpgradeView {
    pub hash: String,
    pub version: String,
    /// running, paused, halted, done or aborted.
    pub state: String,
    pub reason: String,
    pub nodes: Vec<UpgradeNodeView>,
    pub started_at_ms: u64,
    pub phase_started_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub min_healthy_ms: u64,
    pub healthy_deadline_ms: u64,
    pub auto_revert: bool,
    pub hold_version: bool,
    /// Done, holding the cluster version until `upgrade finalize`.
    pub awaits_finalize: bool,
    pub finalized_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UpgradeNodeView {
    pub id: u64,
    /// waiting, draining, swapping, gating, done or reverted.
    pub phase: String,
    pub reason: String,
    /// The binary it reports running.
    pub binary: String,
}

impl UpgradeView {
    fn of(reply: UpgradeStatusReply) -> Option<UpgradeView> {
        reply.exists.then(|| UpgradeView {
            hash: reply.hash,
            version: reply.version,
            state: reply.state,
            reason: reply.reason,
            nodes: reply
                .nodes
                .into_iter()
                .map(|n| UpgradeNodeView {
                    id: n.id,
                    phase: n.phase,
                    reason: n.reason,
                    binary: n.binary,
                })
                .collect(),
            started_at_ms: reply.started_at_ms,
            phase_started_ms: reply.phase_started_ms,
            finished_at_ms: reply.finished_at_ms,
            min_healthy_ms: reply.min_healthy_ms,
            healthy_deadline_ms: reply.healthy_deadline_ms,
            auto_revert: reply.auto_revert,
            hold_version: reply.hold_version,
            awaits_finalize: reply.awaits_finalize,
            finalized_at_ms: reply.finalized_at_ms,
        })
    }

    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused" | "halted")
    }

    /// `[#######-------] 1/3 node(s)`.
    pub fn progress_bar(&self) -> String {
        const WIDTH: usize = 20;
        let total = self.nodes.len().max(1);
        let done = self.nodes.iter().filter(|n| n.phase == "done").count();
        let filled = WIDTH * done / total;
        format!(
            "[{}{}] {done}/{total} node(s)",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled)
        )
    }

    /// One line, then a line per node.
    pub fn text(&self) -> String {
        let short = &self.hash[..self.hash.len().min(12)];
        let mut text = format!(
            "upgrade to {} ({short}): {} {}\n",
            self.version,
            self.state,
            self.progress_bar()
        );
        if !self.reason.is_empty() {
            text.push_str(&format!("  reason: {}\n", self.reason));
        }
        if self.awaits_finalize {
            text.push_str(
                "  the cluster version is held (--hold-version): `batonctl upgrade finalize` lets it rise; until \
                 then another upgrade can bring the binary before back\n",
            );
        }
        for node in &self.nodes {
            let runs = match node.binary.as_str() {
                "" => "unknown".to_string(),
                b if b == self.hash => format!("{} (new)", self.version),
                "installed" => "its installed binary".to_string(),
                b => b[..b.len().min(12)].to_string(),
            };
            text.push_str(&format!("  node {}: {:<9} runs {runs}", node.id, node.phase));
            if !node.reason.is_empty() {
                text.push_str(&format!(" ({})", node.reason));
            }
            text.push('\n');
        }
        text
    }
}

/// The latest upgrade, if the cluster had one.
pub async fn status(client: &ClusterClient) -> Result<Option<UpgradeView>, CmdError> {
    let reply = client
        .call(|mut c| async move { c.upgrade_status(UpgradeStatusRequest {}).await })
        .await?;
    Ok(UpgradeView::of(reply))
}

/// Follows the upgrade until it is done, halted or aborted, drawing its
/// progress on stderr.
pub async fn watch(client: &ClusterClient) -> Result<UpgradeView, CmdError> {
    let mut last = String::new();
    let mut lost_since: Option<Instant> = None;
    loop {
        let view = match status(client).await {
            Ok(view) => {
                lost_since = None;
                view
            }
            // The upgrade restarts the nodes, one at a time: with a single
            // endpoint, that one may be down for a while.
            Err(CmdError::Client(ClientError::Unreachable { .. }))
                if lost_since.get_or_insert_with(Instant::now).elapsed() < WATCH_PATIENCE =>
            {
                tokio::time::sleep(WATCH_INTERVAL).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let view =
            view.ok_or_else(|| CmdError::NotFound("this cluster has had no upgrade of the node binary".into()))?;
        let text = view.text();
        if text != last {
            let _ = write!(std::io::stderr(), "{text}");
            last = text;
        }
        if !view.is_live() || view.state == "halted" {
            return Ok(view);
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

/// An error unless the upgrade is done.
fn outcome(view: &UpgradeView) -> Result<(), CmdError> {
    match view.state.as_str() {
        "done" => Ok(()),
        state => Err(CmdError::Failed(format!(
            "the upgrade to {} is {state}{}",
            view.version,
            match view.reason.as_str() {
                "" => String::new(),
                reason => format!(": {reason}"),
            }
        ))),
    }
}

pub async fn run(client: &ClusterClient, args: UpgradeArgs, format: OutputFormat) -> Result<(), CmdError> {
    let action = match args.command {
        Some(UpgradeCommand::Status { watch: true }) => {
            let view = watch(client).await?;
            output::print(format, &view, || view.text());
            return Ok(());
        }
        Some(UpgradeCommand::Status { watch: false }) => {
            let view = status(client).await?;
            output::print(format, &view, || match &view {
                Some(view) => view.text(),
                None => "no upgrade yet: `batonctl upgrade BINARY --signing-key FILE` starts one\n".into(),
            });
            return Ok(());
        }
        Some(UpgradeCommand::Pause) => "pause",
        Some(UpgradeCommand::Resume) => "resume",
        Some(UpgradeCommand::Abort) => "abort",
        Some(UpgradeCommand::Finalize) => "finalize",
        None => return start(client, args, format).await,
    };
    let view = control(client, action).await?;
    output::print(format, &view, || {
        view.as_ref().map(UpgradeView::text).unwrap_or_default()
    });
    Ok(())
}

/// Pauses, resumes or aborts (`action`) the live upgrade; what it is then.
pub async fn control(client: &ClusterClient, action: &str) -> Result<Option<UpgradeView>, CmdError> {
    let request = ControlUpgradeRequest { action: action.into() };
    let reply = client
        .call_with(&request, |mut c, r| async move { c.control_upgrade(r).await })
        .await?;
    Ok(UpgradeView::of(reply))
}

/// Signs and uploads the binary, which starts the upgrade; follows it
/// unless --no-wait.
async fn start(client: &ClusterClient, args: UpgradeArgs, format: OutputFormat) -> Result<(), CmdError> {
    let binary = args
        .binary
        .ok_or_else(|| CmdError::Usage("name the new baton-node binary: `batonctl upgrade BINARY`".into()))?;
    let key = args.signing_key.ok_or_else(|| {
        CmdError::Usage(
            "node binaries are signed: pass --signing-key FILE or set BATON_SIGNING_KEY (its FILE.pub must be in \
             every node's [heart] trusted_keys)"
                .into(),
        )
    })?;
    let key = read_private_key(&key)?;
    let settings = UpgradeSettings {
        min_healthy_ms: args.min_healthy,
        healthy_deadline_ms: args.healthy_deadline,
        auto_revert: !args.no_auto_revert,
        hold_version: args.hold_version,
    };
    let view = upload(client, &binary, &key, &settings).await?;
    if settings.hold_version && view.as_ref().is_some_and(|v| !v.hold_version) {
        return Err(CmdError::Failed(
            "the leader's release started the upgrade without --hold-version (it does not know it): the cluster \
             version will rise once the upgrade is done; `batonctl upgrade abort` stops it"
                .into(),
        ));
    }
    if args.no_wait {
        output::print(format, &view, || {
            view.as_ref().map(UpgradeView::text).unwrap_or_default()
        });
        return Ok(());
    }
    let view = watch(client).await?;
    output::print(format, &view, || view.text());
    outcome(&view)
}

/// Signs `binary` with `key` and uploads it to the leader, which starts an
/// upgrade with `settings`.
pub async fn upload(
    client: &ClusterClient,
    binary: &Path,
    key: &baton_node::modules::signing::SigningKey,
    settings: &UpgradeSettings,
) -> Result<Option<UpgradeView>, CmdError> {
    let release = describe(binary).await?;
    let bytes = std::fs::read(binary).map_err(|source| CmdError::File {
        path: binary.to_path_buf(),
        source,
    })?;
    let hash = baton_node::heart::hash_reader(&mut &bytes[..]).map_err(|source| CmdError::File {
        path: binary.to_path_buf(),
        source,
    })?;
    let (signer, signature) = sign_node_binary(key, &release.version, &hash);
    let header = UploadNodeBinaryHeader {
        binary: Some(SignedBinary {
            hash,
            version: release.version.clone(),
            signer,
            signature,
            size: bytes.len() as u64,
        }),
        min_cluster_version: release.min_cluster_version,
        max_cluster_version: release.max_cluster_version,
        min_healthy_ms: settings.min_healthy_ms,
        healthy_deadline_ms: settings.healthy_deadline_ms,
        auto_revert: settings.auto_revert,
        hold_version: settings.hold_version,
    };
    let _ = writeln!(
        std::io::stderr(),
        "uploading {} ({} bytes, release {}) to the leader",
        binary.display(),
        bytes.len(),
        release.version
    );
    // The answer comes once every byte is stored by the leader's heart.
    let reply = client
        .call_long(|mut c| {
            let chunks = chunks(&header, &bytes);
            async move { c.upload_node_binary(futures::stream::iter(chunks)).await }
        })
        .await?;
    Ok(UpgradeView::of(reply))
}

/// The upload's chunks: the header with the first bytes, then the rest.
fn chunks(header: &UploadNodeBinaryHeader, bytes: &[u8]) -> Vec<UploadNodeBinaryChunk> {
    let mut chunks: Vec<UploadNodeBinaryChunk> = bytes
        .chunks(CHUNK_BYTES)
        .map(|data| UploadNodeBinaryChunk {
            header: None,
            data: data.to_vec(),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(UploadNodeBinaryChunk::default());
    }
    chunks[0].header = Some(header.clone());
    chunks
}

/// What `BINARY --describe` says of itself.
async fn describe(binary: &Path) -> Result<ReleaseDescription, CmdError> {
    let not_a_node = |why: String| {
        CmdError::Usage(format!(
            "{} does not describe itself as a baton-node release ({why}); upgrade to a baton-node binary of \
             release 0.5.0 or later",
            binary.display()
        ))
    };
    let run = tokio::process::Command::new(binary)
        .arg("--describe")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DESCRIBE_TIMEOUT, run)
        .await
        .map_err(|_| not_a_node(format!("--describe did not answer within {DESCRIBE_TIMEOUT:?}")))?
        .map_err(|e| not_a_node(format!("cannot run it: {e}")))?;
    if !output.status.success() {
        return Err(not_a_node(format!(
            "--describe failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| not_a_node(format!("--describe printed no release: {e}")))
}
