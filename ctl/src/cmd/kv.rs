//! `batonctl kv put|get`: the replicated key-value space.

use baton_proto::{GetRequest, PutRequest};
use serde_json::json;

use super::CmdError;
use crate::cli::{KvCommand, OutputFormat};
use crate::client::ClusterClient;
use crate::output;

pub async fn run(client: &ClusterClient, command: KvCommand, format: OutputFormat) -> Result<(), CmdError> {
    match command {
        KvCommand::Put { key, value } => {
            let request = PutRequest {
                key: key.clone(),
                value: value.into_bytes(),
            };
            let reply = client
                .call_with(&request, |mut c, r| async move { c.put(r).await })
                .await?;
            output::print(format, &json!({"key": key, "log_index": reply.log_index}), || {
                format!("committed at log index {}\n", reply.log_index)
            });
        }
        KvCommand::Get { key, local } => {
            let request = GetRequest {
                key: key.clone(),
                local,
            };
            let reply = client
                .call_with(&request, |mut c, r| async move { c.get(r).await })
                .await?;
            let value = reply.found.then(|| String::from_utf8_lossy(&reply.value).into_owned());
            output::print(
                format,
                &json!({"key": key, "found": reply.found, "value": value}),
                || match &value {
                    Some(v) => format!("{v}\n"),
                    None => format!("{key}: not found\n"),
                },
            );
        }
    }
    Ok(())
}
