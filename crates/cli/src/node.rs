//! A running node: storage opened and migrated, the master key checked, listeners bound and serving.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use gatehouse_identity::{IdentityState, Issuer, IssuerSettings, IssuerState, issuer_router, management_router};
use gatehouse_model::{Clock, SystemClock};
use gatehouse_runtime::Services;
use gatehouse_runtime::config::{Config, ConfigError};
use gatehouse_runtime::listener::{self, BindError, ListenerKind};
use gatehouse_runtime::master_key::{self, KeyError};
use gatehouse_store::StoreError;

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
}

/// What a node is started with besides its configuration.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub clock: Arc<dyn Clock>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock) }
    }
}

#[derive(Debug)]
pub struct RunningNode {
    pub services: Services,
    pub issuer: IssuerState,
    pub platform_addr: SocketAddr,
    pub issuer_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl RunningNode {
    pub fn platform_url(&self) -> String {
        format!("http://{}", self.platform_addr)
    }

    /// Where the issuer listener answers (issuer URLs themselves come from `identity_public_url`).
    pub fn issuer_listener_url(&self) -> String {
        format!("http://{}", self.issuer_addr)
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

/// Opens storage and checks the master key: everything a node or a CLI command needs before doing work.
pub async fn open_services(config: &Config, clock: Arc<dyn Clock>) -> Result<Services, StartError> {
    let storage = config.storage_url()?;
    // Resolve the key before touching storage, so a missing key never leaves a half-initialised database.
    let key = master_key::resolve(config, &storage)?;
    let store = gatehouse_store::open(&storage).await?;
    let keys = Arc::new(key.derive());
    master_key::verify(store.as_ref(), &keys).await?;
    tracing::info!(storage = storage.redacted(), "storage ready");
    Ok(Services { store, keys, clock })
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

fn bound(listener: &tokio::net::TcpListener, kind: ListenerKind, asked: SocketAddr) -> Result<SocketAddr, BindError> {
    listener.local_addr().map_err(|source| BindError::Io { kind, addr: asked, source })
}

pub async fn start(config: &Config, options: NodeOptions) -> Result<RunningNode, StartError> {
    config.validate()?;
    let services = open_services(config, options.clock).await?;
    let shutdown = CancellationToken::new();
    let plaintext = config.allow_plaintext_public;
    let platform = listener::bind(ListenerKind::Platform, config.platform.listen, plaintext).await?;
    let platform_addr = bound(&platform, ListenerKind::Platform, config.platform.listen)?;
    let issuer_listener = listener::bind(ListenerKind::Issuer, config.issuer.listen, plaintext).await?;
    let issuer_addr = bound(&issuer_listener, ListenerKind::Issuer, config.issuer.listen)?;
    let template = Arc::new(config.issuer_url_template(issuer_addr)?);

    let settings = IssuerSettings { trusted_proxies: config.issuer.trusted_ips.clone(), ..IssuerSettings::default() };
    let issuer = Issuer::start(services.clone(), template.clone(), settings).await?;
    let identity =
        IdentityState { services: services.clone(), issuer: template, revocations: issuer.revocations.clone() };
    let platform_router = Router::new().route("/health", get(health)).merge(management_router(identity));

    let mut tasks = Vec::new();
    for (kind, listener, router) in [
        (ListenerKind::Platform, platform, platform_router),
        (ListenerKind::Issuer, issuer_listener, issuer_router(issuer.clone())),
    ] {
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(listener::serve(kind, listener, router, async move { stop.cancelled().await })));
    }
    Ok(RunningNode { services, issuer, platform_addr, issuer_addr, shutdown, tasks })
}
