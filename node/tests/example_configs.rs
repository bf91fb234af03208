//! The example configs in `configs/` parse and validate, but for the
//! certificate files that a user makes with `batonctl certs init`.

use std::path::Path;

use baton_node::config::NodeConfig;

#[test]
fn every_example_config_is_valid_apart_from_missing_certificates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for dir in ["local-3-node", "container"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let config =
                NodeConfig::parse(&text, path.parent().unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let problems: Vec<_> = config
                .validate()
                .into_iter()
                .filter(|p| !p.key.starts_with("tls."))
                .collect();
            assert!(problems.is_empty(), "{}: {problems:?}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}
