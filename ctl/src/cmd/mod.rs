//! One file per subcommand, each with a `run` that takes parsed arguments.

pub mod certs;
pub mod config;
pub mod dev;
pub mod keys;
pub mod kv;
pub mod modules;
pub mod nodes;
pub mod rollout;
pub mod status;
pub mod tasks;
pub mod upgrade;

use crate::cli::{Cli, Command};
use crate::client::{ClientError, ClusterClient};
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
    #[error("{0}")]
    Usage(String),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CmdError> {
    let format = cli.global.output;
    match cli.command {
        Command::Certs(command) => certs::run(command, format),
        Command::Keys(command) => keys::run(command, format),
        Command::Config(command) => config::run(command),
        Command::Dev(args) => dev::run(args, format).await,
        Command::Status => status::run(&ClusterClient::from_args(&cli.global)?, format).await,
        Command::Nodes(command) => nodes::run(&ClusterClient::from_args(&cli.global)?, command, format).await,
        Command::Tasks(command) => tasks::run(&ClusterClient::from_args(&cli.global)?, command, format).await,
        Command::Modules(command) => modules::run(&ClusterClient::from_args(&cli.global)?, command, format).await,
        Command::Rollout(command) => rollout::run(&ClusterClient::from_args(&cli.global)?, command, format).await,
        Command::Kv(command) => kv::run(&ClusterClient::from_args(&cli.global)?, command, format).await,
        Command::Upgrade(args) => upgrade::run(&ClusterClient::from_args(&cli.global)?, args, format).await,
    }
}
