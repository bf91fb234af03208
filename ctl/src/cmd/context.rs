//! `batonctl context add|use|list|rm`: the contexts file
//! ([`crate::contexts`]).

use std::path::PathBuf;

use serde::Serialize;

use super::CmdError;
use crate::cli::{ContextCommand, GlobalArgs, OutputFormat};
use crate::client::ClusterClient;
use crate::contexts::{Context, Contexts};
use crate::output;

/// A context as `context list` prints it.
#[derive(Debug, Serialize)]
pub struct ContextView {
    pub name: String,
    pub current: bool,
    #[serde(flatten)]
    pub context: Context,
}

pub fn run(command: ContextCommand, global: &GlobalArgs, format: OutputFormat) -> Result<(), CmdError> {
    let path = Contexts::path()?;
    let mut contexts = Contexts::load(&path)?;
    match command {
        ContextCommand::Add { name } => {
            let context = from_args(global)?;
            if contexts.current.is_none() {
                contexts.current = Some(name.clone());
            }
            contexts.contexts.insert(name.clone(), context);
            contexts.save(&path)?;
            let current = contexts.current.as_deref() == Some(name.as_str());
            eprintln!(
                "context {name} written to {}{}",
                path.display(),
                if current {
                    " (the current context)".to_string()
                } else {
                    format!("; `batonctl context use {name}` makes it the current one")
                }
            );
        }
        ContextCommand::Use { name } => {
            contexts.get(&name)?;
            contexts.current = Some(name);
            contexts.save(&path)?;
        }
        ContextCommand::Rm { name } => {
            contexts.get(&name)?;
            contexts.contexts.remove(&name);
            if contexts.current.as_deref() == Some(name.as_str()) {
                contexts.current = None;
            }
            contexts.save(&path)?;
        }
        ContextCommand::List => {
            let views: Vec<ContextView> = contexts
                .contexts
                .iter()
                .map(|(name, context)| ContextView {
                    name: name.clone(),
                    current: contexts.current.as_deref() == Some(name.as_str()),
                    context: context.clone(),
                })
                .collect();
            output::print(format, &views, || {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            if v.current { "*".into() } else { String::new() },
                            v.name.clone(),
                            v.context.endpoints.join(","),
                            if v.context.insecure { "none" } else { "mutual" }.into(),
                        ]
                    })
                    .collect();
                output::table(&["CURRENT", "NAME", "ENDPOINTS", "TLS"], &rows)
            });
        }
    }
    Ok(())
}

/// A context from the flags and variables given with `context add`,
/// checked as a command would use them (a client is built from them: the
/// endpoints parse, the certificate files load), with the files kept as
/// absolute paths.
fn from_args(global: &GlobalArgs) -> Result<Context, CmdError> {
    ClusterClient::from_args(global)?;
    let absolute = |path: &Option<PathBuf>| {
        path.as_deref()
            .map(|path| {
                std::path::absolute(path).map_err(|source| CmdError::File {
                    path: path.to_path_buf(),
                    source,
                })
            })
            .transpose()
    };
    let secure = !global.insecure;
    Ok(Context {
        endpoints: global
            .endpoints
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
        ca: if secure { absolute(&global.ca)? } else { None },
        cert: if secure { absolute(&global.cert)? } else { None },
        key: if secure { absolute(&global.key)? } else { None },
        insecure: global.insecure,
    })
}
