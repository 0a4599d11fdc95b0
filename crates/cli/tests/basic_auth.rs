//! The `basic-auth` plugin and Kong's `basicauth_credentials` through a real node: credentials on the Admin API
//! (`/basic-auths`, `/consumers/{c}/basic-auth`; passwords hashed as Kong hashes them, sealed at rest, never
//! returned in clear), requests over loopback to the proxy and its echo upstream (`Authorization`,
//! `Proxy-Authorization`, `hide_credentials`, `realm`, `anonymous`, Kong's 401), and decK syncing the same
//! credentials from a `_transform: true` file (plaintext) and a `_transform: false` one (Kong's hashes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde_json::json;

use common::auth::{contains, database_bytes, send};
use common::deck::{Deck, lines, summary};
use gatehouse_model::gateway::plugins::basic_auth::kong_hash;
use gatehouse_testkit::TestNode;

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn get(node: &TestNode) -> reqwest::RequestBuilder {
    reqwest::Client::new().get(format!("{}/anything", node.proxy_url()))
}

#[tokio::test]
async fn credentials_are_hashed_as_kong_hashes_them_and_authenticate() {
    let node = TestNode::start().await;
    node.example_service().await;
    let bob = node.admin_ok(Method::POST, "/consumers", json!({"username": "bob", "custom_id": "bob-cid"})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "guest"})).await;
    let bob_id = bob["id"].as_str().unwrap().to_owned();

    // Kong's answer: the stored hash, never the password.
    let created = node
        .admin_ok(Method::POST, "/consumers/bob/basic-auth", json!({"username": "bob-user", "password": "open sesame"}))
        .await;
    assert_eq!(created["password"], kong_hash(&bob_id, "open sesame"));
    let mut fields: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["consumer", "created_at", "id", "password", "tags", "username"]);
    let (status, dup) = node
        .admin(
            Method::POST,
            "/basic-auths",
            Some(json!({"consumer": {"id": bob_id}, "username": "bob-user", "password": "x"})),
        )
        .await;
    assert_eq!(
        (status, &dup["message"]),
        (StatusCode::CONFLICT, &json!("UNIQUE violation detected on '{username=\"bob-user\"}'"))
    );
    let (status, e) = node.admin(Method::POST, "/consumers/bob/basic-auth", Some(json!({"username": "u"}))).await;
    assert_eq!((status, &e["fields"]), (StatusCode::BAD_REQUEST, &json!({"password": "required field missing"})));
    // Gatehouse's `_transform: false` (what decK sends for Kong-hashed files): the hash is kept as given.
    let given = kong_hash(&bob_id, "second");
    let second = node
        .admin_ok(
            Method::POST,
            "/consumers/bob/basic-auth",
            json!({"username": "bob-2", "password": given, "_transform": false}),
        )
        .await;
    assert_eq!(second["password"], given);
    let (status, e) = node
        .admin(
            Method::POST,
            "/consumers/bob/basic-auth",
            Some(json!({"username": "bob-3", "password": "plain", "_transform": false})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(node.admin(Method::GET, "/basic-auths/bob-user/consumer", None).await.1["username"], "bob");
    // A PATCH that does not name the password keeps it.
    let patched = node.admin_ok(Method::PATCH, "/basic-auths/bob-user", json!({"tags": ["ci"]})).await;
    assert_eq!(patched["password"], created["password"]);
    // Neither the password nor Kong's hash of it is in the database file.
    let bytes = database_bytes(&node);
    assert!(!contains(&bytes, "open sesame") && !contains(&bytes, created["password"].as_str().unwrap()));

    let plugin =
        node.admin_ok(Method::POST, "/routes/example-route/plugins", json!({"name": "basic-auth", "config": {}})).await;
    node.wait_config().await;
    let (status, _, echo) = send(get(&node).header("authorization", basic("bob-user", "open sesame"))).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let headers = &echo["headers"];
    assert_eq!((&headers["x-consumer-username"], &headers["x-consumer-custom-id"]), (&json!("bob"), &json!("bob-cid")));
    assert_eq!(headers["x-credential-identifier"], "bob-user", "Kong sends the credential's username");
    assert!(headers["authorization"].is_string(), "hide_credentials is off");
    let (status, _, _) = send(get(&node).header("authorization", basic("bob-2", "second"))).await;
    assert_eq!(status, StatusCode::OK, "a Kong-hashed password verifies");
    // `Proxy-Authorization` is a hop-by-hop header the proxy removes before plugins run (docs/compatibility.md).
    let (status, _, _) = send(get(&node).header("proxy-authorization", basic("bob-2", "second"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Kong's 401: one message for every failure, the realm in the challenge.
    for request in [
        get(&node),
        get(&node).header("authorization", basic("bob-user", "wrong")),
        get(&node).header("authorization", basic("nobody", "open sesame")),
        get(&node).header("authorization", "Bearer abc"),
        get(&node).header("authorization", format!("Basic {}", STANDARD.encode("no-colon"))),
    ] {
        let (status, challenge, body) = send(request).await;
        assert_eq!(
            (status, challenge.as_deref(), body["message"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("Basic realm=\"service\""), Some("Unauthorized"))
        );
        assert!(body["request_id"].is_string(), "{body}");
    }

    // `hide_credentials`, `realm` and `anonymous`.
    node.admin_ok(
        Method::PATCH,
        &format!("/plugins/{}", plugin["id"].as_str().unwrap()),
        json!({"config": {"hide_credentials": true, "realm": "gatehouse", "anonymous": "guest"}}),
    )
    .await;
    node.wait_config().await;
    let (status, _, echo) = send(get(&node).header("authorization", basic("bob-user", "open sesame"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    let (status, _, echo) = send(
        get(&node).header("authorization", basic("bob-user", "wrong")).header("x-credential-identifier", "spoofed"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&echo["headers"]["x-consumer-username"], &echo["headers"]["x-anonymous-consumer"]),
        (&json!("guest"), &json!("true"))
    );
    assert!(echo["headers"].get("x-credential-identifier").is_none());

    // A consumer's credentials go with it.
    node.admin(Method::DELETE, "/consumers/bob", None).await;
    assert_eq!(node.admin(Method::GET, "/basic-auths", None).await.1["data"], json!([]));
    node.stop().await;
}

const FILE: &str = r#"_format_version: "3.0"
services:
- name: example-service
  url: UPSTREAM/anything
  routes:
  - name: example-route
    paths: [/anything]
    plugins:
    - name: basic-auth
      config:
        hide_credentials: true
consumers:
- username: alice
  basicauth_credentials:
  - username: alice-user
    password: alice-password
- username: carol
basicauth_credentials:
- consumer: carol
  username: carol-user
  password: carol-password
"#;

#[tokio::test]
async fn deck_syncs_plaintext_and_kong_hashed_passwords_and_dumps_hashes() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let text = FILE.replace("UPSTREAM", &node.echo_url());
    let file = deck.write("kong.yaml", &text);
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (7, 0, 0), "{out}");
    assert!(!out.contains("alice-password"), "{out}");
    let again = deck.ok(&["sync", &file]).await;
    assert_eq!((lines(&again), summary(&again)), (vec![], (0, 0, 0)), "a plaintext file re-syncs unchanged:\n{again}");
    node.wait_config().await;
    let (status, _, _) = send(get(&node).header("authorization", basic("carol-user", "carol-password"))).await;
    assert_eq!(status, StatusCode::OK);

    // The dump carries Kong's hashes and says so (`_transform: false`); it re-syncs unchanged, and authenticates.
    deck.ok(&["dump", "-o", "dump"]).await;
    let dump = deck.read("dump.yaml");
    assert!(dump.contains("_transform: false") && !dump.contains("alice-password"), "{dump}");
    let out = deck.ok(&["sync", "dump.yaml"]).await;
    assert_eq!((lines(&out), summary(&out)), (vec![], (0, 0, 0)), "{out}");

    // A changed password is an update (the file's password hashed and compared with the stored hash).
    let changed = deck.write("changed.yaml", &text.replace("alice-password", "rotated"));
    let out = deck.ok(&["sync", &changed]).await;
    assert_eq!(summary(&out), (0, 1, 0), "{out}");
    node.wait_config().await;
    let (status, _, _) = send(get(&node).header("authorization", basic("alice-user", "rotated"))).await;
    assert_eq!(status, StatusCode::OK);

    // A Kong export (`_transform: false`) carries hashes: they are stored as they are and verify.
    deck.ok(&["sync", "dump.yaml"]).await;
    node.wait_config().await;
    let (status, _, _) = send(get(&node).header("authorization", basic("alice-user", "alice-password"))).await;
    assert_eq!(status, StatusCode::OK);
    node.stop().await;
}
