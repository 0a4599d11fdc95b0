//! The `openid-connect` plugin's `client_credentials` method (Kong's example "Client credentials grant in header
//! with Kong Identity") in front of the echo upstream, against the node's own issuer: the caller's client id and
//! secret are exchanged at `/oauth/token` for a token the plugin validates like a bearer token. How many tokens the
//! issuer minted is read from its records (`/v1/auth-servers/{id}/clients/{client}/tokens`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, Tutorial};

/// Replaces every plugin with one global `openid-connect` instance and waits until the proxy runs it.
async fn only_plugin(node: &TestNode, config: Value) {
    let (_, list) = node.admin(Method::GET, "/plugins", None).await;
    for p in list["data"].as_array().unwrap() {
        node.admin(Method::DELETE, &format!("/plugins/{}", p["id"].as_str().unwrap()), None).await;
    }
    node.admin_ok(Method::POST, "/plugins", json!({"name": "openid-connect", "config": config})).await;
    node.wait_config().await;
}

/// Kong's example, without `principals` (refused: see below).
fn example(t: &Tutorial, param_types: &[&str]) -> Value {
    json!({"issuer": t.issuer, "client_id": [t.client_id], "client_secret": [t.client_secret],
        "client_auth": ["client_secret_post"], "auth_methods": ["client_credentials"],
        "client_credentials_param_type": param_types})
}

/// The tokens the issuer minted for `client`.
async fn minted(node: &TestNode, t: &Tutorial, client: &str) -> u64 {
    let (status, body) = node.get(&format!("/v1/auth-servers/{}/clients/{client}/tokens", t.server_id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["meta"]["page"]["total"].as_u64().unwrap()
}

async fn second_client(node: &TestNode, t: &Tutorial) -> (String, String) {
    let (status, client) = node
        .post(
            &format!("/v1/auth-servers/{}/clients", t.server_id),
            json!({"name": "Second", "grant_types": ["client_credentials"], "allow_all_scopes": false,
                "allow_scopes": [t.scope_id], "access_token_duration": 3600, "id_token_duration": 3600,
                "response_types": ["id_token", "token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    (client["id"].as_str().unwrap().to_owned(), client["client_secret"].as_str().unwrap().to_owned())
}

/// The upstream's view (the echo's JSON) of a request that must get through.
async fn upstream_of(req: reqwest::RequestBuilder) -> Value {
    let res = req.send().await.unwrap();
    let status = res.status();
    let challenge = res.headers().get("www-authenticate").cloned();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body} {challenge:?}");
    serde_json::from_str(&body).unwrap()
}

/// The claims of the Bearer token the upstream got.
fn upstream_claims(echo: &Value) -> Value {
    let header = echo["headers"]["Authorization"].as_str().unwrap();
    let token = header.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a Bearer token: {header}"));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn kongs_example_exchanges_the_callers_credentials_for_a_cached_token() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;

    // Kong's example as written: `principals` is Kong Identity's directory lookup, which Gatehouse refuses by name.
    let mut with_principals = example(&t, &["header"]);
    with_principals["principals"] = json!({"enabled": true, "directory": "my-directory"});
    let (status, body) =
        node.admin(Method::POST, "/plugins", Some(json!({"name": "openid-connect", "config": with_principals}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("config.principals.enabled"), "{body}");

    only_plugin(&node, example(&t, &["header"])).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());

    let echo = upstream_of(http.get(&url).basic_auth(&t.client_id, Some(&t.client_secret))).await;
    let claims = upstream_claims(&echo);
    assert_eq!(claims["client_id"].as_str().or(claims["sub"].as_str()), Some(t.client_id.as_str()), "{claims}");
    assert_eq!(claims["iss"], t.issuer.as_str());
    assert!(!echo.to_string().contains(&t.client_secret), "the caller's secret never reaches the upstream");
    assert_eq!(minted(&node, &t, &t.client_id).await, 1);

    // N more requests with the same credentials: the cached token, no further request at the issuer.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let echo = upstream_of(http.get(&url).basic_auth(&t.client_id, Some(&t.client_secret))).await;
        seen.insert(echo["headers"]["Authorization"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 1);
    assert_eq!(minted(&node, &t, &t.client_id).await, 1, "one token request for six proxied requests");

    // Another client, 20 requests at once on a cold cache: its own token, obtained once.
    let (other_id, other_secret) = second_client(&node, &t).await;
    let burst = futures_util::future::join_all(
        (0..20).map(|_| upstream_of(http.get(&url).basic_auth(&other_id, Some(&other_secret)))),
    )
    .await;
    let claims = upstream_claims(&burst[0]);
    assert_eq!(claims["client_id"].as_str().or(claims["sub"].as_str()), Some(other_id.as_str()));
    assert!(burst.iter().all(|echo| echo["headers"]["Authorization"] == burst[0]["headers"]["Authorization"]));
    assert_eq!((minted(&node, &t, &t.client_id).await, minted(&node, &t, &other_id).await), (1, 1));

    // A wrong secret: Kong's 401, nothing of the issuer's answer.
    let res = http.get(&url).basic_auth(&t.client_id, Some("not-the-secret")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="127.0.0.1", error="invalid_token""#);
    assert_eq!(res.text().await.unwrap(), r#"{"message":"Unauthorized"}"#);
    // No credentials at all: 401 without an error code; credentials in the query are not looked for.
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="127.0.0.1""#);
    let res = http
        .get(&url)
        .query(&[("client_id", t.client_id.as_str()), ("client_secret", t.client_secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    node.stop().await;
}

#[tokio::test]
async fn credentials_in_the_query_or_the_body_are_used_and_hidden() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let mut config = example(&t, &["query", "body"]);
    config["client_auth"] = json!(["client_secret_basic"]);
    config["cache_tokens_salt"] = json!("my-salt");
    only_plugin(&node, config).await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());

    let echo = upstream_of(http.get(&url).query(&[
        ("client_id", t.client_id.as_str()),
        ("client_secret", t.client_secret.as_str()),
        ("keep", "1"),
    ]))
    .await;
    assert_eq!(upstream_claims(&echo)["iss"], t.issuer.as_str());
    assert_eq!(echo["args"], json!({"keep": "1"}), "hide_credentials takes both parameters out");

    let form = [("client_id", t.client_id.as_str()), ("client_secret", t.client_secret.as_str()), ("keep", "2")];
    let echo = upstream_of(http.post(&url).form(&form)).await;
    assert_eq!(upstream_claims(&echo)["iss"], t.issuer.as_str());
    assert!(!echo.to_string().contains(&t.client_secret), "{echo}");
    let echo = upstream_of(
        http.post(&url).json(&json!({"client_id": t.client_id, "client_secret": t.client_secret, "keep": 3})),
    )
    .await;
    assert!(!echo.to_string().contains(&t.client_secret), "{echo}");
    // Same credentials, three sources: one token.
    assert_eq!(minted(&node, &t, &t.client_id).await, 1);

    // Basic credentials are not looked for with these types.
    let res = http.get(&url).basic_auth(&t.client_id, Some(&t.client_secret)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A JSON body that is not an object: Kong's 400.
    let res = http.post(&url).header("content-type", "application/json").body("[1]").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    node.stop().await;
}

#[tokio::test]
async fn cache_tokens_false_fetches_per_request_and_tokens_are_renewed_before_they_expire() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let call = || http.get(&url).basic_auth(&t.client_id, Some(&t.client_secret));

    let mut config = example(&t, &["header"]);
    config["cache_tokens"] = json!(false);
    only_plugin(&node, config).await;
    for _ in 0..3 {
        upstream_of(call()).await;
    }
    assert_eq!(minted(&node, &t, &t.client_id).await, 3, "cache_tokens: false asks for every request");

    only_plugin(&node, example(&t, &["header"])).await;
    let first = upstream_of(call()).await;
    assert_eq!(minted(&node, &t, &t.client_id).await, 4);
    // The token lives 3600 s; it is used until 5 s before that, then renewed.
    clock.advance_secs(3590);
    let same = upstream_of(call()).await;
    assert_eq!(same["headers"]["Authorization"], first["headers"]["Authorization"]);
    assert_eq!(minted(&node, &t, &t.client_id).await, 4);
    clock.advance_secs(6);
    let renewed = upstream_of(call()).await;
    assert_ne!(renewed["headers"]["Authorization"], first["headers"]["Authorization"]);
    assert_eq!(minted(&node, &t, &t.client_id).await, 5);
    let exp = upstream_claims(&renewed)["exp"].as_i64().unwrap();
    assert!(exp > clock_secs(&clock) + 3000, "the renewed token is fresh");
    node.stop().await;
}

fn clock_secs(clock: &gatehouse_model::ManualClock) -> i64 {
    use gatehouse_model::Clock;
    clock.now().micros() / 1_000_000
}

#[tokio::test]
async fn a_bearer_token_takes_precedence_and_an_unreachable_token_endpoint_is_kongs_500() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    node.example_service().await;
    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let mut config = example(&t, &["header", "query"]);
    config["auth_methods"] = json!(["bearer", "client_credentials"]);
    only_plugin(&node, config.clone()).await;
    let (status, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let echo =
        upstream_of(http.get(&url).bearer_auth(token).query(&[("client_id", "nobody"), ("client_secret", "wrong")]))
            .await;
    assert_eq!(echo["headers"]["Authorization"], format!("Bearer {token}"), "the bearer token was used");
    assert_eq!(minted(&node, &t, &t.client_id).await, 1, "no token obtained");

    // A token endpoint nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/oauth/token", dead.local_addr().unwrap());
    drop(dead);
    config["token_endpoint"] = json!(dead_url);
    only_plugin(&node, config).await;
    let res = http.get(&url).basic_auth(&t.client_id, Some(&t.client_secret)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "An unexpected error occurred");
    node.stop().await;
}
