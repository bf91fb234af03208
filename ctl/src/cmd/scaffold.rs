//! `batonctl tasks new NAME --lang python|rust`: writes a ready task
//! project, with the SDK, the WIT interface and a build script, so that a
//! task builds and deploys with no checkout of Baton's repository. The
//! files are the ones this batonctl was built with, so the project matches
//! the cluster it talks to.

use std::path::{Path, PathBuf};

use super::CmdError;

/// The language of a new task project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Python,
    Rust,
}

/// One file of a project: its path in the project, its text, and whether
/// it is a script to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFile {
    pub path: &'static str,
    pub text: String,
    pub executable: bool,
}

/// The componentize-py a Python project installs
/// (`scripts/componentize-py.sh` pins the same).
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The wit-bindgen a Rust project's SDK builds with (`tasks/Cargo.toml`).
const WIT_BINDGEN: &str = "0.61";
/// The longest task module name (as the cluster allows).
const MAX_NAME_BYTES: usize = 64;

const README: &str = include_str!("../../templates/README.md");
const TASK_WIT: &str = include_str!("../../../wit/task.wit");

const PYTHON_APP: &str = include_str!("../../templates/python/app.py");
const PYTHON_BUILD: &str = include_str!("../../templates/python/build.sh");
const PYTHON_WIT: &str = include_str!("../../../tasks/python/wit/python.wit");
const PYTHON_SDK: [(&str, &str); 5] = [
    (
        "baton_task/__init__.py",
        include_str!("../../../tasks/python/baton_task/__init__.py"),
    ),
    (
        "baton_task/http.py",
        include_str!("../../../tasks/python/baton_task/http.py"),
    ),
    (
        "baton_task/log.py",
        include_str!("../../../tasks/python/baton_task/log.py"),
    ),
    (
        "baton_task/net.py",
        include_str!("../../../tasks/python/baton_task/net.py"),
    ),
    (
        "baton_task/state.py",
        include_str!("../../../tasks/python/baton_task/state.py"),
    ),
];
/// The WASI packages the Python worlds import (`wasi:http` and what it
/// uses), as the node's wasmtime-wasi-http has them.
const WASI_WIT: [(&str, &str); 7] = [
    (
        "wit/deps/cli.wit",
        include_str!("../../../tasks/python/wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../tasks/python/wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../tasks/python/wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../tasks/python/wit/deps/http.wit"),
    ),
    ("wit/deps/io.wit", include_str!("../../../tasks/python/wit/deps/io.wit")),
    (
        "wit/deps/random.wit",
        include_str!("../../../tasks/python/wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../tasks/python/wit/deps/sockets.wit"),
    ),
];

const RUST_LIB: &str = include_str!("../../templates/rust/lib.rs");
const RUST_CARGO: &str = include_str!("../../templates/rust/Cargo.toml");
const RUST_BUILD: &str = include_str!("../../templates/rust/build.sh");
const RUST_SDK_CARGO: &str = include_str!("../../templates/rust/sdk-Cargo.toml");
const RUST_SDK: &str = include_str!("../../../tasks/sdk/src/lib.rs");

/// Whether `name` may name a task module (and so the project).
pub fn check_name(name: &str) -> Result<(), CmdError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(CmdError::Usage(format!(
            "{name:?} cannot name a task module: use 1 to {MAX_NAME_BYTES} lowercase letters, digits, '-' or \
             '_', starting with a letter"
        ))),
    }
}

/// `template` with each `{{key}}` replaced by its value.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_string(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

/// The files of a new `lang` project for a module called `name`.
pub fn project_files(name: &str, lang: Lang) -> Vec<ProjectFile> {
    let file = |path: &'static str, text: String| ProjectFile {
        path,
        text,
        executable: false,
    };
    let script = |path: &'static str, text: String| ProjectFile {
        path,
        text,
        executable: true,
    };
    match lang {
        Lang::Python => {
            let values = [
                ("name", name),
                ("language", "Python"),
                ("source", "app.py"),
                ("sdk", "`baton_task/`"),
                ("doc", "python.md"),
                ("world", "python-task"),
                ("componentize_py", COMPONENTIZE_PY),
            ];
            let mut files = vec![
                file("README.md", fill(README, &values)),
                file("app.py", fill(PYTHON_APP, &values)),
                script("build.sh", fill(PYTHON_BUILD, &values)),
                file("wit/python.wit", PYTHON_WIT.to_string()),
                file("wit/deps/baton-task/task.wit", TASK_WIT.to_string()),
                file(".gitignore", ".venv/\n__pycache__/\n*.wasm\n".into()),
            ];
            files.extend(PYTHON_SDK.iter().map(|(path, text)| file(path, text.to_string())));
            files.extend(WASI_WIT.iter().map(|(path, text)| file(path, text.to_string())));
            files
        }
        Lang::Rust => {
            let crate_name = name.replace('-', "_");
            let values = [
                ("name", name),
                ("crate", &crate_name),
                ("language", "Rust"),
                ("source", "src/lib.rs"),
                ("sdk", "`vendor/baton-task-sdk/src/lib.rs`"),
                ("doc", "http.md"),
                ("wit_bindgen", WIT_BINDGEN),
            ];
            vec![
                file("README.md", fill(README, &values)),
                file("Cargo.toml", fill(RUST_CARGO, &values)),
                file("src/lib.rs", fill(RUST_LIB, &values)),
                script("build.sh", fill(RUST_BUILD, &values)),
                // The SDK finds the interface at ../../wit, as in Baton's
                // own tree.
                file("vendor/baton-task-sdk/Cargo.toml", fill(RUST_SDK_CARGO, &values)),
                file("vendor/baton-task-sdk/src/lib.rs", RUST_SDK.to_string()),
                file("wit/task.wit", TASK_WIT.to_string()),
                file(".gitignore", "target/\n*.wasm\n".into()),
            ]
        }
    }
}

/// Writes a new `lang` project for module `name` into `dir/name`, which
/// must not exist yet (nothing is written otherwise); returns its path.
pub fn write_project(dir: &Path, name: &str, lang: Lang) -> Result<PathBuf, CmdError> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        return Err(CmdError::Usage(format!(
            "{} already exists: pick another name or --dir, or remove it",
            root.display()
        )));
    }
    // Written beside, then moved into place: a failure leaves no half
    // project under the name.
    let partial = dir.join(format!(".{name}.partial"));
    let written = write_files(&partial, &project_files(name, lang)).and_then(|()| {
        std::fs::rename(&partial, &root).map_err(|source| CmdError::Write {
            path: root.clone(),
            source,
        })
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    written.map(|()| root)
}

fn write_files(root: &Path, files: &[ProjectFile]) -> Result<(), CmdError> {
    for f in files {
        let path = root.join(f.path);
        let write = |source| CmdError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(&path, &f.text).map_err(write)?;
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(write)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_project_has_the_sdk_the_worlds_and_a_filled_build_script() {
        let files = project_files("feed-sync", Lang::Python);
        let text = |path: &str| &files.iter().find(|f| f.path == path).unwrap().text;
        for path in [
            "app.py",
            "baton_task/http.py",
            "wit/python.wit",
            "wit/deps/http.wit",
            "wit/deps/baton-task/task.wit",
        ] {
            assert!(files.iter().any(|f| f.path == path), "{path} is missing");
        }
        let build = text("build.sh");
        assert!(build.contains("componentize-py==0.25.1"), "{build}");
        assert!(
            build.contains("-w python-task componentize -p . app -o feed-sync.wasm"),
            "{build}"
        );
        assert!(files.iter().find(|f| f.path == "build.sh").unwrap().executable);
        assert!(
            files.iter().all(|f| !f.text.contains("{{")),
            "a placeholder left unfilled"
        );
    }

    #[test]
    fn a_rust_project_vendors_the_sdk_where_it_finds_the_interface() {
        let files = project_files("feed-sync", Lang::Rust);
        let text = |path: &str| &files.iter().find(|f| f.path == path).unwrap().text;
        assert!(text("Cargo.toml").contains("name = \"feed-sync\""));
        assert!(text("build.sh").contains("wasm32-wasip2/release/feed_sync.wasm"));
        // The SDK's bindgen reads ../../wit from its own directory.
        assert!(text("vendor/baton-task-sdk/src/lib.rs").contains("path: \"../../wit\""));
        assert!(files.iter().any(|f| f.path == "wit/task.wit"));
        assert!(
            files.iter().all(|f| !f.text.contains("{{")),
            "a placeholder left unfilled"
        );
    }

    #[test]
    fn a_bad_name_or_a_taken_directory_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Feed", "1feed", "feed sync", "feed/sync", &"x".repeat(65)] {
            let err = write_project(dir.path(), bad, Lang::Python).unwrap_err();
            assert!(err.to_string().contains("cannot name a task module"), "{bad:?}: {err}");
        }
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        let err = write_project(dir.path(), "taken", Lang::Rust).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let root = write_project(dir.path(), "fresh", Lang::Rust).unwrap();
        assert!(root.join("src/lib.rs").is_file());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
