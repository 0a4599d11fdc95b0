//! The proxy: hyper serving HTTP/1.1 and HTTP/2 (cleartext) to clients, Kong's routing and plugins, and pooled
//! keep-alive connections upstream.
//!
//! Per request: refuse ambiguous framing → match a route → run plugins' `access` → compose the upstream request
//! (path, `Host`, `X-Forwarded-*`, `Via`, request id; hop-by-hop headers dropped) → call the service within its
//! timeouts, retrying connection failures when the body can be sent again → pass the response back with Kong's
//! latency headers. Failures of the gateway itself answer Kong's JSON bodies.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::watch;

use gatehouse_model::gateway::ConfigData;

use crate::body::{IdleTimeoutBody, ProxyBody, empty, full};
use crate::config::{CompileError, Compiled, compile};
use crate::error::{INSPECTED_BODY_LIMIT, ProxyError};
use crate::framing::{Verdicts, Watched};
use crate::plugins::{Flow, Plugin, RequestContext, ResponseContext};
use crate::router::{RequestFacts, normalize_path, upstream_path};
use crate::upstream::Clients;

pub const SERVER: &str = concat!("gatehouse/", env!("CARGO_PKG_VERSION"));
const VIA: &str = concat!("1.1 gatehouse/", env!("CARGO_PKG_VERSION"));
/// How long a client may take to send a body the proxy reads whole.
const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Hop-by-hop headers (RFC 9110 §7.6.1) and their historical companions: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
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

    fn next(&self) -> String {
        format!("{:016x}{:016x}", self.prefix, self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Debug)]
pub struct Proxy {
    config: ArcSwap<Compiled>,
    clients: Clients,
    ids: RequestIds,
    settings: ProxySettings,
}

impl Proxy {
    pub fn new(settings: ProxySettings) -> Arc<Self> {
        Arc::new(Self {
            config: ArcSwap::from_pointee(Compiled::default()),
            clients: Clients::default(),
            ids: RequestIds::new(),
            settings,
        })
    }

    /// Compiles a configuration and swaps it in; requests in flight keep the one they started with.
    pub fn install(&self, data: &ConfigData) -> Result<(), CompileError> {
        let compiled = compile(data)?;
        self.config.store(Arc::new(compiled));
        Ok(())
    }

    pub fn version(&self) -> u64 {
        self.config.load().version
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

    fn local_error(&self, error: ProxyError, request_id: &str, started: Instant) -> Response<ProxyBody> {
        let (parts, body) = error.to_response(request_id).into_parts();
        let mut response = Response::from_parts(parts, body.map_err(|never| match never {}).boxed());
        self.finish_local(&mut response, request_id, started);
        if error == ProxyError::BadRequest {
            // After a framing error the connection's byte stream cannot be trusted: close it.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// Headers on responses the gateway produced itself (Kong's `X-Kong-Response-Latency`).
    fn finish_local(&self, response: &mut Response<ProxyBody>, request_id: &str, started: Instant) {
        let h = response.headers_mut();
        h.insert(header::SERVER, HeaderValue::from_static(SERVER));
        insert_str(h, "x-kong-request-id", request_id);
        insert_str(h, "x-kong-response-latency", &started.elapsed().as_millis().to_string());
    }

    /// Handles one request. `ambiguous_framing` is the connection watcher's verdict that its head carried both
    /// `Content-Length` and `Transfer-Encoding` (hyper drops the former before the request gets here).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        local_port: u16,
        ambiguous_framing: bool,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let request_id = self.ids.next();
        // hyper already refuses conflicting lengths and unknown codings; a request with both framings is either
        // broken or an attempt to desynchronise a proxy chain, so it is never forwarded.
        if ambiguous_framing
            || (req.headers().contains_key(header::TRANSFER_ENCODING)
                && req.headers().contains_key(header::CONTENT_LENGTH))
        {
            return self.local_error(ProxyError::BadRequest, &request_id, started);
        }
        let config = self.config.load_full();
        let (parts, body) = req.into_parts();
        let Some(path) = normalize_path(parts.uri.path()) else {
            return self.local_error(ProxyError::BadRequest, &request_id, started);
        };
        let host_header = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let (host, port) = split_host_port(&host_header, local_port);
        let facts =
            RequestFacts { method: parts.method.as_str(), host: &host, port, path: &path, headers: &parts.headers };
        let Some(matched) = config.router.find(&facts) else {
            return self.local_error(ProxyError::NoRoute, &request_id, started);
        };
        let route = matched.route.clone();
        let matched_part = matched.matched.map(str::to_owned);
        if !route.protocols.iter().any(|p| matches!(p.as_str(), "http" | "grpc")) {
            return self.https_required(
                route.https_redirect_status_code,
                &host_header,
                &parts.uri,
                &request_id,
                started,
            );
        }
        let service = route.service_id.and_then(|id| config.services.get(&id).cloned());

        let mut headers = parts.headers;
        let client_ip = self.client_address(peer.ip(), &headers);
        // Small bodies are read whole: plugins can inspect them, and a retry can send them again. Larger or
        // chunked bodies stream through untouched.
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        let mut buffered: Option<Bytes> = None;
        let mut streaming: Option<Incoming> = None;
        match declared {
            Some(0) => buffered = Some(Bytes::new()),
            None if !chunked => buffered = Some(Bytes::new()),
            Some(n) if n <= INSPECTED_BODY_LIMIT as u64 => {
                match tokio::time::timeout(CLIENT_BODY_TIMEOUT, Limited::new(body, INSPECTED_BODY_LIMIT).collect())
                    .await
                {
                    Ok(Ok(collected)) => buffered = Some(collected.to_bytes()),
                    Ok(Err(_)) | Err(_) => return self.local_error(ProxyError::BadRequest, &request_id, started),
                }
            }
            _ => streaming = Some(body),
        }

        let mut ctx = RequestContext {
            request_id: &request_id,
            client_ip,
            method: &parts.method,
            path: &path,
            query: parts.uri.query(),
            headers: &mut headers,
            body: &mut buffered,
            route: &route,
            service: service.as_ref(),
            config: &config,
            consumer: None,
            credential: None,
        };
        let mut ran: Vec<Arc<dyn Plugin>> = Vec::new();
        for i in 0..config.plugins.len() {
            let consumer = ctx.consumer.as_ref().map(|c| c.id);
            let Some(plugin) = config.plugins.resolve(i, route.id, route.service_id, consumer) else { continue };
            ran.push(plugin.clone());
            if let Flow::Respond(response) = plugin.access(&mut ctx).await {
                let (parts, body) = response.into_parts();
                let mut response = Response::from_parts(parts, body.map_err(|never| match never {}).boxed());
                self.finish_local(&mut response, &request_id, started);
                return response;
            }
        }
        drop(ctx);
        let Some(service) = service else {
            return self.local_error(ProxyError::NoService, &request_id, started);
        };
        if !service.enabled {
            return self.local_error(ProxyError::Unavailable, &request_id, started);
        }

        let upstream = upstream_path(service.path.as_deref(), route.strip_path, matched_part.as_deref(), &path);
        let authority = authority(&service.host, service.port, &service.protocol);
        let uri = match parts.uri.query() {
            Some(q) => format!("{}://{authority}{upstream}?{q}", scheme(&service.protocol)),
            None => format!("{}://{authority}{upstream}", scheme(&service.protocol)),
        };
        let Ok(uri) = uri.parse::<http::Uri>() else {
            return self.local_error(ProxyError::BadRequest, &request_id, started);
        };
        strip_hop_by_hop(&mut headers);
        let upstream_host =
            if route.preserve_host && !host_header.is_empty() { host_header.clone() } else { authority.clone() };
        insert_str(&mut headers, header::HOST.as_str(), &upstream_host);
        self.forwarded_headers(
            &mut headers,
            peer.ip(),
            client_ip,
            &host_header,
            local_port,
            parts.uri.path(),
            route.strip_path,
            matched_part.as_deref(),
        );
        insert_str(&mut headers, "x-kong-request-id", &request_id);

        let proxy_latency = started.elapsed();
        let sent_at = Instant::now();
        let result = self.send(&service, &parts.method, &uri, &headers, buffered, streaming).await;
        let upstream_latency = sent_at.elapsed();
        let response = match result {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(request_id, service = %service.id, ?error, "upstream failed");
                return self.local_error(error, &request_id, started);
            }
        };

        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let h = &mut parts.headers;
        let via = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
            Some(existing) => format!("{existing}, {VIA}"),
            None => VIA.to_owned(),
        };
        insert_str(h, header::VIA.as_str(), &via);
        if !h.contains_key(header::SERVER) {
            h.insert(header::SERVER, HeaderValue::from_static(SERVER));
        }
        insert_str(h, "x-kong-upstream-latency", &upstream_latency.as_millis().to_string());
        insert_str(h, "x-kong-proxy-latency", &proxy_latency.as_millis().to_string());
        insert_str(h, "x-kong-request-id", &request_id);
        let mut rctx = ResponseContext { request_id: &request_id, status: parts.status, headers: &mut parts.headers };
        for plugin in &ran {
            plugin.response(&mut rctx);
        }
        for plugin in &ran {
            plugin.log(&request_id, parts.status);
        }
        let body = IdleTimeoutBody::new(body, Duration::from_millis(service.read_timeout)).boxed();
        Response::from_parts(parts, body)
    }

    /// Calls the service. Connection failures are retried up to `retries` times when the body can be sent again
    /// (it was read whole); a streamed body is never sent twice.
    async fn send(
        &self,
        service: &crate::config::ServiceConfig,
        method: &http::Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        buffered: Option<Bytes>,
        mut streaming: Option<Incoming>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let client = self.clients.get(service.connect_timeout, service.tls_verify.unwrap_or(true));
        let replayable = buffered.is_some();
        let attempts = if replayable { 1 + service.retries } else { 1 };
        let has_body = buffered.as_ref().is_some_and(|b| !b.is_empty()) || streaming.is_some();
        // Kong's read and write timeouts are between two reads or writes; waiting for the response head covers
        // the write of the request and the first read.
        let head_timeout =
            Duration::from_millis(service.read_timeout + if has_body { service.write_timeout } else { 0 });
        let mut last = ProxyError::BadGateway;
        for attempt in 0..attempts {
            let body = match (&buffered, streaming.take()) {
                (Some(bytes), _) if bytes.is_empty() => empty(),
                (Some(bytes), _) => full(bytes.clone()),
                (None, Some(stream)) => stream.map_err(|e| Box::new(e) as crate::body::BoxError).boxed(),
                (None, None) => empty(),
            };
            let mut request = Request::builder().method(method.clone()).uri(uri.clone());
            if let Some(h) = request.headers_mut() {
                *h = headers.clone();
            }
            let Ok(request) = request.body(body) else { return Err(ProxyError::BadRequest) };
            match tokio::time::timeout(head_timeout, client.request(request)).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(e)) if e.is_connect() => {
                    last = if is_timeout(&e) { ProxyError::GatewayTimeout } else { ProxyError::BadGateway };
                    tracing::debug!(attempt, error = %e, "upstream connection failed");
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "upstream request failed");
                    return Err(if is_timeout(&e) { ProxyError::GatewayTimeout } else { ProxyError::BadGateway });
                }
                Err(_) => return Err(ProxyError::GatewayTimeout),
            }
        }
        Err(last)
    }

    fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
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

    #[allow(clippy::too_many_arguments)]
    fn forwarded_headers(
        &self,
        headers: &mut HeaderMap,
        peer: IpAddr,
        client: IpAddr,
        host: &str,
        port: u16,
        path: &str,
        strip_path: bool,
        matched: Option<&str>,
    ) {
        // From an untrusted peer, every X-Forwarded-* value is the client's claim and is replaced.
        let trusted = self.trusted(peer);
        let keep = |h: &HeaderMap, name: &str| trusted && h.contains_key(name);
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(existing) if trusted => format!("{existing}, {peer}"),
            _ => peer.to_string(),
        };
        insert_str(headers, "x-forwarded-for", &xff);
        if !keep(headers, "x-forwarded-proto") {
            insert_str(headers, "x-forwarded-proto", "http");
        }
        if !keep(headers, "x-forwarded-host") {
            insert_str(headers, "x-forwarded-host", split_host_port(host, port).0.as_str());
        }
        if !keep(headers, "x-forwarded-port") {
            insert_str(headers, "x-forwarded-port", &port.to_string());
        }
        if !keep(headers, "x-forwarded-path") {
            insert_str(headers, "x-forwarded-path", path);
        }
        match matched {
            Some(prefix) if strip_path && prefix != "/" && !keep(headers, "x-forwarded-prefix") => {
                insert_str(headers, "x-forwarded-prefix", prefix);
            }
            _ if !keep(headers, "x-forwarded-prefix") => {
                headers.remove("x-forwarded-prefix");
            }
            _ => {}
        }
        insert_str(headers, "x-real-ip", &client.to_string());
        let via = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
            Some(existing) => format!("{existing}, {VIA}"),
            None => VIA.to_owned(),
        };
        insert_str(headers, header::VIA.as_str(), &via);
    }

    fn https_required(
        &self,
        code: u16,
        host: &str,
        uri: &http::Uri,
        request_id: &str,
        started: Instant,
    ) -> Response<ProxyBody> {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::UPGRADE_REQUIRED);
        let body = serde_json::json!({"message": "Please use HTTPS protocol", "request_id": request_id}).to_string();
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        if status.is_redirection() {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            insert_str(response.headers_mut(), header::LOCATION.as_str(), &format!("https://{host}{path}"));
        } else {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("TLS/1.2, HTTP/1.1"));
        }
        self.finish_local(&mut response, request_id, started);
        response
    }
}

fn insert_str(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
        headers.insert(n, v);
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
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
fn split_host_port(value: &str, default_port: u16) -> (String, u16) {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default_port);
        return (host.to_ascii_lowercase(), port);
    }
    match value.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_ascii_lowercase(), p.parse().unwrap_or(default_port)),
        _ => (value.to_ascii_lowercase(), default_port),
    }
}

fn scheme(protocol: &str) -> &'static str {
    if matches!(protocol, "https" | "grpcs" | "wss") { "https" } else { "http" }
}

/// The service's authority; the port is left out when it is the scheme's default, as Kong sets `Host`.
fn authority(host: &str, port: u16, protocol: &str) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    let default = if scheme(protocol) == "https" { 443 } else { 80 };
    if port == default { host } else { format!("{host}:{port}") }
}

/// Serves the proxy on `listener` until `shutdown` resolves, then lets open requests finish (30 s at most).
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let local_port = listener.local_addr()?.port();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024)
        .max_headers(crate::framing::MAX_HEADER_LINES + 28);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let verdicts: Verdicts = Default::default();
                let stream = Watched::new(stream, verdicts.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let proxy = proxy.clone();
                    // HTTP/1 requests on a connection are handled in order, so verdicts pair up with them.
                    let ambiguous = req.version() < http::Version::HTTP_2
                        && verdicts.lock().ok().and_then(|mut v| v.pop_front()).unwrap_or(false);
                    async move { Ok::<_, Infallible>(proxy.handle(req, peer, local_port, ambiguous).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!(error = %e, "client connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ports_and_authorities() {
        assert_eq!(split_host_port("Example.com:8000", 80), ("example.com".into(), 8000));
        assert_eq!(split_host_port("example.com", 8000), ("example.com".into(), 8000));
        assert_eq!(split_host_port("[::1]:9", 80), ("::1".into(), 9));
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
    }

    #[test]
    fn request_ids_are_unique_and_kong_shaped() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
