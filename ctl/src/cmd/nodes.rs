//! `batonctl nodes list|add|remove`.

use baton_proto::{AddNodeRequest, ListNodesRequest, RemoveNodeRequest};
use serde_json::json;

use super::CmdError;
use super::status::{MemberView, members_table};
use crate::cli::{NodesCommand, OutputFormat};
use crate::client::ClusterClient;
use crate::output;

pub async fn run(client: &ClusterClient, command: NodesCommand, format: OutputFormat) -> Result<(), CmdError> {
    match command {
        NodesCommand::List => {
            let reply = client
                .call(|mut c| async move { c.list_nodes(ListNodesRequest {}).await })
                .await?;
            let members: Vec<MemberView> = reply.members.into_iter().map(MemberView::from).collect();
            output::print(format, &members, || members_table(&members));
        }
        NodesCommand::Add { id, addr, worker } => {
            let request = AddNodeRequest {
                id,
                addr: addr.clone(),
                worker,
            };
            let reply = client
                .call_with(&request, |mut c, r| async move { c.add_node(r).await })
                .await?;
            let role = if worker { "worker" } else { "voter" };
            output::print(
                format,
                &json!({"id": id, "addr": addr, "role": role, "log_index": reply.log_index}),
                || {
                    format!(
                        "added node {id} at {addr} as a {role} (log index {})\n",
                        reply.log_index
                    )
                },
            );
        }
        NodesCommand::Remove { id } => {
            let reply = client
                .call(|mut c| async move { c.remove_node(RemoveNodeRequest { id }).await })
                .await?;
            output::print(format, &json!({"id": id, "log_index": reply.log_index}), || {
                format!("removed node {id} (log index {})\n", reply.log_index)
            });
        }
    }
    Ok(())
}
