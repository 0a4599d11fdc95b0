//! Sending spans to an OTLP/HTTP collector: one bounded queue and one sender task per distinct export setting,
//! shared by every instance (and every worker's copy) with that setting and kept while any of them lives.
//!
//! The proxy's side is [`Exporter::enqueue`]: a short lock on the queue and a wake-up, never a wait for the
//! collector. When the queue holds `max_entries` spans, the oldest are dropped (and counted) to make room, as
//! Kong's queue does: while a collector is down the queue keeps the most recent spans, which are the ones worth
//! having when it comes back. A collector that is down, refuses or never answers therefore costs the proxy nothing
//! but those spans. The sender task batches (`max_batch_size`, `max_coalescing_delay`), encodes an
//! `ExportTraceServiceRequest` with the OTLP protobuf types and POSTs it with the gateway's HTTP client (hyper,
//! rustls), within the configured timeouts; a failed export is retried with Kong's queue delays until
//! `max_retry_time`, then its spans are dropped and counted. Memory is bounded by `max_entries` queued spans plus
//! the one batch being sent (at most `max_batch_size`), whatever the collector does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use tokio::sync::Notify;
use tokio::time::Instant;

use gatehouse_model::gateway::plugins::opentelemetry::Config;

use crate::metrics::CounterVec;
use crate::trace::{attribute, string_value};

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Everything that decides where and how spans are sent: instances whose settings are equal share an exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub endpoint: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub resource: Vec<(String, String)>,
    pub batch_size: usize,
    pub flush_delay: Duration,
    pub max_entries: usize,
    pub connect_timeout: Duration,
    /// `send_timeout` + `read_timeout`: the longest one export request may take once connected.
    pub exchange_timeout: Duration,
    pub max_retry_time: Duration,
    pub initial_retry_delay: Duration,
    pub max_retry_delay: Duration,
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let endpoint: Uri = config.traces_endpoint.parse().map_err(|e| format!("traces_endpoint: {e}"))?;
        let mut headers = Vec::new();
        for (name, value) in config.headers.iter().flatten() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("headers: invalid name {name}"))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| format!("headers.{name}: invalid value"))?;
            // Often a collector's API key.
            value.set_sensitive(true);
            headers.push((name, value));
        }
        // Kong's defaults, which `resource_attributes` override.
        let mut resource: Vec<(String, String)> =
            vec![("service.name".into(), "kong".into()), ("service.version".into(), env!("CARGO_PKG_VERSION").into())];
        for (key, value) in config.resource_attributes.iter().flatten() {
            match resource.iter_mut().find(|(k, _)| k == key) {
                Some(existing) => existing.1.clone_from(value),
                None => resource.push((key.clone(), value.clone())),
            }
        }
        let queue = &config.queue;
        Ok(Self {
            endpoint,
            headers,
            resource,
            batch_size: usize::try_from(config.batch_size()).unwrap_or(usize::MAX),
            flush_delay: config.flush_delay(),
            max_entries: usize::try_from(queue.max_entries).unwrap_or(usize::MAX).max(1),
            connect_timeout: Duration::from_millis(config.connect_timeout),
            exchange_timeout: Duration::from_millis(config.send_timeout.saturating_add(config.read_timeout)),
            max_retry_time: seconds(queue.max_retry_time),
            initial_retry_delay: seconds(queue.initial_retry_delay),
            max_retry_delay: seconds(queue.max_retry_delay),
        })
    }
}

/// The node's exporters and their span counts (`gatehouse_opentelemetry_spans_total`).
#[derive(Debug)]
pub struct Exporters {
    live: Mutex<Vec<(Settings, Weak<Exporter>)>>,
    pub spans: Arc<CounterVec>,
}

impl Default for Exporters {
    fn default() -> Self {
        Self {
            live: Mutex::default(),
            spans: Arc::new(CounterVec::new(
                "gatehouse_opentelemetry_spans_total",
                "Spans of the opentelemetry plugin by outcome: exported, dropped (queue full) or failed (export \
                 failed after retries)",
                &["outcome"],
            )),
        }
    }
}

impl Exporters {
    /// The live exporter for `settings`, or a new one (its sender task spawned on the current runtime).
    pub fn get(&self, settings: Settings) -> Result<Arc<Exporter>, String> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|(_, exporter)| exporter.strong_count() > 0);
        if let Some(exporter) = live.iter().find(|(s, _)| *s == settings).and_then(|(_, e)| e.upgrade()) {
            return Ok(exporter);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the opentelemetry exporter needs a Tokio runtime".to_owned())?;
        let queue = Arc::new(Queue {
            spans: Mutex::new(VecDeque::new()),
            capacity: settings.max_entries,
            in_flight: AtomicUsize::new(0),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let exporter = Arc::new(Exporter { queue: queue.clone(), spans: self.spans.clone() });
        let task = Sender::new(settings.clone(), queue, self.spans.clone());
        runtime.spawn(task.run());
        live.push((settings, Arc::downgrade(&exporter)));
        Ok(exporter)
    }
}

/// Spans waiting to be sent, oldest first, shared by the exporter handle and its sender task.
#[derive(Debug)]
struct Queue {
    spans: Mutex<VecDeque<Span>>,
    capacity: usize,
    /// Spans of the batch being sent (no longer in `spans`).
    in_flight: AtomicUsize,
    /// Wakes the sender: spans were queued, or the exporter is gone.
    ready: Notify,
    /// The exporter is gone: the sender sends what is queued, then ends.
    closed: AtomicBool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Span>> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One queue: what the proxy's workers hand spans to.
#[derive(Debug)]
pub struct Exporter {
    queue: Arc<Queue>,
    spans: Arc<CounterVec>,
}

impl Exporter {
    /// Queues one request's spans, dropping (and counting) the oldest queued ones when there is no room.
    pub fn enqueue(&self, spans: Vec<Span>) {
        let dropped = {
            let mut queue = self.queue.lock();
            queue.extend(spans);
            let over = queue.len().saturating_sub(self.queue.capacity);
            queue.drain(..over);
            over
        };
        if dropped > 0 {
            self.spans.add(&["dropped"], dropped as u64);
        }
        self.queue.ready.notify_one();
    }

    /// Spans queued or being sent.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.lock().len() + self.queue.in_flight.load(Ordering::Acquire)
    }

    /// The trace ids of the queued spans, oldest first.
    #[cfg(test)]
    pub fn queued_trace_ids(&self) -> Vec<Vec<u8>> {
        self.queue.lock().iter().map(|s| s.trace_id.clone()).collect()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.queue.ready.notify_one();
    }
}

/// The sender task's state.
struct Sender {
    settings: Settings,
    queue: Arc<Queue>,
    spans: Arc<CounterVec>,
    client: HttpClient,
    resource: Vec<KeyValue>,
}

impl Sender {
    fn new(settings: Settings, queue: Arc<Queue>, spans: Arc<CounterVec>) -> Self {
        let timeout_ms = u64::try_from(settings.connect_timeout.as_millis()).unwrap_or(u64::MAX);
        let connector = crate::upstream::connector(timeout_ms, true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new()).timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(60));
        let client = builder.build(connector);
        let resource = settings.resource.iter().map(|(k, v)| attribute(k, string_value(v.as_str()))).collect();
        Self { settings, queue, spans, client, resource }
    }

    fn closed(&self) -> bool {
        self.queue.closed.load(Ordering::Acquire)
    }

    /// Until every exporter handle is gone (the configuration no longer has instances with these settings) and
    /// what was queued is sent.
    async fn run(self) {
        loop {
            // Something to send, or the end.
            loop {
                if !self.queue.lock().is_empty() {
                    break;
                }
                if self.closed() {
                    return;
                }
                self.queue.ready.notified().await;
            }
            // A full batch, or whatever came within the coalescing delay.
            let deadline = Instant::now() + self.settings.flush_delay;
            while self.queue.lock().len() < self.settings.batch_size && !self.closed() {
                tokio::select! {
                    () = self.queue.ready.notified() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let batch: Vec<Span> = {
                let mut queue = self.queue.lock();
                let take = queue.len().min(self.settings.batch_size);
                self.queue.in_flight.store(take, Ordering::Release);
                queue.drain(..take).collect()
            };
            let count = batch.len() as u64;
            let exported = self.export_with_retries(batch).await;
            self.queue.in_flight.store(0, Ordering::Release);
            self.spans.add(&[if exported { "exported" } else { "failed" }], count);
        }
    }

    /// Kong's queue retries: the first after `initial_retry_delay`, each next one twice as late (at most
    /// `max_retry_delay`), none once `max_retry_time` has passed since the first attempt.
    async fn export_with_retries(&self, spans: Vec<Span>) -> bool {
        let body = Bytes::from(self.encode(spans));
        let started = Instant::now();
        let mut delay = self.settings.initial_retry_delay;
        loop {
            match self.export(body.clone()).await {
                Ok(()) => return true,
                Err(error) => {
                    let retry_at = Instant::now() + delay;
                    if retry_at.duration_since(started) > self.settings.max_retry_time {
                        tracing::warn!(endpoint = %self.settings.endpoint, %error, "opentelemetry: spans dropped after the export failed");
                        return false;
                    }
                    tracing::debug!(endpoint = %self.settings.endpoint, %error, "opentelemetry: export failed; retrying");
                    tokio::time::sleep_until(retry_at).await;
                    delay = (delay * 2).min(self.settings.max_retry_delay);
                }
            }
        }
    }

    fn encode(&self, spans: Vec<Span>) -> Vec<u8> {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: self.resource.clone(), ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    // Kong's instrumentation scope.
                    scope: Some(InstrumentationScope {
                        name: "kong-internal".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        request.encode_to_vec()
    }

    async fn export(&self, body: Bytes) -> Result<(), String> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.settings.endpoint.clone();
        let headers = request.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        for (name, value) in &self.settings.headers {
            headers.insert(name.clone(), value.clone());
        }
        let limit = self.settings.connect_timeout + self.settings.exchange_timeout;
        let exchange = crate::plugins::log_queue::exchange(&self.client, request);
        let status =
            tokio::time::timeout(limit, exchange).await.map_err(|_| format!("no answer within {limit:?}"))??;
        if status.is_success() { Ok(()) } else { Err(format!("the collector answered {status}")) }
    }
}
