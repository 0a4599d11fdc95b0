//! Kong's log serializer (`kong.log.serialize()`), shared by the logging plugins (`http-log`, `file-log`,
//! `tcp-log`, `udp-log`, `syslog`): one JSON object per request with Kong's field names.
//!
//! The proxy copies the request's head ([`RequestHead`]) when it arrives, only when the configuration has one of
//! these plugins (`PluginSet::serializes`), so routes without them pay one branch. Credentials are removed at that
//! copy, before any plugin sees it: Kong replaces `authorization` and `proxy-authorization` with `REDACTED`;
//! Gatehouse does the same to those, to `cookie`, to every header named like a credential parameter (`apikey`,
//! `x-api-key`, `access_token`, …) and to the header and query names the configuration's `key-auth` instances read
//! keys from (`key_names`), in the headers and in `uri`, `url`, `querystring` and `upstream_uri` alike. The
//! response's `set-cookie` is redacted too. Nothing of an authentication plugin's credential is kept.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::{HeaderMap, Uri};
use serde::Serialize;
use serde_json::{Map, Value};

use gatehouse_model::gateway::snapshot;

use super::{LogContext, Outcome};

/// What replaces a credential's value (Kong's word for it).
pub const REDACTED: &str = "REDACTED";

/// Header names whose values are credentials whatever the configuration says.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"];

/// The request as it arrived, with credentials already redacted: what the log entry's `request` is made of.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Path and query as the client sent them.
    pub uri: String,
    pub url: String,
    pub querystring: Map<String, Value>,
    pub headers: Map<String, Value>,
    /// nginx's `request_length`: the request line, the headers and the declared body.
    pub size: u64,
    pub tls: bool,
}

/// The names (lower case) whose values are credentials: the fixed ones, `model::redact`'s query parameters and
/// those the configuration's `key-auth` instances read.
#[derive(Debug, Clone, Default)]
pub struct SecretNames(Box<[String]>);

impl SecretNames {
    pub fn new(configured: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = SECRET_HEADERS.iter().map(|s| (*s).to_owned()).collect();
        names.extend(gatehouse_model::redact::SECRET_PARAMS.iter().map(|s| (*s).to_owned()));
        names.extend(configured.into_iter().map(|n| n.to_ascii_lowercase()));
        names.sort_unstable();
        names.dedup();
        Self(names.into_boxed_slice())
    }

    /// Whether `name` names a credential; `-` and `_` are the same here (`x-api-key`, `x_api_key`).
    pub fn contains(&self, name: &str) -> bool {
        let same = |a: &str| {
            a.len() == name.len()
                && a.bytes().zip(name.bytes()).all(|(x, y)| {
                    let fold = |b: u8| if b == b'_' { b'-' } else { b.to_ascii_lowercase() };
                    fold(x) == fold(y)
                })
        };
        self.0.iter().any(|n| same(n))
    }

    /// `query` with every credential's value replaced.
    fn redact_query(&self, query: &str) -> String {
        let mut out = String::with_capacity(query.len());
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (name, value) = pair.split_once('=').map_or((pair, None), |(n, v)| (n, Some(v)));
            let decoded: String = form_urlencoded::parse(name.as_bytes()).map(|(k, _)| k.into_owned()).collect();
            match value {
                _ if self.contains(&decoded) => {
                    let _ = write!(out, "{name}={REDACTED}");
                }
                Some(value) => {
                    let _ = write!(out, "{name}={value}");
                }
                None => out.push_str(name),
            }
        }
        out
    }

    /// A path and query with the query's credentials replaced.
    pub fn redact_target(&self, target: &str) -> String {
        match target.split_once('?') {
            Some((path, query)) => format!("{path}?{}", self.redact_query(query)),
            None => target.to_owned(),
        }
    }
}

impl RequestHead {
    /// The head of `request`, received on `port` (over TLS when `tls`), redacted with `secrets`.
    pub fn capture(
        method: &http::Method,
        uri: &Uri,
        headers: &HeaderMap,
        tls: bool,
        port: u16,
        secrets: &SecretNames,
    ) -> Self {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let redacted = secrets.redact_target(target);
        let host = uri
            .host()
            .map(str::to_owned)
            .or_else(|| headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).map(|h| host_of(h).to_owned()))
            .unwrap_or_default();
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{host}:{port}{redacted}");
        let mut querystring = Map::new();
        if let Some(query) = uri.query() {
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                // Kong's `get_query`: a name without `=` is `true`, a repeated name an array.
                let raw_has_value = query.split('&').any(|p| p.split_once('=').is_some_and(|(n, _)| n == name));
                let value = if secrets.contains(&name) {
                    Value::String(REDACTED.into())
                } else if value.is_empty() && !raw_has_value {
                    Value::Bool(true)
                } else {
                    Value::String(value.into_owned())
                };
                add_value(&mut querystring, name.into_owned(), value);
            }
        }
        let mut head_bytes = method.as_str().len() + target.len() + 12;
        let mut map = Map::new();
        for (name, value) in headers {
            head_bytes += name.as_str().len() + value.len() + 4;
            let value = if secrets.contains(name.as_str()) {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            add_value(&mut map, name.as_str().to_owned(), Value::String(value));
        }
        let body = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Self { uri: redacted, url, querystring, headers: map, size: head_bytes as u64 + 2 + body, tls }
    }
}

/// The host of a `Host` value, without its port (an IPv6 literal keeps its brackets).
fn host_of(value: &str) -> &str {
    if value.starts_with('[') {
        return value.split_inclusive(']').next().unwrap_or(value);
    }
    value.rsplit_once(':').map_or(value, |(host, _)| host)
}

/// ngx's `get_headers` / `get_query` shape: one value, or an array when the name repeats.
fn add_value(map: &mut Map<String, Value>, name: String, value: Value) {
    match map.get_mut(&name) {
        Some(Value::Array(values)) => values.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            map.insert(name, value);
        }
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    request: Request<'a>,
    upstream_uri: &'a str,
    upstream_status: String,
    response: Response,
    latencies: Latencies,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a snapshot::Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a snapshot::Service>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<Consumer<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticated_entity: Option<AuthenticatedEntity>,
    client_ip: IpAddr,
    started_at: i64,
    source: &'static str,
}

#[derive(Serialize)]
struct Request<'a> {
    id: &'a str,
    uri: &'a str,
    url: &'a str,
    querystring: &'a Map<String, Value>,
    method: &'a str,
    headers: &'a Map<String, Value>,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
}

#[derive(Serialize)]
struct Tls {
    client_verify: &'static str,
}

#[derive(Serialize)]
struct Response {
    status: u16,
    headers: Map<String, Value>,
    size: u64,
}

#[derive(Serialize)]
struct Latencies {
    kong: u64,
    proxy: i64,
    request: u64,
    receive: u64,
}

#[derive(Serialize)]
struct Consumer<'a> {
    id: uuid::Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_id: Option<&'a str>,
}

/// Kong's `{id, consumer_id}` of the credential; Gatehouse knows the consumer only, so `id` is absent.
#[derive(Serialize)]
struct AuthenticatedEntity {
    consumer_id: uuid::Uuid,
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The response's headers as Kong logs them (`set-cookie` redacted), and its size (head and declared body).
fn response(ctx: &LogContext<'_>) -> Response {
    let mut headers = Map::new();
    let mut size = 17usize;
    for (name, value) in ctx.response_headers {
        size += name.as_str().len() + value.len() + 4;
        let value = if *name == http::header::SET_COOKIE {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        add_value(&mut headers, name.as_str().to_owned(), Value::String(value));
    }
    Response { status: ctx.status.as_u16(), headers, size: (size + 2) as u64 + ctx.response_bytes.unwrap_or(0) }
}

/// The request's entry as JSON (without a trailing newline), or `None` when the proxy kept no copy of its head
/// (never for a configuration with a logging plugin). `now_micros` is the wall clock now: `started_at` is
/// counted back from it.
pub fn serialize(ctx: &LogContext<'_>, now_micros: i64) -> Option<Vec<u8>> {
    let head = ctx.request?;
    let request_ms = millis(ctx.latencies.request);
    let proxied = matches!(ctx.outcome, Outcome::Proxied);
    let entry = Entry {
        request: Request {
            id: ctx.request_id,
            uri: &head.uri,
            url: &head.url,
            querystring: &head.querystring,
            method: ctx.method.as_str(),
            headers: &head.headers,
            size: head.size,
            tls: head.tls.then_some(Tls { client_verify: "NONE" }),
        },
        upstream_uri: ctx.upstream_uri.unwrap_or_default(),
        upstream_status: if proxied { ctx.status.as_u16().to_string() } else { String::new() },
        response: response(ctx),
        latencies: Latencies {
            kong: millis(ctx.latencies.kong),
            proxy: ctx.latencies.upstream.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            request: request_ms,
            receive: 0,
        },
        route: ctx.route.and_then(|r| r.entity.as_deref()),
        service: ctx.service.map(|s| &s.spec),
        consumer: ctx.consumer.map(|c| Consumer {
            id: c.id,
            username: c.username.as_deref(),
            custom_id: c.custom_id.as_deref(),
        }),
        authenticated_entity: ctx.consumer.map(|c| AuthenticatedEntity { consumer_id: c.id }),
        client_ip: ctx.client_ip,
        started_at: now_micros / 1000 - i64::try_from(request_ms).unwrap_or(0),
        source: if proxied { "upstream" } else { "kong" },
    };
    serde_json::to_vec(&entry).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str, headers: &[(&str, &str)], secrets: &SecretNames) -> RequestHead {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        RequestHead::capture(&http::Method::GET, &target.parse().unwrap(), &map, false, 8000, secrets)
    }

    #[test]
    fn credentials_are_redacted_in_headers_and_queries() {
        let secrets = SecretNames::new(["X-My-Key".to_owned()]);
        let head = head(
            "/a?apikey=k1&x-my-key=k2&page=2&flag&tag=a&tag=b",
            &[
                ("host", "api.example.com:8000"),
                ("authorization", "Bearer abc"),
                ("proxy-authorization", "Basic xyz"),
                ("cookie", "session=s"),
                ("x-my-key", "k3"),
                ("x-api-key", "k4"),
                ("accept", "text/plain"),
                ("accept", "application/json"),
            ],
            &secrets,
        );
        let text = serde_json::to_string(&(&head.uri, &head.url, &head.querystring, &head.headers)).unwrap();
        for secret in ["abc", "xyz", "session=s", "k1", "k2", "k3", "k4"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(head.uri, "/a?apikey=REDACTED&x-my-key=REDACTED&page=2&flag&tag=a&tag=b");
        assert_eq!(head.url, "http://api.example.com:8000/a?apikey=REDACTED&x-my-key=REDACTED&page=2&flag&tag=a&tag=b");
        assert_eq!(head.headers["authorization"], "REDACTED");
        assert_eq!(head.headers["accept"], serde_json::json!(["text/plain", "application/json"]));
        assert_eq!(head.querystring["page"], "2");
        assert_eq!(head.querystring["flag"], true);
        assert_eq!(head.querystring["tag"], serde_json::json!(["a", "b"]));
        assert_eq!(head.querystring["apikey"], "REDACTED");
    }

    #[test]
    fn names_fold_case_and_separators() {
        let secrets = SecretNames::new(Vec::new());
        assert!(secrets.contains("X-API-KEY") && secrets.contains("x_api_key") && secrets.contains("Access_Token"));
        assert!(!secrets.contains("accept"));
        assert_eq!(host_of("[::1]:80"), "[::1]");
        assert_eq!(host_of("example.com"), "example.com");
    }
}
