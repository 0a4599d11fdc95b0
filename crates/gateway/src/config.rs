//! A configuration snapshot compiled for the proxy: the router, services by id, plugins by scope, consumers. Built
//! once per published change and swapped in atomically; requests in flight finish on the snapshot they started
//! with.
//!
//! [`Compiler`] compiles incrementally: services and plugin instances whose entity is unchanged since the previous
//! install are kept rather than built again, and the router, which requests only borrow, is built once and shared
//! by the workers.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_model::gateway::snapshot::{self, ConfigSnapshot, PluginInstance};

use crate::consumers::Consumers;
use crate::error::CompileError;
use crate::plugins::{Plugin, PluginSet, Registry, Shared, build_instance, build_plugins, plugin_def, scope_of};
use crate::router::{RouteConfig, RouteRules, Router};
use crate::service::{Balanced, ServiceConfig, UpstreamTarget};
use crate::upstream::{PoolKey, TlsSettings, UpstreamTls};

/// One worker's configuration. Requests only borrow from the router, so the workers share it. The rest is each
/// worker's own: requests clone a consumer's `Arc` and a service's pool key (which holds reference-counted
/// parts), and some plugin instances keep per-worker state behind a lock (`openid-connect`'s recent tokens); two
/// cores updating one count or lock on every request is what the workers exist to avoid.
#[derive(Debug, Default)]
pub struct Compiled {
    pub version: u64,
    /// The snapshot's content hash.
    pub hash: String,
    pub router: Arc<Router>,
    pub services: HashMap<uuid::Uuid, Arc<ServiceConfig>>,
    pub plugins: PluginSet,
    pub consumers: Consumers,
}

/// Whether a service's compiled form depends on certificates of the configuration, not on its entity alone.
fn names_certificates(s: &snapshot::Service) -> bool {
    s.tls_verify_depth.is_some() || !s.ca_certificates.is_empty() || s.client_certificate.is_some()
}

fn service(s: &snapshot::Service, data: &ConfigSnapshot, balancers: &Balancers) -> Result<ServiceConfig, CompileError> {
    let target = UpstreamTarget::new(&s.host, s.port, &s.protocol).ok_or(CompileError::ServiceHost(s.id))?;
    let mut pool_key = PoolKey::new(&target.scheme, &target.authority, s.tls_verify, s.connect_timeout);
    if pool_key.https && names_certificates(s) {
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
        router: Arc::new(Router::new(routes)?),
        services,
        plugins,
        consumers: Consumers::new(&data.consumers)
            .with_key_auths(&data.key_auths)
            .with_jwt_secrets(&data.jwt_secrets)
            .with_basic_auths(&data.basic_auths),
    })
}

/// Compiles whole snapshots for `workers` workers, keeping what an unchanged entity compiled to last time.
///
/// An entity is unchanged when it has the content of the one of the same id in the previous install (a service
/// compared field by field with the one its compiled form keeps, a plugin by a digest of every field); what it
/// compiles to depends on nothing else except where noted, so reusing it gives what compiling it again would. Services that are balanced or name certificates depend on other entities and are always rebuilt; routes
/// (cheap, and their `prometheus` handles must follow their service's name) and consumers are rebuilt every time.
/// The memory is replaced only by a compile that succeeds, so a refused snapshot leaves it as the installed one.
#[derive(Default)]
pub struct Compiler {
    /// Each service's compiled form in every worker.
    services: HashMap<uuid::Uuid, Vec<Arc<ServiceConfig>>>,
    /// Each plugin entity's content digest and its instance in every worker. A digest rather than a copy of the
    /// entity: at 20,000 plugins a copy of every config would be one more copy of the largest part of the
    /// snapshot.
    plugins: HashMap<uuid::Uuid, (u64, Vec<Arc<dyn Plugin>>)>,
}

/// A digest of everything an instance is built from (SipHash; two different entities of one id share a digest
/// with a chance of 2^-64 per change).
fn digest(p: &PluginInstance) -> u64 {
    use std::hash::{Hash, Hasher};
    let PluginInstance { id, name, instance_name, enabled, route, service, consumer, protocols, config } = p;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (id, name, instance_name, enabled, route, service, consumer, protocols, config).hash(&mut h);
    h.finish()
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler")
            .field("services", &self.services.len())
            .field("plugins", &self.plugins.len())
            .finish()
    }
}

/// How many entities of the last compile were kept and how many built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    pub kept: usize,
    pub built: usize,
}

impl Compiler {
    pub fn compile(
        &mut self,
        data: &ConfigSnapshot,
        shared: &Shared,
        registry: &Registry,
        balancers: &Balancers,
        workers: usize,
    ) -> Result<(Vec<Compiled>, Reuse), CompileError> {
        let workers = workers.max(1);
        let mut reuse = Reuse::default();
        let mut services = HashMap::with_capacity(data.services.len());
        for s in &data.services {
            let standalone = !names_certificates(s) && !balancers.contains_key(&s.host.to_ascii_lowercase());
            let compiled = match self.services.get(&s.id) {
                Some(old)
                    if standalone
                        && old.len() == workers
                        && old.iter().all(|o| o.balanced.is_none())
                        && old[0].spec == *s =>
                {
                    reuse.kept += 1;
                    old.clone()
                }
                _ => {
                    reuse.built += 1;
                    (0..workers).map(|_| service(s, data, balancers).map(Arc::new)).collect::<Result<Vec<_>, _>>()?
                }
            };
            services.insert(s.id, compiled);
        }
        let mut plugins = HashMap::with_capacity(data.plugins.len());
        let mut built: Vec<Vec<_>> = (0..workers).map(|_| Vec::with_capacity(data.plugins.len())).collect();
        for entity in data.plugins.iter().filter(|p| p.enabled && p.serves_http()) {
            let def = plugin_def(entity, registry)?;
            let digest = digest(entity);
            let instances = match self.plugins.get(&entity.id) {
                Some((old, instances)) if *old == digest && instances.len() == workers => {
                    reuse.kept += 1;
                    instances.clone()
                }
                _ => {
                    reuse.built += 1;
                    (0..workers).map(|_| build_instance(def, entity, shared)).collect::<Result<Vec<_>, _>>()?
                }
            };
            for (worker, instance) in built.iter_mut().zip(&instances) {
                worker.push((def, scope_of(entity), instance.clone()));
            }
            plugins.insert(entity.id, (digest, instances));
        }
        let sets: Vec<PluginSet> =
            built.into_iter().map(|instances| PluginSet::assemble(instances, &data.plugins)).collect();
        let keep = sets.first().is_some_and(|set| set.serializes().is_some());
        let routes = data.routes.iter().map(|r| route(r, keep)).collect();
        let router = Arc::new(Router::new(routes)?);
        let hash = data.hash();
        let compiled = sets
            .into_iter()
            .enumerate()
            .map(|(worker, plugins)| Compiled {
                version: data.version,
                hash: hash.clone(),
                router: router.clone(),
                services: services.iter().map(|(id, each)| (*id, each[worker].clone())).collect(),
                plugins,
                consumers: Consumers::new(&data.consumers)
                    .with_key_auths(&data.key_auths)
                    .with_jwt_secrets(&data.jwt_secrets)
                    .with_basic_auths(&data.basic_auths),
            })
            .collect();
        self.services = services;
        self.plugins = plugins;
        Ok((compiled, reuse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_model::gateway::{EntityKind, validate_entity};
    use serde_json::json;

    use crate::router::RequestFacts;

    fn id(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    fn add(data: &mut ConfigSnapshot, kind: EntityKind, body: serde_json::Value) {
        let entity = validate_entity(kind, body.as_object().unwrap()).unwrap();
        data.add(kind, &entity).unwrap();
    }

    /// 30 services `s{i}` (ids 1000 + i), each with a route `/s{i}/` (2000 + i) and a `request-termination`
    /// answering `s{i}` (3000 + i), plus a global `cors`: enough instances of one plugin for the scope index,
    /// enough routes for the router's prefix index.
    fn fixture() -> ConfigSnapshot {
        let mut data = ConfigSnapshot::empty(None, 1);
        for i in 1..=30u128 {
            let url = format!("http://127.0.0.1:{}/", 9000 + i);
            add(&mut data, EntityKind::Service, json!({"id": id(1000 + i), "name": format!("s{i}"), "url": url}));
            let route = json!({"id": id(2000 + i), "name": format!("r{i}"), "paths": [format!("/s{i}/")],
                "service": {"id": id(1000 + i)}});
            add(&mut data, EntityKind::Route, route);
            let plugin = json!({"id": id(3000 + i), "name": "request-termination", "service": {"id": id(1000 + i)},
                "config": {"status_code": 200, "message": format!("s{i}")}});
            add(&mut data, EntityKind::Plugin, plugin);
        }
        add(&mut data, EntityKind::Plugin, json!({"id": id(4000), "name": "cors"}));
        data.sort();
        data
    }

    /// What a worker's configuration does with a request for each path: the route, its service, and the instance
    /// of each plugin that applies (its `Debug` form shows its config).
    fn observe(c: &Compiled, paths: &[String]) -> Vec<String> {
        let headers = http::HeaderMap::new();
        paths
            .iter()
            .map(|path| {
                let facts =
                    RequestFacts { method: "GET", host: "h", port: 80, path, headers: &headers, tls: false, sni: None };
                let Some(found) = c.router.find(&facts) else { return format!("{path}: no route") };
                let route = &found.route;
                let service = route.service_id.and_then(|s| c.services.get(&s)).map(|s| (&s.spec, &s.target));
                let plugins: Vec<String> = (0..c.plugins.len())
                    .filter_map(|at| {
                        let plugin = c.plugins.resolve(at, Some(route.id), route.service_id, None)?;
                        Some(format!("{}: {plugin:?}", c.plugins.def(at)?.info.name))
                    })
                    .collect();
                format!("{path}: {} {:?} {service:?} {plugins:?}", route.id, route.name)
            })
            .collect()
    }

    fn resolved(c: &Compiled, route: u128, service: u128) -> &Arc<dyn Plugin> {
        let at = c.plugins.names().position(|n| n == "request-termination").unwrap();
        c.plugins.resolve(at, Some(id(route)), Some(id(service)), None).unwrap()
    }

    type Change = Box<dyn Fn(&mut ConfigSnapshot)>;

    fn plugin(data: &mut ConfigSnapshot, n: u128) -> &mut PluginInstance {
        data.plugins.iter_mut().find(|p| p.id == id(n)).unwrap()
    }

    /// Every kind of change, one after the other on one compiler: each incremental result serves exactly what a
    /// compile from nothing serves, in every worker, while building only what changed.
    #[test]
    fn incremental_compiles_serve_what_full_compiles_serve() {
        let (shared, registry) = (Shared::default(), Registry::builtin());
        let mut compiler = Compiler::default();
        let mut data = fixture();
        let paths: Vec<String> =
            (1..=31).map(|i| format!("/s{i}/x")).chain(["/moved/x".into(), "/other".into()]).collect();
        let steps: Vec<(&str, usize, Change)> = vec![
            ("the first install", 61, Box::new(|_| {})),
            ("nothing", 0, Box::new(|_| {})),
            (
                "a plugin's config",
                1,
                Box::new(|d| {
                    plugin(d, 3003).config.insert("message".into(), json!("changed"));
                }),
            ),
            ("a route deleted", 0, Box::new(|d| d.routes.retain(|r| r.id != id(2004)))),
            (
                "a route's path renamed",
                0,
                Box::new(|d| d.routes.iter_mut().find(|r| r.id == id(2005)).unwrap().paths = vec!["/moved/".into()]),
            ),
            (
                "a plugin moved from its service to another service's route",
                1,
                Box::new(|d| {
                    let p = plugin(d, 3006);
                    (p.service, p.route) = (None, Some(id(2007)));
                }),
            ),
            (
                "a service's upstream",
                1,
                Box::new(|d| d.services.iter_mut().find(|s| s.id == id(1008)).unwrap().port = 1),
            ),
            ("a plugin disabled", 0, Box::new(|d| plugin(d, 3009).enabled = false)),
            ("a plugin enabled again", 1, Box::new(|d| plugin(d, 3009).enabled = true)),
            ("a plugin deleted", 0, Box::new(|d| d.plugins.retain(|p| p.id != id(3010)))),
            (
                "a service, its route and its plugin deleted",
                0,
                Box::new(|d| {
                    d.services.retain(|s| s.id != id(1011));
                    d.routes.retain(|r| r.id != id(2011));
                    d.plugins.retain(|p| p.id != id(3011));
                }),
            ),
            (
                "a service added",
                2,
                Box::new(|d| {
                    add(d, EntityKind::Service, json!({"id": id(1031), "name": "s31", "url": "http://127.0.0.1:1/"}));
                    add(d, EntityKind::Route, json!({"id": id(2031), "paths": ["/s31/"], "service": {"id": id(1031)}}));
                    let body = json!({"id": id(3031), "name": "request-termination", "service": {"id": id(1031)},
                        "config": {"status_code": 201}});
                    add(d, EntityKind::Plugin, body);
                    d.sort();
                }),
            ),
        ];
        let mut previous: Option<Vec<Compiled>> = None;
        for (step, rebuilt, change) in steps {
            change(&mut data);
            data.version += 1;
            let (workers, reuse) = compiler.compile(&data, &shared, &registry, &Balancers::new(), 2).unwrap();
            let full = compile(&data, &shared, &registry).unwrap();
            assert_eq!(reuse.built, rebuilt, "{step}: {reuse:?}");
            let expected = observe(&full, &paths);
            for worker in &workers {
                assert_eq!(observe(worker, &paths), expected, "{step}");
                assert_eq!((worker.version, &worker.hash), (full.version, &full.hash), "{step}");
            }
            // Each worker has its own instances; an unchanged one is the instance it had.
            assert!(!Arc::ptr_eq(resolved(&workers[0], 2001, 1001), resolved(&workers[1], 2001, 1001)));
            if let Some(before) = &previous {
                assert!(Arc::ptr_eq(resolved(&before[1], 2001, 1001), resolved(&workers[1], 2001, 1001)), "{step}");
            }
            previous = Some(workers);
        }
        let last = observe(&previous.unwrap()[0], &paths);
        let served = |path: &str| last.iter().find(|l| l.starts_with(path)).unwrap().clone();
        assert!(served("/s3/x").contains("changed"));
        assert!(served("/s4/x").contains("no route"));
        assert!(served("/s5/x").contains("no route") && served("/moved/x").contains(&id(2005).to_string()));
        let (s6, s7) = (served("/s6/x"), served("/s7/x"));
        assert!(!s6.contains("request-termination") && s7.contains("\\\"s6\\\""), "{s6}\n{s7}");
    }

    /// A snapshot that does not compile changes nothing the next compile keeps.
    #[test]
    fn a_refused_snapshot_leaves_the_compiler_as_it_was() {
        let (shared, registry) = (Shared::default(), Registry::builtin());
        let mut compiler = Compiler::default();
        let data = fixture();
        compiler.compile(&data, &shared, &registry, &Balancers::new(), 1).unwrap();
        let mut broken = data.clone();
        plugin(&mut broken, 3001).name = "made-up".into();
        assert!(compiler.compile(&broken, &shared, &registry, &Balancers::new(), 1).is_err());
        let (_, reuse) = compiler.compile(&data, &shared, &registry, &Balancers::new(), 1).unwrap();
        assert_eq!(reuse, Reuse { kept: 61, built: 0 });
    }

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
