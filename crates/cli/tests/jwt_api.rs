//! Kong's `jwt_secrets` on the Admin API (`/jwts`, `/consumers/{c}/jwt`): generated keys and secrets, reads by key
//! or id, Kong's 409 on a key, the reverse lookup of the consumer, PATCH keeping the secret, the cascade from a
//! consumer, and the database file never holding a secret in clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::{Method, StatusCode};
use serde_json::json;

use common::auth::{contains, database_bytes};
use gatehouse_testkit::TestNode;

#[tokio::test]
async fn jwt_secrets_under_a_consumer_and_at_the_top_level() {
    let node = TestNode::start().await;
    let bob = node.admin_ok(Method::POST, "/consumers", json!({"username": "bob"})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "alice"})).await;
    let bob_id = bob["id"].as_str().unwrap();

    // Kong's `auto = true` key and secret, shown in the answer.
    let (status, generated) = node.admin(Method::POST, "/consumers/bob/jwt", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{generated}");
    let mut fields: Vec<&str> = generated.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["algorithm", "consumer", "created_at", "id", "key", "rsa_public_key", "secret", "tags"]);
    for field in ["key", "secret"] {
        let value = generated[field].as_str().unwrap();
        assert!(value.len() == 32 && value.bytes().all(|b| b.is_ascii_alphanumeric()), "{field}: {value}");
    }
    assert_eq!((&generated["algorithm"], &generated["consumer"]), (&json!("HS256"), &json!({"id": bob_id})));

    let chosen = node
        .admin_ok(Method::POST, "/consumers/bob/jwt", json!({"key": "bob-issuer", "secret": "bob-very-secret-hmac"}))
        .await;
    let chosen_id = chosen["id"].as_str().unwrap().to_owned();
    let (status, dup) = node.admin(Method::POST, "/consumers/alice/jwt", Some(json!({"key": "bob-issuer"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(dup["message"], "UNIQUE violation detected on '{key=\"bob-issuer\"}'");
    let (status, e) = node.admin(Method::POST, "/jwts", Some(json!({"key": "k"}))).await;
    assert_eq!((status, e["fields"].clone()), (StatusCode::BAD_REQUEST, json!({"consumer": "required field missing"})));

    // Reads by key or id, the secret in clear as Kong returns it.
    let read = node.admin(Method::GET, "/jwts/bob-issuer", None).await.1;
    assert_eq!((&read["id"], &read["secret"]), (&json!(chosen_id), &json!("bob-very-secret-hmac")));
    assert_eq!(node.admin(Method::GET, &format!("/consumers/bob/jwt/{chosen_id}"), None).await.1["key"], "bob-issuer");
    assert_eq!(node.admin(Method::GET, "/consumers/alice/jwt/bob-issuer", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::GET, "/jwts/bob-issuer/consumer", None).await.1["username"], "bob");
    let (_, list) = node.admin(Method::GET, "/consumers/bob/jwt", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(node.admin(Method::GET, "/jwts", None).await.1["data"].as_array().unwrap().len(), 2);

    // A PATCH keeps the secret it does not name.
    let patched = node.admin_ok(Method::PATCH, "/jwts/bob-issuer", json!({"tags": ["ci"]})).await;
    assert_eq!((&patched["secret"], &patched["tags"]), (&json!("bob-very-secret-hmac"), &json!(["ci"])));

    // Sealed at rest: neither secret is in the database file; the key (an identifier) is.
    let bytes = database_bytes(&node);
    assert!(!contains(&bytes, "bob-very-secret-hmac"));
    assert!(!contains(&bytes, generated["secret"].as_str().unwrap()));
    assert!(contains(&bytes, "bob-issuer"));

    // A consumer's credentials go with it.
    node.admin(Method::DELETE, "/consumers/bob", None).await;
    assert_eq!(node.admin(Method::GET, "/jwts/bob-issuer", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::GET, "/jwts", None).await.1["data"], json!([]));
    node.stop().await;
}
