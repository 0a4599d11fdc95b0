//! The `opentelemetry` plugin through a real node: an OTLP/HTTP receiver in the test (axum, decoding
//! `ExportTraceServiceRequest` with the `opentelemetry-proto` types) gets the spans of requests authenticated by
//! `oauth2-introspection` against the node's own issuer; the upstream records the `traceparent` it was sent. A
//! collector that refuses or never answers costs the proxy dropped spans only (counted in `/metrics`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, Tutorial};

mod common;

use common::metrics::{promtool_check, sample};
use common::{SeenLog, recording_upstream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    Refuse,
    /// Reads the request, then never answers.
    Hang,
}

/// An OTLP/HTTP receiver: decodes every export request and keeps it with its headers.
#[derive(Clone)]
struct Collector {
    state: Arc<Mutex<Received>>,
}

struct Received {
    mode: Mode,
    exports: Vec<(HeaderMap, ExportTraceServiceRequest)>,
    /// Export requests being held unanswered right now.
    hanging: usize,
}

impl Collector {
    async fn start(mode: Mode) -> (Collector, String) {
        let collector = Collector { state: Arc::new(Mutex::new(Received { mode, exports: Vec::new(), hanging: 0 })) };
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(receive)).with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (collector, url)
    }

    fn spans(&self) -> Vec<Span> {
        let state = self.state.lock().unwrap();
        state
            .exports
            .iter()
            .flat_map(|(_, r)| r.resource_spans.iter())
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }

    fn exports(&self) -> Vec<(HeaderMap, ExportTraceServiceRequest)> {
        self.state.lock().unwrap().exports.clone()
    }

    fn hanging(&self) -> usize {
        self.state.lock().unwrap().hanging
    }

    /// Waits (polling, 30 s backstop) until `done` holds for the spans received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let started = tokio::time::Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{what}: got {:?}", names(&spans));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn receive(State(collector): State<Collector>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
    let mode = {
        let mut state = collector.state.lock().unwrap();
        state.exports.push((headers, request));
        if state.mode == Mode::Hang {
            state.hanging += 1;
        }
        state.mode
    };
    match mode {
        Mode::Accept => StatusCode::OK.into_response(),
        Mode::Refuse => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Hang => std::future::pending().await,
    }
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    })
}

/// A service to the recording upstream with a route `/traced`.
async fn traced_route(node: &TestNode) -> SeenLog {
    let (upstream, seen) = recording_upstream().await;
    node.admin_ok(Method::POST, "/services", json!({"name": "recorded", "url": upstream})).await;
    node.admin_ok(Method::POST, "/services/recorded/routes", json!({"name": "traced", "paths": ["/traced"]})).await;
    seen
}

fn introspection(t: &Tutorial) -> Value {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", t.client_id, t.client_secret));
    json!({"name": "oauth2-introspection", "config": {"introspection_url": format!("{}/introspect", t.issuer),
        "authorization_value": format!("Basic {basic}"), "consumer_by": "client_id"}})
}

fn opentelemetry(endpoint: &str, extra: Value) -> Value {
    let mut config = json!({"traces_endpoint": endpoint, "queue": {"max_coalescing_delay": 0}});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    json!({"name": "opentelemetry", "config": config})
}

async fn scrape(node: &TestNode) -> String {
    reqwest::get(format!("{}/metrics", node.node.status_url())).await.unwrap().text().await.unwrap()
}

const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn an_introspected_requests_spans_reach_the_collector_linked_to_the_caller_and_the_upstream() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    let seen = traced_route(&node).await;
    let (collector, endpoint) = Collector::start(Mode::Accept).await;
    node.admin_ok(Method::POST, "/plugins", introspection(&t)).await;
    let extra = json!({"sampling_rate": 0, "headers": {"x-collector-key": "k-123"},
        "resource_attributes": {"service.name": "edge", "deployment.environment": "test"},
        "http_response_header_for_traceid": "x-trace-id"});
    let plugin = node.admin_ok(Method::POST, "/plugins", opentelemetry(&endpoint, extra)).await;
    assert_eq!(plugin["config"]["headers"]["x-collector-key"], "k-123", "returned in clear, as Kong does");
    node.wait_config().await;

    let (status, token) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let token = token["access_token"].as_str().unwrap();
    // Sampled by the caller, whatever the rate (0 here).
    let res = reqwest::Client::new()
        .get(format!("{}/traced/x", node.proxy_url()))
        .bearer_auth(token)
        .header("traceparent", format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-trace-id"], INCOMING_TRACE);

    let spans = collector
        .wait_for("the request's six spans", |spans| {
            [
                "kong",
                "kong.router",
                "kong.balancer",
                "kong.access.plugin.oauth2-introspection",
                "kong.internal.request",
                "kong.header_filter.plugin.opentelemetry",
            ]
            .iter()
            .all(|n| spans.iter().any(|s| s.name == *n))
        })
        .await;
    assert!(spans.iter().all(|s| hex(&s.trace_id) == INCOMING_TRACE), "one trace, the caller's");
    let span = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let (root, balancer) = (span("kong"), span("kong.balancer"));
    let (plugin_span, idp) = (span("kong.access.plugin.oauth2-introspection"), span("kong.internal.request"));
    assert_eq!(hex(&root.parent_span_id), INCOMING_SPAN, "the caller's span is the request's parent");
    assert_eq!(root.parent_span_id.len(), 8);
    assert_eq!(balancer.parent_span_id, root.span_id);
    assert_eq!(plugin_span.parent_span_id, root.span_id);
    assert_eq!(idp.parent_span_id, plugin_span.span_id, "the IdP call is under the plugin that made it");
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    assert_eq!(
        (root.kind, balancer.kind, idp.kind),
        (SpanKind::Server as i32, SpanKind::Client as i32, SpanKind::Client as i32)
    );
    assert_eq!(string_attribute(&root.attributes, "http.method"), Some("GET"));
    assert!(string_attribute(&root.attributes, "http.url").unwrap().ends_with("/traced/x"));
    assert_eq!(int_attribute(&root.attributes, "http.status_code"), Some(200));
    assert_eq!(int_attribute(&balancer.attributes, "http.status_code"), Some(200));
    assert_eq!(string_attribute(&idp.attributes, "http.url"), Some(format!("{}/introspect", t.issuer).as_str()));
    assert!(root.start_time_unix_nano <= plugin_span.start_time_unix_nano);
    assert!(plugin_span.end_time_unix_nano <= balancer.start_time_unix_nano, "authentication before the call");
    assert!(balancer.end_time_unix_nano <= root.end_time_unix_nano);
    let (router, header_filter) = (span("kong.router"), span("kong.header_filter.plugin.opentelemetry"));
    assert_eq!((&router.parent_span_id, &header_filter.parent_span_id), (&root.span_id, &root.span_id));
    assert!(router.end_time_unix_nano <= plugin_span.start_time_unix_nano, "routing before authentication");
    assert!(balancer.end_time_unix_nano <= header_filter.start_time_unix_nano, "the response head after the call");

    // The upstream's parent is the balancer span, in the caller's trace.
    let upstream = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(upstream.header("traceparent"), [format!("00-{INCOMING_TRACE}-{}-01", hex(&balancer.span_id))]);

    let (headers, request) = collector.exports().into_iter().next().unwrap();
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-collector-key"], "k-123");
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(string_attribute(&resource.attributes, "service.name"), Some("edge"), "overridden");
    assert_eq!(string_attribute(&resource.attributes, "deployment.environment"), Some("test"));
    assert!(string_attribute(&resource.attributes, "service.version").is_some());
    assert_eq!(request.resource_spans[0].scope_spans[0].scope.as_ref().unwrap().name, "kong-internal");
}

/// The IdP calls of `openid-connect` (discovery and JWKS, on first use) and `upstream-oauth` (the token
/// endpoint) are `kong.internal.request` spans under the plugin phase that made them, with Kong's attributes; a
/// second request finds both cached and calls nobody.
#[tokio::test]
async fn openid_connect_and_upstream_oauth_idp_calls_are_spans_under_their_plugins() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("RS256").await;
    traced_route(&node).await;
    let (collector, endpoint) = Collector::start(Mode::Accept).await;
    node.admin_ok(
        Method::POST,
        "/routes/traced/plugins",
        json!({"name": "openid-connect", "config": {"issuer": t.issuer, "auth_methods": ["bearer"],
            "audience": ["http://myhttpbin.dev"]}}),
    )
    .await;
    node.admin_ok(
        Method::POST,
        "/routes/traced/plugins",
        json!({"name": "upstream-oauth", "config": {"oauth": {"token_endpoint": format!("{}/oauth/token", t.issuer),
            "client_id": t.client_id, "client_secret": t.client_secret, "scopes": ["my-scope"]}}}),
    )
    .await;
    node.admin_ok(Method::POST, "/plugins", opentelemetry(&endpoint, json!({"sampling_rate": 0}))).await;
    node.wait_config().await;
    let (status, token) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let token = token["access_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let traced = |trace: &str| {
        http.get(format!("{}/traced", node.proxy_url()))
            .bearer_auth(&token)
            .header("traceparent", format!("00-{trace}-{INCOMING_SPAN}-01"))
            .send()
    };
    assert_eq!(traced(INCOMING_TRACE).await.unwrap().status(), StatusCode::OK);
    let spans = collector.wait_for("the first request's spans", |spans| spans.iter().any(|s| s.name == "kong")).await;
    let span = |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{:?}", names(&spans)));
    let (oidc, upstream_oauth) = (span("kong.access.plugin.openid-connect"), span("kong.access.plugin.upstream-oauth"));
    let calls_under = |parent: &Span| -> Vec<(String, String, Option<i64>)> {
        spans
            .iter()
            .filter(|s| s.name == "kong.internal.request" && s.parent_span_id == parent.span_id)
            .map(|s| {
                assert!(s.start_time_unix_nano >= parent.start_time_unix_nano, "within the plugin's phase");
                assert!(s.end_time_unix_nano <= parent.end_time_unix_nano, "within the plugin's phase");
                let text = |k| string_attribute(&s.attributes, k).unwrap().to_owned();
                (text("http.method"), text("http.url"), int_attribute(&s.attributes, "http.status_code"))
            })
            .collect()
    };
    let oidc_calls = calls_under(oidc);
    assert_eq!(oidc_calls.len(), 2, "discovery, then the JWKS: {oidc_calls:?}");
    assert_eq!(oidc_calls[0], ("GET".into(), format!("{}/.well-known/openid-configuration", t.issuer), Some(200)));
    assert_eq!((oidc_calls[1].0.as_str(), oidc_calls[1].2), ("GET", Some(200)), "{oidc_calls:?}");
    assert_eq!(calls_under(upstream_oauth), [("POST".into(), format!("{}/oauth/token", t.issuer), Some(200))]);
    assert_eq!(spans.iter().filter(|s| s.name == "kong.internal.request").count(), 3, "no other call");

    let second = "0af7651916cd43dd8448eb211c80319c";
    assert_eq!(traced(second).await.unwrap().status(), StatusCode::OK);
    let spans = collector
        .wait_for("the second request's spans", |spans| {
            spans.iter().any(|s| s.name == "kong" && hex(&s.trace_id) == second)
        })
        .await;
    let calls = spans.iter().filter(|s| hex(&s.trace_id) == second && s.name == "kong.internal.request").count();
    assert_eq!(calls, 0, "keys and token cached: no call, no span");
}

/// At `sampling_rate` 0 nothing is exported: a last request sampled by its caller arrives alone.
#[tokio::test]
async fn sampling_rate_zero_exports_nothing() {
    let node = TestNode::start().await;
    let seen = traced_route(&node).await;
    let (collector, endpoint) = Collector::start(Mode::Accept).await;
    node.admin_ok(Method::POST, "/plugins", opentelemetry(&endpoint, json!({"sampling_rate": 0}))).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    let url = format!("{}/traced", node.proxy_url());
    for _ in 0..50 {
        assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);
    }
    // As Kong, an unsampled request still propagates a trace: a new trace id each, the sampled flag off.
    let sent: Vec<String> = seen.lock().unwrap().iter().map(|s| s.header("traceparent").concat()).collect();
    assert_eq!(sent.len(), 50);
    let mut trace_ids: Vec<&str> = sent
        .iter()
        .map(|t| {
            assert!(t.len() == 55 && t.starts_with("00-") && t.ends_with("-00"), "{t}");
            &t[3..35]
        })
        .collect();
    trace_ids.sort_unstable();
    trace_ids.dedup();
    assert_eq!(trace_ids.len(), 50, "one trace per request");
    let unsampled_parent = format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-00");
    assert_eq!(http.get(&url).header("traceparent", unsampled_parent).send().await.unwrap().status(), StatusCode::OK);
    let sent = seen.lock().unwrap().last().unwrap().header("traceparent").concat();
    assert!(sent.starts_with(&format!("00-{INCOMING_TRACE}-")) && sent.ends_with("-00"), "the caller's trace: {sent}");
    assert!(!sent.contains(INCOMING_SPAN), "under the gateway's span id");
    let marker = format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-01");
    assert_eq!(http.get(&url).header("traceparent", marker).send().await.unwrap().status(), StatusCode::OK);
    let spans = collector.wait_for("the marker's spans", |spans| spans.len() >= 4).await;
    assert_eq!(
        names(&spans),
        ["kong", "kong.balancer", "kong.router", "kong.header_filter.plugin.opentelemetry"],
        "the sampled request's spans only"
    );
    assert!(spans.iter().all(|s| hex(&s.trace_id) == INCOMING_TRACE));
}

/// The request counter `gatehouse_opentelemetry_spans_total{outcome=…}` in a scrape (0 when absent).
fn spans_counted(text: &str, outcome: &str) -> u64 {
    sample(text, &format!("gatehouse_opentelemetry_spans_total{{outcome=\"{outcome}\"}}")).unwrap_or(0.0) as u64
}

/// A collector that answers 500: every export fails at once (no retries with `max_retry_time` 0), the requests are
/// unaffected, and every span is counted as failed or dropped.
#[tokio::test]
async fn a_refusing_collector_costs_failed_spans_only() {
    let node = TestNode::start().await;
    traced_route(&node).await;
    let (collector, endpoint) = Collector::start(Mode::Refuse).await;
    let extra = json!({"sampling_rate": 1, "queue": {"max_coalescing_delay": 0, "max_retry_time": 0}});
    node.admin_ok(Method::POST, "/plugins", opentelemetry(&endpoint, extra)).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    let url = format!("{}/traced", node.proxy_url());
    for _ in 0..20 {
        assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);
    }
    // Four spans a request (the request, routing, the upstream call, the plugin's `header_filter`).
    let started = tokio::time::Instant::now();
    loop {
        let text = scrape(&node).await;
        let (failed, dropped) = (spans_counted(&text, "failed"), spans_counted(&text, "dropped"));
        if failed + dropped == 80 {
            assert!(failed > 0, "{text}");
            assert_eq!(spans_counted(&text, "exported"), 0);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!collector.exports().is_empty(), "the collector was asked");
}

/// A collector that accepts an export and never answers: while it holds the export, requests keep being proxied
/// and the oldest queued spans are dropped once `max_entries` are queued; nothing else grows.
#[tokio::test]
async fn a_hanging_collector_costs_dropped_spans_only() {
    let node = TestNode::start().await;
    traced_route(&node).await;
    let (collector, endpoint) = Collector::start(Mode::Hang).await;
    // Timeouts far beyond the test, so the held export is never given up (and retried) while it runs.
    let extra = json!({"sampling_rate": 1, "send_timeout": 600_000, "read_timeout": 600_000,
        "queue": {"max_coalescing_delay": 0, "max_entries": 6, "max_batch_size": 2}});
    node.admin_ok(Method::POST, "/plugins", opentelemetry(&endpoint, extra)).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    let url = format!("{}/traced", node.proxy_url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);
    let started = tokio::time::Instant::now();
    while collector.hanging() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first export never reached the collector");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..100 {
        assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);
    }
    // Every request was answered while the first export was still held: the proxy never waited for the collector.
    assert_eq!(collector.exports().len(), 1, "one export at a time, and it is still held");
    let text = scrape(&node).await;
    let dropped = spans_counted(&text, "dropped");
    // Four spans a request (`kong`, `kong.balancer`, `kong.router`, the plugin's `header_filter`), 404 in all.
    // The first batch (2 spans) is being sent; the queue keeps the newest 6 and drops the oldest, as Kong's does.
    assert_eq!(dropped, 404 - 2 - 6, "{text}");
    promtool_check(&text);
    assert_eq!(spans_counted(&text, "exported") + spans_counted(&text, "failed"), 0);
}
