use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use gatehouse_model::ClientSecretId;
use gatehouse_model::identity::secret::{
    COLLECTION, CreatedSecretView, MAX_ENABLED_SECRETS, MAX_SECRETS, NewSecret, secret_patch_from_body,
};
use gatehouse_model::problem::Rule;
use gatehouse_runtime::errors::ApiError;
use gatehouse_runtime::extract::path_id;
use gatehouse_store::StoreError;

use super::clients::{generated_secret, not_found as client_not_found, secret_record};
use super::{Auth, Body, Params, Result, auth_server_id, client_id, list_query, nth, page, require_server};
use crate::IdentityState;

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

pub(super) async fn get(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let (server, client, id) = (auth_server_id(&params)?, client_id(&params)?, secret_id(&params)?);
    let secret = state.services.store.get_client_secret(server, &client, id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(secret).into_response())
}

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

pub(super) async fn delete(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<StatusCode> {
    let (server, client, id) = (auth_server_id(&params)?, client_id(&params)?, secret_id(&params)?);
    match state.services.store.delete_client_secret(server, &client, id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(not_found(id).into()),
        Err(e) => Err(e.into()),
    }
}
