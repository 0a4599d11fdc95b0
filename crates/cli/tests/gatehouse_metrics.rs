//! Gatehouse's own `gatehouse_` metrics after the tutorial's flow, on the quickstart (a process of its own, so its
//! counters hold only this test's requests): the issuer's counters (tokens per auth server, algorithm and
//! outcome; failed client authentications; introspections and revocations by outcome), the `oauth2-introspection`
//! plugin's cache counters after a known sequence, the group commit, configuration loads, store latency and the
//! process series, all in a scrape that `promtool check metrics` accepts. Also the log id: the issuer's line for
//! the plugin's introspection call carries the proxied request's id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use tokio::time::Instant;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::metrics::{promtool_check, sample};
use common::tutorial::{Quickstart, lowercase_headers, var};

const SERVER: &str = "Appointments Dev";

async fn scrape(http: &reqwest::Client, status_url: &str) -> String {
    http.get(format!("{status_url}/metrics")).send().await.unwrap().text().await.unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

fn cache(text: &str, result: &str) -> f64 {
    value(text, &format!("gatehouse_introspection_cache_total{{result=\"{result}\"}}"))
}

fn introspections(text: &str, outcome: &str) -> f64 {
    sample(text, &format!("gatehouse_introspections_total{{auth_server=\"{SERVER}\",outcome=\"{outcome}\"}}"))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn issuer_and_introspection_counters_after_the_tutorial() {
    let quickstart = Quickstart::start_with_env("gatehouse-metrics", &[("GATEHOUSE_LOG__LEVEL", "info".into())]).await;
    let status_url = var(&quickstart.vars, "STATUS_URL").to_owned();
    let (proxy, http) = (quickstart.proxy.clone(), quickstart.http.clone());
    let (code, out, err) = quickstart.deck_apply_tutorial_yaml().await;
    assert_eq!(code, 0, "{out}\n{err}");
    let identity = quickstart.create_identity().await;
    let (issuer_url, client_id, client_secret) = (&identity.issuer_url, &identity.client_id, &identity.client_secret);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
    let control_plane_id = quickstart.control_plane_id().await;
    let (status, plugin) = quickstart
        .post_json(
            &format!("/v2/control-planes/{control_plane_id}/core-entities/plugins"),
            json!({"name": "oauth2-introspection", "config": {
                "introspection_url": format!("{issuer_url}/introspect"),
                "authorization_value": format!("Basic {basic}"),
                "consumer_by": "client_id"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");

    // The issuer: one token issued, one wrong secret, one request with no credentials at all.
    let access_token = quickstart.mint_token(&identity).await;
    let token_request = |body: String| {
        let http = http.clone();
        let url = format!("{issuer_url}/oauth/token");
        async move {
            let res = http
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            res.status()
        }
    };
    let wrong = format!("grant_type=client_credentials&client_id={client_id}&client_secret=wrong&scope=my-scope");
    assert_eq!(token_request(wrong).await, StatusCode::UNAUTHORIZED);
    assert_eq!(token_request("grant_type=client_credentials".into()).await, StatusCode::UNAUTHORIZED);

    // Until the proxy serves the plugin, requests pass unauthenticated; the first the plugin sees asks the issuer.
    let started = Instant::now();
    let first_request_id = loop {
        let res = http.get(format!("{proxy}/anything")).bearer_auth(&access_token).send().await.unwrap();
        let request_id = res.headers().get("x-kong-request-id").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if lowercase_headers(&body).contains_key("x-credential-client-id") {
            break request_id.expect("the proxy names its request");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the plugin never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let before = scrape(&http, &status_url).await;
    // A known sequence from here: five requests with the cached token, then one token the issuer never made.
    for _ in 0..5 {
        let res = http.get(format!("{proxy}/anything")).bearer_auth(&access_token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = http.get(format!("{proxy}/anything")).bearer_auth("not-a-token-of-ours").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A revocation by the token's client, and one of a token that is not one.
    for (token, outcome) in [(access_token.as_str(), "revoked"), ("nonsense", "ignored")] {
        let res = http
            .post(format!("{issuer_url}/revoke"))
            .basic_auth(client_id, Some(client_secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{outcome}");
    }
    let text = scrape(&http, &status_url).await;

    // Issuer counters, exactly.
    let algorithm = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("gatehouse_token_requests_total{{auth_server=\"{SERVER}\",algorithm=\""))?
                .split('"')
                .next()
        })
        .unwrap_or_else(|| panic!("no token requests recorded\n{text}"));
    assert!(["RS256", "ES256", "PS256", "RS384", "RS512"].contains(&algorithm), "{algorithm}");
    let tokens = |outcome: &str| {
        value(
            &text,
            &format!(
                "gatehouse_token_requests_total{{auth_server=\"{SERVER}\",algorithm=\"{algorithm}\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(tokens("issued"), 1.0);
    assert_eq!(tokens("invalid_client"), 2.0, "the wrong secret and the missing credentials");
    let failures = |reason: &str| {
        value(
            &text,
            &format!("gatehouse_client_authentication_failures_total{{auth_server=\"{SERVER}\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!((failures("rejected"), failures("missing")), (1.0, 1.0));
    let revocations = |outcome: &str| {
        value(&text, &format!("gatehouse_revocations_total{{auth_server=\"{SERVER}\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!((revocations("revoked"), revocations("ignored")), (1.0, 1.0));
    assert_eq!(value(&text, "gatehouse_token_record_batch_size_sum"), 1.0, "one record committed");
    assert_eq!(value(&text, "gatehouse_token_record_batch_size_count"), 1.0);
    assert_eq!(value(&text, "gatehouse_token_record_commit_seconds_count{outcome=\"ok\"}"), 1.0);

    // The plugin's cache: the five were answered from it, the stranger's token asked the issuer (inactive), and
    // every answer the issuer gave was a miss of the plugin's.
    assert_eq!(cache(&text, "hit") - cache(&before, "hit"), 5.0, "{before}\n{text}");
    assert_eq!(cache(&text, "miss") - cache(&before, "miss"), 1.0);
    assert_eq!(cache(&text, "coalesced"), 0.0);
    assert_eq!(introspections(&text, "active"), cache(&before, "miss"), "one issuer call per miss\n{before}");
    assert_eq!(introspections(&text, "inactive"), 1.0);
    assert_eq!(value(&text, "gatehouse_introspection_idp_seconds_count"), cache(&text, "miss"));
    assert!(
        text.lines()
            .filter(|l| l.starts_with("gatehouse_introspection_idp_failures_total{"))
            .all(|l| l.ends_with(" 0")),
        "{text}"
    );

    // The rest of the node: configurations installed and how long they took, store operations, the process.
    assert!(value(&text, "gatehouse_proxy_configuration_loads_total{outcome=\"installed\"}") >= 2.0);
    assert_eq!(value(&text, "gatehouse_proxy_configuration_loads_total{outcome=\"refused\"}"), 0.0);
    assert!(value(&text, "gatehouse_configuration_publish_seconds_count") >= 1.0, "{text}");
    assert_eq!(value(&text, "gatehouse_store_query_seconds_count{operation=\"record_tokens\",outcome=\"ok\"}"), 1.0);
    assert!(value(&text, "gatehouse_store_query_seconds_count{operation=\"revoke_token\",outcome=\"ok\"}") == 1.0);
    for process in ["process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"] {
        assert!(value(&text, process) > 0.0, "{process}");
    }
    assert!(text.lines().filter(|l| l.starts_with("# HELP gatehouse_")).count() >= 12, "{text}");
    promtool_check(&text);

    // Logs: the issuer's line for the introspection call names the proxied request that made it.
    let stderr = quickstart.process.output.stderr_text();
    let issuer_line = stderr
        .lines()
        .find(|l| l.contains("/introspect") && l.contains(&first_request_id))
        .unwrap_or_else(|| panic!("no issuer line with request id {first_request_id}:\n{stderr}"));
    assert!(issuer_line.contains("issuer"), "{issuer_line}");
    quickstart.stop().await;
}
