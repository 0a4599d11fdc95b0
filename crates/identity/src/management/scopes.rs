use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use gatehouse_model::ScopeId;
use gatehouse_model::identity::scope::COLLECTION;
use gatehouse_model::identity::{NewScope, Scope, ScopePatch};
use gatehouse_model::listing::Page;
use gatehouse_model::problem::ProblemBody;
use gatehouse_model::problem::{InvalidParameter, Rule};
use gatehouse_runtime::errors::ApiError;
use gatehouse_runtime::extract::path_id;
use gatehouse_store::{Conflict, StoreError};

use super::{Auth, Body, Params, Result, auth_server_id, force_param, list_query, nth, page, require_server};
use crate::IdentityState;

fn scope_id(params: &Params) -> Result<ScopeId, ApiError> {
    path_id("scopeId", nth(params, 1), |s| s.parse().ok(), Rule::IsUuid)
}

fn not_found(id: ScopeId) -> ApiError {
    ApiError::NotFound(format!("Scope [{id}] was not found"))
}

fn store_error(name: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::Conflict(Conflict::Name) => ApiError::Conflict(format!("A scope named [{name}] already exists")),
        other => other.into(),
    }
}

/// List scopes
#[utoipa::path(operation_id = "listScopes", get, path = "/v1/auth-servers/{authServerId}/scopes", tag = "Scopes", responses((status = 200, description = "A page of scopes.", body = Page<Scope>)))]
pub(super) async fn list(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let query = list_query(raw.as_deref(), &COLLECTION)?;
    let listed = state.services.store.list_scopes(server.id, &query).await?;
    Ok(page(listed.items, &query, listed.total).into_response())
}

/// Create a scope
#[utoipa::path(operation_id = "createScope", post, path = "/v1/auth-servers/{authServerId}/scopes", tag = "Scopes", request_body = NewScope, responses((status = 201, description = "The scope.", body = Scope), (status = 409, description = "A scope with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn create(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    body: Body,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let input = NewScope::from_body(&body.0).map_err(ApiError::Invalid)?;
    let now = state.services.clock.now();
    let scope = Scope {
        id: ScopeId::new(),
        auth_server_id: server.id,
        name: input.name,
        description: input.description,
        default: input.default,
        include_in_metadata: input.include_in_metadata,
        enabled: input.enabled,
        created_at: now,
        updated_at: now,
    };
    state.services.store.create_scope(&scope).await.map_err(store_error(&scope.name))?;
    Ok((StatusCode::CREATED, Json(scope)).into_response())
}

/// Get a scope
#[utoipa::path(operation_id = "getScope", get, path = "/v1/auth-servers/{authServerId}/scopes/{scopeId}", tag = "Scopes", responses((status = 200, description = "The scope.", body = Scope)))]
pub(super) async fn get(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let (server, id) = (auth_server_id(&params)?, scope_id(&params)?);
    let scope = state.services.store.get_scope(server, id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(scope).into_response())
}

/// Update a scope
#[utoipa::path(operation_id = "updateScope", patch, path = "/v1/auth-servers/{authServerId}/scopes/{scopeId}", tag = "Scopes", request_body = ScopePatch, responses((status = 200, description = "The updated scope.", body = Scope), (status = 409, description = "A scope with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn patch(_: Auth, State(state): State<IdentityState>, params: Params, body: Body) -> Result<Response> {
    let (server, id) = (auth_server_id(&params)?, scope_id(&params)?);
    let patch = ScopePatch::from_body(&body.0).map_err(ApiError::Invalid)?;
    let current = state.services.store.get_scope(server, id).await?.ok_or_else(|| not_found(id))?;
    let updated = patch.apply(&current, state.services.clock.now());
    state.services.store.update_scope(&updated).await.map_err(store_error(&updated.name))?;
    Ok(Json(updated).into_response())
}

/// Delete a scope
#[utoipa::path(operation_id = "deleteScope", delete, path = "/v1/auth-servers/{authServerId}/scopes/{scopeId}", tag = "Scopes", responses((status = 204, description = "Deleted.")))]
pub(super) async fn delete(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode> {
    let (server, id) = (auth_server_id(&params)?, scope_id(&params)?);
    let force = force_param(raw.as_deref())?;
    match state.services.store.delete_scope(server, id, force).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(not_found(id).into()),
        // An emptied include_in_scopes would silently turn a claim into "only when no scopes are granted".
        Err(StoreError::ScopeInUse { claims }) => {
            let reason = format!(
                "claims [{}] list this scope in include_in_scopes; update them first or pass force=true to remove it \
                 from them",
                claims.join(", ")
            );
            Err(ApiError::invalid(InvalidParameter::new("force", Rule::Invalid, reason).in_query()).into())
        }
        Err(e) => Err(e.into()),
    }
}
