//! `batonctl nodes replace`: bringing back a member that lost its data (see
//! `docs/lost-disk.md`). The node is removed as the member it was, added
//! again on its new storage as a learner that catches up, then made a voter
//! again if it was one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_proto::ReplaceNodeReply;
use futures::future::join_all;
use openraft::ChangeMembers;
use tonic::Status;

use super::NodeContext;
use super::control_service::{answers_soon, remove_after_its_lease};
use super::errors::write_error;
use super::member_probe::{has_lost_its_data, probe};
use crate::types::{Member, NodeId};

/// How long the replaced node may take to catch up as a learner.
const CATCH_UP: Duration = Duration::from_secs(300);

/// The nodes this leader is replacing: a second call for one (a client that
/// timed out and retried) is told to wait, rather than starting the steps
/// again over the first call's.
#[derive(Default)]
pub struct InFlight(Mutex<BTreeSet<NodeId>>);

/// Marks `id` in flight until dropped.
struct Replacing {
    in_flight: Arc<InFlight>,
    id: NodeId,
}

impl Drop for Replacing {
    fn drop(&mut self) {
        self.in_flight
            .0
            .lock()
            .expect("in-flight lock poisoned")
            .remove(&self.id);
    }
}

/// Whether the voters other than `id` that answer now make a quorum of the
/// current voters and of the voters without `id` (the two configurations
/// of the joint change that removes it).
pub fn quorum_without(voters: &BTreeSet<NodeId>, id: NodeId, answering: &BTreeSet<NodeId>) -> bool {
    let live = voters.iter().filter(|v| **v != id && answering.contains(v)).count();
    let rest = voters.len() - usize::from(voters.contains(&id));
    live * 2 > voters.len() && live * 2 > rest
}

/// Replaces node `id`; call it on the leader.
pub async fn replace(
    context: &Arc<NodeContext>,
    in_flight: &Arc<InFlight>,
    id: NodeId,
) -> Result<ReplaceNodeReply, Status> {
    let membership = crate::types::metrics(&context.raft)
        .membership_config
        .membership()
        .clone();
    let Some(member) = membership.get_node(&id).cloned() else {
        return Err(Status::not_found(format!(
            "node {id} is not a member (a replace that stopped after removing it leaves it so): add it with \
             `batonctl nodes add {id} ADDR`"
        )));
    };
    let Some(info) = answers_soon(context, id, &member.addr).await else {
        return Err(Status::failed_precondition(format!(
            "node {id} does not answer at {} as a node of cluster {}; start it (with its config and its new, \
             empty data_dir) first, then replace it",
            member.addr, context.cluster_id
        )));
    };
    if info.storage_id.is_empty() {
        return Err(Status::failed_precondition(format!(
            "node {id} runs baton-node {}, which has no storage ids; upgrade it first",
            info.version
        )));
    }
    super::control_service::check_release(context, id, &info)?;
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let was_voter = voters.contains(&id);
    if !has_lost_its_data(&member.storage_id, &info) {
        if in_flight.0.lock().expect("in-flight lock poisoned").contains(&id) {
            return Err(Status::unavailable(format!(
                "the replacement of node {id} is under way; it ends once the node has caught up"
            )));
        }
        return Ok(ReplaceNodeReply {
            log_index: context.state_machine.last_applied_index(),
            old_storage_id: member.storage_id.clone(),
            new_storage_id: member.storage_id,
            unchanged: true,
            voter: was_voter,
        });
    }
    if info.has_raft_state {
        return Err(Status::failed_precondition(format!(
            "node {id} answers from storage {}, which holds Raft state but is not the storage the membership \
             admitted ({}); stop it, empty its data_dir, start it again, then replace it",
            info.storage_id, member.storage_id
        )));
    }
    if was_voter && voters.len() == 1 {
        return Err(Status::failed_precondition(format!(
            "node {id} is the only voter: there is no other copy of the cluster's data to replace it from"
        )));
    }
    // The removal is a joint change: it needs a quorum of the voters with
    // it and without it, from the others alone. Refused now rather than
    // left waiting.
    let others = voters
        .iter()
        .filter(|v| **v != id)
        .filter_map(|v| Some((*v, membership.get_node(v)?.addr.clone())));
    let answering: BTreeSet<NodeId> = join_all(others.map(|(v, addr)| async move {
        let answered = v == context.id || probe(context, v, &addr).await.is_some();
        (v, answered)
    }))
    .await
    .into_iter()
    .filter_map(|(v, answered)| answered.then_some(v))
    .collect();
    if was_voter && !quorum_without(&voters, id, &answering) {
        return Err(Status::failed_precondition(format!(
            "replacing node {id} needs a quorum of the other voters, and only {answering:?} of {voters:?} answer; \
             bring the others back first"
        )));
    }
    {
        let mut set = in_flight.0.lock().expect("in-flight lock poisoned");
        if !set.insert(id) {
            return Err(Status::unavailable(format!(
                "the replacement of node {id} is under way; it ends once the node has caught up"
            )));
        }
    }
    let guard = Replacing {
        in_flight: in_flight.clone(),
        id,
    };
    // The steps run to the end in a task of their own even if the client
    // gives up; a retry meanwhile is told to wait (above).
    let context = context.clone();
    let new_member = Member::new(member.addr.clone(), info.storage_id.clone());
    let replacement = tokio::spawn(async move {
        let _guard = guard;
        let change = match was_voter {
            true => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            false => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
        };
        remove_after_its_lease(&context, id, change).await?;
        tracing::info!(
            node = id,
            "replacing node {id}: removed; adding it again on its new storage"
        );
        let added = tokio::time::timeout(CATCH_UP, context.raft.add_learner(id, new_member, true))
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "node {id} was added again as a worker but did not catch up within {CATCH_UP:?}; once it has \
                     (see `batonctl status`), make it a voter with `batonctl nodes add {id} ADDR`"
                ))
            })?
            .map_err(write_error)?;
        if !was_voter {
            return Ok(added.log_id.index);
        }
        let changed = context
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
            .map_err(write_error)?;
        tracing::info!(node = id, "replaced node {id}: a voter again");
        Ok::<u64, Status>(changed.log_id.index)
    });
    let log_index = replacement
        .await
        .map_err(|e| Status::internal(format!("the replacement of node {id} failed: {e}")))??;
    Ok(ReplaceNodeReply {
        log_index,
        old_storage_id: member.storage_id,
        new_storage_id: info.storage_id,
        unchanged: false,
        voter: was_voter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voter_is_replaced_only_with_a_quorum_of_the_others() {
        let voters = BTreeSet::from([1, 2, 3]);
        assert!(quorum_without(&voters, 3, &BTreeSet::from([1, 2])));
        assert!(!quorum_without(&voters, 3, &BTreeSet::from([1])));
        // Two voters: the joint change needs both, and one is lost.
        assert!(!quorum_without(&BTreeSet::from([1, 2]), 2, &BTreeSet::from([1])));
        let five = BTreeSet::from([1, 2, 3, 4, 5]);
        assert!(quorum_without(&five, 5, &BTreeSet::from([1, 2, 3])));
        assert!(!quorum_without(&five, 5, &BTreeSet::from([1, 2])));
    }
}
