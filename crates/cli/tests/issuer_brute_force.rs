//! The issuer's brute-force limits through real HTTP: distinct wrong secrets are counted per auth server, per
//! (client, address) and per client; repeats of one wrong secret and failures of other clients never refuse a
//! correct secret, not even from a shared address; spent limits answer 429 with `Retry-After`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tokio::time::Instant;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, Tutorial};

/// A token request, from `from` (as `X-Forwarded-For`, believed from 127.0.0.1 when the test trusts it).
async fn attempt(url: &str, from: Option<&str>, id: &str, secret: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(format!("{url}/oauth/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
    ]);
    if let Some(from) = from {
        req = req.header("x-forwarded-for", from);
    }
    req.send().await.unwrap()
}

async fn status(url: &str, from: Option<&str>, id: &str, secret: &str) -> StatusCode {
    attempt(url, from, id, secret).await.status()
}

/// A 429 as RFC 6749 endpoints answer it: JSON error body and a `Retry-After` within the window.
async fn assert_throttled(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("retry"), "{body}");
}

async fn add_client(node: &TestNode, server_id: &str, id: &str) -> String {
    let secret = format!("{id}-secret-{}", "s".repeat(24));
    let (status, body) = node
        .put(
            &format!("/v1/auth-servers/{server_id}/clients/{id}"),
            json!({"name": id, "grant_types": ["client_credentials"], "client_secret": secret}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    secret
}

fn no_delay(c: &mut gatehouse_runtime::config::Config) {
    c.issuer.brute_force.failure_delay_ms = Some(0);
}

/// The test client is a proxy whose `X-Forwarded-For` is believed, so one test can call from many addresses.
fn behind_trusted_proxy(c: &mut gatehouse_runtime::config::Config) {
    no_delay(c);
    c.issuer.trusted_ips = vec!["127.0.0.1/32".parse().unwrap()];
}

#[tokio::test]
async fn a_misconfigured_twin_repeating_one_wrong_secret_never_locks_out_the_client() {
    // Default limits, no trusted proxies: the twin and the client share 127.0.0.1.
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    assert_eq!(status(&t.issuer, None, &t.client_id, &t.client_secret).await, StatusCode::OK);
    let started = Instant::now();
    assert_eq!(status(&t.issuer, None, &t.client_id, "an-old-rotated-secret").await, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= Duration::from_secs(1), "a new wrong secret is answered after the delay");
    for _ in 0..50 {
        assert_eq!(status(&t.issuer, None, &t.client_id, "an-old-rotated-secret").await, StatusCode::UNAUTHORIZED);
    }
    let (code, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, token).await["active"], true);
    node.stop().await;
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

#[tokio::test]
async fn failures_from_a_shared_address_never_refuse_a_correct_secret() {
    // As behind a load balancer without `issuer.trusted_ips`: every caller is 127.0.0.1.
    let node = TestNode::builder().configure(no_delay).start().await.unwrap();
    let t: Tutorial = node.tutorial_setup("RS256").await;
    let gateway_secret = add_client(&node, &t.server_id, "gateway").await;
    node.example_service().await;
    node.admin_ok(
        Method::POST,
        "/plugins",
        json!({"name": "oauth2-introspection", "config": {
            "introspection_url": format!("{}/introspect", t.issuer),
            "authorization_value": basic("gateway", &gateway_secret)}}),
    )
    .await;
    node.wait_config().await;

    for n in 0..200 {
        let res = attempt(&t.issuer, None, &format!("victim-{}", n % 20), &format!("guess-{n}")).await;
        if n < 100 {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
        } else {
            assert_throttled(res).await;
        }
    }
    // The address is over its limit, yet correct secrets from it pass: the client's, and the gateway's
    // introspection client behind every protected route.
    let (code, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(node.introspect(&t.issuer, "gateway", &gateway_secret, &token).await["active"], true);
    let routed =
        reqwest::Client::new().get(format!("{}/anything", node.proxy_url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(routed.status(), StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn distinct_guesses_are_bounded_per_client_from_one_address_and_from_all() {
    let node = TestNode::builder().manual_clock().configure(behind_trusted_proxy).start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("ES256").await;
    let neighbour_secret = add_client(&node, &t.server_id, "neighbour").await;
    let (id, secret) = (t.client_id.as_str(), t.client_secret.as_str());
    let home = Some("192.0.2.10");
    assert_eq!(status(&t.issuer, home, id, secret).await, StatusCode::OK);

    // One address: ten different wrong secrets, then even the right one goes unchecked there.
    let guesser = Some("203.0.113.1");
    for n in 0..10 {
        assert_eq!(status(&t.issuer, guesser, id, &format!("guess-{n}")).await, StatusCode::UNAUTHORIZED);
    }
    assert_throttled(attempt(&t.issuer, guesser, id, secret).await).await;
    assert_eq!(status(&t.issuer, guesser, "neighbour", &neighbour_secret).await, StatusCode::OK, "other clients");
    assert_eq!(status(&t.issuer, home, id, secret).await, StatusCode::OK, "other addresses");

    // Many addresses, a few guesses each: fifty in all spend the client's own limit.
    for n in 10..50 {
        let from = format!("198.51.100.{}", n / 4);
        assert_eq!(status(&t.issuer, Some(&from), id, &format!("guess-{n}")).await, StatusCode::UNAUTHORIZED);
    }
    let stranger = Some("198.51.100.200");
    assert_throttled(attempt(&t.issuer, stranger, id, secret).await).await;
    assert_eq!(status(&t.issuer, home, id, secret).await, StatusCode::OK, "the client's own address is spared");
    assert_eq!(status(&t.issuer, stranger, "neighbour", &neighbour_secret).await, StatusCode::OK);

    // Introspection and revocation authenticate under the same limits.
    let introspect = reqwest::Client::new()
        .post(format!("{}/introspect", t.issuer))
        .header("x-forwarded-for", "198.51.100.200")
        .basic_auth(id, Some(secret))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_throttled(introspect).await;

    clock.advance_secs(61);
    assert_eq!(status(&t.issuer, stranger, id, secret).await, StatusCode::OK, "the window is over");
    assert_eq!(status(&t.issuer, guesser, id, secret).await, StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn a_flood_from_one_address_is_answered_429_on_its_auth_server_only() {
    let node = TestNode::builder().configure(behind_trusted_proxy).start().await.unwrap();
    let first = node.tutorial_setup("ES256").await;
    let second = node.tutorial_setup("RS256").await;
    let flood = Some("203.0.113.7");
    for n in 0..100 {
        let res = attempt(&first.issuer, flood, &format!("client-{n}"), "guess").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    assert_throttled(attempt(&first.issuer, flood, "client-x", "guess").await).await;
    assert_eq!(status(&first.issuer, flood, &first.client_id, &first.client_secret).await, StatusCode::OK);
    assert_eq!(status(&second.issuer, flood, &second.client_id, "guess").await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&second.issuer, flood, &second.client_id, &second.client_secret).await, StatusCode::OK);
    node.stop().await;
}

/// Basic credentials are checked both as sent and form-decoded (RFC 6749 §2.3.1), so a secret whose two forms
/// differ is two guesses, and counts as two.
#[tokio::test]
async fn both_forms_of_a_basic_secret_count_as_guesses() {
    let node = TestNode::builder().configure(behind_trusted_proxy).start().await.unwrap();
    let t = node.tutorial_setup("ES256").await;
    let guesser = "203.0.113.7";
    let basic_guess = |n: usize| {
        reqwest::Client::new()
            .post(format!("{}/oauth/token", t.issuer))
            .header("x-forwarded-for", guesser)
            .header("authorization", basic(&t.client_id, &format!("guess+{n}%2B")))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    // Ten distinct wrong secrets spend the (client, address) limit: five requests carrying two forms each.
    for n in 0..5 {
        assert_eq!(basic_guess(n).await.unwrap().status(), StatusCode::UNAUTHORIZED, "guess {n}");
    }
    assert_throttled(basic_guess(5).await.unwrap()).await;
    node.stop().await;
}
