//! `prometheus` (priority 13): records each proxied request in Kong's metric families, under Kong's names,
//! labels and buckets (Kong's `exporter.lua`), so dashboards and alerts built for Kong read Gatehouse unchanged.
//! The families are the node's ([`ProxyMetrics`], in [`super::Shared`]) and outlive configuration changes; the
//! status listener's `/metrics` renders them. Recording happens in `log`, lock-free (see [`crate::metrics`]).
//!
//! As Kong's, a request that matched no route is not recorded, `service` is the service's name (else its host),
//! `route` the route's name (else its id), `workspace` is `default`, and `consumer` is empty unless
//! `per_consumer` is set and the consumer has a username. A request ended by an earlier plugin (`key-auth`'s 401)
//! is recorded too, with `source="kong"`.
//!
//! `kong_bandwidth_bytes` counts declared body lengths (`Content-Length` of the request and of the response):
//! `log` runs once the response head is final, before the body is sent, so a chunked body counts nothing, and
//! headers are not counted (Kong counts whole messages).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::prometheus::{Config, INFO};

use super::{LogContext, Outcome, Phases, Plugin, PluginDef};
use crate::metrics::{Counter, CounterVec, HistogramSeries, HistogramVec};
use crate::router::RouteConfig;
use crate::service::ServiceConfig;

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { rewrite: false, access: false, response: false, log: true },
    build: |config, shared| Ok(Arc::new(Prometheus::new(config, shared.metrics.clone())?)),
};

/// Kong's `KONG_LATENCY_BUCKETS` (milliseconds).
pub const KONG_LATENCY_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0, 3000.0, 6000.0];
/// Kong's `UPSTREAM_LATENCY_BUCKETS` (milliseconds), also used for the whole request's latency.
pub const UPSTREAM_LATENCY_BUCKETS: &[f64] =
    &[25.0, 50.0, 80.0, 100.0, 250.0, 400.0, 700.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0];

/// Kong's workspace label; Gatehouse has no workspaces, and Kong OSS reports this one.
const WORKSPACE: &str = "default";

/// The node's request metrics, shared by every `prometheus` instance.
#[derive(Debug)]
pub struct ProxyMetrics {
    pub http_requests: CounterVec,
    pub kong_latency: HistogramVec,
    pub upstream_latency: HistogramVec,
    pub request_latency: HistogramVec,
    pub bandwidth: CounterVec,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        const LATENCY_LABELS: &[&str] = &["service", "route", "workspace"];
        Self {
            http_requests: CounterVec::new(
                "kong_http_requests_total",
                "HTTP status codes per consumer/service/route in Kong",
                &["service", "route", "code", "source", "workspace", "consumer"],
            ),
            kong_latency: HistogramVec::new(
                "kong_kong_latency_ms",
                "Latency added by Kong and enabled plugins for each service/route in Kong",
                LATENCY_LABELS,
                KONG_LATENCY_BUCKETS,
            ),
            upstream_latency: HistogramVec::new(
                "kong_upstream_latency_ms",
                "Latency added by upstream response for each service/route in Kong",
                LATENCY_LABELS,
                UPSTREAM_LATENCY_BUCKETS,
            ),
            request_latency: HistogramVec::new(
                "kong_request_latency_ms",
                "Total latency incurred during requests for each service/route in Kong",
                LATENCY_LABELS,
                UPSTREAM_LATENCY_BUCKETS,
            ),
            bandwidth: CounterVec::new(
                "kong_bandwidth_bytes",
                "Total bandwidth (ingress/egress) throughput in bytes",
                &["service", "route", "direction", "workspace", "consumer"],
            ),
        }
    }
}

impl ProxyMetrics {
    /// Every family in the exposition format (families without series are left out).
    pub fn render(&self, out: &mut String) {
        self.http_requests.render(out);
        self.kong_latency.render(out);
        self.upstream_latency.render(out);
        self.request_latency.render(out);
        self.bandwidth.render(out);
    }
}

#[derive(Debug)]
pub struct Prometheus {
    config: Config,
    metrics: Arc<ProxyMetrics>,
}

impl Prometheus {
    pub fn new(config: &Map<String, Value>, metrics: Arc<ProxyMetrics>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        Ok(Self { config, metrics })
    }
}

fn millis(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Consumers (by label value) and status codes per consumer whose series a route keeps handles for; past them a
/// request is recorded by looking its labels up, as every request was before handles.
const CONSUMER_SLOTS: usize = 4;
const CODE_SLOTS: usize = 6;

/// A route's series handles, made on the route's first recorded request after a configuration install. The
/// cell lives in the route's [`RouteConfig`](crate::router::RouteConfig), which every install builds anew, so a
/// renamed route or service gets new series, and nothing outlives the configuration but the series themselves
/// (the node's, in [`ProxyMetrics`]). Recording through a handle is atomic adds only: no hashing of label values,
/// no map lookup, no formatting of the route's id.
#[derive(Default)]
pub struct RouteSeriesCell(OnceLock<RouteSeries>);

impl std::fmt::Debug for RouteSeriesCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "RouteSeriesCell(resolved)" } else { "RouteSeriesCell(empty)" })
    }
}

/// A cache, not content: a clone starts empty and every cell equals every other.
impl Clone for RouteSeriesCell {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for RouteSeriesCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

struct RouteSeries {
    /// The families the handles point into and the service they were made for: a route recorded against other
    /// families (another node's, in tests) or another service falls back to lookups.
    metrics: std::sync::Weak<ProxyMetrics>,
    service_id: Option<uuid::Uuid>,
    service: Box<str>,
    route: Box<str>,
    /// `kong_kong_latency_ms`, `kong_upstream_latency_ms`, `kong_request_latency_ms`, each made on its first
    /// observation (as Kong, a series shows once it has one). `None` inside: the family is full.
    latency: [OnceLock<Option<HistogramSeries>>; 3],
    consumers: [OnceLock<ConsumerSeries>; CONSUMER_SLOTS],
}

struct ConsumerSeries {
    consumer: Box<str>,
    /// `kong_bandwidth_bytes`, ingress and egress.
    bandwidth: [OnceLock<Option<Counter>>; 2],
    /// `kong_http_requests_total` by status code and source, in the order codes were first seen.
    codes: [OnceLock<CodeSeries>; CODE_SLOTS],
}

struct CodeSeries {
    code: http::StatusCode,
    proxied: bool,
    counter: Option<Counter>,
}

impl RouteSeries {
    fn new(metrics: &Arc<ProxyMetrics>, route: &RouteConfig, service: Option<&ServiceConfig>) -> Self {
        Self {
            metrics: Arc::downgrade(metrics),
            service_id: service.map(|s| s.id),
            service: service_label(service).into(),
            route: route_label(route, &mut [0; uuid::fmt::Hyphenated::LENGTH]).into(),
            latency: Default::default(),
            consumers: Default::default(),
        }
    }

    fn serves(&self, metrics: &Arc<ProxyMetrics>, service: Option<&ServiceConfig>) -> bool {
        std::ptr::eq(self.metrics.as_ptr(), Arc::as_ptr(metrics)) && self.service_id == service.map(|s| s.id)
    }

    /// The handles for `consumer`'s label value, claiming a free slot for it; `None` once the slots are taken.
    fn consumer(&self, consumer: &str) -> Option<&ConsumerSeries> {
        self.consumers
            .iter()
            .map(|slot| slot.get_or_init(|| ConsumerSeries::new(consumer)))
            .find(|c| *c.consumer == *consumer)
    }
}

impl ConsumerSeries {
    fn new(consumer: &str) -> Self {
        Self { consumer: consumer.into(), bandwidth: Default::default(), codes: Default::default() }
    }
}

/// Kong's `service` label: the service's name, else its host; empty without a service.
fn service_label(service: Option<&ServiceConfig>) -> &str {
    service.map_or("", |s| s.name.as_deref().unwrap_or(&s.host))
}

/// Kong's `route` label: the route's name, else its id.
fn route_label<'a>(route: &'a RouteConfig, id: &'a mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &'a str {
    match &route.name {
        Some(name) => name.as_str(),
        None => route.id.hyphenated().encode_lower(id),
    }
}

/// A handle made once into `cell`, or `None` when its family is full (then the caller's lookup counts the drop).
fn handle<T>(cell: &OnceLock<Option<T>>, make: impl FnOnce() -> Option<T>) -> Option<&T> {
    cell.get_or_init(make).as_ref()
}

const DIRECTIONS: [&str; 2] = ["ingress", "egress"];

impl Prometheus {
    fn consumer_label<'a>(&self, ctx: &LogContext<'a>) -> &'a str {
        match (self.config.per_consumer, ctx.consumer) {
            (true, Some(consumer)) => consumer.username.as_deref().unwrap_or(""),
            _ => "",
        }
    }

    /// Through the route's handles.
    fn record(&self, ctx: &LogContext<'_>, series: &RouteSeries) {
        let m = &*self.metrics;
        let (service, route) = (&*series.service, &*series.route);
        let consumer = self.consumer_label(ctx);
        let by_consumer = series.consumer(consumer);
        if self.config.bandwidth_metrics {
            for (i, bytes) in [ctx.request_bytes, ctx.response_bytes].into_iter().enumerate() {
                let Some(bytes) = bytes.filter(|b| *b > 0) else { continue };
                let labels = [service, route, DIRECTIONS[i], WORKSPACE, consumer];
                match by_consumer.and_then(|c| handle(&c.bandwidth[i], || m.bandwidth.series(&labels))) {
                    Some(counter) => counter.add(bytes),
                    None => m.bandwidth.add(&labels, bytes),
                }
            }
        }
        if self.config.status_code_metrics {
            let proxied = ctx.outcome == Outcome::Proxied;
            let source = if proxied { "service" } else { "kong" };
            let labels = [service, route, ctx.status.as_str(), source, WORKSPACE, consumer];
            let cached = by_consumer.and_then(|c| {
                c.codes
                    .iter()
                    .map(|slot| {
                        slot.get_or_init(|| CodeSeries {
                            code: ctx.status,
                            proxied,
                            counter: m.http_requests.series(&labels),
                        })
                    })
                    .find(|s| s.code == ctx.status && s.proxied == proxied)
            });
            match cached.and_then(|s| s.counter.as_ref()) {
                Some(counter) => counter.add(1),
                None => m.http_requests.add(&labels, 1),
            }
        }
        if self.config.latency_metrics {
            let labels = [service, route, WORKSPACE];
            let l = ctx.latencies;
            let families = [&m.kong_latency, &m.upstream_latency, &m.request_latency];
            for (i, value) in [Some(l.kong), l.upstream, Some(l.request)].into_iter().enumerate() {
                let Some(value) = value else { continue };
                match handle(&series.latency[i], || families[i].series(&labels)) {
                    Some(histogram) => histogram.observe(millis(value)),
                    None => families[i].observe(&labels, millis(value)),
                }
            }
        }
    }

    /// Looking every series up by its labels: a request whose route's handles belong to other families.
    fn record_by_labels(&self, ctx: &LogContext<'_>, route: &RouteConfig) {
        let m = &*self.metrics;
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let route = route_label(route, &mut id);
        let service = service_label(ctx.service);
        let consumer = self.consumer_label(ctx);
        if self.config.bandwidth_metrics {
            for (direction, bytes) in DIRECTIONS.into_iter().zip([ctx.request_bytes, ctx.response_bytes]) {
                if let Some(bytes) = bytes.filter(|b| *b > 0) {
                    m.bandwidth.add(&[service, route, direction, WORKSPACE, consumer], bytes);
                }
            }
        }
        if self.config.status_code_metrics {
            let source = if ctx.outcome == Outcome::Proxied { "service" } else { "kong" };
            m.http_requests.add(&[service, route, ctx.status.as_str(), source, WORKSPACE, consumer], 1);
        }
        if self.config.latency_metrics {
            let labels = [service, route, WORKSPACE];
            let l = ctx.latencies;
            m.request_latency.observe(&labels, millis(l.request));
            if let Some(upstream) = l.upstream {
                m.upstream_latency.observe(&labels, millis(upstream));
            }
            m.kong_latency.observe(&labels, millis(l.kong));
        }
    }
}

#[async_trait]
impl Plugin for Prometheus {
    fn log(&self, ctx: &LogContext<'_>) {
        let Some(route) = ctx.route else { return };
        let series = route.prometheus.0.get_or_init(|| RouteSeries::new(&self.metrics, route, ctx.service));
        if series.serves(&self.metrics, ctx.service) {
            self.record(ctx, series);
        } else {
            self.record_by_labels(ctx, route);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::{Consumer, Consumers};
    use crate::plugins::{Latencies, Slots};
    use gatehouse_model::gateway::snapshot;
    use serde_json::json;

    fn plugin(metrics: &Arc<ProxyMetrics>) -> Prometheus {
        let config = json!({"per_consumer": true, "status_code_metrics": true, "ai_metrics": false,
            "latency_metrics": true, "bandwidth_metrics": true, "upstream_health_metrics": false, "wasm_metrics": false});
        Prometheus::new(config.as_object().unwrap(), metrics.clone()).unwrap()
    }

    fn route(name: Option<&str>) -> RouteConfig {
        RouteConfig {
            id: uuid::Uuid::from_u128(0xabc),
            name: name.map(Into::into),
            service_id: None,
            protocols: vec!["http".into()],
            strip_path: true,
            preserve_host: false,
            https_redirect_status_code: 426,
            request_buffering: true,
            prometheus: RouteSeriesCell::default(),
            entity: None,
        }
    }

    /// Records one request on `route` with `status`, by `consumer` (a username), through `plugin`.
    fn request(plugin: &Prometheus, route: &RouteConfig, status: u16, consumer: Option<&Consumer>, proxied: bool) {
        let ctx = LogContext {
            request_id: "r",
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            method: &http::Method::GET,
            status: http::StatusCode::from_u16(status).unwrap(),
            route: Some(route),
            service: None,
            consumer,
            latencies: Latencies {
                kong: std::time::Duration::from_millis(2),
                upstream: proxied.then(|| std::time::Duration::from_millis(30)),
                request: std::time::Duration::from_millis(32),
            },
            outcome: if proxied { Outcome::Proxied } else { Outcome::Answered { plugin: "key-auth" } },
            slots: &Slots::default(),
            request_bytes: None,
            response_bytes: Some(10),
            trace: None,
            request: None,
            upstream_uri: None,
            response_headers: &http::HeaderMap::new(),
        };
        plugin.log(&ctx);
    }

    /// More consumers and codes than a route keeps handles for, a route recorded against another node's families,
    /// and a renamed route: every request is counted under its own labels, whichever way it was recorded.
    #[test]
    fn handles_and_lookups_count_the_same_series() {
        let metrics = Arc::new(ProxyMetrics::default());
        let prometheus = plugin(&metrics);
        let names: Vec<String> = (0..CONSUMER_SLOTS + 2).map(|i| format!("user-{i}")).collect();
        let consumers = Consumers::new(
            &names
                .iter()
                .enumerate()
                .map(|(i, name)| snapshot::Consumer {
                    id: uuid::Uuid::from_u128(i as u128 + 1),
                    username: Some(name.clone()),
                    custom_id: None,
                    groups: Vec::new(),
                })
                .collect::<Vec<_>>(),
        );
        let consumer = |name: &str| consumers.by_username(name).map(|c| &**c);
        let named = route(Some("api"));
        let codes: Vec<u16> = (0..CODE_SLOTS as u16 + 3).map(|i| 200 + i).collect();
        for _ in 0..2 {
            for name in &names {
                for code in &codes {
                    request(&prometheus, &named, *code, consumer(name), true);
                }
            }
            request(&prometheus, &named, 401, None, false);
        }
        let series = |code: &str, source: &str, consumer: &str| {
            metrics.http_requests.get(&["", "api", code, source, WORKSPACE, consumer])
        };
        for name in &names {
            for code in &codes {
                assert_eq!(series(&code.to_string(), "service", name), Some(2), "{name} {code}");
            }
            assert_eq!(
                metrics.bandwidth.get(&["", "api", "egress", WORKSPACE, name]),
                Some(2 * codes.len() as u64 * 10)
            );
        }
        assert_eq!(series("401", "kong", ""), Some(2));
        let total = 2 * (names.len() * codes.len() + 1) as u64;
        assert_eq!(metrics.request_latency.count(&["", "api", WORKSPACE]), Some(total));
        assert_eq!(metrics.upstream_latency.count(&["", "api", WORKSPACE]), Some(total - 2), "none without upstream");
        assert_eq!(metrics.bandwidth.get(&["", "api", "ingress", WORKSPACE, ""]), None, "no body, no series");

        // The same route config recorded into another node's families: looked up there, nothing added here.
        let other = Arc::new(ProxyMetrics::default());
        request(&plugin(&other), &named, 200, consumer("user-0"), true);
        assert_eq!(other.http_requests.get(&["", "api", "200", "service", WORKSPACE, "user-0"]), Some(1));
        assert_eq!(series("200", "service", "user-0"), Some(2));

        // The next configuration renames the route (a new config, a new cell); an unnamed route counts by id.
        request(&prometheus, &route(Some("renamed")), 200, None, true);
        request(&prometheus, &route(None), 200, None, true);
        assert_eq!(metrics.http_requests.get(&["", "renamed", "200", "service", WORKSPACE, ""]), Some(1));
        let id = uuid::Uuid::from_u128(0xabc).to_string();
        assert_eq!(metrics.http_requests.get(&["", &id, "200", "service", WORKSPACE, ""]), Some(1));
        assert_eq!(series("200", "service", "user-0"), Some(2), "the old series are kept");
    }

    /// The issue's scrape budget: 1,000 routes with every family on. Prints the render time (debug builds are
    /// several times slower than release) and checks the output's size, not the time.
    #[test]
    fn a_scrape_with_a_thousand_routes_renders_every_series() {
        let metrics = ProxyMetrics::default();
        let routes: Vec<String> = (0..1000).map(|i| format!("route-{i}")).collect();
        for route in &routes {
            for code in ["200", "404"] {
                metrics.http_requests.add(&["svc", route, code, "service", WORKSPACE, ""], 1);
            }
            let labels = ["svc", route.as_str(), WORKSPACE];
            metrics.kong_latency.observe(&labels, 1.5);
            metrics.upstream_latency.observe(&labels, 30.0);
            metrics.request_latency.observe(&labels, 31.5);
            metrics.bandwidth.add(&["svc", route, "egress", WORKSPACE, ""], 100);
        }
        let started = tokio::time::Instant::now();
        let mut out = String::new();
        metrics.render(&mut out);
        println!("render: {:?} for {} bytes", started.elapsed(), out.len());
        // 2,000 counters, 1,000 bandwidth series, and per histogram series: buckets + `+Inf` + sum + count.
        let histogram_lines = 1000 * ((KONG_LATENCY_BUCKETS.len() + 3) + 2 * (UPSTREAM_LATENCY_BUCKETS.len() + 3));
        let samples = out.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 2000 + 1000 + histogram_lines);
    }
}
