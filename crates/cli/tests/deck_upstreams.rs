//! decK and Kong's upstreams (issue 19, item 5): `upstreams:` with nested `targets:` in a state file; sync creates
//! them, a second sync and diff find nothing to do, `gateway dump` writes them back nested and syncs back
//! unchanged, a changed weight is an update, and the proxy balances over what was synced. Against a real node,
//! with the binary as a user runs it, in both Admin API and Konnect modes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::Method;
use serde_json::json;

use common::backends::Backend;
use common::deck::{Deck, summary};
use gatehouse_testkit::TestNode;

fn file(a: &str, b: &str, b_weight: u32) -> String {
    format!(
        "_format_version: \"3.0\"
upstreams:
- name: backend
  algorithm: round-robin
  tags: [edge]
  healthchecks:
    passive:
      unhealthy:
        tcp_failures: 3
  targets:
  - target: {a}
    weight: 100
  - target: {b}
    weight: {b_weight}
services:
- name: lb
  host: backend
  routes:
  - name: lb
    paths: [/lb]
"
    )
}

async fn round_trip(node: &TestNode, deck: &Deck) {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let path = deck.write("kong.yaml", &file(&a.target(), &b.target(), 100));
    let (code, _, err) = deck.run(&["file", "validate", &path]).await;
    assert_eq!(code, 0, "{err}");
    let out = deck.ok(&["sync", &path]).await;
    assert_eq!(summary(&out), (5, 0, 0), "an upstream, two targets, a service, a route:\n{out}");
    let out = deck.ok(&["sync", &path]).await;
    assert_eq!(summary(&out), (0, 0, 0), "nothing left to do:\n{out}");
    assert_eq!(summary(&deck.ok(&["diff", &path]).await), (0, 0, 0));

    node.wait_config().await;
    let client = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let r = client.get(format!("{}/lb", node.proxy_url())).send().await.unwrap();
        seen.insert(r.text().await.unwrap());
    }
    assert_eq!(seen.len(), 2, "both targets serve: {seen:?}");

    deck.ok(&["dump", "-o", "dump.yaml"]).await;
    let dumped = deck.read("dump.yaml");
    assert!(dumped.contains("upstreams:") && dumped.contains("targets:"), "{dumped}");
    assert!(!dumped.contains("\n- target:"), "targets nested under their upstream: {dumped}");
    assert_eq!(summary(&deck.ok(&["diff", "dump.yaml"]).await), (0, 0, 0), "the dump syncs back unchanged");

    // Weight 0 for b: an update of that target.
    let path = deck.write("kong.yaml", &file(&a.target(), &b.target(), 0));
    assert_eq!(summary(&deck.ok(&["sync", &path]).await), (0, 1, 0));
    // An empty file removes everything, targets with their upstream.
    let empty = deck.write("empty.yaml", "_format_version: \"3.0\"\n");
    assert_eq!(summary(&deck.ok(&["sync", &empty]).await), (0, 0, 5));
}

#[tokio::test]
async fn upstreams_with_targets_sync_diff_and_dump_round_trip() {
    let node = TestNode::start().await;
    round_trip(&node, &Deck::admin(&node)).await;
    let (_, upstreams) = node.admin(Method::GET, "/upstreams", None).await;
    assert_eq!(upstreams["data"], json!([]));
    node.stop().await;
}

#[tokio::test]
async fn konnect_mode_syncs_upstreams_too() {
    let node = TestNode::start().await;
    round_trip(&node, &Deck::konnect(&node)).await;
    node.stop().await;
}
