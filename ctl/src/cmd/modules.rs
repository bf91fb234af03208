//! `batonctl modules deploy|list`.

use baton_node::modules::signing::{SigningKey, read_private_key, sign};
use baton_node::runtime::content_hash;
use baton_proto::{DeployModuleRequest, ListModulesRequest, ModuleInfo};
use serde::Serialize;

use super::CmdError;
use crate::cli::{ModulesCommand, OutputFormat};
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

/// A deploy request for `component` as module `name`, signed with `key`.
pub fn signed_deploy(name: String, component: Vec<u8>, key: &SigningKey) -> DeployModuleRequest {
    let (signer, signature) = sign(key, &name, &content_hash(&component));
    DeployModuleRequest {
        name,
        component,
        signer,
        signature,
    }
}

pub async fn run(client: &ClusterClient, command: ModulesCommand, format: OutputFormat) -> Result<(), CmdError> {
    match command {
        ModulesCommand::Deploy {
            name,
            file,
            signing_key: key,
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
            let request = signed_deploy(name, component, &key);
            let reply = client
                .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
                .await?;
            let module: Vec<ModuleView> = reply.module.into_iter().map(ModuleView::from).collect();
            output::print(format, &module.first(), || {
                format!("deployed (log index {}):\n{}", reply.log_index, table(&module))
            });
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
