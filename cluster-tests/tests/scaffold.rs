//! `batonctl tasks new NAME --lang python|rust`: a fresh project of each
//! language builds with its own `build.sh` into a module that the task
//! engine loads and ticks, from the files batonctl wrote alone (no path
//! into this repository).
//!
//! The builds reuse what `scripts/build-tasks.sh` set up: componentize-py
//! in `target/componentize-py` (`COMPONENTIZE_PY`), and a target directory
//! under `target/` for the Rust project's dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;

use baton_cluster_tests::local_cluster::find_binary;
use baton_node::runtime::{RuntimeLimits, TaskContext, TaskEngine};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `batonctl tasks new` and the project's build; the module's bytes.
fn new_and_build(dir: &Path, name: &str, lang: &str) -> Vec<u8> {
    let out = Command::new(find_binary("batonctl").expect("batonctl is built beside the tests"))
        .args(["tasks", "new", name, "--lang", lang, "--dir"])
        .arg(dir)
        .output()
        .expect("batonctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("deploy it:  batonctl modules deploy {name}")),
        "{stdout}"
    );
    let root = dir.join(name);
    let mut build = Command::new(root.join("build.sh"));
    build.env(
        "COMPONENTIZE_PY",
        repo().join("target/componentize-py/bin/componentize-py"),
    );
    build.env("CARGO_TARGET_DIR", repo().join("target/scaffold-test"));
    let out = build.output().expect("build.sh runs");
    assert!(
        out.status.success(),
        "{lang} build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(root.join(format!("{name}.wasm"))).expect("build.sh wrote the module")
}

#[test]
fn a_new_project_of_each_language_builds_into_a_module_that_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let cache = repo().join("target/scaffold-test/wasm-cache");
    let engine = TaskEngine::new(RuntimeLimits::default(), Some(&cache)).expect("an engine");
    let task = |config: &str| TaskContext {
        name: "hello-1".into(),
        config: config.as_bytes().to_vec(),
        ..TaskContext::default()
    };

    let python = engine.load(&new_and_build(dir.path(), "hello-py", "python")).unwrap();
    let first = engine.tick(&python, task(r#"{"greeting": "hi"}"#), b"").unwrap();
    let second = engine.tick(&python, task(""), &first.state).unwrap();
    assert_eq!(String::from_utf8_lossy(&second.state), r#"{"ticks": 2}"#);
    let logged = engine.logs().read("hello-1", 0, 10);
    assert!(logged.iter().any(|l| l.message == "hi from tick 1"), "{logged:?}");

    let rust = engine.load(&new_and_build(dir.path(), "hello-rs", "rust")).unwrap();
    let first = engine.tick(&rust, task("hello"), b"").unwrap();
    let second = engine.tick(&rust, task("hello"), &first.state).unwrap();
    assert_eq!(second.state, b"2");

    // A name taken, or one no module may have, is refused and writes
    // nothing.
    for (name, why) in [("hello-py", "already exists"), ("Hello", "cannot name a task module")] {
        let out = Command::new(find_binary("batonctl").unwrap())
            .args(["tasks", "new", name, "--lang", "rust", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{name}: {stderr}");
    }
    assert!(!dir.path().join("Hello").exists());
}
