//! `POST /oauth/token`: the client-credentials grant.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde_json::{Map, Value, json};

use gatehouse_model::identity::IssuedToken;
use gatehouse_model::identity::client::{GrantType, TokenEndpointAuthMethod};
use gatehouse_model::identity::grant::{ScopeError, grant_scopes};
use gatehouse_model::identity::token::new_token_id;
use gatehouse_model::oauth::OAuthErrorCode;
use gatehouse_runtime::errors::{ApiError, OAuthError};

use super::claims::add_custom_claims;
use super::forms::{Form, presented};
use super::recorder::RecordError;
use super::{Issuer, Snapshot, authenticate, no_store_json};

pub(super) async fn token(
    issuer: &Issuer,
    snapshot: &Snapshot,
    parts: &Parts,
    body: Body,
    address: IpAddr,
) -> Result<Response, OAuthError> {
    let form = Form::read(parts, body).await?;
    match form.require("grant_type")? {
        "client_credentials" => {}
        other => {
            return Err(OAuthError::new(
                OAuthErrorCode::UnsupportedGrantType,
                format!("grant_type [{other}] is not supported"),
            ));
        }
    }
    let entry = authenticate(issuer, snapshot, presented(&parts.headers, &form)?, address).await?;
    let client = &entry.client;
    if client.token_endpoint_auth_method == TokenEndpointAuthMethod::None {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "this client is registered without client authentication, which cannot get tokens",
        ));
    }
    if !client.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(OAuthError::new(OAuthErrorCode::UnauthorizedClient, "this client may not use client_credentials"));
    }
    let granted = grant_scopes(form.get("scope"), client, &snapshot.scopes).map_err(|e| match e {
        ScopeError::Malformed => {
            OAuthError::new(OAuthErrorCode::InvalidScope, "scope must be space-separated scope names")
        }
        ScopeError::NotGranted(name) => {
            OAuthError::new(OAuthErrorCode::InvalidScope, format!("scope [{name}] is unknown, disabled or not allowed"))
        }
    })?;
    let granted_ids: Vec<_> = granted.iter().map(|s| s.id).collect();
    let granted_names: Vec<String> = granted.iter().map(|s| s.name.clone()).collect();
    let scope = granted_names.join(" ");

    let now = issuer.services.clock.now();
    let jti = new_token_id(now, gatehouse_runtime::random::bytes::<10>());
    let (iat, duration) = (now.secs(), client.access_token_duration);
    let mut claims = Map::new();
    add_custom_claims(snapshot, entry, true, &granted_ids, now, &mut claims)
        .map_err(|e| OAuthError::from(ApiError::internal(e)))?;
    // Registered claims last, so nothing can shadow them (claim names are also checked at creation).
    claims.extend([
        ("iss".to_owned(), json!(snapshot.issuer)),
        ("sub".to_owned(), json!(client.id)),
        ("aud".to_owned(), json!([snapshot.server.audience])),
        ("client_id".to_owned(), json!(client.id)),
        ("iat".to_owned(), json!(iat)),
        ("nbf".to_owned(), json!(iat)),
        ("exp".to_owned(), json!(iat + duration)),
        ("jti".to_owned(), json!(jti.to_string())),
        ("scope".to_owned(), json!(scope)),
    ]);
    let access_token = snapshot.signer.sign(&claims).map_err(|e| OAuthError::from(ApiError::internal(e)))?;
    let record = IssuedToken {
        id: jti,
        auth_server_id: snapshot.server.id,
        client_id: client.id.clone(),
        signing_key_id: snapshot.signer.kid,
        granted_scope_names: granted_names,
        created_at: now,
        expires_at: now.plus_secs(duration),
    };
    // The token exists only once its record is durable: listable, revocable, never lost to a crash.
    issuer.recorder.record(record).await.map_err(|e| match e {
        RecordError::Store(e) if matches!(*e, gatehouse_store::StoreError::Unavailable(_)) => {
            OAuthError::from(ApiError::Unavailable(Box::new(RecordError::Store(e))))
        }
        other => OAuthError::from(ApiError::internal(other)),
    })?;
    let mut body = Map::new();
    body.insert("access_token".to_owned(), Value::String(access_token));
    body.insert("token_type".to_owned(), json!("Bearer"));
    body.insert("expires_in".to_owned(), json!(duration));
    if !scope.is_empty() {
        body.insert("scope".to_owned(), Value::String(scope));
    }
    Ok(no_store_json(StatusCode::OK, &Value::Object(body)))
}
