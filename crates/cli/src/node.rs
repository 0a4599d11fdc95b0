//! A running node: storage opened and migrated, the master key checked, listeners bound and serving.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use gatehouse_control::{
    ConfigPublisher, Control, ControlState, LocalHosts, admin_router, control_planes_router, core_entities_router,
    ensure_control_plane,
};
use gatehouse_gateway::{Proxy, ProxySettings};
use gatehouse_identity::{IdentityState, Issuer, IssuerSettings, IssuerState, issuer_router, management_router};
use gatehouse_model::gateway::control_plane::ControlPlane;
use gatehouse_model::metrics::gatehouse::GatehouseMetrics;
use gatehouse_model::{Clock, SystemClock};
use gatehouse_net::tls::TlsError;
use gatehouse_net::{FdBudget, Gate};
use gatehouse_runtime::Services;
use gatehouse_runtime::auth::Principal;
use gatehouse_runtime::config::{Config, ConfigError, Role};
use gatehouse_runtime::errors::{ApiError, KongError, V1Error, V2Error};
use gatehouse_runtime::listener::{self, BindError, ListenerKind};
use gatehouse_runtime::master_key::{self, KeyError};
use gatehouse_store::StoreError;

/// The control plane a node serves when the configuration names none.
pub const DEFAULT_CONTROL_PLANE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open storage: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot open the access log (gateway.access_log): {0}")]
    AccessLog(std::io::Error),
    #[error("{listener}.tls_cert/tls_key: {source}")]
    Tls { listener: &'static str, source: gatehouse_net::tls::TlsError },
    /// A command that manages an existing node found none where it looked.
    #[error(
        "no Gatehouse node's data here: {missing} (data dir {data_dir}, database {database}). Run the command \
         where the node runs, or point it there with --data-dir or -c; a node sets these up on its first start \
         (`gatehouse serve` or `gatehouse quickstart`), this command never does"
    )]
    NoNode { missing: String, data_dir: String, database: String },
    /// Hybrid mode: the cluster certificate, key or CA.
    #[error("cluster.cert/cert_key/ca_cert: {0}")]
    Cluster(TlsError),
    #[error("cannot bind the cluster listener on {addr}: {source}")]
    ClusterBind { addr: SocketAddr, source: std::io::Error },
    #[error("data dir: {0}")]
    DataDir(String),
}

/// What a node is started with besides its configuration.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub clock: Arc<dyn Clock>,
    /// Also serve the httpbin-compatible echo upstream (the quickstart does).
    pub echo: bool,
    /// The version a data plane reports to its control plane, when not this build's (tests of the version rule).
    pub version: Option<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), echo: false, version: None }
    }
}

#[derive(Debug)]
pub struct RunningNode {
    pub services: Services,
    pub issuer: IssuerState,
    pub proxy: Arc<Proxy>,
    pub control_plane: ControlPlane,
    pub platform_addr: SocketAddr,
    pub issuer_addr: SocketAddr,
    /// The proxy listener; a control plane runs no proxy and binds nothing here (this is then the configured
    /// address).
    pub proxy_addr: SocketAddr,
    /// A control plane's cluster listener (`cluster.listen`).
    pub cluster_addr: Option<SocketAddr>,
    /// The proxy's TLS listener (`proxy.listen_tls`), when configured.
    pub proxy_tls_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// Whether the platform and issuer listeners serve TLS (`tls_cert`/`tls_key`).
    pub platform_tls: bool,
    pub issuer_tls: bool,
    pub echo_addr: Option<SocketAddr>,
    /// The status listener (`/status`, `/status/ready`, `/metrics`).
    pub status_addr: SocketAddr,
    /// Configuration changes announced to the publisher (compare with `proxy.version()`).
    pub config_changes: Arc<std::sync::atomic::AtomicU64>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl RunningNode {
    pub fn platform_url(&self) -> String {
        format!("{}://{}", scheme(self.platform_tls), self.platform_addr)
    }

    /// Where the issuer listener answers (issuer URLs themselves come from `identity_public_url`).
    pub fn issuer_listener_url(&self) -> String {
        format!("{}://{}", scheme(self.issuer_tls), self.issuer_addr)
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy_addr)
    }

    /// The proxy's TLS listener, when `proxy.listen_tls` is set.
    pub fn proxy_tls_url(&self) -> Option<String> {
        self.proxy_tls_addr.map(|a| format!("https://{a}"))
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    pub fn status_url(&self) -> String {
        format!("http://{}", self.status_addr)
    }

    pub fn echo_url(&self) -> Option<String> {
        self.echo_addr.map(|a| format!("http://{a}"))
    }

    /// Stops accepting connections, lets in-flight requests finish, and returns when every listener is done.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the node stops (after [`RunningNode::stop_handle`] is cancelled).
    pub async fn wait(self) {
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "listener failed"),
                Err(e) => tracing::error!(error = %e, "listener task panicked"),
            }
        }
    }

    pub fn stop_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// A listener's TLS settings, from its certificate files (kept in step with them until `stop`) and, for the proxy,
/// the certificates its resolver already has. `None` when the listener has no files and needs none.
pub(crate) fn listener_tls(
    kind: ListenerKind,
    config: &Config,
    resolver: Arc<gatehouse_net::tls::CertificateResolver>,
    stop: &CancellationToken,
) -> Result<Arc<gatehouse_net::tls::ServerConfig>, StartError> {
    use gatehouse_net::tls;
    let listener = kind.as_str();
    if let Some(files) = config.listener(kind).tls_files() {
        let served = files.load().map_err(|source| StartError::Tls { listener, source })?;
        resolver.set_fallback(Some(served));
        let stop = stop.clone();
        tokio::spawn(tls::follow_files(listener, files, resolver.clone(), async move { stop.cancelled().await }));
    }
    tls::server_config(resolver).map_err(|source| StartError::Tls { listener, source })
}

/// Opens storage and checks the master key: everything a node needs before doing work. Sets up a new data dir,
/// database and master key when there are none.
pub async fn open_services(config: &Config, clock: Arc<dyn Clock>) -> Result<Services, StartError> {
    let storage = config.storage_url()?;
    // Find the key before touching storage, so a missing key never leaves a half-initialised database; a new key
    // file is only written once storage shows it never had a key.
    let source = master_key::locate(config, &storage)?;
    let metrics = Arc::new(GatehouseMetrics::default());
    let store = gatehouse_store::metered::Metered::wrap(gatehouse_store::open(&storage).await?, metrics.clone());
    let key = master_key::settle(source, store.as_ref()).await?;
    let keys = Arc::new(key.derive());
    master_key::verify(store.as_ref(), &keys).await?;
    tracing::info!(storage = storage.redacted(), "storage ready");
    Ok(Services { store, keys, clock, metrics })
}

/// Where a command found the node it manages, for the line it prints before working.
#[derive(Debug, Clone)]
pub struct NodeLocation {
    pub data_dir: String,
    pub database: String,
}

impl NodeLocation {
    pub fn of(config: &Config) -> Result<Self, StartError> {
        // Absolute, so a command run from the wrong directory shows where it looked.
        let absolute = |path: &std::path::Path| {
            std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_owned())
        };
        let data_dir = absolute(&config.data_dir);
        let database = match config.storage_url()? {
            gatehouse_store::StorageUrl::Sqlite(path) => format!("sqlite://{}", absolute(&path).display()),
            other => other.redacted(),
        };
        Ok(Self { data_dir: data_dir.display().to_string(), database })
    }
}

/// [`open_services`] for commands that manage an existing node (`token …`): a data dir, database or master key
/// that is not there is an error naming where it was looked for, never something to create. A token made in a
/// fresh database beside the real one would be refused by the node it was meant for.
pub async fn open_existing_services(config: &Config, clock: Arc<dyn Clock>) -> Result<Services, StartError> {
    use gatehouse_store::StorageUrl;
    let storage = config.storage_url()?;
    let location = NodeLocation::of(config)?;
    let missing = |missing: String| StartError::NoNode {
        missing,
        data_dir: location.data_dir.clone(),
        database: location.database.clone(),
    };
    if let StorageUrl::Sqlite(database) = &storage {
        if config.master_key.is_none() && config.master_key_file.is_none() {
            // The data dir holds the key: it must be there, and (as a node checks) private.
            if !config.data_dir.is_dir() {
                return Err(missing(format!("the data dir {} does not exist", config.data_dir.display())));
            }
            gatehouse_store::files::private_dir(&config.data_dir)?;
            let key = config.data_dir.join("master.key");
            if !key.is_file() {
                return Err(missing(format!("the master key {} does not exist", key.display())));
            }
        }
        if !database.is_file() {
            return Err(missing(format!("the database {} does not exist", database.display())));
        }
    }
    let source = master_key::locate(config, &storage)?;
    let store = gatehouse_store::open(&storage).await?;
    if !master_key::is_set_up(store.as_ref()).await? {
        return Err(missing("the database was never started as a node".to_owned()));
    }
    let key = master_key::settle(source, store.as_ref()).await?;
    let keys = Arc::new(key.derive());
    master_key::verify(store.as_ref(), &keys).await?;
    // A command's metrics are never scraped.
    Ok(Services { store, keys, clock, metrics: Arc::default() })
}

/// Unknown paths on the platform listener: a token first, then a 404 in the format of the API the path belongs
/// to.
async fn platform_fallback(services: Services, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let not_found = || ApiError::NotFound("Not Found".to_owned());
    if path.starts_with("/v2/control-planes/") && path.contains("/core-entities") {
        match Principal::<KongError>::from_request_parts(&mut parts, &services).await {
            Ok(_) => KongError::from(ApiError::NotFound("Not found".to_owned())).into_response(),
            Err(e) => e.into_response(),
        }
    } else if path.starts_with("/v2/") {
        match Principal::<V2Error>::from_request_parts(&mut parts, &services).await {
            Ok(_) => V2Error::from(not_found()).into_response(),
            Err(e) => e.into_response(),
        }
    } else {
        match Principal::<V1Error>::from_request_parts(&mut parts, &services).await {
            Ok(_) => V1Error::from(not_found()).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

async fn bind(
    kind: ListenerKind,
    addr: SocketAddr,
    plaintext: bool,
    tls: bool,
) -> Result<(TcpListener, SocketAddr), BindError> {
    let listener = listener::bind_tls(kind, addr, plaintext || tls, tls).await?;
    let bound = listener.local_addr().map_err(|source| BindError::Io { kind, addr, source })?;
    Ok((listener, bound))
}

pub async fn start(config: &Config, options: NodeOptions) -> Result<RunningNode, StartError> {
    config.validate()?;
    if config.role == Role::DataPlane {
        return Err(StartError::Config(ConfigError::Invalid {
            path: "role".into(),
            message: "a data plane starts with cluster::start_data_plane (it has no storage)".into(),
        }));
    }
    let control_plane_role = config.role == Role::ControlPlane;
    // The soft limit (often 1024) is far below what a gateway needs; the hard limit is what the operator allows.
    if let Err(e) = gatehouse_net::raise_nofile_limit() {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let budget = FdBudget::current();
    let services = open_services(config, options.clock).await?;
    let shutdown = CancellationToken::new();
    let plaintext = config.allow_plaintext_public;
    // Bind everything first, so a port conflict fails the start before anything serves.
    let platform_tls = config.platform.listen_is_tls(ListenerKind::Platform);
    let issuer_tls = config.issuer.listen_is_tls(ListenerKind::Issuer);
    let (platform, platform_addr) =
        bind(ListenerKind::Platform, config.platform.listen, plaintext, platform_tls).await?;
    let (issuer_listener, issuer_addr) =
        bind(ListenerKind::Issuer, config.issuer.listen, plaintext, issuer_tls).await?;
    let (admin, admin_addr) = bind(ListenerKind::Admin, config.admin.listen, plaintext, false).await?;
    // The proxy's worker threads each accept on their own socket bound to this address. A control plane runs no
    // proxy; it binds the cluster listener instead.
    let (proxy_listener, proxy_addr, cluster) = if control_plane_role {
        (None, config.proxy.listen, Some(crate::cluster::bind_cluster(&config.cluster).await?))
    } else {
        let proxy_listener =
            listener::bind_reusable(ListenerKind::Proxy, config.proxy.listen, plaintext, false).await?;
        let proxy_addr = proxy_listener.local_addr().map_err(|source| BindError::Io {
            kind: ListenerKind::Proxy,
            addr: config.proxy.listen,
            source,
        })?;
        (Some(proxy_listener), proxy_addr, None)
    };
    let proxy_tls_listener = match config.proxy.listen_tls {
        Some(addr) if !control_plane_role => {
            Some(listener::bind_reusable(ListenerKind::Proxy, addr, true, true).await?)
        }
        _ => None,
    };
    let proxy_tls_addr = proxy_tls_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()
        .map_err(|source| BindError::Io { kind: ListenerKind::Proxy, addr: proxy_addr, source })?;
    let echo =
        if options.echo { Some(bind(ListenerKind::Echo, config.echo.listen, plaintext, false).await?) } else { None };
    let (status_listener, status_addr) = bind(ListenerKind::Status, config.status.listen, plaintext, false).await?;

    let template = Arc::new(config.issuer_url_template(issuer_addr)?);
    let settings = IssuerSettings::from_config(&config.issuer);
    let issuer = Issuer::start(services.clone(), template.clone(), settings).await?;
    let identity =
        IdentityState { services: services.clone(), issuer: template, revocations: issuer.revocations.clone() };

    let mut tasks_before: Vec<JoinHandle<std::io::Result<()>>> = Vec::new();
    let served_name = config.gateway.control_plane.as_deref().unwrap_or(DEFAULT_CONTROL_PLANE);
    let control_plane = ensure_control_plane(&services, served_name).await?;
    let publisher = ConfigPublisher::start(services.clone(), control_plane.id).await?;
    let proxy = Proxy::try_new(ProxySettings {
        trusted_ips: config.proxy.trusted_ips.clone(),
        workers: 0,
        introspection_cache_entries: config.gateway.introspection_cache_entries,
        underscores_in_headers: config.gateway.underscores_in_headers,
        limits: config.proxy.connection_limits(ListenerKind::Proxy.share(), budget),
        introspection_cache_bytes: config.gateway.introspection_cache_bytes,
        access_log: access_log_settings(config),
        registry: gatehouse_gateway::plugins::Registry::builtin(),
        // The issuer's clock: a test that moves one moves both, so tokens and the gateway's cache agree on `exp`.
        clock: gatehouse_model::SharedClock::new(services.clock.clone()),
        // `rate-limiting`'s `cluster` policy counts in this node's database.
        cluster_counters: Some(Arc::new(crate::counters::StoreCounters::new(services.store.clone()))),
        // `key-auth` hashes presented keys as the control plane hashed stored ones; the proxy never sees the
        // master key.
        key_auth_hmac: Some(services.keys.key_auth_hmac()),
        metrics: services.metrics.clone(),
        dns: dns_settings(&config.gateway),
    })
    .map_err(StartError::AccessLog)?;
    let mut cluster_addr = None;
    if let Some(cluster) = cluster {
        // The data planes' proxies are the ones that serve; this node's own is never bound.
        cluster_addr = Some(cluster.addr);
        if let Some(pinned) = cluster.pinned {
            gatehouse_control::cluster::follow_pinned(&services, control_plane.id, pinned).await?;
        }
        let state = gatehouse_control::cluster::ClusterState {
            services: services.clone(),
            control_plane_id: control_plane.id,
            published: gatehouse_control::cluster::encode_published(&services, publisher.subscribe()),
            ping_interval: config.cluster.ping_interval(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let stop = shutdown.clone();
        tracing::info!(listener = "cluster", address = %cluster.addr, mtls = ?config.cluster.mtls, "listening");
        tasks_before.push(tokio::spawn(gatehouse_control::cluster::serve(
            cluster.listener,
            cluster.tls,
            state,
            async move { stop.cancelled().await },
        )));
    } else {
        proxy.follow(publisher.subscribe());
    }
    let config_changes = publisher.changes();
    let control = ControlState(Arc::new(Control {
        services: services.clone(),
        admin_url: format!("http://{admin_addr}"),
        served: Some(control_plane.id),
        upstream_health: if control_plane_role {
            None
        } else {
            let balancers: Arc<dyn gatehouse_model::gateway::upstreams::UpstreamHealth> = proxy.balancers();
            Some(balancers)
        },
        configuration: Some(publisher.subscribe()),
    }));

    let apis = Router::new()
        .merge(control_planes_router(control.clone()))
        .merge(core_entities_router(control.clone()))
        .merge(management_router(identity));
    // The console calls these same routers in process with the signed-in token (never a privileged path).
    let console = gatehouse_console::console_router(gatehouse_console::ConsoleDeps {
        services: services.clone(),
        api: apis.clone(),
        issuer: issuer_router(issuer.clone()),
        proxy_url: format!("http://{proxy_addr}"),
        sessions: gatehouse_console::SessionSettings { secure_cookie: platform_tls, ..Default::default() },
    });
    let platform_router = Router::new()
        .route("/health", {
            let store = services.store.clone();
            get(move || std::future::ready(gatehouse_runtime::health::response(store.as_ref())))
        })
        .merge(apis)
        .merge(console)
        .fallback({
            let services = services.clone();
            move |request: Request| platform_fallback(services.clone(), request)
        });
    let mut routers = vec![
        (ListenerKind::Platform, platform, platform_router),
        (ListenerKind::Issuer, issuer_listener, issuer_router(issuer.clone())),
        (ListenerKind::Admin, admin, admin_router(control, config.admin.allowed_hosts.clone())),
    ];
    routers.push((
        ListenerKind::Status,
        status_listener,
        crate::status::status_router(crate::status::StatusState {
            store: Some(services.store.clone()),
            serves_proxy: !control_plane_role,
            proxy: proxy.clone(),
            gatehouse: services.metrics.clone(),
            node_id: uuid::Uuid::new_v4().to_string(),
        }),
    ));
    let echo_addr = echo.as_ref().map(|(_, a)| *a);
    if let Some((listener, _)) = echo {
        let hosts = LocalHosts::new(config.echo.allowed_hosts.clone(), "echo.allowed_hosts");
        routers.push((ListenerKind::Echo, listener, crate::echo::echo_router(hosts)));
    }
    let mut tasks = tasks_before;
    for (kind, listener, router) in routers {
        let stop = shutdown.clone();
        let listener_config = config.listener(kind);
        let limits = listener_config.connection_limits(kind.share(), budget);
        let gate = Gate::new(kind.as_str(), limits, listener_config.trusted_ips.clone());
        let tls = if listener_config.listen_is_tls(kind) {
            let resolver = gatehouse_net::tls::CertificateResolver::new();
            Some(gatehouse_net::tls::TlsAcceptor::from(listener_tls(kind, config, resolver, &shutdown)?))
        } else {
            None
        };
        tasks.push(tokio::spawn(listener::serve(
            kind,
            listener,
            router,
            gate,
            tls,
            async move { stop.cancelled().await },
        )));
    }
    tasks.push(tokio::spawn(crate::counters::prune(services.store.clone(), services.clock.clone(), shutdown.clone())));
    let proxy_tls = match proxy_tls_listener {
        Some(listener) => {
            let config = listener_tls(ListenerKind::Proxy, config, proxy.certificates().clone(), &shutdown)?;
            Some(gatehouse_gateway::proxy::TlsListener { listener, config })
        }
        None => None,
    };
    if let Some(proxy_listener) = proxy_listener {
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(gatehouse_gateway::proxy::serve_with_tls(
            proxy.clone(),
            proxy_listener,
            proxy_tls,
            async move { stop.cancelled().await },
        )));
    }
    Ok(RunningNode {
        services,
        issuer,
        proxy,
        control_plane,
        platform_addr,
        issuer_addr,
        proxy_addr,
        cluster_addr,
        proxy_tls_addr,
        admin_addr,
        platform_tls,
        issuer_tls,
        echo_addr,
        status_addr,
        config_changes,
        shutdown,
        tasks,
    })
}

/// `gateway.access_log` and `log.format` as the proxy takes them.
pub(crate) fn access_log_settings(config: &Config) -> gatehouse_gateway::access_log::AccessLogSettings {
    use gatehouse_gateway::access_log::{AccessLogDestination, AccessLogFormat, AccessLogSettings};
    let destination = match config.gateway.access_log.as_deref().map(str::trim) {
        None | Some("" | "stderr") => AccessLogDestination::Stderr,
        Some("off") => AccessLogDestination::Off,
        Some(path) => AccessLogDestination::File(path.into()),
    };
    let format = match config.log.format {
        gatehouse_runtime::config::LogFormat::Text => AccessLogFormat::Text,
        gatehouse_runtime::config::LogFormat::Json => AccessLogFormat::Json,
    };
    AccessLogSettings { destination, format }
}

/// Kong's `dns_resolver`, `dns_stale_ttl` and `dns_not_found_ttl`, defaults where unset.
pub(crate) fn dns_settings(
    gateway: &gatehouse_runtime::config::GatewayConfig,
) -> gatehouse_gateway::balancer::DnsSettings {
    let defaults = gatehouse_gateway::balancer::DnsSettings::default();
    let seconds = |value: Option<f64>, default| {
        value.and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()).unwrap_or(default)
    };
    gatehouse_gateway::balancer::DnsSettings {
        resolvers: gateway.dns_resolver.clone(),
        stale_ttl: seconds(gateway.dns_stale_ttl, defaults.stale_ttl),
        not_found_ttl: seconds(gateway.dns_not_found_ttl, defaults.not_found_ttl),
    }
}
