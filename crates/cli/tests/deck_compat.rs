//! Real decK and Kong declarative files through decK's commands: the fixture set of the deck crate
//! (`crates/deck/tests/fixtures/`) validated, synced, dumped and re-synced with no changes, one decK meta key per
//! test (`_transform`, `_workspace`, `_plugin_configs`, `_info.defaults`); Kong 2.x files refused by the gateway
//! commands with decK's pointer to `file convert`, converted (as `gatehouse file convert` and as `deck file
//! convert`) and then routed by the proxy; and a file using many unsupported features, every one of them listed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::deck::{Deck, lines, summary};
use common::{bin, recording_upstream};
use gatehouse_testkit::{TestNode, run_with_input};

fn fixture(dir: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deck/tests/fixtures").join(dir).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// validate (offline and against the node) → diff → sync → sync again (no changes) → dump → sync of the dump
/// (no changes). Returns the first sync's output.
async fn round_trip(deck: &Deck, name: &str, text: &str, select_tags: &[&str]) -> (String, String) {
    let file = deck.write(name, text);
    let (code, _, err) = deck.run(&["file", "validate", &file]).await;
    assert_eq!(code, 0, "{name}: {err}");
    let (code, _, err) = deck.run(&["validate", &file]).await;
    assert_eq!(code, 0, "{name}: {err}");
    let diff = deck.ok(&["diff", &file]).await;
    let (code, synced, sync_err) = deck.run(&["sync", &file]).await;
    assert_eq!(code, 0, "{name}: {sync_err}");
    assert_eq!(summary(&diff), summary(&synced), "{name}: diff shows what sync does\n{diff}\n{synced}");
    assert!(summary(&synced).0 > 0, "{name}: {synced}");
    let again = deck.ok(&["sync", &file]).await;
    assert_eq!((lines(&again), summary(&again)), (vec![], (0, 0, 0)), "{name}: re-sync\n{again}");
    let mut dump = vec!["dump", "-o", "dump"];
    for tag in select_tags {
        dump.extend(["--select-tag", tag]);
    }
    deck.ok(&dump).await;
    let out = deck.ok(&["sync", "dump.yaml"]).await;
    assert_eq!(
        (lines(&out), summary(&out)),
        (vec![], (0, 0, 0)),
        "{name}: sync of the dump\n{out}\n{}",
        deck.read("dump.yaml")
    );
    (synced, sync_err)
}

#[tokio::test]
async fn transform_false_and_top_level_credentials_round_trip() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = fixture("load", "kong-export-transform-false.yaml");
    round_trip(&deck, "export.yaml", &text, &[]).await;
    // `_transform: false`: the key is stored as the file gives it (key-auth keys are never transformed).
    let (_, keys) = node.admin(Method::GET, "/consumers/billing-batch/key-auth", None).await;
    assert_eq!(keys["data"][0]["key"], "batch-key-7f3a9c", "{keys}");
    assert_eq!(keys["data"][0]["id"], "7c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e");
    let (_, acls) = node.admin(Method::GET, "/consumers/billing-batch/acls", None).await;
    assert_eq!(acls["data"][0]["group"], "billing", "{acls}");
    let (status, plugin) = node.admin(Method::GET, "/plugins/4f0a2b7c-1d3e-4f5a-8b6c-7d8e9f0a1b2c", None).await;
    assert_eq!(status, StatusCode::OK, "the file's ids are kept");
    assert_eq!(plugin["config"]["hide_credentials"], true);
    node.stop().await;
}

#[tokio::test]
async fn jwt_secrets_nested_and_top_level_round_trip() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = fixture("load", "jwt-mobile-api.yaml");
    round_trip(&deck, "jwt.yaml", &text, &[]).await;
    let (_, android) = node.admin(Method::GET, "/jwts/android-app-issuer", None).await;
    assert_eq!((&android["secret"], &android["algorithm"]), (&json!("android-app-hmac-secret-0002"), &json!("HS256")));
    let (_, partner) = node.admin(Method::GET, "/consumers/partner-portal/jwt", None).await;
    assert_eq!(partner["data"][0]["algorithm"], "RS256", "{partner}");
    node.stop().await;
}

#[tokio::test]
async fn basicauth_credentials_plaintext_round_trip() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = fixture("load", "basic-auth-internal-tools.yaml");
    round_trip(&deck, "basic.yaml", &text, &[]).await;
    let (_, ops) = node.admin(Method::GET, "/basic-auths/ops", None).await;
    let consumer = ops["consumer"]["id"].as_str().unwrap();
    let expected = gatehouse_model::gateway::plugins::basic_auth::kong_hash(consumer, "correct-horse-battery-staple");
    assert_eq!(ops["password"], expected, "stored as Kong hashes it");
    assert!(deck.read("dump.yaml").contains("_transform: false"));
    node.stop().await;
}

#[tokio::test]
async fn workspace_is_ignored_with_a_notice() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = fixture("load", "workspace-team-payments.yaml");
    let (_, err) = round_trip(&deck, "payments.yaml", &text, &["payments"]).await;
    assert!(err.contains("_workspace 'team-payments' is ignored: Gatehouse has no workspaces"), "{err}");
    let (_, service) = node.admin(Method::GET, "/services/payments-api", None).await;
    assert_eq!((&service["retries"], &service["tags"]), (&json!(3), &json!(["payments"])), "{service}");
    let (code, _, err) =
        deck.run(&["sync", &deck.write("bad.yaml", "_format_version: \"3.0\"\n_workspace: [a]\n")]).await;
    assert_eq!(code, 1);
    assert!(err.contains("bad.yaml:2:13: _workspace: expected a string"), "{err}");
    node.stop().await;
}

#[tokio::test]
async fn plugin_configs_are_shared_and_dump_resolved() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = fixture("load", "plugin-configs-shared-limits.yaml");
    round_trip(&deck, "shared.yaml", &text, &[]).await;
    let (_, list) = node.admin(Method::GET, "/plugins", None).await;
    let mut limits: Vec<(Value, Value, Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "rate-limiting")
        .map(|p| (p["config"]["minute"].clone(), p["config"]["hour"].clone(), p["config"]["limit_by"].clone()))
        .collect();
    limits.sort_by_key(|l| l.0.as_i64());
    assert_eq!(limits, vec![(json!(10), json!(1000), json!("consumer")), (json!(60), json!(1000), json!("consumer"))]);
    // The dump has the resolved configurations and no `_plugin_configs`; the original file still syncs clean.
    assert!(!deck.read("dump.yaml").contains("_config"));
    // A change in the shared configuration reaches every plugin that uses it.
    let changed = deck.write("changed.yaml", &text.replace("    hour: 1000\n", "    hour: 2000\n"));
    let out = deck.ok(&["sync", &changed]).await;
    assert_eq!(summary(&out), (0, 2, 0), "{out}");
    node.stop().await;
}

#[tokio::test]
async fn info_defaults_fill_services_routes_and_upstreams() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = fixture("load", "info-defaults.yaml");
    round_trip(&deck, "defaults.yaml", &text, &[]).await;
    let (_, inventory) = node.admin(Method::GET, "/services/inventory", None).await;
    assert_eq!((&inventory["read_timeout"], &inventory["retries"]), (&json!(15000), &json!(2)), "{inventory}");
    let (_, reports) = node.admin(Method::GET, "/services/reports", None).await;
    assert_eq!(reports["read_timeout"], 120000, "the service's own value wins");
    let (_, route) = node.admin(Method::GET, "/routes/inventory-items", None).await;
    assert_eq!((&route["strip_path"], &route["protocols"]), (&json!(false), &json!(["https"])), "{route}");
    let (_, upstream) = node.admin(Method::GET, "/upstreams/inventory.internal", None).await;
    assert_eq!(upstream["slots"], 1000);
    node.stop().await;
}

#[tokio::test]
async fn regex_paths_as_kong_reads_them_round_trip() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = fixture("load", "regex-paths-kong-style.yaml");
    round_trip(&deck, "regex.yaml", &text, &[]).await;
    let (_, route) = node.admin(Method::GET, "/routes/deposit-blocks", None).await;
    assert_eq!(route["paths"], json!(["~/api/deposits/{depositAccountId}/blocks/(?<blockId>\\w+)$"]));
    node.stop().await;
}

/// A Kong 2.x file: the gateway commands refuse it with decK's message and the command to run; offline
/// validation reads it as Kong's DB-less loader does; `file convert` (also as `deck file convert`) writes the 3.x
/// file, which syncs, routes its regex paths, and dumps back without changes.
#[tokio::test]
async fn kong_2x_files_are_refused_then_converted() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let (upstream, seen) = recording_upstream().await;
    let text = fixture("convert", "kong-2x-regex-paths.yaml")
        .replace("http://users.internal:8080", &upstream)
        .replace("http://orders.internal:8080", &upstream);
    let old = deck.write("old.yaml", &text);
    for cmd in ["sync", "diff", "apply", "validate"] {
        let (code, _, err) = deck.run(&[cmd, &old]).await;
        assert_eq!(code, 1, "{cmd}");
        assert!(err.contains("cannot apply '1.1' config format version to Kong version 3.0 or above"), "{cmd}: {err}");
        assert!(
            err.contains("gatehouse file convert --from kong-gateway-2.x --to kong-gateway-3.x --input-file old.yaml"),
            "{cmd}: {err}"
        );
    }
    let (code, _, err) = deck.run(&["file", "validate", &old]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Notice: old.yaml: format '1.1' was read as Kong's DB-less loader reads it"), "{err}");
    assert!(err.contains("user-by-id, order-items"), "{err}");

    let (code, _, err) = deck
        .run(&[
            "file",
            "convert",
            "--from",
            "kong-gateway-2.x",
            "--to",
            "kong-gateway-3.x",
            "--input-file",
            &old,
            "--output-file",
            "new.yaml",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 unsupported routes' paths format") && err.contains("migrated from '1.1' to '3.0'"),
        "{err}"
    );
    let converted = deck.read("new.yaml");
    assert!(converted.starts_with("_format_version: \"3.0\""), "{converted}");
    assert!(converted.contains("~/users/\\d+$") && converted.contains("~/orders/(?<order>\\d+)/items"), "{converted}");
    assert!(converted.contains("- /users\n"), "plain paths stay as they are:\n{converted}");

    // Under decK's own name, to standard output; an unknown pair of formats is refused.
    let link = deck.dir.path().join("deck");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let args =
        ["file", "convert", "--from", "kong-gateway-2.x", "--to", "kong-gateway-3.x", "--input-file", "old.yaml"];
    let (code, out, err) = run_with_input(&link, &args, &[], deck.dir.path(), None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim_end(), converted.trim_end(), "the same conversion");
    let args = ["file", "convert", "--from", "kong-gateway", "--to", "konnect", "--input-file", "old.yaml"];
    let (code, _, err) = run_with_input(&link, &args, &[], deck.dir.path(), None).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot convert from 'kong-gateway' to 'konnect' format"), "{err}");

    let out = deck.ok(&["sync", "new.yaml"]).await;
    assert_eq!(summary(&out), (6, 0, 0), "{out}");
    node.wait_config().await;
    let client = reqwest::Client::new();
    for (path, status) in [("/users/42", 200), ("/users/42/x", 200), ("/orders/7/items", 200), ("/orders/x/items", 404)]
    {
        let res = client.get(format!("{}{path}", node.proxy_url())).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
    }
    let uris: Vec<String> = seen.lock().unwrap().iter().map(|s| s.uri.clone()).collect();
    assert!(uris.contains(&"/users/42".to_owned()) && uris.contains(&"/orders/7/items".to_owned()), "{uris:?}");
    deck.ok(&["dump", "-o", "dump"]).await;
    let out = deck.ok(&["sync", "dump.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 0), "{out}");
    let out = deck.ok(&["sync", "new.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 0), "{out}");
    node.stop().await;
}

/// Kong's logging plugins (`http-log` with its sealed headers and queue, `file-log`, `tcp-log`, `udp-log`,
/// `syslog`) round-trip with Kong's defaults filled in.
#[tokio::test]
async fn logging_plugins_round_trip() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = fixture("load", "logging-plugins.yaml");
    round_trip(&deck, "logging.yaml", &text, &[]).await;
    let (_, plugins) = node.admin(Method::GET, "/plugins", None).await;
    let names: Vec<&str> = plugins["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in ["http-log", "file-log", "tcp-log", "udp-log", "syslog"] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    let dump = deck.read("dump.yaml");
    assert!(dump.contains("collector-key-123"), "the header comes back in clear, as Kong's dump has it:\n{dump}");
    node.stop().await;
}

/// Every unsupported feature of a file is listed at once, the first named on the first line; nothing is sent.
#[tokio::test]
async fn unsupported_features_are_listed_together() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let file = deck.write("kong.yaml", &fixture("refused", "many-unsupported-features.yaml"));
    for args in [vec!["validate", &file], vec!["file", "validate", &file], vec!["sync", &file]] {
        let (code, _, err) = deck.run(&args).await;
        assert_eq!(code, 1, "{args:?}");
        assert!(err.starts_with("Error: kong.yaml:4:3: entity 'vaults' is not supported by Gatehouse\n"), "{err}");
        for listed in [
            "  - entity 'vaults': kong.yaml:4:3",
            "  - entity 'consumer_groups': kong.yaml:",
            "  - consumer group membership (a consumer's 'groups'): kong.yaml:",
            "  - vault references ({vault://…}): kong.yaml:",
            "  - plugin 'datadog': kong.yaml:",
        ] {
            assert!(err.contains(listed), "{args:?}: {listed}\n{err}");
        }
        assert!(!err.contains("key-auth") && !err.contains("rate-limiting"), "supported plugins are not listed: {err}");
    }
    let (_, services) = node.admin(Method::GET, "/services", None).await;
    assert_eq!(services["data"], json!([]), "nothing was sent");
    node.stop().await;
}
