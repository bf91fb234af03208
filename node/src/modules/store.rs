//! Module bytes on disk, named by their sha256, written atomically.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::runtime::{CompiledModule, ModuleError, TaskEngine, content_hash};

/// Whether `hash` looks like a sha256 in hex (so it is safe as a file name).
pub fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A directory of `<sha256>.wasm` files.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    dir: PathBuf,
}

impl ModuleStore {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(ModuleStore { dir: dir.to_path_buf() })
    }

    fn path(&self, hash: &str) -> Option<PathBuf> {
        is_hash(hash).then(|| self.dir.join(format!("{hash}.wasm")))
    }

    pub fn has(&self, hash: &str) -> bool {
        self.path(hash).is_some_and(|p| p.is_file())
    }

    /// The bytes of module `hash`, if this node has them.
    pub fn get(&self, hash: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path(hash) else { return Ok(None) };
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Module `hash` compiled by `engine` from this store's copy, once on
    /// this node however many ask at once (`TaskEngine::load_stored`);
    /// `None` while this node does not have the bytes. A damaged copy is
    /// removed, so that the fetcher brings it again.
    pub fn compiled(&self, engine: &TaskEngine, hash: &str) -> Option<Result<Arc<CompiledModule>, ModuleError>> {
        if let Some(module) = engine.loaded(hash) {
            return Some(Ok(module));
        }
        if !self.has(hash) {
            return None;
        }
        let loaded = engine.load_stored(hash, || self.get(hash).ok().flatten());
        if let Some(Err(ModuleError::Damaged { .. })) = &loaded
            && let Some(path) = self.path(hash)
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!("cannot remove the damaged module {}: {e}", path.display());
        }
        loaded
    }

    /// Stores `bytes` durably under their hash, which it returns.
    pub fn put(&self, bytes: &[u8]) -> io::Result<String> {
        let hash = content_hash(bytes);
        let path = self.dir.join(format!("{hash}.wasm"));
        if path.is_file() {
            return Ok(hash);
        }
        let tmp = self.dir.join(format!(".{hash}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_stored_by_hash_and_bad_hashes_name_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let hash = store.put(b"\0asm component").unwrap();
        assert!(is_hash(&hash) && store.has(&hash));
        assert_eq!(store.get(&hash).unwrap().as_deref(), Some(&b"\0asm component"[..]));
        assert_eq!(store.put(b"\0asm component").unwrap(), hash);
        for bad in ["../../etc/passwd", "", &hash.to_uppercase(), &hash[1..]] {
            assert!(!store.has(bad));
            assert_eq!(store.get(bad).unwrap(), None);
        }
    }

    #[test]
    fn a_damaged_copy_is_refused_and_removed_so_that_it_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let engine = TaskEngine::new(crate::runtime::RuntimeLimits::default(), None).unwrap();
        let hash = content_hash(b"\0asm the module as deployed");
        assert!(store.compiled(&engine, &hash).is_none(), "not here yet");

        std::fs::write(store.path(&hash).unwrap(), b"\0asm the module, one byte flipped").unwrap();
        let err = store.compiled(&engine, &hash).unwrap().unwrap_err();
        assert_eq!(
            err,
            ModuleError::Damaged {
                expected: hash.clone(),
                actual: content_hash(b"\0asm the module, one byte flipped"),
            }
        );
        assert!(!store.has(&hash), "removed");
        assert!(engine.loaded(&hash).is_none());
    }
}
