//! Which storage a node is: how a node whose disk was lost is kept from
//! acting as the member it used to be.
//!
//! Raft's safety rests on every voter remembering its log and its vote. A
//! node whose data directory was wiped (a replaced disk, a deleted volume)
//! and started again with the same config has neither, yet its peers would
//! take it for the old member: it could grant a vote to a candidate missing
//! an acknowledged write, or count towards a quorum for entries it then
//! forgets again.
//!
//! So every data directory gets a random storage id when it is created, the
//! membership records each member's storage id when it is admitted (at
//! formation, `nodes add` or `nodes replace`), every Raft call names the
//! storage it is addressed to, and [`StorageIdentity::admit`] refuses a call
//! addressed to any other storage. A wiped node thus receives no entries and
//! grants no votes until an operator replaces it, which records its new
//! storage id (see `docs/lost-disk.md`).
//!
//! A store that already held Raft state before storage ids existed is
//! `legacy`: its membership records no ids, and calls arrive unaddressed. It
//! accepts those; a new store never does, so a wiped member of such a
//! cluster is refused all the same.

use std::sync::Mutex;

use tonic::metadata::MetadataMap;

use crate::types::NodeId;

/// This node's storage: the id its data directory was created with, and
/// whether it predates storage ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageIdentity {
    pub id: String,
    pub legacy: bool,
}

/// A Raft call this node must not answer: it was meant for the storage this
/// node's id had before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misaddressed {
    #[error(
        "this node's storage is {actual}, but the call is addressed to storage {addressed}: its data directory \
         is not the one the membership admitted (a lost or replaced disk); it takes no part in Raft until it is \
         replaced (`batonctl nodes replace ID`)"
    )]
    OtherStorage { addressed: String, actual: String },
    #[error(
        "this node's storage is {actual}, but the call names no storage: the membership admitted this node \
         before storage ids (or an older release sent the call), and this data directory is new, so it is not \
         the one admitted; replace the node (`batonctl nodes replace ID`)"
    )]
    Unaddressed { actual: String },
}

impl StorageIdentity {
    /// A fresh storage id: 128 random bits, in hex.
    pub fn fresh() -> Self {
        StorageIdentity {
            id: format!("{:032x}", rand::random::<u128>()),
            legacy: false,
        }
    }

    /// Whether this node may answer a Raft call addressed to `addressed`
    /// (empty: the call names no storage).
    pub fn admit(&self, addressed: &str) -> Result<(), Misaddressed> {
        match addressed {
            "" if self.legacy => Ok(()),
            "" => Err(Misaddressed::Unaddressed {
                actual: self.id.clone(),
            }),
            id if id == self.id => Ok(()),
            other => Err(Misaddressed::OtherStorage {
                addressed: other.to_string(),
                actual: self.id.clone(),
            }),
        }
    }

    /// [`Self::admit`] for a gRPC call, by its metadata; a refusal is
    /// recorded in `refusals` with the caller's id.
    pub fn admit_call(&self, metadata: &MetadataMap, refusals: &Refusals) -> Result<(), tonic::Status> {
        let addressed = metadata
            .get(baton_proto::TARGET_STORAGE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.admit(addressed).map_err(|refused| {
            let status = tonic::Status::unavailable(refused.to_string());
            if let Some(from) = metadata
                .get(baton_proto::NODE_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
            {
                refusals.record(from, refused);
            }
            // Unavailable: the caller backs off and retries, as for a peer
            // that is down, which for its Raft this node is.
            status
        })
    }
}

/// The first Raft call this node refused as misaddressed, and who sent it:
/// proof that a cluster which admitted this node under another storage
/// exists, so this node must never form one (a sole initial member whose
/// cluster grew by `nodes add` has no other initial member to ask).
#[derive(Debug, Default)]
pub struct Refusals {
    first: Mutex<Option<(NodeId, Misaddressed)>>,
}

impl Refusals {
    pub fn record(&self, from: NodeId, refused: Misaddressed) {
        let mut first = self.first.lock().expect("refusals lock poisoned");
        if first.is_none() {
            tracing::warn!(
                "refused a Raft call from node {from}: {refused}; this node has lost the data it was admitted with"
            );
            *first = Some((from, refused));
        }
    }

    pub fn first(&self) -> Option<(NodeId, Misaddressed)> {
        self.first.lock().expect("refusals lock poisoned").clone()
    }
}

impl Misaddressed {
    /// The storage the call was addressed to (empty: none named).
    pub fn addressed(&self) -> &str {
        match self {
            Misaddressed::OtherStorage { addressed, .. } => addressed,
            Misaddressed::Unaddressed { .. } => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: &str, legacy: bool) -> StorageIdentity {
        StorageIdentity { id: id.into(), legacy }
    }

    #[test]
    fn a_call_addressed_to_this_storage_is_admitted() {
        assert_eq!(store("a1", false).admit("a1"), Ok(()));
        assert_eq!(store("a1", true).admit("a1"), Ok(()));
    }

    #[test]
    fn a_call_addressed_to_the_storage_before_a_wipe_is_refused() {
        let err = store("b2", false).admit("a1").unwrap_err();
        assert_eq!(
            err,
            Misaddressed::OtherStorage {
                addressed: "a1".into(),
                actual: "b2".into()
            }
        );
        assert!(err.to_string().contains("batonctl nodes replace"), "{err}");
    }

    #[test]
    fn an_unaddressed_call_is_admitted_only_by_a_store_that_predates_storage_ids() {
        assert_eq!(store("a1", true).admit(""), Ok(()));
        assert!(matches!(
            store("a1", false).admit(""),
            Err(Misaddressed::Unaddressed { .. })
        ));
    }

    #[test]
    fn fresh_ids_differ_and_are_new() {
        let (a, b) = (StorageIdentity::fresh(), StorageIdentity::fresh());
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        assert!(!a.legacy);
    }

    #[test]
    fn a_call_is_admitted_by_its_header_and_a_refusal_is_remembered_with_its_sender() {
        let mut metadata = MetadataMap::new();
        metadata.insert(baton_proto::NODE_ID_HEADER, "2".parse().unwrap());
        let me = store("a1", false);
        let refusals = Refusals::default();
        metadata.insert(baton_proto::TARGET_STORAGE_HEADER, "a1".parse().unwrap());
        assert!(me.admit_call(&metadata, &refusals).is_ok());
        assert_eq!(refusals.first(), None);
        metadata.insert(baton_proto::TARGET_STORAGE_HEADER, "old".parse().unwrap());
        assert_eq!(
            me.admit_call(&metadata, &refusals).unwrap_err().code(),
            tonic::Code::Unavailable
        );
        let (from, refused) = refusals.first().unwrap();
        assert_eq!((from, refused.addressed()), (2, "old"));
    }
}
