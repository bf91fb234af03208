//! One file per subcommand, each with a `run` that takes parsed arguments.

pub mod certs;
pub mod config;
pub mod context;
pub mod dev;
pub mod events;
pub mod keys;
pub mod kv;
pub mod logs;
pub mod modules;
pub mod nodes;
pub mod rollout;
pub mod scaffold;
pub mod secrets;
pub mod status;
pub mod tasks;
pub mod upgrade;

use crate::cli::{Cli, Command, GlobalArgs, TasksCommand};
use crate::client::{ClientError, ClusterClient};
use crate::contexts::{ContextError, Contexts};
use crate::pki::PkiError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Dev(#[from] dev::DevError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("cannot read {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}{}", if source.kind() == std::io::ErrorKind::AlreadyExists { "; keys are never overwritten: pick another file" } else { "" })]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Signing(#[from] baton_node::modules::signing::SigningError),
    /// The command line is wrong or incomplete.
    #[error("{0}")]
    Usage(String),
    /// What was asked for did not come about (a rollout or upgrade that
    /// halted).
    #[error("{0}")]
    Failed(String),
    /// What the command names does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// `batonctl`'s exit codes, for scripts (`docs/cli.md` lists them).
pub mod exit {
    /// The command did what it was asked.
    pub const OK: u8 = 0;
    /// It failed: the cluster refused the request, or a local file could
    /// not be read or written.
    pub const FAILED: u8 = 1;
    /// The command line is wrong or incomplete (nothing was sent).
    pub const USAGE: u8 = 2;
    /// No node could be reached, or none answered in time.
    pub const UNREACHABLE: u8 = 3;
    /// The named task, module, rollout or upgrade does not exist.
    pub const NOT_FOUND: u8 = 4;
}

impl CmdError {
    /// The exit code that stands for this error ([`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CmdError::Usage(_)
            | CmdError::Pki(PkiError::BadSpec(_) | PkiError::NoNodes)
            | CmdError::Context(ContextError::Unknown { .. } | ContextError::NoPath)
            | CmdError::Client(ClientError::NoEndpoints | ClientError::MissingCert(_) | ClientError::BadEndpoint(..)) => {
                exit::USAGE
            }
            CmdError::Client(ClientError::Unreachable { .. } | ClientError::Exhausted { .. }) => exit::UNREACHABLE,
            CmdError::NotFound(_) => exit::NOT_FOUND,
            CmdError::Client(ClientError::Refused(status)) if status.code() == tonic::Code::NotFound => exit::NOT_FOUND,
            _ => exit::FAILED,
        }
    }
}

/// A client for the cluster the flags, the variables and the context name.
fn client(mut global: GlobalArgs) -> Result<ClusterClient, CmdError> {
    let path = match Contexts::path() {
        Ok(path) => path,
        // No home and no contexts file named: only flags and variables.
        Err(ContextError::NoPath) if global.context.is_none() => return Ok(ClusterClient::from_args(&global)?),
        Err(e) => return Err(e.into()),
    };
    Contexts::load(&path)?.apply(&mut global)?;
    Ok(ClusterClient::from_args(&global)?)
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CmdError> {
    let format = cli.global.output;
    match cli.command {
        Command::Certs(command) => certs::run(command, format),
        Command::Keys(command) => keys::run(command, format),
        Command::Config(command) => config::run(command),
        Command::Dev(args) => dev::run(args, format).await,
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "batonctl", &mut std::io::stdout());
            Ok(())
        }
        Command::Context(command) => context::run(command, &cli.global, format),
        Command::Status => status::run(&client(cli.global)?, format).await,
        Command::Nodes(command) => nodes::run(&client(cli.global)?, command, format).await,
        Command::Tasks(TasksCommand::New { name, lang, dir }) => tasks::new_project(&dir, &name, lang, format),
        Command::Tasks(command) => tasks::run(&client(cli.global)?, command, format).await,
        Command::Modules(command) => {
            let mut global = cli.global;
            if matches!(command, crate::cli::ModulesCommand::Deploy { .. }) {
                // The leader compiles the module before it answers.
                global.timeout_secs = global.timeout_secs.max(modules::DEPLOY_TIMEOUT_SECS);
            }
            modules::run(&client(global)?, command, format).await
        }
        Command::Rollout(command) => rollout::run(&client(cli.global)?, command, format).await,
        Command::Kv(command) => kv::run(&client(cli.global)?, command, format).await,
        Command::Secrets(command) => secrets::run(&client(cli.global)?, command, format).await,
        Command::Upgrade(args) => upgrade::run(&client(cli.global)?, args, format).await,
        Command::Events { follow, limit } => events::run(&client(cli.global)?, limit, follow, format).await,
    }
}
