//! Hybrid mode in the binary: `gatehouse cluster cert` (a shared-mode pair), the trust a node's `cluster` settings
//! describe, the control plane's cluster listener, and a data-plane node (the proxy and the status listener, no
//! storage, configured by its control plane).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use gatehouse_gateway::cluster::{CacheKey, DataPlaneSettings, LinkState};
use gatehouse_gateway::{Proxy, ProxySettings};
use gatehouse_net::cluster::{ClientTrust, ClusterIdentity, ServerTrust};
use gatehouse_net::tls::TlsError;
use gatehouse_net::{FdBudget, Gate};
use gatehouse_runtime::config::{ClusterConfig, ClusterMtls, Config, split_host_port};
use gatehouse_runtime::listener::{self, BindError, ListenerKind};

use crate::node::{NodeOptions, StartError};

/// The cache of the last configuration a data plane applied, in its data dir.
pub const CACHE_FILE: &str = "cluster-config.cache";
/// A data plane's node id, kept in its data dir so that its record on the control plane survives restarts.
pub const NODE_ID_FILE: &str = "node.id";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0} exists; remove it first or pass --force")]
    Exists(PathBuf),
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Writes a shared-mode cluster certificate and key (Kong's `kong hybrid gen_cert`: ECDSA P-384, common name
/// `kong_clustering`, three years), both files 0600.
pub fn generate_shared_cert(cert: &Path, key: &Path, force: bool) -> Result<(), CertError> {
    for path in [cert, key] {
        if !force && path.exists() {
            return Err(CertError::Exists(path.to_owned()));
        }
    }
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let mut params = rcgen::CertificateParams::new(vec!["kong_clustering".to_owned()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "kong_clustering");
    // A certificate's validity is wall time by definition; no test moves it.
    #[allow(clippy::disallowed_methods)]
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3 * 365);
    let certificate = params.self_signed(&pair)?;
    let write = |path: &Path, text: String| {
        use std::os::unix::fs::OpenOptionsExt;
        let failed = |source| CertError::Write { path: path.to_owned(), source };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(failed)?;
        // An existing file keeps its mode through `open`; make sure it is private.
        std::fs::set_permissions(path, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))
            .map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)
    };
    write(key, gatehouse_net::tls::pem_encode("PRIVATE KEY", &pair.serialize_der()))?;
    write(cert, gatehouse_net::tls::pem_encode("CERTIFICATE", certificate.der()))
}

fn read(path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|source| StartError::Cluster(TlsError::Read { path: path.to_owned(), source }))
}

/// The node's cluster certificate and key (validated configuration has both).
pub fn identity(cluster: &ClusterConfig) -> Result<ClusterIdentity, StartError> {
    let (Some(cert), Some(key)) = (&cluster.cert, &cluster.cert_key) else {
        return Err(StartError::Cluster(TlsError::Certificate(
            "cluster.cert and cluster.cert_key are required".into(),
        )));
    };
    ClusterIdentity::from_pem(&read(cert)?, &read(key)?).map_err(StartError::Cluster)
}

/// The control plane's cluster listener, bound (TLS only, so any address may be bound).
#[derive(Debug)]
pub struct ClusterListener {
    pub listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ServerConfig>,
    /// With `pki`, the pinned `dp-client-certificates` the verifier reads.
    pub pinned: Option<Arc<ArcSwap<Vec<rustls::pki_types::CertificateDer<'static>>>>>,
}

pub async fn bind_cluster(cluster: &ClusterConfig) -> Result<ClusterListener, StartError> {
    let identity = identity(cluster)?;
    let (trust, pinned) = match cluster.mtls {
        ClusterMtls::Shared => (ClientTrust::Shared, None),
        ClusterMtls::Pki => {
            let roots = match &cluster.ca_cert {
                Some(path) => Some(gatehouse_net::cluster::root_store(&read(path)?).map_err(StartError::Cluster)?),
                None => None,
            };
            let pinned = Arc::new(ArcSwap::from_pointee(Vec::new()));
            (ClientTrust::Pki { roots, pinned: pinned.clone() }, Some(pinned))
        }
    };
    let tls = gatehouse_net::cluster::server_config(&identity, trust).map_err(StartError::Cluster)?;
    let listener = tokio::net::TcpListener::bind(cluster.listen)
        .await
        .map_err(|source| StartError::ClusterBind { addr: cluster.listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::ClusterBind { addr: cluster.listen, source })?;
    Ok(ClusterListener { listener, addr, tls, pinned })
}

/// A data plane running in this process.
#[derive(Debug)]
pub struct DataPlaneNode {
    pub proxy: Arc<Proxy>,
    pub proxy_addr: SocketAddr,
    pub proxy_tls_addr: Option<SocketAddr>,
    pub status_addr: SocketAddr,
    pub node_id: uuid::Uuid,
    /// How the link to the control plane is.
    pub link: watch::Receiver<LinkState>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl DataPlaneNode {
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy_addr)
    }

    pub fn status_url(&self) -> String {
        format!("http://{}", self.status_addr)
    }

    pub fn stop_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn wait(self) {
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "listener failed"),
                Err(e) => tracing::error!(error = %e, "listener task panicked"),
            }
        }
    }

    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

/// This machine's name, as data planes report it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The node id kept in the data dir, made on first start.
fn node_id(data_dir: &Path) -> Result<uuid::Uuid, StartError> {
    let path = data_dir.join(NODE_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(id) = text.trim().parse()
    {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4();
    gatehouse_gateway::cluster::write_cache(&path, id.to_string().as_bytes())
        .map_err(|e| StartError::DataDir(e.to_string()))?;
    Ok(id)
}

/// Starts a data plane: binds the proxy and status listeners, serves the cached configuration when there is a
/// good one, and follows the control plane.
pub async fn start_data_plane(config: &Config, options: NodeOptions) -> Result<DataPlaneNode, StartError> {
    config.validate()?;
    if let Err(e) = gatehouse_net::raise_nofile_limit() {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let budget = FdBudget::current();
    gatehouse_store::files::private_dir(&config.data_dir).map_err(|e| StartError::DataDir(e.to_string()))?;
    let node_id = node_id(&config.data_dir)?;
    let identity = identity(&config.cluster)?;
    let control_plane = config.cluster.control_plane.clone().unwrap_or_default();
    let (host, _) = split_host_port(&control_plane).unwrap_or_default();
    let trust = match config.cluster.mtls {
        ClusterMtls::Shared => ServerTrust::Shared,
        ClusterMtls::Pki => {
            let path = config.cluster.ca_cert.as_deref().unwrap_or(Path::new(""));
            ServerTrust::Pki { roots: gatehouse_net::cluster::root_store(&read(path)?).map_err(StartError::Cluster)? }
        }
    };
    let name = config.cluster.server_name.clone().unwrap_or(host);
    let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|_| {
        StartError::Config(gatehouse_runtime::config::ConfigError::Invalid {
            path: "cluster.server_name".into(),
            message: format!("[{name}] is not a host name or IP address"),
        })
    })?;
    let tls = gatehouse_net::cluster::client_config(&identity, trust).map_err(StartError::Cluster)?;
    let settings = Arc::new(DataPlaneSettings {
        control_plane,
        server_name,
        tls,
        cache_path: config.data_dir.join(CACHE_FILE),
        cache_key: CacheKey::derive(identity.key_der()),
        node_id,
        hostname: hostname(),
        version: options.version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        ping_interval: config.cluster.ping_interval(),
    });

    let plaintext = config.allow_plaintext_public;
    let proxy_listener = listener::bind_reusable(ListenerKind::Proxy, config.proxy.listen, plaintext, false).await?;
    let proxy_addr = proxy_listener.local_addr().map_err(|source| BindError::Io {
        kind: ListenerKind::Proxy,
        addr: config.proxy.listen,
        source,
    })?;
    let proxy_tls_listener = match config.proxy.listen_tls {
        Some(addr) => Some(listener::bind_reusable(ListenerKind::Proxy, addr, true, true).await?),
        None => None,
    };
    let proxy_tls_addr = proxy_tls_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()
        .map_err(|source| BindError::Io { kind: ListenerKind::Proxy, addr: proxy_addr, source })?;
    let status_listener = listener::bind_tls(ListenerKind::Status, config.status.listen, plaintext, false).await?;
    let status_addr = status_listener.local_addr().map_err(|source| BindError::Io {
        kind: ListenerKind::Status,
        addr: config.status.listen,
        source,
    })?;

    let metrics = Arc::new(gatehouse_model::metrics::gatehouse::GatehouseMetrics::default());
    let proxy = Proxy::try_new(ProxySettings {
        trusted_ips: config.proxy.trusted_ips.clone(),
        workers: 0,
        introspection_cache_entries: config.gateway.introspection_cache_entries,
        underscores_in_headers: config.gateway.underscores_in_headers,
        limits: config.proxy.connection_limits(ListenerKind::Proxy.share(), budget),
        introspection_cache_bytes: config.gateway.introspection_cache_bytes,
        access_log: crate::node::access_log_settings(config),
        registry: gatehouse_gateway::plugins::Registry::builtin(),
        clock: gatehouse_model::SharedClock::new(options.clock.clone()),
        // No database: `rate-limiting`'s `cluster` policy has nowhere to count (Kong refuses it in hybrid mode
        // too), and `key-auth` keys are hashed under a key derived from the control plane's master key.
        cluster_counters: None,
        key_auth_hmac: None,
        metrics: metrics.clone(),
        dns: crate::node::dns_settings(&config.gateway),
    })
    .map_err(StartError::AccessLog)?;
    let serving = gatehouse_gateway::cluster::load_cache(&proxy, &settings);

    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let (link_sender, link) = watch::channel(LinkState::Connecting);
    {
        let stop = shutdown.clone();
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            gatehouse_gateway::cluster::follow(proxy, settings, serving, link_sender, stop.cancelled_owned()).await;
            Ok(())
        }));
    }
    let status_router = crate::status::status_router(crate::status::StatusState {
        store: None,
        serves_proxy: true,
        proxy: proxy.clone(),
        gatehouse: metrics,
        node_id: node_id.to_string(),
    });
    let limits = config.status.connection_limits(ListenerKind::Status.share(), budget);
    let gate = Gate::new(ListenerKind::Status.as_str(), limits, config.status.trusted_ips.clone());
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(listener::serve(
        ListenerKind::Status,
        status_listener,
        status_router,
        gate,
        None,
        async move { stop.cancelled().await },
    )));
    let proxy_tls = match proxy_tls_listener {
        Some(listener) => {
            let tls = crate::node::listener_tls(ListenerKind::Proxy, config, proxy.certificates().clone(), &shutdown)?;
            Some(gatehouse_gateway::proxy::TlsListener { listener, config: tls })
        }
        None => None,
    };
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(gatehouse_gateway::proxy::serve_with_tls(
        proxy.clone(),
        proxy_listener,
        proxy_tls,
        async move { stop.cancelled().await },
    )));
    tracing::info!(node_id = %node_id, control_plane = config.cluster.control_plane.as_deref().unwrap_or(""), "data plane started");
    Ok(DataPlaneNode { proxy, proxy_addr, proxy_tls_addr, status_addr, node_id, link, shutdown, tasks })
}
