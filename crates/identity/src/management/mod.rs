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
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use gatehouse_model::AuthServerId;
use gatehouse_model::identity::{AuthServer, Scope, auth_server, claim, client, scope, secret, token};
use gatehouse_model::listing::{CollectionSpec, ListQuery, Page, parse_list_query};
use gatehouse_model::problem::{InvalidParameter, Rule};
use gatehouse_model::{ClientId, ScopeId};
use gatehouse_runtime::auth::Principal;
use gatehouse_runtime::errors::{ApiError, V1Error};
use gatehouse_runtime::extract::{JsonBody, PathParams, method_not_allowed, path_id};
use gatehouse_runtime::openapi::{self, Document, PathParam};

use crate::IdentityState;

type Auth = Principal<V1Error>;
type Body = JsonBody<V1Error>;
type Params = PathParams<V1Error>;
type Result<T, E = V1Error> = std::result::Result<T, E>;

/// The routes and their descriptions, from one list: a route cannot be served without being described.
fn routes() -> OpenApiRouter<IdentityState> {
    OpenApiRouter::new()
        .routes(routes!(auth_servers::list, auth_servers::create))
        .routes(routes!(auth_servers::get, auth_servers::patch, auth_servers::delete))
        .routes(routes!(keys::list))
        .routes(routes!(keys::rotate))
        .routes(routes!(scopes::list, scopes::create))
        .routes(routes!(scopes::get, scopes::patch, scopes::delete))
        .routes(routes!(claims::list, claims::create))
        .routes(routes!(claims::get, claims::patch, claims::delete))
        .routes(routes!(clients::list, clients::create))
        .routes(routes!(clients::get, clients::patch, clients::replace, clients::delete))
        .routes(routes!(claims::test))
        .routes(routes!(secrets::list, secrets::create))
        .routes(routes!(secrets::get, secrets::patch, secrets::delete))
        .routes(routes!(tokens::list, tokens::revoke_all))
        .routes(routes!(tokens::get, tokens::revoke))
}

/// The path parameters, by the names Kong Identity's API gives them.
const PATH_PARAMS: &[PathParam] = &[
    PathParam::uuid("authServerId", "The auth server's id."),
    PathParam::uuid("scopeId", "The scope's id."),
    PathParam::uuid("claimId", "The claim's id."),
    PathParam::text("clientId", "The client's id (its OAuth `client_id`).", "^[A-Za-z0-9_-]{1,36}$"),
    PathParam::uuid("clientSecretId", "The secret's id."),
    PathParam::uuid("tokenId", "The token's id (its `jti`)."),
];

/// The `/v1` document, as `/v1/openapi.json` serves it.
pub fn management_openapi() -> Value {
    let (_, api) = routes().split_for_parts();
    let mut doc = serde_json::to_value(api).unwrap_or_default();
    doc["info"] = json!({
        "title": "Gatehouse identity API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Kong Identity's `/v1` management API as Gatehouse serves it on the platform listener, with \
            Gatehouse's additions: signing keys and their rotation (`/keys`, `/keys/rotate`), `ES256` and `EdDSA` \
            signing algorithms, and claim templates rendered by `test-claim` exactly as the issuer renders them."
    });
    openapi::require_pat(&mut doc);
    openapi::add_path_params(&mut doc, PATH_PARAMS);
    let collections = [
        ("/v1/auth-servers", &auth_server::COLLECTION),
        ("/v1/auth-servers/{authServerId}/scopes", &scope::COLLECTION),
        ("/v1/auth-servers/{authServerId}/claims", &claim::COLLECTION),
        ("/v1/auth-servers/{authServerId}/clients", &client::COLLECTION),
        ("/v1/auth-servers/{authServerId}/clients/{clientId}/secrets", &secret::COLLECTION),
        ("/v1/auth-servers/{authServerId}/clients/{clientId}/tokens", &token::COLLECTION),
    ];
    for (path, spec) in collections {
        openapi::add_query_params(&mut doc, path, "get", openapi::list_params(spec));
    }
    let force = json!({"name": "force", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]},
        "description": "`true` deletes what is in the way too (an auth server's clients, scopes and claims; a scope's \
            mentions in claims' `include_in_scopes`)."});
    for path in ["/v1/auth-servers/{authServerId}", "/v1/auth-servers/{authServerId}/scopes/{scopeId}"] {
        openapi::add_query_params(&mut doc, path, "delete", vec![force.clone()]);
    }
    openapi::add_problem_responses(&mut doc);
    doc
}

pub fn management_router(state: IdentityState) -> Router {
    let (router, _) = routes().split_for_parts();
    let document = Document::new(&management_openapi());
    router
        // The description of the API is public, like Kong's; every operation it describes needs a token.
        .route("/v1/openapi.json", get(move || std::future::ready(document.response())))
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
