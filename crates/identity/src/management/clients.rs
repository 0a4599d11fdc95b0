use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use gatehouse_model::identity::client::{COLLECTION, CreatedClientView};
use gatehouse_model::identity::secret::GENERATED_SECRET_LEN;
use gatehouse_model::identity::{AuthServer, Client, ClientInput, ClientPatch, ClientSecret};
use gatehouse_model::listing::Page;
use gatehouse_model::problem::ProblemBody;
use gatehouse_model::{AuthServerId, ClientId, ClientSecretId, SecretString, Timestamp};
use gatehouse_runtime::errors::ApiError;
use gatehouse_runtime::random;
use gatehouse_store::{Conflict, StoreError};

use super::{Auth, Body, Params, Result, auth_server_id, client_id, list_query, missing_scopes, page, require_server};
use crate::IdentityState;

pub(super) fn not_found(id: &ClientId) -> ApiError {
    ApiError::NotFound(format!("Client [{id}] was not found"))
}

fn store_error(client: &Client) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::Conflict(Conflict::Name) => {
            ApiError::Conflict(format!("A client named [{}] already exists", client.name))
        }
        StoreError::Conflict(Conflict::Id) => {
            ApiError::Conflict(format!("A client with id [{}] already exists", client.id))
        }
        StoreError::NotFound => not_found(&client.id),
        other => other.into(),
    }
}

/// The stored form of a secret: its keyed hash only.
pub(super) fn secret_record(
    state: &IdentityState,
    server: AuthServerId,
    client: &ClientId,
    secret: &SecretString,
    enabled: bool,
    now: Timestamp,
) -> ClientSecret {
    ClientSecret {
        id: ClientSecretId::new(),
        auth_server_id: server,
        client_id: client.clone(),
        hash: state.services.keys.hash_client_secret(secret.expose()),
        enabled,
        created_at: now,
        updated_at: now,
    }
}

pub(super) fn generated_secret() -> SecretString {
    SecretString::new(random::alphanumeric(GENERATED_SECRET_LEN))
}

async fn check_scopes(state: &IdentityState, server: &AuthServer, client: &Client) -> Result<()> {
    if client.allow_scopes.is_empty() {
        return Ok(());
    }
    let scopes = state.services.store.all_scopes(server.id).await?;
    let missing = missing_scopes("allow_scopes", &client.allow_scopes, &scopes);
    if missing.is_empty() { Ok(()) } else { Err(ApiError::Invalid(missing).into()) }
}

fn created(client: &Client, secret: &SecretString) -> Response {
    (StatusCode::CREATED, Json(CreatedClientView { client, client_secret: secret.expose() })).into_response()
}

/// List clients
#[utoipa::path(operation_id = "listClients", get, path = "/v1/auth-servers/{authServerId}/clients", tag = "Clients", responses((status = 200, description = "A page of clients.", body = Page<Client>)))]
pub(super) async fn list(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let query = list_query(raw.as_deref(), &COLLECTION)?;
    let listed = state.services.store.list_clients(server.id, &query).await?;
    Ok(page(listed.items, &query, listed.total).into_response())
}

/// Create a client
#[utoipa::path(operation_id = "createClient", post, path = "/v1/auth-servers/{authServerId}/clients", tag = "Clients", request_body = ClientInput, responses((status = 201, description = "The client and its generated secret, shown this once.", body = CreatedClientView), (status = 409, description = "A client with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn create(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    body: Body,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let input = ClientInput::from_create_body(&body.0).map_err(ApiError::Invalid)?;
    let now = state.services.clock.now();
    let id = ClientId::from_trusted(random::lower_alphanumeric(ClientId::GENERATED_LEN));
    let client = input.to_client(id, server.id, now, now);
    check_scopes(&state, &server, &client).await?;
    let secret = generated_secret();
    let record = secret_record(&state, server.id, &client.id, &secret, true, now);
    state.services.store.create_client(&client, &record).await.map_err(store_error(&client))?;
    tracing::info!(auth_server = %server.id, client = %client.id, "client created");
    Ok(created(&client, &secret))
}

/// Get a client
#[utoipa::path(operation_id = "getClient", get, path = "/v1/auth-servers/{authServerId}/clients/{clientId}", tag = "Clients", responses((status = 200, description = "The client.", body = Client)))]
pub(super) async fn get(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<Response> {
    let (server, id) = (auth_server_id(&params)?, client_id(&params)?);
    let client = state.services.store.get_client(server, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(client).into_response())
}

/// Create or replace a client with a chosen id and secret
///
/// PUT with a caller-chosen id and secret: replaces an existing client (200, secret not echoed) or creates one
/// (201, `CreatedClient`). Every secret of a replaced client gives way to the given one.
#[utoipa::path(operation_id = "replaceClient", put, path = "/v1/auth-servers/{authServerId}/clients/{clientId}", tag = "Clients", request_body = ClientInput, responses((status = 200, description = "The replaced client (the secret is not echoed).", body = Client), (status = 201, description = "The created client and its secret.", body = CreatedClientView), (status = 409, description = "A client with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn replace(
    _: Auth,
    State(state): State<IdentityState>,
    params: Params,
    body: Body,
) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let id = client_id(&params)?;
    let input = ClientInput::from_replace_body(&body.0).map_err(ApiError::Invalid)?;
    let secret =
        input.client_secret.clone().ok_or_else(|| ApiError::internal("client_secret checked by the parser"))?;
    let now = state.services.clock.now();
    let existing = state.services.store.get_client(server.id, &id).await?;
    let created_at = existing.as_ref().map_or(now, |c| c.created_at);
    let client = input.to_client(id, server.id, created_at, now);
    check_scopes(&state, &server, &client).await?;
    let record = secret_record(&state, server.id, &client.id, &secret, true, now);
    if existing.is_some() {
        state.services.store.update_client(&client, Some(&record)).await.map_err(store_error(&client))?;
        Ok(Json(client).into_response())
    } else {
        state.services.store.create_client(&client, &record).await.map_err(store_error(&client))?;
        Ok(created(&client, &secret))
    }
}

/// Update a client
#[utoipa::path(operation_id = "updateClient", patch, path = "/v1/auth-servers/{authServerId}/clients/{clientId}", tag = "Clients", request_body = ClientPatch, responses((status = 200, description = "The updated client.", body = Client), (status = 409, description = "A client with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
pub(super) async fn patch(_: Auth, State(state): State<IdentityState>, params: Params, body: Body) -> Result<Response> {
    let server = require_server(&state, auth_server_id(&params)?).await?;
    let id = client_id(&params)?;
    let patch = ClientPatch::from_body(&body.0).map_err(ApiError::Invalid)?;
    let current = state.services.store.get_client(server.id, &id).await?.ok_or_else(|| not_found(&id))?;
    let now = state.services.clock.now();
    let updated = patch.apply(&current, now).map_err(ApiError::Invalid)?;
    check_scopes(&state, &server, &updated).await?;
    let replacement = patch.client_secret.as_ref().map(|s| secret_record(&state, server.id, &id, s, true, now));
    state.services.store.update_client(&updated, replacement.as_ref()).await.map_err(store_error(&updated))?;
    Ok(Json(updated).into_response())
}

/// Delete a client
#[utoipa::path(operation_id = "deleteClient", delete, path = "/v1/auth-servers/{authServerId}/clients/{clientId}", tag = "Clients", responses((status = 204, description = "Deleted; its tokens stop being valid.")))]
pub(super) async fn delete(_: Auth, State(state): State<IdentityState>, params: Params) -> Result<StatusCode> {
    let (server, id) = (auth_server_id(&params)?, client_id(&params)?);
    match state.services.store.delete_client(server, &id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(not_found(&id).into()),
        Err(e) => Err(e.into()),
    }
}
