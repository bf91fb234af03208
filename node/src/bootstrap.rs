//! Whether a starting node forms a new cluster, resumes, or waits to be
//! added: a pure decision over what the data directory and the config say.

/// What a starting node does about cluster formation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// A fresh initial member: initialize Raft with the initial members.
    /// Every initial member does this with the same list, so they agree.
    Initialize,
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
        Bootstrap::Initialize
    } else {
        Bootstrap::AwaitJoin
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_initial_member_initializes() {
        assert_eq!(decide(None, "c-1", true, false), Ok(Bootstrap::Initialize));
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
    fn a_crash_between_recording_the_id_and_initializing_initializes() {
        assert_eq!(decide(Some("c-1"), "c-1", true, false), Ok(Bootstrap::Initialize));
    }
}
