//! The fixture set (`tests/fixtures/`: files in the shapes real decK and Kong files have) read offline: every file
//! under `load/` validates, the decK meta keys do what decK does to the target state, the file under `refused/`
//! names every unsupported feature it uses, and the Kong 2.x file under `convert/` validates as Kong's DB-less
//! loader reads it and converts as `deck file convert` does. The CLI tests sync, dump and re-sync the same files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use gatehouse_deck::DeckError;
use gatehouse_deck::convert::{Conversion, convert};
use gatehouse_deck::file::{Env, GapKind, Source, load};
use gatehouse_deck::run::validate_offline;
use gatehouse_deck::target::{Mode, resolve};
use gatehouse_model::gateway::EntityKind;

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn source(path: &Path) -> Source {
    Source {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        text: std::fs::read_to_string(path).unwrap(),
    }
}

fn fixture(dir: &str, name: &str) -> Source {
    source(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(name))
}

/// The target state of one file, offline: entity bodies by kind, in file order.
fn target_of(src: Source) -> Vec<(EntityKind, serde_json::Map<String, Value>)> {
    let (content, _) = load(&[src], &Env::new()).unwrap();
    let target = resolve(&content, None, Mode::Apply).unwrap();
    target.entities.into_iter().map(|r| (r.kind, r.data)).collect()
}

fn named<'a>(
    entities: &'a [(EntityKind, serde_json::Map<String, Value>)],
    kind: EntityKind,
    name: &str,
) -> &'a serde_json::Map<String, Value> {
    entities
        .iter()
        .find(|(k, e)| *k == kind && e.get("name").and_then(Value::as_str) == Some(name))
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no {kind:?} {name}"))
}

#[test]
fn every_fixture_to_load_validates_offline() {
    let files = fixtures("load");
    assert!(files.len() >= 5, "{files:?}");
    for path in files {
        validate_offline(&[source(&path)], &Env::new()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn plugin_configs_fill_what_a_plugin_leaves_out() {
    let entities = target_of(fixture("load", "plugin-configs-shared-limits.yaml"));
    let plugins: Vec<&serde_json::Map<String, Value>> =
        entities.iter().filter(|(k, _)| *k == EntityKind::Plugin).map(|(_, e)| e).collect();
    let limits: Vec<(Value, Value)> = plugins
        .iter()
        .filter(|p| p["name"] == "rate-limiting")
        .map(|p| (p["config"]["minute"].clone(), p["config"]["hour"].clone()))
        .collect();
    assert_eq!(limits, vec![(json!(60), json!(1000)), (json!(10), json!(1000))], "the plugin's own minute wins");
    let cors = plugins.iter().find(|p| p["name"] == "cors").unwrap();
    assert_eq!(
        (&cors["config"]["origins"], &cors["config"]["max_age"]),
        (&json!(["https://partner.example.com"]), &json!(3600))
    );
    assert!(plugins.iter().all(|p| p.get("_config").is_none()));

    let missing = Source {
        name: "k.yaml".into(),
        text: "_format_version: \"3.0\"\nplugins:\n- name: cors\n  _config: nowhere\n".into(),
    };
    let (content, _) = load(&[missing], &Env::new()).unwrap();
    let e = resolve(&content, None, Mode::Apply).unwrap_err();
    assert_eq!(e[0].to_string(), "k.yaml:4:12: _plugin_config \"nowhere\" not found");
}

#[test]
fn info_defaults_fill_what_entities_leave_out() {
    let entities = target_of(fixture("load", "info-defaults.yaml"));
    let inventory = named(&entities, EntityKind::Service, "inventory");
    assert_eq!(
        (&inventory["read_timeout"], &inventory["retries"], &inventory["port"]),
        (&json!(15000), &json!(2), &json!(8443))
    );
    let reports = named(&entities, EntityKind::Service, "reports");
    assert_eq!((&reports["read_timeout"], &reports["write_timeout"]), (&json!(120000), &json!(15000)));
    assert_eq!((&reports["host"], &reports["path"]), (&json!("reports.internal"), &json!("/v2")), "the URL wins");
    let items = named(&entities, EntityKind::Route, "inventory-items");
    assert_eq!((&items["strip_path"], &items["protocols"]), (&json!(false), &json!(["https"])));
    let health = named(&entities, EntityKind::Route, "inventory-health");
    assert_eq!((&health["strip_path"], &health["protocols"]), (&json!(true), &json!(["http", "https"])));
    assert_eq!(named(&entities, EntityKind::Upstream, "inventory.internal")["slots"], json!(1000));

    let restricted = Source {
        name: "k.yaml".into(),
        text: "_format_version: \"3.0\"\n_info:\n  defaults:\n    service:\n      name: x\n".into(),
    };
    let e = load(&[restricted], &Env::new()).unwrap_err();
    assert!(e[0].message.contains("service defaults cannot have these restricted fields set: name"), "{e:?}");
}

#[test]
fn transform_workspace_and_kong_db_less_credentials_are_read() {
    let entities = target_of(fixture("load", "kong-export-transform-false.yaml"));
    let key = entities.iter().find(|(k, _)| *k == EntityKind::KeyAuth).map(|(_, e)| e).unwrap();
    assert_eq!(key["key"], "batch-key-7f3a9c", "_transform: false: the key is taken as it is");
    assert_eq!(key["consumer"]["id"], "9e3c1f6a-3b40-4c7a-9d8e-2f4b1a6c7d01");
    let acl = entities.iter().find(|(k, _)| *k == EntityKind::Acl).map(|(_, e)| e).unwrap();
    assert_eq!(acl["group"], "billing");

    let (content, _) = load(&[fixture("load", "workspace-team-payments.yaml")], &Env::new()).unwrap();
    assert_eq!(content.notices.len(), 1);
    assert!(content.notices[0].contains("_workspace 'team-payments' is ignored"), "{:?}", content.notices);
    let bad = Source { name: "k.yaml".into(), text: "_format_version: \"3.0\"\n_transform: \"no\"\n".into() };
    assert!(load(&[bad], &Env::new()).unwrap_err()[0].message.contains("_transform: expected a boolean"));
}

#[test]
fn unsupported_features_are_all_listed() {
    let src = fixture("refused", "many-unsupported-features.yaml");
    let e = validate_offline(std::slice::from_ref(&src), &Env::new()).unwrap_err();
    let DeckError::Unsupported { gaps, errors } = &e else { panic!("{e}") };
    assert!(errors.is_empty(), "{errors:?}");
    let found: Vec<(GapKind, &str, usize)> = gaps.iter().map(|g| (g.kind, g.name.as_str(), g.places.len())).collect();
    assert_eq!(
        found,
        vec![
            (GapKind::Entity, "vaults", 1),
            (GapKind::Entity, "consumer_groups", 1),
            (GapKind::Credential, "groups", 1),
            (GapKind::Feature, "vault references ({vault://…})", 1),
            (GapKind::Plugin, "datadog", 1),
        ]
    );
    let text = e.to_string();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("many-unsupported-features.yaml:4:3: entity 'vaults' is not supported by Gatehouse"));
    assert!(text.contains("The files use 5 features Gatehouse does not support (5 uses in all"), "{text}");
    assert!(!text.contains("'jwt") && !text.contains("basic"), "jwt and basic-auth are supported: {text}");
    assert!(text.contains("\n  - plugin 'datadog': many-unsupported-features.yaml:42:9"), "{text}");
}

#[test]
fn a_kong_2x_file_validates_as_kong_reads_it_and_converts_as_deck_does() {
    let src = fixture("convert", "kong-2x-regex-paths.yaml");
    validate_offline(std::slice::from_ref(&src), &Env::new()).unwrap();
    let (content, _) = load(std::slice::from_ref(&src), &Env::new()).unwrap();
    assert!(
        content.check_format_version().unwrap_err().message.contains("gatehouse file convert --from kong-gateway-2.x")
    );

    let (out, messages) = convert(&src, &Env::new(), true, Conversion::Gateway2xTo3x, false).unwrap();
    assert!(
        messages[0].contains("2 unsupported routes' paths") && messages[0].contains("user-by-id\norder-items"),
        "{messages:?}"
    );
    let converted = Source { name: "converted.yaml".into(), text: out };
    let (content, _) = load(std::slice::from_ref(&converted), &Env::new()).unwrap();
    content.check_format_version().unwrap();
    let target = resolve(&content, None, Mode::Apply).unwrap();
    let paths: Vec<Value> =
        target.entities.iter().filter(|r| r.kind == EntityKind::Route).map(|r| r.data["paths"][0].clone()).collect();
    assert_eq!(paths, vec![json!("~/users/\\d+$"), json!("/users"), json!("~/orders/(?<order>\\d+)/items")]);
}

#[test]
fn logging_plugins_keep_their_queue_and_fill_kongs_defaults() {
    let entities = target_of(fixture("load", "logging-plugins.yaml"));
    let plugin = |name: &str| {
        entities.iter().find(|(k, e)| *k == EntityKind::Plugin && e["name"] == name).map(|(_, e)| e).unwrap()
    };
    let http = &plugin("http-log")["config"];
    assert_eq!((&http["queue"]["max_batch_size"], &http["queue"]["initial_retry_delay"]), (&json!(50), &json!(0.01)));
    assert_eq!(http["headers"]["X-Api-Key"], "collector-key-123");
    assert_eq!(plugin("file-log")["config"]["reopen"], json!(true));
    assert_eq!(plugin("tcp-log")["config"]["tls"], json!(false));
    assert_eq!(plugin("udp-log")["config"]["timeout"], json!(10000));
    assert_eq!(plugin("syslog")["config"]["facility"], "local0");
}
