//! A node's secret keys, and the sealing and opening of task secrets with
//! them.

use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::state::secrets::SealedSecret;

/// Bytes in a secret key (AES-256).
pub const KEY_BYTES: usize = 32;

/// What a key's id is derived from, before the key: an id says which key
/// sealed a secret without saying anything about the key.
const KEY_ID_DOMAIN: &[u8] = b"baton secret key id\0";

/// The additional data a secret is sealed with: its task and name, so a
/// sealed value copied to another task or name does not open.
fn additional_data(task: &str, name: &str) -> Vec<u8> {
    let mut aad = b"baton-secret/1\0".to_vec();
    aad.extend_from_slice(task.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// The id of `key`: the first 8 bytes of SHA-256 over a domain string and
/// the key, in hex.
pub fn key_id(key: &[u8; KEY_BYTES]) -> String {
    let digest = Sha256::new().chain_update(KEY_ID_DOMAIN).chain_update(key).finalize();
    hex::encode(&digest[..8])
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "this node has no secret key to seal secrets with: list a key file in its config's [secrets] key_files \
         (make one with `openssl rand -hex 32`; docs/secrets.md)"
    )]
    NoKeys,
    #[error(
        "secret {name} is sealed with key {key_id}, which this node does not hold: add that key's file to its \
         [secrets] key_files (docs/secrets.md)"
    )]
    UnknownKey { name: String, key_id: String },
    #[error("secret {name} does not open with key {key_id}: its sealed bytes were altered, or sealed for another task")]
    Corrupt { name: String, key_id: String },
    #[error("this node's random source failed while sealing secret {name}")]
    Random { name: String },
}

struct SecretKey {
    id: String,
    key: LessSafeKey,
}

/// The secret keys of a node (`[secrets] key_files`): the first seals new
/// secrets, every one opens the secrets sealed with it. The keys never
/// leave this value: not in `Debug`, not in any message.
#[derive(Default)]
pub struct Keyring {
    keys: Vec<SecretKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.ids()).finish()
    }
}

impl Keyring {
    /// A keyring of `keys`, the first sealing; a key given twice is kept once.
    pub fn of(keys: &[[u8; KEY_BYTES]]) -> Keyring {
        let mut ring = Keyring::default();
        for key in keys {
            let id = key_id(key);
            if ring.keys.iter().any(|k| k.id == id) {
                continue;
            }
            let unbound = UnboundKey::new(&AES_256_GCM, key).expect("an AES-256 key is 32 bytes");
            ring.keys.push(SecretKey {
                id,
                key: LessSafeKey::new(unbound),
            });
        }
        ring
    }

    /// Reads the key files, in order: each holds 64 hex digits (32 bytes;
    /// `openssl rand -hex 32`) on its first line, and is readable by its
    /// owner alone.
    pub fn load(files: &[PathBuf]) -> Result<Keyring, String> {
        let mut keys = Vec::with_capacity(files.len());
        for file in files {
            let key = read_key_file(file)?;
            let id = key_id(&key);
            if keys.iter().any(|k| key_id(k) == id) {
                return Err(format!(
                    "{} holds key {id}, which an earlier file lists too: list each key once",
                    file.display()
                ));
            }
            keys.push(key);
        }
        Ok(Keyring::of(&keys))
    }

    /// The ids of its keys, the sealing one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The id of the key it seals with, if it has one.
    pub fn sealing_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// Whether it holds key `id`.
    pub fn holds(&self, id: &str) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    /// `value`, task `task`'s secret `name`, sealed with the first key
    /// under a fresh random nonce.
    pub fn seal(&self, task: &str, name: &str, value: &[u8]) -> Result<SealedSecret, SecretError> {
        let key = self.keys.first().ok_or(SecretError::NoKeys)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Random { name: name.into() })?;
        let mut sealed = value.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(additional_data(task, name)),
                &mut sealed,
            )
            .map_err(|_| SecretError::Random { name: name.into() })?;
        Ok(SealedSecret {
            name: name.into(),
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            sealed,
        })
    }

    /// The value of task `task`'s `secret`.
    pub fn open(&self, task: &str, secret: &SealedSecret) -> Result<Vec<u8>, SecretError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == secret.key_id)
            .ok_or_else(|| SecretError::UnknownKey {
                name: secret.name.clone(),
                key_id: secret.key_id.clone(),
            })?;
        let corrupt = || SecretError::Corrupt {
            name: secret.name.clone(),
            key_id: secret.key_id.clone(),
        };
        let nonce = Nonce::try_assume_unique_for_key(&secret.nonce).map_err(|_| corrupt())?;
        let mut bytes = secret.sealed.clone();
        let value = key
            .key
            .open_in_place(nonce, Aad::from(additional_data(task, &secret.name)), &mut bytes)
            .map_err(|_| corrupt())?;
        Ok(value.to_vec())
    }
}

/// The key in `file`: 64 hex digits on its first line, the file readable
/// by its owner alone.
fn read_key_file(file: &Path) -> Result<[u8; KEY_BYTES], String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "cannot read secret key file {}: {e}; make one with `(umask 077; openssl rand -hex 32 > {})`",
            file.display(),
            file.display()
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "secret key file {} may be read by others (mode {:o}): `chmod 600 {}`",
                file.display(),
                mode & 0o777,
                file.display()
            ));
        }
    }
    let line = text.lines().next().unwrap_or("").trim();
    let mut key = [0u8; KEY_BYTES];
    match hex::decode_to_slice(line, &mut key) {
        Ok(()) => Ok(key),
        Err(_) => Err(format!(
            "secret key file {} must hold 64 hex digits (32 bytes) on its first line; it holds {} characters \
             there. Make one with `openssl rand -hex 32`",
            file.display(),
            line.chars().count()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(seeds: &[u8]) -> Keyring {
        Keyring::of(&seeds.iter().map(|s| [*s; KEY_BYTES]).collect::<Vec<_>>())
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_for_its_task_and_name_only() {
        let keys = ring(&[1, 2]);
        let sealed = keys.seal("sync", "API_TOKEN", b"hunter2").unwrap();
        assert_eq!(sealed.key_id, key_id(&[1; KEY_BYTES]));
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert!(!sealed.sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(keys.open("sync", &sealed).unwrap(), b"hunter2");
        // Copied to another task, or renamed: it does not open.
        assert!(matches!(keys.open("other", &sealed), Err(SecretError::Corrupt { .. })));
        let mut renamed = sealed.clone();
        renamed.name = "DB_PASSWORD".into();
        assert!(matches!(keys.open("sync", &renamed), Err(SecretError::Corrupt { .. })));
        let mut flipped = sealed.clone();
        flipped.sealed[0] ^= 1;
        assert!(matches!(keys.open("sync", &flipped), Err(SecretError::Corrupt { .. })));
        // A node that holds only the second key cannot open it, and says which key it lacks.
        let other = ring(&[2]);
        let e = other.open("sync", &sealed).unwrap_err();
        assert!(e.to_string().contains(&sealed.key_id), "{e}");
        // Sealed twice, the bytes differ (fresh nonces).
        assert_ne!(
            keys.seal("sync", "API_TOKEN", b"hunter2").unwrap().sealed,
            sealed.sealed
        );
    }

    #[test]
    fn no_keys_seal_nothing() {
        let e = Keyring::default().seal("t", "n", b"v").unwrap_err();
        assert_eq!(e, SecretError::NoKeys);
        assert!(e.to_string().contains("[secrets] key_files"));
    }

    #[test]
    fn key_files_hold_hex_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let good = write("good", &format!("{}\n", "ab".repeat(32)), 0o600);
        let other = write("other", &"cd".repeat(32), 0o400);
        let keys = Keyring::load(&[good.clone(), other.clone()]).unwrap();
        assert_eq!(keys.sealing_id(), Some(key_id(&[0xab; KEY_BYTES]).as_str()));
        assert_eq!(keys.ids().count(), 2);
        assert!(format!("{keys:?}").contains(&key_id(&[0xcd; KEY_BYTES])));

        let open = write("open", &"ab".repeat(32), 0o644);
        let e = Keyring::load(&[open]).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        let short = write("short", "abcd", 0o600);
        let e = Keyring::load(&[short]).unwrap_err();
        assert!(e.contains("64 hex digits"), "{e}");
        let e = Keyring::load(&[good.clone(), good]).unwrap_err();
        assert!(e.contains("list each key once"), "{e}");
        let e = Keyring::load(&[dir.path().join("missing")]).unwrap_err();
        assert!(e.contains("openssl rand -hex 32"), "{e}");
    }
}
