//! `batonctl modules deploy|list|history`.

use baton_node::modules::signing::{SigningKey, read_private_key, sign};
use baton_node::runtime::content_hash;
use baton_proto::{DeployModuleRequest, ListModulesRequest, ModuleHistoryRequest, ModuleInfo, RolloutSettings};
use serde::Serialize;

use super::CmdError;
use crate::cli::{ModulesCommand, OutputFormat, RolloutArgs};
use crate::client::ClusterClient;
use crate::output;

/// A module as `modules --output json` prints it.
#[derive(Debug, Serialize)]
pub struct ModuleView {
    pub name: String,
    pub version: u32,
    pub hash: String,
    pub size: u64,
    pub migrates: bool,
    pub deployed_at_ms: u64,
    /// The public key that signed it.
    pub signer: String,
    /// Older versions it converts its states back to.
    pub down_to: Vec<u32>,
}

/// A release as `modules history --output json` prints it.
#[derive(Debug, Serialize)]
pub struct ReleaseView {
    #[serde(flatten)]
    pub module: ModuleView,
    pub outcome: String,
    pub current: bool,
}

impl From<ModuleInfo> for ModuleView {
    fn from(m: ModuleInfo) -> Self {
        ModuleView {
            name: m.name,
            version: m.version,
            hash: m.hash,
            size: m.size,
            migrates: m.migrates,
            deployed_at_ms: m.deployed_at_ms,
            signer: m.signer,
            down_to: m.down_to,
        }
    }
}

fn table(modules: &[ModuleView]) -> String {
    let rows: Vec<Vec<String>> = modules
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.version.to_string(),
                m.hash[..12.min(m.hash.len())].to_string(),
                m.size.to_string(),
                if m.migrates { "yes" } else { "no" }.to_string(),
                m.signer[..12.min(m.signer.len())].to_string(),
            ]
        })
        .collect();
    output::table(&["NAME", "VERSION", "HASH", "BYTES", "MIGRATE", "SIGNER"], &rows)
}

fn history_table(releases: &[ReleaseView]) -> String {
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                r.module.version.to_string(),
                if r.current { "*" } else { "" }.to_string(),
                r.module.hash[..12.min(r.module.hash.len())].to_string(),
                r.module.size.to_string(),
                if r.module.migrates { "yes" } else { "no" }.to_string(),
                r.outcome.clone(),
            ]
        })
        .collect();
    output::table(&["VERSION", "CURRENT", "HASH", "BYTES", "MIGRATE", "OUTCOME"], &rows)
}

/// A deploy request for `component` as module `name`, signed with `key`,
/// rolled out with the default settings if it is a new version.
/// The least time `modules deploy` gives the cluster (`--timeout-secs` may
/// give more): the leader compiles the module before it answers, which
/// takes tens of seconds for a Python module on a busy small machine.
pub const DEPLOY_TIMEOUT_SECS: u64 = 120;

pub fn signed_deploy(name: String, component: Vec<u8>, key: &SigningKey) -> DeployModuleRequest {
    let (signer, signature) = sign(key, &name, &content_hash(&component));
    DeployModuleRequest {
        name,
        component,
        signer,
        signature,
        rollout: None,
    }
}

fn settings(args: &RolloutArgs) -> RolloutSettings {
    RolloutSettings {
        canary: args.canary,
        max_parallel: args.max_parallel,
        min_healthy_ms: args.min_healthy,
        healthy_deadline_ms: args.healthy_deadline,
        no_auto_revert: args.no_auto_revert,
    }
}

pub async fn run(client: &ClusterClient, command: ModulesCommand, format: OutputFormat) -> Result<(), CmdError> {
    match command {
        ModulesCommand::Deploy {
            name,
            file,
            signing_key: key,
            rollout,
        } => {
            let component = std::fs::read(&file).map_err(|source| CmdError::File {
                path: file.clone(),
                source,
            })?;
            let key = key.ok_or_else(|| {
                CmdError::Usage(
                    "modules are deployed signed: pass --signing-key FILE or set BATON_SIGNING_KEY (make a key with \
                     `batonctl keys new FILE`, and list FILE.pub under [modules] trusted_keys on every node)"
                        .into(),
                )
            })?;
            let key = read_private_key(&key)?;
            let mut request = signed_deploy(name.clone(), component, &key);
            request.rollout = Some(settings(&rollout));
            let reply = client
                // The leader checks and compiles the module before it answers.
                .call_long(|mut c| {
                    let request = request.clone();
                    async move { c.deploy_module(request).await }
                })
                .await?;
            let module: Vec<ModuleView> = reply.module.into_iter().map(ModuleView::from).collect();
            let started = reply.rollout_started;
            output::print(format, &module.first(), || {
                let what = match (started, rollout.no_wait) {
                    (true, true) => "; its rollout began: follow it with `batonctl rollout status --watch`",
                    (true, false) => "; rolling it out:",
                    (false, _) => "",
                };
                format!("deployed (log index {}){what}\n{}", reply.log_index, table(&module))
            });
            if started && !rollout.no_wait {
                let ended = super::rollout::watch(client, &name).await?;
                super::rollout::outcome(&ended)?;
            }
        }
        ModulesCommand::History { name } => {
            let request = ModuleHistoryRequest { name };
            let reply = client
                .call_with(&request, |mut c, r| async move { c.module_history(r).await })
                .await?;
            let releases: Vec<ReleaseView> = reply
                .releases
                .into_iter()
                .map(|r| ReleaseView {
                    module: ModuleView::from(r.module.unwrap_or_default()),
                    outcome: r.outcome,
                    current: r.current,
                })
                .collect();
            output::print(format, &releases, || history_table(&releases));
        }
        ModulesCommand::List => {
            let reply = client
                .call(|mut c| async move { c.list_modules(ListModulesRequest {}).await })
                .await?;
            let modules: Vec<ModuleView> = reply.modules.into_iter().map(ModuleView::from).collect();
            output::print(format, &modules, || table(&modules));
        }
    }
    Ok(())
}
