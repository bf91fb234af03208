//! The cluster's replicated truth as plain data, and the pure function that
//! applies a [`Command`] to it.
//!
//! Keeping the decision here, free of I/O, is what lets it be unit-tested
//! exhaustively; the state machine store drives it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Command, CommandResponse};

/// Everything the state machine holds. Serialized as a whole into snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The replicated key-value space (`batonctl kv`, tests, benchmarks).
    #[serde(default)]
    pub kv: BTreeMap<String, Vec<u8>>,
}

impl ClusterState {
    /// Applies one committed command.
    pub fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::Put { key, value } => CommandResponse {
                previous: self.kv.insert(key.clone(), value.clone()),
                ..Default::default()
            },
            Command::Delete { key } => CommandResponse {
                previous: self.kv.remove(key),
                ..Default::default()
            },
            Command::Batch(commands) => CommandResponse {
                batch: commands.iter().map(|c| self.apply(c)).collect(),
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &[u8]) -> Command {
        Command::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn put_stores_the_value_and_reports_the_previous_one() {
        let mut state = ClusterState::default();
        assert_eq!(state.apply(&put("a", b"1")).previous, None);
        assert_eq!(state.apply(&put("a", b"2")).previous, Some(b"1".to_vec()));
        assert_eq!(state.kv["a"], b"2");
    }

    #[test]
    fn delete_of_a_missing_key_changes_nothing() {
        let mut state = ClusterState::default();
        state.apply(&put("a", b"1"));
        let before = state.clone();
        assert_eq!(
            state.apply(&Command::Delete { key: "nope".into() }),
            CommandResponse::default()
        );
        assert_eq!(state, before);
    }

    #[test]
    fn delete_removes_the_key() {
        let mut state = ClusterState::default();
        state.apply(&put("a", b"1"));
        assert_eq!(
            state.apply(&Command::Delete { key: "a".into() }).previous,
            Some(b"1".to_vec())
        );
        assert!(state.kv.is_empty());
    }

    #[test]
    fn a_batch_applies_in_order_and_answers_each_command() {
        let mut state = ClusterState::default();
        let batch = Command::Batch(vec![
            put("a", b"1"),
            put("a", b"2"),
            Command::Delete { key: "a".into() },
        ]);
        let response = state.apply(&batch);
        let previous: Vec<_> = response.batch.iter().map(|r| r.previous.clone()).collect();
        assert_eq!(previous, vec![None, Some(b"1".to_vec()), Some(b"2".to_vec())]);
        assert!(state.kv.is_empty());
    }

    #[test]
    fn snapshots_round_trip_and_tolerate_unknown_fields() {
        let mut state = ClusterState::default();
        state.apply(&put("x", b"1"));
        let mut json: serde_json::Value = serde_json::to_value(&state).unwrap();
        json["a_field_from_a_newer_version"] = serde_json::json!(42);
        assert_eq!(serde_json::from_value::<ClusterState>(json).unwrap(), state);
    }

    #[test]
    fn applying_the_same_commands_gives_the_same_state() {
        let commands = [
            put("a", b"1"),
            put("b", b"2"),
            Command::Delete { key: "a".into() },
            put("c", b"3"),
        ];
        let mut one = ClusterState::default();
        let mut two = ClusterState::default();
        for c in &commands {
            one.apply(c);
        }
        for c in &commands {
            two.apply(c);
        }
        assert_eq!(one, two);
        assert_eq!(one.kv.keys().collect::<Vec<_>>(), vec!["b", "c"]);
    }
}
