//! Discovery (OpenID Connect and RFC 8414) and the JWKS: advertise only what is implemented.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use gatehouse_model::body::Choice;

use super::{Issuer, Snapshot};

pub(super) fn discovery(snapshot: &Snapshot) -> Response {
    let issuer = &snapshot.issuer;
    let auth_methods = json!(["client_secret_basic", "client_secret_post"]);
    let scopes: Vec<&str> =
        snapshot.scopes.iter().filter(|s| s.enabled && s.include_in_metadata).map(|s| s.name.as_str()).collect();
    let body = json!({
        "issuer": issuer,
        // Required by OpenID Connect discovery; the endpoint answers with an OAuth error and never redirects.
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "scopes_supported": scopes,
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [snapshot.server.signing_algorithm.as_str()],
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "claims_supported": claims_supported(snapshot),
    });
    cacheable(Json(body).into_response(), 300)
}

fn claims_supported(snapshot: &Snapshot) -> Value {
    let mut names: Vec<&str> = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"].to_vec();
    names.extend(snapshot.claims.iter().filter(|c| c.enabled).map(|c| c.name.as_str()));
    json!(names)
}

pub(super) fn jwks(issuer: &Issuer, snapshot: &Snapshot) -> Response {
    let body = snapshot.jwks(issuer.services.clock.now());
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    cacheable(response, 300)
}

/// Public documents may be cached for a few minutes: resource servers refetch the key set when they meet an
/// unknown `kid`, as they do after a rotation.
fn cacheable(mut response: Response, seconds: u32) -> Response {
    let value =
        HeaderValue::from_str(&format!("public, max-age={seconds}")).unwrap_or(HeaderValue::from_static("no-cache"));
    response.headers_mut().insert(header::CACHE_CONTROL, value);
    response
}
