//! A configuration snapshot compiled for the proxy: the router, services by id, plugins by scope, consumers. Built
//! once per published change and swapped in atomically; requests in flight finish on the snapshot they started
//! with.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_model::gateway::snapshot::{self, ConfigSnapshot};

use crate::consumers::Consumers;
use crate::error::CompileError;
use crate::plugins::{PluginSet, Registry, Shared, build_plugins};
use crate::router::{RouteConfig, RouteRules, Router};
use crate::service::{Balanced, ServiceConfig, UpstreamTarget};
use crate::upstream::{PoolKey, TlsSettings, UpstreamTls};

#[derive(Debug, Default)]
pub struct Compiled {
    pub version: u64,
    /// The snapshot's content hash.
    pub hash: String,
    pub router: Router,
    pub services: HashMap<uuid::Uuid, Arc<ServiceConfig>>,
    pub plugins: PluginSet,
    pub consumers: Consumers,
}

fn service(s: &snapshot::Service, data: &ConfigSnapshot, balancers: &Balancers) -> Result<ServiceConfig, CompileError> {
    let target = UpstreamTarget::new(&s.host, s.port, &s.protocol).ok_or(CompileError::ServiceHost(s.id))?;
    let mut pool_key = PoolKey::new(&target.scheme, &target.authority, s.tls_verify, s.connect_timeout);
    if pool_key.https
        && (s.tls_verify_depth.is_some() || !s.ca_certificates.is_empty() || s.client_certificate.is_some())
    {
        pool_key = pool_key.with_tls(Arc::new(upstream_tls(s, data)));
    }
    // Kong: a service whose host is an upstream's name is balanced over its targets.
    let balanced = balancers.get(&s.host.to_ascii_lowercase()).map(|b| Balanced::new(b.clone(), &pool_key));
    Ok(ServiceConfig { spec: s.clone(), target, pool_key, balanced })
}

/// A service's TLS settings with the certificates they name. A name the configuration lacks (the control plane
/// refuses one, so only a snapshot written by something else has one) makes the service unreachable, never
/// verified less.
fn upstream_tls(s: &snapshot::Service, data: &ConfigSnapshot) -> UpstreamTls {
    let mut roots = Vec::with_capacity(s.ca_certificates.len());
    for id in &s.ca_certificates {
        match data.ca_certificates.iter().find(|c| c.id == *id) {
            Some(ca) => roots.push(ca.cert.as_str()),
            None => return UpstreamTls::unusable(format!("service {}: CA certificate {id} not found", s.id)),
        }
    }
    let client = match s.client_certificate {
        None => None,
        Some(id) => match data.certificates.iter().find(|c| c.id == id) {
            Some(c) => Some((c.cert.as_str(), c.key.expose())),
            None => return UpstreamTls::unusable(format!("service {}: client certificate {id} not found", s.id)),
        },
    };
    let settings =
        TlsSettings { verify: s.tls_verify.unwrap_or(true), depth: s.tls_verify_depth, roots: &roots, client };
    let tls = UpstreamTls::new(&settings);
    if let Err(reason) = tls.usable() {
        tracing::error!(service = %s.id, reason, "the service's upstream TLS settings cannot be used; its requests fail");
    }
    tls
}

/// The node's balancers by upstream name (lower case).
pub type Balancers = HashMap<String, Arc<crate::balancer::Balancer>>;

/// `keep`: the configuration has a plugin that logs the route as configured.
fn route(r: &snapshot::Route, keep: bool) -> (Arc<RouteConfig>, RouteRules) {
    let config = RouteConfig {
        id: r.id,
        name: r.name.clone(),
        service_id: r.service,
        protocols: r.protocols.clone(),
        strip_path: r.strip_path,
        preserve_host: r.preserve_host,
        https_redirect_status_code: r.https_redirect_status_code,
        request_buffering: r.request_buffering,
        prometheus: Default::default(),
        entity: keep.then(|| Box::new(r.clone())),
    };
    let rules = RouteRules {
        hosts: r.hosts.clone(),
        snis: r.snis.clone(),
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
    compile_balanced(data, shared, registry, &Balancers::new())
}

/// [`compile`], with the node's balancers for the services that name an upstream.
pub fn compile_balanced(
    data: &ConfigSnapshot,
    shared: &Shared,
    registry: &Registry,
    balancers: &Balancers,
) -> Result<Compiled, CompileError> {
    let mut services = HashMap::new();
    for s in &data.services {
        services.insert(s.id, Arc::new(service(s, data, balancers)?));
    }
    let plugins = build_plugins(&data.plugins, shared, registry)?;
    let keep = plugins.serializes().is_some();
    let routes = data.routes.iter().map(|r| route(r, keep)).collect();
    Ok(Compiled {
        version: data.version,
        hash: data.hash(),
        router: Router::new(routes)?,
        services,
        plugins,
        consumers: Consumers::new(&data.consumers)
            .with_key_auths(&data.key_auths)
            .with_jwt_secrets(&data.jwt_secrets)
            .with_basic_auths(&data.basic_auths),
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
                snapshot::Consumer { id, username: Some("alice".into()), custom_id: None, groups: Vec::new() },
                snapshot::Consumer {
                    id: uuid::Uuid::from_u128(8),
                    username: None,
                    custom_id: Some("c-8".into()),
                    groups: Vec::new(),
                },
            ],
            ..ConfigSnapshot::default()
        };
        let compiled = compile(&data, &Shared::default(), &Registry::builtin()).unwrap();
        let alice = compiled.consumers.by_username("alice").unwrap();
        assert_eq!(alice.headers.id.as_ref().unwrap(), id.to_string().as_str());
        assert_eq!(alice.headers.username.as_ref().unwrap(), "alice");
        assert!(alice.headers.custom_id.is_none());
        let other = compiled.consumers.by_custom_id("c-8").unwrap();
        assert_eq!(other.headers.custom_id.as_ref().unwrap(), "c-8");
        assert!(other.headers.username.is_none());
    }
}
