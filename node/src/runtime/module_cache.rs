//! Compiled modules by content hash, each read and compiled once on a node
//! however many of its workers ask at once.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::{CompiledModule, ModuleError};

/// The bytes of a module to compile: `None` when this node does not have
/// them yet.
pub(super) type Bytes<'a> = Option<Result<Cow<'a, [u8]>, ModuleError>>;

#[derive(Default)]
pub(super) struct ModuleCache {
    /// Compiled modules by content hash.
    modules: Mutex<HashMap<String, Arc<CompiledModule>>>,
    /// One lock per module being read and compiled, so that a module is
    /// compiled once however many ask, and a slow compile holds up no
    /// other module's.
    compiling: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl ModuleCache {
    /// Module `hash`, if it is compiled.
    pub(super) fn get(&self, hash: &str) -> Option<Arc<CompiledModule>> {
        self.modules
            .lock()
            .expect("module cache lock poisoned")
            .get(hash)
            .cloned()
    }

    /// The content hashes of the modules compiled so far.
    pub(super) fn hashes(&self) -> BTreeSet<String> {
        self.modules
            .lock()
            .expect("module cache lock poisoned")
            .keys()
            .cloned()
            .collect()
    }

    /// Module `hash`, compiled by `compile` from what `read` gives, unless
    /// it is compiled already. One caller at a time reads and compiles a
    /// module: when a node starts or takes over many tasks of one module,
    /// their workers all ask at once, and must not each read or compile it.
    pub(super) fn load_once<'a>(
        &self,
        hash: &str,
        read: impl FnOnce() -> Bytes<'a>,
        compile: impl FnOnce(&[u8]) -> Result<Arc<CompiledModule>, ModuleError>,
    ) -> Option<Result<Arc<CompiledModule>, ModuleError>> {
        if let Some(module) = self.get(hash) {
            return Some(Ok(module));
        }
        let lock = self
            .compiling
            .lock()
            .expect("compile locks poisoned")
            .entry(hash.to_string())
            .or_default()
            .clone();
        let loaded = {
            let _compiling = lock.lock().expect("compile lock poisoned");
            match self.get(hash) {
                Some(module) => Some(Ok(module)),
                None => {
                    let compiled = read().map(|bytes| compile(&bytes?));
                    if let Some(Ok(module)) = &compiled {
                        self.modules
                            .lock()
                            .expect("module cache lock poisoned")
                            .insert(hash.to_string(), module.clone());
                    }
                    compiled
                }
            }
        };
        // Whoever still waits on the lock finds the module loaded, or
        // tries again. The last holder of this lock takes it out of the
        // map (clones are made only under the map's lock, so the count is
        // sure there): taken out while others wait on it, a newcomer would
        // make a second lock, and read and compile beside them.
        let mut compiling = self.compiling.lock().expect("compile locks poisoned");
        if compiling
            .get(hash)
            .is_some_and(|held| Arc::ptr_eq(held, &lock) && Arc::strong_count(&lock) == 2)
        {
            compiling.remove(hash);
        }
        loaded
    }
}
