//! A component checked against the `baton:task` world and compiled.

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::TaskPre;
use super::errors::ModuleError;
use super::host::TaskHost;
use super::migrating_bindings::MigratingTaskPre;

/// A task module ready to instantiate.
pub struct CompiledModule {
    /// sha256 of the component's bytes, hex: its identity.
    pub hash: String,
    pub size: usize,
    /// Whether it exports `migrate` (the `migrating-task` world).
    pub migrates: bool,
    /// Whether it imports a `wasi:http` interface: it makes outgoing HTTP
    /// requests, which a cluster below version 9 cannot grant.
    pub imports_http: bool,
    /// Whether it imports `baton:task/secrets`, which a cluster below
    /// version 11 cannot give it.
    pub imports_secrets: bool,
    pub(crate) pre: TaskPre<TaskHost>,
    /// The same component seen as a `migrating-task`, if it is one.
    pub(crate) migrating: Option<MigratingTaskPre<TaskHost>>,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .finish()
    }
}

/// The content hash that identifies a module.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks the header: WebAssembly, and a component rather than a core module.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), ModuleError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ModuleError::NotWasm);
    }
    // Core modules have version 1 and layer 0; components carry layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(ModuleError::CoreModule);
    }
    Ok(())
}

/// Compiles and links `bytes`, checking every step a deploy must pass.
pub(crate) fn compile(engine: &Engine, linker: &Linker<TaskHost>, bytes: &[u8]) -> Result<CompiledModule, ModuleError> {
    check_header(bytes)?;
    let component = Component::new(engine, bytes).map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| ModuleError::UnsupportedImports(format!("{e:#}")))?;
    let kind = component.component_type();
    let migrates = kind.exports(engine).any(|(name, _)| name == "migrate");
    let imports_http = kind.imports(engine).any(|(name, _)| name.starts_with("wasi:http/"));
    let imports_secrets = kind
        .imports(engine)
        .any(|(name, _)| name.starts_with("baton:task/secrets@"));
    let migrating = match migrates {
        true => Some(MigratingTaskPre::new(instance_pre.clone()).map_err(|e| {
            ModuleError::WrongInterface(format!(
                "it exports `migrate`, but not as the migrating-task world has it (migrate(from-version, \
                 to-version, state) and can-downgrade(from-version, to-version)): {e:#}"
            ))
        })?),
        false => None,
    };
    let pre = TaskPre::new(instance_pre).map_err(|e| ModuleError::WrongInterface(format!("{e:#}")))?;
    Ok(CompiledModule {
        hash: content_hash(bytes),
        size: bytes.len(),
        migrates,
        imports_http,
        imports_secrets,
        pre,
        migrating,
    })
}
