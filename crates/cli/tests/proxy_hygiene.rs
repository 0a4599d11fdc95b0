//! What the proxy does with a request before any plugin sees it: options a client names in `Connection` go
//! first, so they can never remove a header the gateway sets afterwards; header names with `_` are dropped as
//! nginx drops them; what RFC 9112 and nginx refuse (two `Host` or `Authorization` headers, none on HTTP/1.1,
//! lower-case methods, `CONNECT`, `TRACE`, a broken body) is refused with nothing sent upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{ProcessEnv, SeenLog, raw_exchange, recording_upstream, status_of};
use gatehouse_store::testing::TestDatabase;
use gatehouse_testkit::TestNode;

/// Calls the platform API of a `gatehouse serve` child with its token.
async fn platform(base: &str, token: &str, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new().post(format!("{base}{path}")).bearer_auth(token).json(&body).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

async fn admin(base: &str, method: Method, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new().request(method, format!("{base}{path}")).json(&body).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// Waits until the proxy answers `path` with `status`: the wait ends as soon as the change is in, so it may last up
/// to 30 s (a loaded machine's worst, not the usual tens of milliseconds).
async fn until_status(proxy: &str, path: &str, status: StatusCode) {
    for _ in 0..600 {
        if reqwest::get(format!("{proxy}{path}")).await.unwrap().status() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never answered {status}");
}

fn last(log: &SeenLog) -> common::Seen {
    log.lock().unwrap().last().cloned().expect("the upstream saw a request")
}

/// Issue 15, item 1, through the real binary: `Connection: X-Credential-Sub` (and the other identity and
/// forwarding names) used to delete the headers the introspection plugin had just set, because hop-by-hop
/// options were applied after the plugins. Item 4 too: underscore spellings of those names never reach the
/// upstream.
#[tokio::test]
async fn a_client_cannot_remove_or_spell_the_gateways_headers() {
    let db = TestDatabase::sqlite();
    let env = ProcessEnv::for_db(&db);
    let pat = env.create_token("hygiene").await;
    let (mut process, base) = env.serve(&[]).await;
    let admin_url = format!("http://{}", process.listener_address("admin").await);
    let proxy = format!("http://{}", process.listener_address("proxy").await);

    let server = platform(&base, &pat, "/v1/auth-servers", json!({"name": "s", "audience": "http://up"})).await;
    let issuer = server["issuer"].as_str().unwrap().to_owned();
    let clients = format!("/v1/auth-servers/{}/clients", server["id"].as_str().unwrap());
    let client = platform(&base, &pat, &clients, json!({"name": "c", "grant_types": ["client_credentials"]})).await;
    let (id, secret) = (client["id"].as_str().unwrap(), client["client_secret"].as_str().unwrap());
    let token: Value = reqwest::Client::new()
        .post(format!("{issuer}/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();

    let (upstream, log) = recording_upstream().await;
    admin(&admin_url, Method::POST, "/services", json!({"name": "up", "url": upstream})).await;
    admin(&admin_url, Method::POST, "/services/up/routes", json!({"paths": ["/prot"]})).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    admin(
        &admin_url,
        Method::POST,
        "/plugins",
        json!({"name": "oauth2-introspection", "config": {
            "introspection_url": format!("{issuer}/introspect"),
            "authorization_value": format!("Basic {basic}"), "consumer_by": "client_id"}}),
    )
    .await;
    // The route and the plugin can reach the proxy in two configuration versions: wait for the plugin (a request
    // without a token refused), not just the route.
    until_status(&proxy, "/prot", StatusCode::UNAUTHORIZED).await;

    let res = reqwest::Client::new()
        .get(format!("{proxy}/prot"))
        .bearer_auth(&token)
        .header(
            "Connection",
            "X-Credential-Sub, X-Credential-Client-ID, X-Consumer-ID, X-Anonymous-Consumer, X-Forwarded-For, \
             X-Real-IP, Via, X-Kong-Request-Id",
        )
        .header("X_Credential_Sub", "attacker")
        .header("X_Consumer_ID", "attacker")
        .header("x_anonymous_consumer", "true")
        .header("X_Forwarded_For", "10.9.9.9")
        .header("X_Harmless", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = last(&log);
    assert_eq!(seen.header("x-credential-sub"), [id], "{seen:?}");
    assert_eq!(seen.header("x-credential-client-id"), [id], "{seen:?}");
    assert_eq!(seen.header("x-forwarded-for"), ["127.0.0.1"], "{seen:?}");
    assert_eq!(seen.header("x-real-ip"), ["127.0.0.1"], "{seen:?}");
    assert_eq!(seen.header("via").len(), 1, "{seen:?}");
    assert_eq!(seen.header("x-kong-request-id").len(), 1, "{seen:?}");
    assert!(seen.header("connection").is_empty(), "{seen:?}");
    let underscored: Vec<_> = seen.headers.iter().filter(|(n, _)| n.contains('_')).collect();
    assert!(underscored.is_empty(), "no name with `_` reaches the upstream: {underscored:?}");
    // Without a consumer mapped, no X-Consumer-* and no anonymous marker, whatever the client spelled.
    assert!(seen.headers.iter().all(|(n, _)| !n.starts_with("x-consumer") && !n.contains("anonymous")), "{seen:?}");
    process.interrupt(Duration::from_secs(10)).await;
}

/// A node with one service (the recording upstream) on `/`, and `underscores_in_headers` or trusted proxies
/// as asked.
async fn node_with_upstream(
    configure: impl FnOnce(&mut gatehouse_runtime::config::Config) + Send + 'static,
) -> (TestNode, String, SeenLog) {
    let node = TestNode::builder().configure(configure).start().await.unwrap();
    let (upstream, log) = recording_upstream().await;
    node.admin_ok(Method::POST, "/services", json!({"name": "up", "url": upstream})).await;
    node.admin_ok(Method::POST, "/services/up/routes", json!({"name": "all", "paths": ["/"]})).await;
    node.admin_ok(
        Method::POST,
        "/services/up/routes",
        json!({"name": "named-host", "hosts": ["routed.example"], "paths": ["/"], "preserve_host": true}),
    )
    .await;
    node.wait_config().await;
    let proxy = node.proxy_url().trim_start_matches("http://").to_owned();
    (node, proxy, log)
}

#[tokio::test]
async fn malformed_heads_are_refused_before_anything_goes_upstream() {
    let (_node, proxy, log) = node_with_upstream(|_| {}).await;
    let ok = raw_exchange(&proxy, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&ok), 200, "the harness works: {ok}");
    assert_eq!(log.lock().unwrap().len(), 1);

    let cases: [(&str, &[u8], u16); 9] = [
        ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("no Host on HTTP/1.1", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
        ("a Host that is not a host", b"GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n", 400),
        (
            "two Authorization headers",
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
            400,
        ),
        ("a lower-case method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("a method nginx cannot read", b"GeT / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (
            "CONNECT",
            b"CONNECT routed.example:443 HTTP/1.1\r\nHost: routed.example:443\r\nConnection: close\r\n\r\n",
            405,
        ),
        ("TRACE", b"TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
        (
            "a malformed chunked body",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nmore\r\n0\r\n\r\n",
            400,
        ),
    ];
    for (what, request, status) in cases {
        let answer = raw_exchange(&proxy, request).await;
        assert_eq!(status_of(&answer), status, "{what}: {answer}");
        assert!(answer.contains(r#""request_id""#), "{what}: Kong's body: {answer}");
        assert_eq!(log.lock().unwrap().len(), 1, "{what}: nothing reached the upstream");
    }
}

#[tokio::test]
async fn hosts_come_from_the_request_target_when_it_names_one() {
    let (_node, proxy, log) = node_with_upstream(|_| {}).await;
    // Absolute form: the target's host routes and becomes the Host (RFC 9112 §3.2.2), whatever Host says.
    let answer = raw_exchange(
        &proxy,
        b"GET http://routed.example/abs HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = last(&log);
    assert_eq!(seen.header("host"), ["routed.example"], "preserve_host sends the target's host: {seen:?}");
    assert_eq!(seen.header("x-forwarded-host"), ["routed.example"], "{seen:?}");
    // HTTP/1.0 may leave Host out.
    let answer = raw_exchange(&proxy, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&answer), 200, "{answer}");
}

#[tokio::test]
async fn small_chunked_bodies_arrive_whole_and_large_ones_stream() {
    let (_node, proxy, log) = node_with_upstream(|_| {}).await;
    for size in [5usize, 64 * 1024, 200 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let mut request =
            b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for chunk in data.chunks(7000) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let answer = raw_exchange(&proxy, &request).await;
        assert_eq!(status_of(&answer), 200, "{size} bytes: {answer}");
        let seen = last(&log);
        assert_eq!(seen.body.as_deref(), Some(data.as_slice()), "{size} bytes arrive intact");
        if size <= 64 * 1024 {
            assert_eq!(seen.header("content-length"), [size.to_string()], "read whole, sent with a length");
        } else {
            assert_eq!(seen.header("transfer-encoding"), ["chunked"], "larger bodies stream");
        }
    }
}

#[tokio::test]
async fn underscores_and_forwarded_follow_the_settings() {
    // Allowed underscores pass, except those that spell a header the gateway owns; `Forwarded` from a trusted
    // proxy is kept.
    let (node, _proxy, log) = node_with_upstream(|c| {
        c.gateway.underscores_in_headers = true;
        c.proxy.trusted_ips = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let res = reqwest::Client::new()
        .get(format!("{}/x", node.proxy_url()))
        .header("X_Custom", "1")
        .header("X_Consumer_ID", "attacker")
        .header("x_kong_request_id", "attacker")
        .header("X_Real_IP", "10.9.9.9")
        .header("Forwarded", "for=192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = last(&log);
    let underscored: Vec<&str> =
        seen.headers.iter().filter(|(n, _)| n.contains('_')).map(|(n, _)| n.as_str()).collect();
    assert_eq!(underscored, ["x_custom"], "{seen:?}");
    assert_eq!(seen.header("forwarded"), ["for=192.0.2.1"]);

    // From an untrusted peer, `Forwarded` is the client's claim and goes, as X-Forwarded-* are replaced.
    let (node, _proxy, log) = node_with_upstream(|_| {}).await;
    let res = reqwest::Client::new()
        .get(format!("{}/x", node.proxy_url()))
        .header("Forwarded", "for=192.0.2.1;proto=https")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = last(&log);
    assert!(seen.header("forwarded").is_empty(), "{seen:?}");
    assert_eq!(seen.header("x-forwarded-proto"), ["http"], "{seen:?}");
}
