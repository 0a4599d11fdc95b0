//! `/v1/auth-servers/{id}/keys` (Gatehouse addition): the signing keys, and rotation. A rotated-out key stays
//! published in JWKS until the last token it signed has expired.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use gatehouse_model::identity::{SigningAlgorithm, SigningKey};
use gatehouse_model::{SigningKeyId, Timestamp};
use gatehouse_runtime::errors::ApiError;

use super::{Auth, Params, Result, auth_server_id, require_server};
use crate::{IdentityState, keys};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyView<'a> {
    id: SigningKeyId,
    algorithm: SigningAlgorithm,
    /// `current` signs new tokens; `retired` is only still published.
    #[schema(value_type = String, pattern = "^(current|retired)$")]
    status: &'static str,
    created_at: Timestamp,
    retired_at: Option<Timestamp>,
    #[schema(value_type = Object)]
    public_jwk: &'a Value,
}

/// `GET …/keys`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyList<'a> {
    data: Vec<KeyView<'a>>,
}

fn view(key: &SigningKey) -> KeyView<'_> {
    KeyView {
        id: key.id,
        algorithm: key.algorithm,
        status: if key.retired_at.is_none() { "current" } else { "retired" },
        created_at: key.created_at,
        retired_at: key.retired_at,
        public_jwk: &key.public_jwk,
    }
}

/// List signing keys (Gatehouse addition)
#[utoipa::path(operation_id = "listSigningKeys", get, path = "/v1/auth-servers/{authServerId}/keys", tag = "Signing Keys", responses((status = 200, description = "Every key the auth server still publishes, current and retired.", body = KeyList)))]
pub(super) async fn list(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let keys = state.services.store.signing_keys(server.id).await?;
    Ok(Json(KeyList { data: keys.iter().map(view).collect() }).into_response())
}

/// Rotate the signing key (Gatehouse addition)
#[utoipa::path(operation_id = "rotateSigningKey", post, path = "/v1/auth-servers/{authServerId}/keys/rotate", tag = "Signing Keys", responses((status = 201, description = "The new current key. The previous one is retired: it signs nothing more and stays in JWKS until the last token it signed has expired.", body = KeyView)))]
pub(super) async fn rotate(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let now = state.services.clock.now();
    let key = keys::generate_blocking(server.signing_algorithm, server.id, state.services.keys.clone(), now)
        .await
        .map_err(ApiError::internal)?;
    state.services.store.rotate_signing_key(&key).await?;
    tracing::info!(auth_server = %server.id, kid = %key.id, "signing key rotated");
    Ok((StatusCode::CREATED, Json(view(&key))).into_response())
}
