//! `http-log` (priority 12): each request's entry (Kong's serializer, [`super::serializer`]) goes to an HTTP
//! endpoint through Kong's queue ([`super::log_queue`]): one entry per request body when `max_batch_size` is 1,
//! otherwise a JSON array of up to that many, as Kong sends them. The request happens on the queue's sender task,
//! never on the proxied request's path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::logging::{HTTP_LOG_INFO, HttpLog as Config};

use super::log_queue::{Deliver, Queue, Settings};
use super::{LogContext, Phases, Plugin, PluginDef};

pub static PLUGIN: PluginDef = PluginDef {
    info: &HTTP_LOG_INFO,
    phases: Phases { rewrite: false, access: false, response: false, log: true },
    build: |config, shared| Ok(Arc::new(HttpLog::new(config, shared)?)),
};

#[derive(Debug)]
pub struct HttpLog {
    queue: Arc<Queue>,
    clock: gatehouse_model::SharedClock,
}

impl HttpLog {
    pub fn new(config: &Map<String, Value>, shared: &super::Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let target = Target::new(&config)?;
        let settings = Settings::from_queue(&config.queue, config.batch_size(), config.flush_delay());
        // Everything that decides where and how entries go, secrets included (the queues keep a digest).
        let key = format!("{config:?}");
        let queue = shared.log_queues.get(PLUGIN.info.name, key, settings, || Ok(Sender::new(target)))?;
        Ok(Self { queue, clock: shared.clock.clone() })
    }
}

#[async_trait]
impl Plugin for HttpLog {
    fn log(&self, ctx: &LogContext<'_>) {
        self.queue.log(ctx, &self.clock);
    }
}

/// Where and how batches are sent.
#[derive(Debug, Clone)]
struct Target {
    endpoint: Uri,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    keepalive: Duration,
    verify: bool,
}

impl Target {
    fn new(config: &Config) -> Result<Self, String> {
        let url = url::Url::parse(&config.http_endpoint).map_err(|e| format!("http_endpoint: {e}"))?;
        let mut headers =
            vec![(header::CONTENT_TYPE, HeaderValue::from_str(&config.content_type).map_err(|e| e.to_string())?)];
        // Kong: user info in the URL becomes Basic authentication, and is not part of the request's target.
        if !url.username().is_empty() || url.password().is_some() {
            let user = percent_encoding::percent_decode_str(url.username()).decode_utf8_lossy();
            let password = percent_encoding::percent_decode_str(url.password().unwrap_or("")).decode_utf8_lossy();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            headers.push((header::AUTHORIZATION, value));
        }
        for (name, value) in config.headers.iter().flatten() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("headers: invalid name {name}"))?;
            // Kong's order: its own headers win.
            if headers.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let mut value = HeaderValue::from_str(value).map_err(|_| format!("headers.{name}: invalid value"))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let mut without_userinfo = url.clone();
        let _ = without_userinfo.set_username("");
        let _ = without_userinfo.set_password(None);
        let endpoint: Uri = without_userinfo.as_str().parse().map_err(|e| format!("http_endpoint: {e}"))?;
        let method = Method::from_bytes(config.method.as_bytes()).map_err(|e| e.to_string())?;
        let millis = |ms: f64| Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX);
        Ok(Self {
            endpoint,
            method,
            headers,
            timeout: millis(config.timeout),
            keepalive: millis(config.keepalive),
            verify: config.ssl_verify,
        })
    }
}

struct Sender {
    target: Target,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Sender {
    fn new(target: Target) -> Self {
        let timeout_ms = u64::try_from(target.timeout.as_millis()).unwrap_or(u64::MAX);
        let connector = crate::upstream::connector(timeout_ms, target.verify);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new()).timer(TokioTimer::new()).pool_idle_timeout(target.keepalive);
        let client = builder.build(connector);
        Self { target, client }
    }
}

/// One entry as it is, or several as a JSON array (Kong's `make_json_array_payload_function`).
fn body(batch: &[Bytes]) -> Bytes {
    if let [one] = batch {
        return one.clone();
    }
    let mut out = BytesMut::with_capacity(batch.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
    out.put_u8(b'[');
    for (i, entry) in batch.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(entry);
    }
    out.put_u8(b']');
    out.freeze()
}

#[async_trait]
impl Deliver for Sender {
    async fn deliver(&mut self, batch: &[Bytes]) -> Result<(), String> {
        let target = &self.target;
        let mut request = Request::new(Full::new(body(batch)));
        *request.method_mut() = target.method.clone();
        *request.uri_mut() = target.endpoint.clone();
        for (name, value) in &target.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let status = tokio::time::timeout(target.timeout, super::log_queue::exchange(&self.client, request))
            .await
            .map_err(|_| format!("no answer within {:?}", target.timeout))??;
        if status.as_u16() < 300 { Ok(()) } else { Err(format!("the log server answered {status}")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_more_than_one_are_json_arrays() {
        assert_eq!(body(&[Bytes::from("{\"a\":1}")]), "{\"a\":1}");
        assert_eq!(body(&[Bytes::from("{}"), Bytes::from("{\"b\":2}")]), "[{},{\"b\":2}]");
    }

    #[test]
    fn user_info_becomes_basic_authentication_and_leaves_the_url() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "http_endpoint": "https://user:p%40ss@logs.example.com:9443/bulk?x=1", "method": "PUT",
            "content_type": "application/json", "timeout": 500, "keepalive": 1000, "queue_size": null,
            "flush_timeout": null, "headers": {"X-Log-Key": "k", "Content-Type": "text/plain"},
            "queue": {"max_batch_size": 1, "max_coalescing_delay": 1, "max_entries": 10, "max_bytes": null,
                "max_retry_time": 1, "initial_retry_delay": 0.01, "max_retry_delay": 1},
            "ssl_verify": true}))
        .unwrap();
        let target = Target::new(&config).unwrap();
        assert_eq!(target.endpoint.to_string(), "https://logs.example.com:9443/bulk?x=1");
        let header =
            |n: &str| target.headers.iter().filter(|(h, _)| h == n).map(|(_, v)| v.clone()).collect::<Vec<_>>();
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("user:p@ss"));
        assert_eq!(header("authorization"), [expected.as_str()]);
        assert_eq!(header("content-type"), ["application/json"], "Kong's own header wins");
        assert_eq!(header("x-log-key"), ["k"]);
        assert!(!format!("{target:?}").contains("p@ss"), "sensitive values are not printed");
        assert_eq!((target.method, target.timeout), (Method::PUT, Duration::from_millis(500)));
    }
}
