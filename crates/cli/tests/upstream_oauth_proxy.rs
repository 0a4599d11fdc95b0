//! `upstream-oauth` on a whole node, with Gatehouse's own issuer as the IdP: the upstream gets a token the issuer
//! minted (introspection says it is active and whose it is), with either client authentication; a client that the
//! issuer refuses gets Kong's 502 and none of the issuer's words; Kong's schema errors on the Admin API; and the
//! database never holds the plugin's client secret in clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_store::StorageUrl;
use gatehouse_testkit::TestNode;

/// Every byte SQLite has written for the node (the main file and its write-ahead log).
fn database_bytes(node: &TestNode) -> Vec<u8> {
    let StorageUrl::Sqlite(path) = &node.db.url else { panic!("a SQLite node") };
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", path.display())) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty(), "the database was read");
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// GET /anything through the proxy: status, and the `Authorization` the echo upstream saw (or the raw body).
async fn call(node: &TestNode) -> (StatusCode, String) {
    let res = reqwest::Client::new()
        .get(format!("{}/anything", node.proxy_url()))
        .header("Authorization", "Bearer not-forwarded")
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    let seen = serde_json::from_str::<Value>(&body).ok().and_then(|b| {
        let headers = b["headers"].as_object()?.clone();
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| Some(v.as_str()?.to_owned()))
    });
    (status, seen.unwrap_or(body))
}

#[tokio::test]
async fn the_upstream_gets_a_token_from_gatehouses_own_issuer() {
    let node = TestNode::start().await;
    node.example_service().await;
    let t = node.tutorial_setup("RS256").await;

    // Kong's schema errors name what Gatehouse does not run.
    let (status, e) = node
        .admin(
            Method::POST,
            "/plugins",
            Some(json!({"name": "upstream-oauth", "config": {"oauth": {"token_endpoint": "http://x/t",
                "grant_type": "password"}, "cache": {"redis": {"sentinel_master": "m"}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["name"], "schema violation");
    assert_eq!(
        e["fields"]["config"],
        json!({"oauth": {"grant_type": "not supported by Gatehouse yet: only client_credentials is accepted"},
            "cache": {"redis": {"sentinel_master": "not supported by Gatehouse: only null or an empty value is accepted"}}}),
        "{e}"
    );
    let (status, e) = node.admin(Method::POST, "/plugins", Some(json!({"name": "upstream-oauth", "config": {}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["fields"]["config"], json!({"oauth": {"token_endpoint": "required field missing"}}), "{e}");

    let plugin = node
        .admin_ok(
            Method::POST,
            "/plugins",
            json!({"name": "upstream-oauth", "config": {"oauth": {"token_endpoint": format!("{}/oauth/token", t.issuer),
                "client_id": t.client_id, "client_secret": t.client_secret, "scopes": ["my-scope"]},
                "client": {"auth_method": "client_secret_basic"}}}),
        )
        .await;
    // Returned in clear, as Kong returns encrypted fields; sealed in the database.
    assert_eq!(plugin["config"]["oauth"]["client_secret"], t.client_secret.as_str());
    let plugin_id = plugin["id"].as_str().unwrap().to_owned();
    node.wait_config().await;

    let (status, seen) = call(&node).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    let token = seen.strip_prefix("Bearer ").unwrap_or_else(|| panic!("{seen}")).to_owned();
    let answer = node.introspect(&t.issuer, &t.client_id, &t.client_secret, &token).await;
    assert_eq!(
        (&answer["active"], &answer["client_id"], &answer["scope"]),
        (&json!(true), &json!(t.client_id), &json!("my-scope")),
        "{answer}"
    );
    assert_eq!(call(&node).await.1, seen, "the cached token");

    // client_secret_post (Kong's default) works too, and gets its own token.
    node.admin_ok(
        Method::PATCH,
        &format!("/plugins/{plugin_id}"),
        json!({"config": {"client": {"auth_method": "client_secret_post"}}}),
    )
    .await;
    node.wait_config().await;
    let (status, posted) = call(&node).await;
    assert_eq!(status, StatusCode::OK, "{posted}");
    assert_ne!(posted, seen, "another client authentication is another cache entry");
    let answer =
        node.introspect(&t.issuer, &t.client_id, &t.client_secret, posted.strip_prefix("Bearer ").unwrap()).await;
    assert_eq!(answer["active"], true);

    // The issuer refuses a wrong secret: Kong's 502, and nothing of what the issuer said.
    node.admin_ok(
        Method::PATCH,
        &format!("/plugins/{plugin_id}"),
        // A PATCH merges records field by field, as Kong's does: the rest of `oauth` stays.
        json!({"config": {"oauth": {"client_secret": "wrong-secret"}}}),
    )
    .await;
    node.wait_config().await;
    let (status, body) = call(&node).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, r#"{ "code": "502", "message": "Failed to authenticate request to upstream" }"#);

    // The redis strategy's password is sealed too (two records deep); disabled, so the proxy does not run it.
    let redis = node
        .admin_ok(
            Method::POST,
            "/routes/example-route/plugins",
            json!({"name": "upstream-oauth", "enabled": false, "config": {
                "oauth": {"token_endpoint": "http://127.0.0.1:9/token"},
                "cache": {"strategy": "redis", "redis": {"host": "127.0.0.1", "password": "redis-pw-sealed"}}}}),
        )
        .await;
    assert_eq!(redis["config"]["cache"]["redis"]["password"], "redis-pw-sealed");
    assert!(!contains(&database_bytes(&node), "redis-pw-sealed"), "the redis password is sealed at rest");
    assert!(!contains(&database_bytes(&node), &t.client_secret), "the client secret is sealed at rest");
    assert!(!contains(&database_bytes(&node), "wrong-secret"));
    node.stop().await;
}
