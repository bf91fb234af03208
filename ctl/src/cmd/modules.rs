//! `batonctl modules deploy|list`.

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
            ]
        })
        .collect();
    output::table(&["NAME", "VERSION", "HASH", "BYTES", "MIGRATE"], &rows)
}

pub async fn run(client: &ClusterClient, command: ModulesCommand, format: OutputFormat) -> Result<(), CmdError> {
    match command {
        ModulesCommand::Deploy { name, file } => {
            let component = std::fs::read(&file).map_err(|source| CmdError::File {
                path: file.clone(),
                source,
            })?;
            let request = DeployModuleRequest { name, component };
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
