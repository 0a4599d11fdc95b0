//! The `openid-connect` plugin's bearer path in front of the echo upstream: real tokens from the node's own auth
//! servers (`/oauth/token`), validated locally against their published keys; forged tokens; key rotation; and, to
//! count what reaches the IdP or make it fail, a stand-in issuer that relays the node's discovery and keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_model::Clock;
use gatehouse_testkit::{TestNode, Tutorial};

const UNAUTHORIZED: &str = r#"{"message":"Unauthorized"}"#;
const FORBIDDEN: &str = r#"{"message":"Forbidden"}"#;
const REALM: &str = r#"Bearer realm="127.0.0.1""#;
const INVALID: &str = r#"Bearer realm="127.0.0.1", error="invalid_token""#;
const INSUFFICIENT: &str = r#"Bearer realm="127.0.0.1", error="insufficient_scope""#;

/// Replaces every plugin with one global `openid-connect` instance and waits until the proxy runs it.
async fn only_plugin(node: &TestNode, config: Value) {
    let (_, list) = node.admin(Method::GET, "/plugins", None).await;
    for p in list["data"].as_array().unwrap() {
        node.admin(Method::DELETE, &format!("/plugins/{}", p["id"].as_str().unwrap()), None).await;
    }
    node.admin_ok(Method::POST, "/plugins", json!({"name": "openid-connect", "config": config})).await;
    node.wait_config().await;
}

/// The how-to's configuration.
fn how_to(t: &Tutorial) -> Value {
    json!({"issuer": t.issuer, "auth_methods": ["bearer"], "audience": ["http://myhttpbin.dev"]})
}

/// The how-to's configuration with `extra`'s fields set over it.
fn how_to_with(t: &Tutorial, extra: Value) -> Value {
    let mut config = how_to(t);
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

async fn mint(node: &TestNode, t: &Tutorial) -> String {
    let (status, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.unwrap())
}

/// The upstream's view (the echo's JSON) of a request that must get through.
async fn upstream_of(req: reqwest::RequestBuilder) -> Value {
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A 401 `invalid_token`, Kong's body and challenge.
async fn assert_invalid(req: reqwest::RequestBuilder, what: &str) {
    let (status, headers, body) = send(req).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, UNAUTHORIZED), "{what}");
    assert_eq!(headers["www-authenticate"], INVALID, "{what}");
}

fn part(token: &str, i: usize) -> Value {
    let p = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

fn encode(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// `token` with its header replaced (the signature no longer matches).
fn with_header(token: &str, header: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = encode(header);
    parts.join(".")
}

#[tokio::test]
async fn the_how_tos_config_accepts_the_issuers_tokens_and_refuses_forgeries() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    only_plugin(&node, how_to(&t)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());

    let (status, headers, body) = send(http.get(&url)).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, UNAUTHORIZED));
    assert_eq!(headers["www-authenticate"], REALM, "no token: no error code");
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");

    let token = mint(&node, &t).await;
    let echo = upstream_of(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(echo["headers"]["Authorization"], format!("Bearer {token}"), "upstream_access_token_header");
    // Again: from the node's verified tokens, same answer.
    upstream_of(http.get(&url).bearer_auth(&token)).await;

    // Forgeries.
    let header = part(&token, 0);
    let payload = part(&token, 1);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let none = format!("{}.{}.", encode(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})), encode(&payload));
    assert_invalid(http.get(&url).bearer_auth(&none), "alg none").await;
    let public = reqwest::get(format!("{}/.well-known/jwks", t.issuer)).await.unwrap().text().await.unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid.clone()),
            typ: Some("at+jwt".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_invalid(http.get(&url).bearer_auth(&hs), "HS256 signed with the public key").await;
    let mut other_kid = header.clone();
    other_kid["kid"] = json!("0190a0a0-0000-7000-8000-000000000099");
    assert_invalid(http.get(&url).bearer_auth(with_header(&token, &other_kid)), "unknown kid").await;
    let mut tampered = payload.clone();
    tampered["sub"] = json!("someone-else");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], encode(&tampered), parts[2]);
    assert_invalid(http.get(&url).bearer_auth(&tampered), "tampered payload").await;
    let mut id_token = header.clone();
    id_token["typ"] = json!("id_token+jwt");
    assert_invalid(http.get(&url).bearer_auth(with_header(&token, &id_token)), "typ").await;
    assert_invalid(http.get(&url).bearer_auth("opaque-token"), "not a JWT, no introspection").await;
    assert_invalid(http.get(&url).bearer_auth("a.b.c"), "garbage").await;

    // Wrong audience, wrong issuer: the same real token, refused by configuration.
    let mut config = how_to(&t);
    config["audience"] = json!(["http://elsewhere.dev"]);
    only_plugin(&node, config).await;
    assert_invalid(http.get(&url).bearer_auth(&token), "audience").await;
    let mut config = how_to(&t);
    config["issuers_allowed"] = json!(["http://elsewhere.dev"]);
    only_plugin(&node, config).await;
    assert_invalid(http.get(&url).bearer_auth(&token), "issuer").await;
    node.stop().await;
}

#[tokio::test]
async fn expiry_and_not_before_follow_the_node_clock_with_leeway() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    only_plugin(&node, how_to(&t)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let token = mint(&node, &t).await;
    let exp = part(&token, 1)["exp"].as_i64().unwrap();
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    clock.set(gatehouse_model::Timestamp::from_micros(exp * 1_000_000 - 1));
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    clock.set(gatehouse_model::Timestamp::from_secs(exp));
    assert_invalid(http.get(&url).bearer_auth(&token), "expired, though verified before").await;

    let mut config = how_to(&t);
    config["leeway"] = json!(10);
    only_plugin(&node, config).await;
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    clock.set(gatehouse_model::Timestamp::from_secs(exp + 10));
    assert_invalid(http.get(&url).bearer_auth(&token), "expired past the leeway").await;

    // A token minted now, presented before its `nbf` (the clock moved back).
    let fresh = mint(&node, &t).await;
    let nbf = part(&fresh, 1)["nbf"].as_i64().unwrap();
    clock.set(gatehouse_model::Timestamp::from_secs(nbf - 11));
    assert_invalid(http.get(&url).bearer_auth(&fresh), "not valid yet").await;
    clock.set(gatehouse_model::Timestamp::from_secs(nbf - 10));
    upstream_of(http.get(&url).bearer_auth(&fresh)).await;
    node.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    only_plugin(&node, how_to(&t)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let before = mint(&node, &t).await;
    upstream_of(http.get(&url).bearer_auth(&before)).await;

    let (status, key) = node.post(&format!("/v1/auth-servers/{}/keys/rotate", t.server_id), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let after = mint(&node, &t).await;
    assert_ne!(part(&before, 0)["kid"], part(&after, 0)["kid"]);
    // Within `rediscovery_lifetime` (30 s) of the last fetch, an unknown key does not cause another.
    assert_invalid(http.get(&url).bearer_auth(&after), "new kid, refresh rate-limited").await;
    clock.advance_secs(30);
    upstream_of(http.get(&url).bearer_auth(&after)).await;
    upstream_of(http.get(&url).bearer_auth(&before)).await;
    node.stop().await;
}

/// What an introspection request carried: its `Authorization`, and its form pairs.
type Sent = (Option<String>, Vec<(String, String)>);

/// A stand-in issuer: its discovery document names the node's auth server as `issuer` and itself for the keys,
/// which it relays from the node; it counts the fetches, can fail on demand, and answers introspection as told.
#[derive(Clone, Default)]
struct StandIn {
    upstream_issuer: Arc<std::sync::Mutex<String>>,
    discovery: Arc<AtomicUsize>,
    jwks: Arc<AtomicUsize>,
    introspections: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    url: Arc<std::sync::Mutex<String>>,
    active: Arc<std::sync::Mutex<Value>>,
    /// Never answers discovery (a timeout the plugin must cut short).
    hanging: Arc<AtomicBool>,
    /// The last introspection request: its `Authorization` and form pairs.
    last: Arc<std::sync::Mutex<Sent>>,
}

impl StandIn {
    async fn start(upstream_issuer: &str) -> StandIn {
        let stand_in = StandIn::default();
        *stand_in.upstream_issuer.lock().unwrap() = upstream_issuer.to_owned();
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", axum::routing::get(discovery))
            .route("/jwks", axum::routing::get(jwks))
            .route("/introspect", axum::routing::post(introspect))
            .with_state(stand_in.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *stand_in.url.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        stand_in
    }

    fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }
}

async fn discovery(State(s): State<StandIn>) -> Response {
    s.discovery.fetch_add(1, Ordering::SeqCst);
    if s.hanging.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    if s.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "idp-internal-detail").into_response();
    }
    let url = s.url();
    axum::Json(json!({"issuer": *s.upstream_issuer.lock().unwrap(), "jwks_uri": format!("{url}/jwks"),
        "introspection_endpoint": format!("{url}/introspect")}))
    .into_response()
}

async fn jwks(State(s): State<StandIn>) -> Response {
    s.jwks.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "idp-internal-detail").into_response();
    }
    let issuer = s.upstream_issuer.lock().unwrap().clone();
    let keys: Value = reqwest::get(format!("{issuer}/.well-known/jwks")).await.unwrap().json().await.unwrap();
    axum::Json(keys).into_response()
}

async fn introspect(State(s): State<StandIn>, headers: axum::http::HeaderMap, body: String) -> Response {
    s.introspections.fetch_add(1, Ordering::SeqCst);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let authorization = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
    *s.last.lock().unwrap() = (authorization, pairs.clone());
    let token = pairs.iter().find(|(k, _)| k == "token" || k == "tok").map(|(_, v)| v.clone());
    let answer = s.active.lock().unwrap().clone();
    if token.as_deref() == answer["token"].as_str() {
        axum::Json(answer).into_response()
    } else {
        axum::Json(json!({"active": false})).into_response()
    }
}

#[tokio::test]
async fn a_burst_of_unknown_kids_costs_one_key_fetch_per_rediscovery_lifetime() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    let stand_in = StandIn::start(&t.issuer).await;
    let mut config = how_to(&t);
    config["issuer"] = json!(stand_in.url());
    only_plugin(&node, config).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let token = mint(&node, &t).await;
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    assert_eq!((stand_in.discovery.load(Ordering::SeqCst), stand_in.jwks.load(Ordering::SeqCst)), (1, 1));

    // The rate limit's period has passed, so the burst may cause one refresh, and only one.
    clock.advance_secs(30);
    let header = part(&token, 0);
    let refused = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let mut forged = header.clone();
            forged["kid"] = json!(format!("kid-{i}-{}", uuid::Uuid::new_v4()));
            let req = http.get(&url).bearer_auth(with_header(&token, &forged));
            async move { req.send().await.unwrap().status() }
        })
        .buffer_unordered(64)
        .filter(|status| std::future::ready(*status == StatusCode::UNAUTHORIZED))
        .count()
        .await;
    assert_eq!(refused, 10_000);
    assert_eq!(stand_in.jwks.load(Ordering::SeqCst), 2, "one refresh for the whole burst");
    // The real token still passes (its key is known), with no further fetch.
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(stand_in.jwks.load(Ordering::SeqCst), 2);
    node.stop().await;
}

#[tokio::test]
async fn an_unavailable_idp_answers_500_without_its_text_and_is_not_remembered() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let stand_in = StandIn::start(&t.issuer).await;
    stand_in.failing.store(true, Ordering::SeqCst);
    let mut config = how_to(&t);
    config["issuer"] = json!(stand_in.url());
    only_plugin(&node, config).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let token = mint(&node, &t).await;
    for _ in 0..2 {
        let (status, _, body) = send(http.get(&url).bearer_auth(&token)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["message"], "An unexpected error occurred");
        assert!(!body.to_string().contains("idp-internal-detail"));
    }
    assert_eq!(stand_in.discovery.load(Ordering::SeqCst), 2, "each request tried: no failure is kept");
    stand_in.failing.store(false, Ordering::SeqCst);
    upstream_of(http.get(&url).bearer_auth(&token)).await;

    // Once keys are known, a failing IdP changes nothing for tokens they verify.
    stand_in.failing.store(true, Ordering::SeqCst);
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    node.stop().await;
}

#[tokio::test]
async fn tokens_from_two_auth_servers_with_issuers_allowed() {
    let node = TestNode::start().await;
    let a = node.tutorial_setup("RS256").await;
    let b = node.tutorial_setup("ES256").await;
    node.example_service().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let (token_a, token_b) = (mint(&node, &a).await, mint(&node, &b).await);
    only_plugin(&node, how_to(&a)).await;
    upstream_of(http.get(&url).bearer_auth(&token_a)).await;
    assert_invalid(http.get(&url).bearer_auth(&token_b), "another issuer, not allowed").await;
    let mut config = how_to(&a);
    config["issuers_allowed"] = json!([a.issuer, b.issuer]);
    only_plugin(&node, config).await;
    upstream_of(http.get(&url).bearer_auth(&token_a)).await;
    upstream_of(http.get(&url).bearer_auth(&token_b)).await;
    node.stop().await;
}

#[tokio::test]
async fn scopes_audiences_and_consumers() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let token = mint(&node, &t).await;
    let with = |extra: Value| how_to_with(&t, extra);

    only_plugin(&node, with(json!({"scopes_required": ["other", "my-scope"]}))).await;
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    for extra in [
        json!({"scopes_required": ["my-scope other"]}),
        json!({"audience_required": ["http://myhttpbin.dev http://elsewhere.dev"]}),
    ] {
        only_plugin(&node, with(extra.clone())).await;
        let (status, headers, body) = send(http.get(&url).bearer_auth(&token)).await;
        assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, FORBIDDEN), "{extra}");
        assert_eq!(headers["www-authenticate"], INSUFFICIENT);
    }
    only_plugin(
        &node,
        with(json!({"scopes_required": ["nope"], "display_errors": true,
        "forbidden_error_message": "Go away"})),
    )
    .await;
    let (status, headers, body) = send(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, r#"{"message":"Go away (the token's scopes are insufficient)"}"#);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer realm="127.0.0.1", error="insufficient_scope", error_description="the token's scopes are insufficient""#
    );

    // Consumers by the `sub` claim (the client id).
    only_plugin(&node, with(json!({"consumer_claims": [["sub"]], "consumer_by": ["custom_id"]}))).await;
    let (status, _, body) = send(http.get(&url).bearer_auth(&token)).await;
    assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, FORBIDDEN), "no such consumer");
    only_plugin(&node, with(json!({"consumer_claims": [["sub"]], "consumer_optional": true}))).await;
    let echo = upstream_of(http.get(&url).bearer_auth(&token)).await;
    assert!(echo["headers"].get("X-Consumer-Id").is_none());
    let consumer = node.admin_ok(Method::POST, "/consumers", json!({"custom_id": t.client_id})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": t.client_id.to_uppercase()})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "anon"})).await;
    only_plugin(&node, with(json!({"consumer_claims": [["nothing"], ["sub"]], "consumer_by": ["custom_id"]}))).await;
    let echo = upstream_of(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(echo["headers"]["X-Consumer-Id"], consumer["id"]);
    assert_eq!(echo["headers"]["X-Consumer-Custom-Id"], t.client_id);
    only_plugin(&node, with(json!({"consumer_claims": [["sub"]], "consumer_by": ["username"]}))).await;
    let (status, _, _) = send(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "usernames match exactly by default");
    only_plugin(
        &node,
        with(json!({"consumer_claims": [["sub"]], "consumer_by": ["username"],
        "by_username_ignore_case": true})),
    )
    .await;
    let echo = upstream_of(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(echo["headers"]["X-Consumer-Username"], t.client_id.to_uppercase());

    // Anonymous: a bad token goes on as `anon`, marked; spoofed identity headers never reach the upstream.
    only_plugin(&node, with(json!({"anonymous": "anon"}))).await;
    let echo = upstream_of(http.get(&url).bearer_auth("bad.to.ken").header("x-consumer-username", "admin")).await;
    assert_eq!(echo["headers"]["X-Consumer-Username"], "anon");
    assert_eq!(echo["headers"]["X-Anonymous-Consumer"], "true");
    assert!(echo["headers"].get("Authorization").is_none(), "hidden even when refused");
    let echo = upstream_of(http.get(&url).bearer_auth(&token).header("x-consumer-username", "admin")).await;
    assert!(echo["headers"].get("X-Consumer-Username").is_none(), "{echo}");
    node.stop().await;
}

#[tokio::test]
async fn token_sources_upstream_headers_and_preflight() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let token = mint(&node, &t).await;
    let with = |extra: Value| how_to_with(&t, extra);

    // Kong's defaults: header, query and body; the token is hidden and sent upstream as `Authorization: Bearer`.
    only_plugin(&node, how_to(&t)).await;
    let echo = upstream_of(http.get(format!("{url}?a=1&access_token={token}"))).await;
    assert_eq!(echo["url"], format!("{}/anything?a=1", node.echo_url()));
    assert_eq!(echo["headers"]["Authorization"], format!("Bearer {token}"));
    let echo = upstream_of(http.post(&url).form(&[("access_token", token.as_str()), ("b", "2")])).await;
    assert_eq!(echo["form"], json!({"b": "2"}), "{echo}");

    // Only the query; the token stays where it was without hide_credentials; claims as headers.
    only_plugin(
        &node,
        with(json!({"bearer_token_param_type": ["query"], "hide_credentials": false,
        "upstream_access_token_header": "",
        "upstream_headers_claims": ["test-claim", "scope", "absent"],
        "upstream_headers_names": ["x-test", "x-scope", "x-absent"]})),
    )
    .await;
    let (status, headers, _) = send(http.get(&url).bearer_auth(&token)).await;
    assert_eq!((status, &headers["www-authenticate"]), (StatusCode::UNAUTHORIZED, &REALM.parse().unwrap()));
    let echo = upstream_of(http.get(format!("{url}?access_token={token}")).header("x-absent", "spoofed")).await;
    assert_eq!(echo["url"], format!("{}/anything?access_token={token}", node.echo_url()));
    assert!(echo["headers"].get("Authorization").is_none());
    assert_eq!(echo["headers"]["X-Test"], "test");
    assert_eq!(echo["headers"]["X-Scope"], "my-scope");
    assert!(echo["headers"].get("X-Absent").is_none(), "a claim the token lacks removes the header");

    // A custom header, and the token sent upstream bare in another one.
    only_plugin(
        &node,
        with(json!({"bearer_token_header_name": "x-my-token",
        "upstream_access_token_header": "x-upstream-token"})),
    )
    .await;
    assert_eq!(send(http.get(&url).bearer_auth(&token)).await.0, StatusCode::UNAUTHORIZED);
    let echo = upstream_of(http.get(&url).header("x-my-token", &token)).await;
    assert!(echo["headers"].get("X-My-Token").is_none(), "hidden");
    assert_eq!(echo["headers"]["X-Upstream-Token"], token);

    // Preflight.
    only_plugin(&node, with(json!({"run_on_preflight": false}))).await;
    assert_eq!(send(http.request(Method::OPTIONS, &url)).await.0, StatusCode::OK);
    only_plugin(&node, how_to(&t)).await;
    assert_eq!(send(http.request(Method::OPTIONS, &url)).await.0, StatusCode::UNAUTHORIZED);

    // A JSON body that is not an object: Kong's bare 400.
    let (status, _, _) = send(http.post(&url).json(&json!(["x"]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    node.stop().await;
}

#[tokio::test]
async fn opaque_tokens_and_revocation_through_introspection() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let stand_in = StandIn::start(&t.issuer).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let far = gatehouse_model::SystemClock.now().secs() + 3600;
    *stand_in.active.lock().unwrap() = json!({"active": true, "token": "opaque-1", "sub": "s", "scope": "my-scope", "exp": far,
            "aud": "http://myhttpbin.dev", "iss": t.issuer});
    let config = json!({"issuer": stand_in.url(), "auth_methods": ["bearer", "introspection"],
        "client_id": [t.client_id], "client_secret": [t.client_secret], "scopes_required": ["my-scope"]});
    only_plugin(&node, config.clone()).await;
    let echo = upstream_of(http.get(&url).bearer_auth("opaque-1")).await;
    assert_eq!(echo["headers"]["Authorization"], "Bearer opaque-1");
    upstream_of(http.get(&url).bearer_auth("opaque-1")).await;
    assert_eq!(stand_in.introspections.load(Ordering::SeqCst), 1, "cached");
    assert_invalid(http.get(&url).bearer_auth("opaque-2"), "inactive").await;

    // A revoked JWT keeps validating locally until it expires; with introspect_jwt_tokens it is refused at once.
    let token = mint(&node, &t).await;
    let mut local = how_to(&t);
    local["client_id"] = json!([t.client_id]);
    local["client_secret"] = json!([t.client_secret]);
    only_plugin(&node, local.clone()).await;
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    let (status, _) =
        node.form(&format!("{}/revoke", t.issuer), Some((&t.client_id, &t.client_secret)), &[("token", &token)]).await;
    assert_eq!(status, StatusCode::OK);
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    local["introspect_jwt_tokens"] = json!(true);
    only_plugin(&node, local).await;
    assert_invalid(http.get(&url).bearer_auth(&token), "revoked, introspected").await;
    node.stop().await;
}

#[tokio::test]
async fn the_config_api_names_what_is_not_supported() {
    let node = TestNode::start().await;
    let (status, body) = node
        .admin(
            Method::POST,
            "/plugins",
            Some(json!({"name": "openid-connect", "config": {"issuer": "https://idp.example",
                "auth_methods": ["bearer", "session", "password"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("auth_methods not supported by Gatehouse: session, password"), "{body}");
    let (status, body) = node
        .admin(
            Method::POST,
            "/plugins",
            Some(json!({"name": "openid-connect", "config": {"issuer": "https://idp.example",
            "client_id": ["id"], "client_secret": ["very-secret"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["config"]["auth_methods"], json!(["bearer", "client_credentials", "introspection"]));
    node.stop().await;
}

/// `credential_claim` is what rate limiting by credential counts: two tokens of one client share `sub`, not `jti`.
#[tokio::test]
async fn the_credential_is_the_credential_claims_value() {
    // The node's clock stands still: both requests fall in one rate-limiting window.
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let (first, second) = (mint(&node, &t).await, mint(&node, &t).await);
    for (claim, second_status) in [("sub", StatusCode::TOO_MANY_REQUESTS), ("jti", StatusCode::OK)] {
        let mut config = how_to(&t);
        config["credential_claim"] = json!([claim]);
        only_plugin(&node, config).await;
        node.admin_ok(
            Method::POST,
            "/plugins",
            json!({"name": "rate-limiting", "config": {"minute": 1, "limit_by": "credential", "policy": "local"}}),
        )
        .await;
        node.wait_config().await;
        assert_eq!(send(http.get(&url).bearer_auth(&first)).await.0, StatusCode::OK, "{claim}");
        assert_eq!(send(http.get(&url).bearer_auth(&second)).await.0, second_status, "{claim}");
    }
    node.stop().await;
}

#[tokio::test]
async fn signature_and_claim_checks_can_be_turned_off_and_claims_moved() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let token = mint(&node, &t).await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = part(&token, 1);
    claims["sub"] = json!("forged");
    let forged = format!("{}.{}.{}", parts[0], encode(&claims), parts[2]);
    let with = |extra: Value| how_to_with(&t, extra);

    only_plugin(&node, with(json!({"verify_signature": false}))).await;
    upstream_of(http.get(&url).bearer_auth(&forged)).await;
    only_plugin(&node, how_to(&t)).await;
    assert_invalid(http.get(&url).bearer_auth(&forged), "signature checked by default").await;

    // The audience and the scopes read from other claims.
    only_plugin(
        &node,
        with(json!({"audience": [t.client_id], "audience_claim": ["client_id"],
            "scopes_required": [t.client_id], "scopes_claim": ["sub"]})),
    )
    .await;
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    only_plugin(&node, with(json!({"scopes_required": ["my-scope"], "scopes_claim": ["sub"]}))).await;
    assert_eq!(send(http.get(&url).bearer_auth(&token)).await.0, StatusCode::FORBIDDEN);

    // Past `exp`, and for the wrong audience: refused unless claims are not verified.
    let exp = part(&token, 1)["exp"].as_i64().unwrap();
    clock.set(gatehouse_model::Timestamp::from_secs(exp + 1));
    only_plugin(&node, with(json!({"audience": ["http://elsewhere.dev"]}))).await;
    assert_invalid(http.get(&url).bearer_auth(&token), "expired").await;
    only_plugin(
        &node,
        with(json!({"audience": ["http://elsewhere.dev"], "verify_claims": false,
        "unauthorized_error_message": "Who are you?"})),
    )
    .await;
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    let (status, _, body) = send(http.get(&url)).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, r#"{"message":"Who are you?"}"#));
    node.stop().await;
}

#[tokio::test]
async fn keys_older_than_cache_ttl_are_fetched_again_and_a_hanging_idp_is_cut_off_by_timeout() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    let stand_in = StandIn::start(&t.issuer).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let token = mint(&node, &t).await;
    let mut config = how_to(&t);
    config["issuer"] = json!(stand_in.url());
    config["cache_ttl"] = json!(60);
    only_plugin(&node, config.clone()).await;
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    // The keys are consulted for tokens not verified before (a verified token is served from the node's
    // verified tokens until it expires).
    clock.advance_secs(59);
    upstream_of(http.get(&url).bearer_auth(mint(&node, &t).await)).await;
    assert_eq!(stand_in.jwks.load(Ordering::SeqCst), 1);
    clock.advance_secs(1);
    upstream_of(http.get(&url).bearer_auth(mint(&node, &t).await)).await;
    assert_eq!(stand_in.jwks.load(Ordering::SeqCst), 2, "refreshed once stale");

    // A new issuer (nothing known of it) that never answers: 500 once `timeout` (ms) has passed.
    let hanging = StandIn::start(&t.issuer).await;
    hanging.hanging.store(true, Ordering::SeqCst);
    config["issuer"] = json!(hanging.url());
    config["timeout"] = json!(200);
    only_plugin(&node, config).await;
    let (status, _, _) = send(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    node.stop().await;
}

#[tokio::test]
async fn what_the_introspection_endpoint_is_sent() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let stand_in = StandIn::start(&t.issuer).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let far = gatehouse_model::SystemClock.now().secs() + 3600;
    *stand_in.active.lock().unwrap() = json!({"active": true, "token": "opaque-1", "exp": far});
    // The issuer is the node's own; the endpoint is configured, so discovery's is not used.
    let config = json!({"issuer": t.issuer, "auth_methods": ["introspection"],
        "introspection_endpoint": format!("{}/introspect", stand_in.url()),
        "client_id": ["the-client"], "client_secret": ["the secret"]});
    only_plugin(&node, config.clone()).await;
    upstream_of(http.get(&url).bearer_auth("opaque-1")).await;
    let (authorization, form) = stand_in.last.lock().unwrap().clone();
    let basic = base64::engine::general_purpose::STANDARD.encode("the-client:the+secret");
    assert_eq!(authorization, Some(format!("Basic {basic}")), "client_secret_basic, form-encoded as RFC 6749 says");
    assert_eq!(form, [("token".to_owned(), "opaque-1".to_owned()), ("token_type_hint".into(), "access_token".into())]);

    let mut post = config.clone();
    post["introspection_endpoint_auth_method"] = json!("client_secret_post");
    post["introspection_hint"] = json!("opaque");
    post["introspection_token_param_name"] = json!("tok");
    post["cache_introspection"] = json!(false);
    only_plugin(&node, post).await;
    let before = stand_in.introspections.load(Ordering::SeqCst);
    upstream_of(http.get(&url).bearer_auth("opaque-1")).await;
    upstream_of(http.get(&url).bearer_auth("opaque-1")).await;
    assert_eq!(stand_in.introspections.load(Ordering::SeqCst), before + 2, "not cached");
    let (authorization, form) = stand_in.last.lock().unwrap().clone();
    assert_eq!(authorization, None);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("tok", "opaque-1"),
            ("token_type_hint", "opaque"),
            ("client_id", "the-client"),
            ("client_secret", "the secret")
        ]
    );

    // `active` unchecked: an inactive answer is taken as it is.
    let mut unchecked = config;
    unchecked["introspection_check_active"] = json!(false);
    only_plugin(&node, unchecked).await;
    upstream_of(http.get(&url).bearer_auth("opaque-2")).await;
    node.stop().await;
}

/// An issuer behind HTTPS with a self-signed certificate: refused with `ssl_verify` (Kong's default), used without.
#[tokio::test]
async fn ssl_verify_decides_whether_an_untrusted_issuer_is_used() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let stand_in = StandIn::start(&t.issuer).await;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = format!("https://{}", listener.local_addr().unwrap());
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (plain, seen) = (stand_in.url(), handshakes.clone());
    // Relays each request to the plain stand-in (whose discovery names its plain `jwks_uri`).
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (acceptor, seen, plain) = (acceptor.clone(), seen.clone(), plain.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                seen.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let url = format!("{plain}{}", req.uri().path());
                    async move {
                        let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(body)))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let token = mint(&node, &t).await;
    let mut config = how_to(&t);
    config["issuer"] = json!(https);
    only_plugin(&node, config.clone()).await;
    let (status, _, _) = send(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(handshakes.load(Ordering::SeqCst), 0, "the certificate was refused");
    config["ssl_verify"] = json!(false);
    only_plugin(&node, config).await;
    upstream_of(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
    node.stop().await;
}
