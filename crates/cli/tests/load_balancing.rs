//! Services whose host names an upstream (issue 19, item 4): weighted round-robin within 2 % of the weights over
//! 10,000 requests, consistent hashing that keeps keys on their target when a target is added, weight 0, the
//! upstream's `host_header`, and Kong's 503 when no target is left. Real HTTP targets on loopback ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::backends::Backend;
use gatehouse_testkit::TestNode;

/// An upstream named `name` over `targets` (target, weight), a service on it and a route `/lb`.
async fn balanced_route(node: &TestNode, upstream: Value, targets: &[(String, u32)]) {
    let name = upstream["name"].as_str().unwrap().to_owned();
    node.admin_ok(Method::POST, "/upstreams", upstream).await;
    for (target, weight) in targets {
        node.admin_ok(Method::POST, &format!("/upstreams/{name}/targets"), json!({"target": target, "weight": weight}))
            .await;
    }
    node.admin_ok(Method::POST, "/services", json!({"name": "lb", "host": name, "port": 80})).await;
    node.admin_ok(Method::POST, "/services/lb/routes", json!({"name": "lb", "paths": ["/lb"]})).await;
    node.wait_config().await;
}

/// Sends `n` requests (8 at a time) and counts the answers by backend name; every request must succeed.
async fn spread(node: &TestNode, n: usize) -> HashMap<String, usize> {
    let client = reqwest::Client::new();
    let url = format!("{}/lb", node.proxy_url());
    let bodies: Vec<(StatusCode, String)> = futures_util::stream::iter(0..n)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.get(&url).send().await.unwrap();
                (r.status(), r.text().await.unwrap())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut counts = HashMap::new();
    for (status, body) in bodies {
        assert_eq!(status, StatusCode::OK, "{body}");
        *counts.entry(body).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn weighted_round_robin_follows_the_weights() {
    let node = TestNode::start().await;
    let (a, b, c) = (Backend::start("a").await, Backend::start("b").await, Backend::start("c").await);
    let d = Backend::start("disabled").await;
    balanced_route(
        &node,
        json!({"name": "weighted"}),
        &[(a.target(), 100), (b.target(), 50), (c.target(), 25), (d.target(), 0)],
    )
    .await;
    let n = 10_000;
    let counts = spread(&node, n).await;
    assert_eq!(counts.get("disabled"), None, "weight 0 is disabled: {counts:?}");
    for (name, weight) in [("a", 100.0), ("b", 50.0), ("c", 25.0)] {
        let expected = n as f64 * weight / 175.0;
        let got = counts.get(name).copied().unwrap_or(0) as f64;
        assert!((got - expected).abs() / expected <= 0.02, "{name}: {got} vs {expected} ({counts:?})");
    }
    node.stop().await;
}

#[tokio::test]
async fn consistent_hashing_keeps_keys_when_a_fourth_target_joins() {
    let node = TestNode::start().await;
    let backends = [Backend::start("a").await, Backend::start("b").await, Backend::start("c").await];
    let fourth = Backend::start("d").await;
    let upstream = json!({"name": "hashed", "hash_on": "header", "hash_on_header": "x-user"});
    let targets: Vec<(String, u32)> = backends.iter().map(|b| (b.target(), 100)).collect();
    balanced_route(&node, upstream, &targets).await;
    let client = reqwest::Client::new();
    let url = format!("{}/lb", node.proxy_url());
    let route = |user: String| {
        let (client, url) = (client.clone(), url.clone());
        async move { (user.clone(), client.get(&url).header("x-user", user).send().await.unwrap().text().await.unwrap()) }
    };
    let keys: Vec<String> = (0..1000).map(|k| format!("user-{k}")).collect();
    let before: HashMap<String, String> =
        futures_util::stream::iter(keys.clone()).map(route).buffer_unordered(8).collect().await;
    // The same key goes to the same target every time.
    let again: HashMap<String, String> =
        futures_util::stream::iter(keys.clone()).map(route).buffer_unordered(8).collect().await;
    assert_eq!(before, again);

    node.admin_ok(Method::POST, "/upstreams/hashed/targets", json!({"target": fourth.target()})).await;
    node.wait_config().await;
    let after: HashMap<String, String> =
        futures_util::stream::iter(keys.clone()).map(route).buffer_unordered(8).collect().await;
    let moved_to_new = keys.iter().filter(|k| after[*k] == "d").count();
    let kept = keys.iter().filter(|k| after[*k] == before[*k]).count();
    // A key either stays or moves to the new target (which takes about a quarter).
    assert!(kept as f64 >= 0.95 * (keys.len() - moved_to_new) as f64, "kept {kept}, moved to d {moved_to_new}");
    assert_eq!(kept + moved_to_new, keys.len());
    assert!((150..350).contains(&moved_to_new), "the fourth target's share: {moved_to_new}");
    node.stop().await;
}

#[tokio::test]
async fn the_upstreams_host_header_and_kongs_503_without_targets() {
    let node = TestNode::start().await;
    let (upstream, seen) = common::recording_upstream().await;
    let target = upstream.trim_start_matches("http://").to_owned();
    balanced_route(&node, json!({"name": "recorded", "host_header": "api.internal"}), &[(target.clone(), 100)]).await;
    let r = reqwest::get(format!("{}/lb", node.proxy_url())).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap()[0].header("host"), ["api.internal"]);

    // Every target unhealthy (set through the Admin API): Kong's 503.
    let path = format!("/upstreams/recorded/targets/{target}/unhealthy");
    assert_eq!(node.admin(Method::PUT, &path, None).await.0, StatusCode::NO_CONTENT);
    let r = reqwest::get(format!("{}/lb", node.proxy_url())).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "failure to get a peer from the ring-balancer", "{body}");

    // No target at all: the same.
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "empty"})).await;
    node.admin_ok(Method::PATCH, "/services/lb", json!({"host": "empty"})).await;
    node.wait_config().await;
    let r = reqwest::get(format!("{}/lb", node.proxy_url())).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    node.stop().await;
}

#[tokio::test]
async fn least_connections_and_latency_spread_over_every_target() {
    let node = TestNode::start().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    balanced_route(
        &node,
        json!({"name": "least", "algorithm": "least-connections"}),
        &[(a.target(), 1), (b.target(), 1)],
    )
    .await;
    let counts = spread(&node, 200).await;
    assert!(counts.get("a").is_some_and(|n| *n > 0) && counts.get("b").is_some_and(|n| *n > 0), "{counts:?}");
    node.admin_ok(Method::PATCH, "/upstreams/least", json!({"algorithm": "latency"})).await;
    node.wait_config().await;
    let counts = spread(&node, 50).await;
    assert_eq!(counts.values().sum::<usize>(), 50, "{counts:?}");
    node.stop().await;
}
