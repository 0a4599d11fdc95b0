//! The `acl` plugin through the real proxy, behind `oauth2-introspection` and the node's own issuer: real tokens,
//! the consumers they map to and those consumers' `acls`; Kong's 401 and 403 bodies, `X-Consumer-Groups`, the
//! anonymous consumer, and a client's own `X-Consumer-Groups` never reaching the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, Tutorial};

const FORBIDDEN: &str = "You cannot consume this service";

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

/// The tutorial's introspection plugin (consumer by client id), globally, with extra settings.
async fn introspection(node: &TestNode, t: &Tutorial, extra: Value) {
    let mut config = json!({"introspection_url": format!("{}/introspect", t.issuer),
        "authorization_value": basic(&t.client_id, &t.client_secret), "consumer_by": "client_id"});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    node.admin_ok(Method::POST, "/plugins", json!({"name": "oauth2-introspection", "config": config})).await;
}

/// Another client of the tutorial's auth server: (id, secret).
async fn client(node: &TestNode, t: &Tutorial, name: &str) -> (String, String) {
    let (status, c) = node
        .post(
            &format!("/v1/auth-servers/{}/clients", t.server_id),
            json!({"name": name, "grant_types": ["client_credentials"], "allow_all_scopes": false,
                "allow_scopes": [t.scope_id], "access_token_duration": 3600, "id_token_duration": 3600,
                "response_types": ["id_token", "token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    (c["id"].as_str().unwrap().to_owned(), c["client_secret"].as_str().unwrap().to_owned())
}

async fn mint(node: &TestNode, t: &Tutorial, id: &str, secret: &str) -> String {
    let (status, body) = node.token(&t.issuer, id, secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A consumer mapped to `client_id` (its custom_id) with `groups`.
async fn consumer(node: &TestNode, username: &str, client_id: Option<&str>, groups: &[&str]) {
    node.admin_ok(Method::POST, "/consumers", json!({"username": username, "custom_id": client_id})).await;
    for g in groups {
        node.admin_ok(Method::POST, &format!("/consumers/{username}/acls"), json!({"group": g})).await;
    }
}

/// The acl plugin on the tutorial's route; returns its id once the proxy runs it.
async fn acl_on_route(node: &TestNode, config: Value) -> String {
    let plugin =
        node.admin_ok(Method::POST, "/routes/example-route/plugins", json!({"name": "acl", "config": config})).await;
    node.wait_config().await;
    plugin["id"].as_str().unwrap().to_owned()
}

async fn reconfigure(node: &TestNode, id: &str, config: Value) {
    node.admin_ok(Method::PATCH, &format!("/plugins/{id}"), json!({"config": config})).await;
    node.wait_config().await;
}

/// What the client got: the status, and either the upstream's view of the request's headers (on 200) or the
/// gateway's body, with its request id checked against the response header.
async fn call(node: &TestNode, token: Option<&str>, spoof: Option<&str>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().get(format!("{}/anything", node.proxy_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(s) = spoof {
        req = req.header("x-consumer-groups", s);
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    if status == StatusCode::OK {
        return (status, body["headers"].clone());
    }
    if matches!(status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED) && body.get("request_id").is_some() {
        assert_eq!(body["request_id"].as_str(), headers["x-kong-request-id"].to_str().ok(), "{body}");
        assert_eq!(headers["content-type"], "application/json; charset=utf-8");
        assert!(headers.get("www-authenticate").is_none(), "the acl plugin sends no challenge");
    }
    (status, body)
}

fn refused(status: StatusCode, message: &str) -> impl Fn((StatusCode, Value)) {
    let message = message.to_owned();
    move |(got, body): (StatusCode, Value)| {
        assert_eq!(got, status, "{body}");
        let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!((body["message"].as_str(), keys), (Some(message.as_str()), vec!["message", "request_id"]));
    }
}

/// The value of `X-Consumer-Groups` the upstream saw, if any.
fn groups_header(upstream: &Value) -> Option<&str> {
    upstream.get("X-Consumer-Groups").and_then(Value::as_str)
}

#[tokio::test]
async fn allow_and_deny_by_the_groups_of_the_consumer_a_token_maps_to() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    introspection(&node, &t, json!({})).await;
    let (other_id, other_secret) = client(&node, &t, "Other").await;
    let (plain_id, plain_secret) = client(&node, &t, "Plain").await;
    let (lone_id, lone_secret) = client(&node, &t, "Lone").await;
    consumer(&node, "app", Some(&t.client_id), &["users", "admins"]).await;
    consumer(&node, "other", Some(&other_id), &["users"]).await;
    consumer(&node, "plain", Some(&plain_id), &[]).await;
    let app = mint(&node, &t, &t.client_id, &t.client_secret).await;
    let other = mint(&node, &t, &other_id, &other_secret).await;
    let plain = mint(&node, &t, &plain_id, &plain_secret).await;
    // A valid token whose client no consumer maps to: a credential without a consumer.
    let lone = mint(&node, &t, &lone_id, &lone_secret).await;
    let forbidden = refused(StatusCode::FORBIDDEN, FORBIDDEN);

    let id = acl_on_route(&node, json!({"allow": ["admins"]})).await;
    let (status, up) = call(&node, Some(&app), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(groups_header(&up), Some("admins, users"), "sorted, joined as Kong joins them");
    assert_eq!(up["X-Consumer-Username"], "app");
    let (_, up) = call(&node, Some(&app), Some("root")).await;
    assert_eq!(groups_header(&up), Some("admins, users"), "the client's own header is replaced");
    forbidden(call(&node, Some(&other), None).await);
    forbidden(call(&node, Some(&plain), None).await);
    forbidden(call(&node, Some(&lone), None).await);
    let (status, body) = call(&node, None, Some("admins")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "introspection refuses first: {body}");

    reconfigure(&node, &id, json!({"allow": null, "deny": ["admins"]})).await;
    forbidden(call(&node, Some(&app), None).await);
    let (status, up) = call(&node, Some(&other), Some("admins")).await;
    assert_eq!((status, groups_header(&up)), (StatusCode::OK, Some("users")));
    let (status, up) = call(&node, Some(&plain), Some("admins")).await;
    assert_eq!((status, groups_header(&up)), (StatusCode::OK, Some("")), "no groups: Kong sends an empty header");
    forbidden(call(&node, Some(&lone), None).await);

    // Groups follow the configuration: joining `admins` denies, leaving it allows again.
    node.admin_ok(Method::PUT, "/consumers/other/acls/admins", json!({})).await;
    node.wait_config().await;
    forbidden(call(&node, Some(&other), None).await);
    node.admin(Method::DELETE, "/consumers/other/acls/admins", None).await;
    node.wait_config().await;
    assert_eq!(call(&node, Some(&other), None).await.0, StatusCode::OK);

    // hide_groups_header: nothing reaches the upstream, not even what the client sent.
    reconfigure(&node, &id, json!({"hide_groups_header": true})).await;
    let (status, up) = call(&node, Some(&other), Some("admins")).await;
    assert_eq!((status, groups_header(&up)), (StatusCode::OK, None), "{up}");
    forbidden(call(&node, Some(&app), None).await);

    // always_use_authenticated_groups: no Gatehouse plugin reports authenticated groups, so the consumer's count.
    reconfigure(
        &node,
        &id,
        json!({"allow": ["users"], "deny": null, "hide_groups_header": false, "always_use_authenticated_groups": true}),
    )
    .await;
    let (status, up) = call(&node, Some(&other), None).await;
    assert_eq!((status, groups_header(&up)), (StatusCode::OK, Some("users")));
    forbidden(call(&node, Some(&plain), None).await);

    // A deleted consumer takes its acls along: its token now maps to no one.
    node.admin(Method::DELETE, "/consumers/other", None).await;
    node.wait_config().await;
    forbidden(call(&node, Some(&other), None).await);
    node.stop().await;
}

#[tokio::test]
async fn the_anonymous_consumers_groups_decide_for_requests_without_a_token() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    introspection(&node, &t, json!({"anonymous": "guest"})).await;
    consumer(&node, "guest", None, &["public"]).await;
    consumer(&node, "app", Some(&t.client_id), &["admins"]).await;
    let app = mint(&node, &t, &t.client_id, &t.client_secret).await;

    // A global instance that would refuse everyone is overridden by the route's (Kong's precedence).
    node.admin_ok(Method::POST, "/plugins", json!({"name": "acl", "config": {"deny": ["public", "admins"]}})).await;
    let id = acl_on_route(&node, json!({"allow": ["public"]})).await;
    let (status, up) = call(&node, None, Some("admins")).await;
    assert_eq!((status, groups_header(&up)), (StatusCode::OK, Some("public")));
    assert_eq!(
        (up["X-Anonymous-Consumer"].as_str(), up["X-Consumer-Username"].as_str()),
        (Some("true"), Some("guest"))
    );
    let (status, up) = call(&node, Some("not-a-token"), None).await;
    assert_eq!((status, groups_header(&up)), (StatusCode::OK, Some("public")), "a failed token goes on as guest");
    refused(StatusCode::FORBIDDEN, FORBIDDEN)(call(&node, Some(&app), None).await);

    reconfigure(&node, &id, json!({"allow": ["admins"]})).await;
    refused(StatusCode::FORBIDDEN, FORBIDDEN)(call(&node, None, None).await);
    let (status, up) = call(&node, Some(&app), None).await;
    assert_eq!((status, groups_header(&up)), (StatusCode::OK, Some("admins")));

    // An anonymous consumer without groups under `allow`: no credential, so Kong's 401.
    node.admin(Method::DELETE, "/consumers/guest/acls/public", None).await;
    node.wait_config().await;
    refused(StatusCode::UNAUTHORIZED, "Unauthorized")(call(&node, None, None).await);
    reconfigure(&node, &id, json!({"allow": null, "deny": ["admins"]})).await;
    let (status, up) = call(&node, None, None).await;
    assert_eq!((status, groups_header(&up)), (StatusCode::OK, Some("")));
    node.stop().await;
}

#[tokio::test]
async fn without_an_authentication_plugin_nobody_is_identified() {
    let node = TestNode::start().await;
    node.example_service().await;
    consumer(&node, "alice", None, &["admins"]).await;
    acl_on_route(&node, json!({"deny": ["nobody"]})).await;
    // Even with a consumer's headers spoofed: only an authentication plugin identifies one.
    let mut req = reqwest::Client::new().get(format!("{}/anything", node.proxy_url()));
    req = req.header("x-consumer-username", "alice").header("x-consumer-groups", "admins");
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!((status, body["message"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthorized")));
    // Other routes are untouched by a route's acl.
    let url = format!("{}/anything", node.echo_url());
    node.admin_ok(Method::POST, "/services", json!({"name": "open", "url": url})).await;
    node.admin_ok(Method::POST, "/services/open/routes", json!({"paths": ["/open"]})).await;
    node.wait_config().await;
    let res = reqwest::Client::new().get(format!("{}/open", node.proxy_url())).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    node.stop().await;
}

/// The plugin's two answers end to end, as snapshots (`tests/snapshots/`), request ids checked then redacted.
#[tokio::test]
async fn the_acl_plugins_error_bodies() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    introspection(&node, &t, json!({"anonymous": "guest"})).await;
    consumer(&node, "guest", None, &[]).await;
    consumer(&node, "app", Some(&t.client_id), &["users"]).await;
    let app = mint(&node, &t, &t.client_id, &t.client_secret).await;
    acl_on_route(&node, json!({"allow": ["admins"]})).await;
    let seen = |token: Option<String>| {
        let node = &node;
        async move {
            let mut req = reqwest::Client::new().get(format!("{}/anything", node.proxy_url()));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.unwrap();
            let (status, headers) = (res.status(), res.headers().clone());
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["request_id"].as_str(), headers["x-kong-request-id"].to_str().ok());
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            json!({"status": status.as_u16(), "content-type": header("content-type"),
                "www-authenticate": header("www-authenticate"), "body": body})
        }
    };
    let redacted = ".body.request_id";
    insta::assert_json_snapshot!("acl_forbidden", seen(Some(app)).await, {redacted => "[request id]"});
    insta::assert_json_snapshot!("acl_unauthorized", seen(None).await, {redacted => "[request id]"});
    node.stop().await;
}
