//! The proxy: hyper serving HTTP/1.1 and HTTP/2 (cleartext) to clients, Kong's routing and plugins, and pooled
//! keep-alive connections upstream.
//!
//! Per request, in stages: [`serve`] accepts and serves connections; `ingress` refuses what must never be
//! forwarded and strips what the client meant for this hop; this module routes, reads the body, runs the phases
//! (`crate::phases`) and composes the upstream request; `forwarded` adds `X-Forwarded-*`, `X-Real-IP` and
//! `Via`; `send` calls the service within its timeouts, retrying only what was never sent; the response goes back
//! with Kong's latency headers. Every failure is one `GatewayError`, answered with Kong's JSON body in one place
//! (`local_error`) and logged once when the request ends.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use smallvec::SmallVec;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use gatehouse_model::gateway::snapshot::ConfigSnapshot;
use gatehouse_model::metrics::gatehouse::{GatehouseMetrics, LOAD_INSTALLED, LOAD_REFUSED};

use crate::access_log::{AccessLog, AccessLogSettings, Line, WorkerLog};
use crate::body::{
    ClientBody, FilteredBody, IdleTimeoutBody, ProxyBody, ResponseBody, caused_by_client_body, empty, full,
};
use crate::config::Compiled;
use crate::error::CompileError;
use crate::error::{GatewayError, INSPECTED_BODY_LIMIT, ProxyError, Side};
use crate::framing::{Verdicts, Watched};
use crate::phases::RequestState;
use crate::plugins::{
    Framing, LogContext, Outcome, Registry, RequestContext, ResponseContext, RewriteContext, TraceStart,
};
use crate::router::{RequestFacts, normalize_path};
use crate::timer::Sleeps;
use crate::upstream::{Pool, PoolKey, Sender};

use gatehouse_net::{AcceptErrors, Activity, ConnectionLimits, Gate, Tracked};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const SERVER: &str = concat!("gatehouse/", env!("CARGO_PKG_VERSION"));
const VIA: &str = concat!("1.1 gatehouse/", env!("CARGO_PKG_VERSION"));

/// Header names the proxy sets, parsed once.
mod names {
    use http::header::HeaderName;

    pub const X_KONG_REQUEST_ID: HeaderName = HeaderName::from_static("x-kong-request-id");
    pub const X_KONG_RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-kong-response-latency");
    pub const X_KONG_UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-kong-upstream-latency");
    pub const X_KONG_PROXY_LATENCY: HeaderName = HeaderName::from_static("x-kong-proxy-latency");
    pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
    pub const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
    pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
    pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
    pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
}

#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_ips: Vec<IpNet>,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    /// The bounds of the node's `oauth2-introspection` answer cache; `None`: 100,000 entries, 64 MiB.
    pub introspection_cache_entries: Option<u64>,
    pub introspection_cache_bytes: Option<u64>,
    /// The listener's connection caps and deadlines. Its header timeout also bounds how long an HTTP/1 client
    /// may take to send a request head, counted from when the proxy starts waiting for it (on a kept-alive
    /// connection: from the end of the previous response); its body timeout is the longest pause in a request
    /// body (nginx's `client_body_timeout`), and the longest a body the proxy reads whole may take.
    pub limits: ConnectionLimits,
    /// Forward header names that contain `_` (nginx's `underscores_in_headers`); off, they are dropped. Even
    /// when on, none may spell a header the gateway owns (`X_Consumer_ID`).
    pub underscores_in_headers: bool,
    /// Where the access log goes and how it is spelled.
    pub access_log: AccessLogSettings,
    /// The plugins the proxy can run ([`Registry::builtin`] unless a test adds one).
    pub registry: Registry,
    /// Wall time for what plugins check against it (`exp` of cached introspection answers) and the access log's
    /// timestamps; tests move it.
    pub clock: gatehouse_model::SharedClock,
    /// The counters of `rate-limiting`'s `cluster` policy, kept in the node's database; `None` (tests, a node
    /// without a store) refuses configurations that use that policy.
    pub cluster_counters: Option<std::sync::Arc<dyn crate::counters::Counters>>,
    /// The HMAC key the control plane hashes `keyauth_credentials` with; `None` refuses configurations that use
    /// `key-auth`.
    pub key_auth_hmac: Option<aws_lc_rs::hmac::Key>,
    /// The node's `gatehouse_` families; the proxy records configuration loads and the introspection plugin's
    /// cache and IdP calls.
    pub metrics: Arc<GatehouseMetrics>,
    /// How upstream targets' host names are resolved (Kong's `dns_resolver` and TTL settings).
    pub dns: crate::balancer::DnsSettings,
}

/// Request ids: a random per-process prefix and a counter, 32 hex digits like Kong's.
#[derive(Debug)]
struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut seed = [0u8; 16];
        let _ = getrandom::fill(&mut seed);
        let (a, b) = seed.split_at(8);
        Self {
            prefix: u64::from_le_bytes(a.try_into().unwrap_or_default()),
            counter: AtomicU64::new(u64::from_le_bytes(b.try_into().unwrap_or_default())),
        }
    }

    fn next(&self) -> RequestId {
        let mut digits = [0u8; 32];
        let (prefix, count) = digits.split_at_mut(16);
        hex_digits(self.prefix, prefix);
        hex_digits(self.counter.fetch_add(1, Ordering::Relaxed), count);
        RequestId(HeaderValue::from_bytes(&digits).unwrap_or(HeaderValue::from_static("0")))
    }
}

/// `n` as lower-case hex, zero-padded to fill `out`.
fn hex_digits(mut n: u64, out: &mut [u8]) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// A request id, kept as the header value it is sent in; its text (bodies, logs, plugins) is read from it.
#[derive(Debug)]
struct RequestId(HeaderValue);

impl RequestId {
    fn text(&self) -> &str {
        // Hex digits only, so always text.
        self.0.to_str().unwrap_or_default()
    }
}

/// A message's declared body length (`Content-Length`), if any.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// What the workers share: the configuration snapshot and the settings.
#[derive(Debug)]
pub struct Proxy {
    /// The configuration snapshot, one per worker: a request takes a reference to its worker's copy, and on two
    /// cores a reference count (or a shared value's) that both cores update on every request costs more than it
    /// seems (see `docs/architecture.md`, "Workers"). What requests only borrow (router, services, consumers) is
    /// compiled once and shared by the copies; plugin instances are each worker's own.
    configs: Box<[ArcSwap<Compiled>]>,
    /// What the last install compiled, kept for the next (`config::Compiler`).
    compiler: std::sync::Mutex<crate::config::Compiler>,
    settings: ProxySettings,
    plugins: crate::plugins::Shared,
    access_log: Arc<AccessLog>,
    /// What the TLS listener serves, by SNI: the `certificates` of the snapshot, then the listener's file
    /// certificate.
    certificates: Arc<gatehouse_net::tls::CertificateResolver>,
    /// Connection and request counts, one set per worker so no two cores add to the same cache line; summed when
    /// read ([`Proxy::connection_stats`]).
    stats: Box<[WorkerStats]>,
    /// The TLS listener's port (0 without one): where an `https`-only route's redirect sends the client.
    tls_port: std::sync::atomic::AtomicU16,
    /// The certificates of the configuration installed last, parsed.
    parsed_certificates: std::sync::Mutex<ParsedCertificates>,
    /// The upstreams' balancers, kept across configuration changes with their targets' health.
    balancers: Arc<crate::balancer::Balancers>,
    /// Whether a `prometheus` plugin of the configuration sets `upstream_health_metrics`.
    upstream_health_metrics: std::sync::atomic::AtomicBool,
}

/// One worker's connection and request counts (nginx's `stub_status` counters, for the proxy listener).
#[derive(Debug, Default)]
#[repr(align(128))]
struct WorkerStats {
    accepted: AtomicU64,
    handled: AtomicU64,
    active: AtomicU64,
    requests: AtomicU64,
}

/// The proxy listener's connection and request counts since start, summed over its workers: nginx's
/// `connections_accepted`, `connections_handled` (accepted and not refused by the listener's limits),
/// `connections_active` and `total_requests`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    pub accepted: u64,
    pub handled: u64,
    pub active: u64,
    pub requests: u64,
}

/// What one worker thread owns, so requests never contend across cores: its idle upstream connections, its
/// request-id sequence and its spare timers; `index` is its configuration copy's.
#[derive(Debug)]
struct Worker {
    index: usize,
    pool: Pool,
    ids: RequestIds,
    sleeps: Sleeps,
    log: WorkerLog,
    /// Connections accepted so far (nginx's `$connection` numbers them per worker).
    connections: AtomicU64,
}

/// A client connection, with what every request on it reuses. Requests reach the proxy and the worker through it,
/// so serving one touches only this connection's reference count, never one shared with the other cores.
#[derive(Debug)]
struct ClientConnection {
    proxy: Arc<Proxy>,
    worker: Arc<Worker>,
    peer: SocketAddr,
    /// The address the connection was accepted on, its number on the worker, and its requests so far (what
    /// plugins see as [`crate::plugins::Connection`]).
    local: SocketAddr,
    serial: u64,
    requests: AtomicU64,
    local_port: u16,
    /// `local_port` as a header value (`X-Forwarded-Port`).
    local_port_value: HeaderValue,
    /// The peer's address as a header value (`X-Forwarded-For`, `X-Real-IP`).
    peer_value: HeaderValue,
    /// Whether the peer is a trusted proxy whose `X-Forwarded-*` headers are kept.
    trusted: bool,
    /// The upstream connections this client's recent requests used, at most one per pool key and
    /// [`KEPT_PER_CLIENT`] in all, oldest first: an HTTP/1 client's next request goes out on one of them without
    /// touching the worker's pool, also when a balancer sends consecutive requests to different targets.
    upstream: std::sync::Mutex<KeptUpstreams>,
    /// Requests in flight on this connection, for the listener's idle deadlines and eviction.
    activity: Arc<Activity>,
    /// Whether the connection came through the TLS listener: `X-Forwarded-Proto`, and which routes it may take.
    tls: bool,
    /// The server name the client's TLS handshake asked for (routes' `snis`).
    sni: Option<Box<str>>,
}

/// How many upstream connections one client connection keeps for itself: enough for a round-robin over a few
/// targets to find its connection on the client each time, few enough that idle clients do not hold many
/// upstream connections each (past this, the oldest goes to the worker's pool).
const KEPT_PER_CLIENT: usize = 4;

type KeptUpstreams = smallvec::SmallVec<[(PoolKey, Sender); KEPT_PER_CLIENT]>;

impl Drop for ClientConnection {
    fn drop(&mut self) {
        if let Some(stats) = self.proxy.stats.get(self.worker.index) {
            stats.active.fetch_sub(1, Ordering::Relaxed);
        }
        if let Ok(kept) = self.upstream.get_mut() {
            for (key, sender) in kept.drain(..) {
                self.worker.pool.put(key, sender);
            }
        }
    }
}

impl Proxy {
    /// A proxy whose access log cannot be opened fails to start, as nginx does: an operator who asked for the log
    /// must not learn of its absence from the missing lines.
    pub fn try_new(settings: ProxySettings) -> std::io::Result<Arc<Self>> {
        let access_log = AccessLog::open(&settings.access_log)?;
        Ok(Self::with_access_log(settings, access_log))
    }

    /// [`Proxy::try_new`], with the access log off when it cannot be opened (tests, benches).
    pub fn new(settings: ProxySettings) -> Arc<Self> {
        let access_log = AccessLog::open(&settings.access_log).unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not open the access log; requests are not logged");
            AccessLog::off()
        });
        Self::with_access_log(settings, access_log)
    }

    fn with_access_log(settings: ProxySettings, access_log: Arc<AccessLog>) -> Arc<Self> {
        let mut plugins = crate::plugins::Shared::new(
            settings.introspection_cache_entries,
            settings.introspection_cache_bytes,
            settings.clock.clone(),
            settings.metrics.clone(),
        );
        plugins.counters =
            crate::counters::CounterStores::new(settings.cluster_counters.clone(), settings.clock.clone());
        plugins.key_auth = settings.key_auth_hmac.clone();
        let workers = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let configs = (0..workers).map(|_| ArcSwap::from_pointee(Compiled::default())).collect();
        let certificates = gatehouse_net::tls::CertificateResolver::new();
        let stats = (0..workers).map(|_| WorkerStats::default()).collect();
        let tls_port = std::sync::atomic::AtomicU16::new(0);
        let parsed_certificates = Default::default();
        let balancers = Arc::new(crate::balancer::Balancers::new(settings.dns.clone()));
        Arc::new(Self {
            configs,
            compiler: Default::default(),
            settings,
            plugins,
            access_log,
            certificates,
            stats,
            tls_port,
            parsed_certificates,
            balancers,
            upstream_health_metrics: Default::default(),
        })
    }

    /// The certificates the TLS listener picks from (file certificate as fallback; `certificates` entities later).
    pub fn certificates(&self) -> &Arc<gatehouse_net::tls::CertificateResolver> {
        &self.certificates
    }

    /// Compiles a configuration (incrementally: see `config::Compiler`) and swaps it in; requests in flight keep the one they started
    /// with. Nothing is swapped unless it compiles.
    pub fn install(&self, data: &ConfigSnapshot) -> Result<(), CompileError> {
        let registry = &self.settings.registry;
        let staged = self.balancers.stage(&data.upstreams);
        let balancers = staged.by_name();
        let health_metrics = data.plugins.iter().any(|p| {
            p.enabled
                && p.name == "prometheus"
                && p.config.get("upstream_health_metrics") == Some(&serde_json::Value::Bool(true))
        });
        self.upstream_health_metrics.store(health_metrics, Ordering::Relaxed);
        let mut compiler = self.compiler.lock().unwrap_or_else(|p| p.into_inner());
        let compiled =
            compiler.compile(data, &self.plugins, registry, &balancers, self.configs.len()).map(|(compiled, reuse)| {
                tracing::debug!(kept = reuse.kept, built = reuse.built, "configuration compiled");
                compiled
            });
        let loads = &self.settings.metrics.proxy_configuration_loads;
        let compiled = match compiled {
            Ok(compiled) => compiled,
            Err(e) => {
                loads.add(LOAD_REFUSED, 1);
                return Err(e);
            }
        };
        self.balancers.commit(staged);
        for (slot, config) in self.configs.iter().zip(compiled) {
            slot.store(Arc::new(config));
        }
        let mut parsed = self.parsed_certificates.lock().unwrap_or_else(|p| p.into_inner());
        self.certificates.set_table(sni_table(data, &mut parsed));
        loads.add(LOAD_INSTALLED, 1);
        if let Some(changed) = data.changed_at {
            let took = Instant::from_std(changed).elapsed();
            self.settings.metrics.configuration_publish.observe(&[], took.as_secs_f64());
        }
        Ok(())
    }

    /// The node's plugin state (tests look at what plugins share, such as the token client).
    #[cfg(test)]
    pub(crate) fn plugin_state(&self) -> &crate::plugins::Shared {
        &self.plugins
    }

    /// The node's upstream balancers and their targets' health (the Admin API's health endpoints).
    pub fn balancers(&self) -> Arc<crate::balancer::Balancers> {
        self.balancers.clone()
    }

    /// `kong_upstream_target_health`, when a `prometheus` plugin asks for it (`upstream_health_metrics`).
    pub fn render_target_health(&self, out: &mut String) {
        if self.upstream_health_metrics.load(Ordering::Relaxed) {
            self.balancers.render_target_health(out);
        }
    }

    /// The `prometheus` plugin's metric families (the status listener's `/metrics` renders them).
    pub fn metrics(&self) -> &Arc<crate::plugins::prometheus::ProxyMetrics> {
        &self.plugins.metrics
    }

    /// `opentelemetry`'s span counts by outcome (the status listener's `/metrics` renders them).
    pub fn opentelemetry_spans(&self) -> &crate::metrics::CounterVec {
        &self.plugins.opentelemetry.spans
    }

    /// The logging plugins' entry counts by outcome (the status listener's `/metrics` renders them).
    pub fn log_entries(&self) -> &crate::metrics::CounterVec {
        &self.plugins.log_queues.entries
    }

    /// The content hash of the configuration the workers serve (Kong's `configuration_hash`); `None` until every
    /// worker has loaded one.
    pub fn config_hash(&self) -> Option<String> {
        let hashes: Vec<String> = self.configs.iter().map(|c| c.load().hash.clone()).collect();
        if hashes.iter().any(String::is_empty) { None } else { hashes.into_iter().next() }
    }

    /// The proxy listener's connection and request counts since start.
    pub fn connection_stats(&self) -> ConnectionStats {
        let sum = |f: fn(&WorkerStats) -> &AtomicU64| self.stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum();
        ConnectionStats {
            accepted: sum(|s| &s.accepted),
            handled: sum(|s| &s.handled),
            active: sum(|s| &s.active),
            requests: sum(|s| &s.requests),
        }
    }

    /// The configuration version every worker serves.
    pub fn version(&self) -> u64 {
        self.configs.iter().map(|c| c.load().version).min().unwrap_or_default()
    }

    /// Installs every configuration published on `updates`; a configuration that does not compile is refused and
    /// the previous one keeps serving.
    pub fn follow(self: &Arc<Self>, mut updates: watch::Receiver<Arc<ConfigSnapshot>>) {
        let proxy = self.clone();
        let first = updates.borrow_and_update().clone();
        if let Err(e) = proxy.install(&first) {
            tracing::error!(error = %e, "the gateway configuration does not compile; serving an empty one");
        }
        tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let data = updates.borrow_and_update().clone();
                match proxy.install(&data) {
                    Ok(()) => tracing::debug!(version = data.version, "gateway configuration installed"),
                    Err(e) => {
                        tracing::error!(error = %e, version = data.version, "gateway configuration refused; keeping the previous one")
                    }
                }
            }
        });
    }

    /// The gateway's own error response; the request's outcome becomes that error, which `handle` logs once.
    fn fail(
        &self,
        state: &mut RequestState<'_>,
        error: impl Into<GatewayError>,
        request_id: &RequestId,
        started: Instant,
    ) -> Response<ProxyBody> {
        let error = error.into();
        let kind = error.kind;
        state.outcome = Outcome::Failed(kind);
        state.error = Some(error);
        self.local_error(kind, request_id, started)
    }

    fn local_error(&self, error: ProxyError, request_id: &RequestId, started: Instant) -> Response<ProxyBody> {
        let (parts, body) = error.to_response(request_id.text()).into_parts();
        let mut response = Response::from_parts(parts, body.map_err(|never| match never {}).boxed());
        self.finish_local(&mut response, request_id, started);
        if matches!(error, ProxyError::BadRequest | ProxyError::RequestTimeout | ProxyError::SizeLimitExceeded) {
            // After a framing error, or a body left half-read, the connection's byte stream cannot be trusted:
            // close it.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// Headers on responses the gateway produced itself (Kong's `X-Kong-Response-Latency`).
    fn finish_local(&self, response: &mut Response<ProxyBody>, request_id: &RequestId, started: Instant) {
        let h = response.headers_mut();
        h.insert(header::SERVER, HeaderValue::from_static(SERVER));
        h.insert(names::X_KONG_REQUEST_ID, request_id.0.clone());
        h.insert(names::X_KONG_RESPONSE_LATENCY, millis(started.elapsed()));
    }

    /// Handles one request. `ambiguous_framing` is the connection watcher's verdict that its head carried both
    /// `Content-Length` and `Transfer-Encoding` (hyper drops the former before the request gets here).
    ///
    /// Whatever happens to the request, the plugins' `response` phase sees the final head and `log` runs once,
    /// then the access log records it.
    async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ClientConnection,
        ambiguous_framing: bool,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        if let Some(stats) = self.stats.get(conn.worker.index) {
            stats.requests.fetch_add(1, Ordering::Relaxed);
        }
        let request_id = conn.worker.ids.next();
        let config = self.configs[conn.worker.index].load_full();
        let method = req.method().clone();
        let uri = self.access_log.is_on().then(|| req.uri().clone());
        let request_bytes = content_length(req.headers());
        let connection = crate::plugins::Connection {
            local: conn.local,
            serial: conn.serial,
            requests: conn.requests.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let mut state = RequestState::new(&config, conn.peer.ip(), connection);
        // Only for configurations with a logging plugin; redacted here, before anything else reads it.
        let head = config.plugins.serializes().map(|secrets| {
            crate::plugins::serializer::RequestHead::capture(
                req.method(),
                req.uri(),
                req.headers(),
                conn.tls,
                conn.local_port,
                secrets,
            )
        });
        let mut response = match self.forward(req, conn, ambiguous_framing, &request_id, started, &mut state).await {
            Ok(proxied) => proxied,
            Err(local) => local.map(ResponseBody::Local),
        };
        let status = response.status();
        if !config.plugins.is_empty() {
            crate::phases::settle(&mut state);
        }
        if !state.ran.is_empty() {
            let mut body_filters = Vec::new();
            let mut ctx = ResponseContext {
                request_id: request_id.text(),
                status,
                headers: response.headers_mut(),
                consumer: state.consumer.as_deref(),
                slots: &mut state.slots,
                connection: state.connection,
                body_filters: &mut body_filters,
                trace: state.trace.as_deref(),
            };
            let header_filters = crate::phases::response(&state.ran, &mut ctx);
            if let Some(trace) = state.trace.as_mut() {
                for (plugin, start, end) in header_filters {
                    trace.phase("header_filter", plugin, start, end);
                }
            }
            if !body_filters.is_empty() {
                response = response.map(|body| ResponseBody::Filtered(Box::new(FilteredBody::new(body, body_filters))));
            }
        }
        let latencies = state.latencies(started.elapsed());
        let ctx = LogContext {
            request_id: request_id.text(),
            client_ip: state.client_ip,
            method: &method,
            status,
            route: state.route.map(AsRef::as_ref),
            service: state.service.map(AsRef::as_ref),
            consumer: state.consumer.as_deref(),
            latencies,
            outcome: state.outcome,
            slots: &state.slots,
            request_bytes,
            response_bytes: content_length(response.headers()),
            trace: state.trace.as_deref(),
            request: head.as_ref(),
            upstream_uri: state.upstream_uri.as_deref(),
            response_headers: response.headers(),
        };
        crate::phases::log(&state, &ctx);
        if let Some(error) = &state.error {
            let service = state.service.map(|s| s.id);
            match error.side {
                // The operator's problem: the service failed, or the gateway has no route or service for it.
                Side::Upstream | Side::Gateway if status.is_server_error() => {
                    tracing::warn!(request_id = request_id.text(), ?service, side = ?error.side, %error, "request failed");
                }
                _ => {
                    tracing::debug!(request_id = request_id.text(), ?service, side = ?error.side, %error, "request refused")
                }
            }
        }
        if let Some(uri) = &uri {
            let bytes = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let line = Line {
                time: gatehouse_model::Clock::now(&self.settings.clock),
                request_id: request_id.text(),
                client: state.client_ip,
                client_text: (state.client_ip == conn.peer.ip()).then(|| conn.peer_value.to_str().ok()).flatten(),
                method: &method,
                uri,
                status,
                bytes,
                route: ctx.route,
                service: ctx.service,
                consumer: ctx.consumer,
                latencies,
                outcome: state.outcome,
            };
            conn.worker.log.record(&self.access_log, &line);
        }
        response
    }

    /// `Err` holds a response the gateway made itself (an error, a plugin's answer, a redirect).
    async fn forward<'c>(
        &self,
        req: Request<Incoming>,
        conn: &ClientConnection,
        ambiguous_framing: bool,
        request_id: &RequestId,
        started: Instant,
        state: &mut RequestState<'c>,
    ) -> Result<Response<ResponseBody>, Response<ProxyBody>> {
        let config = state.config;
        let local_port = conn.local_port;
        // hyper already refuses conflicting lengths and unknown codings; a request with both framings is either
        // broken or an attempt to desynchronise a proxy chain, so it is never forwarded.
        if ambiguous_framing
            || (req.headers().contains_key(header::TRANSFER_ENCODING)
                && req.headers().contains_key(header::CONTENT_LENGTH))
        {
            return Err(self.fail(state, ProxyError::BadRequest, request_id, started));
        }
        let (mut parts, body) = req.into_parts();
        let target_host = match check_head(&parts) {
            Ok(host) => host,
            Err(error) => return Err(self.fail(state, error, request_id, started)),
        };
        if !config.plugins.rewrite().is_empty() {
            let mut ctx = RewriteContext {
                request_id: request_id.text(),
                client_ip: self.client_address(conn, &parts.headers),
                method: &parts.method,
                headers: &mut parts.headers,
                slots: &mut state.slots,
            };
            crate::phases::rewrite(config, &mut ctx);
        }
        let Some(path) = normalize_path(parts.uri.path()) else {
            return Err(self.fail(state, ProxyError::BadRequest, request_id, started));
        };
        // `check_head` allowed only visible ASCII in the host.
        let host_header = target_host.value.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
        let (host, port) = split_host_port(host_header, local_port);
        let facts = RequestFacts {
            method: parts.method.as_str(),
            host: &host,
            port,
            path: &path,
            headers: &parts.headers,
            tls: conn.tls,
            sni: conn.sni.as_deref(),
        };
        // Routing is timed for `kong.router` when the configuration traces at all: the decision to trace a
        // request comes after its route is known.
        let routing_started = config.plugins.tracer().map(|_| Instant::now());
        let Some(matched) = config.router.find(&facts) else {
            return Err(self.fail(state, ProxyError::NoRoute, request_id, started));
        };
        let routed = routing_started.map(|start| (start, Instant::now()));
        let route = matched.route;
        let matched_part = matched.matched;
        let path_regex = matched.regex;
        state.route = Some(route);
        // Kong's check: an `https` route without `http` (or, as gRPC is not served, a `grpcs` one), reached over
        // plain HTTP, unless a trusted proxy in front says the client's connection to it was HTTPS.
        if !conn.tls
            && !route.protocols.iter().any(|p| matches!(p.as_str(), "http" | "grpc"))
            && !self.forwarded_https(conn, &parts.headers)
        {
            state.outcome = Outcome::HttpsRequired;
            let forwarded_host = self.forwarded_host(conn, &parts.headers);
            return Err(self.https_required(
                route.https_redirect_status_code,
                forwarded_host.unwrap_or(&host),
                forwarded_host.is_none(),
                &parts.uri,
                request_id,
                started,
            ));
        }
        let service = route.service_id.and_then(|id| config.services.get(&id));
        state.service = service;

        let mut headers = parts.headers;
        let client_ip = self.client_address(conn, &headers);
        state.client_ip = client_ip;
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        let framing = match (declared, chunked) {
            (Some(n), _) => Framing::Length(n),
            (None, true) => Framing::Chunked,
            (None, false) => Framing::Unannounced,
        };
        // What the client meant for this hop only goes before any plugin runs: a `Connection` option applied
        // later could name, and so remove, an identity header a plugin has just set.
        strip_hop_by_hop(&mut headers);
        drop_unsafe_names(&mut headers, self.settings.underscores_in_headers, conn.trusted);
        // Small bodies are read whole so plugins can inspect them (form-encoded tokens, for one), and so that a
        // broken body is refused before anything goes upstream. Larger ones stream through.
        let body_timeout = self.settings.limits.body_timeout;
        let mut buffered: Option<Bytes> = None;
        let mut streaming: Option<ClientBody> = None;
        match declared {
            Some(0) => buffered = Some(Bytes::new()),
            // Without either framing header an HTTP/1 request has no body, but an HTTP/2 one may: the length is
            // optional there. Only a stream that ended with its headers is known to be empty.
            None if !chunked && body.is_end_stream() => buffered = Some(Bytes::new()),
            Some(n) if n <= INSPECTED_BODY_LIMIT as u64 => {
                let read = Limited::new(body, INSPECTED_BODY_LIMIT).collect();
                match conn.worker.sleeps.timeout(body_timeout, read).await {
                    Ok(Ok(collected)) => buffered = Some(collected.to_bytes()),
                    Ok(Err(_)) => return Err(self.fail(state, ProxyError::BadRequest, request_id, started)),
                    Err(_) => return Err(self.fail(state, ProxyError::RequestTimeout, request_id, started)),
                }
            }
            Some(_) => streaming = Some(ClientBody::new(Bytes::new(), body, body_timeout)),
            None if !route.request_buffering => streaming = Some(ClientBody::new(Bytes::new(), body, body_timeout)),
            // Chunked, or HTTP/2 without a length: read up to the limit to learn whether it fits.
            None => match read_ahead(body, &conn.worker.sleeps, body_timeout).await {
                Ok(ReadAhead::Whole(bytes)) => {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    buffered = Some(bytes);
                }
                Ok(ReadAhead::Partial(bytes, rest)) => streaming = Some(ClientBody::new(bytes, rest, body_timeout)),
                Err(error) => return Err(self.fail(state, error, request_id, started)),
            },
        }

        let trace = if config.plugins.tracer().is_some() {
            let mut start = TraceStart {
                headers: &mut headers,
                started,
                method: &parts.method,
                scheme: if conn.tls { "https" } else { "http" },
                host: &host,
                target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                version: parts.version,
                client_ip,
                peer_ip: conn.peer.ip(),
                request_id: request_id.text(),
            };
            let mut trace = crate::phases::start_trace(config, route, &mut start);
            if let (Some(trace), Some((start, end))) = (trace.as_mut(), routed) {
                trace.router(start, end);
            }
            trace
        } else {
            None
        };
        let mut ctx = RequestContext {
            request_id: request_id.text(),
            client_ip,
            method: &parts.method,
            path: &path,
            query: parts.uri.query().map(std::borrow::Cow::Borrowed),
            headers: &mut headers,
            body: &mut buffered,
            route,
            service,
            consumers: &config.consumers,
            consumer: None,
            credential: None,
            slots: &mut state.slots,
            connection: state.connection,
            framing,
            path_regex,
            upstream: None,
            body_limit: None,
            trace,
        };
        state.reached_access = true;
        let answered = crate::phases::access(config, &mut state.ran, &mut ctx).await;
        state.consumer = ctx.consumer.take();
        state.trace = ctx.trace.take();
        if let Some((plugin, response)) = answered {
            state.outcome = Outcome::Answered { plugin };
            let (parts, body) = response.into_parts();
            let mut response = Response::from_parts(parts, body.map_err(|never| match never {}).boxed());
            self.finish_local(&mut response, request_id, started);
            return Err(response);
        }
        // `None`: the query goes upstream as the client sent it; `Some(q)`: a plugin replaced it.
        let replaced_query: Option<Option<String>> = match ctx.query.take() {
            Some(std::borrow::Cow::Borrowed(_)) => None,
            Some(std::borrow::Cow::Owned(q)) => Some(Some(q)),
            None => parts.uri.query().map(|_| None),
        };
        let changes = ctx.upstream.take();
        if let (Some(limit), Some(stream)) = (ctx.body_limit, streaming.as_mut()) {
            stream.limit(limit);
        }
        drop(ctx);
        // Room for the gateway's own headers (forwarded headers, request id, Via), so the map grows at most once
        // rather than rehashing as they are added. Not before the plugins: an authentication plugin may replace
        // the map with one that already has room (oauth2-introspection's answer).
        headers.reserve(12);
        let Some(service) = service else {
            return Err(self.fail(state, ProxyError::NoService, request_id, started));
        };
        if !service.enabled {
            return Err(self.fail(state, ProxyError::Unavailable, request_id, started));
        }

        let query = match &replaced_query {
            Some(replaced) => replaced.as_deref(),
            None => parts.uri.query(),
        };
        let (upstream_method, replaced_path, upstream_host) = match changes {
            Some(changes) => (changes.method, changes.path, changes.host),
            None => (None, None, None),
        };
        let upstream = match replaced_path {
            // Kong's `set_path`: the whole upstream path, the service's path not prepended.
            Some(mut replaced) => {
                if let Some(query) = query {
                    replaced.push('?');
                    replaced.push_str(query);
                }
                replaced
            }
            None => crate::router::upstream_path(service.path.as_deref(), route.strip_path, matched_part, &path, query),
        };
        let target = &service.target;
        // Origin form: the connection already goes to the service.
        let Ok(uri) = http::uri::PathAndQuery::try_from(upstream).map(http::Uri::from) else {
            return Err(self.fail(state, ProxyError::BadRequest, request_id, started));
        };
        if let Some(secrets) = config.plugins.serializes() {
            state.upstream_uri = Some(secrets.redact_target(uri.path_and_query().map_or("/", |p| p.as_str())));
        }
        if let Some(host) = upstream_host {
            headers.insert(header::HOST, host);
        } else if !route.preserve_host || host_header.is_empty() {
            let upstream_host_header = service.balanced.as_ref().and_then(|b| b.balancer.host_header.clone());
            headers.insert(header::HOST, upstream_host_header.unwrap_or_else(|| target.host.clone()));
        } else if target_host.replaces_header
            && let Some(value) = target_host.value.clone()
        {
            // The request target named the host (absolute form, HTTP/2's `:authority`): that is the Host.
            headers.insert(header::HOST, value);
        }
        self.forwarded_headers(&mut headers, conn, client_ip, &host, parts.uri.path(), route.strip_path, matched_part);
        headers.insert(names::X_KONG_REQUEST_ID, request_id.0.clone());

        let sent_at = Instant::now();
        let proxy_latency = sent_at - started;
        state.before_upstream = Some(proxy_latency);
        let has_body = buffered.as_ref().is_some_and(|b| !b.is_empty()) || streaming.is_some();
        let body = match (buffered, streaming) {
            (Some(bytes), _) if bytes.is_empty() => empty(),
            (Some(bytes), _) => full(bytes),
            (None, Some(stream)) => stream.boxed(),
            (None, None) => empty(),
        };
        let mut upstream_request = Request::new(body);
        *upstream_request.method_mut() = upstream_method.unwrap_or(parts.method);
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() = headers;
        let sequential = parts.version < http::Version::HTTP_2;
        let (hash, set_cookie) = match &service.balanced {
            Some(balanced) => balance::hash_request(
                balanced,
                state.consumer.as_ref().map(|c| c.id),
                client_ip,
                upstream_request.headers(),
                &path,
                query,
                path_regex,
            ),
            None => (None, None),
        };
        // TLS names the host the request is sent for (Kong's `proxy_ssl_name $upstream_host`): the service's,
        // unless the route preserved the client's or a plugin set another.
        let renamed;
        let key = match upstream_request.headers().get(header::HOST) {
            Some(sent) if service.pool_key.https && *sent != target.host => {
                let (name, _) = split_host_port(sent.to_str().unwrap_or_default(), 443);
                renamed = PoolKey { server_name: Some(Arc::from(name.as_ref())), ..service.pool_key.clone() };
                &renamed
            }
            _ => &service.pool_key,
        };
        let destination = send::Destination { service, key, hash };
        let result = self.send(conn, destination, upstream_request, has_body, sequential).await;
        let upstream_latency = sent_at.elapsed();
        state.upstream = Some(upstream_latency);
        if let Some(trace) = state.trace.as_mut() {
            record_upstream_call(trace, service, sent_at, &result);
        }
        let response = match result {
            Ok(r) => r,
            Err(error) => return Err(self.fail(state, error, request_id, started)),
        };

        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let h = &mut parts.headers;
        append_via(h);
        if !h.contains_key(header::SERVER) {
            h.insert(header::SERVER, HeaderValue::from_static(SERVER));
        }
        h.insert(names::X_KONG_UPSTREAM_LATENCY, millis(upstream_latency));
        h.insert(names::X_KONG_PROXY_LATENCY, millis(proxy_latency));
        h.insert(names::X_KONG_REQUEST_ID, request_id.0.clone());
        if let Some(cookie) = set_cookie {
            h.append(header::SET_COOKIE, cookie);
        }
        let body = IdleTimeoutBody::new(body, Duration::from_millis(service.read_timeout));
        Ok(Response::from_parts(parts, ResponseBody::Proxied(body)))
    }

    /// Kong's answer to an `https`-only route reached over HTTP: 426 with its message, or a redirect to the same
    /// request over HTTPS with no body. The redirect names `host` without the request's port, as Kong's does;
    /// `add_tls_port`: the host is the client's own, not a trusted proxy's `X-Forwarded-Host`, so the TLS
    /// listener's port follows it unless it is 443 (Kong leaves it out and so needs a TLS listener on 443).
    fn https_required(
        &self,
        code: u16,
        host: &str,
        add_tls_port: bool,
        uri: &http::Uri,
        request_id: &RequestId,
        started: Instant,
    ) -> Response<ProxyBody> {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::UPGRADE_REQUIRED);
        let mut response = if status.is_redirection() {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let host = if host.contains(':') { Cow::Owned(format!("[{host}]")) } else { Cow::Borrowed(host) };
            let location = match self.tls_port.load(Ordering::Relaxed) {
                port if add_tls_port && port != 0 && port != 443 => format!("https://{host}:{port}{path}"),
                _ => format!("https://{host}{path}"),
            };
            let mut response = Response::new(empty());
            put(response.headers_mut(), header::LOCATION, &location);
            response
        } else {
            let body = serde_json::json!({"message": "Please use HTTPS protocol", "request_id": request_id.text()})
                .to_string();
            let mut response = Response::new(full(body));
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("TLS/1.2, HTTP/1.1"));
            response
        };
        *response.status_mut() = status;
        self.finish_local(&mut response, request_id, started);
        response
    }
}

/// Certificates as the TLS listener serves them, by `certificates` id, with a digest of the PEM they were parsed from:
/// a configuration that leaves a certificate as it was reuses the parsed key rather than parsing it again.
type ParsedCertificates = HashMap<uuid::Uuid, ([u8; 32], gatehouse_net::tls::ServedCertificate)>;

/// The TLS listener's certificates by SNI, from the snapshot's `certificates`, parsing only those not in `parsed`
/// (which becomes the snapshot's). One that does not load (the control plane checked it, so only a snapshot written
/// by something else) is logged and left out, never its key.
fn sni_table(data: &ConfigSnapshot, parsed: &mut ParsedCertificates) -> gatehouse_net::tls::SniTable {
    use gatehouse_net::tls::{ServedCertificate, SniTable, certified_key};
    let mut table = SniTable::default();
    let mut kept = ParsedCertificates::with_capacity(data.certificates.len());
    for certificate in &data.certificates {
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [
            Some(certificate.cert.as_str()),
            Some(certificate.key.expose()),
            certificate.cert_alt.as_deref(),
            certificate.key_alt.as_ref().map(|k| k.expose()),
        ] {
            let part = part.unwrap_or_default();
            digest.update(&(part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        let digest: [u8; 32] = digest.finish().as_ref().try_into().unwrap_or([0; 32]);
        let served = match parsed.remove(&certificate.id) {
            Some((known, served)) if known == digest => served,
            _ => {
                let main = match certified_key(certificate.cert.as_bytes(), certificate.key.expose().as_bytes()) {
                    Ok(main) => main,
                    Err(e) => {
                        tracing::error!(certificate = %certificate.id, error = %e, "certificate not served");
                        continue;
                    }
                };
                let alt = match (&certificate.cert_alt, &certificate.key_alt) {
                    (Some(cert), Some(key)) => match certified_key(cert.as_bytes(), key.expose().as_bytes()) {
                        Ok(alt) => Some(Arc::new(alt)),
                        Err(e) => {
                            tracing::error!(certificate = %certificate.id, error = %e, "alternative certificate not served");
                            None
                        }
                    },
                    _ => None,
                };
                ServedCertificate { main: Arc::new(main), alt }
            }
        };
        for name in &certificate.snis {
            table.insert(name, served.clone());
        }
        kept.insert(certificate.id, (digest, served));
    }
    *parsed = kept;
    table
}

/// The `kong.balancer` span: Kong's attributes for the try (Gatehouse makes one; retries of connections that were
/// refused happen inside it).
fn record_upstream_call<B, E>(
    trace: &mut crate::trace::Trace,
    service: &crate::service::ServiceConfig,
    sent_at: Instant,
    result: &Result<Response<B>, E>,
) {
    use crate::trace::{attribute, int_value, string_value};
    let mut attributes = vec![
        attribute("try_count", int_value(1)),
        attribute("net.peer.name", string_value(service.target.authority.host())),
        attribute("net.peer.port", int_value(i64::from(service.target.authority.port_u16().unwrap_or(0)))),
    ];
    let error = match result {
        Ok(response) => {
            attributes.push(attribute("http.status_code", int_value(i64::from(response.status().as_u16()))));
            false
        }
        Err(_) => true,
    };
    trace.upstream_call(sent_at, Instant::now(), attributes, error);
}

/// Sets a header; a value that cannot be a header value (control characters) leaves it unset.
fn put(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Milliseconds as a header value; the usual single digits are static values, not a new buffer each time.
fn millis(elapsed: Duration) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match elapsed.as_millis() {
        n @ 0..=9 => HeaderValue::from_static(DIGITS[n as usize]),
        n => HeaderValue::from(u64::try_from(n).unwrap_or(u64::MAX)),
    }
}

/// `host[:port]` → (lower-case host, port); IPv6 literals keep their brackets off.
fn split_host_port(value: &str, default_port: u16) -> (Cow<'_, str>, u16) {
    let value = value.trim();
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        (host, after.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default_port))
    } else {
        match value.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p.parse().unwrap_or(default_port)),
            _ => (value, default_port),
        }
    };
    let lower = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    (lower, port)
}

mod balance;
mod forwarded;
#[cfg(test)]
pub(crate) mod harness;
mod ingress;
mod send;
mod serve;
#[cfg(test)]
mod tests;

use forwarded::*;
use ingress::*;
#[cfg(test)]
pub(crate) use serve::reusable_listener;
pub use serve::{TlsListener, serve, serve_with_tls};
