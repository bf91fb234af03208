//! [`Rejection`] as `baton.v1.Rejection`.

use baton_proto::rejection::Kind;
use baton_proto::stale_owner::Write;
use prost::Message;

use crate::state::rejection::{OwnedWrite, Rejection};

impl From<&Rejection> for baton_proto::Rejection {
    fn from(rejection: &Rejection) -> Self {
        use baton_proto as p;
        let task = |task: &String| p::RejectedTask { task: task.clone() };
        let module = |module: &String| p::RejectedModule { module: module.clone() };
        let kind = match rejection {
            Rejection::NoSuchTask { task: t } => Some(Kind::NoSuchTask(task(t))),
            Rejection::TaskExists { task: t } => Some(Kind::TaskExists(task(t))),
            Rejection::NoSuchModule { module: m } => Some(Kind::NoSuchModule(module(m))),
            Rejection::ModuleNameTaken { module, version, hash } => Some(Kind::ModuleNameTaken(p::ModuleNameTaken {
                module: module.clone(),
                version: *version,
                hash: hash.clone(),
            })),
            Rejection::StaleOwner {
                task,
                epoch,
                owner,
                from_node,
                from_epoch,
                write,
            } => Some(Kind::StaleOwner(p::StaleOwner {
                task: task.clone(),
                epoch: *epoch,
                owner: *owner,
                from_node: *from_node,
                from_epoch: *from_epoch,
                write: match write {
                    OwnedWrite::Commit => Write::Commit,
                    OwnedWrite::Yield => Write::Yield,
                } as i32,
            })),
            Rejection::OutOfOrder {
                task,
                committed,
                proposed,
            } => Some(Kind::OutOfOrder(p::OutOfOrder {
                task: task.clone(),
                committed: *committed,
                proposed: *proposed,
            })),
            Rejection::NotRunning { task, status } => Some(Kind::NotRunning(p::NotRunning {
                task: task.clone(),
                status: status.clone(),
            })),
            Rejection::NotHandedOff { task: t } => Some(Kind::NotHandedOff(task(t))),
            Rejection::StaleEpoch {
                task,
                proposed,
                current,
            } => Some(Kind::StaleEpoch(p::StaleEpoch {
                task: task.clone(),
                proposed: *proposed,
                current: *current,
            })),
            Rejection::RolloutUnderWay { module, version, state } => Some(Kind::RolloutUnderWay(p::RolloutUnderWay {
                module: module.clone(),
                version: *version,
                state: state.clone(),
            })),
            Rejection::VersionRaced { module, next, prepared } => Some(Kind::VersionRaced(p::VersionRaced {
                module: module.clone(),
                next: *next,
                prepared: *prepared,
            })),
            Rejection::NoRollout { module: m } => Some(Kind::NoRollout(module(m))),
            Rejection::RolloutOfOtherVersion { module, live, asked } => {
                Some(Kind::RolloutOfOtherVersion(p::RolloutOfOtherVersion {
                    module: module.clone(),
                    live: *live,
                    asked: *asked,
                }))
            }
            Rejection::RolloutNotRunning { module, state } => Some(Kind::RolloutNotRunning(p::RolloutNotRunning {
                module: module.clone(),
                state: state.clone(),
            })),
            Rejection::RolloutActionRefused { module, state, action } => {
                Some(Kind::RolloutActionRefused(p::RolloutActionRefused {
                    module: module.clone(),
                    state: state.clone(),
                    action: action.clone(),
                }))
            }
            Rejection::CannotAbort { module, why } => Some(Kind::CannotAbort(p::CannotAbort {
                module: module.clone(),
                why: why.clone(),
            })),
            Rejection::BinaryUnsupported {
                version,
                min,
                max,
                cluster_version,
            } => Some(Kind::BinaryUnsupported(p::BinaryUnsupported {
                version: version.clone(),
                min: *min,
                max: *max,
                cluster_version: *cluster_version,
            })),
            Rejection::UpgradeUnderWay { version, state } => Some(Kind::UpgradeUnderWay(p::UpgradeUnderWay {
                version: version.clone(),
                state: state.clone(),
            })),
            Rejection::NoUpgrade { hash } => Some(Kind::NoUpgrade(p::NoUpgrade { hash: hash.clone() })),
            Rejection::UpgradeActionRefused { version, state, action } => {
                Some(Kind::UpgradeActionRefused(p::UpgradeActionRefused {
                    version: version.clone(),
                    state: state.clone(),
                    action: action.clone(),
                }))
            }
            Rejection::Unrecognized { .. } => None,
        };
        p::Rejection {
            message: rejection.to_string(),
            kind,
        }
    }
}

impl From<baton_proto::Rejection> for Rejection {
    fn from(rejection: baton_proto::Rejection) -> Self {
        let Some(kind) = rejection.kind else {
            return Rejection::Unrecognized {
                message: rejection.message,
            };
        };
        match kind {
            Kind::NoSuchTask(t) => Rejection::NoSuchTask { task: t.task },
            Kind::TaskExists(t) => Rejection::TaskExists { task: t.task },
            Kind::NoSuchModule(m) => Rejection::NoSuchModule { module: m.module },
            Kind::ModuleNameTaken(m) => Rejection::ModuleNameTaken {
                module: m.module,
                version: m.version,
                hash: m.hash,
            },
            Kind::StaleOwner(s) => {
                let write = match s.write() {
                    Write::Yield => OwnedWrite::Yield,
                    // Unspecified: an older writer's default, a commit.
                    Write::Commit | Write::Unspecified => OwnedWrite::Commit,
                };
                Rejection::StaleOwner {
                    task: s.task,
                    epoch: s.epoch,
                    owner: s.owner,
                    from_node: s.from_node,
                    from_epoch: s.from_epoch,
                    write,
                }
            }
            Kind::OutOfOrder(o) => Rejection::OutOfOrder {
                task: o.task,
                committed: o.committed,
                proposed: o.proposed,
            },
            Kind::NotRunning(n) => Rejection::NotRunning {
                task: n.task,
                status: n.status,
            },
            Kind::NotHandedOff(t) => Rejection::NotHandedOff { task: t.task },
            Kind::StaleEpoch(s) => Rejection::StaleEpoch {
                task: s.task,
                proposed: s.proposed,
                current: s.current,
            },
            Kind::RolloutUnderWay(r) => Rejection::RolloutUnderWay {
                module: r.module,
                version: r.version,
                state: r.state,
            },
            Kind::VersionRaced(v) => Rejection::VersionRaced {
                module: v.module,
                next: v.next,
                prepared: v.prepared,
            },
            Kind::NoRollout(m) => Rejection::NoRollout { module: m.module },
            Kind::RolloutOfOtherVersion(r) => Rejection::RolloutOfOtherVersion {
                module: r.module,
                live: r.live,
                asked: r.asked,
            },
            Kind::RolloutNotRunning(r) => Rejection::RolloutNotRunning {
                module: r.module,
                state: r.state,
            },
            Kind::RolloutActionRefused(r) => Rejection::RolloutActionRefused {
                module: r.module,
                state: r.state,
                action: r.action,
            },
            Kind::CannotAbort(c) => Rejection::CannotAbort {
                module: c.module,
                why: c.why,
            },
            Kind::BinaryUnsupported(b) => Rejection::BinaryUnsupported {
                version: b.version,
                min: b.min,
                max: b.max,
                cluster_version: b.cluster_version,
            },
            Kind::UpgradeUnderWay(u) => Rejection::UpgradeUnderWay {
                version: u.version,
                state: u.state,
            },
            Kind::NoUpgrade(n) => Rejection::NoUpgrade { hash: n.hash },
            Kind::UpgradeActionRefused(u) => Rejection::UpgradeActionRefused {
                version: u.version,
                state: u.state,
                action: u.action,
            },
        }
    }
}

/// The typed rejection a gRPC status carries in its details (see
/// `api::rejected`), if it carries one.
pub fn from_status(status: &tonic::Status) -> Option<Rejection> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    baton_proto::Rejection::decode(details).ok().map(Rejection::from)
}

/// One rejection of every kind, for tests (here, in `api::errors` and in
/// batonctl's client). Matching every kind with no `_` arm, a new kind
/// cannot compile without a sample.
pub fn samples() -> Vec<Rejection> {
    let task = || "t".to_string();
    let module = || "counter".to_string();
    let all = vec![
        Rejection::NoSuchTask { task: task() },
        Rejection::TaskExists { task: task() },
        Rejection::NoSuchModule { module: module() },
        Rejection::ModuleNameTaken {
            module: module(),
            version: 1,
            hash: "ab".into(),
        },
        Rejection::StaleOwner {
            task: task(),
            epoch: 4,
            owner: Some(2),
            from_node: 3,
            from_epoch: 3,
            write: OwnedWrite::Yield,
        },
        Rejection::OutOfOrder {
            task: task(),
            committed: 4,
            proposed: 6,
        },
        Rejection::NotRunning {
            task: task(),
            status: "Paused".into(),
        },
        Rejection::NotHandedOff { task: task() },
        Rejection::StaleEpoch {
            task: task(),
            proposed: 2,
            current: 3,
        },
        Rejection::RolloutUnderWay {
            module: module(),
            version: 2,
            state: "paused".into(),
        },
        Rejection::VersionRaced {
            module: module(),
            next: 3,
            prepared: 2,
        },
        Rejection::NoRollout { module: module() },
        Rejection::RolloutOfOtherVersion {
            module: module(),
            live: 3,
            asked: 2,
        },
        Rejection::RolloutNotRunning {
            module: module(),
            state: "paused".into(),
        },
        Rejection::RolloutActionRefused {
            module: module(),
            state: "done".into(),
            action: "pause it".into(),
        },
        Rejection::CannotAbort {
            module: module(),
            why: "w".into(),
        },
        Rejection::BinaryUnsupported {
            version: "0.5.0".into(),
            min: 1,
            max: 5,
            cluster_version: 6,
        },
        Rejection::UpgradeUnderWay {
            version: "0.5.0".into(),
            state: "halted".into(),
        },
        Rejection::NoUpgrade { hash: "ab".into() },
        Rejection::UpgradeActionRefused {
            version: "0.5.0".into(),
            state: "done".into(),
            action: "pause".into(),
        },
        Rejection::Unrecognized { message: "m".into() },
    ];
    for sample in &all {
        match sample {
            Rejection::NoSuchTask { .. }
            | Rejection::TaskExists { .. }
            | Rejection::NoSuchModule { .. }
            | Rejection::ModuleNameTaken { .. }
            | Rejection::StaleOwner { .. }
            | Rejection::OutOfOrder { .. }
            | Rejection::NotRunning { .. }
            | Rejection::NotHandedOff { .. }
            | Rejection::StaleEpoch { .. }
            | Rejection::RolloutUnderWay { .. }
            | Rejection::VersionRaced { .. }
            | Rejection::NoRollout { .. }
            | Rejection::RolloutOfOtherVersion { .. }
            | Rejection::RolloutNotRunning { .. }
            | Rejection::RolloutActionRefused { .. }
            | Rejection::CannotAbort { .. }
            | Rejection::BinaryUnsupported { .. }
            | Rejection::UpgradeUnderWay { .. }
            | Rejection::NoUpgrade { .. }
            | Rejection::UpgradeActionRefused { .. }
            | Rejection::Unrecognized { .. } => {}
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_wire_form() {
        let samples = samples();
        let kinds: std::collections::BTreeSet<&str> = samples.iter().map(Rejection::kind).collect();
        assert_eq!(kinds.len(), samples.len(), "one sample per kind");
        for rejection in samples {
            let wire = baton_proto::Rejection::from(&rejection).encode_to_vec();
            let back = Rejection::from(baton_proto::Rejection::decode(&wire[..]).unwrap());
            assert_eq!(back, rejection);
            assert_eq!(back.to_string(), rejection.to_string());
        }
    }

    #[test]
    fn a_stale_owner_is_encoded_as_pinned() {
        let stale = Rejection::StaleOwner {
            task: "t".into(),
            epoch: 4,
            owner: Some(2),
            from_node: 3,
            from_epoch: 3,
            write: OwnedWrite::Yield,
        };
        let wire = baton_proto::Rejection::from(&stale).encode_to_vec();
        let message = stale.to_string();
        let mut pinned = vec![0x0a, message.len() as u8];
        pinned.extend_from_slice(message.as_bytes());
        pinned.extend_from_slice(&[
            0x32, 13, // 6: stale_owner
            0x0a, 1, b't', // 1: task
            0x10, 4, // 2: epoch
            0x18, 2, // 3: owner
            0x20, 3, // 4: from_node
            0x28, 3, // 5: from_epoch
            0x30, 2, // 6: write = release
        ]);
        assert_eq!(wire, pinned);
    }

    #[test]
    fn a_kind_from_a_newer_release_is_shown_by_its_text() {
        // Field 99 of Rejection: a kind this release does not know.
        let mut wire = baton_proto::Rejection {
            message: "refused for a new reason".into(),
            kind: None,
        }
        .encode_to_vec();
        wire.extend_from_slice(&[0x9a, 0x06, 0x00]); // field 99, length-delimited, empty
        let decoded = Rejection::from(baton_proto::Rejection::decode(&wire[..]).unwrap());
        assert_eq!(
            decoded,
            Rejection::Unrecognized {
                message: "refused for a new reason".into()
            }
        );
    }
}
