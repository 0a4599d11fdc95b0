//! Kong's how-to "Configure the Upstream OAuth plugin with Kong Identity", every step in order, against
//! `gatehouse quickstart` on a fresh data dir, with only the substitutions the spec allows: the platform URL for
//! `https://us.api.konghq.com`, the echo upstream for `http://httpbin.konghq.com`, and the token, control plane and
//! proxy from the quickstart's exports. The request bodies are the how-to's as written.
//!
//! The how-to's plugin asks for the scope `Scope`, which its own steps never create (they create `my-scope`): the
//! issuer answers `invalid_scope`, so the proxy answers Kong's 502 without the issuer's words. The test checks
//! that, then makes the one correction `docs/quickstart.md` tells readers to make (`scopes: [my-scope]`) and checks
//! that the upstream then gets a token the issuer minted for the client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use tokio::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::tutorial::Quickstart;

/// Every byte under `dir`, files of subdirectories included.
fn bytes_under(dir: &std::path::Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            bytes_under(&path, out);
        } else if let Ok(b) = std::fs::read(&path) {
            out.extend(b);
        }
    }
}

/// `GET $KONNECT_PROXY_URL/anything` with the how-to's header, until `done` accepts the answer (the plugin reaches
/// the proxy once the publisher has compiled it; the bound is only what no loaded machine takes).
async fn access(
    http: &reqwest::Client,
    proxy: &str,
    access_token: &str,
    done: impl Fn(StatusCode, &str) -> bool,
) -> (StatusCode, String) {
    let started = Instant::now();
    loop {
        let res = http
            .get(format!("{proxy}/anything"))
            .header("Authorization", format!("Bearer {access_token}"))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        if done(status, &body) || started.elapsed() > Duration::from_secs(30) {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `Authorization` header the echo upstream received.
fn upstream_authorization(body: &str) -> Option<String> {
    let body: Value = serde_json::from_str(body).ok()?;
    let headers = body["headers"].as_object()?;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| Some(v.as_str()?.to_owned()))
}

#[tokio::test]
async fn the_upstream_oauth_how_to_runs_against_the_quickstart() {
    let quickstart = Quickstart::start("upstream-oauth-howto").await;
    let (proxy, http) = (quickstart.proxy.clone(), quickstart.http.clone());

    // Prerequisites: `example-service` and `example-route` through `deck gateway apply -` in Konnect mode.
    let (code, out, err) = quickstart.deck_apply_tutorial_yaml().await;
    assert_eq!(code, 0, "deck gateway apply -\n{out}\n{err}");

    // The auth server in Kong Identity, its scope and custom claim, a client; the quickstart control plane's id.
    let identity = quickstart.create_identity().await;
    let (issuer_url, client_id, client_secret) = (&identity.issuer_url, &identity.client_id, &identity.client_secret);
    let control_plane_id = quickstart.control_plane_id().await;

    // Enable the Upstream OAuth plugin globally, with the how-to's body.
    let (status, plugin) = quickstart
        .post_json(
            &format!("/v2/control-planes/{control_plane_id}/core-entities/plugins/"),
            json!({"name": "upstream-oauth", "config": {
                "oauth": {"token_endpoint": format!("{issuer_url}/oauth/token"), "grant_type": "client_credentials",
                    "client_id": client_id, "client_secret": client_secret, "scopes": ["Scope"]},
                "behavior": {"upstream_access_token_header_name": "Authorization"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let plugin_id = plugin["id"].as_str().unwrap().to_owned();
    assert_eq!(plugin["config"]["client"]["auth_method"], "client_secret_post", "Kong's default");

    // Generate a token for the client.
    let access_token = quickstart.mint_token(&identity).await;

    // Access the Gateway Service using the token. As written, the plugin asks for `Scope`, which the auth server
    // does not have: Kong's 502, and nothing of the issuer's `invalid_scope` answer.
    let (status, body) = access(&http, &proxy, &access_token, |s, _| s != StatusCode::OK).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body, r#"{ "code": "502", "message": "Failed to authenticate request to upstream" }"#);

    // With the scope the how-to created, the upstream gets the gateway's own token for the client, in place of
    // the caller's.
    let (status, patched) = quickstart
        .send_json(
            reqwest::Method::PATCH,
            &format!("/v2/control-planes/{control_plane_id}/core-entities/plugins/{plugin_id}"),
            json!({"config": {"oauth": {"scopes": ["my-scope"]}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let (status, body) = access(&http, &proxy, &access_token, |s, _| s == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = upstream_authorization(&body).unwrap_or_else(|| panic!("{body}"));
    let gateway_token = sent.strip_prefix("Bearer ").unwrap_or_else(|| panic!("{sent}")).to_owned();
    assert_ne!(gateway_token, access_token, "the caller's token is replaced");
    let res = http
        .post(format!("{issuer_url}/introspect"))
        .basic_auth(client_id, Some(client_secret))
        .form(&[("token", gateway_token.as_str())])
        .send()
        .await
        .unwrap();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["client_id"], client_id.as_str());
    assert_eq!(answer["scope"], "my-scope");
    assert_eq!(answer["test-claim"], "test", "the scope's claim is in the gateway's token");
    let (_, again) = access(&http, &proxy, &access_token, |_, _| true).await;
    assert_eq!(upstream_authorization(&again), Some(sent), "the token is cached");

    // The plugin's copy of the client secret is sealed: no file of the data dir holds it in clear.
    let mut stored = Vec::new();
    bytes_under(&quickstart.dir.path().join("data"), &mut stored);
    assert!(!stored.is_empty());
    assert!(!stored.windows(client_secret.len()).any(|w| w == client_secret.as_bytes()), "secret in clear");

    quickstart.stop().await;
}
