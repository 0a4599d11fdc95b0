//! The logging plugins' configs (Kong's schemas): `http-log`, `file-log`, `tcp-log`, `udp-log` and `syslog`.
//! They share Kong's log serializer (in the gateway) and two schema pieces written here once: Kong's plugin
//! `queue` record (`typedefs.queue`, with the logging plugins' default batch of one) and `custom_fields_by_lua`,
//! which needs Kong's Lua sandbox and is refused by name when set.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::checks::{header_token, header_value, http_url};
use super::{Checks, PluginInfo};
use crate::gateway::schema::Field;

pub const HTTP_LOG: &str = "http-log";
pub const FILE_LOG: &str = "file-log";
pub const TCP_LOG: &str = "tcp-log";
pub const UDP_LOG: &str = "udp-log";
pub const SYSLOG: &str = "syslog";

/// Kong's priorities (`handler.lua` of each plugin).
pub static HTTP_LOG_INFO: PluginInfo =
    PluginInfo { name: HTTP_LOG, priority: 12, consumer_scope: true, config: http_log_fields, check: http_log_check };
pub static FILE_LOG_INFO: PluginInfo =
    PluginInfo { name: FILE_LOG, priority: 9, consumer_scope: true, config: file_log_fields, check: super::no_check };
pub static TCP_LOG_INFO: PluginInfo =
    PluginInfo { name: TCP_LOG, priority: 7, consumer_scope: true, config: tcp_log_fields, check: super::no_check };
pub static UDP_LOG_INFO: PluginInfo =
    PluginInfo { name: UDP_LOG, priority: 8, consumer_scope: true, config: udp_log_fields, check: super::no_check };
pub static SYSLOG_INFO: PluginInfo =
    PluginInfo { name: SYSLOG, priority: 4, consumer_scope: true, config: syslog_fields, check: super::no_check };

/// Whether `name` is one of the plugins that serialize each request (the proxy keeps a copy of the request's head
/// only for configurations that have one).
pub fn serializes(name: &str) -> bool {
    matches!(name, HTTP_LOG | FILE_LOG | TCP_LOG | UDP_LOG | SYSLOG)
}

/// Kong's `typedefs.lua_code`, which Gatehouse has no Lua to run: only null or `{}`.
fn custom_fields_by_lua() -> Field {
    Field::map("custom_fields_by_lua", Field::string("name"), Field::string("code")).unsupported().describe_as(
        "Kong's Lua expressions for extra log fields; Gatehouse runs no Lua, so only null or an empty map is accepted.",
    )
}

/// Kong's `typedefs.queue` (`kong/tools/queue_schema.lua`).
pub(super) fn queue_field() -> Field {
    let delay = |name, default: Value| Field::number(name).default(default).check(retry_delay_bounds);
    Field::record(
        "queue",
        vec![
            Field::integer("max_batch_size")
                .default(json!(1))
                .between(1, 1_000_000)
                .describe_as("The most entries sent in one request; above 1, entries go as a JSON array."),
            Field::number("max_coalescing_delay")
                .default(json!(1))
                .between(0, 3600)
                .describe_as("Seconds a batch waits for more entries once its first is queued."),
            Field::integer("max_entries")
                .default(json!(10000))
                .between(1, 1_000_000)
                .describe_as("The most entries waiting to be sent; past it the oldest are dropped (and counted)."),
            Field::integer("max_bytes").describe_as(
                "The most bytes of serialized entries waiting to be sent; past it the oldest are dropped, and an \
                 entry larger than this is dropped itself.",
            ),
            Field::number("max_retry_time")
                .default(json!(60))
                .describe_as("Seconds a failed batch is retried before it is dropped."),
            delay("initial_retry_delay", json!(0.01))
                .describe_as("Seconds before the first retry of a failed batch; doubled at each retry."),
            delay("max_retry_delay", json!(60)).describe_as("The longest pause between two retries, in seconds."),
            Field::integer("concurrency_limit")
                .default(json!(1))
                .unsupported()
                .describe_as("One batch at a time per queue (Kong's default); `-1` (no queue) is refused."),
        ],
    )
    .describe_as("How entries are batched and sent (Kong's plugin queue).")
}

/// Kong's `between = { 0.001, 1000000 }` on the retry delays (fractional, so not `Field::between`).
fn retry_delay_bounds(v: &Value) -> Result<(), String> {
    match v.as_f64() {
        Some(n) if (0.001..=1_000_000.0).contains(&n) => Ok(()),
        _ => Err("value should be between 0.001 and 1000000".into()),
    }
}

/// A Kong `timeout`/`keepalive` in milliseconds: a non-negative number.
fn millis(name: &'static str, default: i64) -> Field {
    Field::number(name).default(json!(default)).check(|v| match v.as_f64() {
        Some(n) if n >= 0.0 => Ok(()),
        _ => Err("value must be a non-negative number".into()),
    })
}

/// `http-log`'s header names: a header token, never one the plugin sets itself (Kong's `match_none`).
fn http_log_header_name(v: &Value) -> Result<(), String> {
    header_token(v)?;
    match v.as_str().unwrap_or("").to_ascii_lowercase().as_str() {
        "host" => Err("cannot contain 'Host' header".into()),
        "content-length" => Err("cannot contain 'Content-Length' header".into()),
        "content-type" => Err("cannot contain 'Content-Type' header".into()),
        _ => Ok(()),
    }
}

pub fn http_log_fields() -> Vec<Field> {
    vec![
        Field::string("http_endpoint").required().check(http_url).encrypted().describe_as(
            "Where entries are sent (`http` or `https`). User info in it becomes a Basic `Authorization` header. \
             Stored sealed; referenceable in Kong.",
        ),
        Field::string("method")
            .default(json!("POST"))
            .one_of(&["POST", "PUT", "PATCH"])
            .describe_as("The method entries are sent with."),
        Field::string("content_type")
            .default(json!("application/json"))
            .one_of(&["application/json", "application/json; charset=utf-8"])
            .describe_as("The `Content-Type` of the requests."),
        millis("timeout", 10000)
            .describe_as("Milliseconds one request to the log server may take (connect, send, answer)."),
        millis("keepalive", 60000).describe_as("Milliseconds an idle connection to the log server is kept."),
        Field::integer("retry_count").describe_as("Deprecated by Kong and without effect: `queue.max_retry_time`."),
        Field::integer("queue_size")
            .describe_as("Deprecated by Kong: `queue.max_batch_size`, which it overrides when set."),
        Field::number("flush_timeout")
            .describe_as("Deprecated by Kong: `queue.max_coalescing_delay`, which it overrides when set."),
        Field::map(
            "headers",
            Field::string("name").check(http_log_header_name),
            Field::string("value").check(header_value).encrypted(),
        )
        .describe_as("Headers sent with every request to the log server (often its API key); stored sealed."),
        queue_field(),
        Field::boolean("ssl_verify")
            .default(json!(true))
            .describe_as("Verify an `https` log server's certificate against the web PKI roots."),
        Field::foreign("client_certificate", "certificates")
            .unsupported()
            .describe_as("Kong Enterprise's mTLS client certificate for the log server; only null is accepted."),
        custom_fields_by_lua(),
    ]
}

/// Kong's `custom_validator`: user info in the URL and an `Authorization` header would both set the header.
fn http_log_check(config: &Map<String, Value>, checks: &mut Checks) {
    let userinfo = config
        .get("http_endpoint")
        .and_then(Value::as_str)
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| !u.username().is_empty() || u.password().is_some());
    let authorization = config
        .get("headers")
        .and_then(Value::as_object)
        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("authorization")));
    if userinfo && authorization {
        checks.config("specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed");
    }
}

/// Kong's file name pattern: no leading or trailing space, none of `*&%\``.
fn file_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    let bad = |c: char| "*&%\\`".contains(c);
    let ok = s.chars().count() >= 2
        && !s.chars().any(bad)
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace);
    if ok { Ok(()) } else { Err("not a valid filename".into()) }
}

pub fn file_log_fields() -> Vec<Field> {
    vec![
        Field::string("path").required().check(file_name).describe_as(
            "The file each request's entry is appended to, one JSON object per line; created (mode 0644) if missing.",
        ),
        Field::boolean("reopen")
            .required()
            .default(json!(false))
            .describe_as("Close and reopen the file for every entry (after a rotation by `logrotate`, say)."),
        custom_fields_by_lua(),
    ]
}

fn port() -> Field {
    Field::integer("port").required().between(0, 65535)
}

pub fn tcp_log_fields() -> Vec<Field> {
    vec![
        Field::string("host").required().describe_as("The IP address or host name entries are sent to."),
        port().describe_as("The TCP port entries are sent to."),
        millis("timeout", 10000).describe_as("Milliseconds to connect and to send an entry."),
        millis("keepalive", 60000).describe_as("Milliseconds an idle connection is kept for the next entries."),
        Field::boolean("tls").required().default(json!(false)).describe_as("Connect with TLS."),
        Field::string("tls_sni").describe_as("The server name sent in the TLS handshake (default: `host`)."),
        Field::boolean("ssl_verify")
            .default(json!(true))
            .describe_as("With `tls`, verify the server's certificate against the web PKI roots."),
        custom_fields_by_lua(),
    ]
}

pub fn udp_log_fields() -> Vec<Field> {
    vec![
        Field::string("host").required().describe_as("The IP address or host name entries are sent to."),
        port().describe_as("The UDP port entries are sent to (one datagram per entry)."),
        millis("timeout", 10000).describe_as("Milliseconds to resolve the host and send an entry."),
        custom_fields_by_lua(),
    ]
}

const SEVERITIES: &[&str] = &["debug", "info", "notice", "warning", "err", "crit", "alert", "emerg"];
const FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user", "uucp", "local0",
    "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

pub fn syslog_fields() -> Vec<Field> {
    let severity = |name| Field::string(name).required().default(json!("info")).one_of(SEVERITIES);
    vec![
        severity("log_level").describe_as("The least severe entry written: entries below it are not logged."),
        severity("successful_severity").describe_as("The severity of requests answered 1xx–3xx."),
        severity("client_errors_severity").describe_as("The severity of requests answered 4xx."),
        severity("server_errors_severity").describe_as("The severity of requests answered 5xx."),
        Field::string("facility")
            .required()
            .default(json!("user"))
            .one_of(FACILITIES)
            .describe_as("The syslog facility."),
        custom_fields_by_lua(),
    ]
}

/// `typedefs.queue`, as the logging plugins read it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Queue {
    pub max_batch_size: u64,
    pub max_coalescing_delay: f64,
    pub max_entries: u64,
    pub max_bytes: Option<u64>,
    pub max_retry_time: f64,
    pub initial_retry_delay: f64,
    pub max_retry_delay: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpLog {
    pub http_endpoint: String,
    pub method: String,
    pub content_type: String,
    pub timeout: f64,
    pub keepalive: f64,
    pub queue_size: Option<u64>,
    pub flush_timeout: Option<f64>,
    pub headers: Option<BTreeMap<String, String>>,
    pub queue: Queue,
    pub ssl_verify: bool,
}

impl HttpLog {
    /// The batch size: the deprecated `queue_size` wins when set, as Kong maps it onto the queue.
    pub fn batch_size(&self) -> u64 {
        self.queue_size.unwrap_or(self.queue.max_batch_size).max(1)
    }

    /// How long a batch waits for more entries: the deprecated `flush_timeout` wins when set.
    pub fn flush_delay(&self) -> std::time::Duration {
        let seconds = self.flush_timeout.unwrap_or(self.queue.max_coalescing_delay);
        std::time::Duration::from_secs_f64(seconds.clamp(0.0, 3600.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileLog {
    pub path: String,
    pub reopen: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TcpLog {
    pub host: String,
    pub port: u16,
    pub timeout: f64,
    pub keepalive: f64,
    pub tls: bool,
    pub tls_sni: Option<String>,
    pub ssl_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UdpLog {
    pub host: String,
    pub port: u16,
    pub timeout: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Syslog {
    pub log_level: String,
    pub successful_severity: String,
    pub client_errors_severity: String,
    pub server_errors_severity: String,
    pub facility: String,
}

/// A syslog severity's number (RFC 5424: 0 is `emerg`, 7 `debug`).
pub fn severity_code(name: &str) -> u8 {
    match name {
        "emerg" => 0,
        "alert" => 1,
        "crit" => 2,
        "err" => 3,
        "warning" => 4,
        "notice" => 5,
        "info" => 6,
        _ => 7,
    }
}

/// A syslog facility's number (RFC 5424 and glibc's `LOG_*` values, over 8).
pub fn facility_code(name: &str) -> u8 {
    match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        other => other.strip_prefix("local").and_then(|n| n.parse::<u8>().ok()).map_or(1, |n| 16 + n.min(7)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::EntityKind;
    use crate::gateway::entities::validate_entity;

    fn plugin(name: &str, config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let entity = json!({"name": name, "config": config});
        validate_entity(EntityKind::Plugin, entity.as_object().unwrap())
            .map_err(|v| v.into_iter().map(|v| (v.path, v.message)).collect())
    }

    #[test]
    fn http_log_defaults_are_kongs() {
        let entity = plugin(HTTP_LOG, json!({"http_endpoint": "http://logs.internal:9000/bulk"})).unwrap();
        let config: HttpLog = serde_json::from_value(entity["config"].clone()).unwrap();
        assert_eq!((config.method.as_str(), config.content_type.as_str()), ("POST", "application/json"));
        assert_eq!((config.timeout, config.keepalive, config.ssl_verify), (10000.0, 60000.0, true));
        assert_eq!(config.queue.max_batch_size, 1);
        assert_eq!((config.queue.max_entries, config.queue.max_bytes), (10000, None));
        assert_eq!(config.batch_size(), 1);
        let legacy = plugin(HTTP_LOG, json!({"http_endpoint": "http://l/", "queue_size": 20, "flush_timeout": 0.5}));
        let legacy: HttpLog = serde_json::from_value(legacy.unwrap()["config"].clone()).unwrap();
        assert_eq!((legacy.batch_size(), legacy.flush_delay()), (20, std::time::Duration::from_millis(500)));
    }

    #[test]
    fn lua_and_kongs_forbidden_headers_are_refused_by_name() {
        let errors = plugin(
            HTTP_LOG,
            json!({"http_endpoint": "http://u:p@l/", "custom_fields_by_lua": {"x": "return 1"},
                "headers": {"Content-Type": "text/plain", "Authorization": "Bearer x"}}),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"config.custom_fields_by_lua"), "{errors:?}");
        assert!(errors.iter().any(|(_, m)| m == "cannot contain 'Content-Type' header"), "{errors:?}");
        let both = plugin(HTTP_LOG, json!({"http_endpoint": "http://u:p@l/", "headers": {"authorization": "x"}}));
        assert!(both.unwrap_err().iter().any(|(_, m)| m.contains("user info in 'http_endpoint'")));
        for name in [FILE_LOG, TCP_LOG, UDP_LOG, SYSLOG] {
            let config = json!({"path": "/tmp/x.log", "host": "h", "port": 1, "custom_fields_by_lua": {"a": "b"}});
            let errors = plugin(name, config).unwrap_err();
            assert!(errors.iter().any(|(p, _)| p == "config.custom_fields_by_lua"), "{name}: {errors:?}");
        }
        assert!(plugin(FILE_LOG, json!({"path": "/tmp/a b.log"})).is_ok());
        assert_eq!(plugin(FILE_LOG, json!({"path": "/tmp/*.log"})).unwrap_err()[0].1, "not a valid filename");
        assert!(plugin(TCP_LOG, json!({"host": "h"})).is_err(), "port is required");
    }

    #[test]
    fn syslog_codes_are_rfc_5424s() {
        assert_eq!((facility_code("user"), facility_code("local7"), facility_code("kern")), (1, 23, 0));
        assert_eq!((severity_code("emerg"), severity_code("info"), severity_code("debug")), (0, 6, 7));
    }
}
