//! A service as the proxy uses it: the snapshot's fields and what is derived from them once per configuration.

use gatehouse_model::gateway::snapshot::Service;

use std::sync::Arc;

use crate::balancer::Balancer;
use crate::upstream::PoolKey;

/// A service as the proxy uses it: the snapshot's service (its fields read through `Deref`: `service.read_timeout`)
/// and what is derived from it once per configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub spec: Service,
    pub target: UpstreamTarget,
    /// Which kept-alive upstream connections can serve this service, so requests compare it rather than build it.
    pub pool_key: PoolKey,
    /// When `host` names an upstream: its balancer, and `pool_key` for each of its targets (same order).
    pub balanced: Option<Balanced>,
}

/// A service whose `host` names an upstream.
#[derive(Debug, Clone)]
pub struct Balanced {
    pub balancer: Arc<Balancer>,
    pub target_keys: Box<[PoolKey]>,
}

impl PartialEq for Balanced {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.balancer, &other.balancer)
    }
}

impl Balanced {
    pub fn new(balancer: Arc<Balancer>, service_key: &PoolKey) -> Self {
        let target_keys = balancer
            .targets
            .iter()
            .map(|t| PoolKey {
                authority: t.authority.clone(),
                // TLS to a target names the upstream (Kong's `proxy_ssl_name $upstream_host`), not its address.
                server_name: service_key
                    .server_name
                    .clone()
                    .or_else(|| service_key.https.then(|| Arc::from(service_key.authority.host()))),
                ..service_key.clone()
            })
            .collect();
        Self { balancer, target_keys }
    }
}

impl std::ops::Deref for ServiceConfig {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.spec
    }
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
    pub(crate) fn new(host: &str, port: u16, protocol: &str) -> Option<Self> {
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
