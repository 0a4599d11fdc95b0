//! The `rate-limiting` plugin on a real node: the Admin API's validation of its config (Kong's 400s), and limits
//! by consumer after `oauth2-introspection` mapped one from a token of the node's own issuer, with the node's
//! clock moved by the test; decK's validation, sync and dump of its configs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{TestNode, run_with_input};

async fn post_plugin(node: &TestNode, body: Value) -> (StatusCode, Value) {
    node.admin(Method::POST, "/plugins", Some(body)).await
}

#[tokio::test]
async fn bad_configs_get_kongs_400_naming_the_field() {
    let node = TestNode::start().await;
    let (status, body) = post_plugin(&node, json!({"name": "rate-limiting", "config": {"limit_by": "ip"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = "at least one of these fields must be non-empty: 'config.second', 'config.minute', \
                   'config.hour', 'config.day', 'config.month', 'config.year'";
    assert_eq!(
        body,
        json!({"code": 2, "name": "schema violation", "message": format!("schema violation ({message})"),
            "fields": {"@entity": [message]}})
    );

    let (status, body) =
        post_plugin(&node, json!({"name": "rate-limiting", "config": {"second": 5, "limit_by": "header"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Kong's `conditional` check: the missing field at its place, the condition on the entity.
    assert_eq!(
        body,
        json!({"code": 2, "name": "schema violation",
            "message": "2 schema violations (failed conditional validation given value of field 'config.limit_by'; \
                config.header_name: required field missing)",
            "fields": {"@entity": ["failed conditional validation given value of field 'config.limit_by'"],
                "config": {"header_name": "required field missing"}}})
    );
    let (_, body) =
        post_plugin(&node, json!({"name": "rate-limiting", "config": {"second": 5, "limit_by": "path"}})).await;
    assert_eq!(body["fields"]["config"], json!({"path": "required field missing"}), "{body}");

    let (status, body) = post_plugin(
        &node,
        json!({"name": "rate-limiting", "config": {"second": 10, "minute": 5,
        "error_code": 200, "redis": {"port": 99999}}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["fields"],
        json!({"config": {"error_code": "value should be between 400 and 599 (an HTTP error status)",
            "redis": {"port": "value should be between 0 and 65535"}}}),
        "field errors first; the cross-field checks run once the fields are valid"
    );
    let (_, body) = post_plugin(&node, json!({"name": "rate-limiting", "config": {"second": 10, "minute": 5}})).await;
    assert_eq!(body["fields"]["config"], "The limit for minute(5.0) cannot be lower than the limit for second(10.0)");

    // A good one comes back with Kong's defaults, the Redis password in clear; the database holds it sealed.
    let password = "redis-password-0123456789";
    let plugin = node
        .admin_ok(
            Method::POST,
            "/plugins",
            json!({"name": "rate-limiting", "config": {"minute": 5, "policy": "redis",
                "redis": {"host": "127.0.0.1", "password": password}}}),
        )
        .await;
    let stored = node.db.raw_contents().await;
    assert!(!stored.windows(password.len()).any(|w| w == password.as_bytes()), "sealed at rest");
    let config = &plugin["config"];
    assert_eq!(
        (&config["limit_by"], &config["fault_tolerant"], &config["error_code"], &config["error_message"]),
        (&json!("consumer"), &json!(true), &json!(429), &json!("API rate limit exceeded"))
    );
    assert_eq!((&config["sync_rate"], &config["redis"]["password"]), (&json!(-1), &json!(password)));
    let (_, listed) = node.admin(Method::GET, &format!("/plugins/{}", plugin["id"].as_str().unwrap()), None).await;
    assert_eq!(listed["config"]["redis"]["password"], password, "opened when read");
    let (_, schema) = node.admin(Method::GET, "/schemas/plugins/rate-limiting", None).await;
    assert!(schema.to_string().contains("\"encrypted\":true"), "the redis password is marked encrypted");
    node.stop().await;
}

/// Kong's `limit_by = consumer` after authentication: the consumer `oauth2-introspection` mapped from a real token
/// (its client id is the consumer's custom id), a consumer-scoped instance giving that consumer its own limit,
/// and everything else counted by address.
#[tokio::test]
async fn limits_by_the_consumer_introspection_mapped() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    let app = node.admin_ok(Method::POST, "/consumers", json!({"username": "app", "custom_id": t.client_id})).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", t.client_id, t.client_secret));
    let introspection = json!({"name": "oauth2-introspection", "config": {
        "introspection_url": format!("{}/introspect", t.issuer), "authorization_value": format!("Basic {basic}"),
        "consumer_by": "client_id", "anonymous": ""}});
    node.admin_ok(Method::POST, "/plugins", introspection).await;
    node.admin_ok(Method::POST, "/plugins", json!({"name": "rate-limiting", "config": {"minute": 2}})).await;
    node.wait_config().await;
    let (status, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let call = || async { http.get(&url).bearer_auth(&token).send().await.unwrap() };

    let first = call().await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["x-ratelimit-limit-minute"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining-minute"], "1");
    assert_eq!(call().await.status(), StatusCode::OK);
    let refused = call().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let reset: i64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset), "{reset}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["message"], "API rate limit exceeded");

    // The consumer's own instance wins over the global one (Kong's precedence), with its own limit.
    node.admin_ok(
        Method::POST,
        "/plugins",
        json!({"name": "rate-limiting", "consumer": {"id": app["id"]}, "config": {"minute": 5}}),
    )
    .await;
    node.wait_config().await;
    // The two instances share the scope (no route, no service) and so, as in Kong, the consumer's count: 2 of 5.
    let scoped = call().await;
    assert_eq!(scoped.status(), StatusCode::OK);
    assert_eq!(scoped.headers()["x-ratelimit-remaining-minute"], "2");

    // A new window: counted from zero again.
    clock.advance_secs(reset);
    let fresh = call().await;
    assert_eq!(fresh.status(), StatusCode::OK);
    assert_eq!(fresh.headers()["x-ratelimit-remaining-minute"], "4");
    node.stop().await;
}

const DECK_FILE: &str = r#"_format_version: "3.0"
services:
- name: orders
  url: http://127.0.0.1:9/orders
  plugins:
  - name: rate-limiting
    config: {minute: 5, limit_by: header, header_name: X-Tenant, hide_client_headers: true}
consumers:
- username: alice
  plugins:
  - name: rate-limiting
    config:
      hour: 100
      policy: redis
      redis: {host: 127.0.0.1, password: redis-pw-0123456789}
"#;

/// decK validates rate-limiting's config with the same schema (Kong's messages, the file's line and column),
/// syncs it, dumps it back unchanged, and masks the Redis password in diffs.
#[tokio::test]
async fn deck_validates_syncs_and_dumps_rate_limiting() {
    let node = TestNode::start().await;
    let dir = TempDir::new("deck");
    let env = vec![("DECK_KONG_ADDR", node.node.admin_url())];
    // Runs `gatehouse gateway ARGS` in `dir`, having written `file` there first.
    let run = |args: Vec<&'static str>, file: Option<(&str, String)>| {
        if let Some((name, text)) = file {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let mut all = vec!["gateway"];
        all.extend(args);
        let (env, path) = (env.clone(), dir.path().to_owned());
        async move { run_with_input(&common::bin(), &all, &env, &path, None).await }
    };

    let bad = DECK_FILE.replace("header_name: X-Tenant, ", "");
    let (code, _, err) = run(vec!["validate", "bad.yaml"], Some(("bad.yaml", bad))).await;
    assert_eq!(code, 1);
    assert!(err.contains("config.header_name: required field missing"), "{err}");

    let (code, out, err) = run(vec!["sync", "kong.yaml"], Some(("kong.yaml", DECK_FILE.to_owned()))).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("creating plugin rate-limiting for service orders"), "{out}");
    assert!(out.contains("creating plugin rate-limiting for consumer alice"), "{out}");

    let (code, _, err) = run(vec!["dump", "-o", "dump"], None).await;
    assert_eq!(code, 0, "{err}");
    let dumped = std::fs::read_to_string(dir.path().join("dump.yaml")).unwrap();
    assert!(dumped.contains("header_name: X-Tenant") && dumped.contains("error_message: API rate limit exceeded"));
    let (code, out, _) = run(vec!["sync", "dump.yaml"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("Created: 0") && out.contains("Updated: 0") && out.contains("Deleted: 0"), "{out}");

    let changed = DECK_FILE.replace("redis-pw-0123456789", "redis-pw-changed-9876");
    let (code, out, _) = run(vec!["diff", "changed.yaml"], Some(("changed.yaml", changed))).await;
    assert_eq!(code, 0);
    assert!(out.contains("updating plugin rate-limiting for consumer alice"), "{out}");
    assert!(!out.contains("redis-pw-"), "the password is masked:\n{out}");
    node.stop().await;
}
