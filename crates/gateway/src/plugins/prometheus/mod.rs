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

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::prometheus::{Config, INFO};

use super::{LogContext, Outcome, Phases, Plugin, PluginDef};
use crate::metrics::{CounterVec, HistogramVec};

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

#[async_trait]
impl Plugin for Prometheus {
    fn log(&self, ctx: &LogContext<'_>) {
        let Some(route) = ctx.route else { return };
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let route_label = match &route.name {
            Some(name) => name.as_str(),
            None => route.id.hyphenated().encode_lower(&mut id),
        };
        let service_label = ctx.service.map_or("", |s| s.name.as_deref().unwrap_or(&s.host));
        let consumer = match (self.config.per_consumer, ctx.consumer) {
            (true, Some(consumer)) => consumer.username.as_deref().unwrap_or(""),
            _ => "",
        };
        if self.config.bandwidth_metrics {
            for (direction, bytes) in [("ingress", ctx.request_bytes), ("egress", ctx.response_bytes)] {
                if let Some(bytes) = bytes.filter(|b| *b > 0) {
                    let labels = [service_label, route_label, direction, WORKSPACE, consumer];
                    self.metrics.bandwidth.add(&labels, bytes);
                }
            }
        }
        if self.config.status_code_metrics {
            let source = if ctx.outcome == Outcome::Proxied { "service" } else { "kong" };
            let code = ctx.status.as_str();
            self.metrics.http_requests.add(&[service_label, route_label, code, source, WORKSPACE, consumer], 1);
        }
        if self.config.latency_metrics {
            let labels = [service_label, route_label, WORKSPACE];
            let l = ctx.latencies;
            self.metrics.request_latency.observe(&labels, millis(l.request));
            if let Some(upstream) = l.upstream {
                self.metrics.upstream_latency.observe(&labels, millis(upstream));
            }
            self.metrics.kong_latency.observe(&labels, millis(l.kong));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scrape budget: 1,000 routes with every family on. Prints the render time (debug builds are
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
