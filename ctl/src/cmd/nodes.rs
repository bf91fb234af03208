//! `batonctl nodes list|add|remove|replace|drain|undrain`.

use std::time::{Duration, Instant};

use baton_proto::{AddNodeRequest, DrainNodeRequest, ListNodesRequest, RemoveNodeRequest, ReplaceNodeRequest};
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
        NodesCommand::Drain { id, no_wait } => {
            let reply = client
                .call(|mut c| async move { c.drain_node(DrainNodeRequest { id, drain: true }).await })
                .await?;
            let left = match no_wait {
                true => reply.tasks_to_move,
                false => wait_until_empty(client, id).await?,
            };
            output::print(
                format,
                &json!({"id": id, "log_index": reply.log_index, "tasks_moved": reply.tasks_to_move - left, "tasks_left": left}),
                || match (no_wait, left) {
                    (true, n) => format!("draining node {id}: {n} task(s) to hand off\n"),
                    (false, 0) => format!("drained node {id}: handed off {} task(s)\n", reply.tasks_to_move),
                    (false, n) => format!("node {id} is draining; {n} task(s) still to hand off\n"),
                },
            );
        }
        NodesCommand::Undrain { id } => {
            let reply = client
                .call(|mut c| async move { c.drain_node(DrainNodeRequest { id, drain: false }).await })
                .await?;
            output::print(format, &json!({"id": id, "log_index": reply.log_index}), || {
                format!("node {id} takes tasks again; its fair share moves to it a few at a time\n")
            });
        }
        NodesCommand::Remove { id } => {
            let reply = client
                .call(|mut c| async move { c.remove_node(RemoveNodeRequest { id }).await })
                .await?;
            output::print(format, &json!({"id": id, "log_index": reply.log_index}), || {
                format!("removed node {id} (log index {})\n", reply.log_index)
            });
        }
        NodesCommand::Replace { id } => {
            let reply = client
                .call(|mut c| async move { c.replace_node(ReplaceNodeRequest { id }).await })
                .await?;
            output::print(
                format,
                &json!({"id": id, "log_index": reply.log_index, "old_storage_id": reply.old_storage_id,
                        "new_storage_id": reply.new_storage_id, "unchanged": reply.unchanged, "voter": reply.voter}),
                || match (reply.unchanged, reply.voter) {
                    (true, true) => {
                        format!("node {id} runs on the storage the membership records for it; nothing to replace\n")
                    }
                    (true, false) => format!(
                        "node {id} runs on the storage the membership records for it, as a worker; if it was a \
                         voter before its disk was lost, make it one again with `batonctl nodes add {id} ADDR`\n"
                    ),
                    (false, _) => format!(
                        "replaced node {id}: storage {} for {}; it has caught up (log index {})\n",
                        reply.new_storage_id,
                        if reply.old_storage_id.is_empty() {
                            "its lost one"
                        } else {
                            &reply.old_storage_id
                        },
                        reply.log_index
                    ),
                },
            );
        }
    }
    Ok(())
}

/// How long `nodes drain` waits for the hand-offs.
const DRAIN_WAIT: Duration = Duration::from_secs(120);

/// Waits until node `id` owns no running task (or the wait runs out);
/// returns how many it still owns.
async fn wait_until_empty(client: &ClusterClient, id: u64) -> Result<u64, CmdError> {
    let deadline = Instant::now() + DRAIN_WAIT;
    loop {
        let reply = client
            .call(|mut c| async move { c.list_nodes(ListNodesRequest {}).await })
            .await?;
        let left = reply.members.iter().find(|m| m.id == id).map_or(0, |m| m.tasks);
        if left == 0 || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
