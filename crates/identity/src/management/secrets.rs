use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use gatehouse_model::ClientSecretId;
use gatehouse_model::identity::ClientSecret;
use gatehouse_model::identity::secret::{
    COLLECTION, CreatedSecretView, MAX_ENABLED_SECRETS, MAX_SECRETS, NewSecret, secret_patch_from_body,
};
use gatehouse_model::listing::Page;
use gatehouse_model::problem::{ProblemBody, Rule};
use gatehouse_runtime::errors::ApiError;
use gatehouse_runtime::extract::path_id;
use gatehouse_store::StoreError;

use super::clients::{generated_secret, not_found as client_not_found, secret_record};
use super::{Auth, Body, Params, Result, auth_server_id, client_id, list_query, nth, page, require_server};
use crate::IdentityState;

/// `PATCH …/secrets/{clientSecretId}`: only `enabled` changes.
#[derive(Debug, utoipa::ToSchema)]
pub(super) struct SecretPatch {
    #[allow(dead_code)]
    enabled: bool,
}

fn secret_id(params: &Params) -> Result<ClientSecretId, ApiError> {
    path_id("clientSecretId", nth(params, 2), |s| s.parse().ok(), Rule::IsUuid)
}

fn not_found(id: ClientSecretId) -> ApiError {
    ApiError::NotFound(format!("Client secret [{id}] was not found"))
}

fn limit_error(e: StoreError) -> ApiError {
    match e {
        StoreError::SecretLimit { enabled_limit: true } => ApiError::Forbidden(format!(
            "A client can have at most [{MAX_ENABLED_SECRETS}] enabled secrets; disable or delete one first"
        )),
        StoreError::SecretLimit { enabled_limit: false } => {
            ApiError::Forbidden(format!("A client can have at most [{MAX_SECRETS}] secrets; delete one first"))
        }
        other => other.into(),
    }
}

/// List a client's secrets
#[utoipa::path(operation_id = "listClientSecrets", get, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/secrets", tag = "Client Secrets", responses((status = 200, description = "A page of the client's secrets (never their values).", body = Page<ClientSecret>)))]
pub(super) async fn list(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let client = client_id(&params)?;
    state.services.store.get_client(server.id, &client).await?.ok_or_else(|| client_not_found(&client))?;
    let query = list_query(raw.as_deref(), &COLLECTION)?;
    let listed = state.services.store.list_client_secrets(server.id, &client, &query).await?;
    Ok(page(listed.items, &query, listed.total).into_response())
}

/// Add a client secret
#[utoipa::path(operation_id = "createClientSecret", post, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/secrets", tag = "Client Secrets", request_body = NewSecret, responses((status = 201, description = "The secret, with its value shown this once.", body = CreatedSecretView), (status = 403, description = "The client already has the most secrets, or enabled secrets, it may have.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn create(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    body: Body,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let client = client_id(&params)?;
    let input = NewSecret::from_body(&body.0).map_err(ApiError::Invalid)?;
    let secret = input.secret.unwrap_or_else(generated_secret);
    let record = secret_record(&state, server.id, &client, &secret, input.enabled, state.services.clock.now());
    match state.services.store.add_client_secret(&record, MAX_ENABLED_SECRETS, MAX_SECRETS).await {
        Ok(()) => {
            Ok((StatusCode::CREATED, Json(CreatedSecretView { item: &record, secret: secret.expose() }))
                .into_response())
        }
        Err(StoreError::NotFound) => Err(client_not_found(&client).into()),
        Err(e) => Err(limit_error(e).into()),
    }
}

/// Get a client secret
#[utoipa::path(operation_id = "getClientSecret", get, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/secrets/{clientSecretId}", tag = "Client Secrets", responses((status = 200, description = "The secret (never its value).", body = ClientSecret)))]
pub(super) async fn get(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let (server, client, id) = (auth_server_id(&params)?, client_id(&params)?, secret_id(&params)?);
    let secret = state.services.store.get_client_secret(server, &client, id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(secret).into_response())
}

/// Enable or disable a client secret
#[utoipa::path(operation_id = "updateClientSecret", patch, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/secrets/{clientSecretId}", tag = "Client Secrets", request_body = SecretPatch, responses((status = 200, description = "The updated secret.", body = ClientSecret), (status = 403, description = "The client already has the most enabled secrets it may have.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn patch(_: Auth, State(state): State<IdentityState>, params: Params, body: Body) -> Result<Response> {
    let (server, client, id) = (auth_server_id(&params)?, client_id(&params)?, secret_id(&params)?);
    let enabled = secret_patch_from_body(&body.0).map_err(ApiError::Invalid)?;
    let now = state.services.clock.now();
    match state.services.store.set_client_secret_enabled(server, &client, id, enabled, MAX_ENABLED_SECRETS, now).await {
        Ok(secret) => Ok(Json(secret).into_response()),
        Err(StoreError::NotFound) => Err(not_found(id).into()),
        Err(e) => Err(limit_error(e).into()),
    }
}

/// Delete a client secret
#[utoipa::path(operation_id = "deleteClientSecret", delete, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/secrets/{clientSecretId}", tag = "Client Secrets", responses((status = 204, description = "Deleted.")))]
pub(super) async fn delete(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<StatusCode> {
    let (server, client, id) = (auth_server_id(&params)?, client_id(&params)?, secret_id(&params)?);
    match state.services.store.delete_client_secret(server, &client, id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(not_found(id).into()),
        Err(e) => Err(e.into()),
    }
}
