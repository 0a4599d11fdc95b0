//! The plugin framework: Kong's phases, priorities and scoping.
//!
//! A plugin implements [`Plugin`]; every phase method has a no-op default. For each request the proxy walks the
//! configured plugin names in descending priority and, for each name, runs the single most specific instance for
//! the request's route, service and consumer (Kong's precedence, below). The consumer can be set by an
//! authentication plugin during `access`, so lower-priority plugins are resolved with it.
//!
//! Phases: `access` (before the upstream call; may answer instead of proxying), `response` (upstream response
//! headers, before they go to the client), `log` (once the response head is final; the body still streams).

pub mod oauth2_introspection;
pub mod request_termination;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::Full;
use serde_json::Value;

use crate::config::{CompileError, Compiled, Consumer, ServiceConfig};
use crate::router::RouteConfig;

/// The request as plugins see it in `access`: headers can be changed before they go upstream.
#[derive(Debug)]
pub struct RequestContext<'a> {
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub method: &'a http::Method,
    /// Path (normalized) and raw query; a plugin may replace the query (`hide_credentials`).
    pub path: &'a str,
    pub query: Option<Cow<'a, str>>,
    pub headers: &'a mut HeaderMap,
    /// The body when it was read whole (small form, JSON or multipart bodies); `None` when it is streamed.
    pub body: &'a mut Option<Bytes>,
    pub route: &'a Arc<RouteConfig>,
    pub service: Option<&'a Arc<ServiceConfig>>,
    pub config: &'a Compiled,
    /// Set by an authentication plugin.
    pub consumer: Option<Arc<Consumer>>,
    /// Set by an authentication plugin (Kong's `kong.client.get_credential()`).
    pub credential: Option<Credential>,
}

/// What an authentication plugin accepted a request with; for token plugins, the token itself (Kong's credential
/// id for them, which rate limiting by credential keys on). `Debug` never shows it.
#[derive(Clone)]
pub struct Credential(CredentialBytes);

#[derive(Clone)]
enum CredentialBytes {
    /// Part of a request header's value: the header's buffer is shared, not copied.
    InHeader(http::HeaderValue, std::ops::Range<usize>),
    Owned(String),
}

impl Credential {
    /// `range` of `value`'s bytes; `None` when it is out of bounds or not UTF-8.
    pub fn in_header(value: &http::HeaderValue, range: std::ops::Range<usize>) -> Option<Self> {
        std::str::from_utf8(value.as_bytes().get(range.clone())?).ok()?;
        Some(Self(CredentialBytes::InHeader(value.clone(), range)))
    }

    pub fn owned(value: String) -> Self {
        Self(CredentialBytes::Owned(value))
    }

    pub fn expose(&self) -> &str {
        match &self.0 {
            // Checked to be UTF-8 when made, so the empty fallback is never taken.
            CredentialBytes::InHeader(value, range) => {
                value.as_bytes().get(range.clone()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default()
            }
            CredentialBytes::Owned(value) => value,
        }
    }

    /// The raw bytes, without the UTF-8 check (`expose` checks again).
    pub fn expose_bytes(&self) -> &[u8] {
        match &self.0 {
            CredentialBytes::InHeader(value, range) => value.as_bytes().get(range.clone()).unwrap_or_default(),
            CredentialBytes::Owned(value) => value.as_bytes(),
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What a plugin decides in `access`.
#[derive(Debug)]
pub enum Flow {
    Continue,
    /// Answer the client now; the upstream is not called.
    Respond(Response<Full<Bytes>>),
}

/// The upstream response's status and headers, before they go to the client.
#[derive(Debug)]
pub struct ResponseContext<'a> {
    pub request_id: &'a str,
    pub status: http::StatusCode,
    pub headers: &'a mut HeaderMap,
}

#[async_trait]
pub trait Plugin: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Kong's priority; higher runs first.
    fn priority(&self) -> i32;

    /// Runs before the upstream is called, in descending priority.
    async fn access(&self, _ctx: &mut RequestContext<'_>) -> Flow {
        Flow::Continue
    }

    /// Runs on the upstream response's headers, in descending priority, for plugins whose `access` ran.
    fn response(&self, _ctx: &mut ResponseContext<'_>) {}

    /// Runs once the response head is final (before its body streams to the client), in descending priority.
    fn log(&self, _request_id: &str, _status: http::StatusCode) {}
}

/// What plugins keep across configuration changes, one per node (caches, HTTP clients).
#[derive(Debug)]
pub struct Shared {
    pub introspection: Arc<oauth2_introspection::Shared>,
}

impl Shared {
    /// The bounds of the node's introspection cache (`gateway.introspection_cache_entries` and `…_bytes`); `None`
    /// takes the default. `clock` is the wall time cached answers expire by.
    pub fn new(
        introspection_cache_entries: Option<u64>,
        introspection_cache_bytes: Option<u64>,
        clock: gatehouse_model::SharedClock,
    ) -> Self {
        use oauth2_introspection::CacheLimits;
        let limits = CacheLimits {
            entries: introspection_cache_entries.unwrap_or(CacheLimits::DEFAULT_ENTRIES),
            bytes: introspection_cache_bytes.unwrap_or(CacheLimits::DEFAULT_BYTES),
        };
        Self { introspection: Arc::new(oauth2_introspection::Shared::new(limits, clock)) }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new(None, None, gatehouse_model::SharedClock::default())
    }
}

/// Where an instance applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub route: Option<uuid::Uuid>,
    pub service: Option<uuid::Uuid>,
    pub consumer: Option<uuid::Uuid>,
}

impl Scope {
    /// Kong's precedence (`plugins_iterator.lua`), most specific first: route+service+consumer, route+consumer,
    /// service+consumer, route+service, consumer, route, service, global. Lower is more specific.
    fn rank(self) -> u8 {
        match (self.route.is_some(), self.service.is_some(), self.consumer.is_some()) {
            (true, true, true) => 0,
            (true, false, true) => 1,
            (false, true, true) => 2,
            (true, true, false) => 3,
            (false, false, true) => 4,
            (true, false, false) => 5,
            (false, true, false) => 6,
            (false, false, false) => 7,
        }
    }

    fn applies(self, route: uuid::Uuid, service: Option<uuid::Uuid>, consumer: Option<uuid::Uuid>) -> bool {
        self.route.is_none_or(|r| r == route)
            && self.service.is_none_or(|s| Some(s) == service)
            && self.consumer.is_none_or(|c| Some(c) == consumer)
    }
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub scope: Scope,
    pub plugin: Arc<dyn Plugin>,
}

/// Every enabled plugin instance, grouped by name in descending priority.
#[derive(Debug, Default)]
pub struct PluginSet {
    /// (name, priority, instances sorted most specific first)
    by_name: Vec<(&'static str, i32, Vec<Instance>)>,
}

impl PluginSet {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The plugin names in execution order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.iter().map(|(n, _, _)| *n)
    }

    /// The instance of plugin number `index` (in execution order) that applies, if any.
    pub fn resolve(
        &self,
        index: usize,
        route: uuid::Uuid,
        service: Option<uuid::Uuid>,
        consumer: Option<uuid::Uuid>,
    ) -> Option<&Arc<dyn Plugin>> {
        let (_, _, instances) = self.by_name.get(index)?;
        instances.iter().find(|i| i.scope.applies(route, service, consumer)).map(|i| &i.plugin)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

fn scope_of(v: &Value) -> Scope {
    let id = |f: &str| v.get(f).and_then(|x| x.get("id")).and_then(Value::as_str).and_then(|s| s.parse().ok());
    Scope { route: id("route"), service: id("service"), consumer: id("consumer") }
}

/// Builds the instances of every enabled plugin that serves HTTP.
pub fn build_plugins(entities: &[serde_json::Map<String, Value>], shared: &Shared) -> Result<PluginSet, CompileError> {
    let mut by_name: Vec<(&'static str, i32, Vec<Instance>)> = Vec::new();
    for entity in entities {
        let v = Value::Object(entity.clone());
        if v.get("enabled").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let serves_http = v
            .get("protocols")
            .and_then(Value::as_array)
            .is_none_or(|p| p.iter().any(|x| matches!(x.as_str(), Some("http" | "https"))));
        if !serves_http {
            continue;
        }
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        let config = v.get("config").cloned().unwrap_or(Value::Null);
        let plugin: Arc<dyn Plugin> = match name {
            n if n == gatehouse_model::gateway::plugins::request_termination::NAME => Arc::new(
                request_termination::RequestTermination::new(&config)
                    .map_err(|reason| CompileError::Plugin { name: n.into(), reason })?,
            ),
            n if n == gatehouse_model::gateway::plugins::oauth2_introspection::NAME => Arc::new(
                oauth2_introspection::OAuth2Introspection::new(&config, &shared.introspection)
                    .map_err(|reason| CompileError::Plugin { name: n.into(), reason })?,
            ),
            other => {
                return Err(CompileError::Plugin { name: other.into(), reason: "not available in this build".into() });
            }
        };
        let instance = Instance { scope: scope_of(&v), plugin: plugin.clone() };
        match by_name.iter_mut().find(|(n, _, _)| *n == plugin.name()) {
            Some((_, _, list)) => list.push(instance),
            None => by_name.push((plugin.name(), plugin.priority(), vec![instance])),
        }
    }
    for (_, _, list) in &mut by_name {
        list.sort_by_key(|i| i.scope.rank());
    }
    // Descending priority; names break ties so the order is stable.
    by_name.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    Ok(PluginSet { by_name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plugin(name: &str, scope: Value, config: Value) -> serde_json::Map<String, Value> {
        let mut v = json!({"name": name, "enabled": true, "protocols": ["http", "https"], "config": config});
        for (k, val) in scope.as_object().unwrap() {
            v[k] = val.clone();
        }
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_most_specific_instance_applies() {
        let (r, s, c) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2), uuid::Uuid::from_u128(3));
        let id = |u: uuid::Uuid| json!({"id": u.to_string()});
        let term = |code: u16| json!({"status_code": code, "echo": false});
        let set = build_plugins(
            &[
                plugin("request-termination", json!({}), term(500)),
                plugin("request-termination", json!({"service": id(s)}), term(501)),
                plugin("request-termination", json!({"route": id(r)}), term(502)),
                plugin("request-termination", json!({"consumer": id(c)}), term(503)),
                plugin("request-termination", json!({"route": id(r), "consumer": id(c)}), term(504)),
            ],
            &Shared::default(),
        )
        .unwrap();
        let code = |route, service, consumer| format!("{:?}", set.resolve(0, route, service, consumer).unwrap());
        assert!(code(r, Some(s), Some(c)).contains("504"), "route+consumer beats consumer");
        assert!(code(r, Some(s), None).contains("502"), "route beats service");
        assert!(code(uuid::Uuid::from_u128(9), Some(s), None).contains("501"));
        assert!(code(uuid::Uuid::from_u128(9), None, Some(c)).contains("503"));
        assert!(code(uuid::Uuid::from_u128(9), None, None).contains("500"), "global");
    }

    #[test]
    fn credentials_share_the_header_and_are_never_printed() {
        let value = http::HeaderValue::from_static("Bearer abc.def");
        let credential = Credential::in_header(&value, 7..14).unwrap();
        assert_eq!((credential.expose(), credential.expose_bytes()), ("abc.def", &b"abc.def"[..]));
        assert_eq!(credential.expose_bytes().as_ptr(), value.as_bytes()[7..].as_ptr(), "not copied");
        assert_eq!(format!("{credential:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Credential::owned("abc".into())), "[redacted]");
        assert!(Credential::in_header(&value, 7..15).is_none(), "out of bounds");
        let binary = http::HeaderValue::from_bytes(b"Bearer \xff").unwrap();
        assert!(Credential::in_header(&binary, 7..8).is_none(), "not UTF-8");
    }

    #[test]
    fn disabled_and_non_http_instances_are_left_out_and_unknown_plugins_refused() {
        let mut off = plugin("request-termination", json!({}), json!({"status_code": 500, "echo": false}));
        off["enabled"] = json!(false);
        let mut tcp = plugin("request-termination", json!({}), json!({"status_code": 500, "echo": false}));
        tcp["protocols"] = json!(["tcp"]);
        assert!(build_plugins(&[off, tcp], &Shared::default()).unwrap().is_empty());
        assert!(build_plugins(&[plugin("made-up", json!({}), json!({}))], &Shared::default()).is_err());
    }
}
