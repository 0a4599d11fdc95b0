//! `rate-limiting` through a real proxy on loopback (two workers, a real upstream, the proxy's clock frozen and
//! moved by the tests), and its window arithmetic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use gatehouse_model::gateway::plugins::rate_limiting::{check, config_fields};
use gatehouse_model::gateway::plugins::{PluginInfo, no_check};
use gatehouse_model::gateway::schema::{Field, normalize};
use gatehouse_model::gateway::snapshot::{self, ConfigSnapshot, PluginInstance, Route};
use gatehouse_model::{Clock, ManualClock, SharedClock, Timestamp};

use super::*;
use crate::plugins::{Credential, Registry};
use crate::proxy::harness::{route_to, service};
use crate::proxy::{Proxy, ProxySettings, serve};

/// 2026-03-14T15:09:26Z: mid-minute, mid-hour, mid-day, mid-month.
const NOW: i64 = 1_773_500_966;

#[test]
fn windows_are_aligned_in_utc_as_kong_aligns_them() {
    assert_eq!(bounds(Period::Second, NOW), (NOW, NOW + 1));
    assert_eq!(bounds(Period::Minute, NOW), (NOW - 26, NOW - 26 + 60));
    assert_eq!(bounds(Period::Hour, NOW), (NOW - 9 * 60 - 26, NOW - 9 * 60 - 26 + 3600));
    let midnight = NOW - (15 * 3600 + 9 * 60 + 26);
    assert_eq!(bounds(Period::Day, NOW), (midnight, midnight + 86400));
    // 2026-03-01 and 2026-04-01; 2026-01-01 and 2027-01-01.
    assert_eq!(bounds(Period::Month, NOW), (1_772_323_200, 1_775_001_600));
    assert_eq!(bounds(Period::Year, NOW), (1_767_225_600, 1_798_761_600));
    // A leap February (2024-02-29 12:00) and the last second of a year.
    assert_eq!(bounds(Period::Month, 1_709_208_000), (1_706_745_600, 1_709_251_200));
    assert_eq!(bounds(Period::Year, 1_767_225_599), (1_735_689_600, 1_767_225_600));
    assert_eq!(bounds(Period::Month, 1_767_225_599), (1_764_547_200, 1_767_225_600), "December ends the year");
    for days in [-800_000, -1, 0, 59, 365, 11_016, 20_000, 2_000_000] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
}

#[test]
fn store_failures_are_logged_once_per_interval() {
    let log = FailureLog::default();
    assert_eq!(log.should_log(NOW), Some(0));
    for _ in 0..5 {
        assert_eq!(log.should_log(NOW + FailureLog::INTERVAL_SECS - 1), None);
    }
    assert_eq!(log.should_log(NOW + FailureLog::INTERVAL_SECS), Some(5), "the next line counts the silent ones");
    assert_eq!(log.should_log(NOW + FailureLog::INTERVAL_SECS), None);
}

#[test]
fn the_ratelimit_headers_name_the_period_with_the_least_left() {
    let usage = |periods: &[(Period, f64, f64)], stopped| Usage { periods: periods.iter().copied().collect(), stopped };
    // Passing: every period counts this request.
    let h = usage(&[(Period::Second, 10.0, 10.0), (Period::Minute, 20.0, 5.0)], false).headers(NOW);
    assert_eq!((h.chosen, h.remaining, h.reset), (Period::Minute, 4.0, 34));
    assert_eq!(h.periods.as_slice(), [(Period::Second, 9.0), (Period::Minute, 4.0)]);
    // Equal remaining: the longer window, so a client waits long enough.
    let h = usage(&[(Period::Second, 3.0, 3.0), (Period::Hour, 3.0, 3.0)], false).headers(NOW);
    assert_eq!((h.chosen, h.remaining, h.reset), (Period::Hour, 2.0, 3600 - 9 * 60 - 26));
    // Stopped by the second: the minute, which it did not spend, is shown as it is.
    let h = usage(&[(Period::Second, 2.0, 0.0), (Period::Minute, 20.0, 5.0)], true).headers(NOW);
    assert_eq!(h.periods.as_slice(), [(Period::Second, 0.0), (Period::Minute, 5.0)]);
    assert_eq!((h.chosen, h.remaining, h.reset), (Period::Second, 0.0, 1));
    // A fractional limit: what is left is printed as Kong prints numbers.
    assert_eq!(number(2.5), "2.5");
    assert_eq!(number(100.0), "100");
}

// --- Through the proxy ---------------------------------------------------------------------------------------

/// A test-only authentication plugin (priority above rate-limiting's): `X-Test-Consumer` names the consumer by
/// username, `X-Test-Credential` is the credential, as `oauth2-introspection` would set them.
static TEST_AUTH_INFO: PluginInfo =
    PluginInfo { name: "test-auth", priority: 1700, consumer_scope: false, config: Vec::<Field>::new, check: no_check };
static TEST_AUTH: PluginDef = PluginDef {
    info: &TEST_AUTH_INFO,
    phases: Phases { access: true, rewrite: false, response: false, log: false },
    build: |_, _| Ok(Arc::new(TestAuth)),
};

#[derive(Debug)]
struct TestAuth;

#[async_trait]
impl Plugin for TestAuth {
    async fn access(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let header = |name: &str| ctx.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(username) = header("x-test-consumer") {
            ctx.consumer = ctx.consumers.by_username(&username).cloned();
        }
        if let Some(token) = header("x-test-credential") {
            ctx.credential = Some(Credential::owned(token));
        }
        Flow::Continue
    }
}

/// A store that fails every call, standing in for a Redis or database that cannot be reached.
#[derive(Debug)]
struct Unreachable;

#[async_trait]
impl Counters for Unreachable {
    async fn increment(&self, _: &[CounterKey], _: u64) -> Result<Vec<u64>, CounterError> {
        Err(CounterError("connection refused".into()))
    }
    async fn values(&self, _: &[CounterKey]) -> Result<Vec<u64>, CounterError> {
        Err(CounterError("connection refused".into()))
    }
}

/// An upstream that answers 200 "ok" to everything.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// The routes here forward the whole path (no `strip_path`).
fn route(id: u128, path: &str, service: u128) -> Route {
    Route { strip_path: false, ..route_to(id, path, service) }
}

/// Where an instance applies: (route, service, consumer) ids.
type At = (Option<u128>, Option<u128>, Option<u128>);
const GLOBAL: At = (None, None, None);

/// A rate-limiting instance with `config` as the Admin API would have stored it (validated, defaults filled).
fn limiting(id: u128, (route, service, consumer): At, config: Value) -> PluginInstance {
    let mut violations = Vec::new();
    let config = normalize(&config_fields(), config.as_object().unwrap(), "config", &mut violations);
    assert!(violations.is_empty(), "{violations:?}");
    let mut checks = gatehouse_model::gateway::plugins::Checks::default();
    check(&config, &mut checks);
    assert!(checks.is_empty(), "{checks:?}");
    PluginInstance {
        id: uuid::Uuid::from_u128(id),
        name: NAME.into(),
        instance_name: None,
        enabled: true,
        route: route.map(uuid::Uuid::from_u128),
        service: service.map(uuid::Uuid::from_u128),
        consumer: consumer.map(uuid::Uuid::from_u128),
        protocols: vec!["http".into(), "https".into()],
        config,
    }
}

fn test_auth() -> PluginInstance {
    PluginInstance {
        id: uuid::Uuid::from_u128(99),
        name: "test-auth".into(),
        instance_name: None,
        enabled: true,
        route: None,
        service: None,
        consumer: None,
        protocols: vec!["http".into()],
        config: Map::new(),
    }
}

struct Node {
    addr: SocketAddr,
    clock: ManualClock,
    proxy: Arc<Proxy>,
    up: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Node {
    /// Two workers, so requests on different connections count from different threads.
    async fn start(cluster_counters: Option<Arc<dyn Counters>>) -> Self {
        Self::start_trusting(cluster_counters, Vec::new()).await
    }

    /// A node that believes `X-Forwarded-For` from `trusted_ips`.
    async fn start_trusting(cluster_counters: Option<Arc<dyn Counters>>, trusted_ips: Vec<ipnet::IpNet>) -> Self {
        let clock = ManualClock::new(Timestamp::from_secs(NOW));
        let settings = ProxySettings {
            workers: 2,
            trusted_ips,
            registry: Registry::builtin().with(&TEST_AUTH),
            clock: SharedClock::new(Arc::new(clock.clone()) as Arc<dyn Clock>),
            cluster_counters,
            ..Default::default()
        };
        let proxy = Proxy::new(settings);
        let listener =
            TcpListener::from_std(crate::proxy::reusable_listener("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(proxy.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Self { addr, clock, proxy, up: upstream().await, _stop: stop }
    }

    /// Routes `/a` (10) and `/b` (11) on service 1, `/c` (12) on service 2, consumers alice (30) and bob (31).
    fn install(&self, plugins: Vec<PluginInstance>) -> Result<(), crate::error::CompileError> {
        let consumer = |id: u128, name: &str| snapshot::Consumer {
            id: uuid::Uuid::from_u128(id),
            username: Some(name.into()),
            custom_id: None,
            groups: Vec::new(),
        };
        let mut plugins = plugins;
        plugins.push(test_auth());
        self.proxy.install(&ConfigSnapshot {
            services: vec![service(1, self.up.port()), service(2, self.up.port())],
            routes: vec![route(10, "/a", 1), route(11, "/b", 1), route(12, "/c", 2)],
            consumers: vec![consumer(30, "alice"), consumer(31, "bob")],
            plugins,
            ..ConfigSnapshot::empty(None, 1)
        })
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    async fn status(&self, path: &str, headers: &[(&str, &str)]) -> u16 {
        self.get(path, headers).await.status().as_u16()
    }

    /// The statuses of `n` requests, in order.
    async fn statuses(&self, n: usize, path: &str, headers: &[(&str, &str)]) -> Vec<u16> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.status(path, headers).await);
        }
        out
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The measure: a limit of 100 per second, 500 requests over 32 connections at once on two workers, the
/// clock frozen inside one window: exactly 100 pass and 400 get Kong's 429; the next second allows 100 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_is_exact_under_32_concurrent_connections() {
    let node = Node::start(None).await;
    node.install(vec![limiting(1, GLOBAL, json!({"second": 100, "limit_by": "ip"}))]).unwrap();
    for window in 0..2 {
        let sent = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (sent, url) = (sent.clone(), format!("http://{}/a", node.addr));
                tokio::spawn(async move {
                    // One client per task, each with its own kept-alive connection.
                    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
                    let mut seen = Vec::new();
                    while sent.fetch_add(1, Ordering::Relaxed) < 500 {
                        let response = client.get(&url).send().await.unwrap();
                        let status = response.status().as_u16();
                        let headers = response.headers().clone();
                        let body = response.text().await.unwrap();
                        seen.push((status, headers, body));
                    }
                    seen
                })
            })
            .collect();
        let mut responses = Vec::new();
        for task in tasks {
            responses.extend(task.await.unwrap());
        }
        assert_eq!(responses.len(), 500);
        let passed: Vec<_> = responses.iter().filter(|(s, _, _)| *s == 200).collect();
        let refused: Vec<_> = responses.iter().filter(|(s, _, _)| *s == 429).collect();
        assert_eq!((passed.len(), refused.len()), (100, 400), "window {window}");
        // Every request that passed saw its own place in the window: 99 … 0 remaining, each once.
        let mut remaining: Vec<u64> = passed
            .iter()
            .map(|(_, h, _)| h["x-ratelimit-remaining-second"].to_str().unwrap().parse().unwrap())
            .collect();
        remaining.sort_unstable();
        assert_eq!(remaining, (0..100).collect::<Vec<u64>>());
        for (_, h, body) in &refused {
            let body: Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["message"], "API rate limit exceeded");
            assert_eq!(body["request_id"].as_str().map(str::len), Some(32), "Kong's body carries the request id");
            assert_eq!(h["content-type"], "application/json; charset=utf-8");
            for (name, value) in [
                ("x-ratelimit-limit-second", "100"),
                ("x-ratelimit-remaining-second", "0"),
                ("ratelimit-limit", "100"),
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", "1"),
                ("retry-after", "1"),
            ] {
                assert_eq!(h[name], value, "{name}");
            }
        }
        node.clock.advance_secs(1);
    }
}

#[tokio::test]
async fn headers_name_every_period_and_the_closest_limit() {
    let node = Node::start(None).await;
    node.install(vec![limiting(1, GLOBAL, json!({"second": 3, "minute": 4, "limit_by": "ip"}))]).unwrap();
    let first = node.get("/a", &[]).await;
    assert_eq!(first.status(), 200);
    for (name, value) in [
        ("x-ratelimit-limit-second", "3"),
        ("x-ratelimit-remaining-second", "2"),
        ("x-ratelimit-limit-minute", "4"),
        ("x-ratelimit-remaining-minute", "3"),
        ("ratelimit-limit", "3"),
        ("ratelimit-remaining", "2"),
        ("ratelimit-reset", "1"),
    ] {
        assert_eq!(header(&first, name), Some(value), "{name}");
    }
    assert_eq!(header(&first, "retry-after"), None, "only on a refusal");
    assert_eq!(node.statuses(2, "/a", &[]).await, [200, 200]);
    // The second's limit is spent: 429, and the refusal is not counted against the minute (Kong's local policy).
    let refused = node.get("/a", &[]).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-remaining-minute"), Some("1"));
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    node.clock.advance_secs(1);
    // One left in the minute: it is now the closest limit, and its window ends 34 s later (NOW is at :26).
    let last = node.get("/a", &[]).await;
    assert_eq!(last.status(), 200);
    assert_eq!(
        (header(&last, "ratelimit-limit"), header(&last, "ratelimit-remaining"), header(&last, "ratelimit-reset")),
        (Some("4"), Some("0"), Some("33"))
    );
    let refused = node.get("/a", &[]).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), Some("33"), "the minute's window, not the second's");
    node.clock.advance_secs(33);
    assert_eq!(node.status("/a", &[]).await, 200, "a new minute");
}

#[tokio::test]
async fn hide_client_headers_error_code_and_error_message() {
    let node = Node::start(None).await;
    let config = json!({"second": 1, "limit_by": "ip", "hide_client_headers": true, "error_code": 503,
        "error_message": "Slow down"});
    node.install(vec![limiting(1, GLOBAL, config)]).unwrap();
    let passed = node.get("/a", &[]).await;
    assert_eq!(passed.status(), 200);
    let refused = node.get("/a", &[]).await;
    assert_eq!(refused.status(), 503);
    for response in [&passed, &refused] {
        let names: Vec<&str> = response.headers().keys().map(|k| k.as_str()).collect();
        assert!(!names.iter().any(|n| n.contains("ratelimit") || *n == "retry-after"), "{names:?}");
    }
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["message"], "Slow down");
}

#[tokio::test]
async fn limit_by_header_and_path_fall_back_to_the_client_address() {
    let node = Node::start(None).await;
    node.install(vec![
        limiting(1, (Some(10), None, None), json!({"second": 1, "limit_by": "header", "header_name": "X_Tenant"})),
        limiting(2, (Some(11), None, None), json!({"second": 1, "limit_by": "path", "path": "/b/exact"})),
    ])
    .unwrap();
    // `X_Tenant` names `X-Tenant`, as nginx's `$http_x_tenant` does for Kong.
    fn tenant(name: &str) -> [(&'static str, &str); 1] {
        [("x-tenant", name)]
    }
    assert_eq!(node.statuses(2, "/a", &tenant("t1")).await, [200, 429]);
    assert_eq!(node.statuses(2, "/a", &tenant("t2")).await, [200, 429], "each value counts on its own");
    // No header: the client address, which no header value has spent yet.
    assert_eq!(node.statuses(2, "/a", &[]).await, [200, 429]);
    assert_eq!(node.status("/a", &tenant("127.0.0.1")).await, 429, "Kong keys both by the bare value");
    // Long values are counted by their digest: still one count per value.
    let (long_a, long_b) = ("a".repeat(4000), "b".repeat(4000));
    assert_eq!(node.statuses(2, "/a", &tenant(&long_a)).await, [200, 429]);
    assert_eq!(node.status("/a", &tenant(&long_b)).await, 200);

    assert_eq!(node.statuses(2, "/b/exact", &[]).await, [200, 429]);
    // Another path under the route: counted by the client address, apart from the path's count.
    assert_eq!(node.statuses(2, "/b/other", &[]).await, [200, 429]);
    assert_eq!(node.status("/b/more", &[]).await, 429);
}

#[tokio::test]
async fn limit_by_consumer_credential_and_service() {
    let node = Node::start(None).await;
    node.install(vec![
        limiting(1, (Some(10), None, None), json!({"second": 1})),
        limiting(2, (Some(11), None, None), json!({"second": 1, "limit_by": "credential"})),
        limiting(3, (None, Some(2), None), json!({"second": 2, "limit_by": "service"})),
    ])
    .unwrap();
    let alice = [("x-test-consumer", "alice")];
    // `consumer` (the default): the consumer, else the credential, else the address.
    assert_eq!(node.statuses(2, "/a", &alice).await, [200, 429]);
    assert_eq!(node.statuses(2, "/a", &[("x-test-consumer", "bob")]).await, [200, 429]);
    assert_eq!(node.statuses(2, "/a", &[("x-test-credential", "token-1")]).await, [200, 429]);
    assert_eq!(node.statuses(2, "/a", &[]).await, [200, 429]);
    // `credential`: the credential, whoever the consumer is; without one, the address.
    assert_eq!(node.status("/b", &[("x-test-credential", "token-1"), ("x-test-consumer", "alice")]).await, 200);
    assert_eq!(node.status("/b", &[("x-test-credential", "token-1"), ("x-test-consumer", "bob")]).await, 429);
    assert_eq!(node.status("/b", &[("x-test-credential", "token-2")]).await, 200);
    assert_eq!(node.statuses(2, "/b", &alice).await, [200, 429]);
    // `service`: every client of the service together.
    assert_eq!(node.status("/c", &alice).await, 200);
    assert_eq!(node.status("/c", &[]).await, 200);
    assert_eq!(node.status("/c", &[("x-test-credential", "token-9")]).await, 429);
}

#[tokio::test]
async fn instances_count_apart_and_a_global_one_across_routes() {
    let node = Node::start(None).await;
    node.install(vec![
        limiting(1, GLOBAL, json!({"second": 2, "limit_by": "ip"})),
        limiting(2, (Some(12), None, None), json!({"second": 1, "limit_by": "ip"})),
    ])
    .unwrap();
    // The global instance counts /a and /b together; /c has its own instance and its own count.
    assert_eq!(node.status("/a", &[]).await, 200);
    assert_eq!(node.status("/b", &[]).await, 200);
    assert_eq!(node.status("/a", &[]).await, 429);
    assert_eq!(node.statuses(2, "/c", &[]).await, [200, 429]);
    // Counts outlive a configuration change (they are the node's): same instances, new snapshot.
    node.install(vec![
        limiting(1, GLOBAL, json!({"second": 2, "limit_by": "ip"})),
        limiting(2, (Some(12), None, None), json!({"second": 1, "limit_by": "ip"})),
    ])
    .unwrap();
    assert_eq!(node.status("/b", &[]).await, 429);
}

#[tokio::test]
async fn a_consumer_scoped_instance_gives_that_consumer_its_own_limit() {
    let node = Node::start(None).await;
    node.install(vec![
        limiting(1, GLOBAL, json!({"second": 1})),
        limiting(2, (None, None, Some(30)), json!({"second": 3})),
    ])
    .unwrap();
    let alice = [("x-test-consumer", "alice")];
    let bob = [("x-test-consumer", "bob")];
    assert_eq!(node.statuses(4, "/a", &alice).await, [200, 200, 200, 429]);
    assert_eq!(node.statuses(2, "/a", &bob).await, [200, 429]);
}

/// What this module logged, one line per event, captured by a process-wide subscriber that looks at nothing else
/// (so other tests' events, on whatever thread, cost nothing).
static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if event.metadata().target() != module_path!().trim_end_matches("::tests") {
            return;
        }
        let mut line = Line(String::new());
        event.record(&mut line);
        LOGGED.lock().unwrap().push(line.0);
    }
}

fn capture_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture));
    });
}

#[tokio::test]
async fn an_unreachable_store_passes_requests_when_fault_tolerant_and_is_kongs_500_otherwise() {
    capture_logs();
    let node = Node::start(Some(Arc::new(Unreachable))).await;
    node.install(vec![
        limiting(1, (Some(10), None, None), json!({"second": 1, "policy": "cluster"})),
        limiting(2, (Some(11), None, None), json!({"second": 1, "policy": "cluster", "fault_tolerant": false})),
    ])
    .unwrap();
    for _ in 0..3 {
        let passed = node.get("/a", &[]).await;
        assert_eq!(passed.status(), 200, "not limited while the store is down");
        assert!(passed.headers().keys().all(|k| !k.as_str().contains("ratelimit")), "no headers without counts");
    }
    // Logged once for the three, with the store's error; the next line comes an interval later and counts the
    // failures it did not log (this test is the only one whose store fails).
    let logged = std::mem::take(&mut *LOGGED.lock().unwrap());
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("connection refused") && logged[0].contains("suppressed=0"), "{logged:?}");
    node.clock.advance_secs(FailureLog::INTERVAL_SECS);
    assert_eq!(node.status("/a", &[]).await, 200);
    let logged = std::mem::take(&mut *LOGGED.lock().unwrap());
    assert!(logged.len() == 1 && logged[0].contains("suppressed=2"), "{logged:?}");

    let failed = node.get("/b", &[]).await;
    assert_eq!(failed.status(), 500);
    assert_eq!(failed.headers()["content-type"], "application/json; charset=utf-8");
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["message"], "An unexpected error occurred");
    assert_eq!(body["request_id"].as_str().map(str::len), Some(32));
}

#[tokio::test]
async fn a_policy_this_node_cannot_run_refuses_the_configuration() {
    let node = Node::start(None).await;
    let error = node.install(vec![limiting(1, GLOBAL, json!({"second": 1, "policy": "cluster"}))]).unwrap_err();
    assert!(error.to_string().contains("rate-limiting: the cluster policy needs a node with a database"), "{error}");
    assert_eq!(node.proxy.version(), 0, "nothing installed");
}

/// Longer periods through the proxy: a day's count ends at UTC midnight while the month's goes on, and the month's
/// at the first of the next month, whatever the day's length in seconds.
#[tokio::test]
async fn calendar_windows_end_at_midnight_and_on_the_first_of_the_month() {
    let node = Node::start(None).await;
    node.install(vec![limiting(1, GLOBAL, json!({"hour": 2, "day": 2, "month": 3, "year": 4, "limit_by": "ip"}))])
        .unwrap();
    let first = node.get("/a", &[]).await;
    assert_eq!(first.status(), 200);
    for (period, left) in [("hour", "1"), ("day", "1"), ("month", "2"), ("year", "3")] {
        assert!(header(&first, &format!("x-ratelimit-limit-{period}")).is_some(), "{period}");
        assert_eq!(header(&first, &format!("x-ratelimit-remaining-{period}")), Some(left), "{period}");
    }
    // The hour and the day have one left each (a tie): the longer window, the day, ends at midnight.
    let midnight = NOW - NOW.rem_euclid(86400) + 86400;
    assert_eq!(header(&first, "ratelimit-reset"), Some((midnight - NOW).to_string().as_str()));
    assert_eq!(node.statuses(2, "/a", &[]).await, [200, 429]);
    // The next hour: still the same day, spent.
    node.clock.advance_secs(3600);
    assert_eq!(node.status("/a", &[]).await, 429);
    // The next day (2026-03-15): the month has one left.
    node.clock.set(Timestamp::from_secs(midnight));
    let last = node.get("/a", &[]).await;
    assert_eq!(last.status(), 200);
    assert_eq!(header(&last, "x-ratelimit-remaining-month"), Some("0"));
    let refused = node.get("/a", &[]).await;
    assert_eq!(refused.status(), 429);
    // 2026-04-01T00:00:00Z is 17 days away: the month's real end, not Kong's 30 days from the 1st.
    let april = 1_775_001_600;
    assert_eq!(header(&refused, "retry-after"), Some((april - midnight).to_string().as_str()));
    node.clock.set(Timestamp::from_secs(april - 1));
    assert_eq!(node.status("/a", &[]).await, 429, "the last second of March");
    node.clock.set(Timestamp::from_secs(april));
    let april_first = node.get("/a", &[]).await;
    assert_eq!(april_first.status(), 200, "a new month");
    assert_eq!(header(&april_first, "x-ratelimit-remaining-year"), Some("0"), "the year has counted all four");
}

/// Kong's `limit_by=ip` is the forwarded address: believed from trusted proxies only.
#[tokio::test]
async fn the_client_address_is_the_forwarded_one_behind_trusted_proxies_only() {
    let config = || vec![limiting(1, GLOBAL, json!({"second": 1, "limit_by": "ip"}))];
    let xff = |ip| [("x-forwarded-for", ip)];
    let untrusting = Node::start(None).await;
    untrusting.install(config()).unwrap();
    assert_eq!(untrusting.status("/a", &xff("203.0.113.1")).await, 200);
    assert_eq!(untrusting.status("/a", &xff("203.0.113.2")).await, 429, "a spoofed address changes nothing");

    let behind_proxy = Node::start_trusting(None, vec!["127.0.0.0/8".parse().unwrap()]).await;
    behind_proxy.install(config()).unwrap();
    assert_eq!(behind_proxy.statuses(2, "/a", &xff("203.0.113.1")).await, [200, 429]);
    assert_eq!(behind_proxy.status("/a", &xff("203.0.113.2")).await, 200, "another client");
    assert_eq!(behind_proxy.status("/a", &[]).await, 200, "the proxy itself");
}
