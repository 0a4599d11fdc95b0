//! `/clients/{clientId}/tokens`: the records of issued access tokens, listed and revoked.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use gatehouse_model::TokenId;
use gatehouse_model::identity::IssuedToken;
use gatehouse_model::identity::token::COLLECTION;
use gatehouse_model::listing::Page;
use gatehouse_model::problem::Rule;
use gatehouse_runtime::errors::ApiError;
use gatehouse_runtime::extract::path_id;
use gatehouse_store::StoreError;

use super::clients::not_found as client_not_found;
use super::{Auth, Params, Result, auth_server_id, client_id, list_query, nth, page, require_server};
use crate::IdentityState;

fn token_id(params: &Params) -> Result<TokenId, ApiError> {
    path_id("tokenId", nth(params, 2), |s| s.parse().ok(), Rule::IsUuid)
}

fn not_found(id: TokenId) -> ApiError {
    ApiError::NotFound(format!("Token [{id}] was not found"))
}

/// List tokens issued to a client
#[utoipa::path(operation_id = "listClientTokens", get, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/tokens", tag = "Tokens", responses((status = 200, description = "A page of the records of tokens issued to the client (kept for a day after they expire).", body = Page<IssuedToken>)))]
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
    let listed = state.services.store.list_tokens(server.id, &client, &query).await?;
    Ok(page(listed.items, &query, listed.total).into_response())
}

/// Get an issued token's record
#[utoipa::path(operation_id = "getClientToken", get, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/tokens/{tokenId}", tag = "Tokens", responses((status = 200, description = "The token's record.", body = IssuedToken)))]
pub(super) async fn get(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let (server, client, id) = (auth_server_id(&params)?, client_id(&params)?, token_id(&params)?);
    let token = state.services.store.get_token(server, &client, id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(token).into_response())
}

/// Revoke a token
#[utoipa::path(operation_id = "revokeToken", delete, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/tokens/{tokenId}", tag = "Tokens", responses((status = 204, description = "Revoked: introspection answers inactive and the proxy refuses it.")))]
pub(super) async fn revoke(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<StatusCode> {
    let (server, client, id) = (auth_server_id(&params)?, client_id(&params)?, token_id(&params)?);
    match state.services.store.revoke_token(server, &client, id).await {
        Ok(token) => {
            state.revocations.add(id, token.expires_at);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(StoreError::NotFound) => Err(not_found(id).into()),
        Err(e) => Err(e.into()),
    }
}

/// Revoke every token of a client
#[utoipa::path(operation_id = "revokeClientTokens", delete, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/tokens", tag = "Tokens", responses((status = 204, description = "Every token of the client is revoked.")))]
pub(super) async fn revoke_all(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<StatusCode> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let client = client_id(&params)?;
    state.services.store.get_client(server.id, &client).await?.ok_or_else(|| client_not_found(&client))?;
    let revoked = state.services.store.revoke_client_tokens(server.id, &client).await?;
    tracing::info!(auth_server = %server.id, client = %client, tokens = revoked.len(), "revoked every token of a client");
    state.revocations.extend(revoked);
    Ok(StatusCode::NO_CONTENT)
}
