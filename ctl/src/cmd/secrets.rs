//! `batonctl secrets rotate|keys`, and the secrets `tasks add` reads from
//! its arguments, files and environment. No value is ever printed.

use baton_proto::{RotateSecretsRequest, SecretKeysRequest};
use serde::Serialize;
use std::collections::BTreeMap;

use super::CmdError;
use crate::cli::{OutputFormat, SecretFlags, SecretsCommand};
use crate::client::ClusterClient;
use crate::output;

impl SecretFlags {
    /// The secrets by name: each named once, read from where it was said
    /// to be. An error names the flag and, once it is known to be a name,
    /// the secret; never what came after `=` (a value, or a path or
    /// variable name that may be one pasted by mistake).
    pub fn read(self, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<BTreeMap<String, Vec<u8>>, CmdError> {
        let mut secrets = BTreeMap::new();
        let mut put = |flag: &str, name: String, value: Vec<u8>| -> Result<(), CmdError> {
            if secrets.contains_key(&name) {
                return Err(CmdError::Usage(format!(
                    "{flag} {name}: secret {name} is given twice; give each secret once"
                )));
            }
            secrets.insert(name, value);
            Ok(())
        };
        for arg in &self.secret {
            let (name, value) = split("--secret", arg, "VALUE")?;
            put("--secret", name, value.as_bytes().to_vec())?;
        }
        for arg in &self.secret_file {
            let (name, path) = split("--secret-file", arg, "PATH")?;
            let mut value = std::fs::read(path).map_err(|e| {
                CmdError::Usage(format!(
                    "--secret-file {name}: cannot read the file given (not shown, in case it is the value): {e}"
                ))
            })?;
            if value.ends_with(b"\n") {
                value.pop();
                if value.ends_with(b"\r") {
                    value.pop();
                }
            }
            put("--secret-file", name, value)?;
        }
        for arg in &self.secret_env {
            let (name, variable) = split("--secret-env", arg, "VARIABLE")?;
            let value = env(variable).ok_or_else(|| {
                CmdError::Usage(format!(
                    "--secret-env {name}: the environment variable given (not shown, in case it is the value) is \
                     not set; give the variable's name, as in --secret-env {name}=API_TOKEN"
                ))
            })?;
            put("--secret-env", name, value.into_encoded_bytes())?;
        }
        Ok(secrets)
    }
}

/// `NAME=REST` split at its first `=`, the name checked as the cluster
/// checks it; the argument is never shown.
fn split<'a>(flag: &str, arg: &'a str, what: &str) -> Result<(String, &'a str), CmdError> {
    let refused = |why: &str| {
        CmdError::Usage(format!(
            "{flag} takes NAME={what}, NAME being 1 to {} letters, digits, '_', '-' and '.', starting with a \
             letter, '_' or '.'; {why} (the argument is not shown, in case it holds a value)",
            baton_node::state::secrets::MAX_SECRET_NAME_BYTES
        ))
    };
    let (name, rest) = arg.split_once('=').ok_or_else(|| refused("this one has no '='"))?;
    baton_node::state::secrets::check_name(name).map_err(|_| refused("this one's name is not such a name"))?;
    Ok((name.to_string(), rest))
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
                left: u64,
            }
            let rotated = Rotated {
                key_id: reply.key_id,
                resealed: reply.resealed,
                current: reply.current,
                unopened: reply.unopened,
                left: reply.left,
            };
            output::print(format, &rotated, || {
                let mut text = format!(
                    "sealed {} secret(s) again with key {}; {} already were\n",
                    rotated.resealed, rotated.key_id, rotated.current
                );
                for why in &rotated.unopened {
                    text += &format!("not resealed: {why}\n");
                }
                if rotated.left > 0 {
                    text += &format!(
                        "not resealed: {} secret(s) changed each time they were read (tasks added again); run it again\n",
                        rotated.left
                    );
                }
                text
            });
            if rotated.left > 0 {
                return Err(CmdError::Failed(format!(
                    "{} secret(s) changed while being resealed",
                    rotated.left
                )));
            }
            if !rotated.unopened.is_empty() {
                return Err(CmdError::Failed(format!(
                    "{} secret(s) stay sealed with a key the leader does not hold",
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
        let args = SecretFlags {
            secret: vec!["A=x=y".into()],
            secret_file: vec![format!("B={}", file.display())],
            secret_env: vec!["C=BATON_TEST_SECRET".into()],
        };
        let env = |name: &str| (name == "BATON_TEST_SECRET").then(|| "from-env".into());
        let read = args.read(env).unwrap();
        assert_eq!(read["A"], b"x=y");
        assert_eq!(read["B"], b"from-a-file");
        assert_eq!(read["C"], b"from-env");

        let refused = |args: SecretFlags| args.read(|_| None).unwrap_err().to_string();
        let twice = refused(SecretFlags {
            secret: vec!["A=1".into(), "A=hidden".into()],
            ..SecretFlags::default()
        });
        assert!(twice.contains("given twice") && !twice.contains("hidden"), "{twice}");
        // A value pasted where the name or the variable goes is not shown.
        for (flag, arg) in [
            ("--secret", "=hidden"),
            ("--secret", "hidden"),
            ("--secret", "hid den=x"),
            ("--secret-env", "C=hidden"),
            ("--secret-file", "C=/hidden/x"),
        ] {
            let mut args = SecretFlags::default();
            match flag {
                "--secret" => &mut args.secret,
                "--secret-file" => &mut args.secret_file,
                _ => &mut args.secret_env,
            }
            .push(arg.into());
            let e = refused(args);
            assert!(!e.contains("hidden") && !e.contains("hid den"), "{e}");
        }
    }
}
