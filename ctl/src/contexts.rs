//! Contexts: named clusters, each with its endpoints and credentials, kept
//! in a file so that a command needs no flags or environment (as kubectl's
//! and nomad's contexts do).
//!
//! The file is `$BATON_CONTEXTS`, else `$XDG_CONFIG_HOME/baton/contexts.toml`,
//! else `~/.config/baton/contexts.toml`. It is TOML with a version, written
//! atomically (a temporary file, fsync, rename). A command uses the context
//! that `--context` (or `BATON_CONTEXT`) names, else the current one; flags
//! and `BATON_*` variables win over it, field by field.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::GlobalArgs;

/// The variable that names the contexts file.
pub const CONTEXTS_ENV: &str = "BATON_CONTEXTS";

/// The version of the file this batonctl writes and reads.
pub const VERSION: u32 = 1;

/// The contexts file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contexts {
    pub version: u32,
    /// The context a command uses when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One cluster: how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// Why the contexts could not be read, used or written.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read the contexts file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a contexts file: {why}; fix it, or remove it and add the contexts again")]
    Parse { path: PathBuf, why: String },
    #[error(
        "{path} is a contexts file of version {found}; this batonctl reads version {VERSION}: use a newer batonctl"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("no context named {name:?}; {}", known_names(.known))]
    Unknown { name: String, known: Vec<String> },
    #[error("cannot write the contexts file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no contexts file: set {CONTEXTS_ENV} or HOME")]
    NoPath,
}

fn known_names(known: &[String]) -> String {
    if known.is_empty() {
        "there are none: `batonctl context add NAME --endpoints ... --ca ... --cert ... --key ...` adds one".into()
    } else {
        format!("there are {} (see `batonctl context list`)", known.join(", "))
    }
}

impl Default for Contexts {
    fn default() -> Self {
        Contexts {
            version: VERSION,
            current: None,
            contexts: BTreeMap::new(),
        }
    }
}

impl Contexts {
    /// Where the contexts file is.
    pub fn path() -> Result<PathBuf, ContextError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(path) = var(CONTEXTS_ENV) {
            return Ok(path);
        }
        let config = var("XDG_CONFIG_HOME")
            .or_else(|| var("HOME").map(|home| home.join(".config")))
            .ok_or(ContextError::NoPath)?;
        Ok(config.join("baton/contexts.toml"))
    }

    /// Reads `path`; no file is no contexts.
    pub fn load(path: &Path) -> Result<Self, ContextError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contexts::default()),
            Err(source) => {
                return Err(ContextError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::parse(&text, path)
    }

    /// Reads the text of a contexts file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ContextError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<u32>,
        }
        let parse_error = |e: toml::de::Error| ContextError::Parse {
            path: path.to_path_buf(),
            why: e.message().to_string(),
        };
        // The version first, so that a newer file is refused as such
        // rather than for a field this release does not know.
        let found = toml::from_str::<Versioned>(text)
            .map_err(parse_error)?
            .version
            .ok_or_else(|| ContextError::Parse {
                path: path.to_path_buf(),
                why: "it has no version".into(),
            })?;
        if found != VERSION {
            return Err(ContextError::Version {
                path: path.to_path_buf(),
                found,
            });
        }
        toml::from_str(text).map_err(parse_error)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("contexts serialize")
    }

    /// Writes the file atomically: a temporary file beside it, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<(), ContextError> {
        let write_err = |source| ContextError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let temp = path.with_extension("toml.tmp");
        let mut file = std::fs::File::create(&temp).map_err(write_err)?;
        file.write_all(self.to_toml().as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&temp, path).map_err(write_err)
    }

    /// The context named `name`.
    pub fn get(&self, name: &str) -> Result<&Context, ContextError> {
        self.contexts.get(name).ok_or_else(|| ContextError::Unknown {
            name: name.to_string(),
            known: self.contexts.keys().cloned().collect(),
        })
    }

    /// Fills what `args` leaves unset from the context it names, else the
    /// current one; leaves `args` as they are when there is neither.
    pub fn apply(&self, args: &mut GlobalArgs) -> Result<(), ContextError> {
        let Some(name) = args.context.clone().or_else(|| self.current.clone()) else {
            return Ok(());
        };
        let context = self.get(&name)?;
        if args.endpoints.iter().all(|e| e.trim().is_empty()) {
            args.endpoints = context.endpoints.clone();
        }
        args.ca = args.ca.take().or_else(|| context.ca.clone());
        args.cert = args.cert.take().or_else(|| context.cert.clone());
        args.key = args.key.take().or_else(|| context.key.clone());
        args.insecure |= context.insecure;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::OutputFormat;

    fn args() -> GlobalArgs {
        GlobalArgs {
            endpoints: Vec::new(),
            ca: None,
            cert: None,
            key: None,
            insecure: false,
            output: OutputFormat::Table,
            timeout_secs: 30,
            context: None,
        }
    }

    fn prod() -> Context {
        Context {
            endpoints: vec!["10.0.0.11:7000".into(), "10.0.0.12:7000".into()],
            ca: Some("/etc/baton/ca.pem".into()),
            cert: Some("/etc/baton/admin.pem".into()),
            key: Some("/etc/baton/admin.key".into()),
            insecure: false,
        }
    }

    fn file() -> Contexts {
        let mut contexts = Contexts {
            current: Some("prod".into()),
            ..Contexts::default()
        };
        contexts.contexts.insert("prod".into(), prod());
        contexts.contexts.insert(
            "dev".into(),
            Context {
                endpoints: vec!["127.0.0.1:7001".into()],
                ca: None,
                cert: None,
                key: None,
                insecure: true,
            },
        );
        contexts
    }

    /// The format, pinned: a change here is a change of format.
    const GOLDEN: &str = r#"version = 1
current = "prod"

[contexts.dev]
endpoints = ["127.0.0.1:7001"]
insecure = true

[contexts.prod]
endpoints = ["10.0.0.11:7000", "10.0.0.12:7000"]
ca = "/etc/baton/ca.pem"
cert = "/etc/baton/admin.pem"
key = "/etc/baton/admin.key"
"#;

    #[test]
    fn the_file_format_is_pinned() {
        assert_eq!(file().to_toml(), GOLDEN);
        assert_eq!(Contexts::parse(GOLDEN, Path::new("c.toml")).unwrap(), file());
    }

    #[test]
    fn bad_and_newer_files_are_refused_with_what_to_do() {
        let path = Path::new("c.toml");
        let newer = GOLDEN.replace("version = 1", "version = 2\nfuture = true");
        assert!(matches!(
            Contexts::parse(&newer, path),
            Err(ContextError::Version { found: 2, .. })
        ));
        let unversioned = GOLDEN.replace("version = 1\n", "");
        assert!(
            Contexts::parse(&unversioned, path)
                .unwrap_err()
                .to_string()
                .contains("no version")
        );
        let typo = GOLDEN.replace("endpoints = [\"127", "endpoint = [\"127");
        assert!(matches!(Contexts::parse(&typo, path), Err(ContextError::Parse { .. })));
    }

    #[test]
    fn the_named_or_current_context_fills_what_flags_leave_unset() {
        let contexts = file();
        let mut a = args();
        contexts.apply(&mut a).unwrap();
        assert_eq!(a.endpoints, prod().endpoints);
        assert_eq!(a.ca, prod().ca);

        // A flag or variable wins, field by field.
        let mut a = args();
        a.endpoints = vec!["10.9.9.9:7000".into()];
        a.key = Some("/mine.key".into());
        contexts.apply(&mut a).unwrap();
        assert_eq!(a.endpoints, ["10.9.9.9:7000"]);
        assert_eq!((a.cert, a.key), (prod().cert, Some("/mine.key".into())));

        let mut a = args();
        a.context = Some("dev".into());
        contexts.apply(&mut a).unwrap();
        assert!(a.insecure && a.ca.is_none());

        let mut a = args();
        a.context = Some("staging".into());
        let err = contexts.apply(&mut a).unwrap_err().to_string();
        assert!(err.contains("\"staging\"") && err.contains("dev, prod"), "{err}");

        // No context named and none current: the flags as they are.
        let mut a = args();
        Contexts::default().apply(&mut a).unwrap();
        assert!(a.endpoints.is_empty());
    }

    #[test]
    fn saving_writes_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton/contexts.toml");
        assert_eq!(Contexts::load(&path).unwrap(), Contexts::default());
        file().save(&path).unwrap();
        assert_eq!(Contexts::load(&path).unwrap(), file());
        assert!(!path.with_extension("toml.tmp").exists());
    }
}
