//! `batonctl keys new`: an ed25519 key pair for signing task modules.

use std::path::{Path, PathBuf};

use baton_node::modules::signing::{SigningKey, generate, private_key_text, public_key_text};
use serde_json::json;

use super::CmdError;
use crate::cli::{KeysCommand, OutputFormat};
use crate::output;

pub fn run(command: KeysCommand, format: OutputFormat) -> Result<(), CmdError> {
    match command {
        KeysCommand::New { file } => {
            let key = generate();
            let public = write_key_pair(&file, &key)?;
            output::print(
                format,
                &json!({"private_key": file, "public_key": public, "public_key_file": public_path(&file)}),
                || {
                    format!(
                        "wrote {} (private: keep it secret) and {}\npublic key: {public}\n\
                         trust it: add it to [modules] trusted_keys on every node; sign with \
                         `batonctl modules deploy --signing-key {}` (or BATON_SIGNING_KEY)\n",
                        file.display(),
                        public_path(&file).display(),
                        file.display()
                    )
                },
            );
            Ok(())
        }
    }
}

/// FILE.pub beside FILE.
pub fn public_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes `key` to `file` (mode 0600, never over an existing file) and its
/// public half to `file.pub`; returns the public key's hex.
pub fn write_key_pair(file: &Path, key: &SigningKey) -> Result<String, CmdError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CmdError::Write { path, source }
    };
    let mut private = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(err(file))?;
    private.write_all(private_key_text(key).as_bytes()).map_err(err(file))?;
    let public = public_key_text(&key.verifying_key());
    let pub_path = public_path(file);
    std::fs::write(&pub_path, format!("{public}\n")).map_err(err(&pub_path))?;
    Ok(public)
}
