//! The management steps of Kong's tutorial, in order, with the tutorial's own JSON bodies and only the host
//! replaced by the platform URL: create auth server, scope, claim, client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

async fn tutorial(node: TestNode) {
    // curl -X POST "$KONNECT_CONTROL_PLANE_URL/v1/auth-servers" --json '{...}'
    let (status, server) = node
        .post(
            "/v1/auth-servers",
            json!({
                "name": "Appointments Dev",
                "audience": "http://myhttpbin.dev",
                "description": "Auth server for the Appointment dev environment"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    let auth_server_id = server["id"].as_str().unwrap().to_owned();
    let issuer = server["issuer"].as_str().unwrap();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    let key = issuer.rsplit('/').next().unwrap();
    assert!(key.len() == 16 && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{issuer}");
    assert_eq!(server["metadata_uri"], format!("{issuer}/.well-known/openid-configuration"));
    assert_eq!(server["jwks_uri"], format!("{issuer}/.well-known/jwks"));
    assert_eq!(server["signing_algorithm"], "RS256");
    assert_eq!(server["labels"], json!({}));
    assert_eq!(server["trusted_origins"], json!([]));
    assert_eq!(server["audience"], "http://myhttpbin.dev");
    assert_timestamp(&server["created_at"]);
    assert_eq!(server["created_at"], server["updated_at"]);

    // curl -X POST ".../scopes" --json '{...}'
    let (status, scope) = node
        .post(
            &format!("/v1/auth-servers/{auth_server_id}/scopes"),
            json!({
                "name": "my-scope",
                "description": "Scope to test Kong Identity",
                "default": false,
                "include_in_metadata": false,
                "enabled": true
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{scope}");
    let scope_id = scope["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (scope["name"].as_str(), scope["default"].as_bool(), scope["enabled"].as_bool()),
        (Some("my-scope"), Some(false), Some(true))
    );

    // curl -X POST ".../claims" --json '{... "include_in_scopes": ["'$SCOPE_ID'"] ...}'
    let (status, claim) = node
        .post(
            &format!("/v1/auth-servers/{auth_server_id}/claims"),
            json!({
                "name": "test-claim",
                "value": "test",
                "include_in_token": true,
                "include_in_all_scopes": false,
                "include_in_scopes": [scope_id],
                "enabled": true
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{claim}");
    assert_eq!(claim["include_in_scopes"], json!([scope_id]));
    assert_eq!(claim["value"], "test");

    // curl -X POST ".../clients" --json '{...}'
    let (status, client) = node
        .post(
            &format!("/v1/auth-servers/{auth_server_id}/clients"),
            json!({
                "name": "Client",
                "grant_types": ["client_credentials"],
                "allow_all_scopes": false,
                "allow_scopes": [scope_id],
                "access_token_duration": 3600,
                "id_token_duration": 3600,
                "response_types": ["id_token", "token"]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client_id = client["id"].as_str().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    assert!(client_id.len() == 16 && client_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert!(secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(client["login_uri"], Value::Null);
    assert_eq!(client["redirect_uris"], json!([]));
    assert_eq!(client["response_types"], json!(["id_token", "token"]));
    assert_eq!(client["access_token_duration"], 3600);
    // The tutorial then base64-encodes "$CLIENT_ID:$CLIENT_SECRET": it must stay on one line.
    assert!(!format!("{client_id}:{secret}").contains(['\n', ' ']));

    // "Can I retrieve my client's secret again? No."
    let (status, fetched) = node.get(&format!("/v1/auth-servers/{auth_server_id}/clients/{client_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fetched.get("client_secret").is_none());
    let (_, secrets) = node.get(&format!("/v1/auth-servers/{auth_server_id}/clients/{client_id}/secrets")).await;
    assert_eq!(secrets["meta"]["page"]["total"], 1);
    assert!(secrets["data"][0].get("secret").is_none());
    node.stop().await;
}

fn assert_timestamp(v: &Value) {
    let s = v.as_str().unwrap();
    // 2025-09-26T05:30:50.551157Z
    assert_eq!(s.len(), 27, "{s}");
    assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.', "{s}");
}

#[tokio::test]
async fn tutorial_management_steps_on_sqlite() {
    tutorial(TestNode::start().await).await;
}

#[tokio::test]
async fn tutorial_management_steps_on_postgres() {
    if let Some(node) = TestNode::builder().postgres().start().await {
        tutorial(node).await;
    }
}
