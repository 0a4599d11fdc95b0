//! The proxy's access log: one line per request, in the node's log format, to standard error (with the node's
//! other logs) or to a file.
//!
//! Lines are written like nginx's `access_log … buffer=32k flush=1s`: each worker formats its lines into its own
//! buffer, and the buffer goes out in one write when it fills, once a second, and when the worker stops. A write
//! per request through the node's tracing subscriber would have cost a system call per request on the proxy's
//! hottest path. The line holds no header value, body or credential: the query has credential parameters
//! masked (`model::redact`), and the consumer is named, never the token that identified it.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gatehouse_model::Timestamp;
use gatehouse_model::redact::redact_query;

use crate::consumers::Consumer;
use crate::plugins::{Latencies, Outcome};
use crate::router::RouteConfig;
use crate::service::ServiceConfig;

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
                let file = options
                    .open(path)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                Some(Box::new(file))
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
    /// `client` as text when it is already at hand (the connection's peer), so it is not formatted per line.
    pub client_text: Option<&'a str>,
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
        // `2026-12-07T12:34:56` + `.mmmZ`, the digits written by hand: this runs for every proxied request.
        let mut time = [0u8; 32];
        let stamp = buffer.stamp.as_bytes();
        let len = stamp.len().min(27);
        time[..len].copy_from_slice(&stamp[..len]);
        let digits =
            [b'.', b'0' + (millis / 100) as u8, b'0' + (millis / 10 % 10) as u8, b'0' + (millis % 10) as u8, b'Z'];
        time[len..len + 5].copy_from_slice(&digits);
        let time = std::str::from_utf8(&time[..len + 5]).unwrap_or_default();
        match log.format {
            AccessLogFormat::Text => text(&mut buffer.bytes, time, line),
            AccessLogFormat::Json => json(&mut buffer.bytes, time, line),
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

fn route_name(route: &RouteConfig) -> Option<&str> {
    route.name.as_deref()
}

/// A name, or the entity's id when it has none (formatted only then).
fn name_or_id(name: Option<&str>, id: uuid::Uuid) -> std::borrow::Cow<'_, str> {
    match name {
        Some(name) => std::borrow::Cow::Borrowed(name),
        None => std::borrow::Cow::Owned(id.to_string()),
    }
}

fn consumer_name(consumer: &Consumer) -> std::borrow::Cow<'_, str> {
    name_or_id(consumer.username.as_deref().or(consumer.custom_id.as_deref()), consumer.id)
}

fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Proxied => "proxied",
        Outcome::Answered { .. } => "answered",
        Outcome::Failed(_) => "failed",
        Outcome::HttpsRequired => "https_required",
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// ` key=value`, the value quoted (Rust's escapes) when it holds a space, a quote or a control character, so a
/// line always splits into its fields.
fn field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain {
        out.extend_from_slice(value.as_bytes());
    } else {
        let _ = write!(out, "{value:?}");
    }
}

/// ` key=value` for a value that cannot hold a space, a quote or a control character: hex ids, addresses,
/// methods, and route and service names (the schema allows letters, digits and `.-_~` in them).
fn raw(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(if value.is_empty() { b"-" } else { value.as_bytes() });
}

fn number(out: &mut Vec<u8>, key: &str, value: Option<u64>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    match value {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.push(b'-'),
    }
}

/// The path and the query with credential values masked.
fn target(uri: &http::Uri) -> (&str, Option<std::borrow::Cow<'_, str>>) {
    (uri.path(), uri.query().map(redact_query))
}

fn text(out: &mut Vec<u8>, time: &str, line: &Line<'_>) {
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"  INFO gatehouse::access: request");
    raw(out, "request_id", line.request_id);
    match line.client_text {
        Some(client) => raw(out, "client", client),
        None => raw(out, "client", &line.client.to_string()),
    }
    raw(out, "method", line.method.as_str());
    let (path, query) = target(line.uri);
    match &query {
        Some(query) => field(out, "path", &format!("{path}?{query}")),
        None => field(out, "path", path),
    }
    number(out, "status", Some(u64::from(line.status.as_u16())));
    number(out, "bytes", line.bytes);
    field(out, "route", &line.route.map_or(std::borrow::Cow::Borrowed("-"), |r| name_or_id(route_name(r), r.id)));
    field(
        out,
        "service",
        &line.service.map_or(std::borrow::Cow::Borrowed("-"), |s| name_or_id(s.name.as_deref(), s.id)),
    );
    field(out, "consumer", &line.consumer.map_or(std::borrow::Cow::Borrowed("-"), consumer_name));
    field(out, "upstream", line.service.map_or("-", |svc| svc.target.authority.as_str()));
    let l = line.latencies;
    number(out, "latency_kong", Some(millis(l.kong)));
    number(out, "latency_upstream", l.upstream.map(millis));
    number(out, "latency_request", Some(millis(l.request)));
    out.extend_from_slice(b" outcome=");
    out.extend_from_slice(outcome(line.outcome).as_bytes());
    out.push(b'\n');
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    target: &'static str,
    message: &'static str,
    request_id: &'a str,
    client: std::borrow::Cow<'a, str>,
    method: &'a str,
    path: std::borrow::Cow<'a, str>,
    status: u16,
    bytes: Option<u64>,
    route: Option<std::borrow::Cow<'a, str>>,
    service: Option<std::borrow::Cow<'a, str>>,
    consumer: Option<std::borrow::Cow<'a, str>>,
    upstream: Option<&'a str>,
    latency_kong: u64,
    latency_upstream: Option<u64>,
    latency_request: u64,
    outcome: &'static str,
}

fn json(out: &mut Vec<u8>, time: &str, line: &Line<'_>) {
    let (path, query) = target(line.uri);
    let record = JsonLine {
        timestamp: time,
        level: "INFO",
        target: "gatehouse::access",
        message: "request",
        request_id: line.request_id,
        client: line.client_text.map_or_else(|| line.client.to_string().into(), Into::into),
        method: line.method.as_str(),
        path: match query {
            Some(query) => format!("{path}?{query}").into(),
            None => path.into(),
        },
        status: line.status.as_u16(),
        bytes: line.bytes,
        route: line.route.map(|r| name_or_id(route_name(r), r.id)),
        service: line.service.map(|s| name_or_id(s.name.as_deref(), s.id)),
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
            client_text: None,
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
        let mut out = Vec::new();
        field(&mut out, "consumer", "a b\"c");
        assert_eq!(String::from_utf8(out).unwrap(), r#" consumer="a b\"c""#);
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
