//! `/v1/auth-servers/**`: Kong Identity's management API on the platform listener. Every handler takes
//! [`Auth`] first, so none is reachable without a personal access token.

mod auth_servers;
mod claims;
mod clients;
mod keys;
mod scopes;
mod secrets;
mod tokens;

use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use serde::Serialize;

use gatehouse_model::AuthServerId;
use gatehouse_model::identity::{AuthServer, Scope};
use gatehouse_model::listing::{CollectionSpec, ListQuery, Page, parse_list_query};
use gatehouse_model::problem::{InvalidParameter, Rule};
use gatehouse_model::{ClientId, ScopeId};
use gatehouse_runtime::auth::Principal;
use gatehouse_runtime::errors::{ApiError, V1Error};
use gatehouse_runtime::extract::{JsonBody, PathParams, method_not_allowed, path_id};

use crate::IdentityState;

type Auth = Principal<V1Error>;
type Body = JsonBody<V1Error>;
type Params = PathParams<V1Error>;
type Result<T, E = V1Error> = std::result::Result<T, E>;

pub fn management_router(state: IdentityState) -> Router {
    Router::new()
        .route("/v1/auth-servers", get(auth_servers::list).post(auth_servers::create))
        .route(
            "/v1/auth-servers/{auth_server}",
            get(auth_servers::get).patch(auth_servers::patch).delete(auth_servers::delete),
        )
        .route("/v1/auth-servers/{auth_server}/keys", get(keys::list))
        .route("/v1/auth-servers/{auth_server}/keys/rotate", post(keys::rotate))
        .route("/v1/auth-servers/{auth_server}/scopes", get(scopes::list).post(scopes::create))
        .route(
            "/v1/auth-servers/{auth_server}/scopes/{scope}",
            get(scopes::get).patch(scopes::patch).delete(scopes::delete),
        )
        .route("/v1/auth-servers/{auth_server}/claims", get(claims::list).post(claims::create))
        .route(
            "/v1/auth-servers/{auth_server}/claims/{claim}",
            get(claims::get).patch(claims::patch).delete(claims::delete),
        )
        .route("/v1/auth-servers/{auth_server}/clients", get(clients::list).post(clients::create))
        .route(
            "/v1/auth-servers/{auth_server}/clients/{client}",
            get(clients::get).patch(clients::patch).put(clients::replace).delete(clients::delete),
        )
        .route("/v1/auth-servers/{auth_server}/clients/{client}/test-claim", post(claims::test))
        .route("/v1/auth-servers/{auth_server}/clients/{client}/secrets", get(secrets::list).post(secrets::create))
        .route(
            "/v1/auth-servers/{auth_server}/clients/{client}/secrets/{secret}",
            get(secrets::get).patch(secrets::patch).delete(secrets::delete),
        )
        .route("/v1/auth-servers/{auth_server}/clients/{client}/tokens", get(tokens::list).delete(tokens::revoke_all))
        .route(
            "/v1/auth-servers/{auth_server}/clients/{client}/tokens/{token}",
            get(tokens::get).delete(tokens::revoke),
        )
        // A wrong method also needs a token, so an anonymous caller learns nothing about the API. (Unknown paths are
        // answered by the platform listener's fallback, shared with the other APIs on it.)
        .method_not_allowed_fallback(|_: Auth| method_not_allowed::<V1Error>())
        .with_state(state)
}

fn auth_server_id(params: &Params) -> Result<AuthServerId, ApiError> {
    let raw = params.0.first().map(String::as_str).unwrap_or("");
    path_id("authServerId", raw, |s| s.parse().ok(), Rule::IsUuid)
}

fn nth(params: &Params, i: usize) -> &str {
    params.0.get(i).map(String::as_str).unwrap_or("")
}

fn client_id(params: &Params) -> Result<ClientId, ApiError> {
    path_id("clientId", nth(params, 1), |s| ClientId::parse(s).ok(), Rule::MatchesRegex)
}

async fn require_server(state: &IdentityState, id: AuthServerId) -> Result<AuthServer> {
    state
        .services
        .store
        .get_auth_server(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Auth server [{id}] was not found")).into())
}

fn list_query(raw: Option<&str>, spec: &CollectionSpec) -> Result<ListQuery, ApiError> {
    parse_list_query(raw, spec).map_err(ApiError::Invalid)
}

fn page<T: Serialize>(items: Vec<T>, query: &ListQuery, total: u64) -> Json<Page<T>> {
    Json(Page::new(items, query, total))
}

/// `?force=true|false` on deletes (a string enum in Kong's API; anything else is refused).
fn force_param(raw: Option<&str>) -> Result<bool, ApiError> {
    let mut force = false;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("force", "true") => force = true,
            ("force", "false") => force = false,
            ("force", _) => {
                return Err(ApiError::invalid(
                    InvalidParameter::new("force", Rule::Enum, "must be true or false")
                        .with_choices(&["true", "false"])
                        .in_query(),
                ));
            }
            (other, _) => {
                return Err(ApiError::invalid(
                    InvalidParameter::new(other, Rule::UnknownProperty, format!("unknown query parameter [{other}]"))
                        .in_query(),
                ));
            }
        }
    }
    Ok(force)
}

/// Every scope id a body names must be a scope of this auth server.
fn missing_scopes(field: &str, ids: &[ScopeId], scopes: &[Scope]) -> Vec<InvalidParameter> {
    ids.iter()
        .enumerate()
        .filter(|(_, id)| !scopes.iter().any(|s| s.id == **id))
        .map(|(i, id)| {
            InvalidParameter::new(
                format!("{field}[{i}]"),
                Rule::MissingReference,
                format!("scope [{id}] does not exist in this auth server"),
            )
            .in_body()
        })
        .collect()
}
