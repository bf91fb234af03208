//! The Control service that `batonctl` calls.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::control_server::Control;
use baton_proto::*;
use openraft::ChangeMembers;
use openraft::ReadPolicy;
use openraft::errors::LinearizableReadError;
use tonic::{Request, Response, Status};

use super::NodeContext;
use super::binary_calls;
use super::errors::{MAX_KEY_BYTES, MAX_VALUE_BYTES, fatal, forward_to_leader, propose_error, write_error};
use super::member_probe::{has_lost_its_data, probe, probe_members};
use super::module_calls;
use super::task_calls;
use crate::state::cluster_version::{Step, VersionRange, next_step, release_advice};
use crate::state::tasks::TaskStatus;
use crate::types::typ::RaftError;
use crate::types::{Command, Member, NodeId};
use crate::versioning::member_ranges;

pub struct ControlService {
    context: Arc<NodeContext>,
    /// Nodes being replaced by this leader (see `replace_node`).
    replacing: Arc<super::replace_node::InFlight>,
}

impl ControlService {
    pub fn new(context: Arc<NodeContext>) -> Self {
        ControlService {
            context,
            replacing: Default::default(),
        }
    }

    /// Status and node lists come from the leader, which holds the leases;
    /// without a known leader, this node answers from what it can probe.
    fn redirect_to_leader(&self) -> Result<(), Status> {
        let id = self.context.id;
        let formed = crate::types::with_metrics(&self.context.raft, |m| {
            m.membership_config.membership().nodes().next().is_some()
        });
        if !formed {
            // Unavailable: a client tries its other endpoints.
            return Err(Status::unavailable(format!(
                "node {id} has no Raft state: it is waiting for the cluster to form, to be added (`batonctl \
                 nodes add`), or, if its disk was lost, to be replaced (`batonctl nodes replace {id}`); ask \
                 another node"
            )));
        }
        match crate::types::leader(&self.context.raft) {
            (Some(leader), addr) if leader != self.context.id => {
                Err(super::errors::not_leader(Some(leader), addr.as_deref()))
            }
            _ => Ok(()),
        }
    }

    fn check_node_id(id: NodeId) -> Result<(), Status> {
        if id == 0 {
            return Err(Status::invalid_argument("node ids start at 1"));
        }
        Ok(())
    }

    /// Every module's latest rollout, from this node's state (the page
    /// shows it on every node; the Control call answers on the leader).
    pub fn rollouts_here(&self) -> RolloutStatusReply {
        module_calls::rollout_status(&self.context, "").unwrap_or_default()
    }

    /// The node binary upgrade, from this node's state.
    pub fn upgrade_here(&self) -> baton_proto::UpgradeStatusReply {
        binary_calls::upgrade_status(&self.context)
    }

    /// The cluster's status as this node sees it: what `status` answers on
    /// the leader, and on any other node its probes of the members (the
    /// status page shows it on every node).
    pub async fn status_here(&self) -> StatusReply {
        let metrics = crate::types::metrics(&self.context.raft);
        let mut members = probe_members(&self.context).await;
        let (stalls, overdue_tasks) = super::stalls::current(&self.context);
        for member in &mut members {
            if let Some(state) = super::stalls::lagging_state(&member.state, member.id, &stalls) {
                member.state = state.to_string();
            }
        }
        let (tasks_running, tasks_paused, failed_tasks) = self.context.state_machine.read(|s| {
            let count = |status: &TaskStatus| s.tasks.values().filter(|t| &t.status == status).count() as u64;
            let failed = s
                .tasks
                .values()
                .filter(|t| matches!(t.status, TaskStatus::Failed { .. }))
                .map(|t| t.spec.name.clone())
                .collect();
            (count(&TaskStatus::Running), count(&TaskStatus::Paused), failed)
        });
        let (cluster_version, due_per_second) = self
            .context
            .state_machine
            .read(|s| (s.cluster_version, s.tasks.due_per_second()));
        let ticks = self.context.state_machine.timeliness();
        let version_held_by = match next_step(cluster_version, &member_ranges(&self.context)) {
            Step::Held(held) => held.into_iter().map(|(id, _)| id).collect(),
            Step::Raise(_) | Step::Highest => Vec::new(),
        };
        StatusReply {
            cluster_id: self.context.cluster_id.clone(),
            leader_id: metrics.current_leader.unwrap_or(0),
            term: metrics.current_term,
            commit_index: crate::types::committed_index(&metrics),
            last_applied_index: metrics.last_applied.as_ref().map_or(0, |l| l.index),
            answered_by: self.context.id,
            members,
            tasks_running,
            tasks_paused,
            failed_tasks,
            failover_bound_ms: self.context.supervision.failover_bound_ms,
            lease_ms: self.context.supervision.lease_ms,
            stalls,
            overdue_tasks,
            cluster_version,
            version_held_by,
            ticks: Some(TickTimeliness {
                window_ms: ticks.window_ms,
                committed_per_second: ticks.committed_per_second(),
                due_per_second,
                late_p50_ms: ticks.late_p50_ms,
                late_p99_ms: ticks.late_p99_ms,
                late_max_ms: ticks.late_max_ms,
            }),
        }
    }
}

/// Checks a key-value write before it reaches Raft.
pub fn check_put(key: &str, value: &[u8]) -> Result<(), Status> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Status::invalid_argument(format!(
            "keys must be 1 to {MAX_KEY_BYTES} bytes; got {}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(Status::invalid_argument("keys must not contain control characters"));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(Status::invalid_argument(format!(
            "values must be at most {MAX_VALUE_BYTES} bytes; got {}; keep bulk data outside the cluster",
            value.len()
        )));
    }
    Ok(())
}

/// Whether node `id` answers at `addr` within a few seconds.
pub(super) async fn answers_soon(context: &NodeContext, id: NodeId, addr: &str) -> Option<NodeInfoReply> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        if let Some(info) = probe(context, id, addr).await {
            return Some(info);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Takes node `id` out of the membership by `change`, once any lease it
/// holds from its last renewal has run out, so that it has stopped every
/// tick before anyone else may start one. In a task of its own, so that a
/// client that gives up (or retries) cannot cut it off between holding the
/// renewals back and letting them through again.
pub(super) async fn remove_after_its_lease(
    context: &Arc<NodeContext>,
    id: NodeId,
    change: ChangeMembers<NodeId, Member>,
) -> Result<u64, Status> {
    let context = context.clone();
    let removal = tokio::spawn(async move {
        let _revoked = context.supervision.revoke(id);
        tokio::time::sleep(Duration::from_millis(context.supervision.lease_ms)).await;
        context.raft.change_membership(change, false).await
    });
    removal
        .await
        .map_err(|e| Status::internal(format!("the removal of node {id} failed: {e}")))?
        .map(|changed| changed.log_id.index)
        .map_err(write_error)
}

/// Refuses to add node `id` when its release cannot read this cluster's
/// version (it would stop on the first entry it applied).
pub(super) fn check_release(context: &NodeContext, id: NodeId, info: &NodeInfoReply) -> Result<(), Status> {
    let version = context.state_machine.read(|s| s.cluster_version);
    let range = VersionRange::reported(info.min_cluster_version, info.max_cluster_version);
    let what = format!("the cluster node {id} would join");
    match range.refuse(version, &what) {
        Some(_) => Err(Status::failed_precondition(format!(
            "node {id} runs baton-node {}, which supports {range}; this cluster is at cluster version {version}; \
             start node {id} with {}, then add it",
            info.version,
            release_advice(version)
        ))),
        None => Ok(()),
    }
}

fn check_addr(addr: &str) -> Result<(), Status> {
    crate::config::check_host_port(addr).map_err(Status::invalid_argument)
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        self.redirect_to_leader()?;
        Ok(Response::new(self.status_here().await))
    }

    async fn list_nodes(&self, _request: Request<ListNodesRequest>) -> Result<Response<ListNodesReply>, Status> {
        self.redirect_to_leader()?;
        Ok(Response::new(ListNodesReply {
            members: probe_members(&self.context).await,
        }))
    }
    async fn add_node(&self, request: Request<AddNodeRequest>) -> Result<Response<AddNodeReply>, Status> {
        let AddNodeRequest { id, addr, worker } = request.into_inner();
        Self::check_node_id(id)?;
        check_addr(&addr)?;
        let raft = &self.context.raft;
        let membership = crate::types::metrics(raft).membership_config.membership().clone();
        if let Some(existing) = membership.get_node(&id)
            && existing.addr != addr
        {
            return Err(Status::already_exists(format!(
                "node {id} is already a member at {}; remove it first to move it",
                existing.addr
            )));
        }
        if let Some((other, _)) = membership.nodes().find(|(other, n)| **other != id && n.addr == addr) {
            return Err(Status::already_exists(format!("node {other} already uses {addr}")));
        }
        // Refuse rather than wait forever on a node that is not there (giving
        // one that is still starting a few seconds to answer). The membership
        // records the storage it answers from (see `raft::identity`).
        let mut joining = None;
        let member = match membership.get_node(&id) {
            Some(existing) => {
                if let Some(info) = probe(&self.context, id, &addr).await
                    && has_lost_its_data(&existing.storage_id, &info)
                {
                    return Err(Status::failed_precondition(format!(
                        "node {id} is a member that lost its data (it answers from a new data_dir); bring it back \
                         with `batonctl nodes replace {id}`"
                    )));
                }
                existing.clone()
            }
            None => match answers_soon(&self.context, id, &addr).await {
                Some(info) if info.storage_id.is_empty() => {
                    return Err(Status::failed_precondition(format!(
                        "node {id} runs baton-node {}, a release before storage ids, which this cluster records \
                         for every member; start it with this release",
                        info.version
                    )));
                }
                Some(info) => {
                    check_release(&self.context, id, &info)?;
                    let member = Member::new(addr, info.storage_id.clone());
                    joining = Some(info);
                    member
                }
                None => {
                    return Err(Status::failed_precondition(format!(
                        "node {id} does not answer at {addr} as a node of cluster {}; start it first (with an \
                         empty data_dir, this cluster's initial_members and a certificate for node {id}), then \
                         add it",
                        self.context.cluster_id
                    )));
                }
            },
        };
        // Join as a learner first and catch up; only then count as a voter.
        let added = raft.add_learner(id, member, true).await.map_err(write_error)?;
        let mut log_index = added.log_id.index;
        // The cluster version may have risen while the node was added (a
        // raise decided before the node was a member): check again once
        // everything before its admission is applied, and take it out
        // rather than let it stop on an entry it cannot read.
        if let Some(info) = &joining {
            let mut applied = self.context.state_machine.subscribe();
            let caught_up = applied.wait_for(|index| *index >= log_index);
            let _ = tokio::time::timeout(Duration::from_secs(5), caught_up).await;
            if let Err(refused) = check_release(&self.context, id, info) {
                let removal = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
                if let Err(e) = raft.change_membership(removal, false).await {
                    tracing::warn!("node {id} could not be taken out again after its release was refused: {e}");
                }
                return Err(refused);
            }
        }
        if !worker && !membership.voter_ids().any(|v| v == id) {
            let changed = raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                .await
                .map_err(write_error)?;
            log_index = changed.log_id.index;
        }
        Ok(Response::new(AddNodeReply { log_index }))
    }

    async fn drain_node(&self, request: Request<DrainNodeRequest>) -> Result<Response<DrainNodeReply>, Status> {
        let DrainNodeRequest { id, drain } = request.into_inner();
        Self::check_node_id(id)?;
        let membership = crate::types::metrics(&self.context.raft)
            .membership_config
            .membership()
            .clone();
        if membership.get_node(&id).is_none() {
            return Err(Status::not_found(format!(
                "node {id} is not a member; see `batonctl nodes list`"
            )));
        }
        if drain && membership.nodes().count() == 1 {
            return Err(Status::failed_precondition(format!(
                "node {id} is the only node: its tasks would have nowhere to go; add a node first"
            )));
        }
        // The node an upgrade is working on is drained and undrained by the
        // upgrade's phases: an operator's change would put tasks on a node
        // about to stop, or leave it drained after its turn.
        let upgrading = self.context.state_machine.read(|s| {
            s.upgrade
                .as_ref()
                .filter(|u| u.current() == Some(id))
                .map(|u| u.phases[&id].name())
        });
        if let Some(phase) = upgrading {
            return Err(Status::failed_precondition(format!(
                "node {id} is being upgraded ({phase}); its drain follows the upgrade: wait for its turn to end, \
                 or `batonctl upgrade abort`"
            )));
        }
        let committed = self
            .context
            .proposer
            .propose(Command::SetDrained {
                node: id,
                drained: drain,
            })
            .await
            .map_err(propose_error)?;
        let tasks_to_move = match drain {
            true => self.context.state_machine.read(|s| {
                s.tasks
                    .values()
                    .filter(|t| t.owner == Some(id) && t.status == TaskStatus::Running)
                    .count() as u64
            }),
            false => 0,
        };
        self.context.supervision.wake.notify_one();
        Ok(Response::new(DrainNodeReply {
            log_index: committed.log_index,
            tasks_to_move,
        }))
    }

    async fn remove_node(&self, request: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeReply>, Status> {
        let id = request.into_inner().id;
        Self::check_node_id(id)?;
        let raft = &self.context.raft;
        let membership = crate::types::metrics(raft).membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Err(Status::not_found(format!(
                "node {id} is not a member; see `batonctl nodes list`"
            )));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() == 1 && voters.contains(&id) {
            return Err(Status::failed_precondition(
                "cannot remove the last voter; add another voter first",
            ));
        }
        // retain = false: a removed voter does not stay on as a learner.
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        // Its tasks move as soon as it is no longer a member. (Drain it first
        // for a hand-off without waiting out its lease.)
        let log_index = remove_after_its_lease(&self.context, id, change).await?;
        Ok(Response::new(RemoveNodeReply { log_index }))
    }

    async fn replace_node(&self, request: Request<ReplaceNodeRequest>) -> Result<Response<ReplaceNodeReply>, Status> {
        let id = request.into_inner().id;
        Self::check_node_id(id)?;
        // The leader's membership, not a stale one (nor the empty one of the
        // node being replaced, if the call reached it).
        self.redirect_to_leader()?;
        super::replace_node::replace(&self.context, &self.replacing, id)
            .await
            .map(Response::new)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutReply>, Status> {
        let PutRequest { key, value } = request.into_inner();
        check_put(&key, &value)?;
        let committed = self
            .context
            .proposer
            .propose(Command::Put { key, value })
            .await
            .map_err(propose_error)?;
        Ok(Response::new(PutReply {
            log_index: committed.log_index,
        }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetReply>, Status> {
        let GetRequest { key, local } = request.into_inner();
        if !local {
            match self.context.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => {}
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                    return Err(forward_to_leader(&f));
                }
                Err(RaftError::APIError(e)) => return Err(Status::unavailable(e.to_string())),
                Err(RaftError::Fatal(e)) => return Err(fatal(e)),
            }
        }
        let value = self.context.state_machine.read(|state| state.kv.get(&key).cloned());
        Ok(Response::new(GetReply {
            found: value.is_some(),
            value: value.unwrap_or_default(),
            applied_index: self.context.state_machine.last_applied_index(),
        }))
    }

    async fn deploy_module(
        &self,
        request: Request<DeployModuleRequest>,
    ) -> Result<Response<DeployModuleReply>, Status> {
        Ok(Response::new(
            module_calls::deploy(&self.context, request.into_inner()).await?,
        ))
    }

    async fn list_modules(&self, _request: Request<ListModulesRequest>) -> Result<Response<ListModulesReply>, Status> {
        Ok(Response::new(module_calls::list(&self.context)))
    }

    async fn module_history(
        &self,
        request: Request<ModuleHistoryRequest>,
    ) -> Result<Response<ModuleHistoryReply>, Status> {
        Ok(Response::new(module_calls::history(
            &self.context,
            &request.into_inner().name,
        )?))
    }

    async fn rollout_status(
        &self,
        request: Request<RolloutStatusRequest>,
    ) -> Result<Response<RolloutStatusReply>, Status> {
        self.redirect_to_leader()?;
        Ok(Response::new(module_calls::rollout_status(
            &self.context,
            &request.into_inner().module,
        )?))
    }

    async fn upload_node_binary(
        &self,
        request: Request<tonic::Streaming<baton_proto::UploadNodeBinaryChunk>>,
    ) -> Result<Response<baton_proto::UpgradeStatusReply>, Status> {
        self.redirect_to_leader()?;
        Ok(Response::new(
            binary_calls::upload_node_binary(&self.context, request).await?,
        ))
    }

    async fn upgrade_status(
        &self,
        _request: Request<baton_proto::UpgradeStatusRequest>,
    ) -> Result<Response<baton_proto::UpgradeStatusReply>, Status> {
        self.redirect_to_leader()?;
        Ok(Response::new(binary_calls::upgrade_status(&self.context)))
    }

    async fn control_upgrade(
        &self,
        request: Request<baton_proto::ControlUpgradeRequest>,
    ) -> Result<Response<baton_proto::UpgradeStatusReply>, Status> {
        self.redirect_to_leader()?;
        Ok(Response::new(
            binary_calls::control_upgrade(&self.context, request.into_inner()).await?,
        ))
    }

    async fn control_rollout(
        &self,
        request: Request<ControlRolloutRequest>,
    ) -> Result<Response<RolloutStatusReply>, Status> {
        self.redirect_to_leader()?;
        Ok(Response::new(
            module_calls::control_rollout(&self.context, request.into_inner()).await?,
        ))
    }

    async fn add_task(&self, request: Request<AddTaskRequest>) -> Result<Response<TaskReply>, Status> {
        Ok(Response::new(
            task_calls::add(&self.context, request.into_inner()).await?,
        ))
    }

    async fn list_tasks(&self, _request: Request<ListTasksRequest>) -> Result<Response<ListTasksReply>, Status> {
        Ok(Response::new(task_calls::list(&self.context)))
    }

    async fn show_task(&self, request: Request<TaskRequest>) -> Result<Response<TaskReply>, Status> {
        Ok(Response::new(task_calls::show(
            &self.context,
            &request.into_inner().name,
        )?))
    }

    async fn task_history(&self, request: Request<TaskRequest>) -> Result<Response<TaskHistoryReply>, Status> {
        Ok(Response::new(task_calls::history(
            &self.context,
            &request.into_inner().name,
        )?))
    }

    async fn remove_task(&self, request: Request<TaskRequest>) -> Result<Response<TaskReply>, Status> {
        Ok(Response::new(
            task_calls::remove(&self.context, request.into_inner().name).await?,
        ))
    }

    async fn pause_task(&self, request: Request<TaskRequest>) -> Result<Response<TaskReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(
            task_calls::set_status(&self.context, name, TaskStatus::Paused).await?,
        ))
    }

    async fn set_task_secrets(&self, request: Request<SetTaskSecretsRequest>) -> Result<Response<TaskReply>, Status> {
        Ok(Response::new(
            task_calls::set_secrets(&self.context, request.into_inner()).await?,
        ))
    }

    async fn rotate_secrets(
        &self,
        _request: Request<RotateSecretsRequest>,
    ) -> Result<Response<RotateSecretsReply>, Status> {
        Ok(Response::new(super::secret_calls::rotate(&self.context).await?))
    }

    async fn secret_keys(&self, _request: Request<SecretKeysRequest>) -> Result<Response<SecretKeysReply>, Status> {
        Ok(Response::new(super::secret_calls::keys(&self.context)))
    }

    async fn run_task_now(&self, request: Request<TaskRequest>) -> Result<Response<TaskReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(task_calls::run_now(&self.context, name).await?))
    }

    async fn task_logs(&self, request: Request<TaskLogsRequest>) -> Result<Response<TaskLogsReply>, Status> {
        Ok(Response::new(
            super::log_calls::task_logs(&self.context, request.into_inner()).await?,
        ))
    }

    async fn events(&self, request: Request<EventsRequest>) -> Result<Response<EventsReply>, Status> {
        Ok(Response::new(super::log_calls::events(
            &self.context,
            &request.into_inner(),
        )))
    }

    async fn resume_task(&self, request: Request<TaskRequest>) -> Result<Response<TaskReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(
            task_calls::set_status(&self.context, name, TaskStatus::Running).await?,
        ))
    }
}
