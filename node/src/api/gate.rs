//! Who may call what: peer services need a member node's certificate and the
//! same cluster id; control calls need the admin certificate.

use tonic::{Request, Status};

use std::sync::Arc;

use crate::tls::{IdentityCache, PeerIdentity};
use crate::types::{NodeId, Raft};

/// The check a service's interceptor runs before each call.
#[derive(Clone)]
pub struct Gate {
    cluster_id: String,
    insecure: bool,
    raft: Raft,
    identities: Arc<IdentityCache>,
}

impl Gate {
    pub fn new(cluster_id: String, insecure: bool, raft: Raft) -> Self {
        Gate {
            cluster_id,
            insecure,
            raft,
            identities: Arc::default(),
        }
    }

    fn identity(&self, request: &Request<()>) -> Result<Option<PeerIdentity>, Status> {
        if self.insecure {
            return Ok(None);
        }
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a client certificate from the cluster CA is required"))?;
        self.identities.identify(&certs).map(Some).ok_or_else(|| {
            Status::permission_denied("the client certificate names neither a node nor the admin; use a certificate from `batonctl certs init`")
        })
    }

    /// For the Raft service: a node certificate of the cluster CA, for the
    /// node the call claims to come from, in the same cluster.
    ///
    /// Membership is left to Raft itself here, which ignores non-members'
    /// votes and fences stale leaders by term. Refusing non-members at this
    /// gate would break Raft's own membership changes: a leader that removes
    /// itself must still replicate, and hand off leadership, to followers
    /// that have already applied the configuration without it.
    pub fn check_raft(&self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check_node(request, false)
    }

    /// For the Peer service: as for Raft, and the caller must be a member.
    pub fn check_peer(&self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check_node(request, true)
    }

    fn check_node(&self, request: Request<()>, require_member: bool) -> Result<Request<()>, Status> {
        let claimed = request
            .metadata()
            .get(baton_proto::NODE_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok())
            .ok_or_else(|| Status::invalid_argument("peer calls must carry a baton-node-id header"))?;
        let cluster = request
            .metadata()
            .get(baton_proto::CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok());
        if cluster != Some(self.cluster_id.as_str()) {
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: this node belongs to {}, the caller to {}; nodes started with \
                 different cluster.name or cluster.initial_members never form one cluster",
                self.cluster_id,
                cluster.unwrap_or("(none)")
            )));
        }
        match self.identity(&request)? {
            None => {}
            Some(PeerIdentity::Node(id)) if id == claimed => {}
            Some(PeerIdentity::Node(id)) => {
                return Err(Status::permission_denied(format!(
                    "the certificate names node {id} but the call claims node {claimed}"
                )));
            }
            Some(PeerIdentity::Admin) => {
                return Err(Status::permission_denied(
                    "the admin certificate cannot make peer calls",
                ));
            }
        }
        if require_member && !self.is_member(claimed) {
            return Err(Status::permission_denied(format!(
                "node {claimed} is not a member of cluster {}; add it with `batonctl nodes add`",
                self.cluster_id
            )));
        }
        Ok(request)
    }

    /// For the Control service.
    pub fn check_admin(&self, request: Request<()>) -> Result<Request<()>, Status> {
        match self.identity(&request)? {
            None | Some(PeerIdentity::Admin) => Ok(request),
            Some(PeerIdentity::Node(id)) => Err(Status::permission_denied(format!(
                "control calls need the admin certificate; this one belongs to node {id}"
            ))),
        }
    }

    /// A member of the effective or the committed membership; before this
    /// node has seen any membership, any node of the cluster (a new node
    /// cannot know who leads until the leader reaches it).
    fn is_member(&self, id: NodeId) -> bool {
        crate::types::with_metrics(&self.raft, |metrics| {
            let effective = metrics.membership_config.membership();
            let committed = metrics.committed_membership_config.membership();
            effective.nodes().next().is_none() || effective.get_node(&id).is_some() || committed.get_node(&id).is_some()
        })
    }
}
