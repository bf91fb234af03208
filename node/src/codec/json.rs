//! The JSON forms the log and the Raft messages have had since the first
//! release, read so that a kind of command this release does not know (a
//! newer release wrote it, and this node runs an older one: a rollback, or
//! a mixed cluster) is refused by name, before anything of it is applied,
//! rather than as a bare parse error.
//!
//! The check runs only when an entry fails to decode, so reading costs
//! nothing more when all is well.

use serde_json::Value;

use crate::types::typ::Entry;

/// The tag every command kind this release knows has in JSON (the
/// snake_case variant name); a unit test checks it against every kind.
pub const COMMAND_KINDS: [&str; 25] = [
    "put",
    "delete",
    "batch",
    "add_task",
    "remove_task",
    "set_task_status",
    "assign_owners",
    "hand_off",
    "release_task",
    "set_drained",
    "commit_tick",
    "mark_task_failed",
    "deploy_module",
    "release",
    "rollout_step",
    "rollout_control",
    "rollout_finish",
    "set_cluster_version",
    "reassign_all",
    "start_upgrade",
    "upgrade_phase",
    "upgrade_control",
    "run_now",
    "reseal_secrets",
    "set_secrets",
];

/// A log entry holding a command of a kind this release does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "log entry {index} holds a command of kind `{kind}`, which baton-node {version} does not know: a newer \
     release wrote it. Nothing from it was applied. Run that release (or a later one) on this node",
    version = crate::VERSION
)]
pub struct UnknownCommand {
    pub index: u64,
    pub kind: String,
}

/// The first command kind in `command` (a JSON command, batches searched)
/// that this release does not know.
pub fn unknown_kind(command: &Value) -> Option<String> {
    let object = command.as_object()?;
    let (kind, body) = object.iter().next()?;
    match kind.as_str() {
        "batch" => body.as_array()?.iter().find_map(unknown_kind),
        known if COMMAND_KINDS.contains(&known) => None,
        unknown => Some(unknown.to_string()),
    }
}

/// The first entry among `entries` (JSON entries) whose command this release
/// does not know.
pub fn unknown_command<'a>(entries: impl IntoIterator<Item = &'a Value>) -> Option<UnknownCommand> {
    entries.into_iter().find_map(|entry| {
        let kind = unknown_kind(entry.get("payload")?.get("Normal")?)?;
        Some(UnknownCommand {
            index: entry.get("log_id")?.get("index")?.as_u64()?,
            kind,
        })
    })
}

/// Decodes a stored log entry; one holding an unknown command kind is an
/// [`UnknownCommand`] error.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, std::io::Error> {
    let invalid = |e: Box<dyn std::error::Error + Send + Sync>| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    serde_json::from_slice(bytes).map_err(|e| {
        let unknown = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|entry| unknown_command([&entry]));
        match unknown {
            Some(unknown) => invalid(Box::new(unknown)),
            None => invalid(Box::new(e)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Command;

    fn entry(index: u64, command: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "log_id": {"leader_id": {"term": 2, "node_id": 1}, "index": index},
            "payload": {"Normal": command}
        }))
        .unwrap()
    }

    #[test]
    fn every_command_kind_this_release_writes_is_known() {
        // One sample of every kind, from the format fixtures.
        for command in crate::store::format_fixtures_test::commands() {
            let json = serde_json::to_value(&command).unwrap();
            assert_eq!(unknown_kind(&json), None, "{json}");
            let tag = json.as_object().unwrap().keys().next().unwrap().clone();
            assert!(COMMAND_KINDS.contains(&tag.as_str()), "{tag}");
        }
        assert_eq!(
            COMMAND_KINDS.len(),
            crate::store::format_fixtures_test::commands().len(),
            "one sample per kind"
        );
    }

    #[test]
    fn an_entry_of_a_kind_written_by_a_newer_release_is_refused_by_name() {
        let bytes = entry(
            42,
            serde_json::json!({"grant_secret": {"task": "sync", "name": "api-key"}}),
        );
        let err = decode_entry(&bytes).unwrap_err();
        let unknown = err.get_ref().unwrap().downcast_ref::<UnknownCommand>().unwrap();
        assert_eq!(
            unknown,
            &UnknownCommand {
                index: 42,
                kind: "grant_secret".into()
            }
        );
        assert!(err.to_string().contains("a newer release wrote it"), "{err}");
    }

    #[test]
    fn an_unknown_kind_inside_a_batch_is_found() {
        let batch = serde_json::json!({"batch": [{"put": {"key": "k", "value": []}}, {"new_kind": {}}]});
        assert_eq!(unknown_kind(&batch).as_deref(), Some("new_kind"));
        let err = decode_entry(&entry(7, batch)).unwrap_err();
        assert!(err.to_string().contains("kind `new_kind`"), "{err}");
    }

    #[test]
    fn a_known_entry_decodes_and_a_broken_one_says_why_it_broke() {
        let put = serde_json::to_value(Command::Put {
            key: "k".into(),
            value: vec![1],
        })
        .unwrap();
        assert!(decode_entry(&entry(3, put)).is_ok());
        let err = decode_entry(b"{\"log_id\":").unwrap_err();
        assert!(err.get_ref().unwrap().downcast_ref::<UnknownCommand>().is_none());
    }
}
