//! decK and `keyauth_credentials`: nested under their consumer in a state file, synced through the Admin API
//! (which seals the keys), dumped back with their keys and ids, and a dump that syncs without changes. The keys
//! decK synced authenticate through the proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::deck::{Deck, lines, summary};
use gatehouse_testkit::TestNode;

/// The state file; `UPSTREAM` becomes the node's echo upstream.
const FILE: &str = r#"_format_version: "3.0"
services:
- name: example-service
  url: UPSTREAM/anything
  routes:
  - name: example-route
    paths: [/anything]
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-key-1
  - key: alice-key-2
    tags: [ci]
plugins:
- name: key-auth
"#;

async fn keys_of(node: &TestNode, consumer: &str) -> Vec<(String, Value)> {
    let (_, list) = node.admin(Method::GET, &format!("/consumers/{consumer}/key-auth"), None).await;
    let mut out: Vec<(String, Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap().to_owned(), k["tags"].clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn keyauth_credentials_sync_dump_round_trip() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = FILE.replace("UPSTREAM", &node.echo_url());
    let file = deck.write("kong.yaml", &text);
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (6, 0, 0), "{out}");
    assert_eq!(
        keys_of(&node, "alice").await,
        [("alice-key-1".into(), Value::Null), ("alice-key-2".into(), json!(["ci"]))]
    );
    node.wait_config().await;
    let res = reqwest::Client::new()
        .get(format!("{}/anything", node.proxy_url()))
        .header("apikey", "alice-key-2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // The dump nests them under alice, with their ids (decK's way for credentials) and keys in clear.
    let (code, json_dump, err) = deck.run(&["dump", "-o", "-", "--format", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let json_dump: Value = serde_json::from_str(&json_dump).unwrap_or_else(|e| panic!("{e}: {json_dump}"));
    let consumer = &json_dump["consumers"][0];
    assert_eq!(consumer["username"], "alice");
    let dumped = consumer["keyauth_credentials"].as_array().unwrap();
    assert_eq!(dumped.len(), 2, "{consumer}");
    let mut dumped_keys: Vec<&str> = dumped.iter().map(|k| k["key"].as_str().unwrap()).collect();
    dumped_keys.sort_unstable();
    assert_eq!(dumped_keys, ["alice-key-1", "alice-key-2"], "ordered by id, as other unnamed entities are");
    assert!(dumped.iter().all(|k| k["id"].is_string() && k.get("consumer").is_none() && k.get("created_at").is_none()));
    deck.ok(&["dump", "-o", "dump"]).await;
    let out = deck.ok(&["sync", "dump.yaml"]).await;
    assert_eq!((lines(&out), summary(&out)), (vec![], (0, 0, 0)), "a dump syncs without changes:\n{out}");

    // A key replaced in the file: the old credential goes, a new one comes.
    let changed = deck.write("changed.yaml", &text.replace("alice-key-1", "alice-key-3"));
    let out = deck.ok(&["sync", &changed]).await;
    assert_eq!(summary(&out), (1, 0, 1), "{out}");
    assert_eq!(
        keys_of(&node, "alice").await,
        [("alice-key-2".into(), json!(["ci"])), ("alice-key-3".into(), Value::Null)]
    );
    node.stop().await;
}
