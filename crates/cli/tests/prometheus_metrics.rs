//! The status listener and the `prometheus` plugin through a real node: `/status`, `/status/ready`, and
//! `/metrics` after a known sequence of proxied requests (exact `kong_http_requests_total` values per route, code
//! and source; histogram counts), checked by `promtool check metrics` when it is installed
//! (`GATEHOUSE_TEST_PROMTOOL`, set by `.ci/run`, makes it required).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

mod common;

use common::metrics::{promtool_check, sample};

async fn scrape(node: &TestNode) -> String {
    let res = reqwest::get(format!("{}/metrics", node.node.status_url())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    res.text().await.unwrap()
}

#[tokio::test]
async fn status_and_readiness_answer_in_kongs_shapes() {
    let node = TestNode::start().await;
    node.wait_config().await;
    let status_url = node.node.status_url();
    let res = reqwest::get(format!("{status_url}/status/ready")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"message": "ready"}));

    let status: Value = reqwest::get(format!("{status_url}/status")).await.unwrap().json().await.unwrap();
    assert_eq!(status["database"], json!({"reachable": true}));
    let hash = status["configuration_hash"].as_str().unwrap();
    assert!(hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && hash != "0".repeat(32), "{hash}");

    let res = reqwest::get(format!("{status_url}/nothing-here")).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // No request recorded yet: only the node's gauges.
    let text = scrape(&node).await;
    assert_eq!(sample(&text, "kong_datastore_reachable"), Some(1.0), "{text}");
    assert!(text.contains("kong_node_info{node_id=\""), "{text}");
    assert!(!text.contains("kong_http_requests_total"), "{text}");
}

#[tokio::test]
async fn requests_are_counted_per_route_code_and_source() {
    let node = TestNode::start().await;
    node.example_service().await;
    // A route without a name (labelled by its id) to the echo's `/status/{code}`, and one that Kong answers.
    let url = format!("{}/status", node.echo_url());
    node.admin_ok(Method::POST, "/services", json!({"name": "codes", "url": url})).await;
    let unnamed = node.admin_ok(Method::POST, "/services/codes/routes", json!({"paths": ["/status"]})).await;
    let unnamed_id = unnamed["id"].as_str().unwrap().to_owned();
    node.admin_ok(Method::POST, "/services/codes/routes", json!({"name": "closed", "paths": ["/closed"]})).await;
    node.admin_ok(
        Method::POST,
        "/routes/closed/plugins",
        json!({"name": "request-termination", "config": {"status_code": 403}}),
    )
    .await;
    node.admin_ok(
        Method::POST,
        "/plugins",
        json!({"name": "prometheus", "config": {"status_code_metrics": true, "latency_metrics": true}}),
    )
    .await;
    node.wait_config().await;

    let client = reqwest::Client::new();
    let proxy = node.proxy_url();
    let expect = |path: &str, code: u16, times: usize| {
        let client = client.clone();
        let url = format!("{proxy}{path}");
        async move {
            for _ in 0..times {
                assert_eq!(client.get(&url).send().await.unwrap().status().as_u16(), code, "{url}");
            }
        }
    };
    expect("/anything", 200, 3).await;
    expect("/status/404", 404, 2).await;
    expect("/status/500", 500, 1).await;
    expect("/closed", 403, 4).await;
    expect("/no-route-here", 404, 5).await;

    let status: Value = reqwest::get(format!("{}/status", node.node.status_url())).await.unwrap().json().await.unwrap();
    assert_eq!(status["server"]["total_requests"], 15, "every proxied request, routed or not\n{status}");
    assert!(status["server"]["connections_accepted"].as_u64().unwrap() >= 1, "{status}");
    let text = scrape(&node).await;
    assert_eq!(
        sample(&text, &format!("kong_nginx_requests_total{{node_id=\"{}\",subsystem=\"http\"}}", node_id(&text))),
        Some(15.0)
    );
    let requests = |service: &str, route: &str, code: u16, source: &str| {
        let series = format!(
            "kong_http_requests_total{{service=\"{service}\",route=\"{route}\",code=\"{code}\",source=\"{source}\",\
             workspace=\"default\",consumer=\"\"}}"
        );
        sample(&text, &series)
    };
    assert_eq!(requests("example-service", "example-route", 200, "service"), Some(3.0), "{text}");
    assert_eq!(requests("codes", &unnamed_id, 404, "service"), Some(2.0), "{text}");
    assert_eq!(requests("codes", &unnamed_id, 500, "service"), Some(1.0), "{text}");
    assert_eq!(requests("codes", "closed", 403, "kong"), Some(4.0), "{text}");
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("kong_http_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 10.0, "a request that matched no route is not recorded, as in Kong\n{text}");

    let labels = "service=\"example-service\",route=\"example-route\",workspace=\"default\"";
    for family in ["kong_request_latency_ms", "kong_upstream_latency_ms", "kong_kong_latency_ms"] {
        assert_eq!(sample(&text, &format!("{family}_count{{{labels}}}")), Some(3.0), "{family}\n{text}");
        assert_eq!(sample(&text, &format!("{family}_bucket{{{labels},le=\"+Inf\"}}")), Some(3.0), "{family}");
    }
    assert!(text.contains("kong_kong_latency_ms_bucket{service=\"example-service\",route=\"example-route\",workspace=\"default\",le=\"6000\"} 3"));
    assert!(text.contains("kong_upstream_latency_ms_bucket{service=\"example-service\",route=\"example-route\",workspace=\"default\",le=\"60000\"} 3"));
    let closed = "service=\"codes\",route=\"closed\",workspace=\"default\"";
    assert_eq!(sample(&text, &format!("kong_upstream_latency_ms_count{{{closed}}}")), None, "never went upstream");
    assert_eq!(sample(&text, &format!("kong_request_latency_ms_count{{{closed}}}")), Some(4.0));

    promtool_check(&text);
}

#[tokio::test]
async fn per_consumer_fills_the_consumer_label_only_when_set() {
    let node = TestNode::start().await;
    node.example_service().await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "bob"})).await;
    node.admin_ok(Method::POST, "/consumers/bob/key-auth", json!({"key": "bob-key"})).await;
    node.admin_ok(Method::POST, "/routes/example-route/plugins", json!({"name": "key-auth"})).await;
    let plugin = node
        .admin_ok(
            Method::POST,
            "/plugins",
            json!({"name": "prometheus",
                "config": {"status_code_metrics": true, "per_consumer": true, "bandwidth_metrics": true}}),
        )
        .await;
    node.wait_config().await;
    let client = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let res = client.post(&url).header("apikey", "bob-key").body("12345").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let egress: f64 = res.headers()["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let id = plugin["id"].as_str().unwrap();
    node.admin_ok(Method::PATCH, &format!("/plugins/{id}"), json!({"config": {"per_consumer": false}})).await;
    node.wait_config().await;
    assert_eq!(client.get(&url).header("apikey", "bob-key").send().await.unwrap().status(), StatusCode::OK);

    let text = scrape(&node).await;
    let series = |code: u16, source: &str, consumer: &str| {
        sample(
            &text,
            &format!(
                "kong_http_requests_total{{service=\"example-service\",route=\"example-route\",code=\"{code}\",\
                 source=\"{source}\",workspace=\"default\",consumer=\"{consumer}\"}}"
            ),
        )
    };
    assert_eq!(series(200, "service", "bob"), Some(1.0), "{text}");
    assert_eq!(series(401, "kong", ""), Some(1.0), "{text}");
    assert_eq!(series(200, "service", ""), Some(1.0), "per_consumer off: no consumer label\n{text}");
    assert!(!text.contains("kong_request_latency_ms"), "latency_metrics off\n{text}");
    let bandwidth = |direction: &str, consumer: &str| {
        sample(
            &text,
            &format!(
                "kong_bandwidth_bytes{{service=\"example-service\",route=\"example-route\",direction=\"{direction}\",\
                 workspace=\"default\",consumer=\"{consumer}\"}}"
            ),
        )
    };
    assert_eq!(bandwidth("ingress", "bob"), Some(5.0), "the request body's declared length\n{text}");
    assert_eq!(bandwidth("egress", "bob"), Some(egress), "{text}");
    assert!(bandwidth("egress", "").unwrap() > 0.0, "the 401's and the unlabelled 200's bodies\n{text}");
    promtool_check(&text);
}

/// The node id `kong_node_info` reports.
fn node_id(text: &str) -> String {
    let start = text.find("kong_node_info{node_id=\"").unwrap() + "kong_node_info{node_id=\"".len();
    text[start..].split('"').next().unwrap().to_owned()
}
