//! decK and Kong's certificates (issue 19, item 5): `certificates:` with nested `snis:` and `ca_certificates:` in
//! a state file; sync creates them, a second sync and diff find nothing to do, `gateway dump` writes them back
//! (keys included, as decK dumps them) and syncs back unchanged; an SNI moved in the file moves on the server;
//! the proxy serves what was synced. Against a real node, with the binary as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::Method;
use serde_json::json;

use common::deck::{Deck, summary};
use common::tls::{TestCa, connect, presented};
use gatehouse_testkit::TestNode;

/// A YAML block scalar of `text`, indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!("|\n{}", text.lines().map(|l| format!("{pad}{l}\n")).collect::<String>())
}

#[tokio::test]
async fn certificates_with_snis_and_ca_certificates_sync_diff_and_dump_round_trip() {
    let node = TestNode::builder()
        .configure(|c| c.proxy.listen_tls = Some("127.0.0.1:0".parse().unwrap()))
        .start()
        .await
        .unwrap();
    let ca = TestCa::new();
    let (a, b) = (ca.leaf(&["a.example.com"]), ca.leaf(&["b.example.com", "c.example.com"]));
    let file_text = |b_snis: &str| {
        format!(
            "_format_version: \"3.0\"\ncertificates:\n- cert: {}  key: {}  tags: [edge]\n  snis:\n  - name: a.example.com\n- cert: {}  key: {}  snis:\n{b_snis}ca_certificates:\n- cert: {}",
            block(&a.cert, 4),
            block(&a.key, 4),
            block(&b.cert, 4),
            block(&b.key, 4),
            block(&ca.pem, 4),
        )
    };
    let deck = Deck::admin(&node);
    let file = deck.write("kong.yaml", &file_text("  - name: b.example.com\n"));
    let (code, _, err) = deck.run(&["file", "validate", &file]).await;
    assert_eq!(code, 0, "{err}");

    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (5, 0, 0), "two certificates, two SNIs, one CA certificate:\n{out}");
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (0, 0, 0), "nothing left to do:\n{out}");
    let out = deck.ok(&["diff", &file]).await;
    assert_eq!(summary(&out), (0, 0, 0), "{out}");

    node.wait_config().await;
    let tls = node.node.proxy_tls_addr.unwrap();
    assert_eq!(presented(&connect(ca.rustls(&[]), tls, "a.example.com").await.unwrap()), a.der);
    assert_eq!(presented(&connect(ca.rustls(&[]), tls, "b.example.com").await.unwrap()), b.der);

    // Dump, then sync the dump: the same state.
    deck.ok(&["dump", "-o", "dump.yaml"]).await;
    let dumped = deck.read("dump.yaml");
    assert!(dumped.contains("certificates:") && dumped.contains("ca_certificates:"), "{dumped}");
    assert!(dumped.contains("- name: a.example.com"), "SNIs nested under their certificate: {dumped}");
    assert!(!dumped.contains("cert_digest"), "{dumped}");
    let out = deck.ok(&["diff", "dump.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 0), "the dump syncs back unchanged:\n{out}");

    // The second certificate now serves c.example.com instead of b.example.com.
    let file = deck.write("kong.yaml", &file_text("  - name: c.example.com\n"));
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (1, 0, 1), "one SNI created, one deleted:\n{out}");
    let (_, snis) = node.admin(Method::GET, "/snis", None).await;
    let mut names: Vec<&str> = snis["data"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a.example.com", "c.example.com"]);

    // An empty file removes them all, SNIs first.
    let empty = deck.write("empty.yaml", "_format_version: \"3.0\"\n");
    let out = deck.ok(&["sync", &empty]).await;
    assert_eq!(summary(&out), (0, 0, 5), "{out}");
    let (_, certificates) = node.admin(Method::GET, "/certificates", None).await;
    assert_eq!(certificates["data"], json!([]));
}
