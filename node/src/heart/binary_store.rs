//! The heart's directory: node binaries by content hash, each with its
//! signature, and the slots record. Every file is written atomically (temp
//! file, fsync, rename, fsync of the directory), so a heart killed at any
//! point finds either the old record or the new one, and never a partial
//! binary under a hash.
//!
//! ```text
//! STATE_DIR/slots.json              the slots (see `slots`)
//! STATE_DIR/binaries/<sha256>       an executable node binary
//! STATE_DIR/binaries/<sha256>.sig   its signature (JSON)
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::slots::{BinaryId, SLOTS_FORMAT, Slots, short};
use crate::modules::signing::{self, SigningError};
use crate::modules::store::is_hash;

/// The largest node binary the heart takes (a release build with debug
/// information is about 150 MiB).
pub const MAX_BINARY_BYTES: u64 = 512 * 1024 * 1024;

/// A node binary's identity and signature, as `batonctl upgrade` signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBinary {
    pub hash: String,
    pub version: String,
    pub signer: String,
    pub signature: String,
    pub size: u64,
}

impl From<baton_proto::SignedBinary> for SignedBinary {
    fn from(b: baton_proto::SignedBinary) -> Self {
        SignedBinary {
            hash: b.hash,
            version: b.version,
            signer: b.signer,
            signature: b.signature,
            size: b.size,
        }
    }
}

impl SignedBinary {
    pub fn id(&self) -> BinaryId {
        BinaryId {
            hash: self.hash.clone(),
            version: self.version.clone(),
        }
    }

    /// The header's own problems, before any byte is taken: a sane hash,
    /// version and size, and a signature by a trusted key.
    pub fn check(&self, trusted: &[VerifyingKey]) -> Result<(), StoreError> {
        if !is_hash(&self.hash) {
            return Err(StoreError::BadHash(self.hash.clone()));
        }
        if self.version.is_empty() || self.version.len() > 64 || !self.version.chars().all(|c| c.is_ascii_graphic()) {
            return Err(StoreError::BadVersion(self.version.clone()));
        }
        if self.size == 0 || self.size > MAX_BINARY_BYTES {
            return Err(StoreError::Size {
                size: self.size,
                limit: MAX_BINARY_BYTES,
            });
        }
        signing::verify_node_binary(trusted, &self.version, &self.hash, &self.signer, &self.signature)?;
        Ok(())
    }
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0:?} is not a sha256 in lowercase hex")]
    BadHash(String),
    #[error("{0:?} is not a version: 1 to 64 printable characters without spaces")]
    BadVersion(String),
    #[error("a node binary of {size} bytes is refused: it must be 1 byte to {limit} bytes")]
    Size { size: u64, limit: u64 },
    #[error("the bytes sent are {got}, not the {expected} the header announced")]
    Length { expected: u64, got: u64 },
    #[error("the bytes have sha256 {got}, not the {expected} they were signed as")]
    Hash { expected: String, got: String },
    #[error("{0}")]
    Signing(#[from] SigningError),
    #[error("binary {0} is not in the heart's store; stage it first")]
    Missing(String),
    #[error(
        "{path} has format {found}, newer than this heart's {SLOTS_FORMAT}; run the newer baton-heart, \
         or move the file away to boot the installed binary"
    )]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("{path} cannot be read: {why}; move it away to boot the installed binary")]
    Corrupt { path: PathBuf, why: String },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// The heart's directory.
#[derive(Debug, Clone)]
pub struct BinaryStore {
    dir: PathBuf,
    /// The files whose bytes this process has seen match their hash (as it
    /// wrote them, or read them), by what their inode said then: a file
    /// whose inode says the same was not written since (any write or
    /// chmod moves its ctime), so it is not read again. This keeps hashing
    /// a binary of hundreds of megabytes out of a swap's stop-to-start.
    verified: Arc<Mutex<HashMap<String, FileStamp>>>,
}

/// What an inode says of its file's identity and last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(file: &std::fs::File) -> io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        Ok(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        })
    }

    /// Whether the file last changed at least `STAMP_MARGIN` before `now`:
    /// the kernel dates changes by a coarse clock (a few ms a tick), so a
    /// write in the same tick as the change stamped would leave the stamp
    /// as it was, but a write after `now` cannot.
    fn settled(&self, now: std::time::SystemTime) -> bool {
        nanos(now) - self.ctime_ns.max(self.mtime_ns) >= STAMP_MARGIN.as_nanos() as i128
    }
}

/// A time in ns since the Unix epoch.
fn nanos(time: std::time::SystemTime) -> i128 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// How long before a check its file must have last changed for the check
/// to be remembered.
const STAMP_MARGIN: std::time::Duration = std::time::Duration::from_millis(100);

impl BinaryStore {
    /// Opens (creating) the store in `dir`, and removes what an interrupted
    /// staging left.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let binaries = dir.join("binaries");
        std::fs::create_dir_all(&binaries).map_err(io_error(format!("cannot create {}", binaries.display())))?;
        if let Ok(entries) = std::fs::read_dir(&binaries) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".staging-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(BinaryStore {
            dir: dir.to_path_buf(),
            verified: Arc::default(),
        })
    }

    fn slots_path(&self) -> PathBuf {
        self.dir.join("slots.json")
    }

    /// The executable of binary `hash` (whether or not it is there).
    pub fn path(&self, hash: &str) -> Result<PathBuf, StoreError> {
        match is_hash(hash) {
            true => Ok(self.dir.join("binaries").join(hash)),
            false => Err(StoreError::BadHash(hash.to_string())),
        }
    }

    fn signature_path(&self, hash: &str) -> Result<PathBuf, StoreError> {
        self.path(hash)?;
        Ok(self.dir.join("binaries").join(format!("{hash}.sig")))
    }

    /// The slots record; a fresh one if there is none yet.
    pub fn load_slots(&self) -> Result<Slots, StoreError> {
        let path = self.slots_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Slots::default()),
            Err(e) => return Err(io_error(format!("cannot read {}", path.display()))(e)),
        };
        // The format first, so that a newer record is named as such rather
        // than as unreadable.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let corrupt = |why: String| StoreError::Corrupt {
            path: path.clone(),
            why,
        };
        let format: Format = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if format.format > SLOTS_FORMAT {
            return Err(StoreError::NewerFormat {
                path,
                found: format.format,
            });
        }
        serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))
    }

    /// Writes the slots record atomically.
    pub fn save_slots(&self, slots: &Slots) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(slots).expect("slots serialize");
        write_atomically(&self.slots_path(), &text, 0o644)
    }

    /// Starts taking binary `header`; the signature is checked first, so an
    /// untrusted binary is refused before its bytes are sent. `None` if the
    /// store already holds it.
    pub fn stage(&self, header: SignedBinary, trusted: &[VerifyingKey]) -> Result<Option<Staging>, StoreError> {
        header.check(trusted)?;
        let path = self.path(&header.hash)?;
        if path.is_file() && self.signature_path(&header.hash)?.is_file() {
            return Ok(None);
        }
        let tmp = self
            .dir
            .join("binaries")
            .join(format!(".staging-{:016x}", rand::random::<u64>()));
        let file = std::fs::File::create(&tmp).map_err(io_error(format!("cannot create {}", tmp.display())))?;
        Ok(Some(Staging {
            store: self.clone(),
            header,
            tmp,
            file: Some(file),
            digest: Sha256::new(),
            written: 0,
            unsynced: 0,
        }))
    }

    /// Checks binary `hash` before it runs: its signature, by a key trusted
    /// now when `trusted` is given (a trial), and its bytes against the hash
    /// (a file changed on disk is not run). A permanent binary is checked by
    /// its hash alone: its signature was checked when it was tried, and a
    /// key removed since must not make the heart fall back to an older
    /// binary. Reads the whole file, unless this process already saw its
    /// bytes match and the file has not changed since (see `verified`).
    pub fn check(&self, hash: &str, trusted: Option<&[VerifyingKey]>) -> Result<BinaryId, StoreError> {
        let path = self.path(hash)?;
        let sig_path = self.signature_path(hash)?;
        let text = match std::fs::read_to_string(&sig_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::Missing(short(hash).into())),
            Err(e) => return Err(io_error(format!("cannot read {}", sig_path.display()))(e)),
        };
        let header: SignedBinary = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: sig_path.clone(),
            why: e.to_string(),
        })?;
        if header.hash != hash {
            return Err(StoreError::Corrupt {
                path: sig_path,
                why: format!("it signs {}, not {hash}", header.hash),
            });
        }
        if let Some(trusted) = trusted {
            header.check(trusted)?;
        }
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::Missing(short(hash).into())),
            Err(e) => return Err(io_error(format!("cannot open {}", path.display()))(e)),
        };
        // Taken before the stamp: a write after it cannot be dated earlier.
        let now = std::time::SystemTime::now();
        let stamp = FileStamp::of(&file).map_err(io_error(format!("cannot read {}", path.display())))?;
        if self.verified.lock().unwrap().get(hash) == Some(&stamp) {
            return Ok(header.id());
        }
        let got = hash_reader(&mut file).map_err(io_error(format!("cannot read {}", path.display())))?;
        if got != hash {
            self.verified.lock().unwrap().remove(hash);
            return Err(StoreError::Hash {
                expected: hash.to_string(),
                got,
            });
        }
        // A write after the stamp was taken shows in the next one, unless it
        // fell in the same tick of the kernel's coarse clock: only a file
        // last changed well before now is remembered.
        if stamp.settled(now) {
            self.verified.lock().unwrap().insert(hash.to_string(), stamp);
        }
        Ok(header.id())
    }
}

impl BinaryStore {
    /// The hashes of the binaries held whole (a staging renames a binary
    /// into place only once all of it is written, and its signature after).
    pub fn held(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("binaries")) else {
            return Vec::new();
        };
        let mut held: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|name| is_hash(name))
            .filter(|hash| self.signature_path(hash).is_ok_and(|p| p.is_file()))
            .collect();
        held.sort();
        held
    }

    /// Removes every binary but those of `keep`, and temp files left by a
    /// write that was cut off; returns how many binaries went.
    pub fn remove_all_but(&self, keep: &[&str]) -> usize {
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(self.dir.join("binaries")) else {
            return 0;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let hash = name.trim_end_matches(".sig");
            let stale_temp = name.starts_with('.') && name.ends_with(".tmp");
            let unkept = is_hash(hash) && !keep.contains(&hash);
            if !unkept && !stale_temp {
                continue;
            }
            let gone = std::fs::remove_file(entry.path()).is_ok();
            if gone && unkept && !name.ends_with(".sig") {
                removed += 1;
            }
        }
        removed
    }
}

/// A binary being taken into the store; dropped unfinished, it leaves
/// nothing behind.
pub struct Staging {
    store: BinaryStore,
    header: SignedBinary,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    digest: Sha256,
    written: u64,
    /// Bytes written since the file was last flushed to disk.
    unsynced: u64,
}

/// How much of a binary being staged may wait in the page cache: flushing
/// as it comes keeps the final fsync small, so that staging a binary of
/// hundreds of megabytes never holds the disk (and the Raft log's fsyncs
/// behind it) for seconds.
const SYNC_EVERY: u64 = 8 << 20;

impl Staging {
    /// Appends bytes; refuses more than the header announced.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let written = self.written + bytes.len() as u64;
        if written > self.header.size {
            return Err(StoreError::Length {
                expected: self.header.size,
                got: written,
            });
        }
        let file = self.file.as_mut().expect("an unfinished staging has its file");
        file.write_all(bytes)
            .map_err(io_error(format!("cannot write {}", self.tmp.display())))?;
        self.digest.update(bytes);
        self.written = written;
        self.unsynced += bytes.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            file.sync_data()
                .map_err(io_error(format!("cannot write {}", self.tmp.display())))?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Checks the length and hash, and keeps the binary under its hash.
    pub fn finish(mut self) -> Result<BinaryId, StoreError> {
        if self.written != self.header.size {
            return Err(StoreError::Length {
                expected: self.header.size,
                got: self.written,
            });
        }
        let got = hex::encode(std::mem::take(&mut self.digest).finalize());
        if got != self.header.hash {
            return Err(StoreError::Hash {
                expected: self.header.hash.clone(),
                got,
            });
        }
        let file = self.file.take().expect("an unfinished staging has its file");
        let what = format!("cannot keep {}", self.tmp.display());
        file.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(io_error(what.clone()))?;
        // Its bytes were hashed as they were written. Its modification time
        // is set a second back: any later write dates the file by the
        // kernel's clock, now or later, so the stamp taken below tells it
        // apart even within one tick of that clock, and no check has to
        // read the file again while this heart runs.
        let sealed = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
        file.set_modified(sealed).map_err(io_error(what.clone()))?;
        file.sync_all().map_err(io_error(what.clone()))?;
        let path = self.store.path(&self.header.hash)?;
        std::fs::rename(&self.tmp, &path).map_err(io_error(what.clone()))?;
        let stamp = FileStamp::of(&file).map_err(io_error(what))?;
        drop(file);
        if stamp.mtime_ns == nanos(sealed) {
            self.store
                .verified
                .lock()
                .unwrap()
                .insert(self.header.hash.clone(), stamp);
        }
        let signature = serde_json::to_vec_pretty(&self.header).expect("a signature serializes");
        write_atomically(&self.store.signature_path(&self.header.hash)?, &signature, 0o644)?;
        Ok(self.header.id())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// sha256 of everything `reader` yields, hex.
pub fn hash_reader(reader: &mut impl Read) -> io::Result<String> {
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex::encode(digest.finalize()));
        }
        digest.update(&buffer[..n]);
    }
}

/// Writes `bytes` to `path` through a temp file beside it: fsync, rename,
/// fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let what = format!("cannot write {}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    // A name of its own: two writers of one file never share a temp file.
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        rand::random::<u64>()
    ));
    let mut file = std::fs::File::create(&tmp).map_err(io_error(what.clone()))?;
    file.write_all(bytes).map_err(io_error(what.clone()))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_error(what.clone()))?;
    file.sync_all().map_err(io_error(what.clone()))?;
    std::fs::rename(&tmp, path).map_err(io_error(what.clone()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(what))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::modules::signing::{SigningKey, generate, sign_node_binary};

    fn signed(key: &SigningKey, bytes: &[u8], version: &str) -> SignedBinary {
        let hash = hex::encode(Sha256::digest(bytes));
        let (signer, signature) = sign_node_binary(key, version, &hash);
        SignedBinary {
            hash,
            version: version.into(),
            signer,
            signature,
            size: bytes.len() as u64,
        }
    }

    /// `bytes` signed by `key` as `version`, staged whole in `store`.
    fn staged(store: &BinaryStore, key: &SigningKey, bytes: &[u8], version: &str) -> SignedBinary {
        let header = signed(key, bytes, version);
        let mut staging = store.stage(header.clone(), &[key.verifying_key()]).unwrap().unwrap();
        staging.write(bytes).unwrap();
        staging.finish().unwrap();
        header
    }

    #[test]
    fn a_signed_binary_is_kept_by_hash_and_checked_before_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BinaryStore::open(dir.path()).unwrap();
        let key = generate();
        let trusted = [key.verifying_key()];
        let bytes = b"#!/bin/sh\nexit 0\n";
        let header = signed(&key, bytes, "0.5.0");
        let mut staging = store.stage(header.clone(), &trusted).unwrap().unwrap();
        staging.write(&bytes[..5]).unwrap();
        staging.write(&bytes[5..]).unwrap();
        let id = staging.finish().unwrap();
        assert_eq!(id, header.id());
        let path = store.path(&header.hash).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(store.check(&header.hash, Some(&trusted)).unwrap(), id);
        assert!(store.stage(header.clone(), &trusted).unwrap().is_none(), "already held");

        // A key no longer trusted, or bytes changed on disk: not run.
        let other = [generate().verifying_key()];
        assert!(matches!(
            store.check(&header.hash, Some(&other)),
            Err(StoreError::Signing(SigningError::Untrusted { .. }))
        ));
        std::fs::write(&path, b"#!/bin/sh\nexit 1\n").unwrap();
        assert!(matches!(
            store.check(&header.hash, Some(&trusted)),
            Err(StoreError::Hash { .. })
        ));
        assert!(matches!(
            store.check(&"0".repeat(64), Some(&trusted)),
            Err(StoreError::Missing(_))
        ));
    }

    #[test]
    fn only_a_file_that_changed_well_before_its_check_is_remembered() {
        let stamp = FileStamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 1_000_000_000,
            ctime_ns: 2_000_000_000,
        };
        let at = |ms: u64| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        assert!(!stamp.settled(at(2_000)), "changed in the same tick");
        assert!(!stamp.settled(at(2_099)));
        assert!(stamp.settled(at(2_100)));
    }

    #[test]
    fn a_staged_binary_is_not_read_again_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BinaryStore::open(dir.path()).unwrap();
        let key = generate();
        let trusted = [key.verifying_key()];
        let bytes = b"#!/bin/sh\nexit 0\n";
        let header = staged(&store, &key, bytes, "0.5.0");
        // Hashed as it was written, and sealed: remembered at once.
        assert!(store.verified.lock().unwrap().contains_key(&header.hash));
        store.check(&header.hash, Some(&trusted)).unwrap();
        // The same length, other bytes, in the same tick of the kernel's
        // clock: the write dates the file now, not a second back.
        let path = store.path(&header.hash).unwrap();
        std::fs::write(&path, b"#!/bin/sh\nexit 1\n").unwrap();
        assert!(matches!(
            store.check(&header.hash, Some(&trusted)),
            Err(StoreError::Hash { .. })
        ));
        assert!(!store.verified.lock().unwrap().contains_key(&header.hash));
        // A heart started again remembers nothing: it reads the file.
        std::fs::write(&path, bytes).unwrap();
        let again = BinaryStore::open(dir.path()).unwrap();
        assert!(again.verified.lock().unwrap().is_empty());
        again.check(&header.hash, Some(&trusted)).unwrap();
    }

    #[test]
    fn bad_headers_and_bytes_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BinaryStore::open(dir.path()).unwrap();
        let key = generate();
        let trusted = [key.verifying_key()];
        let bytes = b"binary";
        let stranger = signed(&generate(), bytes, "0.5.0");
        assert!(matches!(
            store.stage(stranger, &trusted),
            Err(StoreError::Signing(SigningError::Untrusted { .. }))
        ));
        let mut relabelled = signed(&key, bytes, "0.5.0");
        relabelled.version = "9.9.9".into();
        assert!(matches!(
            store.stage(relabelled, &trusted),
            Err(StoreError::Signing(SigningError::Mismatch { .. }))
        ));
        let mut huge = signed(&key, bytes, "0.5.0");
        huge.size = MAX_BINARY_BYTES + 1;
        assert!(matches!(store.stage(huge, &trusted), Err(StoreError::Size { .. })));

        // More bytes than announced, fewer, or other bytes.
        let header = signed(&key, bytes, "0.5.0");
        let mut staging = store.stage(header.clone(), &trusted).unwrap().unwrap();
        assert!(matches!(staging.write(b"binary!"), Err(StoreError::Length { .. })));
        drop(staging);
        let mut staging = store.stage(header.clone(), &trusted).unwrap().unwrap();
        staging.write(b"bin").unwrap();
        assert!(matches!(staging.finish(), Err(StoreError::Length { .. })));
        let mut staging = store.stage(header.clone(), &trusted).unwrap().unwrap();
        staging.write(b"BINARY").unwrap();
        assert!(matches!(staging.finish(), Err(StoreError::Hash { .. })));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("binaries")).unwrap().collect();
        assert!(left.is_empty(), "a refused binary left {left:?}");
    }

    #[test]
    fn binaries_no_longer_kept_are_removed_with_their_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let store = BinaryStore::open(dir.path()).unwrap();
        let key = generate();
        let mut hashes = Vec::new();
        for bytes in [&b"one"[..], b"two"] {
            hashes.push(staged(&store, &key, bytes, "1.0").hash);
        }
        std::fs::write(dir.path().join("binaries/.slots.json.0123.tmp"), b"x").unwrap();
        let mut both = hashes.clone();
        both.sort();
        assert_eq!(store.held(), both);
        assert_eq!(store.remove_all_but(&[&hashes[1]]), 1);
        assert_eq!(store.held(), [hashes[1].clone()]);
        let left: BTreeSet<String> = std::fs::read_dir(dir.path().join("binaries"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(left, [hashes[1].clone(), format!("{}.sig", hashes[1])].into());
    }

    /// A binary's `.sig` file as this release writes it: a later heart
    /// must read it.
    #[test]
    fn the_signature_file_is_pinned() {
        let signed = SignedBinary {
            hash: "12".repeat(32),
            version: "0.5.0".into(),
            signer: "cd".repeat(32),
            signature: "ef".repeat(64),
            size: 202,
        };
        let pinned = format!(
            "{{\n  \"hash\": \"{}\",\n  \"version\": \"0.5.0\",\n  \"signer\": \"{}\",\n  \"signature\": \"{}\",\n  \"size\": 202\n}}",
            "12".repeat(32),
            "cd".repeat(32),
            "ef".repeat(64)
        );
        assert_eq!(serde_json::to_string_pretty(&signed).unwrap(), pinned);
        assert_eq!(serde_json::from_str::<SignedBinary>(&pinned).unwrap(), signed);
    }

    #[test]
    fn the_slots_record_survives_a_reopen_and_a_newer_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = BinaryStore::open(dir.path()).unwrap();
        assert_eq!(store.load_slots().unwrap(), Slots::default());
        let mut slots = Slots::default();
        slots
            .begin_trial(
                BinaryId {
                    hash: "a".into(),
                    version: "1".into(),
                },
                5,
            )
            .unwrap();
        store.save_slots(&slots).unwrap();
        assert_eq!(BinaryStore::open(dir.path()).unwrap().load_slots().unwrap(), slots);

        std::fs::write(dir.path().join("slots.json"), r#"{"format":2,"whatever":true}"#).unwrap();
        let error = store.load_slots().unwrap_err();
        assert!(matches!(error, StoreError::NewerFormat { found: 2, .. }), "{error}");
        std::fs::write(dir.path().join("slots.json"), "{").unwrap();
        assert!(matches!(store.load_slots(), Err(StoreError::Corrupt { .. })));
    }
}
