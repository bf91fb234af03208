//! `batonctl secrets rotate|keys`, and the secrets `tasks add` reads from
//! its arguments, files and environment. No value is ever printed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use baton_proto::{RotateSecretsRequest, SecretKeysRequest};
use serde::Serialize;

use super::CmdError;
use crate::cli::{OutputFormat, SecretsCommand};
use crate::client::ClusterClient;
use crate::output;

/// Where `tasks add` was told to find its secrets.
#[derive(Debug, Default)]
pub struct SecretArgs {
    /// `NAME=VALUE`.
    pub values: Vec<String>,
    /// `NAME=PATH`.
    pub files: Vec<String>,
    /// `NAME=VARIABLE`.
    pub env: Vec<String>,
}

impl SecretArgs {
    /// The secrets by name: each named once, read from where it was said
    /// to be. An error names the secret and the flag, never the value.
    pub fn read(self, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<BTreeMap<String, Vec<u8>>, CmdError> {
        let mut secrets = BTreeMap::new();
        let mut put = |flag: &str, arg: &str, value: Vec<u8>| -> Result<(), CmdError> {
            let name = arg.split_once('=').map_or(arg, |(n, _)| n);
            if secrets.insert(name.to_string(), value).is_some() {
                return Err(CmdError::Usage(format!(
                    "{flag} {name}: secret {name} is given twice; give each secret once"
                )));
            }
            Ok(())
        };
        let split = |flag: &str, arg: &str, what: &str| -> Result<(String, String), CmdError> {
            match arg.split_once('=') {
                Some((name, rest)) if !name.is_empty() => Ok((name.to_string(), rest.to_string())),
                _ => Err(CmdError::Usage(format!(
                    "{flag} takes NAME={what}; got an argument without a name before '='"
                ))),
            }
        };
        for arg in &self.values {
            let (_, value) = split("--secret", arg, "VALUE")?;
            put("--secret", arg, value.into_bytes())?;
        }
        for arg in &self.files {
            let (name, path) = split("--secret-file", arg, "PATH")?;
            let path = PathBuf::from(path);
            let mut value = std::fs::read(&path).map_err(|source| CmdError::File { path, source })?;
            if value.ends_with(b"\n") {
                value.pop();
                if value.ends_with(b"\r") {
                    value.pop();
                }
            }
            put("--secret-file", &name, value)?;
        }
        for arg in &self.env {
            let (name, variable) = split("--secret-env", arg, "VARIABLE")?;
            let value = env(&variable).ok_or_else(|| {
                CmdError::Usage(format!(
                    "--secret-env {name}: environment variable {variable} is not set"
                ))
            })?;
            put("--secret-env", &name, value.into_encoded_bytes())?;
        }
        Ok(secrets)
    }
}

pub async fn run(client: &ClusterClient, command: SecretsCommand, format: OutputFormat) -> Result<(), CmdError> {
    match command {
        SecretsCommand::Rotate => {
            let reply = client
                .call(|mut c| async move { c.rotate_secrets(RotateSecretsRequest {}).await })
                .await?;
            #[derive(Serialize)]
            struct Rotated {
                key_id: String,
                resealed: u64,
                current: u64,
                unopened: Vec<String>,
            }
            let rotated = Rotated {
                key_id: reply.key_id,
                resealed: reply.resealed,
                current: reply.current,
                unopened: reply.unopened,
            };
            output::print(format, &rotated, || {
                let mut text = format!(
                    "sealed {} secret(s) again with key {}; {} already were\n",
                    rotated.resealed, rotated.key_id, rotated.current
                );
                for why in &rotated.unopened {
                    text += &format!("not resealed: {why}\n");
                }
                text
            });
            if !rotated.unopened.is_empty() {
                return Err(CmdError::Failed(format!(
                    "{} secret(s) stay sealed with a key the answering node does not hold",
                    rotated.unopened.len()
                )));
            }
        }
        SecretsCommand::Keys => {
            let reply = client
                .call(|mut c| async move { c.secret_keys(SecretKeysRequest {}).await })
                .await?;
            #[derive(Serialize)]
            struct KeyView {
                key_id: String,
                held: bool,
                seals: bool,
                secrets: u64,
            }
            let keys: Vec<KeyView> = reply
                .keys
                .into_iter()
                .map(|k| KeyView {
                    key_id: k.key_id,
                    held: k.held,
                    seals: k.seals,
                    secrets: k.secrets,
                })
                .collect();
            let node = reply.node;
            output::print(format, &serde_json::json!({"node": node, "keys": keys}), || {
                if keys.is_empty() {
                    return format!("node {node} holds no secret keys, and no task has secrets\n");
                }
                let mut text = format!(
                    "{:<18} {:<28} {}\n",
                    "KEY",
                    "ON NODE ".to_string() + &node.to_string(),
                    "SECRETS"
                );
                for k in &keys {
                    let role = match (k.held, k.seals) {
                        (true, true) => "held, seals new secrets",
                        (true, false) => "held, opens only",
                        (false, _) => "MISSING: cannot open these",
                    };
                    text += &format!("{:<18} {:<28} {}\n", k.key_id, role, k.secrets);
                }
                text
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_arguments_files_and_the_environment_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let args = SecretArgs {
            values: vec!["A=x=y".into()],
            files: vec![format!("B={}", file.display())],
            env: vec!["C=BATON_TEST_SECRET".into()],
        };
        let env = |name: &str| (name == "BATON_TEST_SECRET").then(|| "from-env".into());
        let read = args.read(env).unwrap();
        assert_eq!(read["A"], b"x=y");
        assert_eq!(read["B"], b"from-a-file");
        assert_eq!(read["C"], b"from-env");

        let twice = SecretArgs {
            values: vec!["A=1".into(), "A=hidden".into()],
            ..SecretArgs::default()
        };
        let e = twice.read(|_| None).unwrap_err().to_string();
        assert!(e.contains("given twice") && !e.contains("hidden"), "{e}");
        let nameless = SecretArgs {
            values: vec!["=hidden".into()],
            ..SecretArgs::default()
        };
        let e = nameless.read(|_| None).unwrap_err().to_string();
        assert!(e.contains("NAME=VALUE") && !e.contains("hidden"), "{e}");
        let unset = SecretArgs {
            env: vec!["C=NOPE".into()],
            ..SecretArgs::default()
        };
        assert!(
            unset
                .read(|_| None)
                .unwrap_err()
                .to_string()
                .contains("NOPE is not set")
        );
    }
}
