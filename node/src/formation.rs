//! The shell around [`crate::bootstrap::formation`]: an initial member with
//! an empty data directory asks the other initial members until it knows
//! whether to form the cluster, then forms it or says why it will not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::api::NodeContext;
use crate::api::member_probe::probe;
use crate::bootstrap::{Formation, PeerAnswer, formation};
use crate::types::{Member, NodeId};

/// How often the silent initial members are asked again.
const ASK_EVERY: Duration = Duration::from_millis(500);
/// How often the wait is logged.
const SAY_EVERY: Duration = Duration::from_secs(10);

/// Asks the other `initial` members (id, address) until formation is
/// decided, and acts on it. Returns what was decided. It forms nothing
/// before `settle` has passed since it began: a member added after the
/// cluster formed is not among the initial ones, but within a few election
/// timeouts its leader (or its candidates) call this node under the storage
/// it had (see [`crate::raft::Refusals`]).
pub async fn form(context: Arc<NodeContext>, initial: Vec<(NodeId, String)>, settle: Duration) -> Formation {
    let me = context.id;
    let began = Instant::now();
    let ids: Vec<NodeId> = initial.iter().map(|(id, _)| *id).collect();
    let mut answers = BTreeMap::<NodeId, PeerAnswer>::new();
    let mut said = None::<Instant>;
    loop {
        // Ask everyone each round: a member that answered fresh may have
        // formed the cluster since.
        let asked = join_all(initial.iter().filter(|(id, _)| *id != me).map(|(id, addr)| {
            let context = context.clone();
            async move { (*id, probe(&context, *id, addr).await) }
        }))
        .await;
        for (id, info) in asked {
            match info {
                Some(info) => answers.insert(
                    id,
                    PeerAnswer {
                        storage_id: info.storage_id,
                        has_raft_state: info.has_raft_state,
                        members: info.members.into_iter().map(|m| (m.id, m.storage_id)).collect(),
                    },
                ),
                None => answers.remove(&id),
            };
        }
        let refused = context
            .refusals
            .first()
            .map(|(from, refused)| (from, refused.addressed().to_string()));
        let settled = began.elapsed() >= settle;
        let decided = formation(me, &context.storage.id, &ids, &answers, refused, settled);
        match &decided {
            Formation::Wait { silent, older } => {
                if said.is_none_or(|at| at.elapsed() >= SAY_EVERY) && !(silent.is_empty() && older.is_empty()) {
                    said = Some(Instant::now());
                    tracing::info!(
                        node = me,
                        "this data_dir is empty; the cluster is formed once every initial member answers from \
                         this release or later: {silent:?} have not answered yet (start them; a node removed \
                         from the cluster is refused an answer: add it back with `batonctl nodes add`), {older:?} \
                         run a release before storage ids (upgrade them first)"
                    );
                }
                tokio::time::sleep(ASK_EVERY).await;
                continue;
            }
            Formation::Initialize(storage_ids) => {
                let members: BTreeMap<NodeId, Member> = initial
                    .iter()
                    .map(|(id, addr)| (*id, Member::new(addr.clone(), storage_ids[id].clone())))
                    .collect();
                match context.raft.initialize(members).await {
                    Ok(()) => {
                        tracing::info!(node = me, cluster = %context.cluster_id, "formed cluster from its initial members")
                    }
                    Err(e) => tracing::info!(node = me, "cluster already formed here ({e}); resuming"),
                }
            }
            Formation::AwaitLeader => tracing::info!(
                node = me, cluster = %context.cluster_id,
                "another initial member formed the cluster with this node in it; waiting for its leader"
            ),
            Formation::LostData { told_by, recorded } => tracing::error!(
                node = me, cluster = %context.cluster_id,
                "this node has no data for cluster {}, which exists (node {told_by} says so): node {me} was \
                 admitted with storage {}, and this data_dir is new (storage {}), so the disk was lost or \
                 replaced. It will neither form the cluster nor vote as node {me}. Bring it back with \
                 `batonctl nodes replace {me}`, which adds this node afresh and lets it catch up",
                context.cluster_id,
                if recorded.is_empty() { "(recorded before storage ids)" } else { recorded },
                context.storage.id
            ),
            Formation::NotAMember { told_by } => tracing::warn!(
                node = me, cluster = %context.cluster_id,
                "cluster {} exists without this node (node {told_by} says so); it was removed: add it back \
                 with `batonctl nodes add {me} ADDR`",
                context.cluster_id
            ),
        }
        return decided;
    }
}
