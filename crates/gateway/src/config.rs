//! A configuration snapshot compiled for the proxy: the router, services by id, plugins by scope, consumers. Built
//! once per published change and swapped in atomically; requests in flight finish on the snapshot they started
//! with.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use gatehouse_model::gateway::ConfigData;

use crate::plugins::{PluginSet, Shared, build_plugins};
use crate::router::{RouteConfig, RouteRules, Router};

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Filled in when the configuration compiles.
    #[serde(skip)]
    pub target: UpstreamTarget,
    /// Which kept-alive upstream connections can serve this service; filled in when the configuration compiles,
    /// so requests compare it rather than build it.
    #[serde(skip)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Consumer {
    pub id: uuid::Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// Made when the configuration is compiled, so an authenticated request clones them instead of formatting.
    #[serde(skip)]
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
    fn of(consumer: &Consumer) -> Self {
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
    #[error("entity does not have the expected shape: {0}")]
    Shape(String),
    #[error(transparent)]
    Router(#[from] crate::router::RouterError),
    #[error("plugin {name}: {reason}")]
    Plugin { name: String, reason: String },
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn foreign(v: &Value, field: &str) -> Option<uuid::Uuid> {
    v.get(field)?.get("id")?.as_str()?.parse().ok()
}

/// `shared`: what plugins keep across configurations (the node's introspection cache and clients).
pub fn compile(data: &ConfigData, shared: &Shared) -> Result<Compiled, CompileError> {
    let shape = |e: serde_json::Error| CompileError::Shape(e.to_string());
    let mut services = HashMap::new();
    for s in &data.services {
        let mut service: ServiceConfig = serde_json::from_value(Value::Object(s.clone())).map_err(shape)?;
        service.target = UpstreamTarget::new(&service.host, service.port, &service.protocol)
            .ok_or_else(|| CompileError::Shape(format!("service {}: host is not a valid authority", service.id)))?;
        service.pool_key = crate::upstream::PoolKey::of(&service);
        services.insert(service.id, Arc::new(service));
    }
    let mut routes = Vec::new();
    for r in &data.routes {
        let v = Value::Object(r.clone());
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| CompileError::Shape("route id".into()))?;
        let config = RouteConfig {
            id,
            name: v.get("name").and_then(Value::as_str).map(str::to_owned),
            service_id: foreign(&v, "service"),
            protocols: strings(&v, "protocols"),
            strip_path: v.get("strip_path").and_then(Value::as_bool).unwrap_or(true),
            preserve_host: v.get("preserve_host").and_then(Value::as_bool).unwrap_or(false),
            https_redirect_status_code: v.get("https_redirect_status_code").and_then(Value::as_u64).unwrap_or(426)
                as u16,
            request_buffering: v.get("request_buffering").and_then(Value::as_bool).unwrap_or(true),
        };
        let headers = v
            .get("headers")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, vals)| {
                        (
                            k.clone(),
                            vals.as_array()
                                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rules = RouteRules {
            hosts: strings(&v, "hosts"),
            methods: strings(&v, "methods"),
            headers,
            paths: strings(&v, "paths"),
            regex_priority: v.get("regex_priority").and_then(Value::as_i64).unwrap_or(0),
        };
        routes.push((Arc::new(config), rules));
    }
    let mut consumers = HashMap::new();
    let (mut consumers_by_username, mut consumers_by_custom_id) = (HashMap::new(), HashMap::new());
    for c in &data.consumers {
        let mut consumer = serde_json::from_value::<Consumer>(Value::Object(c.clone())).map_err(shape)?;
        consumer.headers = ConsumerHeaders::of(&consumer);
        let consumer = Arc::new(consumer);
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
        router: Router::new(routes)?,
        services,
        plugins: build_plugins(&data.plugins, shared)?,
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
        let consumer = |v: Value| v.as_object().unwrap().clone();
        let data = ConfigData {
            consumers: vec![
                consumer(serde_json::json!({"id": id.to_string(), "username": "alice", "custom_id": null})),
                consumer(serde_json::json!({"id": uuid::Uuid::from_u128(8).to_string(), "custom_id": "c-8"})),
            ],
            ..ConfigData::default()
        };
        let compiled = compile(&data, &Shared::default()).unwrap();
        let alice = compiled.consumer_by_username("alice").unwrap();
        assert_eq!(alice.headers.id.as_ref().unwrap(), id.to_string().as_str());
        assert_eq!(alice.headers.username.as_ref().unwrap(), "alice");
        assert!(alice.headers.custom_id.is_none());
        let other = compiled.consumer_by_custom_id("c-8").unwrap();
        assert_eq!(other.headers.custom_id.as_ref().unwrap(), "c-8");
        assert!(other.headers.username.is_none());
    }
}
