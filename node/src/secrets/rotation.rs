//! `batonctl secrets rotate`: which task secrets to seal again with the
//! key that seals new ones, decided from the state and the node's keys.
//!
//! Rotating a key (docs/secrets.md): give every node the new key as its
//! first and keep the old one after it, restart them one at a time, rotate
//! (one command: this), then drop the old key from every node.

use super::keyring::{Keyring, SecretError};
use crate::state::secrets::{Resealed, SealedSecret};

/// What a rotation does.
#[derive(Debug, Default)]
pub struct Rotation {
    /// The key every secret it reseals is sealed with now.
    pub key_id: String,
    /// The secrets sealed again, each to replace the one it was sealed from.
    pub resealed: Vec<Resealed>,
    /// Secrets already sealed with that key.
    pub current: u64,
    /// Secrets this node cannot open, and why: they stay as they are.
    pub unopened: Vec<(String, SecretError)>,
}

/// Reseals every secret of `tasks` (each task's name and its sealed
/// secrets) not sealed with `keys`' sealing key.
pub fn plan<'a>(
    tasks: impl Iterator<Item = (&'a str, &'a [SealedSecret])>,
    keys: &Keyring,
) -> Result<Rotation, SecretError> {
    let key_id = keys.sealing_id().ok_or(SecretError::NoKeys)?.to_string();
    let mut rotation = Rotation {
        key_id,
        ..Rotation::default()
    };
    for (name, secrets) in tasks {
        for secret in secrets {
            if secret.key_id == rotation.key_id {
                rotation.current += 1;
                continue;
            }
            let resealed = keys
                .open(name, secret)
                .and_then(|value| keys.seal(name, &secret.name, &value));
            match resealed {
                Ok(sealed) => rotation.resealed.push(Resealed {
                    task: name.to_string(),
                    was_nonce: secret.nonce.clone(),
                    secret: sealed,
                }),
                Err(e) => rotation.unopened.push((name.to_string(), e)),
            }
        }
    }
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::KEY_BYTES;
    use crate::state::command::CommandResponse;
    use crate::state::tasks::{TaskSpec, TaskTable};

    fn sealed(table: &TaskTable) -> impl Iterator<Item = (&str, &[SealedSecret])> {
        table
            .values()
            .map(|t| (t.spec.name.as_str(), t.spec.secrets.as_slice()))
    }

    fn table(keys: &Keyring, secrets: &[(&str, &str, &str)]) -> TaskTable {
        let mut table = TaskTable::default();
        for task in ["a", "b"] {
            let mut spec = TaskSpec::counter_every_second(task);
            for (owner, name, value) in secrets {
                if *owner == task {
                    spec.secrets.push(keys.seal(task, name, value.as_bytes()).unwrap());
                }
            }
            table.add(spec);
        }
        table
    }

    #[test]
    fn rotation_reseals_what_the_old_keys_sealed_and_keeps_values() {
        let old = Keyring::of(&[[1; KEY_BYTES]]);
        let mut tasks = table(&old, &[("a", "TOKEN", "t-a"), ("b", "TOKEN", "t-b"), ("b", "PW", "pw")]);
        let both = Keyring::of(&[[2; KEY_BYTES], [1; KEY_BYTES]]);
        let rotation = plan(sealed(&tasks), &both).unwrap();
        assert_eq!((rotation.resealed.len(), rotation.current), (3, 0));
        assert_eq!(tasks.reseal(&rotation.resealed), CommandResponse::Count(3));
        let new_only = Keyring::of(&[[2; KEY_BYTES]]);
        for (task, name, value) in [("a", "TOKEN", "t-a"), ("b", "TOKEN", "t-b"), ("b", "PW", "pw")] {
            let secret = tasks[task].spec.secrets.iter().find(|s| s.name == name).unwrap();
            assert_eq!(new_only.open(task, secret).unwrap(), value.as_bytes());
        }
        // Again: nothing left to do.
        let again = plan(sealed(&tasks), &both).unwrap();
        assert_eq!((again.resealed.len(), again.current), (0, 3));
        // Applied twice (a retried proposal): the second changes nothing.
        assert_eq!(tasks.reseal(&rotation.resealed), CommandResponse::Count(0));
    }

    #[test]
    fn a_secret_changed_since_the_plan_is_not_overwritten() {
        let old = Keyring::of(&[[1; KEY_BYTES]]);
        let mut tasks = table(&old, &[("a", "TOKEN", "first")]);
        let both = Keyring::of(&[[2; KEY_BYTES], [1; KEY_BYTES]]);
        let rotation = plan(sealed(&tasks), &both).unwrap();
        // Meanwhile the task is removed and added again with another value.
        tasks.remove("a");
        let mut spec = TaskSpec::counter_every_second("a");
        spec.secrets.push(old.seal("a", "TOKEN", b"second").unwrap());
        tasks.add(spec);
        assert_eq!(tasks.reseal(&rotation.resealed), CommandResponse::Count(0));
        let secret = &tasks["a"].spec.secrets[0];
        assert_eq!(both.open("a", secret).unwrap(), b"second");
    }

    #[test]
    fn secrets_under_a_key_this_node_lacks_are_reported_and_kept() {
        let other = Keyring::of(&[[9; KEY_BYTES]]);
        let tasks = table(&other, &[("a", "TOKEN", "x")]);
        let mine = Keyring::of(&[[2; KEY_BYTES]]);
        let rotation = plan(sealed(&tasks), &mine).unwrap();
        assert!(rotation.resealed.is_empty());
        assert!(matches!(&rotation.unopened[..], [(task, SecretError::UnknownKey { .. })] if task == "a"));
        assert_eq!(
            plan(sealed(&tasks), &Keyring::default()).unwrap_err(),
            SecretError::NoKeys
        );
    }
}
