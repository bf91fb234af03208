//! Signatures: ed25519 over a module's name and content hash, or over a
//! node binary's version and content hash.
//!
//! `batonctl keys new` makes a key pair; `batonctl modules deploy` and
//! `batonctl upgrade` sign with the private key; every node lists the public
//! keys it trusts (`[modules] trusted_keys` for task code, `[heart]
//! trusted_keys` for node binaries). A deploy is recorded, and a binary run,
//! only if it is signed by a trusted key over exactly these bytes.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// What a signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A task module, by name.
    Module(String),
    /// A node binary, by the version its signer gave it.
    NodeBinary(String),
}

impl Subject {
    /// The bytes a signature over this subject and `hash` covers.
    fn message(&self, hash: &str) -> Vec<u8> {
        match self {
            Subject::Module(name) => format!("baton-module-v1\n{name}\n{hash}").into_bytes(),
            Subject::NodeBinary(version) => format!("baton-node-binary-v1\n{version}\n{hash}").into_bytes(),
        }
    }

    /// The command that signs it.
    fn signing_command(&self) -> &'static str {
        match self {
            Subject::Module(_) => "batonctl modules deploy --signing-key FILE",
            Subject::NodeBinary(_) => "batonctl upgrade BINARY --signing-key FILE",
        }
    }

    /// The config table that lists the keys trusted for it.
    fn trusted_keys_table(&self) -> &'static str {
        match self {
            Subject::Module(_) => "[modules] trusted_keys",
            Subject::NodeBinary(_) => "[heart] trusted_keys",
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Module(name) => write!(f, "module {name}"),
            Subject::NodeBinary(version) => write!(f, "node binary {version}"),
        }
    }
}

/// Why a signature was refused, or a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error(
        "{subject} is not signed; sign it with `{}` (or BATON_SIGNING_KEY) using a key this cluster trusts",
        subject.signing_command()
    )]
    Unsigned { subject: Subject },
    #[error(
        "{subject} is signed by {signer}, which this cluster does not trust; sign with a trusted key, or add \
         the key's .pub to {} on every node",
        subject.trusted_keys_table()
    )]
    Untrusted { subject: Subject, signer: String },
    #[error("{subject}: the signature does not match its bytes (tampered, or signed for other bytes)")]
    Mismatch { subject: Subject },
    #[error("this cluster trusts no key to sign a {0}; list the .pub of `batonctl keys new` under {1}")]
    NoTrustedKeys(&'static str, &'static str),
    #[error("{0}")]
    Malformed(String),
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
    sign_subject(key, &Subject::Module(name.to_string()), hash)
}

/// Signs a node binary of `version` with content hash `hash`: (signer,
/// signature), hex.
pub fn sign_node_binary(key: &SigningKey, version: &str, hash: &str) -> (String, String) {
    sign_subject(key, &Subject::NodeBinary(version.to_string()), hash)
}

fn sign_subject(key: &SigningKey, subject: &Subject, hash: &str) -> (String, String) {
    let signature = key.sign(&subject.message(hash));
    (public_key_text(&key.verifying_key()), hex::encode(signature.to_bytes()))
}

/// Checks that `signature` by `signer` covers module `name` and `hash` and
/// that the signer is trusted.
pub fn verify(
    trusted: &[VerifyingKey],
    name: &str,
    hash: &str,
    signer: &str,
    signature: &str,
) -> Result<(), SigningError> {
    verify_subject(trusted, Subject::Module(name.to_string()), hash, signer, signature)
}

/// Checks that `signature` by `signer` covers a node binary of `version` and
/// `hash` and that the signer is trusted.
pub fn verify_node_binary(
    trusted: &[VerifyingKey],
    version: &str,
    hash: &str,
    signer: &str,
    signature: &str,
) -> Result<(), SigningError> {
    verify_subject(
        trusted,
        Subject::NodeBinary(version.to_string()),
        hash,
        signer,
        signature,
    )
}

fn verify_subject(
    trusted: &[VerifyingKey],
    subject: Subject,
    hash: &str,
    signer: &str,
    signature: &str,
) -> Result<(), SigningError> {
    if trusted.is_empty() {
        return Err(match subject {
            Subject::Module(_) => SigningError::NoTrustedKeys("module", "[modules] trusted_keys"),
            Subject::NodeBinary(_) => SigningError::NoTrustedKeys("node binary", "[heart] trusted_keys"),
        });
    }
    if signer.is_empty() || signature.is_empty() {
        return Err(SigningError::Unsigned { subject });
    }
    let key = parse_public_key(signer)?;
    if !trusted.contains(&key) {
        return Err(SigningError::Untrusted {
            subject,
            signer: signer.to_string(),
        });
    }
    let bytes: [u8; 64] = hex::decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SigningError::Malformed("a signature is 128 hex digits".into()))?;
    match key.verify(&subject.message(hash), &Signature::from_bytes(&bytes)) {
        Ok(()) => Ok(()),
        Err(_) => Err(SigningError::Mismatch { subject }),
    }
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
        assert!(matches!(
            verify(&[], "counter", "aa", &signer, &signature),
            Err(SigningError::NoTrustedKeys(..))
        ));
    }

    #[test]
    fn a_binary_signature_covers_its_version_and_hash_and_is_no_module_signature() {
        let key = generate();
        let trusted = [key.verifying_key()];
        let (signer, signature) = sign_node_binary(&key, "0.5.0", "aa");
        assert_eq!(verify_node_binary(&trusted, "0.5.0", "aa", &signer, &signature), Ok(()));
        assert!(matches!(
            verify_node_binary(&trusted, "0.5.1", "aa", &signer, &signature),
            Err(SigningError::Mismatch { .. })
        ));
        // A module signature over the same words signs no binary, and back.
        assert!(verify(&trusted, "0.5.0", "aa", &signer, &signature).is_err());
        let (signer, signature) = sign(&key, "0.5.0", "aa");
        assert!(verify_node_binary(&trusted, "0.5.0", "aa", &signer, &signature).is_err());
        let error = verify_node_binary(&[], "0.5.0", "aa", &signer, &signature).unwrap_err();
        assert!(error.to_string().contains("[heart] trusted_keys"), "{error}");
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
