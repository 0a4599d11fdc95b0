//! The endpoints that read tokens back: introspection (RFC 7662), revocation (RFC 7009) and userinfo.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use gatehouse_model::identity::token::issued_at;
use gatehouse_model::{Timestamp, TokenId};
use gatehouse_runtime::errors::{ApiError, OAuthError};
use gatehouse_store::StoreError;

use super::claims::add_custom_claims;
use super::crypto::{self, Rejected};
use super::forms::{Form, presented};
use super::{Issuer, Snapshot, authenticate, no_store_json};

/// Why a well-signed token is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    Invalid(Rejected),
    MissingClaims,
    Revoked,
    UnknownClient,
    /// Issued before the client with this id was created: a deleted client's tokens never come back.
    PredatesClient,
}

/// A token this auth server issued and still honours: signature, algorithm, `typ`, `iss`, `aud`, `exp`, `nbf`,
/// not revoked, and its client exists and is not younger than the token.
pub fn accept(issuer: &Issuer, snapshot: &Snapshot, token: &str) -> Result<Map<String, Value>, Inactive> {
    let now = issuer.services.clock.now();
    let claims = crypto::verify(token, &snapshot.verifiers, &snapshot.issuer, &snapshot.server.audience, now)
        .map_err(Inactive::Invalid)?;
    let jti: TokenId =
        claims.get("jti").and_then(Value::as_str).and_then(|j| j.parse().ok()).ok_or(Inactive::MissingClaims)?;
    if issuer.revocations.is_revoked(jti) {
        return Err(Inactive::Revoked);
    }
    let client_id = claims.get("client_id").and_then(Value::as_str).ok_or(Inactive::MissingClaims)?;
    let entry = snapshot.client(client_id).ok_or(Inactive::UnknownClient)?;
    let issued: Timestamp = issued_at(jti).ok_or(Inactive::MissingClaims)?;
    if issued < entry.client.created_at {
        return Err(Inactive::PredatesClient);
    }
    Ok(claims)
}

fn inactive() -> Response {
    no_store_json(StatusCode::OK, &json!({"active": false}))
}

pub(super) async fn introspect(
    issuer: &Issuer,
    snapshot: &Snapshot,
    parts: &Parts,
    body: Body,
    address: IpAddr,
) -> Result<Response, OAuthError> {
    let form = Form::read(parts, body).await?;
    // RFC 7662 §2.1: the caller must authenticate, so tokens cannot be probed anonymously.
    authenticate(issuer, snapshot, presented(&parts.headers, &form)?, address).await?;
    let token = form.require("token")?;
    let accepted = accept(issuer, snapshot, token);
    let outcome = if accepted.is_ok() { "active" } else { "inactive" };
    issuer.services.metrics.introspections.add(&[&snapshot.server.name, outcome], 1);
    match accepted {
        Ok(mut claims) => {
            claims.insert("active".to_owned(), Value::Bool(true));
            claims.insert("token_type".to_owned(), json!("Bearer"));
            Ok(no_store_json(StatusCode::OK, &Value::Object(claims)))
        }
        Err(reason) => {
            tracing::debug!(?reason, "inactive token introspected");
            Ok(inactive())
        }
    }
}

pub(super) async fn revoke(
    issuer: &Issuer,
    snapshot: &Snapshot,
    parts: &Parts,
    body: Body,
    address: IpAddr,
) -> Result<Response, OAuthError> {
    let form = Form::read(parts, body).await?;
    let caller = authenticate(issuer, snapshot, presented(&parts.headers, &form)?, address).await?;
    let token = form.require("token")?;
    // RFC 7009 §2.2: unknown tokens and other clients' tokens get 200 too, with no effect.
    let mut outcome = "ignored";
    if let Ok(claims) = accept(issuer, snapshot, token)
        && claims.get("client_id").and_then(Value::as_str) == Some(caller.client.id.as_str())
        && let Some(jti) = claims.get("jti").and_then(Value::as_str).and_then(|j| j.parse::<TokenId>().ok())
    {
        match issuer.services.store.revoke_token(snapshot.server.id, &caller.client.id, jti).await {
            // Visible to this node's introspection before the caller hears back; other nodes via the bus.
            Ok(record) => {
                issuer.revocations.add(jti, record.expires_at);
                outcome = "revoked";
            }
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(ApiError::from(e).into()),
        }
    }
    issuer.services.metrics.revocations.add(&[&snapshot.server.name, outcome], 1);
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub(super) fn userinfo(issuer: &Issuer, snapshot: &Snapshot, parts: &Parts) -> Response {
    let token = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let Some(token) = token else {
        // RFC 6750 §3.1: no credentials, no error code.
        return bearer_challenge(None);
    };
    let Ok(claims) = accept(issuer, snapshot, token) else {
        return bearer_challenge(Some("invalid_token"));
    };
    let granted_names: Vec<&str> = claims.get("scope").and_then(Value::as_str).unwrap_or("").split(' ').collect();
    let granted: Vec<_> =
        snapshot.scopes.iter().filter(|s| granted_names.contains(&s.name.as_str())).map(|s| s.id).collect();
    let mut body = Map::new();
    body.insert("sub".to_owned(), claims.get("sub").cloned().unwrap_or(Value::Null));
    // `accept` found the client, so it is there; templates see it as the token endpoint did.
    let client = claims.get("client_id").and_then(Value::as_str).and_then(|id| snapshot.client(id));
    if let Some(entry) = client
        && let Err(e) = add_custom_claims(snapshot, entry, false, &granted, issuer.services.clock.now(), &mut body)
    {
        return OAuthError::from(ApiError::internal(e)).into_response();
    }
    no_store_json(StatusCode::OK, &Value::Object(body))
}

fn bearer_challenge(error: Option<&str>) -> Response {
    let challenge = match error {
        Some(code) => format!("Bearer realm=\"gatehouse\", error=\"{code}\""),
        None => "Bearer realm=\"gatehouse\"".to_owned(),
    };
    let body = error.map_or_else(|| json!({"error": "invalid_request"}), |code| json!({"error": code}));
    let mut response = no_store_json(StatusCode::UNAUTHORIZED, &body);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}
