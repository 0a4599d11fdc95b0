//! Personal access tokens: issuing them, and the extractor that makes every platform API handler authenticate
//! first. A handler that takes [`Principal`] cannot be reached without a valid token.

use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use gatehouse_model::pat::{
    DEFAULT_PAT_LIFETIME_DAYS, MAX_PAT_LIFETIME_DAYS, PAT_PREFIX, PAT_RANDOM_LEN, PersonalAccessToken,
    is_valid_pat_name, looks_like_pat,
};
use gatehouse_model::{PatId, SecretString};
use gatehouse_store::StoreError;

use crate::Services;
use crate::errors::{ApiError, Surface};

/// The caller of a platform API request, proven by a personal access token.
#[derive(Debug)]
pub struct Principal<E> {
    pub token_id: PatId,
    pub token_name: String,
    surface: PhantomData<E>,
}

/// The token from `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl<S, E> FromRequestParts<S> for Principal<E>
where
    S: Send + Sync,
    E: Surface,
    Services: FromRef<S>,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, E> {
        let services = Services::from_ref(state);
        let token = bearer(parts).filter(|t| looks_like_pat(t)).ok_or(ApiError::Unauthorized)?;
        let hash = services.keys.hash_pat(token);
        let pat = services.store.find_pat(&hash).await.map_err(ApiError::from)?.ok_or(ApiError::Unauthorized)?;
        if pat.expires_at <= services.clock.now() {
            return Err(ApiError::Unauthorized.into());
        }
        Ok(Principal { token_id: pat.id, token_name: pat.name, surface: PhantomData })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PatError {
    #[error("token names are 1-64 letters, digits, '.', '_' or '-'")]
    BadName,
    #[error("token lifetime must be between 1 and {MAX_PAT_LIFETIME_DAYS} days")]
    BadLifetime,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A newly created token: the only time its value is known.
#[derive(Debug)]
pub struct IssuedPat {
    pub token: SecretString,
    pub record: PersonalAccessToken,
}

/// Creates a token valid for `lifetime_days` (default 90, at most 365). With `replace_same_name`, tokens of the
/// same name are revoked in the same transaction (the quickstart's token is always the one just printed).
pub async fn issue_pat(
    services: &Services,
    name: &str,
    lifetime_days: Option<i64>,
    replace_same_name: bool,
) -> Result<IssuedPat, PatError> {
    if !is_valid_pat_name(name) {
        return Err(PatError::BadName);
    }
    let days = lifetime_days.unwrap_or(DEFAULT_PAT_LIFETIME_DAYS);
    if !(1..=MAX_PAT_LIFETIME_DAYS).contains(&days) {
        return Err(PatError::BadLifetime);
    }
    let token = SecretString::new(format!("{PAT_PREFIX}{}", crate::random::alphanumeric(PAT_RANDOM_LEN)));
    let now = services.clock.now();
    let record = PersonalAccessToken {
        id: PatId::new(),
        name: name.to_owned(),
        hash: services.keys.hash_pat(token.expose()),
        created_at: now,
        expires_at: now.plus_secs(days * 86_400),
    };
    services.store.create_pat(&record, replace_same_name).await?;
    Ok(IssuedPat { token, record })
}
