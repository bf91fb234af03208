//! The cluster version: what every member of the cluster can read.
//!
//! During a rolling upgrade nodes of two releases read one log. A release
//! may write something an older one cannot read (a new command kind, a new
//! format) only once no member runs that older release any more. So:
//!
//! - each release of `baton-node` supports a range of cluster versions
//!   ([`VersionRange::SUPPORTED`]) and reports it with its heartbeats;
//! - the replicated state records the cluster's version
//!   (`ClusterState::cluster_version`), which the leader raises, one step
//!   at a time and by one Raft write (`Command::SetClusterVersion`), only
//!   once every member reports that it supports the next one
//!   ([`next_step`]);
//! - whatever an older release could not read is written only at a cluster
//!   version at which no member runs such a release;
//! - a binary refuses to start on a data dir, to join a cluster, or to apply
//!   a log whose version is above its range, saying which release to run.
//!
//! A version is never lowered: once raised, a node may not go back to a
//! release that does not support it (CockroachDB's "finalization").
//!
//! | version | what it adds | first release |
//! | --- | --- | --- |
//! | 1 | the formats of the releases before cluster versions | 0.1.0 |
//! | 2 | the cluster records its version (`set_cluster_version` entries) | 0.2.0 |
//! | 3 | binary formats: the log, the vote, snapshots, forwarded proposals and Raft calls as `baton.state.v1` protobuf (see `crate::codec::format`) | 0.2.0 |
//! | 4 | peers forward their writes to the leader in batches (`crate::tasks::forwarder`) | 0.3.0 |
//! | 5 | the leader moves all of a lost node's tasks in one small `reassign_all` entry, decided as it is applied (`crate::placement`) | 0.4.0 |
//! | 6 | rolling upgrades of the node binary: `start_upgrade`, `upgrade_phase` and `upgrade_control` entries, and the upgrade in snapshots (`crate::state::upgrades`) | 0.5.0 |
//! | 7 | held upgrades: an upgrade's `hold_version` and the `finalize` control (`batonctl upgrade --hold-version`, `upgrade finalize`) | 0.6.0 |
//! | 8 | a tick asked for now: `run_now` entries and a task's `run_requested_ms` (`batonctl tasks run-now`, the status page's "Run now") | 0.7.0 |
//! | 9 | outgoing HTTP: a task's `allow_http` and `http_ca` (`batonctl tasks add --allow-http`), and modules that import `wasi:http` | 0.8.0 |
//! | 10 | modules up to 64 MiB (Python tasks embed their interpreter), where earlier releases fetch and load at most 16 MiB | 0.9.0 |
//! | 11 | task secrets: a task's sealed `secrets`, `reseal_secrets` and `set_secrets` entries, and modules that import `baton:task/secrets` | 0.10.0 |
//! | 12 | snapshots keep each task's tick history as deltas (`TaskRecord.compact_history`), a fifth of its records' size | 0.11.0 |
//! | 13 | the leader streams AppendEntries to each follower on one long-lived call, pipelined (`StreamAppendEntries`, `crate::raft::append_stream`) | 0.12.0 |
//!
//! CockroachDB's cluster versions and etcd's storage versions are the models.

use std::collections::BTreeMap;

use crate::state::member::NodeId;

/// A cluster version (see the module docs' table).
pub type ClusterVersion = u32;

/// The version of a cluster that has never raised it, and of every log and
/// snapshot written before cluster versions existed.
pub const FIRST: ClusterVersion = 1;

/// The version from which the log, the vote, snapshots and forwarded
/// proposals are written as protobuf (`crate::codec::format`).
pub const BINARY_FORMATS: ClusterVersion = 3;

/// The version from which a node forwards its writes to the leader in
/// batches: a leader of an earlier release refuses a forwarded batch.
pub const FORWARDED_BATCHES: ClusterVersion = 4;

/// The version from which the leader moves every task of a lost node in
/// one `Command::ReassignAll`, which a node of an earlier release cannot
/// read: below it, one `Command::AssignOwners` lists each task.
pub const REASSIGN_ALL: ClusterVersion = 5;

/// The version from which the cluster records rolling upgrades of the node
/// binary (`Command::StartUpgrade` and the two after it).
pub const NODE_UPGRADES: ClusterVersion = 6;

/// The version from which an upgrade may hold the cluster version until an
/// operator finalizes it (`UpgradeSettings::hold_version` and
/// `UpgradeAction::Finalize`). A node of 0.5.0 would read such an upgrade
/// without its hold (the field is new to it), and could raise the version
/// as its leader, or fail on the `finalize` control it does not know.
pub const HELD_UPGRADES: ClusterVersion = 7;

/// The version from which a task may be asked for a tick now
/// (`Command::RunNow`, `TaskRecord::run_requested_ms`): a node of 0.6.0
/// would stop on the entry it does not know, and would drop the request
/// from a snapshot.
pub const RUN_NOW: ClusterVersion = 8;

/// The version from which a task may call HTTP servers (`TaskSpec::allow_http`
/// and `http_ca`) and a module may import `wasi:http`: a node of 0.7.0
/// would drop the grants from the task it runs and from its snapshots.
pub const HTTP_GRANTS: ClusterVersion = 9;

/// The version from which a module may be larger than 16 MiB, up to
/// `crate::runtime::MAX_MODULE_BYTES` (a Python task's component embeds
/// its interpreter: 19 MB for the examples): a node of 0.8.0 refuses to
/// fetch or load such a module, so it could not run its tasks.
pub const LARGE_MODULES: ClusterVersion = 10;

/// The version from which a task may have secrets (`TaskSpec::secrets`,
/// `Command::ResealSecrets`, `Command::SetSecrets`) and a module may import `baton:task/secrets`:
/// a node of 0.9.0 would drop the secrets from the task it runs and from
/// its snapshots, stop on the entry it does not know, and could not link
/// such a module.
pub const SECRETS: ClusterVersion = 11;

/// The version from which a snapshot keeps each task's tick history as the
/// deltas it is held in (`TaskRecord.compact_history`; see
/// `crate::state::history`), about 3 bytes a tick against 17 as records: a
/// node of 0.10.0 would read every task of such a snapshot with no history.
pub const COMPACT_HISTORY: ClusterVersion = 12;

/// The version from which the leader pipelines AppendEntries to each
/// follower on one long-lived `StreamAppendEntries` call
/// (`crate::raft::append_stream`): a node of 0.11.0 does not have the
/// call. Below it, each AppendEntries is one unary call, answered before
/// the next is sent.
pub const STREAMED_APPEND: ClusterVersion = 13;

/// The highest version of this source tree.
const HIGHEST: ClusterVersion = 13;

/// The releases that introduced each version, for messages: index 0 is
/// version 1.
const FIRST_RELEASES: [&str; HIGHEST as usize] = [
    "0.1.0", "0.2.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "0.9.0", "0.10.0", "0.11.0",
    "0.12.0",
];

/// The highest version of this build: [`HIGHEST`], or lower when built with
/// `BATON_BUILD_MAX_CLUSTER_VERSION` set. With `BATON_BUILD_RELEASE` (see
/// [`crate::VERSION`]) that builds a real binary that acts in every way as
/// an earlier release, which is how the tests upgrade a cluster between
/// two real builds (`cluster-tests/tests/two_builds.rs`).
const BUILD_MAX: ClusterVersion = match option_env!("BATON_BUILD_MAX_CLUSTER_VERSION") {
    None => HIGHEST,
    Some(text) => parse_build_cap(text),
};

/// Parses `BATON_BUILD_MAX_CLUSTER_VERSION` while compiling: a bad value
/// fails the build with this message.
const fn parse_build_cap(text: &str) -> ClusterVersion {
    let bytes = text.as_bytes();
    assert!(
        !bytes.is_empty(),
        "BATON_BUILD_MAX_CLUSTER_VERSION is empty: unset it, or give a cluster version"
    );
    let mut value: ClusterVersion = 0;
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i].is_ascii_digit() && value < 1000,
            "BATON_BUILD_MAX_CLUSTER_VERSION must be a cluster version such as 6"
        );
        value = value * 10 + (bytes[i] - b'0') as ClusterVersion;
        i += 1;
    }
    assert!(
        value >= FIRST && value <= HIGHEST,
        "BATON_BUILD_MAX_CLUSTER_VERSION must be a cluster version this tree knows: 1 to HIGHEST (13)"
    );
    value
}

/// What `baton-node --describe` prints: a release and the cluster versions
/// it supports, so that `batonctl upgrade` can check a binary before it
/// uploads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseDescription {
    pub version: String,
    pub min_cluster_version: ClusterVersion,
    pub max_cluster_version: ClusterVersion,
}

impl ReleaseDescription {
    pub fn this_release() -> Self {
        ReleaseDescription {
            version: crate::VERSION.to_string(),
            min_cluster_version: VersionRange::SUPPORTED.min,
            max_cluster_version: VersionRange::SUPPORTED.max,
        }
    }
}

/// The cluster versions a binary can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub min: ClusterVersion,
    pub max: ClusterVersion,
}

impl Default for VersionRange {
    /// A release before cluster versions: version 1 only.
    fn default() -> Self {
        VersionRange { min: FIRST, max: FIRST }
    }
}

impl VersionRange {
    /// What this release supports.
    pub const SUPPORTED: VersionRange = VersionRange { min: 1, max: BUILD_MAX };

    /// This release's range, its top lowered to `cap` (the `[testing]
    /// max_cluster_version` knob, which makes a node act as an older release
    /// would in the version's rules).
    pub fn supported(cap: Option<ClusterVersion>) -> VersionRange {
        let max = cap.map_or(Self::SUPPORTED.max, |cap| {
            cap.clamp(Self::SUPPORTED.min, Self::SUPPORTED.max)
        });
        VersionRange {
            min: Self::SUPPORTED.min,
            max,
        }
    }

    /// The range a node reported: `(0, 0)` comes from a release before
    /// cluster versions, which reads version 1 only.
    pub fn reported(min: ClusterVersion, max: ClusterVersion) -> VersionRange {
        match (min, max) {
            (0, 0) => VersionRange::default(),
            (min, max) => VersionRange {
                min: min.max(FIRST),
                max,
            },
        }
    }

    pub fn contains(&self, version: ClusterVersion) -> bool {
        (self.min..=self.max).contains(&version)
    }

    /// Why a binary of this range cannot run at `version`, if it cannot:
    /// `what` is what is at that version ("data_dir", "the cluster", ...).
    pub fn refuse(&self, version: ClusterVersion, what: &str) -> Option<OutOfRange> {
        (!self.contains(version)).then(|| OutOfRange {
            what: what.to_string(),
            version,
            range: *self,
        })
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.min == self.max {
            true => write!(f, "cluster version {}", self.min),
            false => write!(f, "cluster versions {} to {}", self.min, self.max),
        }
    }
}

/// The first release of `baton-node` that runs at `version`, if this
/// release knows it.
pub fn first_release(version: ClusterVersion) -> Option<&'static str> {
    match version <= BUILD_MAX {
        true => FIRST_RELEASES.get((version as usize).checked_sub(1)?).copied(),
        false => None,
    }
}

/// What to run for `version`: "baton-node 0.2.0 or later".
pub fn release_advice(version: ClusterVersion) -> String {
    match first_release(version) {
        Some(release) => format!("baton-node {release} or later"),
        None => format!(
            "a release of baton-node newer than {} (one that supports cluster version {version})",
            FIRST_RELEASES[BUILD_MAX as usize - 1]
        ),
    }
}

/// Something is at a cluster version a binary does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OutOfRange {
    pub what: String,
    pub version: ClusterVersion,
    pub range: VersionRange,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is at cluster version {}; this baton-node ({}) supports {}; ",
            self.what,
            self.version,
            crate::VERSION,
            self.range
        )?;
        match self.version > self.range.max {
            true => write!(f, "run {}", release_advice(self.version)),
            false => write!(f, "run a release that supports it (one before {})", crate::VERSION),
        }
    }
}

/// An operator asked for something new at cluster version `needed` while
/// the cluster runs below it. Checked when the leader takes the request,
/// never when an entry is applied: there, nodes of both releases must reach
/// the same result, and the older one does not know the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} needs cluster version {needed} and the cluster runs at {version}: every node must run {} first \
     (upgrade them without it; the version rises by itself once that upgrade is done, see `batonctl status`)",
    release_advice(*.needed)
)]
pub struct BelowVersion {
    pub what: String,
    pub needed: ClusterVersion,
    pub version: ClusterVersion,
}

impl BelowVersion {
    /// Refuses `what` unless the cluster, at `version`, has reached
    /// `needed`.
    pub fn check(version: ClusterVersion, needed: ClusterVersion, what: &str) -> Result<(), BelowVersion> {
        match version >= needed {
            true => Ok(()),
            false => Err(BelowVersion {
                what: what.to_string(),
                needed,
                version,
            }),
        }
    }
}

/// What the leader does about the cluster version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every member supports the next version: raise it to this.
    Raise(ClusterVersion),
    /// Some member supports more than the current version, but these do
    /// not support the next one (`None`: it has not reported, so it may run
    /// any release).
    Held(Vec<(NodeId, Option<VersionRange>)>),
    /// No member supports more: the cluster is at its highest version.
    Highest,
}

/// The next step from `current`, given each member's reported range
/// (`None` for a member not heard from: down, or not yet reported to this
/// leader). Pure; the leader's loop in `crate::versioning` drives it.
pub fn next_step(current: ClusterVersion, members: &BTreeMap<NodeId, Option<VersionRange>>) -> Step {
    let next = current + 1;
    let held: Vec<(NodeId, Option<VersionRange>)> = members
        .iter()
        .filter(|(_, range)| !range.is_some_and(|r| r.contains(next)))
        .map(|(id, range)| (*id, *range))
        .collect();
    if held.is_empty() && !members.is_empty() {
        return Step::Raise(next);
    }
    match members.values().any(|r| r.is_some_and(|r| r.max >= next)) {
        true => Step::Held(held),
        false => Step::Highest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(min: u32, max: u32) -> Option<VersionRange> {
        Some(VersionRange { min, max })
    }

    #[test]
    fn the_version_rises_only_when_every_member_supports_the_next_one() {
        let all = BTreeMap::from([(1, range(1, 2)), (2, range(1, 2)), (3, range(1, 3))]);
        assert_eq!(next_step(1, &all), Step::Raise(2));
        assert_eq!(next_step(2, &all), Step::Held(vec![(1, range(1, 2)), (2, range(1, 2))]));

        let old = BTreeMap::from([(1, range(1, 2)), (2, range(1, 2)), (3, range(1, 1))]);
        assert_eq!(next_step(1, &old), Step::Held(vec![(3, range(1, 1))]));
    }

    #[test]
    fn a_member_not_heard_from_holds_the_version_back() {
        let silent = BTreeMap::from([(1, range(1, 2)), (2, None)]);
        assert_eq!(next_step(1, &silent), Step::Held(vec![(2, None)]));
    }

    #[test]
    fn a_cluster_whose_members_support_nothing_newer_is_at_its_highest() {
        let top = BTreeMap::from([(1, range(1, 2)), (2, range(1, 2))]);
        assert_eq!(next_step(2, &top), Step::Highest);
        assert_eq!(
            next_step(1, &BTreeMap::from([(1, range(1, 1)), (2, None)])),
            Step::Highest
        );
        assert_eq!(next_step(1, &BTreeMap::new()), Step::Highest);
    }

    #[test]
    fn a_member_that_no_longer_reads_the_next_version_holds_it_back() {
        let dropped = BTreeMap::from([(1, range(1, 3)), (2, range(3, 3))]);
        assert_eq!(next_step(1, &dropped), Step::Held(vec![(2, range(3, 3))]));
    }

    #[test]
    fn a_release_before_cluster_versions_reads_version_one_only() {
        assert_eq!(VersionRange::reported(0, 0), VersionRange { min: 1, max: 1 });
        assert_eq!(VersionRange::reported(1, 2), VersionRange { min: 1, max: 2 });
    }

    #[test]
    fn the_testing_cap_lowers_the_top_of_the_range_and_no_further() {
        assert_eq!(VersionRange::supported(None), VersionRange::SUPPORTED);
        assert_eq!(VersionRange::supported(Some(1)).max, 1);
        assert_eq!(VersionRange::supported(Some(0)).max, VersionRange::SUPPORTED.min);
        assert_eq!(VersionRange::supported(Some(99)).max, VersionRange::SUPPORTED.max);
    }

    #[test]
    fn a_version_above_the_range_is_refused_with_what_to_run() {
        let range = VersionRange { min: 1, max: 1 };
        assert!(range.refuse(1, "data_dir").is_none());
        let refused = range.refuse(2, "data_dir").unwrap().to_string();
        assert!(refused.starts_with("data_dir is at cluster version 2;"), "{refused}");
        assert!(refused.contains("supports cluster version 1;"), "{refused}");
        assert!(refused.ends_with("run baton-node 0.2.0 or later"), "{refused}");
        assert!(
            range
                .refuse(HIGHEST + 1, "the cluster")
                .unwrap()
                .to_string()
                .ends_with(&format!(
                    "run a release of baton-node newer than {} (one that supports cluster version {})",
                    crate::VERSION,
                    HIGHEST + 1
                )),
            "a version no release has names none"
        );
    }

    #[test]
    fn what_is_new_at_a_version_is_refused_below_it_with_what_to_run() {
        assert_eq!(BelowVersion::check(7, HELD_UPGRADES, "--hold-version"), Ok(()));
        assert_eq!(BelowVersion::check(8, HELD_UPGRADES, "--hold-version"), Ok(()));
        let refused = BelowVersion::check(6, HELD_UPGRADES, "--hold-version")
            .unwrap_err()
            .to_string();
        assert!(
            refused.starts_with("--hold-version needs cluster version 7 and the cluster runs at 6:"),
            "{refused}"
        );
        assert!(
            refused.contains("every node must run baton-node 0.6.0 or later first"),
            "{refused}"
        );
    }

    #[test]
    fn a_build_cap_is_a_version_this_tree_knows() {
        assert_eq!(parse_build_cap("6"), 6);
        assert_eq!(parse_build_cap("1"), 1);
        assert_eq!(parse_build_cap("13"), HIGHEST);
        for bad in ["", "0", "14", "6 ", "-1", "v6", "99999999999"] {
            assert!(
                std::panic::catch_unwind(|| parse_build_cap(bad)).is_err(),
                "{bad:?} was taken"
            );
        }
    }
}
