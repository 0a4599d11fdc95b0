//! Kong's "Kong Identity + OAuth 2.0 Introspection" tutorial, every step in order, against `gatehouse quickstart`
//! on a fresh data dir, with only the substitutions the spec allows (`common::tutorial` holds the steps the
//! how-to tests share).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use tokio::time::Instant;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::tutorial::{Quickstart, lowercase_headers, var};

#[tokio::test]
async fn the_tutorial_runs_end_to_end_against_the_quickstart() {
    let quickstart = Quickstart::start("tutorial").await;
    let vars = &quickstart.vars;
    let token = quickstart.token.clone();
    assert_eq!(var(vars, "DECK_KONNECT_TOKEN"), token);
    assert_eq!(var(vars, "DECK_KONNECT_CONTROL_PLANE_NAME"), "quickstart");
    let platform = quickstart.platform.clone();
    assert_eq!(var(vars, "DECK_KONNECT_ADDR"), platform);
    let proxy = quickstart.proxy.clone();
    let stdout = &quickstart.stdout;
    let status_url = var(vars, "STATUS_URL").to_owned();
    assert!(stdout.contains("# decK:") && stdout.contains("deck"), "the deck PATH hint:\n{stdout}");
    let http = quickstart.http.clone();

    // Pre-configured entities: `echo '…' | deck gateway apply -` in Konnect mode from the exported variables.
    let (code, out, err) = quickstart.deck_apply_tutorial_yaml().await;
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

    // An auth server, a scope, a custom claim and the client.
    let identity = quickstart.create_identity().await;
    let (issuer_url, client_id, client_secret) = (&identity.issuer_url, &identity.client_id, &identity.client_secret);

    // `echo -n "$CLIENT_ID:$CLIENT_SECRET" | base64`
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));

    // Find the quickstart control plane.
    let control_plane_id = quickstart.control_plane_id().await;

    // Not in the tutorial: the `prometheus` plugin, for the monitoring check at the end. Created before the
    // introspection plugin, so it serves by the time that one does.
    let (status, plugin) = quickstart
        .post_json(
            &format!("/v2/control-planes/{control_plane_id}/core-entities/plugins"),
            json!({"name": "prometheus", "config": {"status_code_metrics": true, "latency_metrics": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");

    // Enable the OAuth 2.0 Introspection plugin globally (the tutorial's URL ends with a slash).
    let (status, plugin) = quickstart
        .post_json(
            &format!("/v2/control-planes/{control_plane_id}/core-entities/plugins/"),
            json!({"name": "oauth2-introspection", "config": {
                "introspection_url": format!("{issuer_url}/introspect"),
                "authorization_value": format!("Basic {encoded}"),
                "consumer_by": "client_id",
                "custom_claims_forward": ["Claim"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");

    // Generate a token.
    let access_token = quickstart.mint_token(&identity).await;

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

    // The same over https, trusting only the CA the quickstart made (`curl --cacert $KONNECT_PROXY_CA_CERT`).
    let proxy_tls = var(vars, "KONNECT_PROXY_URL_TLS").to_owned();
    assert!(proxy_tls.starts_with("https://"), "{proxy_tls}");
    let ca_pem = std::fs::read(var(vars, "KONNECT_PROXY_CA_CERT")).unwrap();
    let https =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).unwrap()]).build().unwrap();
    let res = https
        .get(format!("{proxy_tls}/anything"))
        .header("Authorization", format!("Bearer {access_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let headers = lowercase_headers(&body);
    assert_eq!(headers.get("x-forwarded-proto").map(String::as_str), Some("https"));
    assert_eq!(headers.get("x-credential-client-id").map(String::as_str), Some(client_id.as_str()));
    let res = https.get(format!("{proxy_tls}/anything")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    quickstart.stop().await;
}

/// The shell blocks of docs/quickstart.md's steps 2 to 6, in order, as a reader pastes them.
fn documented_steps() -> String {
    let doc = include_str!("../../../docs/quickstart.md");
    let start = doc.find("## 2. ").expect("step 2");
    let end = doc.find("## The OIDC plugin").expect("the end of the tutorial's steps");
    let mut blocks = Vec::new();
    let mut rest = &doc[start..end];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + "```sh\n".len()..];
        let close = body.find("```\n").expect("a closed block");
        blocks.push(&body[..close]);
        rest = &body[close..];
    }
    assert_eq!(blocks.len(), 5, "one block for each of steps 2 to 6");
    blocks.concat()
}

/// docs/quickstart.md pasted as it is into bash, beside a running quickstart started as step 1 says (default data
/// dir, the binary at `target/release/gatehouse`): the script completes the tutorial.
#[tokio::test]
async fn docs_quickstart_runs_as_written() {
    let dir = gatehouse_store::testing::TempDir::new("docs-quickstart");
    std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(common::bin(), dir.path().join("target/release/gatehouse")).unwrap();
    let env = common::ephemeral_listeners();
    let mut quickstart = gatehouse_testkit::GatehouseProcess::spawn(
        &dir.path().join("target/release/gatehouse"),
        &["quickstart"],
        &env,
        dir.path(),
    );
    quickstart.wait_for_line(Duration::from_secs(30), |l| l == "Gatehouse Ready").await;

    let script = format!("set -euo pipefail\n{}", documented_steps());
    let mut bash = tokio::process::Command::new("bash");
    bash.arg("-c").arg(&script).current_dir(dir.path()).env_clear().kill_on_drop(true);
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            bash.env(key, value);
        }
    }
    let ran = tokio::time::timeout(Duration::from_secs(120), bash.output()).await.expect("the script ends").unwrap();
    let (out, err) = (String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    assert!(ran.status.success(), "{}\nstdout:\n{out}\nstderr:\n{err}", ran.status);
    assert!(out.contains("creating service example-service\ncreating route example-route\n"), "{out}");
    // Both calls through the proxy (plain and TLS) got the echo upstream's answer with the plugin's headers.
    let answers: Vec<&str> = out.lines().filter(|l| l.starts_with("HTTP/")).collect();
    assert_eq!(answers, ["HTTP/1.1 200 OK", "HTTP/2 200 "], "plain, then TLS (ALPN h2): {out}");
    let scope_headers =
        out.lines().map(str::to_ascii_lowercase).filter(|l| l.contains("x-credential-scope") && l.contains("my-scope"));
    assert_eq!(scope_headers.count(), 2, "{out}");
    assert!(quickstart.interrupt(Duration::from_secs(10)).await.success());
}
