//! The plugin framework: Kong's phases, priorities and scoping.
//!
//! A plugin implements [`Plugin`]; every phase method has a no-op default. For each request the proxy walks the
//! configured plugin names in descending priority and, for each name, runs the single most specific instance for
//! the request's route, service and consumer (Kong's precedence, below). The consumer can be set by an
//! authentication plugin during `access`, so lower-priority plugins are resolved with it.
//!
//! Phases: `access` (before the upstream call; may answer instead of proxying), `response` (upstream response
//! headers, before they go to the client), `log` (once the response head is final; the body still streams).

//! The plugin framework: one registry, Kong's phases, priorities and scoping.
//!
//! A plugin is a folder under `plugins/` holding a [`PluginDef`]: its schema (`model`'s `PluginInfo`: name,
//! priority, config fields, cross-field checks), the phases it implements and a factory that turns a validated
//! config into a [`Plugin`]. [`BUILTIN`] lists them; adding a plugin is its folder plus one line there (and its
//! `PluginInfo` in `model::gateway::plugins::PLUGINS`, which a test below holds to the same set).
//!
//! Phases, run by the phase runner (`phases.rs`): `rewrite` (global instances, before routing), `access` (before the upstream
//! call; may answer instead of proxying), `response` (the response head, before it goes to the client) and `log`
//! (once per request, whatever its outcome). For each request the runner walks the plugin names in descending
//! priority and, for each, runs the single most specific instance for the request's route, service and consumer
//! (Kong's precedence, below). An authentication plugin may set the consumer during `access`, so lower-priority
//! plugins are resolved with it.

pub mod acl;
pub mod auth;
pub mod basic_auth;
pub mod correlation_id;
pub mod cors;
pub mod file_log;
pub mod http_log;
pub mod ip_restriction;
pub mod jwt;
pub mod key_auth;
pub mod log_queue;
pub mod multipart;
pub mod oauth2_introspection;
pub mod openid_connect;
pub mod opentelemetry;
#[cfg(test)]
pub(crate) mod probe;
pub mod prometheus;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_transformer;
pub mod serializer;
pub mod syslog;
pub mod tcp_log;
pub mod token_client;
pub mod udp_log;
pub mod upstream_oauth;

use std::any::Any;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::Full;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::PluginInfo;
use gatehouse_model::gateway::snapshot::PluginInstance;
use gatehouse_model::metrics::gatehouse::GatehouseMetrics;

use crate::consumers::{Consumer, Consumers};
use crate::error::CompileError;
use crate::error::ProxyError;
use crate::router::RouteConfig;
use crate::service::ServiceConfig;

/// One plugin the gateway can run.
#[derive(Debug)]
pub struct PluginDef {
    /// Name, priority, config schema and checks: what the control plane validates with.
    pub info: &'static PluginInfo,
    /// The phases the plugin implements; the runner skips the others without a call.
    pub phases: Phases,
    /// Builds an instance from a config that validation accepted (every field present).
    pub build: Factory,
}

/// Makes a plugin instance from its validated config and the node's shared plugin state. As Kong's plugin
/// iterator does, the config also carries the instance's scope: `route_id`, `service_id` and `consumer_id` (a
/// UUID string, or null), which plugins that key state by scope read (`rate-limiting`'s counters).
pub type Factory = fn(&Map<String, Value>, &Shared) -> Result<Arc<dyn Plugin>, String>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    pub rewrite: bool,
    pub access: bool,
    pub response: bool,
    pub log: bool,
}

/// The plugins this build runs, in no particular order.
pub const BUILTIN: &[&PluginDef] = &[
    &acl::PLUGIN,
    &basic_auth::PLUGIN,
    &correlation_id::PLUGIN,
    &cors::PLUGIN,
    &file_log::PLUGIN,
    &http_log::PLUGIN,
    &ip_restriction::PLUGIN,
    &jwt::PLUGIN,
    &key_auth::PLUGIN,
    &oauth2_introspection::PLUGIN,
    &openid_connect::PLUGIN,
    &opentelemetry::PLUGIN,
    &prometheus::PLUGIN,
    &rate_limiting::PLUGIN,
    &request_size_limiting::PLUGIN,
    &request_termination::PLUGIN,
    &request_transformer::PLUGIN,
    &response_transformer::PLUGIN,
    &syslog::PLUGIN,
    &tcp_log::PLUGIN,
    &udp_log::PLUGIN,
    &upstream_oauth::PLUGIN,
];

/// The plugins a gateway can run: [`BUILTIN`], plus any a test adds.
#[derive(Debug, Clone)]
pub struct Registry {
    defs: Vec<&'static PluginDef>,
}

impl Registry {
    pub fn builtin() -> Self {
        Self { defs: BUILTIN.to_vec() }
    }

    pub fn with(mut self, def: &'static PluginDef) -> Self {
        self.defs.retain(|d| d.info.name != def.info.name);
        self.defs.push(def);
        self
    }

    pub fn get(&self, name: &str) -> Option<&'static PluginDef> {
        self.defs.iter().copied().find(|d| d.info.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.defs.iter().map(|d| d.info.name)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

/// Per-request values a plugin keeps between its phases (Kong's `kong.ctx.plugin`): one typed slot per plugin,
/// allocated only when a plugin stores something.
#[derive(Debug, Default)]
pub struct Slots(Vec<(&'static str, Box<dyn Any + Send + Sync>)>);

impl Slots {
    pub fn get<T: Any>(&self, plugin: &'static str) -> Option<&T> {
        self.0.iter().find(|(name, _)| *name == plugin).and_then(|(_, value)| value.downcast_ref())
    }

    pub fn set<T: Any + Send + Sync>(&mut self, plugin: &'static str, value: T) {
        match self.0.iter_mut().find(|(name, _)| *name == plugin) {
            Some((_, slot)) => *slot = Box::new(value),
            None => self.0.push((plugin, Box::new(value))),
        }
    }
}

/// The request before routing, as global plugins see it in `rewrite`.
#[derive(Debug)]
pub struct RewriteContext<'a> {
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub method: &'a http::Method,
    pub headers: &'a mut HeaderMap,
    pub slots: &'a mut Slots,
}

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
    /// The configuration's consumers, for authentication plugins' lookups.
    pub consumers: &'a Consumers,
    /// Set by an authentication plugin.
    pub consumer: Option<Arc<Consumer>>,
    /// Set by an authentication plugin (Kong's `kong.client.get_credential()`).
    pub credential: Option<Credential>,
    pub slots: &'a mut Slots,
    pub connection: Connection,
    /// How the client framed its body, before the proxy read it (a chunked body read whole gets a
    /// `Content-Length`, and `Transfer-Encoding` never reaches plugins).
    pub framing: Framing,
    /// The regex path the route matched with, for plugins that read its captures (`uri_captures`).
    pub path_regex: Option<&'a regex::Regex>,
    /// Set by a plugin: changes to the upstream request beyond headers and query (`request-transformer`). Boxed,
    /// and allocated only when a plugin makes one, so requests whose plugins change nothing carry one pointer.
    pub upstream: Option<Box<UpstreamChanges>>,
    /// Set by a plugin (`request-size-limiting`): the most bytes a streamed body (`body` is `None`) may carry. The
    /// proxy counts them as they stream and ends the request with Kong's 413 past it.
    pub body_limit: Option<u64>,
    /// The request's trace when `opentelemetry` sampled it: plugins add the spans of calls they make.
    pub trace: Option<Box<crate::trace::Trace>>,
}

/// The routed request, as `opentelemetry` sees it when it decides whether to trace it (before `access`).
#[derive(Debug)]
pub struct TraceStart<'a> {
    /// The headers that go upstream: the incoming `traceparent` is read here and the new one written.
    pub headers: &'a mut HeaderMap,
    /// When the request arrived.
    pub started: tokio::time::Instant,
    pub method: &'a http::Method,
    pub scheme: &'static str,
    pub host: &'a str,
    /// The request target as the client sent it (path and query).
    pub target: &'a str,
    pub version: http::Version,
    /// The client's address (`X-Forwarded-For` from trusted proxies) and the connection's peer.
    pub client_ip: IpAddr,
    pub peer_ip: IpAddr,
    pub request_id: &'a str,
}

/// The client connection a request came on: what Kong reads from nginx's variables (`$server_addr`,
/// `$server_port`, `$connection`, `$connection_requests`; `correlation-id`'s `tracker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The address the connection was accepted on.
    pub local: SocketAddr,
    /// The connection's serial number on its worker, from 1.
    pub serial: u64,
    /// Requests made on the connection so far, this one included (refused ones too, as nginx counts them).
    pub requests: u64,
}

/// What a plugin changed in the upstream request, applied when the proxy composes it.
#[derive(Debug, Default)]
pub struct UpstreamChanges {
    /// The method (`http_method`).
    pub method: Option<http::Method>,
    /// The whole path, instead of the one routing made (Kong's `set_path`: the service's path not prepended).
    pub path: Option<String>,
    /// The `Host`, whatever the route's `preserve_host` says.
    pub host: Option<http::HeaderValue>,
}

impl RequestContext<'_> {
    /// The upstream changes, made on first use.
    pub fn upstream_mut(&mut self) -> &mut UpstreamChanges {
        self.upstream.get_or_insert_with(Default::default)
    }
}

/// How the client framed its request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`, as the client sent it.
    Length(u64),
    /// HTTP/1 `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: no body over HTTP/1, a body of unannounced length over HTTP/2.
    Unannounced,
}

/// Registered during `response` to rewrite the whole body (defined with the body types, which run it).
pub use crate::body::BodyFilter;

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

/// The response head, before it goes to the client: the upstream's, or one the gateway or a plugin made.
#[derive(Debug)]
pub struct ResponseContext<'a> {
    pub request_id: &'a str,
    pub status: http::StatusCode,
    pub headers: &'a mut HeaderMap,
    pub consumer: Option<&'a Consumer>,
    pub slots: &'a mut Slots,
    pub connection: Connection,
    /// Filters of the whole body, in the order plugins registered them; empty (and unallocated) for most.
    pub body_filters: &'a mut Vec<Arc<dyn BodyFilter>>,
    /// The request's trace, when it is sampled.
    pub trace: Option<&'a crate::trace::Trace>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered.
    Proxied,
    /// A plugin answered in `access` (an authentication failure, `request-termination`).
    Answered { plugin: &'static str },
    /// The gateway answered with an error of its own (no route, upstream failure, bad request, ...).
    Failed(ProxyError),
    /// The route takes HTTPS only: 426, or the route's redirect.
    HttpsRequired,
}

/// Kong's three latencies: the gateway's own time, the upstream's (to its response head) and the whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latencies {
    pub kong: Duration,
    pub upstream: Option<Duration>,
    pub request: Duration,
}

/// The finished request, as plugins see it in `log`.
#[derive(Debug)]
pub struct LogContext<'a> {
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub method: &'a http::Method,
    pub status: http::StatusCode,
    pub route: Option<&'a RouteConfig>,
    pub service: Option<&'a ServiceConfig>,
    pub consumer: Option<&'a Consumer>,
    pub latencies: Latencies,
    pub outcome: Outcome,
    pub slots: &'a Slots,
    /// The request's and the response's declared body lengths (`Content-Length`); `None` when not declared
    /// (chunked, or no body). `log` runs before the body is sent, so these are what is known then.
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
    /// The request's trace, when it is sampled.
    pub trace: Option<&'a crate::trace::Trace>,
    /// The request's head as it arrived, credentials redacted: kept only when the configuration has a plugin
    /// that serializes requests (`http-log`, `file-log`, …), `None` otherwise.
    pub request: Option<&'a serializer::RequestHead>,
    /// The path and query sent upstream (redacted as `request`), when the request was proxied and serialized.
    pub upstream_uri: Option<&'a str>,
    /// The final response head's headers.
    pub response_headers: &'a HeaderMap,
}

/// A plugin instance. Every phase has a no-op default; [`PluginDef::phases`] says which ones the runner calls.
#[async_trait]
pub trait Plugin: Send + Sync + std::fmt::Debug {
    /// Before routing, for global instances only (Kong's `rewrite`).
    fn rewrite(&self, _ctx: &mut RewriteContext<'_>) {}

    /// Before the upstream is called, in descending priority.
    async fn access(&self, _ctx: &mut RequestContext<'_>) -> Flow {
        Flow::Continue
    }

    /// On the response head, in descending priority, for the plugins whose `access` ran.
    fn response(&self, _ctx: &mut ResponseContext<'_>) {}

    /// Once per request, whatever the outcome, in descending priority: the plugins whose `access` ran, or, when
    /// the request ended before `access`, the instances that apply to what was known of it by then.
    fn log(&self, _ctx: &LogContext<'_>) {}

    /// `opentelemetry` only: whether to trace the routed request, before `access`. `None` (unsampled) must cost
    /// no allocation.
    fn start_trace(&self, _request: &mut TraceStart<'_>) -> Option<Box<crate::trace::Trace>> {
        None
    }
}

/// What plugins keep across configuration changes, one per node (caches, HTTP clients).
#[derive(Debug)]
pub struct Shared {
    pub introspection: Arc<oauth2_introspection::Shared>,
    /// `openid-connect`'s issuers' keys, IdP clients and caches.
    pub openid_connect: Arc<openid_connect::Shared>,
    /// `rate-limiting`'s counters, whatever the policy.
    pub counters: crate::counters::CounterStores,
    /// `rate-limiting`'s node-wide state (how often a failing store is logged).
    pub rate_limiting: Arc<rate_limiting::NodeState>,
    /// The node's wall clock (the proxy's injectable clock): `correlation-id`'s `tracker` time, rate-limiting's
    /// windows; tests move it.
    pub clock: gatehouse_model::SharedClock,
    /// The HMAC key `keyauth_credentials` are hashed with (derived from the master key by the node, which hands
    /// over this key only). `None` (tests, a node without one) refuses configurations that use `key-auth`.
    pub key_auth: Option<aws_lc_rs::hmac::Key>,
    /// Tokens the gateway gets for itself or for callers (`upstream-oauth`), cached across configuration changes.
    pub tokens: Arc<token_client::TokenClient>,
    /// `prometheus`'s families: the node's, so counts survive configuration changes; `/metrics` renders them.
    pub metrics: Arc<prometheus::ProxyMetrics>,
    /// `opentelemetry`'s exporters (queues and sender tasks), shared by instances with the same settings.
    pub opentelemetry: Arc<opentelemetry::export::Exporters>,
    /// The logging plugins' queues and senders (`http-log`'s, shared by instances with the same settings) and
    /// their entry counts.
    pub log_queues: Arc<log_queue::Queues>,
    /// The local syslog socket `syslog` writes to (`/dev/log`; tests point it elsewhere).
    pub syslog_socket: std::path::PathBuf,
    /// The node's `gatehouse_` families (configuration loads, the introspection cache and IdP calls).
    pub gatehouse: Arc<GatehouseMetrics>,
}

impl Shared {
    /// The bounds of the node's introspection cache (`gateway.introspection_cache_entries` and `…_bytes`); `None`
    /// takes the default. `clock` is the wall time cached answers expire by.
    pub fn new(
        introspection_cache_entries: Option<u64>,
        introspection_cache_bytes: Option<u64>,
        clock: gatehouse_model::SharedClock,
        gatehouse: Arc<GatehouseMetrics>,
    ) -> Self {
        use oauth2_introspection::CacheLimits;
        let limits = CacheLimits {
            entries: introspection_cache_entries.unwrap_or(CacheLimits::DEFAULT_ENTRIES),
            bytes: introspection_cache_bytes.unwrap_or(CacheLimits::DEFAULT_BYTES),
        };
        Self {
            introspection: Arc::new(oauth2_introspection::Shared::new(limits, clock.clone(), gatehouse.clone())),
            openid_connect: Arc::new(openid_connect::Shared::new(clock.clone())),
            counters: crate::counters::CounterStores::new(None, clock.clone()),
            rate_limiting: Arc::default(),
            tokens: Arc::new(token_client::TokenClient::new(token_client::DEFAULT_CAPACITY, clock.clone())),
            clock,
            key_auth: None,
            metrics: Arc::default(),
            opentelemetry: Arc::default(),
            log_queues: Arc::default(),
            syslog_socket: syslog::DEFAULT_SOCKET.into(),
            gatehouse,
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new(None, None, gatehouse_model::SharedClock::default(), Arc::default())
    }
}

/// Where an instance applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    pub route: Option<uuid::Uuid>,
    pub service: Option<uuid::Uuid>,
    pub consumer: Option<uuid::Uuid>,
}

impl Scope {
    pub const GLOBAL: Scope = Scope { route: None, service: None, consumer: None };

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

    /// The scopes an instance can have to apply to a request with these entities, most specific first: the
    /// scopes of [`Self::rank`]'s order whose every set field the request has.
    fn candidates(
        route: Option<uuid::Uuid>,
        service: Option<uuid::Uuid>,
        consumer: Option<uuid::Uuid>,
    ) -> impl Iterator<Item = Scope> {
        const ORDER: [(bool, bool, bool); 8] = [
            (true, true, true),
            (true, false, true),
            (false, true, true),
            (true, true, false),
            (false, false, true),
            (true, false, false),
            (false, true, false),
            (false, false, false),
        ];
        ORDER.into_iter().filter_map(move |(r, s, c)| {
            let pick = |wanted: bool, id: Option<uuid::Uuid>| if wanted { id.map(Some) } else { Some(None) };
            Some(Scope { route: pick(r, route)?, service: pick(s, service)?, consumer: pick(c, consumer)? })
        })
    }

    fn applies(self, route: Option<uuid::Uuid>, service: Option<uuid::Uuid>, consumer: Option<uuid::Uuid>) -> bool {
        self.route.is_none_or(|r| Some(r) == route)
            && self.service.is_none_or(|s| Some(s) == service)
            && self.consumer.is_none_or(|c| Some(c) == consumer)
    }
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub scope: Scope,
    pub plugin: Arc<dyn Plugin>,
}

/// Every enabled instance of one plugin, most specific first.
#[derive(Debug)]
pub struct PluginGroup {
    pub def: &'static PluginDef,
    instances: Vec<Instance>,
    /// With many instances, where each scope's first instance is: a request then looks up the (at most eight)
    /// scopes that could apply to it instead of testing every instance. Few instances are scanned, which costs
    /// less than hashing.
    by_scope: Option<std::collections::HashMap<Scope, usize>>,
}

impl PluginGroup {
    /// Up to this many instances a group is scanned.
    const SCANNED: usize = 8;

    fn new(def: &'static PluginDef, mut instances: Vec<Instance>) -> Self {
        instances.sort_by_key(|i| i.scope.rank());
        let by_scope = (instances.len() > Self::SCANNED).then(|| {
            let mut map = std::collections::HashMap::with_capacity(instances.len());
            for (at, instance) in instances.iter().enumerate() {
                map.entry(instance.scope).or_insert(at);
            }
            map
        });
        Self { def, instances, by_scope }
    }

    /// The most specific instance that applies: the first in rank order (a scan finds the same one, since the
    /// instances are sorted by rank and, within a rank, only one scope can apply to a request).
    fn resolve(
        &self,
        route: Option<uuid::Uuid>,
        service: Option<uuid::Uuid>,
        consumer: Option<uuid::Uuid>,
    ) -> Option<&Instance> {
        match &self.by_scope {
            None => self.instances.iter().find(|i| i.scope.applies(route, service, consumer)),
            Some(map) => Scope::candidates(route, service, consumer)
                .find_map(|scope| map.get(&scope))
                .and_then(|at| self.instances.get(*at)),
        }
    }
}

/// Every enabled plugin instance, grouped by plugin in descending priority.
#[derive(Debug, Default)]
pub struct PluginSet {
    groups: Vec<PluginGroup>,
    /// Global instances of plugins with a `rewrite` phase, in execution order.
    rewrite: Vec<(&'static str, Arc<dyn Plugin>)>,
    /// The group of `opentelemetry`, the plugin that decides whether a request is traced; `None` costs nothing.
    tracer: Option<usize>,
    /// Whether a plugin serializes requests (the logging plugins), and the names whose values it must not see.
    serializes: Option<serializer::SecretNames>,
}

impl PluginSet {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The plugin names in execution order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.groups.iter().map(|g| g.def.info.name)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn def(&self, index: usize) -> Option<&'static PluginDef> {
        self.groups.get(index).map(|g| g.def)
    }

    /// The instance of plugin number `index` (in execution order) that applies, if any. Without a route (the
    /// request matched none) only global and consumer-only instances can apply.
    pub fn resolve(
        &self,
        index: usize,
        route: Option<uuid::Uuid>,
        service: Option<uuid::Uuid>,
        consumer: Option<uuid::Uuid>,
    ) -> Option<&Arc<dyn Plugin>> {
        self.groups.get(index)?.resolve(route, service, consumer).map(|i| &i.plugin)
    }

    pub fn rewrite(&self) -> &[(&'static str, Arc<dyn Plugin>)] {
        &self.rewrite
    }

    /// The index of `opentelemetry`'s instances, when the configuration has any.
    pub fn tracer(&self) -> Option<usize> {
        self.tracer
    }

    /// When a plugin of the configuration serializes requests: the header and parameter names whose values the
    /// copy of the request must not keep. `None` (no such plugin) costs the proxy nothing.
    pub fn serializes(&self) -> Option<&serializer::SecretNames> {
        self.serializes.as_ref()
    }
}

/// Builds the instances of every enabled plugin that serves HTTP. A plugin the registry does not hold refuses
/// the whole configuration: running without an authentication plugin would open its routes.
pub fn build_plugins(
    instances: &[PluginInstance],
    shared: &Shared,
    registry: &Registry,
) -> Result<PluginSet, CompileError> {
    let mut built = Vec::new();
    for entity in instances.iter().filter(|p| p.enabled && p.serves_http()) {
        let def = plugin_def(entity, registry)?;
        built.push((def, scope_of(entity), build_instance(def, entity, shared)?));
    }
    Ok(PluginSet::assemble(built, instances))
}

/// The definition of an instance's plugin; a name this build lacks is an error (see [`build_plugins`]).
pub fn plugin_def(entity: &PluginInstance, registry: &Registry) -> Result<&'static PluginDef, CompileError> {
    registry
        .get(&entity.name)
        .ok_or_else(|| CompileError::Plugin { name: entity.name.clone(), reason: "not available in this build".into() })
}

/// One instance from its entity. What it builds depends on the entity and the node's `shared` state alone, so an
/// unchanged entity may keep its instance across configurations (`config::Compiler`).
pub fn build_instance(
    def: &'static PluginDef,
    entity: &PluginInstance,
    shared: &Shared,
) -> Result<Arc<dyn Plugin>, CompileError> {
    let mut config = entity.config.clone();
    for (key, id) in [("route_id", entity.route), ("service_id", entity.service), ("consumer_id", entity.consumer)] {
        config.insert(key.to_owned(), id.map_or(Value::Null, |id| Value::String(id.to_string())));
    }
    (def.build)(&config, shared).map_err(|reason| CompileError::Plugin { name: entity.name.clone(), reason })
}

pub(crate) fn scope_of(instance: &PluginInstance) -> Scope {
    Scope { route: instance.route, service: instance.service, consumer: instance.consumer }
}

impl PluginSet {
    /// Groups built instances by plugin, in descending priority, each group most specific first.
    /// `entities`: the configuration's plugin entities, which say what a logging plugin's copy of the request must
    /// not keep (`key-auth`'s `key_names`).
    pub fn assemble(built: Vec<(&'static PluginDef, Scope, Arc<dyn Plugin>)>, entities: &[PluginInstance]) -> Self {
        let mut by_name: Vec<(&'static PluginDef, Vec<Instance>)> = Vec::new();
        for (def, scope, plugin) in built {
            let instance = Instance { scope, plugin };
            match by_name.iter_mut().find(|(d, _)| d.info.name == def.info.name) {
                Some((_, instances)) => instances.push(instance),
                None => by_name.push((def, vec![instance])),
            }
        }
        let mut groups: Vec<PluginGroup> =
            by_name.into_iter().map(|(def, instances)| PluginGroup::new(def, instances)).collect();
        // Descending priority; names break ties so the order is stable.
        groups.sort_by(|a, b| {
            b.def.info.priority.cmp(&a.def.info.priority).then_with(|| a.def.info.name.cmp(b.def.info.name))
        });
        let rewrite = groups
            .iter()
            .filter(|g| g.def.phases.rewrite)
            .filter_map(|g| {
                let global = g.instances.iter().find(|i| i.scope == Scope::GLOBAL)?;
                Some((g.def.info.name, global.plugin.clone()))
            })
            .collect();
        let tracer = groups.iter().position(|g| g.def.info.name == opentelemetry::PLUGIN.info.name);
        let serializes =
            groups.iter().any(|g| gatehouse_model::gateway::plugins::logging::serializes(g.def.info.name)).then(|| {
                // `key-auth`'s `key_names` are headers and query parameters that carry keys.
                let configured = entities
                    .iter()
                    .filter(|p| p.enabled && p.name == key_auth::PLUGIN.info.name)
                    .filter_map(|p| p.config.get("key_names").and_then(Value::as_array))
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_owned));
                serializer::SecretNames::new(configured.collect::<Vec<_>>())
            });
        PluginSet { groups, rewrite, tracer, serializes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plugin(name: &str, scope: Scope, config: Value) -> PluginInstance {
        PluginInstance {
            id: uuid::Uuid::new_v4(),
            name: name.into(),
            instance_name: None,
            enabled: true,
            route: scope.route,
            service: scope.service,
            consumer: scope.consumer,
            protocols: vec!["http".into(), "https".into()],
            config: config.as_object().cloned().unwrap_or_default(),
        }
    }

    fn term(code: u16) -> Value {
        json!({"status_code": code, "echo": false, "message": null, "body": null, "content_type": null, "trigger": null})
    }

    #[test]
    fn the_most_specific_instance_applies() {
        let (r, s, c) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2), uuid::Uuid::from_u128(3));
        let scope = |route, service, consumer| Scope { route, service, consumer };
        let set = build_plugins(
            &[
                plugin("request-termination", Scope::GLOBAL, term(500)),
                plugin("request-termination", scope(None, Some(s), None), term(501)),
                plugin("request-termination", scope(Some(r), None, None), term(502)),
                plugin("request-termination", scope(None, None, Some(c)), term(503)),
                plugin("request-termination", scope(Some(r), None, Some(c)), term(504)),
            ],
            &Shared::default(),
            &Registry::builtin(),
        )
        .unwrap();
        let code = |route, service, consumer| format!("{:?}", set.resolve(0, route, service, consumer).unwrap());
        assert!(code(Some(r), Some(s), Some(c)).contains("504"), "route+consumer beats consumer");
        assert!(code(Some(r), Some(s), None).contains("502"), "route beats service");
        assert!(code(Some(uuid::Uuid::from_u128(9)), Some(s), None).contains("501"));
        assert!(code(Some(uuid::Uuid::from_u128(9)), None, Some(c)).contains("503"));
        assert!(code(Some(uuid::Uuid::from_u128(9)), None, None).contains("500"), "global");
        assert!(code(None, None, None).contains("500"), "no route: the global instance");
    }

    /// Past [`PluginGroup::SCANNED`] instances a group finds the instance by scope lookups; it must pick the one
    /// the scan picks for every request, whatever scopes the instances have.
    #[test]
    fn the_scope_index_picks_what_the_scan_picks() {
        let mut rng = fastrand::Rng::with_seed(6);
        let pool = |rng: &mut fastrand::Rng| (rng.u8(..3) > 0).then(|| uuid::Uuid::from_u128(rng.u128(1..6)));
        let mut seen = std::collections::HashSet::new();
        let mut instances = Vec::new();
        for code in 500..700 {
            let scope = Scope { route: pool(&mut rng), service: pool(&mut rng), consumer: pool(&mut rng) };
            // One instance per plugin and scope, as the control plane's cache key has it.
            if seen.insert(scope) {
                instances.push(plugin("request-termination", scope, term(code)));
            }
        }
        assert!(instances.len() > PluginGroup::SCANNED);
        let set = build_plugins(&instances, &Shared::default(), &Registry::builtin()).unwrap();
        let group = &set.groups[0];
        assert!(group.by_scope.is_some());
        for _ in 0..2000 {
            let (route, service, consumer) = (pool(&mut rng), pool(&mut rng), pool(&mut rng));
            let scanned = group.instances.iter().find(|i| i.scope.applies(route, service, consumer));
            let found = set.resolve(0, route, service, consumer);
            let same = match (found, scanned) {
                (Some(found), Some(scanned)) => Arc::ptr_eq(found, &scanned.plugin),
                (found, scanned) => found.is_none() && scanned.is_none(),
            };
            assert!(same, "{route:?} {service:?} {consumer:?}");
        }
    }

    /// Kong's plugin iterator adds the instance's scope to its `conf`; factories get it the same way.
    #[test]
    fn factories_see_their_instances_scope() {
        #[derive(Debug)]
        struct Noop;
        #[async_trait]
        impl Plugin for Noop {}
        static SEEN: std::sync::Mutex<Vec<Value>> = std::sync::Mutex::new(Vec::new());
        static SCOPED: PluginDef = PluginDef {
            info: &probe::INFO,
            phases: Phases { rewrite: false, access: false, response: false, log: false },
            build: |config, _| {
                let scope = json!([config["route_id"], config["service_id"], config["consumer_id"]]);
                SEEN.lock().unwrap().push(scope);
                Ok(Arc::new(Noop))
            },
        };
        let (r, c) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(3));
        let scoped = Scope { route: Some(r), service: None, consumer: Some(c) };
        let registry = Registry::builtin().with(&SCOPED);
        let global = plugin(probe::NAME, Scope::GLOBAL, json!({"answer": 1}));
        let mut stored = plugin(probe::NAME, scoped, json!({}));
        stored.config.insert("route_id".into(), json!("not the scope"));
        build_plugins(&[global.clone(), stored], &Shared::default(), &registry).unwrap();
        assert_eq!(
            *SEEN.lock().unwrap(),
            [json!([null, null, null]), json!([r.to_string(), null, c.to_string()])],
            "the scope, whatever the stored config held"
        );
        assert_eq!(global.config, *json!({"answer": 1}).as_object().unwrap(), "the stored config is untouched");
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
        let mut off = plugin("request-termination", Scope::GLOBAL, term(500));
        off.enabled = false;
        let mut tcp = plugin("request-termination", Scope::GLOBAL, term(500));
        tcp.protocols = vec!["tcp".into()];
        let registry = Registry::builtin();
        assert!(build_plugins(&[off, tcp], &Shared::default(), &registry).unwrap().is_empty());
        assert!(build_plugins(&[plugin("made-up", Scope::GLOBAL, json!({}))], &Shared::default(), &registry).is_err());
    }

    /// The control plane validates with `model`'s list and the proxy runs this registry: a plugin in one and not
    /// the other would be accepted by the API and then refuse the whole configuration on every gateway.
    #[test]
    fn the_schema_registry_and_the_handler_registry_hold_the_same_plugins() {
        let mut schemas: Vec<&str> = gatehouse_model::gateway::plugins::PLUGINS.iter().map(|p| p.name).collect();
        let mut handlers: Vec<&str> = Registry::builtin().names().collect();
        schemas.sort_unstable();
        handlers.sort_unstable();
        assert_eq!(schemas, handlers);
        for def in BUILTIN {
            let info = gatehouse_model::gateway::plugins::info(def.info.name).unwrap();
            assert!(std::ptr::eq(info, def.info), "{}: one PluginInfo, not a copy", def.info.name);
        }
    }
}
