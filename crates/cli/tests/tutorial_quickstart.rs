//! Kong's "Kong Identity + OAuth 2.0 Introspection" tutorial, every step in order, against `gatehouse quickstart`
//! on a fresh data dir, with only the substitutions the spec allows: the platform URL for
//! `https://us.api.konghq.com`, the echo upstream for `http://httpbin.konghq.com`, and the token, control plane
//! and proxy from the quickstart's exports. The curl calls are made with an HTTP client (same methods, headers
//! and bodies); `deck gateway apply -` runs the built binary under the name `deck`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use tokio::time::Instant;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::bin;
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{GatehouseProcess, run_with_input};

/// The tutorial's YAML for `deck gateway apply -`, read as Kong's docs intend (a service with `url`, its route
/// nested with `paths: ["/anything"]` and naming its service).
const TUTORIAL_YAML: &str = r#"
_format_version: "3.0"
services:
- name: example-service
  url: http://httpbin.konghq.com/anything
  routes:
  - name: example-route
    paths:
    - "/anything"
    service:
      name: example-service
"#;

/// `export K=V` lines, with `$VAR` references to earlier exports expanded as a shell would.
fn exports(stdout: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for line in stdout.lines().filter_map(|l| l.strip_prefix("export ")) {
        let Some((k, v)) = line.split_once('=') else { continue };
        let mut v = v.trim_matches('\'').to_owned();
        if let Some(name) = v.strip_prefix('$') {
            v = vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        }
        vars.push((k.to_owned(), v));
    }
    vars
}

fn var<'a>(vars: &'a [(String, String)], key: &str) -> &'a str {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no export {key}"))
}

/// `curl -X POST URL -H "Authorization: Bearer $KONNECT_TOKEN" -H "Content-Type: application/json" --json BODY`.
async fn post_json(http: &reqwest::Client, url: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let res = http
        .post(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_tutorial_runs_end_to_end_against_the_quickstart() {
    let dir = TempDir::new("tutorial");
    let env = common::ephemeral_listeners();
    let mut quickstart = GatehouseProcess::spawn(&bin(), &["quickstart", "--data-dir", "data"], &env, dir.path());
    quickstart.wait_for_line(Duration::from_secs(30), |l| l == "Gatehouse Ready").await;
    let stdout = quickstart.output.stdout_text();
    let vars = exports(&stdout);
    let token = var(&vars, "KONNECT_TOKEN").to_owned();
    assert_eq!(var(&vars, "DECK_KONNECT_TOKEN"), token);
    assert_eq!(var(&vars, "DECK_KONNECT_CONTROL_PLANE_NAME"), "quickstart");
    let platform = var(&vars, "KONNECT_CONTROL_PLANE_URL").to_owned();
    assert_eq!(var(&vars, "DECK_KONNECT_ADDR"), platform);
    let proxy = var(&vars, "KONNECT_PROXY_URL").to_owned();
    let echo = var(&vars, "ECHO_URL").to_owned();
    let status_url = var(&vars, "STATUS_URL").to_owned();
    assert!(stdout.contains("ln -sf") && stdout.contains("/deck"), "the deck PATH hint:\n{stdout}");
    let http = reqwest::Client::new();

    // Pre-configured entities: `echo '…' | deck gateway apply -` in Konnect mode from the exported variables.
    let deck_dir = TempDir::new("tutorial-deck");
    let deck = deck_dir.path().join("deck");
    std::os::unix::fs::symlink(bin(), &deck).unwrap();
    let deck_env: Vec<(&str, String)> = ["DECK_KONNECT_TOKEN", "DECK_KONNECT_CONTROL_PLANE_NAME", "DECK_KONNECT_ADDR"]
        .into_iter()
        .map(|k| (k, var(&vars, k).to_owned()))
        .collect();
    let yaml = TUTORIAL_YAML.replace("http://httpbin.konghq.com", &echo);
    let (code, out, err) =
        run_with_input(&deck, &["gateway", "apply", "-"], &deck_env, deck_dir.path(), Some(&yaml)).await;
    assert_eq!(code, 0, "deck gateway apply -\n{out}\n{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "creating service example-service",
            "creating route example-route",
            "Summary:",
            "  Created: 2",
            "  Updated: 0",
            "  Deleted: 0"
        ]
    );

    // Create an auth server.
    let (status, server) = post_json(
        &http,
        &format!("{platform}/v1/auth-servers"),
        &token,
        json!({"name": "Appointments Dev", "audience": "http://myhttpbin.dev",
               "description": "Auth server for the Appointment dev environment"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    let auth_server_id = server["id"].as_str().unwrap().to_owned();
    let issuer_url = server["issuer"].as_str().unwrap().to_owned();

    // Configure a scope.
    let (status, scope) = post_json(
        &http,
        &format!("{platform}/v1/auth-servers/{auth_server_id}/scopes"),
        &token,
        json!({"name": "my-scope", "description": "Scope to test Kong Identity", "default": false,
               "include_in_metadata": false, "enabled": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{scope}");
    let scope_id = scope["id"].as_str().unwrap().to_owned();

    // Configure a custom claim.
    let (status, claim) = post_json(
        &http,
        &format!("{platform}/v1/auth-servers/{auth_server_id}/claims"),
        &token,
        json!({"name": "test-claim", "value": "test", "include_in_token": true, "include_in_all_scopes": false,
               "include_in_scopes": [scope_id], "enabled": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{claim}");

    // Configure the client.
    let (status, client) = post_json(
        &http,
        &format!("{platform}/v1/auth-servers/{auth_server_id}/clients"),
        &token,
        json!({"name": "Client", "grant_types": ["client_credentials"], "allow_all_scopes": false,
               "allow_scopes": [scope_id], "access_token_duration": 3600, "id_token_duration": 3600,
               "response_types": ["id_token", "token"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client_id = client["id"].as_str().unwrap().to_owned();
    let client_secret = client["client_secret"].as_str().unwrap().to_owned();

    // `echo -n "$CLIENT_ID:$CLIENT_SECRET" | base64`
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));

    // Find the quickstart control plane.
    let res = http
        .get(format!("{platform}/v2/control-planes?filter%5Bname%5D%5Bcontains%5D=quickstart"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let planes: Value = res.json().await.unwrap();
    assert_eq!(planes["data"][0]["name"], "quickstart", "{planes}");
    let control_plane_id = planes["data"][0]["id"].as_str().unwrap().to_owned();

    // Not in the tutorial: the `prometheus` plugin, for the monitoring check at the end. Created before the
    // introspection plugin, so it serves by the time that one does.
    let (status, plugin) = post_json(
        &http,
        &format!("{platform}/v2/control-planes/{control_plane_id}/core-entities/plugins"),
        &token,
        json!({"name": "prometheus", "config": {"status_code_metrics": true, "latency_metrics": true}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");

    // Enable the OAuth 2.0 Introspection plugin globally (the tutorial's URL ends with a slash).
    let (status, plugin) = post_json(
        &http,
        &format!("{platform}/v2/control-planes/{control_plane_id}/core-entities/plugins/"),
        &token,
        json!({"name": "oauth2-introspection", "config": {
            "introspection_url": format!("{issuer_url}/introspect"),
            "authorization_value": format!("Basic {encoded}"),
            "consumer_by": "client_id",
            "custom_claims_forward": ["Claim"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");

    // Generate a token.
    let res = http
        .post(format!("{issuer_url}/oauth/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret={client_secret}&scope=my-scope"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let minted: Value = res.json().await.unwrap();
    let access_token = minted["access_token"].as_str().unwrap().to_owned();

    // Access the service with the token: the upstream sees the introspection's headers (SPEC §4.1). The plugin
    // reaches the proxy as soon as the publisher has compiled it; the wait ends then, so its bound is only what
    // no loaded machine takes.
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
        if (status == StatusCode::OK && headers.contains_key("x-credential-client-id"))
            || started.elapsed() > Duration::from_secs(30)
        {
            break (status, headers);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, StatusCode::OK, "{upstream:?}");
    assert_eq!(upstream.get("x-credential-client-id").map(String::as_str), Some(client_id.as_str()));
    assert_eq!(upstream.get("x-credential-scope").map(String::as_str), Some("my-scope"));
    assert_eq!(upstream.get("x-credential-sub").map(String::as_str), Some(client_id.as_str()));
    assert_eq!(upstream.get("x-credential-iss").map(String::as_str), Some(issuer_url.as_str()));
    assert_eq!(upstream.get("x-credential-aud").map(String::as_str), Some("http://myhttpbin.dev"));
    for header in
        ["x-credential-exp", "x-credential-iat", "x-credential-nbf", "x-credential-jti", "x-credential-token-type"]
    {
        assert!(upstream.contains_key(header), "{header} missing: {upstream:?}");
    }
    assert!(!upstream.contains_key("x-credential-claim"), "no such claim");
    assert!(!upstream.keys().any(|k| k.starts_with("x-consumer-")), "no consumers: {upstream:?}");

    // Without the token: 401.
    let res = http.get(format!("{proxy}/anything")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The status listener after the tutorial: ready, and a scrape that promtool accepts, counting the 401.
    let res = http.get(format!("{status_url}/status/ready")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = http.get(format!("{status_url}/metrics")).send().await.unwrap().text().await.unwrap();
    let series = |code: u16, source: &str| {
        format!(
            "kong_http_requests_total{{service=\"example-service\",route=\"example-route\",code=\"{code}\",\
             source=\"{source}\",workspace=\"default\",consumer=\"\"}}"
        )
    };
    assert_eq!(common::metrics::sample(&text, &series(401, "kong")), Some(1.0), "{text}");
    assert!(common::metrics::sample(&text, &series(200, "service")).unwrap() >= 1.0, "{text}");
    assert_eq!(common::metrics::sample(&text, "kong_datastore_reachable"), Some(1.0));
    common::metrics::promtool_check(&text);

    assert!(quickstart.interrupt(Duration::from_secs(10)).await.success(), "Ctrl-C stops cleanly");
}

/// The echo upstream's view of the request headers, names lowercased.
fn lowercase_headers(body: &Value) -> std::collections::HashMap<String, String> {
    body["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default()
}
