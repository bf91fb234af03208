//! `batonctl context add|use|list|rm`: the contexts file
//! ([`crate::contexts`]).

use serde::Serialize;

use super::CmdError;
use crate::cli::{ContextCommand, GlobalArgs, OutputFormat};
use crate::client::endpoint_address;
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
/// checked as a command would use it: endpoints that parse, and the
/// certificate files readable (kept as absolute paths).
fn from_args(global: &GlobalArgs) -> Result<Context, CmdError> {
    let endpoints: Vec<String> = global
        .endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err(CmdError::Usage(
            "a context needs endpoints: `batonctl context add NAME --endpoints HOST:PORT[,...]` with --ca, --cert \
             and --key (or --insecure)"
                .into(),
        ));
    }
    for endpoint in &endpoints {
        endpoint_address(endpoint, !global.insecure)
            .map_err(|why| CmdError::Usage(format!("{endpoint:?} is not a valid endpoint: {why}")))?;
    }
    if global.insecure {
        return Ok(Context {
            endpoints,
            ca: None,
            cert: None,
            key: None,
            insecure: true,
        });
    }
    let (Some(ca), Some(cert), Some(key)) = (&global.ca, &global.cert, &global.key) else {
        return Err(CmdError::Usage(
            "a context needs --ca, --cert and --key (or BATON_CA, BATON_CERT, BATON_KEY), or --insecure for a \
             cluster without TLS"
                .into(),
        ));
    };
    baton_node::tls::TlsMaterial::load_files(ca, cert, key).map_err(crate::client::ClientError::from)?;
    let absolute = |path: &std::path::Path| {
        std::path::absolute(path).map_err(|source| CmdError::File {
            path: path.to_path_buf(),
            source,
        })
    };
    Ok(Context {
        endpoints,
        ca: Some(absolute(ca)?),
        cert: Some(absolute(cert)?),
        key: Some(absolute(key)?),
        insecure: false,
    })
}
