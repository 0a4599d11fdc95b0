use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use gatehouse_model::ClaimId;
use gatehouse_model::identity::claim::COLLECTION;
use gatehouse_model::identity::{Claim, ClaimPatch, NewClaim};
use gatehouse_model::listing::Page;
use gatehouse_model::problem::ProblemBody;
use gatehouse_model::problem::{InvalidParameter, Rule};
use gatehouse_runtime::errors::ApiError;
use gatehouse_runtime::extract::path_id;
use gatehouse_store::{Conflict, StoreError};

use serde_json::{Map, Value};

use super::clients::not_found as client_not_found;
use super::{
    Auth, Body, Params, Result, auth_server_id, client_id, list_query, missing_scopes, nth, page, require_server,
};
use crate::IdentityState;
use crate::template::{ClaimValue, TemplateContext};

fn claim_id(params: &Params) -> Result<ClaimId, ApiError> {
    path_id("claimId", nth(params, 1), |s| s.parse().ok(), Rule::IsUuid)
}

fn not_found(id: ClaimId) -> ApiError {
    ApiError::NotFound(format!("Claim [{id}] was not found"))
}

fn store_error(name: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::Conflict(Conflict::Name) => ApiError::Conflict(format!("A claim named [{name}] already exists")),
        other => other.into(),
    }
}

/// A value that does not parse as a template is refused with the position of the action at fault.
fn check_template(field: &str, value: &str) -> Result<ClaimValue, ApiError> {
    ClaimValue::compile(value)
        .map_err(|e| ApiError::invalid(InvalidParameter::new(field, Rule::Invalid, e.to_string()).in_body()))
}

async fn check_scopes(state: &IdentityState, claim: &Claim) -> Result<()> {
    if claim.include_in_scopes.is_empty() {
        return Ok(());
    }
    let scopes = state.services.store.all_scopes(claim.auth_server_id).await?;
    let missing = missing_scopes("include_in_scopes", &claim.include_in_scopes, &scopes);
    if missing.is_empty() { Ok(()) } else { Err(ApiError::Invalid(missing).into()) }
}

/// List claims
#[utoipa::path(operation_id = "listClaims", get, path = "/v1/auth-servers/{authServerId}/claims", tag = "Claims", responses((status = 200, description = "A page of claims.", body = Page<Claim>)))]
pub(super) async fn list(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let query = list_query(raw.as_deref(), &COLLECTION)?;
    let listed = state.services.store.list_claims(server.id, &query).await?;
    Ok(page(listed.items, &query, listed.total).into_response())
}

/// Create a claim
#[utoipa::path(operation_id = "createClaim", post, path = "/v1/auth-servers/{authServerId}/claims", tag = "Claims", request_body = NewClaim, responses((status = 201, description = "The claim.", body = Claim), (status = 409, description = "A claim with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn create(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    body: Body,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let input = NewClaim::from_body(&body.0).map_err(ApiError::Invalid)?;
    check_template("value", &input.value)?;
    let now = state.services.clock.now();
    let claim = Claim {
        id: ClaimId::new(),
        auth_server_id: server.id,
        name: input.name,
        value: input.value,
        include_in_token: input.include_in_token,
        include_in_all_scopes: input.include_in_all_scopes,
        include_in_scopes: input.include_in_scopes,
        enabled: input.enabled,
        created_at: now,
        updated_at: now,
    };
    check_scopes(&state, &claim).await?;
    state.services.store.create_claim(&claim).await.map_err(store_error(&claim.name))?;
    Ok((StatusCode::CREATED, Json(claim)).into_response())
}

/// Get a claim
#[utoipa::path(operation_id = "getClaim", get, path = "/v1/auth-servers/{authServerId}/claims/{claimId}", tag = "Claims", responses((status = 200, description = "The claim.", body = Claim)))]
pub(super) async fn get(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let (server, id) = (auth_server_id(&params)?, claim_id(&params)?);
    let claim = state.services.store.get_claim(server, id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(claim).into_response())
}

/// Update a claim
#[utoipa::path(operation_id = "updateClaim", patch, path = "/v1/auth-servers/{authServerId}/claims/{claimId}", tag = "Claims", request_body = ClaimPatch, responses((status = 200, description = "The updated claim.", body = Claim), (status = 409, description = "A claim with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn patch(_: Auth, State(state): State<IdentityState>, params: Params, body: Body) -> Result<Response> {
    let (server, id) = (auth_server_id(&params)?, claim_id(&params)?);
    let patch = ClaimPatch::from_body(&body.0).map_err(ApiError::Invalid)?;
    if let Some(value) = &patch.value {
        check_template("value", value)?;
    }
    let current = state.services.store.get_claim(server, id).await?.ok_or_else(|| not_found(id))?;
    let updated = patch.apply(&current, state.services.clock.now());
    check_scopes(&state, &updated).await?;
    state.services.store.update_claim(&updated).await.map_err(store_error(&updated.name))?;
    Ok(Json(updated).into_response())
}

/// Test claim templates for a client
///
/// `POST …/clients/{clientId}/test-claim`: renders a map of claim name → value for this client, as a token
/// minted now would carry them.
#[utoipa::path(operation_id = "testClaim", post, path = "/v1/auth-servers/{authServerId}/clients/{clientId}/test-claim", tag = "Claims", request_body(content = HashMap<String, String>, description = "Claim name → value template, as a claim's `value` takes it."), responses((status = 200, description = "Claim name → the value a token minted now for this client would carry (a string, or the JSON value the template renders).", body = HashMap<String, serde_json::Value>)))]
pub(super) async fn test(_: Auth, State(state): State<IdentityState>, params: Params, body: Body) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let id = client_id(&params)?;
    let client = state.services.store.get_client(server.id, &id).await?.ok_or_else(|| client_not_found(&id))?;
    let mut values = Vec::new();
    let mut invalid = Vec::new();
    for (name, value) in body.0.iter() {
        match value.as_str() {
            Some(v) => match check_template(name, v) {
                Ok(compiled) => values.push((name, compiled)),
                Err(ApiError::Invalid(mut p)) => invalid.append(&mut p),
                Err(other) => return Err(other.into()),
            },
            None => invalid.push(InvalidParameter::new(name, Rule::IsString, "must be a string").in_body()),
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::Invalid(invalid).into());
    }
    let context = TemplateContext::new(&server, &client);
    let now = state.services.clock.now();
    let mut out = Map::new();
    for (name, value) in values {
        let rendered = value
            .render(&context, now)
            .map_err(|e| ApiError::invalid(InvalidParameter::new(name, Rule::Invalid, e.to_string()).in_body()))?;
        out.insert(name.clone(), rendered);
    }
    Ok(Json(Value::Object(out)).into_response())
}

/// Delete a claim
#[utoipa::path(operation_id = "deleteClaim", delete, path = "/v1/auth-servers/{authServerId}/claims/{claimId}", tag = "Claims", responses((status = 204, description = "Deleted.")))]
pub(super) async fn delete(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<StatusCode> {
    let (server, id) = (auth_server_id(&params)?, claim_id(&params)?);
    match state.services.store.delete_claim(server, id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(not_found(id).into()),
        Err(e) => Err(e.into()),
    }
}
