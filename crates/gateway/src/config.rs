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

fn service(s: &snapshot::Service, balancers: &Balancers) -> Result<ServiceConfig, CompileError> {
    let target = UpstreamTarget::new(&s.host, s.port, &s.protocol).ok_or(CompileError::ServiceHost(s.id))?;
    let mut service =
        ServiceConfig { spec: s.clone(), target, pool_key: crate::upstream::PoolKey::default(), balanced: None };
    service.pool_key = crate::upstream::PoolKey::new(
        &service.target.scheme,
        &service.target.authority,
        s.tls_verify,
        s.connect_timeout,
    );
    // Kong: a service whose host is an upstream's name is balanced over its targets.
    if let Some(balancer) = balancers.get(&s.host.to_ascii_lowercase()) {
        service.balanced = Some(Balanced::new(balancer.clone(), &service.pool_key));
    }
    Ok(service)
}

/// The node's balancers by upstream name (lower case).
pub type Balancers = HashMap<String, Arc<crate::balancer::Balancer>>;

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
        services.insert(s.id, Arc::new(service(s, balancers)?));
    }
    let routes = data.routes.iter().map(route).collect();
    Ok(Compiled {
        version: data.version,
        hash: data.hash(),
        router: Router::new(routes)?,
        services,
        plugins: build_plugins(&data.plugins, shared, registry)?,
        consumers: Consumers::new(&data.consumers).with_key_auths(&data.key_auths),
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
