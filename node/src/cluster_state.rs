//! The cluster's replicated truth as plain data, and the pure function that
//! applies a [`Command`] to it.
//!
//! The state machine store keeps one `ClusterState` in memory, applies
//! committed entries to it with [`ClusterState::apply`], and writes the keys
//! that changed to redb. Keeping the decision here, free of I/O, is what lets
//! it be unit-tested exhaustively.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Command, CommandResponse};

/// A key of the state machine's table that changed, with its new value
/// (`None`: removed). The store persists exactly these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// Everything the state machine holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The replicated key-value space (`batonctl kv`, tests, benchmarks).
    pub kv: BTreeMap<String, Vec<u8>>,
}

/// Prefix of key-value entries in the persisted table, so that later kinds of
/// records (tasks, modules) can share the table.
const KV_PREFIX: &str = "kv/";

impl ClusterState {
    /// Applies one committed command and says which persisted keys changed.
    pub fn apply(&mut self, command: &Command) -> (CommandResponse, Vec<Change>) {
        match command {
            Command::Put { key, value } => {
                let previous = self.kv.insert(key.clone(), value.clone());
                let change = Change {
                    key: format!("{KV_PREFIX}{key}"),
                    value: Some(value.clone()),
                };
                (CommandResponse { previous }, vec![change])
            }
            Command::Delete { key } => match self.kv.remove(key) {
                Some(previous) => {
                    let change = Change {
                        key: format!("{KV_PREFIX}{key}"),
                        value: None,
                    };
                    (
                        CommandResponse {
                            previous: Some(previous),
                        },
                        vec![change],
                    )
                }
                None => (CommandResponse::default(), Vec::new()),
            },
        }
    }

    /// Rebuilds the state from the persisted table's rows.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let mut state = ClusterState::default();
        for (key, value) in rows {
            if let Some(kv_key) = key.strip_prefix(KV_PREFIX) {
                state.kv.insert(kv_key.to_string(), value);
            }
        }
        state
    }

    /// The persisted table's rows for this state; `from_rows` inverts it.
    pub fn to_rows(&self) -> Vec<(String, Vec<u8>)> {
        self.kv
            .iter()
            .map(|(k, v)| (format!("{KV_PREFIX}{k}"), v.clone()))
            .collect()
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
        let (first, changes) = state.apply(&put("a", b"1"));
        assert_eq!(first.previous, None);
        assert_eq!(
            changes,
            vec![Change {
                key: "kv/a".into(),
                value: Some(b"1".to_vec())
            }]
        );
        let (second, _) = state.apply(&put("a", b"2"));
        assert_eq!(second.previous, Some(b"1".to_vec()));
        assert_eq!(state.kv["a"], b"2");
    }

    #[test]
    fn delete_of_a_missing_key_changes_nothing() {
        let mut state = ClusterState::default();
        let (response, changes) = state.apply(&Command::Delete { key: "nope".into() });
        assert_eq!(response, CommandResponse::default());
        assert!(changes.is_empty());
    }

    #[test]
    fn delete_removes_the_key_and_its_row() {
        let mut state = ClusterState::default();
        state.apply(&put("a", b"1"));
        let (response, changes) = state.apply(&Command::Delete { key: "a".into() });
        assert_eq!(response.previous, Some(b"1".to_vec()));
        assert_eq!(
            changes,
            vec![Change {
                key: "kv/a".into(),
                value: None
            }]
        );
        assert!(state.kv.is_empty());
    }

    #[test]
    fn rows_round_trip_and_unknown_prefixes_are_ignored() {
        let mut state = ClusterState::default();
        state.apply(&put("x", b"1"));
        state.apply(&put("y/z", b"2"));
        let mut rows = state.to_rows();
        rows.push(("future/record".into(), b"?".to_vec()));
        assert_eq!(ClusterState::from_rows(rows), state);
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
