use std::sync::Arc;

use axum::extract::FromRef;

use gatehouse_model::issuer_url::IssuerUrlTemplate;
use gatehouse_runtime::Services;

use crate::issuer::revocations::RevocationSet;

/// Shared by every identity handler.
#[derive(Debug, Clone)]
pub struct IdentityState {
    pub services: Services,
    /// Computes each auth server's issuer URL (never from a request's Host header).
    pub issuer: Arc<IssuerUrlTemplate>,
    /// Shared with the issuer, so a revocation through this API is refused by introspection before it answers.
    pub revocations: Arc<RevocationSet>,
}

impl FromRef<IdentityState> for Services {
    fn from_ref(state: &IdentityState) -> Services {
        state.services.clone()
    }
}
