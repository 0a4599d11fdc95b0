//! `openid-connect`'s schema on the Admin API: Kong's fields that Gatehouse does not implement are stored and
//! returned at Kong's defaults, a body holding them so goes back unchanged, and any other value is Kong's schema
//! violation naming the field, nested ones included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

#[tokio::test]
async fn unimplemented_fields_hold_kongs_defaults_and_refuse_anything_else() {
    let node = TestNode::start().await;
    let created = node
        .admin_ok(
            Method::POST,
            "/plugins",
            json!({"name": "openid-connect", "config": {"issuer": "https://idp.example"}}),
        )
        .await;
    let config = &created["config"];
    assert_eq!((&config["session_cookie_name"], &config["session_storage"]), (&json!("session"), &json!("cookie")));
    assert_eq!(config["logout_methods"], json!(["POST", "DELETE"]), "Kong's order");
    assert_eq!((&config["redis"]["host"], &config["redis"]["port"]), (&json!("127.0.0.1"), &json!(6379)));
    assert_eq!(config["cluster_cache_redis"]["cloud_authentication"]["aws_is_serverless"], true);
    assert_eq!((&config["token_exchange"], &config["session_secret"]), (&Value::Null, &Value::Null));

    // What a GET returns goes back through PUT unchanged.
    let path = format!("/plugins/{}", created["id"].as_str().unwrap());
    let (_, read) = node.admin(Method::GET, &path, None).await;
    let (status, put) = node.admin(Method::PUT, &path, Some(read.clone())).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["config"], read["config"]);

    let (status, e) = node
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"config": {"session_secret": "a-session-secret", "logout_methods": ["GET"],
                "redis": {"host": "redis.internal", "port": 6379},
                "cluster_cache_redis": {"cloud_authentication": {"auth_provider": "aws"}}}})),
        )
        .await;
    assert_eq!((status, e["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(2)), "{e}");
    let fields = &e["fields"]["config"];
    assert_eq!(fields["session_secret"], "not supported by Gatehouse: only null or an empty value is accepted");
    assert_eq!(
        fields["logout_methods"],
        "not supported by Gatehouse: only its default ([\"POST\",\"DELETE\"]) is accepted"
    );
    assert_eq!(fields["redis"]["host"], "not supported by Gatehouse: only its default (\"127.0.0.1\") is accepted");
    assert!(fields["redis"].get("port").is_none(), "the port is at its default: {e}");
    assert_eq!(
        fields["cluster_cache_redis"]["cloud_authentication"]["auth_provider"],
        "not supported by Gatehouse: only null or an empty value is accepted"
    );
    assert!(!e.to_string().contains("a-session-secret"), "the refused secret is not echoed: {e}");

    let (status, schema) = node.admin(Method::GET, "/schemas/plugins/openid-connect", None).await;
    assert_eq!(status, StatusCode::OK);
    let config = schema["fields"].as_array().unwrap().iter().find_map(|f| f.get("config")).unwrap();
    let fields = config["fields"].as_array().unwrap();
    let field = |name: &str| fields.iter().find_map(|f| f.get(name)).unwrap_or_else(|| panic!("{name}: {schema}"));
    assert_eq!(fields.len(), gatehouse_model::gateway::plugins::config_fields("openid-connect").unwrap().len());
    assert_eq!((&field("redis")["type"], &field("redis")["required"]), (&json!("record"), &json!(true)));
    assert_eq!(field("session_secret")["encrypted"], true);
    assert_eq!(field("logout_methods")["default"], json!(["POST", "DELETE"]));
    node.stop().await;
}
