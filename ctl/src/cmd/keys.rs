//! `batonctl keys new`: an ed25519 key pair for signing task modules.

use baton_node::modules::signing::{generate, public_key_path, write_key_pair};
use serde_json::json;

use super::CmdError;
use crate::cli::{KeysCommand, OutputFormat};
use crate::output;

pub fn run(command: KeysCommand, format: OutputFormat) -> Result<(), CmdError> {
    match command {
        KeysCommand::New { file } => {
            let key = generate();
            let public = write_key_pair(&file, &key).map_err(|(path, source)| CmdError::Write { path, source })?;
            output::print(
                format,
                &json!({"private_key": file, "public_key": public, "public_key_file": public_key_path(&file)}),
                || {
                    format!(
                        "wrote {} (private: keep it secret) and {}\npublic key: {public}\n\
                         trust it: add it to [modules] trusted_keys on every node; sign with \
                         `batonctl modules deploy --signing-key {}` (or BATON_SIGNING_KEY)\n",
                        file.display(),
                        public_key_path(&file).display(),
                        file.display()
                    )
                },
            );
            Ok(())
        }
    }
}
