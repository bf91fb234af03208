//! What the membership records of each member.

use serde::{Deserialize, Serialize};

/// A node's id: a positive integer, unique in the cluster and never reused.
pub type NodeId = u64;

/// What Raft knows of a member: the address its peers dial, and the storage
/// it was admitted with.
///
/// `storage_id` names the data directory the member joined with (see
/// [`crate::raft::identity`]). Peers address every Raft call to it, and a node
/// refuses calls addressed to any other storage: a node whose disk was
/// replaced starts with a new id, so it neither votes nor accepts entries as
/// the member it used to be until an operator replaces it
/// (`batonctl nodes replace`). Empty for a member admitted before storage ids
/// existed; the field is then left out of the JSON, which stays exactly as
/// older releases wrote it (they read the field's presence as an unknown
/// field and ignore it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_id: String,
}

impl Member {
    pub fn new(addr: impl Into<String>, storage_id: impl Into<String>) -> Self {
        Member {
            addr: addr.into(),
            storage_id: storage_id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_without_a_storage_id_is_written_as_older_releases_wrote_it() {
        let legacy = Member::new("10.0.0.1:7000", "");
        assert_eq!(serde_json::to_string(&legacy).unwrap(), r#"{"addr":"10.0.0.1:7000"}"#);
        let read: Member = serde_json::from_str(r#"{"addr":"10.0.0.1:7000"}"#).unwrap();
        assert_eq!(read, legacy);
    }

    #[test]
    fn a_member_with_a_storage_id_round_trips_and_an_older_reader_still_finds_its_address() {
        let member = Member::new("10.0.0.1:7000", "5f0c");
        let json = serde_json::to_string(&member).unwrap();
        // Pinned: this is how the membership stores a member in the log and
        // in snapshots.
        assert_eq!(json, r#"{"addr":"10.0.0.1:7000","storage_id":"5f0c"}"#);
        assert_eq!(serde_json::from_str::<Member>(&json).unwrap(), member);
        // What releases before storage ids read (openraft's BasicNode).
        let older: openraft::BasicNode = serde_json::from_str(&json).unwrap();
        assert_eq!(older.addr, "10.0.0.1:7000");
    }
}
