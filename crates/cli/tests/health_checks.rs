//! Upstream health checks against real targets (issue 19, item 4): a target killed during a run is taken out by
//! the passive checks after the configured connection failures (the requests that met it retried on the other
//! target), and put back by the active checks once it listens again; an active check marks a target that answers
//! with an unhealthy status. Health is polled through Kong's health endpoint, never waited for by the clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::backends::Backend;
use gatehouse_testkit::TestNode;

async fn health_of(node: &TestNode, upstream: &str, target: &str) -> String {
    let (_, health) = node.admin(Method::GET, &format!("/upstreams/{upstream}/health"), None).await;
    let entry = health["data"].as_array().unwrap().iter().find(|t| t["target"] == target).cloned();
    entry.and_then(|t| t["health"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// Polls until the target reports `want`, sending a request each round so passive checks see traffic; returns
/// how many of those requests failed.
async fn until_health(node: &TestNode, upstream: &str, target: &str, want: &str) -> usize {
    let client = reqwest::Client::new();
    let started = tokio::time::Instant::now();
    let mut failed = 0;
    loop {
        if health_of(node, upstream, target).await == want {
            return failed;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{target} never became {want}");
        let r = client.get(format!("{}/lb", node.proxy_url())).send().await.unwrap();
        if r.status() != StatusCode::OK {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn names(node: &TestNode, n: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let r = client.get(format!("{}/lb", node.proxy_url())).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        out.push(r.text().await.unwrap());
    }
    out
}

async fn setup(node: &TestNode, healthchecks: Value, targets: &[&Backend]) {
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "checked", "healthchecks": healthchecks})).await;
    for b in targets {
        node.admin_ok(Method::POST, "/upstreams/checked/targets", json!({"target": b.target()})).await;
    }
    node.admin_ok(Method::POST, "/services", json!({"name": "lb", "host": "checked"})).await;
    node.admin_ok(Method::POST, "/services/lb/routes", json!({"paths": ["/lb"]})).await;
    node.wait_config().await;
}

#[tokio::test]
async fn a_killed_target_is_taken_out_passively_and_put_back_actively() {
    let node = TestNode::start().await;
    let (a, mut b) = (Backend::start("a").await, Backend::start("b").await);
    // Passive checks take a target out after 2 connection failures; active probes (of unhealthy targets only)
    // put it back after one good answer.
    let checks = json!({
        "passive": {"unhealthy": {"tcp_failures": 2}},
        "active": {"http_path": "/status", "healthy": {"interval": 0, "successes": 1},
                   "unhealthy": {"interval": 0.05, "tcp_failures": 1}},
    });
    setup(&node, checks, &[&a, &b]).await;
    let before = names(&node, 20).await;
    assert!(before.contains(&"a".to_owned()) && before.contains(&"b".to_owned()), "{before:?}");

    b.stop();
    let failed = until_health(&node, "checked", &b.target(), "UNHEALTHY").await;
    // The requests that met the dead target retried on the live one; at most a request already on a kept-alive
    // connection that the target closed fails, and never more than the passive threshold.
    assert!(failed <= 2, "{failed} requests failed");
    assert!(names(&node, 20).await.iter().all(|n| n == "a"), "the dead target gets nothing");

    b.restart().await;
    until_health(&node, "checked", &b.target(), "HEALTHY").await;
    let after = names(&node, 20).await;
    assert!(after.contains(&"b".to_owned()), "back in rotation: {after:?}");
    node.stop().await;
}

#[tokio::test]
async fn active_checks_follow_the_probes_status() {
    let node = TestNode::start().await;
    let (upstream, _) = common::recording_upstream().await;
    let checks = json!({
        // The recording upstream answers 200 to every path; 200 is listed unhealthy here to see the probe's
        // status counted.
        "active": {"healthy": {"interval": 0.05, "successes": 1},
                   "unhealthy": {"interval": 0.05, "http_statuses": [200], "http_failures": 1}},
    });
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "checked", "healthchecks": checks})).await;
    let recorded = upstream.trim_start_matches("http://").to_owned();
    node.admin_ok(Method::POST, "/upstreams/checked/targets", json!({"target": recorded})).await;
    node.wait_config().await;
    let started = tokio::time::Instant::now();
    while health_of(&node, "checked", &recorded).await != "UNHEALTHY" {
        assert!(started.elapsed() < Duration::from_secs(30), "the probe never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, balancer) = node.admin(Method::GET, "/upstreams/checked/health?balancer_health=1", None).await;
    assert_eq!(balancer["data"]["health"], "UNHEALTHY", "{balancer}");
    assert_eq!(balancer["data"]["details"]["weight"]["unavailable"], 100, "{balancer}");
    node.stop().await;
}

/// `kong_upstream_target_health` with the `prometheus` plugin's `upstream_health_metrics`: Kong's four states per
/// target, 1 for the current one; absent while no plugin asks for it.
#[tokio::test]
async fn target_health_is_exported_to_prometheus_when_asked() {
    let node = TestNode::start().await;
    let checks = json!({"passive": {"unhealthy": {"tcp_failures": 1}}});
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "checked", "healthchecks": checks})).await;
    node.admin_ok(Method::POST, "/upstreams/checked/targets", json!({"target": "127.0.0.1:9"})).await;
    node.wait_config().await;
    let scrape =
        || async { reqwest::get(format!("{}/metrics", node.node.status_url())).await.unwrap().text().await.unwrap() };
    assert!(!scrape().await.contains("kong_upstream_target_health"), "off until a plugin asks");

    node.admin_ok(Method::POST, "/plugins", json!({"name": "prometheus", "config": {"upstream_health_metrics": true}}))
        .await;
    node.admin(Method::PUT, "/upstreams/checked/targets/127.0.0.1:9/unhealthy", None).await;
    node.wait_config().await;
    let text = scrape().await;
    let series = |state: &str| {
        format!(
            "kong_upstream_target_health{{upstream=\"checked\",target=\"127.0.0.1:9\",address=\"127.0.0.1:9\",state=\"{state}\",subsystem=\"http\"}}"
        )
    };
    assert_eq!(common::metrics::sample(&text, &series("unhealthy")), Some(1.0), "{text}");
    for state in ["healthy", "healthchecks_off", "dns_error"] {
        assert_eq!(common::metrics::sample(&text, &series(state)), Some(0.0), "{state}: {text}");
    }
    common::metrics::promtool_check(&text);
    node.stop().await;
}

/// Kong's per-address endpoints on a target that is an address: the address is the target's own; another one is
/// refused with Kong's 400.
#[tokio::test]
async fn an_address_target_is_set_through_its_address() {
    let node = TestNode::start().await;
    let a = Backend::start("a").await;
    setup(&node, json!({"passive": {"unhealthy": {"tcp_failures": 1}}}), &[&a]).await;
    let target = a.target();
    let path = |address: &str, state: &str| format!("/upstreams/checked/targets/{target}/{address}/{state}");
    let (status, _) = node.admin(Method::PUT, &path(&target, "unhealthy"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(health_of(&node, "checked", &target).await, "UNHEALTHY");
    let (status, _) = node.admin(Method::PUT, &path("127.0.0.3:1", "healthy"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = node.admin(Method::PUT, &path("not-an-ip", "healthy"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = node.admin(Method::PUT, &path(&target, "healthy"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(health_of(&node, "checked", &target).await, "HEALTHY");
    assert_eq!(names(&node, 2).await, ["a", "a"]);
    node.stop().await;
}
