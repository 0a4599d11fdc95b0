//! A proxy with plugins in front of an echo upstream, both on loopback ephemeral ports, for plugin tests that go
//! through the real request flow (tests only).
//!
//! The upstream answers every request with JSON describing what it received (`method`, `uri`, `headers`, `body`),
//! unless the request asks otherwise: `x-respond-type` sets the answer's `Content-Type` and `x-respond-body` its
//! body (sent as the upstream's), `x-respond-chunks` sends that body in that many chunks without a length, and
//! `x-respond-status` sets the status.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use gatehouse_model::gateway::schema::normalize;
use gatehouse_model::gateway::snapshot::{ConfigSnapshot, PluginInstance, Route, Service};

use super::{Proxy, ProxySettings, serve};

type UpstreamBody = http_body_util::Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

async fn echo(req: Request<Incoming>) -> Result<Response<UpstreamBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let received = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The proxy cut the body off: nothing to answer.
        Err(_) => Bytes::new(),
    };
    let (content_type, body) = match header("x-respond-body") {
        Some(body) => (header("x-respond-type").unwrap_or_else(|| "application/json".into()), Bytes::from(body)),
        None => {
            let mut headers = Map::new();
            for (name, value) in &parts.headers {
                let value = json!(String::from_utf8_lossy(value.as_bytes()));
                match headers.get_mut(name.as_str()) {
                    Some(Value::Array(list)) => list.push(value),
                    Some(first) => *first = json!([first.clone(), value]),
                    None => {
                        headers.insert(name.as_str().to_owned(), value);
                    }
                }
            }
            let echo = json!({"method": parts.method.as_str(), "uri": parts.uri.to_string(), "headers": headers,
                "body": String::from_utf8_lossy(&received)});
            (header("x-respond-type").unwrap_or_else(|| "application/json".into()), Bytes::from(echo.to_string()))
        }
    };
    let status = header("x-respond-status").and_then(|s| s.parse::<u16>().ok()).unwrap_or(200);
    let response = Response::builder().status(status).header("content-type", content_type);
    let body = match header("x-respond-chunks").and_then(|n| n.parse::<usize>().ok()) {
        _ if matches!(status, 204 | 304) => http_body_util::Either::Left(Full::new(Bytes::new())),
        Some(n) if n > 0 => {
            let size = body.len().div_ceil(n).max(1);
            let frames: Vec<_> = body.chunks(size).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
            http_body_util::Either::Right(StreamBody::new(futures_util::stream::iter(frames)))
        }
        _ => http_body_util::Either::Left(Full::new(body)),
    };
    Ok(response.body(body).unwrap_or_else(|_| Response::new(http_body_util::Either::Left(Full::new(Bytes::new())))))
}

/// The echo upstream, HTTP/1.1.
pub(crate) async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(echo);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A service to the upstream on `port` of this host, with short timeouts and no retries.
pub(crate) fn service(id: u128, port: u16) -> Service {
    Service {
        id: uuid::Uuid::from_u128(id),
        name: Some(format!("service-{id}")),
        protocol: "http".into(),
        host: "127.0.0.1".into(),
        port,
        path: None,
        retries: 0,
        connect_timeout: 2000,
        write_timeout: 2000,
        read_timeout: 2000,
        tls_verify: None,
        tls_verify_depth: None,
        ca_certificates: Vec::new(),
        client_certificate: None,
        enabled: true,
    }
}

/// A route of `path` to service `service`.
pub(crate) fn route_to(id: u128, path: &str, service: u128) -> Route {
    Route { service: Some(uuid::Uuid::from_u128(service)), ..route(id, &[path]) }
}

/// A route of `paths` to service 1 (the harness's echo upstream).
pub(crate) fn route(id: u128, paths: &[&str]) -> Route {
    Route {
        id: uuid::Uuid::from_u128(id),
        name: Some(format!("route-{id}")),
        service: Some(uuid::Uuid::from_u128(1)),
        protocols: vec!["http".into(), "https".into()],
        methods: Vec::new(),
        hosts: Vec::new(),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        headers: Default::default(),
        https_redirect_status_code: 426,
        regex_priority: 0,
        strip_path: true,
        preserve_host: false,
        request_buffering: true,
        response_buffering: true,
        snis: Vec::new(),
    }
}

/// A plugin instance on `route`, its config validated (and defaulted) as the Admin API would.
pub(crate) fn plugin(name: &str, route: u128, config: Value) -> PluginInstance {
    let info = gatehouse_model::gateway::plugins::info(name).unwrap();
    let mut violations = Vec::new();
    let config = normalize(&(info.config)(), config.as_object().unwrap(), "config", &mut violations);
    assert!(violations.is_empty(), "{violations:?}");
    let mut checks = gatehouse_model::gateway::plugins::Checks::default();
    (info.check)(&config, &mut checks);
    assert!(checks.is_empty(), "{checks:?}");
    PluginInstance {
        id: uuid::Uuid::new_v4(),
        name: name.into(),
        instance_name: None,
        enabled: true,
        route: Some(uuid::Uuid::from_u128(route)),
        service: None,
        consumer: None,
        protocols: vec!["http".into()],
        config,
    }
}

/// The proxy serving `routes` (all to the echo upstream) with `plugins`, until dropped.
#[derive(Debug)]
pub(crate) struct Harness {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Harness {
    pub async fn start(routes: Vec<Route>, plugins: Vec<PluginInstance>) -> Self {
        let up = echo_upstream().await;
        let proxy: Arc<Proxy> = Proxy::new(ProxySettings { workers: 1, ..Default::default() });
        let service = Service { name: Some("echo".into()), ..service(1, up.port()) };
        let snapshot = ConfigSnapshot { services: vec![service], routes, plugins, ..ConfigSnapshot::empty(None, 1) };
        proxy.install(&snapshot).unwrap();
        let listener =
            TcpListener::from_std(super::reusable_listener("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(proxy, listener, async move {
            let _ = stopped.await;
        }));
        Self { addr, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}
