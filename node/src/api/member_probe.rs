//! Asking every member how it is, for `status` and `nodes list`.

use std::time::{Duration, Instant};

use baton_proto::{MemberStatus, NodeInfoReply, NodeInfoRequest};
use futures::future::join_all;

use super::NodeContext;
use super::peer_service::local_info;
use crate::supervision::node_view;
use crate::types::NodeId;

/// How long a member may take to answer before it counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The state of a member that answers from a data directory other than the
/// one it was admitted with: it takes no part in Raft until it is replaced
/// (`batonctl nodes replace`).
pub const LOST_DATA: &str = "lost-data";

/// Whether a member admitted with storage `recorded` answered from another
/// one: a new data directory (a lost disk), or, for a member admitted before
/// storage ids, one without Raft state. An answer from a release before
/// storage ids says nothing either way.
pub fn has_lost_its_data(recorded: &str, info: &NodeInfoReply) -> bool {
    match (recorded, info.storage_id.as_str()) {
        (_, "") => false,
        ("", _) => !info.has_raft_state,
        (recorded, actual) => recorded != actual,
    }
}

/// Every member of the current membership with what it says of itself.
pub async fn probe_members(context: &NodeContext) -> Vec<MemberStatus> {
    let metrics = crate::types::metrics(&context.raft);
    let membership = metrics.membership_config.membership().clone();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let matched = |id: NodeId| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id))
            .and_then(|l| l.as_ref())
            .map(|l| l.index)
    };
    let probes = membership.nodes().map(|(id, node)| {
        let (id, addr, recorded) = (*id, node.addr.clone(), node.storage_id.clone());
        async move {
            let info = if id == context.id {
                Some(local_info(context))
            } else {
                probe(context, id, &addr).await
            };
            let lost = info.as_ref().is_some_and(|i| has_lost_its_data(&recorded, i));
            (id, addr, info, lost)
        }
    });
    let leads = metrics.current_leader == Some(context.id);
    let (drained, owned) = context.state_machine.read(|s| {
        let owned: std::collections::BTreeMap<NodeId, u64> = (s.tasks.index().running_by_owner().iter())
            .filter_map(|(owner, tasks)| Some(((*owner)?, tasks.len() as u64)))
            .collect();
        (s.drained.clone(), owned)
    });
    // The leader sees everyone through its leases, as placement does; any
    // other node only knows who answered its probe.
    let view = leads.then(|| {
        let members: Vec<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let leaving = context.supervision.is_leaving();
        context
            .supervision
            .leases(|l| node_view(l, &members, &drained, context.id, leaving, Instant::now()))
    });
    let state = |id: NodeId, answered: bool| -> &'static str {
        match &view {
            Some(view) => view.state_of(id),
            None if !answered => "unreachable",
            None if drained.contains(&id) || (id == context.id && context.supervision.is_leaving()) => "draining",
            None => "up",
        }
    };
    join_all(probes)
        .await
        .into_iter()
        .map(|(id, addr, info, lost)| MemberStatus {
            id,
            addr,
            role: if voters.contains(&id) { "voter" } else { "worker" }.to_string(),
            state: match lost {
                true => LOST_DATA,
                false => state(id, info.is_some()),
            }
            .to_string(),
            tasks: owned.get(&id).copied().unwrap_or(0),
            drained: drained.contains(&id),
            version: info.as_ref().map(|i| i.version.clone()).unwrap_or_default(),
            binary: info.as_ref().map(|i| i.binary.clone()).unwrap_or_default(),
            max_cluster_version: info.as_ref().map_or(0, |i| i.max_cluster_version),
            last_contact_ms: context.last_contact_ms(id),
            raft_state: info.map(|i| i.raft_state).unwrap_or_default(),
            matched_index: if id == context.id {
                metrics.last_log_index
            } else {
                matched(id)
            },
        })
        .collect()
}

/// Asks node `id` at `addr` who it is; `None` unless it answers as that node
/// of this cluster.
pub async fn probe(context: &NodeContext, id: NodeId, addr: &str) -> Option<NodeInfoReply> {
    let channel = context.channels.channel(id, addr).ok()?;
    let mut client = crate::raft::peer_client(channel);
    let request = context.channels.request(NodeInfoRequest {}, Some(PROBE_TIMEOUT));
    let reply = tokio::time::timeout(PROBE_TIMEOUT, client.node_info(request))
        .await
        .ok()?
        .ok()?;
    let info = reply.into_inner();
    if info.node_id != id || info.cluster_id != context.cluster_id {
        return None;
    }
    context.record_contact(id);
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(storage_id: &str, has_raft_state: bool) -> NodeInfoReply {
        NodeInfoReply {
            storage_id: storage_id.into(),
            has_raft_state,
            ..Default::default()
        }
    }

    #[test]
    fn a_member_answering_from_another_storage_has_lost_its_data() {
        assert!(has_lost_its_data("s1", &answer("s2", false)));
        assert!(has_lost_its_data("s1", &answer("s2", true)));
        assert!(!has_lost_its_data("s1", &answer("s1", true)));
    }

    #[test]
    fn a_member_admitted_before_storage_ids_has_lost_its_data_only_without_raft_state() {
        assert!(!has_lost_its_data("", &answer("s2", true)));
        assert!(has_lost_its_data("", &answer("s2", false)));
    }

    #[test]
    fn an_older_release_that_names_no_storage_is_taken_at_its_word() {
        assert!(!has_lost_its_data("s1", &answer("", false)));
    }
}
