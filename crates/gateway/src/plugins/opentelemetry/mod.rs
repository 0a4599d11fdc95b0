//! `opentelemetry` (priority 14): traces of proxied requests, exported over OTLP/HTTP (protobuf), with Kong's
//! span names and attributes (see [`crate::trace`]) and W3C Trace Context propagation.
//!
//! The decision to trace is made when the request has been routed, before the `access` phase, by
//! [`Plugin::start_trace`]: an incoming `traceparent` (when `propagation` extracts W3C) gives the trace id and the
//! parent, whose sampled flag is followed (`sampling_strategy`); otherwise one draw against `sampling_rate`
//! decides. An unsampled request carries no trace; it still sends a `traceparent` upstream with the sampled flag
//! off, as Kong does (its one allocation). A sampled one gets a [`Trace`] that the
//! phase runner, the upstream call and plugins (the IdP calls of `oauth2-introspection`) add spans to; the
//! upstream request carries a `traceparent` naming the `kong.balancer` span. In `log`, the spans are handed to
//! the instance's exporter ([`export`]), which never makes the request wait.

pub mod export;

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tokio::time::Instant;

use gatehouse_model::gateway::plugins::opentelemetry::{Config, INFO};

use super::{LogContext, Phases, Plugin, PluginDef, ResponseContext, TraceStart};
use crate::trace::{Trace, attribute, new_span_id, new_trace_id, parse_traceparent, string_value, traceparent};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { rewrite: false, access: false, response: true, log: true },
    build: |config, shared| Ok(Arc::new(OpenTelemetry::new(config, shared)?)),
};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Kong's `tracing_sampling_rate` default, which applies when the plugin sets no `sampling_rate`.
const DEFAULT_SAMPLING_RATE: f64 = 0.01;

#[derive(Debug)]
pub struct OpenTelemetry {
    sampling_rate: f64,
    /// An unsampled parent drops the trace (else a draw decides).
    parent_drops: bool,
    extract: bool,
    inject: bool,
    clear: Vec<HeaderName>,
    trace_id_header: Option<HeaderName>,
    exporter: Arc<export::Exporter>,
    clock: gatehouse_model::SharedClock,
}

impl OpenTelemetry {
    pub fn new(config: &Map<String, Value>, shared: &super::Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let propagate = config.propagate();
        let header = |name: &str| HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header {name}"));
        let clear = propagate.clear.iter().map(|h| header(h)).collect::<Result<_, _>>()?;
        let trace_id_header = config.http_response_header_for_traceid.as_deref().map(header).transpose()?;
        let exporter = shared.opentelemetry.get(export::Settings::from_config(&config)?)?;
        Ok(Self {
            sampling_rate: config.sampling_rate.unwrap_or(DEFAULT_SAMPLING_RATE),
            parent_drops: config.parent_drops(),
            extract: propagate.extract_w3c,
            inject: propagate.inject_w3c,
            clear,
            trace_id_header,
            exporter,
            clock: shared.clock.clone(),
        })
    }

    /// One draw against `sampling_rate`; none at 0 or 1.
    fn draw(&self) -> bool {
        self.sampling_rate >= 1.0 || (self.sampling_rate > 0.0 && fastrand::f64() < self.sampling_rate)
    }
}

#[async_trait]
impl Plugin for OpenTelemetry {
    fn start_trace(&self, request: &mut TraceStart<'_>) -> Option<Box<Trace>> {
        let parent = if self.extract {
            request.headers.get(&TRACEPARENT).and_then(|v| parse_traceparent(v.as_bytes()))
        } else {
            None
        };
        for name in &self.clear {
            request.headers.remove(name);
        }
        let sampled = match parent {
            Some((_, _, true)) => true,
            Some((_, _, false)) if self.parent_drops => false,
            _ => self.draw(),
        };
        if !sampled {
            // Kong propagates a trace it does not record: the upstream gets the trace id (the caller's, else a new
            // one) under a span id of Kong's, with the sampled flag off. One allocation: the header's value.
            if self.inject {
                let trace_id = parent.map_or_else(new_trace_id, |(trace_id, ..)| trace_id);
                let value = traceparent(&trace_id, &new_span_id(), false);
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    request.headers.insert(TRACEPARENT, value);
                }
            }
            return None;
        }
        let (trace_id, parent_span) = match parent {
            Some((trace_id, span, _)) => (trace_id, Some(span)),
            None => (new_trace_id(), None),
        };
        let url = format!("{}://{}{}", request.scheme, request.host, request.target);
        let flavor = match request.version {
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2.0",
            http::Version::HTTP_3 => "3.0",
            _ => "1.1",
        };
        let attributes = vec![
            attribute("http.method", string_value(request.method.as_str())),
            attribute("http.url", string_value(url)),
            attribute("http.host", string_value(request.host)),
            attribute("http.scheme", string_value(request.scheme)),
            attribute("http.flavor", string_value(flavor)),
            attribute("http.client_ip", string_value(request.client_ip.to_string())),
            attribute("net.peer.ip", string_value(request.peer_ip.to_string())),
            attribute("kong.request.id", string_value(request.request_id)),
        ];
        // The wall clock when the request arrived, from the clock's reading now and the time since.
        let now = gatehouse_model::Clock::now(&self.clock).micros();
        let elapsed = i64::try_from(request.started.elapsed().as_micros()).unwrap_or(0);
        let trace = Box::new(Trace::new(trace_id, parent_span, request.started, now - elapsed, attributes));
        if self.inject
            && let Ok(value) = HeaderValue::from_str(&trace.traceparent())
        {
            request.headers.insert(TRACEPARENT, value);
        }
        Some(trace)
    }

    fn response(&self, ctx: &mut ResponseContext<'_>) {
        if let (Some(name), Some(trace)) = (&self.trace_id_header, ctx.trace)
            && let Ok(value) = HeaderValue::from_str(&trace.trace_id_hex())
        {
            ctx.headers.insert(name.clone(), value);
        }
    }

    fn log(&self, ctx: &LogContext<'_>) {
        let Some(trace) = ctx.trace else { return };
        self.exporter.enqueue(trace.finish(Instant::now(), ctx.status.as_u16()));
    }
}

#[cfg(test)]
mod tests;
