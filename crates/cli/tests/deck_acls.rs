//! decK and the `acls` entity: `acls:` nested under a consumer in a state file, as decK writes them; diff and
//! sync create, update and delete them; `gateway dump` writes them back under their consumer; `file validate`
//! names the place of a bad one. Against a real node, with the binary as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::Method;
use serde_json::{Value, json};

use common::deck::{Deck, lines, summary};
use gatehouse_testkit::TestNode;

/// A consumer's acls as the Admin API lists them: (group, tags), sorted.
async fn acls_of(node: &TestNode, consumer: &str) -> Vec<(String, Value)> {
    let (_, list) = node.admin(Method::GET, &format!("/consumers/{consumer}/acls"), None).await;
    let mut out: Vec<(String, Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["group"].as_str().unwrap().to_owned(), a["tags"].clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

const FILE: &str = r#"_format_version: "3.0"
consumers:
- username: alice
  acls:
  - group: admins
  - group: users
    tags: [staff]
- username: bob
  acls:
  - group: users
plugins:
- name: acl
  config:
    allow: [admins]
    hide_groups_header: true
"#;

#[tokio::test]
async fn acls_sync_diff_and_dump_round_trip() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let file = deck.write("kong.yaml", FILE);
    let (code, _, err) = deck.run(&["file", "validate", &file]).await;
    assert_eq!(code, 0, "{err}");

    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(
        lines(&out),
        [
            "creating consumer alice",
            "creating consumer bob",
            "creating acl-group admins for consumer alice",
            "creating acl-group users for consumer alice",
            "creating acl-group users for consumer bob",
            "creating plugin acl (global)",
        ],
        "{out}"
    );
    assert_eq!(summary(&out), (6, 0, 0));
    assert_eq!(acls_of(&node, "alice").await, [("admins".into(), Value::Null), ("users".into(), json!(["staff"]))]);
    assert_eq!(acls_of(&node, "bob").await, [("users".into(), Value::Null)]);

    // The dump nests them under their consumer, without ids or the consumer, and syncs back unchanged.
    deck.ok(&["dump", "-o", "dump"]).await;
    let dumped = deck.read("dump.yaml");
    assert!(!dumped.contains("created_at") && !dumped.contains("id:"), "{dumped}");
    let (code, json_dump, err) = deck.run(&["dump", "-o", "-", "--format", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let json_dump: Value = serde_json::from_str(&json_dump).unwrap_or_else(|e| panic!("{e}: {json_dump}"));
    assert_eq!(
        json_dump["consumers"],
        json!([
            {"username": "alice", "acls": [{"group": "admins"}, {"group": "users", "tags": ["staff"]}]},
            {"username": "bob", "acls": [{"group": "users"}]},
        ])
    );
    assert_eq!(
        json_dump["plugins"][0]["config"],
        json!({"allow": ["admins"], "deny": null, "hide_groups_header": true, "always_use_authenticated_groups": false}),
        "every field, as decK writes Kong's (nulls included)"
    );
    let out = deck.ok(&["sync", "dump.yaml"]).await;
    assert_eq!((lines(&out), summary(&out)), (vec![], (0, 0, 0)), "a dump syncs without changes:\n{out}");

    // Changes: alice leaves `users`, bob joins `admins`, alice's `admins` gets a tag.
    let changed = FILE
        .replace("  - group: admins\n  - group: users\n    tags: [staff]\n", "  - group: admins\n    tags: [ops]\n")
        .replace(
            "- username: bob\n  acls:\n  - group: users\n",
            "- username: bob\n  acls:\n  - group: users\n  - group: admins\n",
        );
    let changed_file = deck.write("changed.yaml", &changed);
    let (code, out, err) = deck.run(&["diff", "--non-zero-exit-code", &changed_file]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        lines(&out),
        [
            "updating acl-group admins for consumer alice  {",
            "creating acl-group admins for consumer bob",
            "deleting acl-group users for consumer alice",
        ],
        "{out}"
    );
    assert_eq!(acls_of(&node, "bob").await.len(), 1, "diff changes nothing");
    let out = deck.ok(&["sync", &changed_file]).await;
    assert_eq!(summary(&out), (1, 1, 1), "{out}");
    assert_eq!(acls_of(&node, "alice").await, [("admins".into(), json!(["ops"]))]);
    assert_eq!(acls_of(&node, "bob").await, [("admins".into(), Value::Null), ("users".into(), Value::Null)]);

    // A consumer that leaves the file takes its acls along; they are deleted first.
    let without_bob = changed.replace("- username: bob\n  acls:\n  - group: users\n  - group: admins\n", "");
    let out = deck.ok(&["sync", &deck.write("without-bob.yaml", &without_bob)]).await;
    // Deletes of one stage print in the server's order (by id); the stages' order is what matters.
    let mut deletes = lines(&out);
    deletes[..2].sort_unstable();
    assert_eq!(
        deletes,
        [
            "deleting acl-group admins for consumer bob",
            "deleting acl-group users for consumer bob",
            "deleting consumer bob",
        ],
        "{out}"
    );
    let (_, all) = node.admin(Method::GET, "/acls", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn bad_acls_are_refused_with_their_place_before_anything_is_sent() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    for (text, expect) in [
        (
            "_format_version: \"3.0\"\nconsumers:\n- username: a\n  acls:\n  - tags: [x]\n",
            "bad.yaml:5:5: acl-group group: required field missing",
        ),
        ("_format_version: \"3.0\"\nconsumers:\n- username: a\n  acls:\n  - group: g\n  - group: g\n", "appears twice"),
        ("_format_version: \"3.0\"\nconsumers:\n- username: a\n  acls: nope\n", "acls: expected a list"),
        (
            "_format_version: \"3.0\"\nplugins:\n- name: acl\n  config: {}\n",
            "bad.yaml:3:3: plugin @entity: at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        ),
    ] {
        let file = deck.write("bad.yaml", text);
        for cmd in [&["file", "validate", &file][..], &["sync", &file][..]] {
            let (code, out, err) = deck.run(cmd).await;
            assert_eq!(code, 1, "{cmd:?} {text}: {out}");
            assert!(err.contains(expect), "{cmd:?} {text}\n{err}");
        }
    }
    let (_, consumers) = node.admin(Method::GET, "/consumers", None).await;
    assert_eq!(consumers["data"], json!([]), "nothing was sent");
    node.stop().await;
}

/// Konnect mode goes through `/v2/control-planes/{id}/core-entities/acls`: the same sync and dump.
#[tokio::test]
async fn acls_in_konnect_mode() {
    let node = TestNode::start().await;
    let deck = Deck::konnect(&node);
    let out = deck.ok(&["sync", &deck.write("kong.yaml", FILE)]).await;
    assert_eq!(summary(&out), (6, 0, 0), "{out}");
    assert_eq!(acls_of(&node, "bob").await, [("users".into(), Value::Null)]);
    let (code, dumped, err) = deck.run(&["dump", "-o", "-", "--format", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let dumped: Value = serde_json::from_str(&dumped).unwrap();
    assert_eq!(dumped["consumers"][1], json!({"username": "bob", "acls": [{"group": "users"}]}));
    let out = deck.ok(&["sync", &deck.write("kong.yaml", FILE)]).await;
    assert_eq!(summary(&out), (0, 0, 0), "{out}");
    node.stop().await;
}
