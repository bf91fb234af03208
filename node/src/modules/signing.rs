//! Module signatures: ed25519 over the module's name and content hash.
//!
//! `batonctl keys new` makes a key pair; `batonctl modules deploy` signs with
//! the private key; every node lists the public keys it trusts
//! (`[modules] trusted_keys`). A deploy is recorded only if it is signed by
//! a trusted key over exactly this name and these bytes.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why a signature was refused, or a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error(
        "module {name} is not signed; sign it with `batonctl modules deploy --signing-key FILE` (or BATON_SIGNING_KEY) \
         using a key this cluster trusts"
    )]
    Unsigned { name: String },
    #[error(
        "module {name} is signed by {signer}, which this cluster does not trust; sign with a trusted key, or add \
         the key's .pub to [modules] trusted_keys on every node"
    )]
    Untrusted { name: String, signer: String },
    #[error("module {name}: the signature does not match its name and bytes (tampered, or signed for other bytes)")]
    Mismatch { name: String },
    #[error("this cluster trusts no signing key; list the .pub of `batonctl keys new` under [modules] trusted_keys")]
    NoTrustedKeys,
    #[error("{0}")]
    Malformed(String),
}

/// The bytes a module signature covers.
fn message(name: &str, hash: &str) -> Vec<u8> {
    format!("baton-module-v1\n{name}\n{hash}").into_bytes()
}

/// A public key from its hex form (64 hex digits).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, SigningError> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SigningError::Malformed(format!("{text:?} is not a public key (64 hex digits)")))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| SigningError::Malformed(format!("{text:?} is not a public key: {e}")))
}

/// A fresh key pair.
pub fn generate() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// A private key file's text: the 32-byte seed in hex.
pub fn private_key_text(key: &SigningKey) -> String {
    format!("{}\n", hex::encode(key.to_bytes()))
}

/// A public key's hex form.
pub fn public_key_text(key: &VerifyingKey) -> String {
    hex::encode(key.to_bytes())
}

/// FILE.pub beside FILE: where a key pair's public half goes.
pub fn public_key_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes `key` to `file` (mode 0600, never over an existing file) and its
/// public half to `file.pub`; returns the public key's hex, or the path
/// that could not be written.
pub fn write_key_pair(file: &Path, key: &SigningKey) -> Result<String, (PathBuf, std::io::Error)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut private = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| (file.to_path_buf(), e))?;
    private
        .write_all(private_key_text(key).as_bytes())
        .map_err(|e| (file.to_path_buf(), e))?;
    let public = public_key_text(&key.verifying_key());
    let pub_path = public_key_path(file);
    std::fs::write(&pub_path, format!("{public}\n")).map_err(|e| (pub_path, e))?;
    Ok(public)
}

/// Reads a private key file written by `batonctl keys new`.
pub fn read_private_key(path: &Path) -> Result<SigningKey, SigningError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SigningError::Malformed(format!("cannot read signing key {}: {e}", path.display())))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            SigningError::Malformed(format!(
                "{} is not a private key from `batonctl keys new` (64 hex digits)",
                path.display()
            ))
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Signs module `name` with content hash `hash`: (signer, signature), hex.
pub fn sign(key: &SigningKey, name: &str, hash: &str) -> (String, String) {
    let signature = key.sign(&message(name, hash));
    (public_key_text(&key.verifying_key()), hex::encode(signature.to_bytes()))
}

/// Checks that `signature` by `signer` covers `name` and `hash` and that the
/// signer is trusted.
pub fn verify(
    trusted: &[VerifyingKey],
    name: &str,
    hash: &str,
    signer: &str,
    signature: &str,
) -> Result<(), SigningError> {
    if trusted.is_empty() {
        return Err(SigningError::NoTrustedKeys);
    }
    if signer.is_empty() || signature.is_empty() {
        return Err(SigningError::Unsigned { name: name.to_string() });
    }
    let key = parse_public_key(signer)?;
    if !trusted.contains(&key) {
        return Err(SigningError::Untrusted {
            name: name.to_string(),
            signer: signer.to_string(),
        });
    }
    let bytes: [u8; 64] = hex::decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SigningError::Malformed("a signature is 128 hex digits".into()))?;
    key.verify(&message(name, hash), &Signature::from_bytes(&bytes))
        .map_err(|_| SigningError::Mismatch { name: name.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_signature_over_the_name_and_bytes_passes_and_nothing_else_does() {
        let key = generate();
        let trusted = [key.verifying_key()];
        let (signer, signature) = sign(&key, "counter", "aa");
        assert_eq!(verify(&trusted, "counter", "aa", &signer, &signature), Ok(()));
        assert!(matches!(
            verify(&trusted, "counter", "bb", &signer, &signature),
            Err(SigningError::Mismatch { .. })
        ));
        assert!(matches!(
            verify(&trusted, "other", "aa", &signer, &signature),
            Err(SigningError::Mismatch { .. })
        ));
        assert!(matches!(
            verify(&trusted, "counter", "aa", "", ""),
            Err(SigningError::Unsigned { .. })
        ));
        let stranger = generate();
        let (signer, signature) = sign(&stranger, "counter", "aa");
        assert!(matches!(
            verify(&trusted, "counter", "aa", &signer, &signature),
            Err(SigningError::Untrusted { .. })
        ));
        assert_eq!(
            verify(&[], "counter", "aa", &signer, &signature),
            Err(SigningError::NoTrustedKeys)
        );
    }

    #[test]
    fn keys_round_trip_through_their_files() {
        let key = generate();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, private_key_text(&key)).unwrap();
        assert_eq!(read_private_key(&path).unwrap().to_bytes(), key.to_bytes());
        let public = public_key_text(&key.verifying_key());
        assert_eq!(parse_public_key(&public).unwrap(), key.verifying_key());
        assert!(parse_public_key("zz").is_err());
        std::fs::write(&path, "nope").unwrap();
        assert!(read_private_key(&path).is_err());
    }
}
