use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use gatehouse_model::AuthServerId;
use gatehouse_model::identity::auth_server::{AuthServerView, COLLECTION};
use gatehouse_model::identity::{AuthServer, AuthServerPatch, NewAuthServer};
use gatehouse_model::issuer_url::ISSUER_KEY_LEN;
use gatehouse_model::listing::Page;
use gatehouse_model::problem::ProblemBody;
use gatehouse_model::problem::{InvalidParameter, Rule};
use gatehouse_runtime::errors::ApiError;
use gatehouse_runtime::random;
use gatehouse_store::{Conflict, StoreError};

use super::{Auth, Body, Params, Result, auth_server_id, force_param, list_query, page, require_server};
use crate::IdentityState;
use crate::keys;

fn name_conflict(name: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::Conflict(Conflict::Name) => {
            ApiError::Conflict(format!("An auth server named [{name}] already exists"))
        }
        other => other.into(),
    }
}

fn view<'a>(state: &IdentityState, s: &'a AuthServer) -> Json<AuthServerView<'a>> {
    Json(s.view(&state.issuer))
}

/// List auth servers
#[utoipa::path(operation_id = "listAuthServers", get, path = "/v1/auth-servers", tag = "Auth Servers", responses((status = 200, description = "A page of auth servers.", body = Page<AuthServerView>)))]
pub(super) async fn list(_: Auth, State(state): State<IdentityState>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = list_query(raw.as_deref(), &COLLECTION)?;
    let listed = state.services.store.list_auth_servers(&query).await?;
    let views: Vec<_> = listed.items.iter().map(|s| s.view(&state.issuer)).collect();
    Ok(page(views, &query, listed.total).into_response())
}

/// Create an auth server
#[utoipa::path(operation_id = "createAuthServer", post, path = "/v1/auth-servers", tag = "Auth Servers", request_body = NewAuthServer, responses((status = 201, description = "The auth server, with its first signing key generated.", body = AuthServerView), (status = 409, description = "An auth server with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn create(_: Auth, State(state): State<IdentityState>, body: Body) -> Result<Response> {
    let input = NewAuthServer::from_body(&body.0).map_err(ApiError::Invalid)?;
    let now = state.services.clock.now();
    let server = AuthServer {
        id: AuthServerId::new(),
        issuer_key: random::lower_alphanumeric(ISSUER_KEY_LEN),
        name: input.name,
        audience: input.audience,
        description: input.description,
        signing_algorithm: input.signing_algorithm,
        labels: input.labels,
        trusted_origins: input.trusted_origins,
        created_at: now,
        updated_at: now,
    };
    let key = keys::generate_blocking(server.signing_algorithm, server.id, state.services.keys.clone(), now)
        .await
        .map_err(ApiError::internal)?;
    state.services.store.create_auth_server(&server, &key).await.map_err(name_conflict(&server.name))?;
    tracing::info!(auth_server = %server.id, "auth server created");
    Ok((StatusCode::CREATED, view(&state, &server)).into_response())
}

/// Get an auth server
#[utoipa::path(operation_id = "getAuthServer", get, path = "/v1/auth-servers/{authServerId}", tag = "Auth Servers", responses((status = 200, description = "The auth server.", body = AuthServerView)))]
pub(super) async fn get(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    Ok(view(&state, &server).into_response())
}

/// Update an auth server
#[utoipa::path(operation_id = "updateAuthServer", patch, path = "/v1/auth-servers/{authServerId}", tag = "Auth Servers", request_body = AuthServerPatch, responses((status = 200, description = "The updated auth server. A new `signing_algorithm` generates a new key; the old one stays published until its tokens expire.", body = AuthServerView), (status = 409, description = "An auth server with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn patch(_: Auth, State(state): State<IdentityState>, params: Params, body: Body) -> Result<Response> {
    let id = auth_server_id(&params)?;
    let patch = AuthServerPatch::from_body(&body.0).map_err(ApiError::Invalid)?;
    let current = require_server(&state, id).await?;
    let now = state.services.clock.now();
    let updated = patch.apply(&current, now).map_err(ApiError::Invalid)?;
    // A new algorithm needs a new key pair; the old public key stays published until its tokens expire.
    let new_key = if updated.signing_algorithm != current.signing_algorithm {
        Some(
            keys::generate_blocking(updated.signing_algorithm, id, state.services.keys.clone(), now)
                .await
                .map_err(ApiError::internal)?,
        )
    } else {
        None
    };
    state.services.store.update_auth_server(&updated, new_key.as_ref()).await.map_err(name_conflict(&updated.name))?;
    Ok(view(&state, &updated).into_response())
}

/// Delete an auth server
#[utoipa::path(operation_id = "deleteAuthServer", delete, path = "/v1/auth-servers/{authServerId}", tag = "Auth Servers", responses((status = 204, description = "Deleted.")))]
pub(super) async fn delete(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode> {
    let id = auth_server_id(&params)?;
    let force = force_param(raw.as_deref())?;
    match state.services.store.delete_auth_server(id, force).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!("Auth server [{id}] was not found")).into()),
        Err(StoreError::NotEmpty { clients, scopes, claims }) => {
            let reason = format!(
                "the auth server still has [{clients}] clients, [{scopes}] scopes and [{claims}] claims; delete them \
                 first or pass force=true to delete everything"
            );
            Err(ApiError::invalid(InvalidParameter::new("force", Rule::Invalid, reason).in_query()).into())
        }
        Err(e) => Err(e.into()),
    }
}
