//! The proxy's access log: one line per request, in the node's log format, to standard error (with the node's
//! other logs) or to a file.
//!
//! Lines are written like nginx's `access_log … buffer=32k flush=1s`: each worker formats its lines into its own
//! buffer, and the buffer goes out in one write when it fills, once a second, and when the worker stops. A write
//! per request through the node's tracing subscriber would have cost a system call per request on the proxy's
//! hottest path. The line holds no header value, body or credential: the query has credential parameters
//! masked (`model::redact`), and the consumer is named, never the token that identified it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gatehouse_model::Timestamp;
use gatehouse_model::redact::redact_query;

use crate::config::{Consumer, ServiceConfig};
use crate::plugins::{Latencies, Outcome};
use crate::router::RouteConfig;

/// Where the access log goes (`proxy.access_log`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessLogDestination {
    Off,
    /// With the node's logs.
    #[default]
    Stderr,
    /// Appended to a file, created 0600 when missing.
    File(PathBuf),
}

/// The node's `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub destination: AccessLogDestination,
    pub format: AccessLogFormat,
}

/// A buffer is written out once it holds this much.
const FLUSH_AT: usize = 32 * 1024;

/// The node's access log: where lines go and how they are spelled.
pub struct AccessLog {
    format: AccessLogFormat,
    sink: Option<Mutex<Box<dyn std::io::Write + Send>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("format", &self.format).field("on", &self.sink.is_some()).finish()
    }
}

impl AccessLog {
    pub fn open(settings: &AccessLogSettings) -> std::io::Result<Arc<Self>> {
        let sink: Option<Box<dyn std::io::Write + Send>> = match &settings.destination {
            AccessLogDestination::Off => None,
            AccessLogDestination::Stderr => Some(Box::new(StderrLines)),
            AccessLogDestination::File(path) => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Some(Box::new(options.open(path)?))
            }
        };
        Ok(Arc::new(Self { format: settings.format, sink: sink.map(Mutex::new) }))
    }

    pub fn off() -> Arc<Self> {
        Arc::new(Self { format: AccessLogFormat::Text, sink: None })
    }

    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    fn write(&self, bytes: &[u8]) {
        if let Some(sink) = &self.sink
            && let Ok(mut out) = sink.lock()
            && let Err(e) = out.write_all(bytes).and_then(|()| out.flush())
        {
            tracing::warn!(error = %e, "could not write the access log");
        }
    }
}

/// Standard error, locked for a whole buffer so that the node's other log lines never land inside one.
struct StderrLines;

impl std::io::Write for StderrLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One request's line.
#[derive(Debug)]
pub struct Line<'a> {
    pub time: Timestamp,
    pub request_id: &'a str,
    pub client: IpAddr,
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub status: http::StatusCode,
    /// The response body's length when its head announced one.
    pub bytes: Option<u64>,
    pub route: Option<&'a RouteConfig>,
    pub service: Option<&'a ServiceConfig>,
    pub consumer: Option<&'a Consumer>,
    pub latencies: Latencies,
    pub outcome: Outcome,
}

/// A worker's buffer of formatted lines.
#[derive(Debug, Default)]
pub struct WorkerLog {
    buffer: Mutex<Buffer>,
}

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// The last second formatted, and its text (`2026-12-07T12:34:56`): most lines reuse it.
    second: i64,
    stamp: String,
}

impl WorkerLog {
    pub fn record(&self, log: &AccessLog, line: &Line<'_>) {
        if !log.is_on() {
            return;
        }
        let Ok(mut buffer) = self.buffer.lock() else { return };
        let buffer = &mut *buffer;
        let micros = line.time.micros();
        let second = micros.div_euclid(1_000_000);
        if second != buffer.second || buffer.stamp.is_empty() {
            buffer.second = second;
            let full = Timestamp::from_secs(second).to_rfc3339();
            buffer.stamp = full.split('.').next().unwrap_or(&full).trim_end_matches('Z').to_owned();
        }
        let millis = micros.rem_euclid(1_000_000) / 1000;
        let time = format!("{}.{millis:03}Z", buffer.stamp);
        match log.format {
            AccessLogFormat::Text => text(&mut buffer.bytes, &time, line),
            AccessLogFormat::Json => json(&mut buffer.bytes, &time, line),
        }
        if buffer.bytes.len() >= FLUSH_AT {
            log.write(&buffer.bytes);
            buffer.bytes.clear();
        }
    }

    pub fn flush(&self, log: &AccessLog) {
        let Ok(mut buffer) = self.buffer.lock() else { return };
        if !buffer.bytes.is_empty() {
            log.write(&buffer.bytes);
            buffer.bytes.clear();
        }
    }
}

fn route_name(route: &RouteConfig) -> String {
    route.name.clone().unwrap_or_else(|| route.id.to_string())
}

fn service_name(service: &ServiceConfig) -> String {
    service.name.clone().unwrap_or_else(|| service.id.to_string())
}

fn consumer_name(consumer: &Consumer) -> String {
    consumer.username.clone().or_else(|| consumer.custom_id.clone()).unwrap_or_else(|| consumer.id.to_string())
}

fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Proxied => "proxied",
        Outcome::Answered { .. } => "answered",
        Outcome::Failed(_) => "failed",
        Outcome::HttpsRequired => "https_required",
    }
}

fn path(uri: &http::Uri) -> String {
    match uri.query() {
        Some(query) => format!("{}?{}", uri.path(), redact_query(query)),
        None => uri.path().to_owned(),
    }
}

fn millis(d: std::time::Duration) -> u128 {
    d.as_millis()
}

/// `key=value`, the value quoted (Rust's escapes) when it holds a space, a quote or a control character, so a
/// line always splits into its fields.
fn field(out: &mut String, key: &str, value: &str) {
    let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain {
        let _ = write!(out, " {key}={value}");
    } else {
        let _ = write!(out, " {key}={value:?}");
    }
}

fn text(out: &mut Vec<u8>, time: &str, line: &Line<'_>) {
    let mut s = String::with_capacity(320);
    let _ = write!(s, "{time}  INFO gatehouse::access: request");
    field(&mut s, "request_id", line.request_id);
    field(&mut s, "client", &line.client.to_string());
    field(&mut s, "method", line.method.as_str());
    field(&mut s, "path", &path(line.uri));
    let _ = write!(s, " status={}", line.status.as_u16());
    match line.bytes {
        Some(n) => {
            let _ = write!(s, " bytes={n}");
        }
        None => s.push_str(" bytes=-"),
    }
    field(&mut s, "route", &line.route.map_or_else(|| "-".into(), route_name));
    field(&mut s, "service", &line.service.map_or_else(|| "-".into(), service_name));
    field(&mut s, "consumer", &line.consumer.map_or_else(|| "-".into(), consumer_name));
    field(&mut s, "upstream", line.service.map_or("-", |svc| svc.target.authority.as_str()));
    let l = line.latencies;
    let _ = write!(s, " latency_kong={}", millis(l.kong));
    match l.upstream {
        Some(u) => {
            let _ = write!(s, " latency_upstream={}", millis(u));
        }
        None => s.push_str(" latency_upstream=-"),
    }
    let _ = write!(s, " latency_request={} outcome={}", millis(l.request), outcome(line.outcome));
    s.push('\n');
    out.extend_from_slice(s.as_bytes());
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    target: &'static str,
    message: &'static str,
    request_id: &'a str,
    client: String,
    method: &'a str,
    path: String,
    status: u16,
    bytes: Option<u64>,
    route: Option<String>,
    service: Option<String>,
    consumer: Option<String>,
    upstream: Option<&'a str>,
    latency_kong: u128,
    latency_upstream: Option<u128>,
    latency_request: u128,
    outcome: &'static str,
}

fn json(out: &mut Vec<u8>, time: &str, line: &Line<'_>) {
    let record = JsonLine {
        timestamp: time,
        level: "INFO",
        target: "gatehouse::access",
        message: "request",
        request_id: line.request_id,
        client: line.client.to_string(),
        method: line.method.as_str(),
        path: path(line.uri),
        status: line.status.as_u16(),
        bytes: line.bytes,
        route: line.route.map(route_name),
        service: line.service.map(service_name),
        consumer: line.consumer.map(consumer_name),
        upstream: line.service.map(|svc| svc.target.authority.as_str()),
        latency_kong: millis(line.latencies.kong),
        latency_upstream: line.latencies.upstream.map(millis),
        latency_request: millis(line.latencies.request),
        outcome: outcome(line.outcome),
    };
    if serde_json::to_writer(&mut *out, &record).is_ok() {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line<'a>(uri: &'a http::Uri, method: &'a http::Method) -> Line<'a> {
        Line {
            time: Timestamp::from_micros(1_796_000_000_123_456),
            request_id: "0123456789abcdef0123456789abcdef",
            client: IpAddr::from([10, 0, 0, 7]),
            method,
            uri,
            status: http::StatusCode::OK,
            bytes: Some(42),
            route: None,
            service: None,
            consumer: None,
            latencies: Latencies {
                kong: Duration::from_millis(1),
                upstream: Some(Duration::from_millis(3)),
                request: Duration::from_millis(4),
            },
            outcome: Outcome::Proxied,
        }
    }

    #[test]
    fn text_lines_hold_every_field_and_mask_credentials() {
        let uri: http::Uri = "/p?a=1&access_token=eyJsecret".parse().unwrap();
        let method = http::Method::GET;
        let mut out = Vec::new();
        text(&mut out, "2026-12-07T00:00:00.123Z", &line(&uri, &method));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "2026-12-07T00:00:00.123Z  INFO gatehouse::access: request \
             request_id=0123456789abcdef0123456789abcdef client=10.0.0.7 method=GET \
             path=/p?a=1&access_token=[redacted] status=200 bytes=42 route=- service=- consumer=- upstream=- \
             latency_kong=1 latency_upstream=3 latency_request=4 outcome=proxied\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let uri: http::Uri = "/p?token=abc".parse().unwrap();
        let method = http::Method::POST;
        let mut out = Vec::new();
        json(&mut out, "2026-12-07T00:00:00.123Z", &line(&uri, &method));
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["path"], "/p?token=[redacted]");
        assert_eq!((v["status"].as_u64(), v["bytes"].as_u64()), (Some(200), Some(42)));
        assert_eq!((v["target"].as_str(), v["route"].is_null()), (Some("gatehouse::access"), true));
        assert_eq!(v["latency_upstream"], 3);
    }

    #[test]
    fn values_with_spaces_or_quotes_are_quoted() {
        let mut s = String::new();
        field(&mut s, "consumer", "a b\"c");
        assert_eq!(s, r#" consumer="a b\"c""#);
    }

    #[test]
    fn a_file_log_gets_whole_lines_when_flushed() {
        let dir = std::env::temp_dir().join(format!("gatehouse-access-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("access.log");
        let settings =
            AccessLogSettings { destination: AccessLogDestination::File(file.clone()), format: AccessLogFormat::Text };
        let log = AccessLog::open(&settings).unwrap();
        let worker = WorkerLog::default();
        let uri: http::Uri = "/x".parse().unwrap();
        let method = http::Method::GET;
        worker.record(&log, &line(&uri, &method));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "", "buffered until flushed");
        worker.flush(&log);
        let written = std::fs::read_to_string(&file).unwrap();
        assert!(written.starts_with("2026-") && written.ends_with("outcome=proxied\n"), "{written}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
