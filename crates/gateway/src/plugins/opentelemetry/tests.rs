use std::net::{IpAddr, Ipv4Addr};

use http::HeaderMap;
use serde_json::json;
use tokio::net::TcpListener;

use super::*;
use crate::plugins::Shared;

fn validated(config: serde_json::Value) -> Map<String, Value> {
    let body = json!({"name": "opentelemetry", "config": config});
    let entity = gatehouse_model::gateway::validate_entity(
        gatehouse_model::gateway::EntityKind::Plugin,
        body.as_object().expect("object"),
    )
    .expect("valid");
    entity["config"].as_object().cloned().expect("config")
}

fn instance(shared: &Shared, config: serde_json::Value) -> OpenTelemetry {
    OpenTelemetry::new(&validated(config), shared).expect("built")
}

fn start(plugin: &OpenTelemetry, headers: &mut HeaderMap) -> Option<Box<Trace>> {
    let method = http::Method::GET;
    let mut request = TraceStart {
        headers,
        started: Instant::now(),
        method: &method,
        scheme: "http",
        host: "example.com",
        target: "/x?y=1",
        version: http::Version::HTTP_11,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        request_id: "0123",
    };
    plugin.start_trace(&mut request)
}

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

fn with_traceparent(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, HeaderValue::from_str(value).expect("value"));
    headers
}

/// The cost bound: a request that is not traced allocates nothing but the `traceparent` it sends upstream
/// (Kong sends one with the sampled flag off), whether it carries a parent or not; nothing at all without
/// injection.
#[tokio::test]
async fn an_unsampled_request_allocates_only_its_traceparent() {
    let shared = Shared::default();
    let endpoint = "http://127.0.0.1:9/v1/traces";
    let plugin = instance(&shared, json!({"traces_endpoint": endpoint, "sampling_rate": 0}));
    let quiet = instance(
        &shared,
        json!({"traces_endpoint": endpoint, "sampling_rate": 0,
            "propagation": {"extract": ["w3c"], "clear": [], "inject": [], "default_format": "w3c"}}),
    );
    for (plugin, allocations) in [(&plugin, 1), (&quiet, 0)] {
        // A request's headers (room for one more, as a real request's map has).
        for mut headers in [HeaderMap::with_capacity(8), with_traceparent(UNSAMPLED)] {
            let mut trace = None;
            let counted = allocation_counter::measure(|| trace = start(plugin, &mut headers));
            assert!(trace.is_none());
            assert_eq!(counted.count_total, allocations, "{headers:?}");
        }
    }
    let mut headers = with_traceparent(UNSAMPLED);
    assert!(start(&plugin, &mut headers).is_none());
    let sent = headers[TRACEPARENT].to_str().unwrap().to_owned();
    let (trace_id, span_id, sampled) = parse_traceparent(sent.as_bytes()).expect("a valid traceparent");
    assert_eq!(&sent[..36], "00-4bf92f3577b34da6a3ce929d0e0e4736-", "the caller's trace id goes on");
    assert!(!sampled && sent.ends_with("-00"), "{sent}");
    assert_ne!(span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7], "under a span id of the gateway's");
    let mut fresh = HeaderMap::new();
    assert!(start(&plugin, &mut fresh).is_none());
    let (new_id, _, sampled) = parse_traceparent(fresh[TRACEPARENT].as_bytes()).expect("a new trace id");
    assert!(!sampled && new_id != trace_id);
    let mut headers = with_traceparent(UNSAMPLED);
    assert!(start(&quiet, &mut headers).is_none());
    assert_eq!(headers[TRACEPARENT], UNSAMPLED, "without injection the client's header goes as it came");
}

#[tokio::test]
async fn sampling_follows_the_parent_then_the_rate() {
    let shared = Shared::default();
    let endpoint = "http://127.0.0.1:9/v1/traces";
    let never = instance(&shared, json!({"traces_endpoint": endpoint, "sampling_rate": 0}));
    let always = instance(&shared, json!({"traces_endpoint": endpoint, "sampling_rate": 1}));
    let fallback = instance(
        &shared,
        json!({"traces_endpoint": endpoint, "sampling_rate": 1, "sampling_strategy": "parent_probability_fallback"}),
    );

    let mut headers = with_traceparent(SAMPLED);
    let trace = start(&never, &mut headers).expect("a sampled parent is followed");
    assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(trace.parent, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
    let sent = headers[TRACEPARENT].to_str().expect("text").to_owned();
    assert_eq!(sent, trace.traceparent());
    assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-01"), "{sent}");
    assert!(!sent.contains("00f067aa0ba902b7"), "the balancer span is the upstream's parent");

    assert!(start(&always, &mut with_traceparent(UNSAMPLED)).is_none(), "an unsampled parent drops the trace");
    assert!(start(&fallback, &mut with_traceparent(UNSAMPLED)).is_some(), "parent_probability_fallback draws");
    let fresh = start(&always, &mut HeaderMap::new()).expect("rate 1");
    assert!(fresh.parent.is_none());
    assert_ne!(fresh.trace_id, [0; 16]);
    assert!(start(&never, &mut with_traceparent("garbage")).is_none(), "a malformed parent is no parent");
}

#[tokio::test]
async fn propagation_settings_choose_what_is_read_cleared_and_sent() {
    let shared = Shared::default();
    let endpoint = "http://127.0.0.1:9/v1/traces";
    let ignore = instance(&shared, json!({"traces_endpoint": endpoint, "sampling_rate": 1, "header_type": "ignore"}));
    let mut headers = with_traceparent(SAMPLED);
    let trace = start(&ignore, &mut headers).expect("sampled by the rate");
    assert_ne!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736", "ignore reads no parent");
    assert_eq!(headers[TRACEPARENT].to_str().unwrap(), trace.traceparent(), "but injects");

    let quiet = instance(
        &shared,
        json!({"traces_endpoint": endpoint, "sampling_rate": 1,
            "propagation": {"extract": ["w3c"], "clear": ["x-old-trace"], "inject": [], "default_format": "w3c"}}),
    );
    let mut headers = with_traceparent(SAMPLED);
    headers.insert("x-old-trace", HeaderValue::from_static("1"));
    let trace = start(&quiet, &mut headers).expect("sampled parent");
    assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(!headers.contains_key("x-old-trace"), "cleared");
    assert_eq!(headers[TRACEPARENT], SAMPLED, "nothing injected: the client's header is left as it was");
}

/// A collector that accepts connections and never answers: the queue holds at most `max_entries` spans, the
/// most recent ones (Kong drops the oldest), and every span pushed out is counted, without the caller ever
/// waiting.
#[tokio::test]
async fn a_hanging_collector_costs_dropped_spans_only() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let shared = Shared::default();
    let plugin = instance(
        &shared,
        json!({"traces_endpoint": endpoint, "sampling_rate": 1,
            "queue": {"max_entries": 10, "max_batch_size": 4, "max_coalescing_delay": 0}}),
    );
    let mut traces = Vec::new();
    for _ in 0..100 {
        let trace = start(&plugin, &mut HeaderMap::new()).expect("rate 1");
        traces.push(trace.trace_id.to_vec());
        plugin.exporter.enqueue(trace.finish(Instant::now(), 200));
    }
    // The sender has not run yet (this runtime has one thread, and enqueueing never yields).
    assert_eq!(plugin.exporter.queued(), 10);
    assert_eq!(plugin.exporter.queued_trace_ids(), traces[90..], "the newest spans are kept, in order");
    let spans = &shared.opentelemetry.spans;
    assert_eq!(spans.get(&["dropped"]), Some(90), "one span per request here; 10 fit");
    assert_eq!(spans.get(&["exported"]), None);
    held.abort();
}

/// Instances with the same settings (every worker's copy, a configuration republished) share one queue.
#[tokio::test]
async fn equal_settings_share_an_exporter() {
    let shared = Shared::default();
    let config = json!({"traces_endpoint": "http://127.0.0.1:9/v1/traces"});
    let a = instance(&shared, config.clone());
    let b = instance(&shared, config);
    assert!(Arc::ptr_eq(&a.exporter, &b.exporter));
    let c = instance(&shared, json!({"traces_endpoint": "http://127.0.0.1:9/v1/traces", "headers": {"k": "v"}}));
    assert!(!Arc::ptr_eq(&a.exporter, &c.exporter));
    assert_eq!(a.sampling_rate, DEFAULT_SAMPLING_RATE, "Kong's tracing_sampling_rate when none is set");
}
