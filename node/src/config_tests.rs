use std::path::Path;

use super::*;

const VALID: &str = r#"
id = 1
listen_addr = "127.0.0.1:7001"
data_dir = "data/1"
insecure = true

[cluster]
name = "test"
initial_members = [
  { id = 1, addr = "127.0.0.1:7001" },
  { id = 2, addr = "127.0.0.1:7002" },
  { id = 3, addr = "127.0.0.1:7003" },
]
"#;

fn parse(text: &str) -> NodeConfig {
    NodeConfig::parse(text, Path::new("/etc/baton")).expect("parses")
}

fn keys(config: &NodeConfig) -> Vec<String> {
    config.validate().into_iter().map(|p| p.key).collect()
}

#[test]
fn a_valid_config_has_no_problems_and_resolves_relative_paths() {
    let config = parse(VALID);
    assert_eq!(config.validate(), vec![]);
    assert_eq!(config.data_dir, Path::new("/etc/baton/data/1"));
    assert_eq!(config.advertised(), "127.0.0.1:7001");
    assert_eq!(config.timing, TimingConfig::default());
    assert!(config.is_initial_member());
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let err = NodeConfig::parse(
        &VALID.replace("insecure = true", "insecure = true\nheartbeat = 5"),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.contains("unknown field `heartbeat`"), "{err}");
}

#[test]
fn fencing_is_on_unless_a_test_config_turns_it_off_by_its_full_name() {
    assert!(!parse(VALID).testing.unsafe_disable_fencing);
    let off = parse(&format!("{VALID}\n[testing]\nunsafe_disable_fencing = true\n"));
    assert!(off.testing.unsafe_disable_fencing);
    assert!(off.testing.stall_hand_offs_file.is_none());
    let stalled = parse(&format!("{VALID}\n[testing]\nstall_hand_offs_file = \"/tmp/stall\"\n"));
    assert_eq!(
        stalled.testing.stall_hand_offs_file.as_deref(),
        Some(Path::new("/tmp/stall"))
    );
    assert!(!stalled.testing.unsafe_disable_fencing);
    let text = format!("{VALID}\n[testing]\ndisable_fencing = true\n");
    let err = NodeConfig::parse(&text, Path::new(".")).unwrap_err();
    assert!(err.contains("disable_fencing"), "{err}");
    // A config written back out says nothing of the switch unless it is set.
    assert!(!toml::to_string(&parse(VALID)).unwrap().contains("testing"));
}

#[test]
fn the_cluster_version_cap_must_be_a_version_this_release_supports() {
    assert_eq!(parse(VALID).testing.max_cluster_version, None);
    let capped = parse(&format!("{VALID}\n[testing]\nmax_cluster_version = 1\n"));
    assert_eq!(capped.testing.max_cluster_version, Some(1));
    assert_eq!(capped.validate(), vec![]);
    for bad in [0, 99] {
        let config = parse(&format!("{VALID}\n[testing]\nmax_cluster_version = {bad}\n"));
        let problems = config.validate();
        assert_eq!(keys(&config), ["testing.max_cluster_version"]);
        assert!(
            problems[0].message.contains("cluster versions 1 to"),
            "{:?}",
            problems[0]
        );
    }
}

#[test]
fn an_unknown_timing_key_is_refused_by_name() {
    let text = format!("{VALID}\n[timing]\nheartbeat_ms = 5\n");
    let err = NodeConfig::parse(&text, Path::new(".")).unwrap_err();
    assert!(err.contains("heartbeat_ms"), "{err}");
}

#[test]
fn a_bad_listen_address_is_named() {
    let config = parse(&VALID.replace("listen_addr = \"127.0.0.1:7001\"", "listen_addr = \"localhost\""));
    assert!(keys(&config).contains(&"listen_addr".to_string()));
}

#[test]
fn a_member_address_without_port_is_named() {
    let config = parse(&VALID.replace("127.0.0.1:7003", "127.0.0.1"));
    let problems = config.validate();
    assert!(
        problems
            .iter()
            .any(|p| p.key == "cluster.initial_members" && p.message.contains("no port")),
        "{problems:?}"
    );
}

#[test]
fn a_duplicate_node_id_is_refused() {
    let config = parse(&VALID.replace("{ id = 3,", "{ id = 2,"));
    let problems = config.validate();
    assert!(
        problems.iter().any(|p| p.message.contains("duplicate node id 2")),
        "{problems:?}"
    );
}

#[test]
fn a_lease_that_cannot_cover_renewals_or_an_election_is_refused() {
    let text = format!("{VALID}\n[timing]\nlease_renew_ms = 400\nlease_ms = 1000\n");
    assert!(keys(&parse(&text)).contains(&"timing.lease_ms".to_string()));
    let text = format!("{VALID}\n[timing]\nlease_ms = 400\n");
    let config = parse(&text);
    let problems = config.validate();
    assert!(
        problems
            .iter()
            .any(|p| p.key == "timing.lease_ms" && p.message.contains("election")),
        "{problems:?}"
    );
    assert_eq!(
        parse(&format!("{VALID}\n[timing]\nlease_ms = 500\n")).validate(),
        vec![]
    );
}

#[test]
fn a_trusted_key_that_is_not_a_public_key_is_refused_by_index() {
    let good = crate::modules::signing::public_key_text(&crate::modules::signing::generate().verifying_key());
    let text = format!("{VALID}\n[modules]\ntrusted_keys = [\"{good}\", \"nope\"]\n");
    assert_eq!(keys(&parse(&text)), vec!["modules.trusted_keys[1]".to_string()]);
}

#[test]
fn impossible_timing_is_refused() {
    let text = format!("{VALID}\n[timing]\nheartbeat_interval_ms = 500\nelection_timeout_min_ms = 300\n");
    let config = parse(&text);
    assert!(keys(&config).contains(&"timing.election_timeout_min_ms".to_string()));
    let text = format!("{VALID}\n[timing]\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 400\n");
    assert!(keys(&parse(&text)).contains(&"timing.election_timeout_max_ms".to_string()));
}

#[test]
fn tls_is_required_unless_insecure_and_its_files_must_exist() {
    let config = parse(&VALID.replace("insecure = true", ""));
    assert_eq!(keys(&config), vec!["tls"]);
    let text = VALID.replace("insecure = true", "")
        + "\n[tls]\nca = \"missing/ca.pem\"\ncert = \"missing/n.pem\"\nkey = \"missing/n.key\"\n";
    let problems = parse(&text).validate();
    assert_eq!(
        problems.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(),
        vec!["tls.ca", "tls.cert", "tls.key"]
    );
    assert!(
        problems[0].message.contains("/etc/baton/missing/ca.pem"),
        "{problems:?}"
    );
}

#[test]
fn a_wildcard_listen_address_needs_an_advertise_address() {
    let config = parse(&VALID.replace("127.0.0.1:7001\"\ndata_dir", "0.0.0.0:7001\"\ndata_dir"));
    assert!(keys(&config).contains(&"advertise_addr".to_string()));
}

#[test]
fn this_node_must_be_listed_at_its_advertised_address() {
    let config = parse(&VALID.replace(
        "{ id = 1, addr = \"127.0.0.1:7001\" }",
        "{ id = 1, addr = \"127.0.0.1:9999\" }",
    ));
    let problems = config.validate();
    assert!(
        problems.iter().any(|p| p.message.contains("advertises 127.0.0.1:7001")),
        "{problems:?}"
    );
}

#[test]
fn cluster_id_depends_on_name_and_members_but_not_their_order() {
    let a = parse(VALID);
    let reordered = parse(&VALID.replace(
        "  { id = 1, addr = \"127.0.0.1:7001\" },\n  { id = 2, addr = \"127.0.0.1:7002\" },",
        "  { id = 2, addr = \"127.0.0.1:7002\" },\n  { id = 1, addr = \"127.0.0.1:7001\" },",
    ));
    assert_eq!(a.cluster_id(), reordered.cluster_id());
    assert!(a.cluster_id().starts_with("test-"));
    let other = parse(&VALID.replace("127.0.0.1:7003", "127.0.0.1:7004"));
    assert_ne!(a.cluster_id(), other.cluster_id());
}

#[test]
fn load_reports_every_problem_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, VALID.replace("id = 1\n", "id = 0\n")).unwrap();
    let err = NodeConfig::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("node.toml") && err.contains("id: node ids start at 1"),
        "{err}"
    );
    let missing = NodeConfig::load(&dir.path().join("absent.toml"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("cannot read config file"), "{missing}");
}

#[test]
fn the_caps_default_to_64_kib_and_must_fit_a_message_between_nodes() {
    let config = parse(VALID);
    assert_eq!(config.limits.max_state_bytes, 64 * 1024);
    assert_eq!(config.limits.max_config_bytes, 64 * 1024);
    let small = parse(&format!("{VALID}\n[limits]\nmax_state_bytes = 4096\n"));
    assert_eq!(small.limits.max_state_bytes, 4096);
    assert_eq!(
        small.limits.max_config_bytes,
        64 * 1024,
        "the other cap keeps its default"
    );
    for (key, value) in [("max_state_bytes", 0), ("max_config_bytes", 600 * 1024)] {
        let problems = parse(&format!("{VALID}\n[limits]\n{key} = {value}\n")).validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, format!("limits.{key}"));
        assert!(problems[0].message.contains("524288"), "{problems:?}");
    }
}

#[test]
fn the_metrics_listener_defaults_to_loopback_and_needs_a_port_of_its_own() {
    let config = parse(VALID);
    assert_eq!(config.metrics(), (MetricsConfig::at("127.0.0.1:9464"), false));
    let chosen = parse(&format!("{VALID}\n[metrics]\nlisten = \"127.0.0.1:9500\"\n"));
    assert_eq!(chosen.metrics(), (MetricsConfig::at("127.0.0.1:9500"), true));
    let off = parse(&format!("{VALID}\n[metrics]\nenabled = false\nlisten = \"nonsense\"\n"));
    assert_eq!(off.validate(), vec![], "a listener that is off is not checked");
    for (listen, says) in [
        ("localhost:9464", "is not an IP:PORT address"),
        ("127.0.0.1:7001", "is listen_addr's address too"),
        ("0.0.0.0:7001", "is listen_addr's address too"),
    ] {
        let problems = parse(&format!("{VALID}\n[metrics]\nlisten = \"{listen}\"\n")).validate();
        assert_eq!(problems.len(), 1, "{listen}: {problems:?}");
        assert_eq!(problems[0].key, "metrics.listen");
        assert!(problems[0].message.contains(says), "{problems:?}");
    }
    assert_eq!(
        parse(&format!("{VALID}\n[metrics]\nlisten = \"127.0.0.2:7001\"\n")).validate(),
        vec![],
        "another address, the same port"
    );
    let err = NodeConfig::parse(&format!("{VALID}\n[metrics]\nport = 1\n"), Path::new(".")).unwrap_err();
    assert!(err.contains("unknown field `port`"), "{err}");
}

#[test]
fn an_admin_token_file_is_resolved_beside_the_config_and_must_hold_a_token() {
    let named = parse(&format!("{VALID}\n[metrics]\nadmin_token_file = \"admin-token\"\n"));
    let file = named.metrics().0.admin_token_file.unwrap();
    assert_eq!(file, Path::new("/etc/baton/admin-token"));
    let problems = named.validate();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "metrics.admin_token_file");
    assert!(
        problems[0].message.contains("cannot read /etc/baton/admin-token"),
        "{problems:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let at = |text: &str| {
        std::fs::write(&token, text).unwrap();
        let config = format!("{VALID}\n[metrics]\nadmin_token_file = \"{}\"\n", token.display());
        parse(&config).validate()
    };
    assert_eq!(at("0123456789abcdef0123\n"), vec![]);
    let short = at("short\n");
    assert_eq!(short.len(), 1);
    assert!(short[0].message.contains("at least 16"), "{short:?}");
}

#[test]
fn secret_key_files_are_resolved_beside_the_config_and_must_hold_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let named = parse(&format!(
        "{VALID}\n[secrets]\nkey_files = [\"keys/new\", \"/keys/old\"]\n"
    ));
    assert_eq!(
        named.secrets.key_files,
        [Path::new("/etc/baton/keys/new"), Path::new("/keys/old")]
    );
    let problems = named.validate();
    assert_eq!(keys(&named), ["secrets.key_files"], "{problems:?}");
    assert!(problems[0].message.contains("openssl rand -hex 32"), "{problems:?}");

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    let with = |text: &str, mode: u32| {
        std::fs::write(&key, text).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        parse(&format!("{VALID}\n[secrets]\nkey_files = [\"{}\"]\n", key.display())).validate()
    };
    assert_eq!(with(&"0f".repeat(32), 0o600), vec![]);
    let open = with(&"0f".repeat(32), 0o644);
    assert!(open[0].message.contains("chmod 600"), "{open:?}");
    let short = with("0f0f", 0o600);
    assert!(short[0].message.contains("64 hex digits"), "{short:?}");
    // None: a node that seals no secrets, and opens none.
    assert_eq!(parse(VALID).validate(), vec![]);
}

#[test]
fn the_status_page_is_served_unless_turned_off() {
    assert!(parse(VALID).metrics().0.status_page);
    let off = parse(&format!("{VALID}\n[metrics]\nstatus_page = false\n"));
    assert!(!off.metrics().0.status_page);
    assert_eq!(off.validate(), vec![]);
    // Written back, a config that serves it says nothing of it.
    let text = toml::to_string(&MetricsConfig::default()).unwrap();
    assert!(!text.contains("status_page"), "{text}");
}

#[test]
fn metrics_over_tls_needs_the_nodes_certificate() {
    assert!(!parse(VALID).metrics().0.tls);
    let insecure = parse(&format!("{VALID}\n[metrics]\ntls = true\n"));
    assert_eq!(keys(&insecure), vec!["metrics.tls"]);
    assert!(
        insecure.validate()[0].message.contains("no [tls] section"),
        "{:?}",
        insecure.validate()
    );
    // Written back, a config without it says nothing of it.
    assert!(!toml::to_string(&MetricsConfig::default()).unwrap().contains("tls"));
}
