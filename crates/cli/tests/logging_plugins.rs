//! The logging plugins through a real node: `http-log` to an HTTP receiver in the test (axum), `file-log` to a
//! temporary file, `tcp-log` and `udp-log` to sockets in the test. Entries carry Kong's serializer fields and never
//! a credential; a log server that is down or never answers costs the proxy nothing but dropped entries (counted
//! in `/metrics`), and the queue stays bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

mod common;

use common::metrics::sample;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    /// Reads the request, then never answers.
    Hang,
}

/// One request a log server received: headers, method and body.
type Received = (HeaderMap, String, String);

/// An HTTP log server: keeps every request's headers and body.
#[derive(Clone)]
struct Receiver {
    state: Arc<Mutex<(Mode, Vec<Received>)>>,
}

impl Receiver {
    async fn start(mode: Mode) -> (Receiver, String) {
        let receiver = Receiver { state: Arc::new(Mutex::new((mode, Vec::new()))) };
        let app = axum::Router::new().route("/bulk", axum::routing::any(receive)).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, address.to_string())
    }

    fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().1.clone()
    }

    /// Waits (polling, 30 s backstop) until `done` holds for the requests received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        let started = tokio::time::Instant::now();
        while !done(&self.requests()) {
            assert!(started.elapsed() < Duration::from_secs(30), "{what}: got {:?}", self.requests().len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mode = {
        let mut state = receiver.state.lock().unwrap();
        state.1.push((headers, method.to_string(), body));
        state.0
    };
    match mode {
        Mode::Accept => StatusCode::OK.into_response(),
        Mode::Hang => std::future::pending().await,
    }
}

async fn scrape(node: &TestNode) -> String {
    reqwest::get(format!("{}/metrics", node.node.status_url())).await.unwrap().text().await.unwrap()
}

fn entries(text: &str, plugin: &str, outcome: &str) -> u64 {
    let series = format!("gatehouse_log_entries_total{{plugin=\"{plugin}\",outcome=\"{outcome}\"}}");
    sample(text, &series).unwrap_or(0.0) as u64
}

/// A route `/logged` to the echo upstream, with a `key-auth` consumer (`X-My-Key`), and `plugin` on the route.
async fn logged_route(node: &TestNode, plugin: Value) -> Value {
    let url = format!("{}/anything", node.echo_url());
    node.admin_ok(Method::POST, "/services", json!({"name": "logged-service", "url": url})).await;
    node.admin_ok(Method::POST, "/services/logged-service/routes", json!({"name": "logged", "paths": ["/logged"]}))
        .await;
    let plugin = node.admin_ok(Method::POST, "/routes/logged/plugins", plugin).await;
    node.wait_config().await;
    plugin
}

/// A request carrying every kind of credential the serializer must not keep.
async fn credentialed_request(node: &TestNode, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}?apikey=query-secret&page=2", node.proxy_url()))
        .header("authorization", "Bearer header-secret")
        .header("cookie", "session=cookie-secret")
        .header("x-api-key", "api-key-secret")
        .header("x-trace", "visible")
        .send()
        .await
        .unwrap()
}

const SECRETS: &[&str] = &["query-secret", "header-secret", "cookie-secret", "api-key-secret"];

fn assert_kong_entry(entry: &Value) {
    let text = entry.to_string();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} logged: {text}");
    }
    let request = &entry["request"];
    assert_eq!(request["method"], "GET");
    assert_eq!(request["uri"], "/logged/x?apikey=REDACTED&page=2");
    assert!(request["url"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{entry}");
    assert_eq!(request["querystring"], json!({"apikey": "REDACTED", "page": "2"}));
    assert_eq!(request["headers"]["authorization"], "REDACTED");
    assert_eq!(request["headers"]["cookie"], "REDACTED");
    assert_eq!(request["headers"]["x-trace"], "visible");
    assert!(request["size"].as_u64().unwrap() > 0);
    assert_eq!(request["id"].as_str().unwrap().len(), 32);
    assert_eq!(entry["response"]["status"], 200);
    assert!(entry["response"]["headers"]["content-type"].is_string(), "{entry}");
    assert_eq!(entry["upstream_uri"], "/anything/x?apikey=REDACTED&page=2");
    assert_eq!(entry["upstream_status"], "200");
    assert_eq!(entry["route"]["name"], "logged");
    assert_eq!(entry["route"]["paths"], json!(["/logged"]));
    assert_eq!(entry["service"]["name"], "logged-service");
    assert_eq!(entry["client_ip"], "127.0.0.1");
    assert_eq!(entry["source"], "upstream");
    let latencies = &entry["latencies"];
    assert!(latencies["request"].as_u64().unwrap() >= latencies["kong"].as_u64().unwrap());
    assert!(latencies["proxy"].as_i64().unwrap() >= 0);
    let started = entry["started_at"].as_i64().unwrap();
    let now = gatehouse_model::Clock::now(&gatehouse_model::SystemClock).micros() / 1000;
    assert!((now - 600_000..=now).contains(&started), "started_at in milliseconds: {started}");
}

#[tokio::test]
async fn http_log_sends_kongs_entries_in_batches_without_credentials() {
    let node = TestNode::start().await;
    let (receiver, address) = Receiver::start(Mode::Accept).await;
    // Three entries per request body; the long coalescing delay makes the batch wait for all three.
    let plugin = logged_route(
        &node,
        json!({"name": "http-log", "config": {"http_endpoint": format!("http://logger:s3cret@{address}/bulk"),
            "method": "PUT", "headers": {"X-Log-Key": "k-123"},
            "queue": {"max_batch_size": 3, "max_coalescing_delay": 60}}}),
    )
    .await;
    assert_eq!(plugin["config"]["headers"]["X-Log-Key"], "k-123", "returned in clear, as Kong does");
    assert_eq!(plugin["config"]["queue"]["max_entries"], 10000);
    for _ in 0..3 {
        assert_eq!(credentialed_request(&node, "/logged/x").await.status(), StatusCode::OK);
    }
    receiver.wait_for("one batch of three", |r| !r.is_empty()).await;
    let (headers, method, body) = receiver.requests().remove(0);
    assert_eq!(method, "PUT");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-log-key"], "k-123");
    assert_eq!(headers["authorization"], "Basic bG9nZ2VyOnMzY3JldA==", "the URL's user info");
    let batch: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(batch.len(), 3, "{body}");
    for entry in &batch {
        assert_kong_entry(entry);
    }
    let ids: std::collections::HashSet<&str> = batch.iter().map(|e| e["request"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);

    // A batch of one is the entry itself, not an array.
    let id = plugin["id"].as_str().unwrap();
    let patch = json!({"config": {"queue": {"max_batch_size": 1}}});
    node.admin_ok(Method::PATCH, &format!("/plugins/{id}"), patch).await;
    node.wait_config().await;
    assert_eq!(credentialed_request(&node, "/logged/x").await.status(), StatusCode::OK);
    receiver.wait_for("the single entry", |r| r.len() == 2).await;
    let single: Value = serde_json::from_str(&receiver.requests()[1].2).unwrap();
    assert!(single.is_object(), "{single}");
    assert_kong_entry(&single);
    assert_eq!(entries(&scrape(&node).await, "http-log", "sent"), 4);
}

#[tokio::test]
async fn custom_fields_by_lua_is_refused_by_name() {
    let node = TestNode::start().await;
    for (name, config) in [
        ("http-log", json!({"http_endpoint": "http://127.0.0.1:1/", "custom_fields_by_lua": {"x": "return 1"}})),
        ("file-log", json!({"path": "/tmp/gatehouse-never.log", "custom_fields_by_lua": {"x": "return 1"}})),
        ("tcp-log", json!({"host": "127.0.0.1", "port": 1, "custom_fields_by_lua": {"x": "return 1"}})),
    ] {
        let (status, body) = node.admin(Method::POST, "/plugins", Some(json!({"name": name, "config": config}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["name"], "schema violation", "{body}");
        let message = body["fields"]["config"]["custom_fields_by_lua"].as_str().unwrap_or_default();
        assert!(message.contains("not supported by Gatehouse"), "{name}: {body}");
    }
    let empty =
        json!({"name": "http-log", "config": {"http_endpoint": "http://127.0.0.1:1/", "custom_fields_by_lua": {}}});
    assert_eq!(
        node.admin(Method::POST, "/plugins", Some(empty)).await.0,
        StatusCode::CREATED,
        "an empty map is nothing"
    );
}

/// A log server that never answers, and one that is not there: every request is still answered, entries past
/// `max_entries` are dropped (the oldest, counted), and failed deliveries are counted once retries end.
#[tokio::test]
async fn a_dead_or_hanging_log_server_never_slows_or_grows_the_proxy() {
    let node = TestNode::start().await;
    let (hanging, address) = Receiver::start(Mode::Hang).await;
    logged_route(
        &node,
        json!({"name": "http-log", "config": {"http_endpoint": format!("http://{address}/bulk"),
            "timeout": 600000, "queue": {"max_batch_size": 1, "max_entries": 5}}}),
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/logged/x", node.proxy_url());
    for _ in 0..60 {
        assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);
    }
    hanging.wait_for("the first entry, held unanswered", |r| r.len() == 1).await;
    // One entry is being sent (never answered), five wait, the rest were dropped: 54, or 55 when the sender took
    // its entry only after the last request was logged. A client has its answer before the proxy's log phase for
    // that request has run, so the last drops may be counted a moment after the loop ends.
    let started = tokio::time::Instant::now();
    let mut text = scrape(&node).await;
    while entries(&text, "http-log", "dropped") < 54 {
        assert!(started.elapsed() < Duration::from_secs(30), "{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = scrape(&node).await;
    }
    let dropped = entries(&text, "http-log", "dropped");
    assert!((54..=55).contains(&dropped), "{text}");
    assert_eq!(entries(&text, "http-log", "sent"), 0);

    // Nobody listens here: each entry fails its short retries and is counted as failed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let plugin = json!({"name": "http-log", "config": {"http_endpoint": format!("http://{closed}/bulk"),
        "queue": {"max_retry_time": 0.05, "initial_retry_delay": 0.01, "max_retry_delay": 0.01}}});
    node.admin_ok(Method::POST, "/plugins", plugin).await;
    node.admin_ok(Method::POST, "/services/logged-service/routes", json!({"name": "other", "paths": ["/other"]})).await;
    node.wait_config().await;
    for _ in 0..3 {
        assert_eq!(http.get(format!("{}/other", node.proxy_url())).send().await.unwrap().status(), StatusCode::OK);
    }
    let started = tokio::time::Instant::now();
    while entries(&scrape(&node).await, "http-log", "failed") < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", scrape(&node).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn file_log_appends_one_json_line_per_request_and_reopens() {
    let node = TestNode::start().await;
    let dir = gatehouse_store::testing::TempDir::new("file-log");
    let path = dir.path().join("requests.log");
    let plugin = logged_route(
        &node,
        json!({"name": "file-log", "config": {"path": path.display().to_string(), "reopen": true}}),
    )
    .await;
    assert_eq!(plugin["config"]["reopen"], true);
    let lines = |path: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    for _ in 0..2 {
        assert_eq!(credentialed_request(&node, "/logged/x").await.status(), StatusCode::OK);
    }
    let started = tokio::time::Instant::now();
    while lines(&path).len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for entry in lines(&path) {
        assert_kong_entry(&entry);
    }
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    // Moved away, as a rotation does: the next entry goes to a new file at the path.
    std::fs::rename(&path, dir.path().join("requests.log.1")).unwrap();
    assert_eq!(credentialed_request(&node, "/logged/x").await.status(), StatusCode::OK);
    let started = tokio::time::Instant::now();
    while lines(&path).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(lines(&dir.path().join("requests.log.1")).len(), 2);
}

#[tokio::test]
async fn tcp_log_and_udp_log_send_entries_to_their_servers() {
    use tokio::io::AsyncBufReadExt as _;
    let node = TestNode::start().await;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp_port = udp.local_addr().unwrap().port();
    logged_route(&node, json!({"name": "tcp-log", "config": {"host": "127.0.0.1", "port": tcp_port}})).await;
    node.admin_ok(
        Method::POST,
        "/routes/logged/plugins",
        json!({"name": "udp-log", "config": {"host": "127.0.0.1", "port": udp_port}}),
    )
    .await;
    node.wait_config().await;
    for _ in 0..2 {
        assert_eq!(credentialed_request(&node, "/logged/x").await.status(), StatusCode::OK);
    }
    let within = Duration::from_secs(30);
    let (stream, _) = tokio::time::timeout(within, tcp.accept()).await.unwrap().unwrap();
    let mut lines = tokio::io::BufReader::new(stream).lines();
    for _ in 0..2 {
        let line = tokio::time::timeout(within, lines.next_line()).await.unwrap().unwrap().unwrap();
        assert_kong_entry(&serde_json::from_str(&line).unwrap());
    }
    let mut datagram = vec![0u8; 65536];
    for _ in 0..2 {
        let n = tokio::time::timeout(within, udp.recv(&mut datagram)).await.unwrap().unwrap();
        assert_kong_entry(&serde_json::from_slice(&datagram[..n]).unwrap());
    }
}
