//! The proxy: hyper serving HTTP/1.1 and HTTP/2 (cleartext) to clients, Kong's routing and plugins, and pooled
//! keep-alive connections upstream.
//!
//! Per request: refuse ambiguous framing → match a route → run plugins' `access` → compose the upstream request
//! (path, `Host`, `X-Forwarded-*`, `Via`, request id; hop-by-hop headers dropped) → call the service within its
//! timeouts, retrying connection failures when the body can be sent again → pass the response back with Kong's
//! latency headers. Failures of the gateway itself answer Kong's JSON bodies.

use std::borrow::Cow;
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

use gatehouse_model::gateway::ConfigData;

use crate::body::{ClientBody, IdleTimeoutBody, ProxyBody, ResponseBody, caused_by_client_body, empty, full};
use crate::config::{CompileError, Compiled, compile};
use crate::error::{INSPECTED_BODY_LIMIT, ProxyError};
use crate::framing::{Verdicts, Watched};
use crate::plugins::{Flow, Plugin, RequestContext, ResponseContext};
use crate::router::{RequestFacts, normalize_path, upstream_path};
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

const HOP_BY_HOP_COUNT: usize = 8;
/// Hop-by-hop headers (RFC 9110 §7.6.1) and their historical companions: never forwarded. `Connection` first.
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

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
    /// Wall time for what plugins check against it (`exp` of cached introspection answers); tests move it.
    pub clock: gatehouse_model::SharedClock,
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

/// What the workers share: the configuration snapshot and the settings.
#[derive(Debug)]
pub struct Proxy {
    /// The configuration snapshot, one copy per worker, each compiled on its own: a request takes a reference to
    /// its worker's copy, and on two cores a reference count (or a shared value's) that both cores update on every
    /// request costs more than it seems (see `docs/architecture.md`, "Workers").
    configs: Box<[ArcSwap<Compiled>]>,
    settings: ProxySettings,
    plugins: crate::plugins::Shared,
}

/// What one worker thread owns, so requests never contend across cores: its idle upstream connections, its
/// request-id sequence and its spare timers; `index` is its configuration copy's.
#[derive(Debug)]
struct Worker {
    index: usize,
    pool: Pool,
    ids: RequestIds,
    sleeps: Sleeps,
}

/// A client connection, with what every request on it reuses. Requests reach the proxy and the worker through it,
/// so serving one touches only this connection's reference count, never one shared with the other cores.
#[derive(Debug)]
struct ClientConnection {
    proxy: Arc<Proxy>,
    worker: Arc<Worker>,
    peer: SocketAddr,
    local_port: u16,
    /// `local_port` as a header value (`X-Forwarded-Port`).
    local_port_value: HeaderValue,
    /// The peer's address as a header value (`X-Forwarded-For`, `X-Real-IP`).
    peer_value: HeaderValue,
    /// Whether the peer is a trusted proxy whose `X-Forwarded-*` headers are kept.
    trusted: bool,
    /// The upstream connection the last request used: an HTTP/1 client's next request goes out on it without
    /// touching the worker's pool.
    upstream: std::sync::Mutex<Option<(PoolKey, Sender)>>,
    /// Requests in flight on this connection, for the listener's idle deadlines and eviction.
    activity: Arc<Activity>,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        if let Some((key, sender)) = self.upstream.get_mut().ok().and_then(Option::take) {
            self.worker.pool.put(key, sender);
        }
    }
}

impl Proxy {
    pub fn new(settings: ProxySettings) -> Arc<Self> {
        let plugins = crate::plugins::Shared::new(
            settings.introspection_cache_entries,
            settings.introspection_cache_bytes,
            settings.clock.clone(),
        );
        let workers = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let configs = (0..workers).map(|_| ArcSwap::from_pointee(Compiled::default())).collect();
        Arc::new(Self { configs, settings, plugins })
    }

    /// Compiles a configuration (once per worker) and swaps it in; requests in flight keep the one they started
    /// with. Nothing is swapped unless it compiles.
    pub fn install(&self, data: &ConfigData) -> Result<(), CompileError> {
        let compiled = self.configs.iter().map(|_| compile(data, &self.plugins)).collect::<Result<Vec<_>, _>>()?;
        for (slot, config) in self.configs.iter().zip(compiled) {
            slot.store(Arc::new(config));
        }
        Ok(())
    }

    /// The configuration version every worker serves.
    pub fn version(&self) -> u64 {
        self.configs.iter().map(|c| c.load().version).min().unwrap_or_default()
    }

    /// Installs every configuration published on `updates`; a configuration that does not compile is refused and
    /// the previous one keeps serving.
    pub fn follow(self: &Arc<Self>, mut updates: watch::Receiver<Arc<ConfigData>>) {
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

    fn local_error(&self, error: ProxyError, request_id: &RequestId, started: Instant) -> Response<ProxyBody> {
        let (parts, body) = error.to_response(request_id.text()).into_parts();
        let mut response = Response::from_parts(parts, body.map_err(|never| match never {}).boxed());
        self.finish_local(&mut response, request_id, started);
        if matches!(error, ProxyError::BadRequest | ProxyError::RequestTimeout) {
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
    async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ClientConnection,
        ambiguous_framing: bool,
    ) -> Response<ResponseBody> {
        match self.forward(req, conn, ambiguous_framing).await {
            Ok(proxied) => proxied,
            Err(local) => local.map(ResponseBody::Local),
        }
    }

    /// `Err` holds a response the gateway made itself (an error, a plugin's answer, a redirect).
    async fn forward(
        &self,
        req: Request<Incoming>,
        conn: &ClientConnection,
        ambiguous_framing: bool,
    ) -> Result<Response<ResponseBody>, Response<ProxyBody>> {
        let started = Instant::now();
        let request_id = conn.worker.ids.next();
        let local_port = conn.local_port;
        // hyper already refuses conflicting lengths and unknown codings; a request with both framings is either
        // broken or an attempt to desynchronise a proxy chain, so it is never forwarded.
        if ambiguous_framing
            || (req.headers().contains_key(header::TRANSFER_ENCODING)
                && req.headers().contains_key(header::CONTENT_LENGTH))
        {
            return Err(self.local_error(ProxyError::BadRequest, &request_id, started));
        }
        let config = self.configs[conn.worker.index].load_full();
        let (parts, body) = req.into_parts();
        let target_host = match check_head(&parts) {
            Ok(host) => host,
            Err(error) => return Err(self.local_error(error, &request_id, started)),
        };
        let Some(path) = normalize_path(parts.uri.path()) else {
            return Err(self.local_error(ProxyError::BadRequest, &request_id, started));
        };
        // `check_head` allowed only visible ASCII in the host.
        let host_header = target_host.value.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
        let (host, port) = split_host_port(host_header, local_port);
        let facts =
            RequestFacts { method: parts.method.as_str(), host: &host, port, path: &path, headers: &parts.headers };
        let Some(matched) = config.router.find(&facts) else {
            return Err(self.local_error(ProxyError::NoRoute, &request_id, started));
        };
        let route = matched.route;
        let matched_part = matched.matched;
        if !route.protocols.iter().any(|p| matches!(p.as_str(), "http" | "grpc")) {
            return Err(self.https_required(
                route.https_redirect_status_code,
                host_header,
                &parts.uri,
                &request_id,
                started,
            ));
        }
        let service = route.service_id.and_then(|id| config.services.get(&id));

        let mut headers = parts.headers;
        let client_ip = self.client_address(conn, &headers);
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
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
                    Ok(Err(_)) => return Err(self.local_error(ProxyError::BadRequest, &request_id, started)),
                    Err(_) => return Err(self.local_error(ProxyError::RequestTimeout, &request_id, started)),
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
                Err(error) => return Err(self.local_error(error, &request_id, started)),
            },
        }

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
            config: &config,
            consumer: None,
            credential: None,
        };
        // The plugins whose `access` ran, for the later phases: borrowed from `config`, and inline for the few
        // plugins a route has, so no allocation or reference count per request.
        let mut ran: SmallVec<[&dyn Plugin; 4]> = SmallVec::new();
        for i in 0..config.plugins.len() {
            let consumer = ctx.consumer.as_ref().map(|c| c.id);
            let Some(plugin) = config.plugins.resolve(i, route.id, route.service_id, consumer) else { continue };
            ran.push(plugin.as_ref());
            if let Flow::Respond(response) = plugin.access(&mut ctx).await {
                let (parts, body) = response.into_parts();
                let mut response = Response::from_parts(parts, body.map_err(|never| match never {}).boxed());
                self.finish_local(&mut response, &request_id, started);
                return Err(response);
            }
        }
        // `None`: the query goes upstream as the client sent it; `Some(q)`: a plugin replaced it.
        let replaced_query: Option<Option<String>> = match ctx.query.take() {
            Some(std::borrow::Cow::Borrowed(_)) => None,
            Some(std::borrow::Cow::Owned(q)) => Some(Some(q)),
            None => parts.uri.query().map(|_| None),
        };
        drop(ctx);
        // Room for the gateway's own headers (forwarded headers, request id, Via), so the map grows at most once
        // rather than rehashing as they are added. Not before the plugins: an authentication plugin may replace
        // the map with one that already has room (oauth2-introspection's answer).
        headers.reserve(12);
        let Some(service) = service else {
            return Err(self.local_error(ProxyError::NoService, &request_id, started));
        };
        if !service.enabled {
            return Err(self.local_error(ProxyError::Unavailable, &request_id, started));
        }

        let query = match &replaced_query {
            Some(replaced) => replaced.as_deref(),
            None => parts.uri.query(),
        };
        let upstream = upstream_path(service.path.as_deref(), route.strip_path, matched_part, &path, query);
        let target = &service.target;
        // Origin form: the connection already goes to the service.
        let Ok(uri) = http::uri::PathAndQuery::try_from(upstream).map(http::Uri::from) else {
            return Err(self.local_error(ProxyError::BadRequest, &request_id, started));
        };
        if !route.preserve_host || host_header.is_empty() {
            headers.insert(header::HOST, target.host.clone());
        } else if target_host.replaces_header
            && let Some(value) = target_host.value.clone()
        {
            // The request target named the host (absolute form, HTTP/2's `:authority`): that is the Host.
            headers.insert(header::HOST, value);
        }
        self.forwarded_headers(
            &mut headers,
            conn,
            client_ip,
            &host,
            local_port,
            parts.uri.path(),
            route.strip_path,
            matched_part,
        );
        headers.insert(names::X_KONG_REQUEST_ID, request_id.0.clone());

        let sent_at = Instant::now();
        let proxy_latency = sent_at - started;
        let has_body = buffered.as_ref().is_some_and(|b| !b.is_empty()) || streaming.is_some();
        let body = match (buffered, streaming) {
            (Some(bytes), _) if bytes.is_empty() => empty(),
            (Some(bytes), _) => full(bytes),
            (None, Some(stream)) => stream.boxed(),
            (None, None) => empty(),
        };
        let mut upstream_request = Request::new(body);
        *upstream_request.method_mut() = parts.method;
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() = headers;
        let sequential = parts.version < http::Version::HTTP_2;
        let result = self.send(conn, service, upstream_request, has_body, sequential).await;
        let upstream_latency = sent_at.elapsed();
        let response = match result {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(request_id = request_id.text(), service = %service.id, ?error, "upstream failed");
                return Err(self.local_error(error, &request_id, started));
            }
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
        let mut rctx =
            ResponseContext { request_id: request_id.text(), status: parts.status, headers: &mut parts.headers };
        for plugin in &ran {
            plugin.response(&mut rctx);
        }
        for plugin in &ran {
            plugin.log(request_id.text(), parts.status);
        }
        let body = IdleTimeoutBody::new(body, Duration::from_millis(service.read_timeout));
        Ok(Response::from_parts(parts, ResponseBody::Proxied(body)))
    }

    /// Calls the service. A request goes out only once a connection is established, so a failure to connect
    /// (retried up to the service's `retries`) or a kept-alive connection found closed never sends anything
    /// twice, streamed bodies included; once sent, a request is never repeated. `sequential`: the client is
    /// HTTP/1, so its connection keeps the upstream connection for its next request.
    async fn send(
        &self,
        conn: &ClientConnection,
        service: &crate::config::ServiceConfig,
        mut request: Request<ProxyBody>,
        has_body: bool,
        sequential: bool,
    ) -> Result<Response<Incoming>, ProxyError> {
        // Kong's read and write timeouts are between two reads or writes; waiting for the response head covers
        // the write of the request and the first read.
        let head_timeout =
            Duration::from_millis(service.read_timeout + if has_body { service.write_timeout } else { 0 });
        let key = &service.pool_key;
        let mut failed_connects = 0;
        loop {
            let (held_key, mut sender) = match self.checkout(conn, key, sequential) {
                Some(reused) => reused,
                None => match conn.worker.pool.connect(key).await {
                    Ok(fresh) => (key.clone(), fresh),
                    Err(error) => {
                        failed_connects += 1;
                        if failed_connects > service.retries {
                            return Err(error);
                        }
                        continue;
                    }
                },
            };
            match conn.worker.sleeps.timeout(head_timeout, sender.try_send_request(request)).await {
                Ok(Ok(response)) => {
                    self.check_in(conn, held_key, sender, sequential);
                    return Ok(response);
                }
                Ok(Err(mut error)) => match error.take_message() {
                    // The connection was closed before the request went out: try another.
                    Some(unsent) => request = unsent,
                    None => {
                        tracing::debug!(error = %error.error(), "upstream request failed");
                        return Err(classify_send_error(error.error()));
                    }
                },
                // Dropping the request future closes that connection.
                Err(_) => return Err(ProxyError::GatewayTimeout),
            }
        }
    }

    /// A kept-alive connection to `key` that can take a request, with its key: the client connection's own
    /// (HTTP/1 clients; its key moves along rather than being cloned), else one from the worker's pool.
    fn checkout(&self, conn: &ClientConnection, key: &PoolKey, sequential: bool) -> Option<(PoolKey, Sender)> {
        if sequential {
            let kept = conn.upstream.lock().ok().and_then(|mut slot| slot.take());
            if let Some((kept_key, sender)) = kept {
                // The previous response has ended (the client sent this request after it), so the connection is
                // normally ready; if it is not yet, the pool holds it until it is, and this request looks further.
                if kept_key == *key && sender.is_ready() {
                    return Some((kept_key, sender));
                }
                conn.worker.pool.put(kept_key, sender);
            }
        }
        conn.worker.pool.take(key).map(|sender| (key.clone(), sender))
    }

    fn check_in(&self, conn: &ClientConnection, key: PoolKey, sender: Sender, sequential: bool) {
        if sequential && let Ok(mut slot) = conn.upstream.lock() {
            if let Some((old_key, old)) = slot.replace((key, sender)) {
                conn.worker.pool.put(old_key, old);
            }
        } else {
            conn.worker.pool.put(key, sender);
        }
    }

    fn client_address(&self, conn: &ClientConnection, headers: &HeaderMap) -> IpAddr {
        let peer = conn.peer.ip();
        if !conn.trusted {
            return peer;
        }
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',').map(str::trim).filter_map(|s| s.parse::<IpAddr>().ok()).rev().find(|ip| !self.trusted(*ip))
            })
            .unwrap_or(peer)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.settings.trusted_ips.iter().any(|n| n.contains(&ip))
    }

    /// `host` is the client's `Host` without its port, lower-cased.
    #[allow(clippy::too_many_arguments)]
    fn forwarded_headers(
        &self,
        headers: &mut HeaderMap,
        conn: &ClientConnection,
        client: IpAddr,
        host: &str,
        port: u16,
        path: &str,
        strip_path: bool,
        matched: Option<&str>,
    ) {
        // From an untrusted peer, every X-Forwarded-* value is the client's claim and is replaced.
        let trusted = conn.trusted;
        let keep = |h: &HeaderMap, name: &HeaderName| trusted && h.contains_key(name);
        let appended = match headers.get(&names::X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(existing) if trusted => HeaderValue::from_str(&format!("{existing}, {}", conn.peer.ip())).ok(),
            _ => None,
        };
        headers.insert(names::X_FORWARDED_FOR, appended.unwrap_or_else(|| conn.peer_value.clone()));
        if !keep(headers, &names::X_FORWARDED_PROTO) {
            headers.insert(names::X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        if !keep(headers, &names::X_FORWARDED_HOST) {
            put(headers, names::X_FORWARDED_HOST, host);
        }
        if !keep(headers, &names::X_FORWARDED_PORT) {
            let value = if port == conn.local_port { conn.local_port_value.clone() } else { HeaderValue::from(port) };
            headers.insert(names::X_FORWARDED_PORT, value);
        }
        if !keep(headers, &names::X_FORWARDED_PATH) {
            put(headers, names::X_FORWARDED_PATH, path);
        }
        match matched {
            Some(prefix) if strip_path && prefix != "/" && !keep(headers, &names::X_FORWARDED_PREFIX) => {
                put(headers, names::X_FORWARDED_PREFIX, prefix);
            }
            _ if !keep(headers, &names::X_FORWARDED_PREFIX) => {
                headers.remove(&names::X_FORWARDED_PREFIX);
            }
            _ => {}
        }
        if client == conn.peer.ip() {
            headers.insert(names::X_REAL_IP, conn.peer_value.clone());
        } else {
            put(headers, names::X_REAL_IP, &client.to_string());
        }
        append_via(headers);
    }

    fn https_required(
        &self,
        code: u16,
        host: &str,
        uri: &http::Uri,
        request_id: &RequestId,
        started: Instant,
    ) -> Response<ProxyBody> {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::UPGRADE_REQUIRED);
        let body =
            serde_json::json!({"message": "Please use HTTPS protocol", "request_id": request_id.text()}).to_string();
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        if status.is_redirection() {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            put(response.headers_mut(), header::LOCATION, &format!("https://{host}{path}"));
        } else {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("TLS/1.2, HTTP/1.1"));
        }
        self.finish_local(&mut response, request_id, started);
        response
    }
}

/// Sets a header; a value that cannot be a header value (control characters) leaves it unset.
fn put(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The host a request is for, from [`check_head`].
#[derive(Debug)]
struct TargetHost {
    value: Option<HeaderValue>,
    /// The request target carried the host and the `Host` header (if any) differs or is missing.
    replaces_header: bool,
}

/// Refuses what nginx (and so Kong) refuses before routing, and finds the request's host (RFC 9112 §3.2): the
/// request target's authority when it has one, else the one `Host` header, which an HTTP/1.1 request must
/// have. Two `Host` or `Authorization` headers are refused too: a proxy
/// and its upstream could each read a different one.
fn check_head(parts: &http::request::Parts) -> Result<TargetHost, ProxyError> {
    check_method(&parts.method)?;
    let headers = &parts.headers;
    // Only a map with some name twice can have two of these; most have none, and the counts are free.
    if headers.len() != headers.keys_len()
        && (headers.get_all(header::HOST).iter().nth(1).is_some()
            || headers.get_all(header::AUTHORIZATION).iter().nth(1).is_some())
    {
        return Err(ProxyError::BadRequest);
    }
    let host = headers.get(header::HOST);
    if host.is_some_and(|h| !valid_host(h.as_bytes())) {
        return Err(ProxyError::BadRequest);
    }
    let target = parts.uri.authority().filter(|_| parts.version < http::Version::HTTP_2 || host.is_none());
    match target {
        // HTTP/1's absolute form names the host, and a proxy must prefer it to `Host` (RFC 9112 §3.2.2). An
        // HTTP/2 request's `:authority` counts only without a `Host` header, which nginx (so Kong) routes on.
        Some(authority) => {
            let named = authority.as_str();
            if !valid_host(named.as_bytes()) {
                return Err(ProxyError::BadRequest);
            }
            let differs = host.is_none_or(|h| !h.as_bytes().eq_ignore_ascii_case(named.as_bytes()));
            let value = HeaderValue::from_str(named).map_err(|_| ProxyError::BadRequest)?;
            Ok(TargetHost { value: Some(value), replaces_header: differs })
        }
        None if host.is_none() && parts.version == http::Version::HTTP_11 => Err(ProxyError::BadRequest),
        None => Ok(TargetHost { value: host.cloned(), replaces_header: false }),
    }
}

/// nginx reads a method as upper-case letters, `_` and `-` (so `get` is 400) and refuses `CONNECT` and
/// `TRACE` with 405.
fn check_method(method: &http::Method) -> Result<(), ProxyError> {
    use http::Method;
    match *method {
        Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::HEAD | Method::OPTIONS | Method::PATCH => {
            Ok(())
        }
        Method::CONNECT | Method::TRACE => Err(ProxyError::MethodNotAllowed),
        _ if method.as_str().bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-') => Ok(()),
        _ => Err(ProxyError::BadRequest),
    }
}

/// A host and optional port as RFC 3986 allows them (reg-name, IP literal): no `/`, `@`, space or control
/// character that could make two parsers read two hosts. Empty is allowed (RFC 9110 §7.2).
fn valid_host(host: &[u8]) -> bool {
    host.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

/// The bytes [`valid_host`] allows, as a table: every request's host goes through it.
const HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=%:[]";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// Whether a (lower-case, dash-spelled) header name is one the gateway sets or vouches for.
fn owned_by_gateway(name: &str) -> bool {
    ["x-consumer-", "x-credential-", "x-forwarded-", "x-kong-"].iter().any(|prefix| name.starts_with(prefix))
        || matches!(name, "x-anonymous-consumer" | "x-real-ip" | "via" | "forwarded")
}

/// Drops header names with `_` (unless allowed, and then still those that spell a name the gateway owns once
/// `_` reads as `-`: CGI-style upstreams merge `X_Consumer_ID` with `X-Consumer-ID`), and `Forwarded` from a
/// peer that is not a trusted proxy, whose `X-Forwarded-*` are replaced too.
fn drop_unsafe_names(headers: &mut HeaderMap, allow_underscores: bool, trusted: bool) {
    let mut doomed: SmallVec<[HeaderName; 2]> = SmallVec::new();
    for name in headers.keys() {
        let text = name.as_str();
        // A plain loop: header names are short, and `str::contains` costs more to set up than to run on them.
        let drop = if text.bytes().any(|b| b == b'_') {
            !allow_underscores || owned_by_gateway(&text.replace('_', "-"))
        } else {
            !trusted && name == names::FORWARDED
        };
        if drop {
            doomed.push(name.clone());
        }
    }
    if doomed.is_empty() {
        return;
    }
    for name in doomed {
        tracing::debug!(header = name.as_str(), "dropped a request header");
        headers.remove(name);
    }
}

/// What [`read_ahead`] found.
enum ReadAhead {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// The body is larger: what was read, and the rest.
    Partial(Bytes, Incoming),
}

/// Reads a body of unknown length until it ends or passes [`INSPECTED_BODY_LIMIT`]; a client that pauses
/// longer than `timeout` gets 408, a broken body (malformed chunks, a reset) 400, and nothing goes upstream.
async fn read_ahead(mut body: Incoming, sleeps: &Sleeps, timeout: Duration) -> Result<ReadAhead, ProxyError> {
    let mut read = bytes::BytesMut::new();
    while !body.is_end_stream() {
        match sleeps.timeout(timeout, body.frame()).await {
            Err(_) => return Err(ProxyError::RequestTimeout),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(ProxyError::BadRequest),
            // Request trailers are not forwarded (nor are they by nginx).
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                    if read.len() > INSPECTED_BODY_LIMIT {
                        return Ok(ReadAhead::Partial(read.freeze(), body));
                    }
                }
            }
        }
    }
    Ok(ReadAhead::Whole(read.freeze()))
}

/// Milliseconds as a header value; the usual single digits are static values, not a new buffer each time.
fn millis(elapsed: Duration) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match elapsed.as_millis() {
        n @ 0..=9 => HeaderValue::from_static(DIGITS[n as usize]),
        n => HeaderValue::from(u64::try_from(n).unwrap_or(u64::MAX)),
    }
}

/// Adds this gateway to `Via`, after any proxies already listed.
fn append_via(headers: &mut HeaderMap) {
    let appended = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(existing) => HeaderValue::from_str(&format!("{existing}, {VIA}")).ok(),
        None => None,
    };
    headers.insert(header::VIA, appended.unwrap_or(HeaderValue::from_static(VIA)));
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present finds which of the eight to remove; most messages carry none of them, or
    // only `Connection: keep-alive` (every nginx response), and a removal is a hash lookup.
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[i] = true;
        }
    }
    // `Connection` (HOP_BY_HOP[0]) may name further headers; options that name one of the eight (`keep-alive`,
    // `upgrade`, `te`, ...) need no lookup of their own.
    if present[0] {
        let names_others = headers.get_all(header::CONNECTION).iter().any(|value| {
            value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii).any(|option| {
                !option.is_empty() && !HOP_BY_HOP.iter().any(|hop| option.eq_ignore_ascii_case(hop.as_str().as_bytes()))
            })
        });
        if names_others {
            let listed: Vec<HeaderName> = headers
                .get_all(header::CONNECTION)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
                .collect();
            // The message's own framing and target are not the sender's to withdraw: a `preserve_host` route would
            // otherwise send a request with no `Host`.
            for name in listed.iter().filter(|name| **name != header::HOST && **name != header::CONTENT_LENGTH) {
                headers.remove(name);
            }
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, present)| *present) {
        headers.remove(name);
    }
}

/// Who failed when a request could not be completed upstream: the client's body (400, or 408 when it stalled),
/// or the upstream (504 when it timed out, else 502).
fn classify_send_error(error: &(dyn std::error::Error + 'static)) -> ProxyError {
    match (caused_by_client_body(error), is_timeout(error)) {
        (true, true) => ProxyError::RequestTimeout,
        (true, false) => ProxyError::BadRequest,
        (false, true) => ProxyError::GatewayTimeout,
        (false, false) => ProxyError::BadGateway,
    }
}

pub(crate) fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<crate::body::IdleTimeout>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if err.to_string().contains("timed out") {
            return true;
        }
        source = err.source();
    }
    false
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

/// Serves the proxy on `listener` until `shutdown` resolves, then lets open requests finish (30 s at most).
///
/// Like nginx's workers, the proxy runs one thread per core (`ProxySettings::workers`), each with a
/// single-threaded runtime, its own accept loop and its own upstream pools, so a request is read, routed,
/// forwarded and answered without changing threads. In a bare hyper proxy on two cores this took about a sixth less
/// CPU per request than tokio's work-stealing runtime (see `docs/architecture.md`). Worker 0 accepts on `listener`; the
/// others bind the same address with `SO_REUSEPORT` (the listener must have been bound with it, as
/// `runtime::listener::bind_reusable` does) and the kernel spreads new connections across them.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let workers = proxy.configs.len();
    let mut sockets = vec![listener.into_std()?];
    for _ in 1..workers {
        sockets.push(reuse_port(addr)?);
    }
    let (stop, stopped) = watch::channel(false);
    let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
    // One gate for all workers: the caps are the listener's.
    let gate = Gate::new("proxy", proxy.settings.limits, proxy.settings.trusted_ips.clone());
    let sweeping = CancellationToken::new();
    tokio::spawn(gate.clone().sweep_until(sweeping.clone().cancelled_owned()));
    for (index, socket) in sockets.into_iter().enumerate() {
        let (proxy, stopped, done, gate) = (proxy.clone(), stopped.clone(), done.clone(), gate.clone());
        std::thread::Builder::new().name(format!("gatehouse-proxy-{index}")).spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| runtime.block_on(serve_worker(proxy, index, socket, gate, stopped)));
            let _ = done.send(result);
        })?;
    }
    drop(done);
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => {}
        // A worker that ends on its own failed to start.
        Some(result) = finished.recv() => {
            let _ = stop.send(true);
            result?;
        }
    }
    let _ = stop.send(true);
    while let Some(result) = finished.recv().await {
        result?;
    }
    sweeping.cancel();
    Ok(())
}

fn reuse_port(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// One worker: accepts on its socket and serves each connection on its own runtime until told to stop. Every
/// connection goes through the listener's gate and is closed when it stays silent or idle too long.
async fn serve_worker(
    proxy: Arc<Proxy>,
    index: usize,
    socket: std::net::TcpListener,
    gate: Arc<Gate>,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(socket)?;
    let local_port = listener.local_addr()?.port();
    let sleeps = Sleeps::default();
    let worker = Arc::new(Worker { index, pool: Pool::default(), ids: RequestIds::new(), sleeps: sleeps.clone() });
    let limits = proxy.settings.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // hyper asks for a new header-read timer for every request on a keep-alive connection: reused ones cost
        // less (see `timer.rs`).
        .timer(sleeps)
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        // One flat buffer per write rather than a vectored write of head and body: API responses are small, and
        // copying their body behind the head cost less than the second iovec (bench/README.md, "writev"). Large
        // bodies pay one copy into the buffer, in pieces of at most `max_buf_size`.
        .writev(false)
        .max_headers(crate::framing::MAX_HEADER_LINES + 28);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(64 * 1024);
    let connections = TaskTracker::new();
    let mut errors = AcceptErrors::new("proxy");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        errors.failed(&e, &gate).await;
                        continue;
                    }
                };
                // Refused: dropping the stream closes it at once, rather than leaving it to fill the backlog.
                let Some(admission) = gate.admit(peer.ip()) else { continue };
                let _ = stream.set_nodelay(true);
                let conn = Arc::new(ClientConnection {
                    proxy: proxy.clone(),
                    worker: worker.clone(),
                    local_port_value: HeaderValue::from(local_port),
                    upstream: std::sync::Mutex::new(None),
                    peer,
                    local_port,
                    peer_value: HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("")),
                    trusted: proxy.trusted(peer.ip()),
                    activity: admission.activity().clone(),
                });
                let verdicts: Verdicts = Default::default();
                let stream = Watched::new(stream, verdicts.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let conn = conn.clone();
                    // HTTP/1 requests on a connection are handled in order, so verdicts pair up with them.
                    let ambiguous = req.version() < http::Version::HTTP_2
                        && verdicts.lock().ok().and_then(|mut v| v.pop_front()).unwrap_or(false);
                    async move {
                        // In flight until its response body has been sent.
                        let guard = conn.activity.begin();
                        let response = conn.proxy.handle(req, &conn, ambiguous).await;
                        Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guard)))
                    }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                connections.spawn(async move {
                    gatehouse_net::drive(connection, admission).await;
                });
                // Let connection tasks run between accepts: under a flood, the ones evicted to make room close
                // their sockets before more are taken (see `Gate`).
                tokio::task::yield_now().await;
            }
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    // The other workers share the gate: whichever stops first tells every connection; telling twice is harmless.
    gate.shut_down();
    connections.close();
    connections.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_reg_names_or_ip_literals() {
        for ok in ["example.com", "Example.COM:8000", "[::1]:9", "127.0.0.1", "", "a_b-c~d%41", "x!$&'()*+,;=y"] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in ["a/b", "user@host", "a b", "a\tb", "h\u{7f}", "h\u{e9}", "a?b", "a#b", "a\\b", "<h>", "\"h\""] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn hosts_ports_and_authorities() {
        assert_eq!(split_host_port("Example.com:8000", 80), ("example.com".into(), 8000));
        assert_eq!(split_host_port("example.com", 8000), ("example.com".into(), 8000));
        assert_eq!(split_host_port("[::1]:9", 80), ("::1".into(), 9));
        assert!(matches!(split_host_port("example.com:8000", 80).0, Cow::Borrowed(_)), "no copy when lower-case");
        let authority = |host, port, protocol| crate::config::authority(host, port, protocol);
        assert_eq!(authority("httpbin.konghq.com", 80, "http"), "httpbin.konghq.com");
        assert_eq!(authority("h", 8443, "https"), "h:8443");
        assert_eq!(authority("::1", 80, "http"), "[::1]");
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));

        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.append(header::CONNECTION, HeaderValue::from_static("close, Upgrade"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("close", HeaderValue::from_static("named by an option"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::VIA, HeaderValue::from_static("1.1 a"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), [header::VIA], "every Connection value, every option, the eight");

        // Only options that are among the eight (nginx's `Connection: keep-alive`): the eight go, the rest stays.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive , TE"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), [header::CONTENT_TYPE]);

        let mut h = HeaderMap::new();
        h.insert(header::VIA, HeaderValue::from_static("1.1 a"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "nothing to strip");

        // Framing and target stay whatever `Connection` says.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("host, content-length, x-hop"));
        h.insert(header::HOST, HeaderValue::from_static("api.example"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.len() == 2 && h.contains_key(header::HOST) && h.contains_key(header::CONTENT_LENGTH), "{h:?}");
    }

    #[test]
    fn request_ids_are_unique_and_kong_shaped() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        let (a, b) = (a.text().to_owned(), b.text().to_owned());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // Consecutive: the counter half counts up by one.
        let counter = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert_eq!(counter(&b), counter(&a).wrapping_add(1));
        assert_eq!(a[..16], b[..16]);
    }

    #[test]
    fn hex_digits_are_zero_padded() {
        let mut out = [0u8; 16];
        hex_digits(0xab, &mut out);
        assert_eq!(&out, b"00000000000000ab");
        hex_digits(u64::MAX, &mut out);
        assert_eq!(&out, b"ffffffffffffffff");
    }

    /// A one-worker proxy with no routes on a loopback port, until the returned sender is dropped.
    async fn start_proxy(client_header_timeout: Duration) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let limits = ConnectionLimits { header_timeout: client_header_timeout, ..ConnectionLimits::default() };
        let settings = ProxySettings { workers: 1, limits, ..Default::default() };
        let listener = TcpListener::from_std(reuse_port(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(Proxy::new(settings), listener, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads one response with a `Content-Length` and returns its status line.
    async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a response head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("a content-length");
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside a body");
            buf.extend_from_slice(&chunk[..n]);
        }
        head.lines().next().unwrap_or_default().to_owned()
    }

    /// hyper's header timer comes from the worker's reused timers (`timer.rs`): a kept-alive connection whose
    /// pauses are each shorter than the timeout stays open however long it lives, and a head that stops half-way
    /// is cut off once the timeout passes.
    ///
    /// The proxy's workers run their own runtimes on their own threads, so tokio's paused time cannot reach their
    /// timers: the margins are what keep this exact on a loaded machine. Each pause is a tenth of the timeout (a
    /// stall would have to stretch one tenfold), and the lower bound is taken before connecting, since the
    /// server's timer may start as soon as it accepts (before, it was taken after `connect` returned, which the
    /// accept can precede).
    #[tokio::test]
    async fn the_client_header_timeout_counts_each_wait_on_its_own() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let timeout = Duration::from_secs(2);
        let pause = timeout / 10;
        let (addr, _stop) = start_proxy(timeout).await;

        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        for _ in 0..12 {
            kept.write_all(b"GET /none HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
            assert!(read_response(&mut kept).await.starts_with("http/1.1 404"));
            tokio::time::sleep(pause).await;
        }
        // 12 waits of a tenth of the timeout: more than the timeout in all, and the connection still serves.
        kept.write_all(b"GET /none HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
        assert!(read_response(&mut kept).await.starts_with("http/1.1 404"));

        let started = Instant::now();
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /none HTTP/1.1\r\nHost: exa").await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a half-sent head is cut off");
        let waited = started.elapsed();
        assert!(waited >= timeout, "not before the timeout: cut off after {waited:?}");
    }

    #[test]
    fn latency_values() {
        assert_eq!(millis(Duration::from_micros(999)), "0");
        assert_eq!(millis(Duration::from_millis(7)), "7");
        assert_eq!(millis(Duration::from_millis(10)), "10");
        assert_eq!(millis(Duration::from_secs(3)), "3000");
    }
}
