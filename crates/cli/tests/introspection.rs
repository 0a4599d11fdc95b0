//! The `oauth2-introspection` plugin in front of the echo upstream: against the node's own issuer (real tokens from
//! `/oauth/token`, checked at `/introspect`) and, for failures and counting calls, against a scripted IdP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_model::gateway::EntityKind;
use gatehouse_model::{Clock, SystemClock, Timestamp};
use gatehouse_testkit::{TestNode, Tutorial};

const MISSING: &str = r#"{"error":"invalid_request","error_description":"The access token is missing"}"#;
const INVALID: &str = r#"{"error":"invalid_token","error_description":"The access token is invalid or has expired"}"#;
const INVALID_CHALLENGE: &str =
    r#"Bearer realm="service" error="invalid_token" error_description="The access token is invalid or has expired""#;

/// Replaces every plugin with one global `oauth2-introspection` instance; returns its id once the proxy runs it.
async fn only_plugin(node: &TestNode, config: Value) -> String {
    let (_, list) = node.admin(Method::GET, "/plugins", None).await;
    for p in list["data"].as_array().unwrap() {
        node.admin(Method::DELETE, &format!("/plugins/{}", p["id"].as_str().unwrap()), None).await;
    }
    let plugin =
        node.admin_ok(Method::POST, "/plugins", json!({"name": "oauth2-introspection", "config": config})).await;
    node.wait_config().await;
    plugin["id"].as_str().unwrap().to_owned()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

fn tutorial_config(t: &Tutorial) -> Value {
    json!({"introspection_url": format!("{}/introspect", t.issuer),
        "authorization_value": basic(&t.client_id, &t.client_secret),
        "consumer_by": "client_id", "custom_claims_forward": ["Claim"]})
}

async fn mint(node: &TestNode, t: &Tutorial) -> String {
    let (status, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Sends a request through the proxy; returns status, response headers and the body as text.
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

/// Names of the identity headers the upstream saw.
fn identity_headers(echo: &Value) -> Vec<String> {
    let mut names: Vec<String> = echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            let k = k.to_ascii_lowercase();
            k.starts_with("x-credential-") || k.starts_with("x-consumer-") || k == "x-anonymous-consumer"
        })
        .cloned()
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_tutorials_plugin_protects_anything() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    // Globally, through Konnect's core-entities path with the tutorial's trailing slash.
    let (_, cps) = node.get("/v2/control-planes?filter%5Bname%5D%5Beq%5D=default").await;
    let cp = cps["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, plugin) = node
        .post(
            &format!("/v2/control-planes/{cp}/core-entities/plugins/"),
            json!({"name": "oauth2-introspection", "config": tutorial_config(&t)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    node.wait_config().await;
    let http = reqwest::Client::new();
    let anything = format!("{}/anything", node.proxy_url());

    let (status, headers, body) = send(http.get(&anything)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, MISSING);
    assert_eq!(headers["www-authenticate"], r#"Bearer realm="service""#);
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(headers["x-kong-request-id"].len(), 32);

    let token = mint(&node, &t).await;
    let echo = upstream_of(http.get(&anything).bearer_auth(&token)).await;
    let up = &echo["headers"];
    let expected = [
        "X-Credential-Aud",
        "X-Credential-Client-Id",
        "X-Credential-Exp",
        "X-Credential-Iat",
        "X-Credential-Iss",
        "X-Credential-Jti",
        "X-Credential-Nbf",
        "X-Credential-Scope",
        "X-Credential-Sub",
        "X-Credential-Token-Type",
    ];
    assert_eq!(identity_headers(&echo), expected, "exactly SPEC §4.1's headers: {up}");
    assert_eq!(up["X-Credential-Client-Id"], t.client_id);
    assert_eq!(up["X-Credential-Scope"], "my-scope");
    assert_eq!(up["X-Credential-Sub"], t.client_id);
    assert_eq!(up["X-Credential-Iss"], t.issuer);
    assert_eq!(up["X-Credential-Aud"], "http://myhttpbin.dev");
    assert_eq!(up["X-Credential-Token-Type"], "Bearer");
    assert!(up["X-Credential-Exp"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(up["Authorization"], format!("Bearer {token}"), "kept without hide_credentials");

    let (status, headers, body) = send(http.get(&anything).bearer_auth("not-a-token")).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, INVALID));
    assert_eq!(headers["www-authenticate"], INVALID_CHALLENGE);
    node.stop().await;
}

#[tokio::test]
async fn token_locations_and_hide_credentials() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    let mut config = tutorial_config(&t);
    only_plugin(&node, config.clone()).await;
    let token = mint(&node, &t).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let boundary = "gh-boundary";
    let multipart = |token: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n{token}\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"note\"\r\n\r\nkept\r\n--{boundary}--\r\n"
        )
    };
    let multipart_type = format!("multipart/form-data; boundary={boundary}");

    // Every place Kong looks, case-insensitive schemes included.
    let ok = [
        http.get(format!("{url}?access_token={token}")),
        http.post(&url).form(&[("access_token", token.as_str()), ("a", "1")]),
        http.post(&url).json(&json!({"access_token": token, "a": 1})),
        http.post(&url).header("content-type", &multipart_type).body(multipart(&token)),
        http.get(&url).header("authorization", format!("bearer {token}")),
        http.get(&url).header("authorization", format!("Token {token}")),
    ];
    for req in ok {
        let echo = upstream_of(req).await;
        assert_eq!(echo["headers"]["X-Credential-Client-Id"], t.client_id);
    }
    // Not a token: other schemes, three parts, an empty parameter (which, as in Kong, decides even with a good
    // header beside it), a body type that is not looked into.
    let missing = [
        http.get(&url).header("authorization", format!("Basic {token}")),
        http.get(&url).header("authorization", format!("Bearer {token} extra")),
        http.get(format!("{url}?access_token=")),
        http.get(format!("{url}?access_token=")).bearer_auth(&token),
        http.post(format!("{url}?access_token={token}")).form(&[("access_token", "")]),
        http.post(&url).header("content-type", "text/plain").body(format!("access_token={token}")),
    ];
    for req in missing {
        let (status, _, body) = send(req).await;
        assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, MISSING));
    }
    // A JSON body that is not an object: Kong's bare 400.
    let (status, _, body) = send(http.post(&url).json(&json!(["x"]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // hide_credentials: the header, the query parameter, the body parameter (same content type).
    config["hide_credentials"] = json!(true);
    only_plugin(&node, config).await;
    let echo = upstream_of(http.get(&url).bearer_auth(&token)).await;
    assert!(echo["headers"].get("Authorization").is_none(), "{echo}");
    let echo = upstream_of(http.get(format!("{url}?a=1&access_token={token}&b=%20x"))).await;
    assert_eq!(echo["url"], format!("{}/anything?a=1&b=%20x", node.echo_url()));
    let echo = upstream_of(
        http.post(format!("{url}?access_token={token}")).form(&[("access_token", token.as_str()), ("a", "1")]),
    )
    .await;
    assert_eq!(echo["form"], json!({"a": "1"}));
    assert_eq!(echo["args"], json!({}));
    assert_eq!(echo["headers"]["Content-Type"], "application/x-www-form-urlencoded");
    let echo = upstream_of(http.post(&url).json(&json!({"access_token": token, "a": 1}))).await;
    assert_eq!(echo["json"], json!({"a": 1}), "JSON stays JSON (Kong re-encodes it as a form)");
    assert_eq!(echo["headers"]["Content-Type"], "application/json");
    // With the token in the query, a body without the parameter goes on untouched: key order and number forms as
    // sent.
    for (content_type, raw) in [
        ("application/json", r#"{"b":1,"a":12345678901234567890123,"c":[1.50]}"#),
        ("application/x-www-form-urlencoded", "b=1&a=%20x"),
    ] {
        let with_token = format!("{url}?access_token={token}");
        let echo = upstream_of(http.post(with_token).header("content-type", content_type).body(raw)).await;
        assert_eq!(echo["url"], format!("{}/anything", node.echo_url()));
        let received = if content_type.ends_with("json") { echo["data"].clone() } else { echo["form"].clone() };
        let expected = if content_type.ends_with("json") { json!(raw) } else { json!({"b": "1", "a": " x"}) };
        assert_eq!(received, expected, "{echo}");
        assert_eq!(echo["headers"]["Content-Length"], raw.len().to_string(), "{echo}");
    }
    let echo = upstream_of(http.post(&url).header("content-type", &multipart_type).body(multipart(&token))).await;
    assert_eq!(echo["headers"]["Content-Type"], multipart_type);
    let data = echo["data"].as_str().unwrap();
    assert!(!data.contains(&token) && data.contains("kept"), "{data}");
    node.stop().await;
}

#[tokio::test]
async fn consumers_anonymous_preflight_and_spoofed_headers() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    let mapped = node.admin_ok(Method::POST, "/consumers", json!({"username": "app", "custom_id": t.client_id})).await;
    let anon = node.admin_ok(Method::POST, "/consumers", json!({"username": "guest"})).await;
    let token = mint(&node, &t).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let spoofed = |req: reqwest::RequestBuilder| {
        req.header("x-consumer-username", "admin")
            .header("x-consumer-id", "spoof")
            .header("x-credential-scope", "admin")
            .header("x-credential-identifier", "admin")
            .header("x-anonymous-consumer", "false")
    };

    // consumer_by client_id: the client id is a consumer's custom_id.
    let mut config = tutorial_config(&t);
    only_plugin(&node, config.clone()).await;
    let echo = upstream_of(spoofed(http.get(&url).bearer_auth(&token))).await;
    let up = &echo["headers"];
    assert_eq!(up["X-Consumer-Id"], mapped["id"]);
    assert_eq!(up["X-Consumer-Username"], "app");
    assert_eq!(up["X-Consumer-Custom-Id"], t.client_id);
    assert_eq!(up["X-Credential-Scope"], "my-scope", "the client's copy is gone");
    assert!(up.get("X-Credential-Identifier").is_none() && up.get("X-Anonymous-Consumer").is_none(), "{up}");
    // The mapped consumer's own plugins run after it (Kong: "invokes other consumer-specific plugins").
    let scoped = json!({"name": "request-termination", "consumer": {"id": mapped["id"]},
        "config": {"status_code": 418, "message": "app only"}});
    node.admin_ok(Method::POST, "/plugins", scoped).await;
    node.wait_config().await;
    let (status, _, body) = send(http.get(&url).bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT, "{body}");
    assert!(body.contains("app only"), "{body}");
    assert_eq!(send(http.get(&url)).await.0, StatusCode::UNAUTHORIZED, "no token, no consumer, no consumer plugin");

    // consumer_by username: the answer has no `username`, so no consumer, and no spoofed consumer either.
    config["consumer_by"] = json!("username");
    only_plugin(&node, config.clone()).await;
    let echo = upstream_of(spoofed(http.get(&url).bearer_auth(&token))).await;
    assert!(identity_headers(&echo).iter().all(|h| h.starts_with("X-Credential-")), "{echo}");
    assert_eq!(echo["headers"]["X-Credential-Scope"], "my-scope");

    // Anonymous, by username then by id: failures go on as the anonymous consumer, without credentials.
    for key in ["guest", anon["id"].as_str().unwrap()] {
        config["anonymous"] = json!(key);
        only_plugin(&node, config.clone()).await;
        let echo = upstream_of(spoofed(http.get(&url))).await;
        let up = &echo["headers"];
        assert_eq!(up["X-Anonymous-Consumer"], "true");
        assert_eq!(up["X-Consumer-Username"], "guest");
        assert_eq!(up["X-Consumer-Id"], anon["id"]);
        assert!(up.get("X-Credential-Scope").is_none() && up.get("X-Credential-Identifier").is_none(), "{up}");
        let echo = upstream_of(http.get(&url).bearer_auth("bad")).await;
        assert_eq!(echo["headers"]["X-Anonymous-Consumer"], "true");
        // A good token is still the real credential.
        let echo = upstream_of(http.get(&url).bearer_auth(&token)).await;
        assert!(echo["headers"].get("X-Anonymous-Consumer").is_none());
        assert_eq!(echo["headers"]["X-Credential-Client-Id"], t.client_id);
    }
    // hide_credentials hides a token that failed as well: the request goes on as the anonymous consumer without it.
    config["hide_credentials"] = json!(true);
    only_plugin(&node, config.clone()).await;
    let echo = upstream_of(http.get(&url).bearer_auth("bad")).await;
    assert_eq!(echo["headers"]["X-Anonymous-Consumer"], "true");
    assert!(echo["headers"].get("Authorization").is_none(), "{echo}");
    let echo = upstream_of(http.get(format!("{url}?access_token=bad&a=1"))).await;
    assert_eq!(echo["headers"]["X-Anonymous-Consumer"], "true");
    assert_eq!(echo["url"], format!("{}/anything?a=1", node.echo_url()));
    config["hide_credentials"] = json!(false);

    config["anonymous"] = json!("nobody");
    only_plugin(&node, config.clone()).await;
    let (status, headers, body) = send(http.get(&url)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["message"], "anonymous consumer nobody is configured but doesn't exist");
    assert_eq!(body["request_id"], headers["x-kong-request-id"].to_str().unwrap());

    // run_on_preflight=false: OPTIONS passes untouched; other methods still need a token.
    config["anonymous"] = json!("");
    config["run_on_preflight"] = json!(false);
    only_plugin(&node, config.clone()).await;
    let (status, _, _) = send(http.request(Method::OPTIONS, &url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(send(http.get(&url)).await.0, StatusCode::UNAUTHORIZED);
    config["run_on_preflight"] = json!(true);
    only_plugin(&node, config).await;
    assert_eq!(send(http.request(Method::OPTIONS, &url)).await.0, StatusCode::UNAUTHORIZED);
    node.stop().await;
}

/// The entry's `ttl` lapses on the node's clock, which the test moves: no sleeping past half a second of wall time.
#[tokio::test]
async fn a_revoked_token_is_refused_once_its_entry_lapses() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;
    let mut config = tutorial_config(&t);
    config["ttl"] = json!(0.5);
    only_plugin(&node, config).await;
    let token = mint(&node, &t).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    assert_eq!(send(http.get(&url).bearer_auth(&token)).await.0, StatusCode::OK);
    let (status, _) =
        node.form(&format!("{}/revoke", t.issuer), Some((&t.client_id, &t.client_secret)), &[("token", &token)]).await;
    assert_eq!(status, StatusCode::OK);
    // Within the entry's half second the cached answer still serves: the refusal below is the lapse's doing.
    clock.advance_micros(499_999);
    assert_eq!(send(http.get(&url).bearer_auth(&token)).await.0, StatusCode::OK, "still cached");
    clock.advance_micros(1);
    let (status, _, body) = send(http.get(&url).bearer_auth(&token)).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, INVALID));
    node.stop().await;
}

/// A scripted introspection endpoint: answers as told and remembers what it was sent.
#[derive(Clone, Default)]
struct Idp {
    state: Arc<Mutex<IdpState>>,
}

#[derive(Default)]
struct IdpState {
    reply: Option<(u16, String, Duration)>,
    calls: usize,
    last: Option<(HeaderMap, Vec<(String, String)>)>,
}

impl Idp {
    async fn start() -> (Idp, String) {
        let idp = Idp::default();
        let app = axum::Router::new().route("/introspect", axum::routing::post(answer)).with_state(idp.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect?dropped=1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (idp, url)
    }

    fn reply(&self, status: u16, body: impl Into<String>, delay: Duration) {
        let mut s = self.state.lock().unwrap();
        s.reply = Some((status, body.into(), delay));
        s.calls = 0;
    }

    fn active(&self, answer: Value) {
        self.reply(200, answer.to_string(), Duration::ZERO);
    }

    fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    fn last(&self) -> (HeaderMap, Vec<(String, String)>) {
        self.state.lock().unwrap().last.clone().unwrap()
    }
}

async fn answer(State(idp): State<Idp>, headers: HeaderMap, body: String) -> Response {
    let (status, reply, delay) = {
        let mut s = idp.state.lock().unwrap();
        s.calls += 1;
        let form = form_pairs(&body);
        s.last = Some((headers, form));
        s.reply.clone().unwrap_or((200, r#"{"active":false}"#.into(), Duration::ZERO))
    };
    tokio::time::sleep(delay).await;
    (axum::http::StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], reply).into_response()
}

fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")))
        .collect()
}

/// Wall time in whole seconds, for `exp`s far enough ahead (an hour, a minute) that no test comes near them.
fn now() -> u64 {
    u64::try_from(SystemClock.now().secs()).unwrap()
}

fn scripted_config(url: &str) -> Value {
    json!({"introspection_url": url, "authorization_value": "Basic c2NyaXB0OnNlY3JldA==", "timeout": 300,
        "custom_claims_forward": ["my_claim", "groups"]})
}

#[tokio::test]
async fn what_the_idp_is_sent_and_what_the_upstream_gets() {
    let node = TestNode::start().await;
    node.example_service().await;
    let (idp, idp_url) = Idp::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let exp = now() + 3600;
    idp.active(json!({"active": true, "username": "alice", "client_id": "c1", "scope": "a b", "exp": exp,
        "my_claim": "v", "groups": ["g1", "g2"], "unlisted": "no", "sub": null}));
    // consumer_by username, Kong's default: the answer's `username` is a consumer's.
    let alice = node.admin_ok(Method::POST, "/consumers", json!({"username": "alice", "custom_id": "c-alice"})).await;
    let mut config = scripted_config(&idp_url);
    config["token_type_hint"] = json!("access_token");
    config["custom_introspection_headers"] = json!({"x_tenant": "t1"});
    only_plugin(&node, config.clone()).await;

    let echo = upstream_of(http.get(format!("{url}/x?q=1")).bearer_auth("tok+/=")).await;
    let up = &echo["headers"];
    assert_eq!(up["X-Credential-Identifier"], "alice");
    assert_eq!(up["X-Consumer-Id"], alice["id"]);
    assert_eq!((&up["X-Consumer-Username"], &up["X-Consumer-Custom-Id"]), (&json!("alice"), &json!("c-alice")));
    assert_eq!(up["X-Credential-My-Claim"], "v", "custom claims: _ becomes -");
    assert_eq!(up["X-Credential-Groups"], "g1,g2", "one header per array value, joined by the echo");
    assert_eq!(up["X-Credential-Exp"], exp.to_string());
    assert!(up.get("X-Credential-Unlisted").is_none() && up.get("X-Credential-Sub").is_none(), "{up}");
    let (sent, form) = idp.last();
    assert_eq!(form, [("token".to_owned(), "tok+/=".to_owned()), ("token_type_hint".into(), "access_token".into())]);
    assert_eq!(sent["authorization"], "Basic c2NyaXB0OnNlY3JldA==");
    assert_eq!(sent["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(sent["accept"], "application/json");
    assert_eq!(sent["x-tenant"], "t1");
    assert!(sent.get("x-request-http-method").is_none());

    // Cached: a second request does not call the IdP.
    assert_eq!(idp.calls(), 1);
    upstream_of(http.get(&url).bearer_auth("tok+/=")).await;
    assert_eq!(idp.calls(), 1);

    // introspect_request: the method and path go along, and nothing is cached.
    config["introspect_request"] = json!(true);
    only_plugin(&node, config).await;
    upstream_of(http.post(format!("{url}/y?q=1")).bearer_auth("tok+/=")).await;
    upstream_of(http.post(format!("{url}/y?q=1")).bearer_auth("tok+/=")).await;
    assert_eq!(idp.calls(), 3);
    let (sent, _) = idp.last();
    assert_eq!(sent["x-request-http-method"], "POST");
    assert_eq!(sent["x-request-path"], "/anything/y");
    node.stop().await;
}

/// Custom header values are sealed at rest like `authorization_value`. A row an older version wrote with them in
/// clear still loads (the API returns them, the IdP gets them), and the plugin's next update seals them.
#[tokio::test]
async fn custom_header_values_are_sealed_and_old_clear_rows_still_work() {
    let node = TestNode::start().await;
    node.example_service().await;
    let (idp, idp_url) = Idp::start().await;
    idp.active(json!({"active": true, "client_id": "c1", "exp": now() + 3600}));
    let key = "idp-api-key-0123456789abcdef";
    let mut config = scripted_config(&idp_url);
    config["custom_introspection_headers"] = json!({"x_api_key": key, "x-tenant": "t1"});
    let id = only_plugin(&node, config).await;
    let (store, cp) = (&node.node.services.store, node.node.control_plane.id);
    let stored_row = || async {
        let entity = store.get_entity(cp, EntityKind::Plugin, id.parse().unwrap()).await.unwrap().unwrap();
        Value::Object(entity.data)
    };
    let row = stored_row().await;
    let headers = &row["config"]["custom_introspection_headers"];
    for name in ["x_api_key", "x-tenant"] {
        assert!(headers[name].as_str().unwrap().starts_with("gatehouse:sealed:v1:"), "{row}");
    }
    assert!(!row.to_string().contains(key) && !row.to_string().contains("\"t1\""), "{row}");
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    upstream_of(http.get(&url).bearer_auth("first")).await;
    let (sent, _) = idp.last();
    assert_eq!(sent["x-api-key"], key);
    assert_eq!(sent["x-tenant"], "t1");

    // As an older version stored it: the API key in clear.
    let mut entity = store.get_entity(cp, EntityKind::Plugin, id.parse().unwrap()).await.unwrap().unwrap();
    entity.data["config"]["custom_introspection_headers"]["x_api_key"] = json!(key);
    store.upsert_entity(cp, &entity).await.unwrap();
    node.wait_config().await;
    let (_, plugin) = node.admin(Method::GET, &format!("/plugins/{id}"), None).await;
    assert_eq!(plugin["config"]["custom_introspection_headers"], json!({"x_api_key": key, "x-tenant": "t1"}));
    upstream_of(http.get(&url).bearer_auth("second")).await;
    assert_eq!(idp.last().0["x-api-key"], key);

    // Any update seals it.
    let (status, _) = node.admin(Method::PATCH, &format!("/plugins/{id}"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!stored_row().await.to_string().contains(key), "sealed on the next write");
    node.wait_config().await;
    upstream_of(http.get(&url).bearer_auth("third")).await;
    assert_eq!(idp.last().0["x-api-key"], key);
    node.stop().await;
}

#[tokio::test]
async fn idp_failures_answer_401_and_are_never_cached() {
    let node = TestNode::start().await;
    node.example_service().await;
    let (idp, idp_url) = Idp::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    only_plugin(&node, scripted_config(&idp_url)).await;
    let refused = |req: reqwest::RequestBuilder| async move {
        let (status, headers, body) = send(req).await;
        assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, INVALID), "the IdP's body is never echoed");
        assert_eq!(headers["www-authenticate"], INVALID_CHALLENGE);
    };

    for (status, body, delay) in [
        (500, "idp secret stack trace".to_owned(), Duration::ZERO),
        (401, r#"{"error":"invalid_client"}"#.to_owned(), Duration::ZERO),
        (200, "<html>not json</html>".to_owned(), Duration::ZERO),
        (200, "[true]".to_owned(), Duration::ZERO),
        // Far past the plugin's 300 ms timeout: a gateway stalled by a loaded machine must not see this answer
        // arrive before its timer fires (the answer would win the race and the token would pass).
        (200, json!({"active": true}).to_string(), Duration::from_secs(30)),
    ] {
        idp.reply(status, body.clone(), delay);
        refused(http.get(&url).bearer_auth("t1")).await;
        refused(http.get(&url).bearer_auth("t1")).await;
        assert_eq!(idp.calls(), 2, "{status} {body}: failures are not cached");
    }
    // Once the IdP recovers, the same token works at once.
    idp.active(json!({"active": true, "exp": now() + 60}));
    upstream_of(http.get(&url).bearer_auth("t1")).await;

    // Inactive answers: not cached by default, cached for negative_ttl when set.
    idp.active(json!({"active": false}));
    refused(http.get(&url).bearer_auth("t2")).await;
    refused(http.get(&url).bearer_auth("t2")).await;
    assert_eq!(idp.calls(), 2);
    let mut config = scripted_config(&idp_url);
    config["negative_ttl"] = json!(60);
    only_plugin(&node, config).await;
    idp.active(json!({"active": false}));
    refused(http.get(&url).bearer_auth("t3")).await;
    refused(http.get(&url).bearer_auth("t3")).await;
    assert_eq!(idp.calls(), 1);

    // An IdP that is down.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/introspect", closed.local_addr().unwrap());
    drop(closed);
    only_plugin(&node, scripted_config(&dead)).await;
    refused(http.get(&url).bearer_auth("t1")).await;
    node.stop().await;
}

/// The gateway decides expiry on the node's clock, which the test moves to the microsecond: before, this test
/// answered `exp: now() + 1` in whole seconds of wall time and slept 2.1 s, and failed on a loaded machine.
#[tokio::test]
async fn an_expired_token_is_never_served_from_the_cache() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    node.example_service().await;
    let (idp, idp_url) = Idp::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let mut config = scripted_config(&idp_url);
    config["ttl"] = json!(300);
    only_plugin(&node, config).await;
    let exp = Timestamp::from_secs(clock.now().secs() + 60);
    idp.active(json!({"active": true, "exp": exp.secs()}));
    upstream_of(http.get(&url).bearer_auth("short")).await;
    upstream_of(http.get(&url).bearer_auth("short")).await;
    assert_eq!(idp.calls(), 1);
    // The last microsecond before exp: still served from the cache.
    clock.set(Timestamp::from_micros(exp.micros() - 1));
    upstream_of(http.get(&url).bearer_auth("short")).await;
    assert_eq!(idp.calls(), 1);
    clock.set(exp);
    idp.active(json!({"active": false}));
    let (status, _, _) = send(http.get(&url).bearer_auth("short")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(idp.calls(), 1, "asked again once exp passed, although ttl had not");
    node.stop().await;
}

#[tokio::test]
async fn a_thousand_concurrent_requests_make_one_introspection_call() {
    // A thousand connections from the proxy to the echo upstream at once: more than the echo listener's default
    // share of the open-file budget.
    let node = TestNode::builder().configure(|c| c.echo.max_connections = Some(4096)).start().await.unwrap();
    node.example_service().await;
    let (idp, idp_url) = Idp::start().await;
    let mut config = scripted_config(&idp_url);
    config["timeout"] = json!(10000);
    only_plugin(&node, config).await;
    idp.reply(
        200,
        json!({"active": true, "client_id": "c", "exp": now() + 600}).to_string(),
        Duration::from_millis(300),
    );
    let http = reqwest::Client::builder().pool_max_idle_per_host(1000).build().unwrap();
    let url = format!("{}/anything", node.proxy_url());
    let requests = (0..1000).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { http.get(&url).bearer_auth("fresh").send().await.map(|r| r.status()) })
    });
    let statuses = futures_util::future::join_all(requests).await;
    let ok = statuses.into_iter().filter(|s| matches!(s, Ok(Ok(StatusCode::OK)))).count();
    assert_eq!(ok, 1000);
    assert_eq!(idp.calls(), 1);
    node.stop().await;
}

#[tokio::test]
async fn an_idp_whose_certificate_is_not_trusted_is_never_asked() {
    let node = TestNode::start().await;
    node.example_service().await;
    // An HTTPS introspection endpoint with a self-signed certificate for 127.0.0.1, which answers "active" to
    // anything: a gateway that skipped verification would let every token through.
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
    let url = format!("https://{}/introspect", listener.local_addr().unwrap());
    let counts = Arc::new(Mutex::new((0usize, 0usize)));
    let seen = counts.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            seen.lock().unwrap().0 += 1;
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    seen.lock().unwrap().1 += 1;
                    let service = hyper::service::service_fn(|_req| async {
                        let active = json!({"active": true, "client_id": "c"}).to_string();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(active),
                        )))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                }
            });
        }
    });
    // The endpoint works for a client that skips verification (so the refusal below is the certificate's).
    let careless = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let answer: Value = careless.post(&url).form(&[("token", "t")]).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["active"], true);
    *counts.lock().unwrap() = (0, 0);

    only_plugin(&node, scripted_config(&url)).await;
    let http = reqwest::Client::new();
    let (status, headers, body) = send(http.get(format!("{}/anything", node.proxy_url())).bearer_auth("t")).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, INVALID));
    assert_eq!(headers["www-authenticate"], INVALID_CHALLENGE);
    let (connections, handshakes) = *counts.lock().unwrap();
    assert!(connections >= 1, "the gateway did try the IdP");
    assert_eq!(handshakes, 0, "and refused its certificate");
    node.stop().await;
}

/// `gateway.introspection_cache_entries = 0` keeps no answer anywhere: neither the node's cache nor the workers'
/// private copies, so every request asks the IdP.
#[tokio::test]
async fn a_cache_bound_of_zero_keeps_nothing() {
    let node = TestNode::builder()
        .configure(|c| c.gateway.introspection_cache_entries = Some(0))
        .start()
        .await
        .expect("SQLite node");
    node.example_service().await;
    let (idp, idp_url) = Idp::start().await;
    idp.active(json!({"active": true, "client_id": "c1", "exp": now() + 3600}));
    only_plugin(&node, scripted_config(&idp_url)).await;
    let http = reqwest::Client::new();
    for _ in 0..4 {
        upstream_of(http.get(format!("{}/anything", node.proxy_url())).bearer_auth("uncached")).await;
    }
    assert_eq!(idp.calls(), 4);
    node.stop().await;
}

/// Every error body a client of the protected proxy can get, end to end, as snapshots (`tests/snapshots/`): the
/// plugin's 401s (with their challenges), its 500 for a missing anonymous consumer, its 400 for an unreadable
/// body, and the proxy's own 404. Request ids are random per request: each is checked against the response's
/// `X-Kong-Request-Id` (when the body has one) and then redacted.
#[tokio::test]
async fn every_error_body_a_protected_route_answers() {
    let node = TestNode::start().await;
    node.example_service().await;
    let (idp, idp_url) = Idp::start().await;
    idp.active(json!({"active": false}));
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let mut config = scripted_config(&idp_url);
    only_plugin(&node, config.clone()).await;
    let seen = |req: reqwest::RequestBuilder| async move {
        let (status, headers, body) = send(req).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        if let Some(id) = body.get("request_id") {
            assert_eq!(id, headers["x-kong-request-id"].to_str().unwrap());
        }
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        json!({"status": status.as_u16(), "content-type": header("content-type"),
            "www-authenticate": header("www-authenticate"), "body": body})
    };
    let redacted = ".body.request_id";
    insta::assert_json_snapshot!("missing_token", seen(http.get(&url)).await, {redacted => "[request id]"});
    insta::assert_json_snapshot!("invalid_token", seen(http.get(&url).bearer_auth("t")).await, {redacted => "[request id]"});
    let not_an_object = http.post(&url).json(&json!(["x"]));
    insta::assert_json_snapshot!("unreadable_body", seen(not_an_object).await, {redacted => "[request id]"});
    let unrouted = http.get(format!("{}/nowhere", node.proxy_url()));
    insta::assert_json_snapshot!("no_route", seen(unrouted).await, {redacted => "[request id]"});
    config["anonymous"] = json!("nobody");
    only_plugin(&node, config).await;
    insta::assert_json_snapshot!("missing_anonymous_consumer", seen(http.get(&url)).await, {redacted => "[request id]"});
    node.stop().await;
}
