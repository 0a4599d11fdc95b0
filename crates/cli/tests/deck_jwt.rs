//! decK and `jwt_secrets`: nested under their consumer (decK's form) and at the top level naming their consumer
//! (Kong's DB-less form), synced through the Admin API (which seals the secrets), dumped back under their consumer,
//! and a dump that syncs without changes. Tokens signed with the synced secrets authenticate through the proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use gatehouse_model::Clock;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
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
    plugins:
    - name: jwt
      config:
        claims_to_verify: [exp]
        key_claim_name: iss
consumers:
- username: mobile-app
  jwt_secrets:
  - key: mobile-issuer
    algorithm: HS256
    secret: mobile-hmac-secret
    tags: [ci]
- username: partner
jwt_secrets:
- consumer: partner
  key: partner-issuer
  secret: partner-hmac-secret
"#;

async fn call(node: &TestNode, iss: &str, secret: &str) -> StatusCode {
    let exp = node.clock.as_ref().unwrap().now().secs() + 3600;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": iss, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    reqwest::Client::new()
        .get(format!("{}/anything", node.proxy_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn jwt_secrets_sync_dump_round_trip() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let deck = Deck::admin(&node);
    let text = FILE.replace("UPSTREAM", &node.echo_url());
    let file = deck.write("kong.yaml", &text);
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (7, 0, 0), "{out}");
    assert!(out.contains("creating jwt-auth mobile-issuer for consumer mobile-app"), "{out}");
    let (_, partner) = node.admin(Method::GET, "/jwts/partner-issuer", None).await;
    assert_eq!(partner["secret"], "partner-hmac-secret");
    node.wait_config().await;
    assert_eq!(call(&node, "mobile-issuer", "mobile-hmac-secret").await, StatusCode::OK);
    assert_eq!(call(&node, "partner-issuer", "partner-hmac-secret").await, StatusCode::OK);
    assert_eq!(call(&node, "partner-issuer", "mobile-hmac-secret").await, StatusCode::UNAUTHORIZED);

    // The dump nests both under their consumer, secrets in clear (as Kong's Admin API returns them).
    let (code, json_dump, err) = deck.run(&["dump", "-o", "-", "--format", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let json_dump: Value = serde_json::from_str(&json_dump).unwrap();
    let mobile = &json_dump["consumers"][0];
    assert_eq!(mobile["username"], "mobile-app");
    let dumped = &mobile["jwt_secrets"][0];
    assert_eq!(
        (&dumped["key"], &dumped["secret"], &dumped["algorithm"], &dumped["tags"]),
        (&json!("mobile-issuer"), &json!("mobile-hmac-secret"), &json!("HS256"), &json!(["ci"]))
    );
    assert!(dumped["id"].is_string() && dumped.get("consumer").is_none());
    assert_eq!(json_dump["consumers"][1]["jwt_secrets"][0]["key"], "partner-issuer");
    assert!(json_dump.get("jwt_secrets").is_none());
    deck.ok(&["dump", "-o", "dump"]).await;
    let out = deck.ok(&["sync", "dump.yaml"]).await;
    assert_eq!((lines(&out), summary(&out)), (vec![], (0, 0, 0)), "a dump syncs without changes:\n{out}");
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (0, 0, 0), "the original file, too:\n{out}");

    // A changed secret is an update of the credential.
    let changed = deck.write("changed.yaml", &text.replace("mobile-hmac-secret", "rotated-secret"));
    let out = deck.ok(&["sync", &changed]).await;
    assert_eq!(summary(&out), (0, 1, 0), "{out}");
    node.wait_config().await;
    assert_eq!(call(&node, "mobile-issuer", "rotated-secret").await, StatusCode::OK);
    node.stop().await;
}
