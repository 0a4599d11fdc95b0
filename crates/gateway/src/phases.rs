//! The phase runner: what a request carries from phase to phase, and the order plugins run in.
//!
//! One [`RequestState`] per request, owned by the proxy's request handler, holds the snapshot the request started
//! with, the route and service it matched, the consumer an authentication plugin set, the plugins whose `access`
//! ran, their slots, the latencies and the outcome. The handler calls [`log`] exactly once, after the response head
//! is final, whether the upstream answered, a plugin answered or the gateway failed, so `log` plugins and the
//! access log see every request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::config::Compiled;
use crate::consumers::Consumer;
use crate::plugins::{
    Connection, Flow, Latencies, LogContext, Outcome, Plugin, PluginDef, RequestContext, ResponseContext,
    RewriteContext, Slots, TraceStart,
};
use crate::router::RouteConfig;
use crate::service::ServiceConfig;

/// A plugin instance chosen for this request, with its definition (for its name and phases).
pub type Ran<'c> = (&'static PluginDef, &'c dyn Plugin);

#[derive(Debug)]
pub struct RequestState<'c> {
    pub config: &'c Compiled,
    pub client_ip: IpAddr,
    /// The connection the request came on, as `access` and `response` see it.
    pub connection: Connection,
    pub route: Option<&'c Arc<RouteConfig>>,
    pub service: Option<&'c Arc<ServiceConfig>>,
    pub consumer: Option<Arc<Consumer>>,
    /// The plugins whose `access` ran, in order: borrowed from the snapshot and inline for the few a route has,
    /// so no allocation or reference count per request.
    pub ran: SmallVec<[Ran<'c>; 4]>,
    /// Whether the request reached the access phase; if not, [`settle`] fills `ran`.
    pub reached_access: bool,
    pub slots: Slots,
    pub outcome: Outcome,
    /// The gateway's own failure, with its side and cause, logged once when the request ends.
    pub error: Option<crate::error::GatewayError>,
    /// From the request's arrival to its upstream call (the gateway's own time before proxying).
    pub before_upstream: Option<Duration>,
    /// From the upstream call to the upstream's response head.
    pub upstream: Option<Duration>,
    /// The request's trace, when `opentelemetry` sampled it (boxed: most requests carry `None`).
    pub trace: Option<Box<crate::trace::Trace>>,
    /// The path and query sent upstream, credentials redacted: set only when a plugin serializes requests.
    pub upstream_uri: Option<String>,
}

impl<'c> RequestState<'c> {
    pub fn new(config: &'c Compiled, client_ip: IpAddr, connection: Connection) -> Self {
        Self {
            config,
            client_ip,
            connection,
            route: None,
            service: None,
            consumer: None,
            ran: SmallVec::new(),
            reached_access: false,
            slots: Slots::default(),
            outcome: Outcome::Proxied,
            error: None,
            before_upstream: None,
            upstream: None,
            trace: None,
            upstream_uri: None,
        }
    }

    /// Kong's latencies once the response head is final, `total` after the request's arrival.
    pub fn latencies(&self, total: Duration) -> Latencies {
        let kong = match (self.before_upstream, self.upstream) {
            (Some(before), Some(upstream)) => total.saturating_sub(upstream).max(before),
            _ => total,
        };
        Latencies { kong, upstream: self.upstream, request: total }
    }
}

/// `rewrite`: the global instances of plugins that have the phase, before routing.
pub fn rewrite(config: &Compiled, ctx: &mut RewriteContext<'_>) {
    for (_, plugin) in config.plugins.rewrite() {
        plugin.rewrite(ctx);
    }
}

/// Whether to trace the routed request: the `opentelemetry` instance that applies to its route decides (consumer
/// instances are not allowed for it, so none is missed by deciding before authentication). Without that plugin in
/// the configuration this is one branch.
pub fn start_trace(
    config: &Compiled,
    route: &RouteConfig,
    request: &mut TraceStart<'_>,
) -> Option<Box<crate::trace::Trace>> {
    let index = config.plugins.tracer()?;
    let plugin = config.plugins.resolve(index, Some(route.id), route.service_id, None)?;
    plugin.start_trace(request)
}

/// `access`: every plugin name in priority order, its most specific instance for the request (resolved with the
/// consumer known so far). `Some` is a plugin's answer, with the plugin's name.
pub async fn access<'c>(
    config: &'c Compiled,
    ran: &mut SmallVec<[Ran<'c>; 4]>,
    ctx: &mut RequestContext<'_>,
) -> Option<(&'static str, Response<Full<Bytes>>)> {
    let route = ctx.route.id;
    for index in 0..config.plugins.len() {
        let consumer = ctx.consumer.as_ref().map(|c| c.id);
        let Some(plugin) = config.plugins.resolve(index, Some(route), ctx.route.service_id, consumer) else {
            continue;
        };
        let Some(def) = config.plugins.def(index) else { continue };
        ran.push((def, plugin.as_ref()));
        if !def.phases.access {
            continue;
        }
        let flow = match ctx.trace.as_mut() {
            None => plugin.access(ctx).await,
            Some(trace) => {
                trace.start_phase("access", def.info.name);
                // The IdP calls the plugin makes (discovery, keys, tokens) become spans under its phase.
                let (flow, calls) = crate::trace::with_calls(plugin.access(ctx)).await;
                if let Some(trace) = ctx.trace.as_mut() {
                    trace.add_calls(&calls);
                    trace.end_phase();
                }
                flow
            }
        };
        if let Flow::Respond(response) = flow {
            // Kong keeps collecting the rest of the plugins after an exit (their `access` is skipped) and runs
            // their `log`: that is how `prometheus` (priority 13) counts `key-auth`'s 401s. Only `log` plugins
            // are added, so no later plugin's `response` runs on an answer it never saw the request of.
            let consumer = ctx.consumer.as_ref().map(|c| c.id);
            for later in index + 1..config.plugins.len() {
                let Some(def) = config.plugins.def(later).filter(|d| d.phases.log) else { continue };
                if let Some(plugin) = config.plugins.resolve(later, Some(route), ctx.route.service_id, consumer) {
                    ran.push((def, plugin.as_ref()));
                }
            }
            return Some((def.info.name, response));
        }
    }
    None
}

/// A traced request's `header_filter` phases: plugin and when it started and ended.
pub type HeaderFilterSpans = SmallVec<[(&'static str, Instant, Instant); 2]>;

/// `response`: the plugins whose `access` ran, in the same order. When the request is traced, each plugin's phase
/// is timed (Kong's `kong.header_filter.plugin.<name>`); the caller adds them to the trace once `ctx` is done
/// with it (plugins see the trace read-only here).
pub fn response(ran: &[Ran<'_>], ctx: &mut ResponseContext<'_>) -> HeaderFilterSpans {
    let mut timed = HeaderFilterSpans::new();
    let traced = ctx.trace.is_some();
    for (def, plugin) in ran {
        if def.phases.response {
            if traced {
                let start = Instant::now();
                plugin.response(ctx);
                timed.push((def.info.name, start, Instant::now()));
            } else {
                plugin.response(ctx);
            }
        }
    }
    timed
}

/// For a request that ended before the access phase (no route, a bad request, HTTPS required), the instances
/// that apply to what was known of it (global ones when no route matched) become the list that `response` and
/// `log` run, as Kong runs its global plugins' `header_filter` and `log` for a request it answered 404.
pub fn settle<'c>(state: &mut RequestState<'c>) {
    if state.reached_access {
        return;
    }
    let plugins = &state.config.plugins;
    let route = state.route.map(|r| r.id);
    let service = state.route.and_then(|r| r.service_id);
    for index in 0..plugins.len() {
        if let (Some(def), Some(plugin)) = (plugins.def(index), plugins.resolve(index, route, service, None)) {
            state.ran.push((def, plugin.as_ref()));
        }
    }
}

/// `log`, once per request: the plugins of [`RequestState::ran`] that have the phase.
pub fn log(state: &RequestState<'_>, ctx: &LogContext<'_>) {
    for (def, plugin) in &state.ran {
        if def.phases.log {
            plugin.log(ctx);
        }
    }
}

#[cfg(test)]
mod tests;
