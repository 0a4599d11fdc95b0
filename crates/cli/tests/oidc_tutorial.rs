//! Kong's how-to "Configure the OIDC plugin with Kong Identity", every step in order, against `gatehouse quickstart`
//! on a fresh data dir, with only the substitutions the spec allows. The how-to's shared steps (auth server, scope,
//! claim, client, token) are the seed tutorial's (`common::tutorial`); its own step is the `openid-connect` plugin
//! with the how-to's body as written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use tokio::time::Instant;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::tutorial::{Quickstart, lowercase_headers};

#[tokio::test]
async fn the_oidc_how_to_runs_end_to_end_against_the_quickstart() {
    let quickstart = Quickstart::start("oidc-how-to").await;
    let (proxy, http) = (quickstart.proxy.clone(), quickstart.http.clone());

    // Prerequisites: `echo '…' | deck gateway apply -` in Konnect mode from the exported variables.
    let (code, out, err) = quickstart.deck_apply_tutorial_yaml().await;
    assert_eq!(code, 0, "deck gateway apply -\n{out}\n{err}");
    assert!(out.contains("creating service example-service") && out.contains("creating route example-route"));

    // The auth server, scope, claim and client; then the quickstart control plane.
    let identity = quickstart.create_identity().await;
    let control_plane_id = quickstart.control_plane_id().await;

    // Enable the OIDC plugin globally, the how-to's body as written.
    let (status, plugin) = quickstart
        .post_json(
            &format!("/v2/control-planes/{control_plane_id}/core-entities/plugins/"),
            json!({"name": "openid-connect", "config": {
                "issuer": identity.issuer_url,
                "auth_methods": ["bearer"],
                "audience": ["http://myhttpbin.dev"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    assert_eq!(plugin["config"]["hide_credentials"], true, "Kong's default");

    // Generate a token.
    let access_token = quickstart.mint_token(&identity).await;

    // Access the service with the token: the gateway validates it locally against the auth server's keys and
    // sends it upstream in `Authorization` (Kong's `upstream_access_token_header`). The plugin reaches the proxy as
    // soon as the publisher has compiled it; the wait ends then, so its bound is only what no loaded machine takes.
    let started = Instant::now();
    let (status, upstream) = loop {
        let res = http
            .get(format!("{proxy}/anything"))
            .header("Authorization", format!("Bearer {access_token}"))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let headers = lowercase_headers(&body);
        // Before the plugin is in, the request passes without it; afterwards a refused token would be 401.
        if (status == StatusCode::OK && plugin_runs(&http, &proxy).await) || started.elapsed() > Duration::from_secs(30)
        {
            break (status, headers);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, StatusCode::OK, "{upstream:?}");
    assert_eq!(upstream.get("authorization").map(String::as_str), Some(format!("Bearer {access_token}").as_str()));
    assert!(!upstream.keys().any(|k| k.starts_with("x-consumer-")), "no consumer mapping: {upstream:?}");

    // A token for another audience, or a forged one: 401 invalid_token.
    let mut parts: Vec<String> = access_token.split('.').map(str::to_owned).collect();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
    let mut claims: Value = serde_json::from_slice(&payload).unwrap();
    claims["aud"] = json!("http://elsewhere.dev");
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let res = http.get(format!("{proxy}/anything")).bearer_auth(parts.join(".")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));

    // Without the token: 401, Kong's body.
    let res = http.get(format!("{proxy}/anything")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.text().await.unwrap(), r#"{"message":"Unauthorized"}"#);

    quickstart.stop().await;
}

/// Whether the plugin is in: a request without a token is refused.
async fn plugin_runs(http: &reqwest::Client, proxy: &str) -> bool {
    http.get(format!("{proxy}/anything")).send().await.is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED)
}
