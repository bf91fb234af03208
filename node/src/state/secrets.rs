//! A task's secrets as the replicated state keeps them: sealed, never in
//! plain text. The leader, taking `batonctl tasks add --secret`, seals each
//! value (`crate::secrets::Keyring`), so only what is here enters a
//! proposal, the log and snapshots; the node running a tick opens one when
//! the task asks for it.

use serde::{Deserialize, Serialize};

/// Most secrets one task may have.
pub const MAX_SECRETS: usize = 16;
/// Longest secret value, in bytes (an API token, a password, a PEM key).
pub const MAX_SECRET_BYTES: usize = 8 * 1024;
/// Longest secret name.
pub const MAX_SECRET_NAME_BYTES: usize = 64;
/// The bytes a sealed secret adds to its value and name: nonce, tag, key
/// id and framing.
pub const SEALED_OVERHEAD_BYTES: usize = 12 + 16 + 16 + 16;

/// One secret of a task, sealed with AES-256-GCM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Its name, as the task asks for it.
    pub name: String,
    /// The id of the key it is sealed with (`crate::secrets::key_id`).
    pub key_id: String,
    /// The AES-GCM nonce: 12 bytes, random for every sealing.
    pub nonce: Vec<u8>,
    /// The value sealed, its 16-byte tag at the end.
    pub sealed: Vec<u8>,
}

/// Names and key ids only, whatever prints it.
impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A secret sealed again under another key (`batonctl secrets rotate`):
/// applied only while task `task`'s secret of that name is still the one
/// sealed with `was_nonce`, so a rotation never brings back a value that
/// changed meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resealed {
    pub task: String,
    pub was_nonce: Vec<u8>,
    pub secret: SealedSecret,
}

/// Whether `name` may name a secret: 1 to [`MAX_SECRET_NAME_BYTES`]
/// letters, digits, `_`, `-` and `.`, not starting with a digit or `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "secret name {name:?} must be 1 to {MAX_SECRET_NAME_BYTES} characters: letters, digits, '_', '-' \
             and '.', starting with a letter, '_' or '.'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_like_environment_variables() {
        for good in ["API_TOKEN", "db.password", "_x", "a-b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "-x", "a b", "a=b", &"x".repeat(65), "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_no_sealed_bytes() {
        let secret = SealedSecret {
            name: "API_TOKEN".into(),
            key_id: "0011223344556677".into(),
            nonce: vec![7; 12],
            sealed: b"\x01\x02 sealed bytes".to_vec(),
        };
        let shown = format!("{secret:?}");
        assert!(shown.contains("API_TOKEN") && shown.contains("0011223344556677"));
        assert!(!shown.contains("sealed bytes") && !shown.contains("[7, 7"), "{shown}");
    }
}
