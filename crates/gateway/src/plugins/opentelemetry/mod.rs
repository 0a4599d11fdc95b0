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
use http::header::Entry;
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
    /// `clear`'s headers other than `traceparent`, which [`Plugin::start_trace`] handles with its one lookup.
    clear: Vec<HeaderName>,
    clear_traceparent: bool,
    trace_id_header: Option<HeaderName>,
    exporter: Arc<export::Exporter>,
    clock: gatehouse_model::SharedClock,
}

impl OpenTelemetry {
    pub fn new(config: &Map<String, Value>, shared: &super::Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let propagate = config.propagate();
        let header = |name: &str| HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header {name}"));
        let mut clear = propagate.clear.iter().map(|h| header(h)).collect::<Result<Vec<_>, _>>()?;
        let clear_traceparent = clear.contains(&TRACEPARENT);
        clear.retain(|h| *h != TRACEPARENT);
        let trace_id_header = config.http_response_header_for_traceid.as_deref().map(header).transpose()?;
        let exporter = shared.opentelemetry.get(export::Settings::from_config(&config)?)?;
        Ok(Self {
            sampling_rate: config.sampling_rate.unwrap_or(DEFAULT_SAMPLING_RATE),
            parent_drops: config.parent_drops(),
            extract: propagate.extract_w3c,
            inject: propagate.inject_w3c,
            clear,
            clear_traceparent,
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
        // With injection, one lookup of `traceparent` (one hash of the name) serves both the read of the caller's
        // and the write of ours: every request pays for it, sampled or not.
        let (parent, mut slot) = if self.inject {
            let slot = request.headers.entry(TRACEPARENT);
            let parent = match &slot {
                Entry::Occupied(found) if self.extract => parse_traceparent(found.get().as_bytes()),
                _ => None,
            };
            (parent, Some(slot))
        } else if self.extract {
            (request.headers.get(&TRACEPARENT).and_then(|v| parse_traceparent(v.as_bytes())), None)
        } else {
            (None, None)
        };
        let sampled = match parent {
            Some((_, _, true)) => true,
            Some((_, _, false)) if self.parent_drops => false,
            _ => self.draw(),
        };
        let trace = sampled.then(|| {
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
            Box::new(Trace::new(trace_id, parent_span, request.started, now - elapsed, attributes))
        });
        // Kong clears after extracting and injects after clearing: an injected `traceparent` replaces the
        // caller's whether or not `clear` names it.
        if self.inject {
            // Sampled: this trace, under the balancer span. Not sampled: Kong still propagates the trace id (the
            // caller's, else a new one) under a span id of its own, with the sampled flag off.
            let value = match &trace {
                Some(trace) => traceparent(&trace.trace_id, &trace.balancer, true),
                None => {
                    traceparent(&parent.map_or_else(new_trace_id, |(trace_id, ..)| trace_id), &new_span_id(), false)
                }
            };
            // The request's one allocation when it is not traced: the value's bytes. (`HeaderValue`'s unchecked
            // constructor would skip re-reading 55 bytes we know are visible ASCII, but it is `unsafe`, which the
            // workspace forbids.)
            if let (Ok(value), Some(slot)) = (HeaderValue::from_bytes(&value), slot.take()) {
                match slot {
                    Entry::Occupied(mut found) => {
                        found.insert(value);
                    }
                    Entry::Vacant(empty) => {
                        empty.insert(value);
                    }
                }
            }
        } else if self.clear_traceparent {
            request.headers.remove(&TRACEPARENT);
        }
        for name in &self.clear {
            request.headers.remove(name);
        }
        trace
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
