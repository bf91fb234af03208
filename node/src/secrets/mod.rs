//! Task secrets (`batonctl tasks add --secret`): sealed with AES-256-GCM
//! by the leader as they enter, so that only ciphertext enters a proposal,
//! the log and snapshots; opened by the node running a tick when its task
//! asks (`baton:task/secrets`); named, never shown, by `tasks show`.
//!
//! - [`keyring`]: a node's keys (`[secrets] key_files`), sealing and opening.
//! - [`rotation`]: which secrets `batonctl secrets rotate` seals again.
//!
//! The replicated form is `crate::state::secrets::SealedSecret`; the
//! operator's guide, rotation included, is `docs/secrets.md`.

pub mod keyring;
pub mod rotation;

pub use keyring::{KEY_BYTES, Keyring, SecretError, key_id};
