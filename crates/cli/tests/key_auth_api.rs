//! Kong's `keyauth_credentials` on the Admin API (`/key-auths`, `/consumers/{c}/key-auth`): every endpoint, Kong's
//! 400, 404 and 409 bodies, generated keys, the cascade from a consumer, the `key-auth` plugin's schema errors,
//! and the database file never holding a key in clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_store::StorageUrl;
use gatehouse_testkit::TestNode;

fn keys_of(list: &Value) -> Vec<String> {
    let mut k: Vec<String> =
        list["data"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap().to_owned()).collect();
    k.sort();
    k
}

/// Every byte SQLite has written for the node (the main file and its write-ahead log).
fn database_bytes(node: &TestNode) -> Vec<u8> {
    let StorageUrl::Sqlite(path) = &node.db.url else { panic!("a SQLite node") };
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(b) = std::fs::read(&file) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty(), "the database was read");
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn key_auths_under_a_consumer_by_key_or_id() {
    let node = TestNode::start().await;
    let bob = node.admin_ok(Method::POST, "/consumers", json!({"username": "bob"})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "alice"})).await;
    let bob_id = bob["id"].as_str().unwrap();

    // Kong's `auto = true` key: 32 alphanumeric characters, shown in the answer.
    let (status, generated) = node.admin(Method::POST, "/consumers/bob/key-auth", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{generated}");
    let mut fields: Vec<&str> = generated.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["consumer", "created_at", "id", "key", "tags"]);
    let generated_key = generated["key"].as_str().unwrap().to_owned();
    assert!(generated_key.len() == 32 && generated_key.bytes().all(|b| b.is_ascii_alphanumeric()), "{generated_key}");
    assert_eq!(generated["consumer"], json!({"id": bob_id}));

    let chosen = node.admin_ok(Method::POST, "/consumers/bob/key-auth", json!({"key": "bob-secret-key-1"})).await;
    assert_eq!(chosen["key"], "bob-secret-key-1");
    let chosen_id = chosen["id"].as_str().unwrap().to_owned();

    // Kong's 409 on the unique key, naming the key the client sent (not what the store compared).
    let (status, dup) =
        node.admin(Method::POST, "/consumers/alice/key-auth", Some(json!({"key": "bob-secret-key-1"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        dup,
        json!({"code": 5, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{key=\"bob-secret-key-1\"}'",
            "fields": {"key": "already exists with value 'bob-secret-key-1'"}})
    );

    // Kong's 400s: a key that is not a string; `ttl`, which Gatehouse does not support.
    let (status, e) = node.admin(Method::POST, "/consumers/bob/key-auth", Some(json!({"key": 1}))).await;
    assert_eq!((status, e["fields"].clone()), (StatusCode::BAD_REQUEST, json!({"key": "expected a string"})));
    assert_eq!(e["name"], "schema violation");
    let (status, e) = node.admin(Method::POST, "/key-auths", Some(json!({"key": "k"}))).await;
    assert_eq!((status, e["fields"].clone()), (StatusCode::BAD_REQUEST, json!({"consumer": "required field missing"})));
    let (status, _) = node.admin(Method::POST, "/consumers/bob/key-auth", Some(json!({"ttl": 60}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Reads by key or id, at the top level and only under the consumer that has it.
    assert_eq!(node.admin(Method::GET, "/key-auths/bob-secret-key-1", None).await.1["id"], chosen_id.as_str());
    assert_eq!(node.admin(Method::GET, &format!("/key-auths/{chosen_id}"), None).await.1["key"], "bob-secret-key-1");
    assert_eq!(node.admin(Method::GET, "/consumers/bob/key-auth/bob-secret-key-1", None).await.0, StatusCode::OK);
    let (status, missing) = node.admin(Method::GET, "/consumers/alice/key-auth/bob-secret-key-1", None).await;
    assert_eq!((status, missing), (StatusCode::NOT_FOUND, json!({"message": "Not found"})));
    assert_eq!(node.admin(Method::GET, "/key-auths/no-such-key", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::GET, "/consumers/bob/key-auths", None).await.0, StatusCode::NOT_FOUND);
    let (_, owner) = node.admin(Method::GET, "/key-auths/bob-secret-key-1/consumer", None).await;
    assert_eq!(owner["username"], "bob");
    let mut expected = vec![generated_key.clone(), "bob-secret-key-1".to_owned()];
    expected.sort();
    assert_eq!(keys_of(&node.admin(Method::GET, "/consumers/bob/key-auth", None).await.1), expected);
    assert_eq!(keys_of(&node.admin(Method::GET, "/key-auths", None).await.1), expected);

    // PATCH changes the key: the old one no longer finds it.
    let (status, patched) =
        node.admin(Method::PATCH, "/key-auths/bob-secret-key-1", Some(json!({"key": "bob-secret-key-2"}))).await;
    assert_eq!((status, patched["id"].as_str()), (StatusCode::OK, Some(chosen_id.as_str())), "{patched}");
    assert_eq!(node.admin(Method::GET, "/key-auths/bob-secret-key-1", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::GET, "/key-auths/bob-secret-key-2", None).await.0, StatusCode::OK);

    // PUT by key creates it with the path's key, then keeps its id.
    let (status, put) = node.admin(Method::PUT, "/consumers/alice/key-auth/alice-key", Some(json!({}))).await;
    assert_eq!((status, put["key"].as_str()), (StatusCode::OK, Some("alice-key")), "{put}");
    let (_, again) = node.admin(Method::PUT, "/consumers/alice/key-auth/alice-key", Some(json!({"tags": ["t"]}))).await;
    assert_eq!((again["id"].clone(), again["tags"].clone()), (put["id"].clone(), json!(["t"])));

    // The top-level collection: POST and PUT name the consumer in the body; PATCH and DELETE under the consumer.
    let alice_id = node.admin(Method::GET, "/consumers/alice", None).await.1["id"].clone();
    let (status, top) =
        node.admin(Method::POST, "/key-auths", Some(json!({"consumer": {"id": alice_id}, "key": "top-key"}))).await;
    assert_eq!((status, top["consumer"]["id"].clone()), (StatusCode::CREATED, alice_id.clone()), "{top}");
    let (status, put_top) =
        node.admin(Method::PUT, "/key-auths/put-key", Some(json!({"consumer": {"id": alice_id}}))).await;
    assert_eq!((status, put_top["key"].as_str()), (StatusCode::OK, Some("put-key")), "{put_top}");
    let (status, e) = node
        .admin(Method::PUT, "/key-auths/put-key", Some(json!({"consumer": {"id": alice_id}, "key": "other"})))
        .await;
    assert_eq!(
        (status, e["fields"]["key"].as_str()),
        (StatusCode::BAD_REQUEST, Some("must be 'put-key', as in the path"))
    );
    let (status, tagged) =
        node.admin(Method::PATCH, "/consumers/alice/key-auth/top-key", Some(json!({"tags": ["x"]}))).await;
    assert_eq!(
        (status, tagged["key"].as_str(), tagged["tags"].clone()),
        (StatusCode::OK, Some("top-key"), json!(["x"]))
    );
    assert_eq!(
        node.admin(Method::PATCH, "/consumers/bob/key-auth/top-key", Some(json!({}))).await.0,
        StatusCode::NOT_FOUND
    );
    let put_id = put_top["id"].as_str().unwrap();
    assert_eq!(node.admin(Method::DELETE, &format!("/key-auths/{put_id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.admin(Method::DELETE, "/key-auths/top-key", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.admin(Method::DELETE, "/key-auths/top-key", None).await.0, StatusCode::NO_CONTENT, "Kong's 204");

    // Neither a chosen nor a generated key is in the database file; the sealed form is.
    let bytes = database_bytes(&node);
    for key in ["bob-secret-key-1", "bob-secret-key-2", "alice-key", "top-key", "put-key", generated_key.as_str()] {
        assert!(!contains(&bytes, key), "{key} is in the database file in clear");
    }
    assert!(contains(&bytes, "gatehouse:sealed:v1:"));

    // Deletes: by key under the consumer, then the consumer's delete takes its keys.
    assert_eq!(
        node.admin(Method::DELETE, "/consumers/bob/key-auth/bob-secret-key-2", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(node.admin(Method::GET, &format!("/key-auths/{chosen_id}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::DELETE, "/consumers/bob", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(keys_of(&node.admin(Method::GET, "/key-auths", None).await.1), ["alice-key"]);
    node.stop().await;
}

#[tokio::test]
async fn a_bad_key_auth_config_is_kongs_400_naming_the_field() {
    let node = TestNode::start().await;
    let (status, body) = node
        .admin(Method::POST, "/plugins", Some(json!({"name": "key-auth", "config": {"key_names": ["api key"]}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"code": 2, "name": "schema violation",
            "message": "schema violation (config.key_names.1: bad header name 'api key', allowed characters are \
                A-Z, a-z, 0-9, '_', and '-')",
            "fields": {"config": {"key_names": ["bad header name 'api key', allowed characters are A-Z, a-z, 0-9, \
                '_', and '-'"]}}})
    );
    let consumer = node.admin_ok(Method::POST, "/consumers", json!({"username": "c"})).await;
    let (status, body) = node
        .admin(Method::POST, "/plugins", Some(json!({"name": "key-auth", "consumer": {"id": consumer["id"]}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["consumer"].is_string(), "{body}");
    node.stop().await;
}

#[tokio::test]
async fn key_auths_on_konnect_core_entities_stay_in_their_control_plane() {
    let node = TestNode::start().await;
    let (_, cp) = node.post("/v2/control-planes", json!({"name": "other"})).await;
    let base = format!("/v2/control-planes/{}/core-entities", cp["id"].as_str().unwrap());
    let (status, _) = node.post(&format!("{base}/consumers"), json!({"username": "dave"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, key) = node.post(&format!("{base}/consumers/dave/key-auth"), json!({"key": "dave-key"})).await;
    assert_eq!((status, key["key"].as_str()), (StatusCode::CREATED, Some("dave-key")), "{key}");
    assert_eq!(node.get(&format!("{base}/key-auths/dave-key")).await.1["id"], key["id"]);
    assert_eq!(keys_of(&node.get(&format!("{base}/consumers/dave/key-auth")).await.1), ["dave-key"]);
    // The served control plane neither sees it nor conflicts with it.
    assert_eq!(node.admin(Method::GET, "/key-auths/dave-key", None).await.0, StatusCode::NOT_FOUND);
    node.admin_ok(Method::POST, "/consumers", json!({"username": "erin"})).await;
    node.admin_ok(Method::POST, "/consumers/erin/key-auth", json!({"key": "dave-key"})).await;
    assert_eq!(node.delete(&format!("{base}/key-auths/dave-key")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.get(&format!("{base}/key-auths/dave-key")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::GET, "/key-auths/dave-key", None).await.0, StatusCode::OK);
    node.stop().await;
}
