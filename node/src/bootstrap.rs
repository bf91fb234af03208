//! Whether a starting node forms a new cluster, resumes, or waits to be
//! added: pure decisions over what the data directory and the config say
//! ([`decide`]) and, for an initial member with an empty data directory,
//! over what the other initial members answer ([`formation`]).
//!
//! An empty data directory alone cannot tell a first start from a lost
//! disk: both look the same, and so does the config, which stays as it was
//! (the failure this guards against came from restarting with the same
//! config). A flag for the first start (etcd's `initial-cluster-state`)
//! would stay in the config too. So an initial member with no Raft state
//! asks the other initial members first, and forms the cluster only when
//! every one of them answers and none has Raft state; if any has, the
//! cluster exists and this node never forms another one. Since a wiped node
//! would still answer Raft calls meant for its old self, the membership
//! also records each member's storage id, and calls addressed to another
//! storage are refused (see [`crate::raft::identity`]).

use std::collections::BTreeMap;

use crate::types::NodeId;

/// What a starting node does about cluster formation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// An initial member without Raft state: ask the other initial members
    /// whether the cluster exists before forming it (see [`formation`]).
    Form,
    /// Raft already has state here: carry on, never bootstrap again.
    Resume,
    /// Not an initial member and no state yet: wait for the leader to add it
    /// (`batonctl nodes add`).
    AwaitJoin,
}

/// The data directory belongs to another cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "data_dir belongs to cluster {stored}, but the config describes cluster {configured}; \
     cluster.name and cluster.initial_members must stay as they were when the cluster was formed \
     (restore them), or give this node an empty data_dir to join afresh"
)]
pub struct ClusterMismatch {
    pub stored: String,
    pub configured: String,
}

/// Decides what a starting node does.
///
/// `stored`: the cluster id recorded in the data directory, if any;
/// `configured`: the id computed from the config; `initialized`: whether
/// Raft already has a log or a vote here.
pub fn decide(
    stored: Option<&str>,
    configured: &str,
    is_initial_member: bool,
    initialized: bool,
) -> Result<Bootstrap, ClusterMismatch> {
    if let Some(stored) = stored
        && stored != configured
    {
        return Err(ClusterMismatch {
            stored: stored.to_string(),
            configured: configured.to_string(),
        });
    }
    Ok(if initialized {
        Bootstrap::Resume
    } else if is_initial_member {
        Bootstrap::Form
    } else {
        Bootstrap::AwaitJoin
    })
}

/// What another initial member said of itself when asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerAnswer {
    pub storage_id: String,
    pub has_raft_state: bool,
    /// The membership as it knows it: each member's storage id.
    pub members: BTreeMap<NodeId, String>,
}

/// What an initial member without Raft state does, given the answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    /// Every initial member answered and none has Raft state: form the
    /// cluster, recording each member's storage id. Every initial member
    /// that gets here has the same answers, so they initialize alike.
    Initialize(BTreeMap<NodeId, String>),
    /// The cluster exists and lists this node with this storage: another
    /// initial member formed it first, and its leader will reach this node.
    AwaitLeader,
    /// The cluster exists and lists this node with another storage, or with
    /// none: this node was a member and has lost its data. It must not act
    /// as that member; an operator replaces it.
    LostData { told_by: NodeId, recorded: String },
    /// The cluster exists and this node is not a member (it was removed).
    NotAMember { told_by: NodeId },
    /// Not yet: ask again. `silent` initial members have not answered;
    /// `older` answered from a release before storage ids, whose answers
    /// cannot show whether the cluster exists (upgrade them first). With
    /// both empty, every answer says "fresh", but this node has not yet
    /// been up long enough to be sure that no member of a grown cluster
    /// calls it (see `refused`).
    Wait { silent: Vec<NodeId>, older: Vec<NodeId> },
}

/// Decides, for initial member `me` on storage `my_storage` with no Raft
/// state, whether to form the cluster of `initial` members. `answers` holds
/// what each other initial member that answered said; `refused`, the first
/// Raft call this node refused as addressed to another storage (its sender,
/// and the storage it named): members added after formation are not among
/// the initial ones, but they call. `settled`: this node has been up longer
/// than such calls take to come (a few election timeouts).
pub fn formation(
    me: NodeId,
    my_storage: &str,
    initial: &[NodeId],
    answers: &BTreeMap<NodeId, PeerAnswer>,
    refused: Option<(NodeId, String)>,
    settled: bool,
) -> Formation {
    if let Some((told_by, recorded)) = refused {
        return Formation::LostData { told_by, recorded };
    }
    if let Some((told_by, answer)) = answers.iter().find(|(_, a)| a.has_raft_state) {
        let told_by = *told_by;
        return match answer.members.get(&me) {
            Some(recorded) if recorded == my_storage => Formation::AwaitLeader,
            Some(recorded) => Formation::LostData {
                told_by,
                recorded: recorded.clone(),
            },
            None => Formation::NotAMember { told_by },
        };
    }
    let silent: Vec<NodeId> = initial
        .iter()
        .copied()
        .filter(|id| *id != me && !answers.contains_key(id))
        .collect();
    let older: Vec<NodeId> = answers
        .iter()
        .filter(|(_, a)| a.storage_id.is_empty())
        .map(|(id, _)| *id)
        .collect();
    if !silent.is_empty() || !older.is_empty() || !settled {
        return Formation::Wait { silent, older };
    }
    Formation::Initialize(
        initial
            .iter()
            .map(|id| match *id == me {
                true => (*id, my_storage.to_string()),
                false => (*id, answers[id].storage_id.clone()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_initial_member_asks_before_it_forms() {
        assert_eq!(decide(None, "c-1", true, false), Ok(Bootstrap::Form));
    }

    #[test]
    fn a_restart_never_bootstraps_again() {
        assert_eq!(decide(Some("c-1"), "c-1", true, true), Ok(Bootstrap::Resume));
        assert_eq!(decide(Some("c-1"), "c-1", false, true), Ok(Bootstrap::Resume));
    }

    #[test]
    fn a_fresh_worker_waits_to_be_added() {
        assert_eq!(decide(None, "c-1", false, false), Ok(Bootstrap::AwaitJoin));
    }

    #[test]
    fn a_data_dir_of_another_cluster_is_refused() {
        let err = decide(Some("c-1"), "c-2", true, true).unwrap_err();
        assert_eq!(err.stored, "c-1");
        assert!(err.to_string().contains("empty data_dir"));
    }

    #[test]
    fn a_crash_between_recording_the_id_and_initializing_asks_again() {
        assert_eq!(decide(Some("c-1"), "c-1", true, false), Ok(Bootstrap::Form));
    }

    fn fresh(storage: &str) -> PeerAnswer {
        PeerAnswer {
            storage_id: storage.into(),
            ..Default::default()
        }
    }

    fn formed(members: &[(NodeId, &str)]) -> PeerAnswer {
        PeerAnswer {
            storage_id: "x".into(),
            has_raft_state: true,
            members: members.iter().map(|(id, s)| (*id, s.to_string())).collect(),
        }
    }

    #[test]
    fn every_initial_member_answering_fresh_forms_the_cluster_with_their_storage_ids() {
        let answers = BTreeMap::from([(2, fresh("s2")), (3, fresh("s3"))]);
        assert_eq!(
            formation(1, "s1", &[1, 2, 3], &answers, None, true),
            Formation::Initialize(BTreeMap::from([(1, "s1".into()), (2, "s2".into()), (3, "s3".into())]))
        );
    }

    #[test]
    fn a_silent_initial_member_holds_formation_back() {
        let answers = BTreeMap::from([(2, fresh("s2"))]);
        assert_eq!(
            formation(1, "s1", &[1, 2, 3], &answers, None, true),
            Formation::Wait {
                silent: vec![3],
                older: vec![]
            }
        );
    }

    #[test]
    fn a_sole_initial_member_forms_alone() {
        assert_eq!(
            formation(1, "s1", &[1], &BTreeMap::new(), None, true),
            Formation::Initialize(BTreeMap::from([(1, "s1".into())]))
        );
    }

    #[test]
    fn a_wiped_member_of_an_existing_cluster_never_forms_another() {
        // Node 3 answers with state even while node 2 is silent.
        let answers = BTreeMap::from([(3, formed(&[(1, "old1"), (2, "s2"), (3, "s3")]))]);
        assert_eq!(
            formation(1, "new1", &[1, 2, 3], &answers, None, true),
            Formation::LostData {
                told_by: 3,
                recorded: "old1".into()
            }
        );
    }

    #[test]
    fn a_wiped_member_of_a_cluster_formed_before_storage_ids_has_lost_its_data() {
        let answers = BTreeMap::from([(2, formed(&[(1, ""), (2, "")]))]);
        assert!(matches!(
            formation(1, "new1", &[1, 2], &answers, None, true),
            Formation::LostData { .. }
        ));
    }

    #[test]
    fn a_member_listed_with_its_own_storage_waits_for_the_leader() {
        // Another initial member formed the cluster first, with this node's id.
        let answers = BTreeMap::from([(2, formed(&[(1, "s1"), (2, "s2")]))]);
        assert_eq!(
            formation(1, "s1", &[1, 2], &answers, None, true),
            Formation::AwaitLeader
        );
    }

    #[test]
    fn a_removed_member_is_not_a_member() {
        let answers = BTreeMap::from([(2, formed(&[(2, "s2"), (3, "s3")]))]);
        assert_eq!(
            formation(1, "s1", &[1, 2, 3], &answers, None, true),
            Formation::NotAMember { told_by: 2 }
        );
    }

    #[test]
    fn a_call_addressed_to_another_storage_proves_the_cluster_exists() {
        // A sole initial member whose cluster grew: nobody to ask, but the
        // added members' leader calls it under its old storage.
        assert_eq!(
            formation(1, "new1", &[1], &BTreeMap::new(), Some((2, "old1".into())), true),
            Formation::LostData {
                told_by: 2,
                recorded: "old1".into()
            }
        );
    }

    #[test]
    fn formation_waits_until_no_call_from_a_grown_cluster_could_still_come() {
        assert_eq!(
            formation(1, "s1", &[1], &BTreeMap::new(), None, false),
            Formation::Wait {
                silent: vec![],
                older: vec![]
            }
        );
    }

    #[test]
    fn an_answer_from_a_release_before_storage_ids_never_lets_a_node_form() {
        // It says nothing of Raft state either way.
        let answers = BTreeMap::from([(2, fresh(""))]);
        assert_eq!(
            formation(1, "s1", &[1, 2], &answers, None, true),
            Formation::Wait {
                silent: vec![],
                older: vec![2]
            }
        );
    }
}
