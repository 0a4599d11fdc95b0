//! A configuration snapshot compiled for the proxy: the router, services by id, plugins by scope, consumers. Built
//! once per published change and swapped in atomically; requests in flight finish on the snapshot they started
//! with.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_model::gateway::snapshot::{self, ConfigSnapshot};

use crate::plugins::{PluginSet, Registry, Shared, build_plugins};
use crate::router::{RouteConfig, RouteRules, Router};

/// A service as the proxy uses it: the snapshot's fields and what is derived from them once per configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub id: uuid::Uuid,
    pub name: Option<String>,
    pub protocol: String,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
    pub retries: u32,
    pub connect_timeout: u64,
    pub write_timeout: u64,
    pub read_timeout: u64,
    pub tls_verify: Option<bool>,
    pub enabled: bool,
    pub target: UpstreamTarget,
    /// Which kept-alive upstream connections can serve this service, so requests compare it rather than build it.
    pub pool_key: crate::upstream::PoolKey,
}

/// Where a service's requests go, parsed once per configuration rather than per request.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTarget {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// The `Host` header sent upstream (unless the route preserves the client's).
    pub host: http::HeaderValue,
}

impl Default for UpstreamTarget {
    fn default() -> Self {
        Self {
            scheme: http::uri::Scheme::HTTP,
            authority: http::uri::Authority::from_static("localhost"),
            host: http::HeaderValue::from_static("localhost"),
        }
    }
}

impl UpstreamTarget {
    fn new(host: &str, port: u16, protocol: &str) -> Option<Self> {
        let authority = authority(host, port, protocol);
        Some(Self {
            scheme: if scheme(protocol) == "https" { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP },
            host: http::HeaderValue::from_str(&authority).ok()?,
            authority: authority.parse().ok()?,
        })
    }
}

pub(crate) fn scheme(protocol: &str) -> &'static str {
    if matches!(protocol, "https" | "grpcs" | "wss") { "https" } else { "http" }
}

/// The service's authority; the port is left out when it is the scheme's default, as Kong sets `Host`.
pub(crate) fn authority(host: &str, port: u16, protocol: &str) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    let default = if scheme(protocol) == "https" { 443 } else { 80 };
    if port == default { host } else { format!("{host}:{port}") }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub id: uuid::Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// Made when the configuration is compiled, so an authenticated request clones them instead of formatting.
    pub headers: ConsumerHeaders,
}

/// A consumer's `X-Consumer-Id`, `X-Consumer-Custom-Id` and `X-Consumer-Username` values; `None` for a field the
/// consumer does not have or that cannot be a header value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerHeaders {
    pub id: Option<http::HeaderValue>,
    pub custom_id: Option<http::HeaderValue>,
    pub username: Option<http::HeaderValue>,
}

impl ConsumerHeaders {
    fn of(consumer: &snapshot::Consumer) -> Self {
        let value = |text: Option<&str>| text.and_then(|t| http::HeaderValue::from_str(t).ok());
        Self {
            id: value(Some(&consumer.id.to_string())),
            custom_id: value(consumer.custom_id.as_deref()),
            username: value(consumer.username.as_deref()),
        }
    }
}

#[derive(Debug, Default)]
pub struct Compiled {
    pub version: u64,
    /// The snapshot's content hash.
    pub hash: String,
    pub router: Router,
    pub services: HashMap<uuid::Uuid, Arc<ServiceConfig>>,
    pub plugins: PluginSet,
    pub consumers: HashMap<uuid::Uuid, Arc<Consumer>>,
    consumers_by_username: HashMap<String, Arc<Consumer>>,
    consumers_by_custom_id: HashMap<String, Arc<Consumer>>,
}

impl Compiled {
    pub fn consumer_by_username(&self, username: &str) -> Option<&Arc<Consumer>> {
        self.consumers_by_username.get(username)
    }

    pub fn consumer_by_custom_id(&self, custom_id: &str) -> Option<&Arc<Consumer>> {
        self.consumers_by_custom_id.get(custom_id)
    }

    /// Kong's anonymous lookup: by id, else by username.
    pub fn consumer_by_id_or_username(&self, key: &str) -> Option<&Arc<Consumer>> {
        key.parse::<uuid::Uuid>().ok().and_then(|id| self.consumers.get(&id)).or_else(|| self.consumer_by_username(key))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("service {0}: host is not a valid authority")]
    ServiceHost(uuid::Uuid),
    #[error(transparent)]
    Router(#[from] crate::router::RouterError),
    #[error("plugin {name}: {reason}")]
    Plugin { name: String, reason: String },
}

fn service(s: &snapshot::Service) -> Result<ServiceConfig, CompileError> {
    let target = UpstreamTarget::new(&s.host, s.port, &s.protocol).ok_or(CompileError::ServiceHost(s.id))?;
    let mut service = ServiceConfig {
        id: s.id,
        name: s.name.clone(),
        protocol: s.protocol.clone(),
        host: s.host.clone(),
        port: s.port,
        path: s.path.clone(),
        retries: s.retries,
        connect_timeout: s.connect_timeout,
        write_timeout: s.write_timeout,
        read_timeout: s.read_timeout,
        tls_verify: s.tls_verify,
        enabled: s.enabled,
        target,
        pool_key: crate::upstream::PoolKey::default(),
    };
    service.pool_key = crate::upstream::PoolKey::of(&service);
    Ok(service)
}

fn route(r: &snapshot::Route) -> (Arc<RouteConfig>, RouteRules) {
    let config = RouteConfig {
        id: r.id,
        name: r.name.clone(),
        service_id: r.service,
        protocols: r.protocols.clone(),
        strip_path: r.strip_path,
        preserve_host: r.preserve_host,
        https_redirect_status_code: r.https_redirect_status_code,
        request_buffering: r.request_buffering,
    };
    let rules = RouteRules {
        hosts: r.hosts.clone(),
        methods: r.methods.clone(),
        headers: r.headers.iter().map(|(name, values)| (name.clone(), values.clone())).collect(),
        paths: r.paths.clone(),
        regex_priority: r.regex_priority,
    };
    (Arc::new(config), rules)
}

/// `shared`: what plugins keep across configurations (the node's introspection cache and clients); `registry`:
/// the plugins this gateway can run.
pub fn compile(data: &ConfigSnapshot, shared: &Shared, registry: &Registry) -> Result<Compiled, CompileError> {
    let mut services = HashMap::new();
    for s in &data.services {
        services.insert(s.id, Arc::new(service(s)?));
    }
    let routes = data.routes.iter().map(route).collect();
    let mut consumers = HashMap::new();
    let (mut consumers_by_username, mut consumers_by_custom_id) = (HashMap::new(), HashMap::new());
    for c in &data.consumers {
        let consumer = Arc::new(Consumer {
            id: c.id,
            username: c.username.clone(),
            custom_id: c.custom_id.clone(),
            headers: ConsumerHeaders::of(c),
        });
        if let Some(username) = &consumer.username {
            consumers_by_username.insert(username.clone(), consumer.clone());
        }
        if let Some(custom_id) = &consumer.custom_id {
            consumers_by_custom_id.insert(custom_id.clone(), consumer.clone());
        }
        consumers.insert(consumer.id, consumer);
    }
    Ok(Compiled {
        version: data.version,
        hash: data.hash(),
        router: Router::new(routes)?,
        services,
        plugins: build_plugins(&data.plugins, shared, registry)?,
        consumers,
        consumers_by_username,
        consumers_by_custom_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_headers_are_made_once_at_compile_time() {
        let id = uuid::Uuid::from_u128(7);
        let data = ConfigSnapshot {
            consumers: vec![
                snapshot::Consumer { id, username: Some("alice".into()), custom_id: None },
                snapshot::Consumer { id: uuid::Uuid::from_u128(8), username: None, custom_id: Some("c-8".into()) },
            ],
            ..ConfigSnapshot::default()
        };
        let compiled = compile(&data, &Shared::default(), &Registry::builtin()).unwrap();
        let alice = compiled.consumer_by_username("alice").unwrap();
        assert_eq!(alice.headers.id.as_ref().unwrap(), id.to_string().as_str());
        assert_eq!(alice.headers.username.as_ref().unwrap(), "alice");
        assert!(alice.headers.custom_id.is_none());
        let other = compiled.consumer_by_custom_id("c-8").unwrap();
        assert_eq!(other.headers.custom_id.as_ref().unwrap(), "c-8");
        assert!(other.headers.username.is_none());
    }
}
