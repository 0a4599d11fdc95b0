//! The control plane: Konnect's `/v2/control-planes` and core entities on the platform listener, the Kong Admin
//! API on the admin listener, and the configuration snapshots the proxy runs.

mod admin;
mod browsers;
mod certificates;
pub mod cluster;
mod control_planes;
mod entities;
mod jwt_secrets;
mod nodes;
mod openapi;
mod publish;
mod secrets;
mod upstream_health;

use std::sync::Arc;

use gatehouse_runtime::Services;

pub use admin::admin_router;
pub use browsers::LocalHosts;
pub use control_planes::control_planes_router;
pub use entities::core_entities_router;
pub use openapi::{admin_openapi, v2_openapi};
pub use publish::{ConfigPublisher, ensure_control_plane};

/// Shared by the control-plane handlers.
#[derive(Debug)]
pub struct Control {
    pub services: Services,
    /// This node's admin URL, reported as each control plane's `control_plane_endpoint`.
    pub admin_url: String,
    /// The control plane this node serves (its Admin API, its proxy); deleting it is refused.
    pub served: Option<uuid::Uuid>,
    /// The node's proxy's balancers, for the upstreams' health endpoints (health is per node).
    pub upstream_health: Option<Arc<dyn gatehouse_model::gateway::upstreams::UpstreamHealth>>,
    /// The served control plane's configuration as published (its hash is `expected-config-hash`).
    pub configuration: Option<tokio::sync::watch::Receiver<Arc<gatehouse_model::gateway::snapshot::ConfigSnapshot>>>,
}

/// The handlers' state: cheap to clone, dereferences to [`Control`].
#[derive(Debug, Clone)]
pub struct ControlState(pub Arc<Control>);

impl std::ops::Deref for ControlState {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.0
    }
}

impl axum::extract::FromRef<ControlState> for Services {
    fn from_ref(state: &ControlState) -> Services {
        state.services.clone()
    }
}
