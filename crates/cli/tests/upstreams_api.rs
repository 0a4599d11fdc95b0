//! Kong's `upstreams` and `targets` on the Admin API and Konnect's core entities (issue 19, item 4): defaults,
//! Kong's validation messages, targets under their upstream by id or `host:port`, the 409 of a duplicate target,
//! `targets/all`, the cascade from an upstream, and the health endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

fn targets(list: &Value) -> Vec<String> {
    let mut t: Vec<String> =
        list["data"].as_array().unwrap().iter().map(|t| t["target"].as_str().unwrap().to_owned()).collect();
    t.sort();
    t
}

#[tokio::test]
async fn upstreams_have_kongs_defaults_and_validation() {
    let node = TestNode::start().await;
    let (status, u) = node.admin(Method::POST, "/upstreams", Some(json!({"name": "service.v1.xyz"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{u}");
    assert_eq!(
        (u["algorithm"].clone(), u["slots"].clone(), u["hash_on"].clone(), u["hash_fallback"].clone()),
        (json!("round-robin"), json!(10000), json!("none"), json!("none"))
    );
    assert_eq!(u["hash_on_cookie_path"], "/");
    assert_eq!(u["healthchecks"]["active"]["healthy"]["http_statuses"], json!([200, 302]));
    assert_eq!(u["healthchecks"]["active"]["unhealthy"]["interval"], 0);
    assert_eq!(u["healthchecks"]["passive"]["healthy"]["successes"], 0);
    assert_eq!(u["healthchecks"]["threshold"], 0);
    assert_eq!(u["use_srv_name"], false);

    // By name, and Kong's shorthand: a hash_on makes it consistent-hashing.
    let (status, u) = node.admin(Method::PATCH, "/upstreams/service.v1.xyz", Some(json!({"hash_on": "ip"}))).await;
    assert_eq!((status, u["algorithm"].as_str()), (StatusCode::OK, Some("consistent-hashing")), "{u}");

    for (body, field, message) in [
        (json!({"name": "10.0.0.1"}), "name", "Invalid name ('10.0.0.1'); no ip addresses allowed"),
        (json!({"name": "a.example:80"}), "name", "Invalid name ('a.example:80'); no port allowed"),
        (json!({"name": "u", "slots": 5}), "slots", "value should be between 10 and 65536"),
        (
            json!({"name": "u", "algorithm": "random"}),
            "algorithm",
            "expected one of: consistent-hashing, least-connections, round-robin, latency",
        ),
        (json!({"name": "u", "hash_on": "header"}), "hash_on_header", "required field missing"),
        (json!({"name": "u", "hash_on": "cookie"}), "hash_on_cookie", "required field missing"),
    ] {
        let (status, e) = node.admin(Method::POST, "/upstreams", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!((e["code"].clone(), e["fields"][field].clone()), (json!(2), json!(message)), "{body}: {e}");
    }
    let (status, e) = node.admin(Method::POST, "/upstreams", Some(json!({}))).await;
    assert_eq!((status, e["fields"]["name"].clone()), (StatusCode::BAD_REQUEST, json!("required field missing")));
    let (status, e) = node
        .admin(Method::POST, "/upstreams", Some(json!({"name": "u", "healthchecks": {"active": {"timeout": -1}}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["fields"]["healthchecks"]["active"]["timeout"], "value should be between 0 and 65535", "{e}");
    let (status, e) = node.admin(Method::POST, "/upstreams", Some(json!({"name": "service.v1.xyz"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["message"], "UNIQUE violation detected on '{name=\"service.v1.xyz\"}'");
    node.stop().await;
}

#[tokio::test]
async fn targets_live_under_their_upstream() {
    let node = TestNode::start().await;
    let u = node.admin_ok(Method::POST, "/upstreams", json!({"name": "backend"})).await;
    let upstream_id = u["id"].as_str().unwrap().to_owned();
    let (status, t) = node.admin(Method::POST, "/upstreams/backend/targets", Some(json!({"target": "10.0.0.1"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(
        (t["target"].clone(), t["weight"].clone(), t["upstream"].clone()),
        (json!("10.0.0.1:8000"), json!(100), json!({"id": upstream_id})),
        "Kong's default port 8000 and weight 100"
    );
    let target_id = t["id"].as_str().unwrap().to_owned();
    node.admin_ok(Method::POST, "/upstreams/backend/targets", json!({"target": "10.0.0.2:81", "weight": 0})).await;

    // Kong's 409 on (upstream, target), whichever way the port is written.
    let (status, dup) =
        node.admin(Method::POST, "/upstreams/backend/targets", Some(json!({"target": "10.0.0.1:8000"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");
    assert_eq!(
        dup["message"],
        format!("UNIQUE violation detected on '{{target=\"10.0.0.1:8000\",upstream={{id=\"{upstream_id}\"}}}}'")
    );
    for (body, field, message) in [
        (
            json!({"target": "not a host"}),
            "target",
            "Invalid target ('not a host'); not a valid hostname or ip address",
        ),
        (json!({"target": "h", "weight": 65536}), "weight", "value should be between 0 and 65535"),
        (json!({"weight": 1}), "target", "required field missing"),
    ] {
        let (status, e) = node.admin(Method::POST, "/upstreams/backend/targets", Some(body.clone())).await;
        assert_eq!((status, e["fields"][field].clone()), (StatusCode::BAD_REQUEST, json!(message)), "{body}: {e}");
    }

    // By id or by `host:port` (the default port added), only under their upstream.
    let by_id = node.admin(Method::GET, &format!("/upstreams/backend/targets/{target_id}"), None).await;
    assert_eq!((by_id.0, by_id.1["target"].clone()), (StatusCode::OK, json!("10.0.0.1:8000")));
    let by_name = node.admin(Method::GET, "/upstreams/backend/targets/10.0.0.1", None).await;
    assert_eq!(by_name.1["id"], target_id.as_str());
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "other"})).await;
    assert_eq!(
        node.admin(Method::GET, &format!("/upstreams/other/targets/{target_id}"), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, patched) =
        node.admin(Method::PATCH, "/upstreams/backend/targets/10.0.0.1:8000", Some(json!({"weight": 7}))).await;
    assert_eq!((status, patched["weight"].clone()), (StatusCode::OK, json!(7)));

    let list = node.admin(Method::GET, "/upstreams/backend/targets", None).await.1;
    assert_eq!(targets(&list), ["10.0.0.1:8000", "10.0.0.2:81"]);
    let all = node.admin(Method::GET, "/upstreams/backend/targets/all", None).await.1;
    assert_eq!(targets(&all), ["10.0.0.1:8000", "10.0.0.2:81"], "weight 0 included");

    // Konnect's core entities for another control plane: the same handlers.
    let (_, cp) = node.post("/v2/control-planes", json!({"name": "other"})).await;
    let base = format!("/v2/control-planes/{}/core-entities", cp["id"].as_str().unwrap());
    assert_eq!(node.post(&format!("{base}/upstreams"), json!({"name": "backend"})).await.0, StatusCode::CREATED);
    let (status, t) = node.post(&format!("{base}/upstreams/backend/targets"), json!({"target": "h.example"})).await;
    assert_eq!((status, t["target"].clone()), (StatusCode::CREATED, json!("h.example:8000")), "{t}");
    assert_eq!(targets(&node.get(&format!("{base}/upstreams/backend/targets")).await.1), ["h.example:8000"]);

    // Deleting a target by `host:port`; deleting the upstream takes the rest with it.
    let (status, _) = node.admin(Method::DELETE, "/upstreams/backend/targets/10.0.0.2:81", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(targets(&node.admin(Method::GET, "/upstreams/backend/targets", None).await.1), ["10.0.0.1:8000"]);
    assert_eq!(node.admin(Method::DELETE, "/upstreams/backend", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        node.admin(Method::GET, &format!("/upstreams/backend/targets/{target_id}"), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, left) = node.admin(Method::GET, "/targets", None).await;
    assert_eq!(left["data"], json!([]), "the upstream's targets went with it");
    node.stop().await;
}

#[tokio::test]
async fn health_endpoints_report_and_set_this_nodes_view() {
    let node = TestNode::start().await;
    node.admin_ok(
        Method::POST,
        "/upstreams",
        json!({"name": "backend", "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 1}}}}),
    )
    .await;
    node.admin_ok(Method::POST, "/upstreams/backend/targets", json!({"target": "127.0.0.1:9"})).await;
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "unchecked"})).await;
    node.admin_ok(Method::POST, "/upstreams/unchecked/targets", json!({"target": "127.0.0.1:10"})).await;
    node.wait_config().await;

    let (status, health) = node.admin(Method::GET, "/upstreams/backend/health", None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["data"][0]["health"], "HEALTHY", "{health}");
    assert_eq!(
        health["data"][0]["data"]["addresses"][0],
        json!({"ip": "127.0.0.1", "port": 9, "health": "HEALTHY", "weight": 100})
    );
    assert!(health["node_id"].is_string(), "{health}");
    let (_, unchecked) = node.admin(Method::GET, "/upstreams/unchecked/health", None).await;
    assert_eq!(unchecked["data"][0]["health"], "HEALTHCHECKS_OFF");

    assert_eq!(
        node.admin(Method::PUT, "/upstreams/backend/targets/127.0.0.1:9/unhealthy", None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, health) = node.admin(Method::GET, "/upstreams/backend/health", None).await;
    assert_eq!(health["data"][0]["health"], "UNHEALTHY");
    let (_, balancer) = node.admin(Method::GET, "/upstreams/backend/health?balancer_health=1", None).await;
    assert_eq!(balancer["data"]["health"], "UNHEALTHY", "{balancer}");
    assert_eq!(balancer["data"]["details"]["weight"], json!({"total": 100, "available": 0, "unavailable": 100}));
    assert_eq!(
        node.admin(Method::PUT, "/upstreams/backend/targets/127.0.0.1:9/healthy", None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, balancer) = node.admin(Method::GET, "/upstreams/backend/health?balancer_health=1", None).await;
    assert_eq!(balancer["data"]["health"], "HEALTHY");

    assert_eq!(
        node.admin(Method::PUT, "/upstreams/backend/targets/10.9.9.9:1/healthy", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(node.admin(Method::GET, "/upstreams/nobody/health", None).await.0, StatusCode::NOT_FOUND);
    node.stop().await;
}
