//! Request extractors whose rejections speak the surface's error format (axum's own rejections are plain text).

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use gatehouse_model::body::parse_object;
use gatehouse_model::problem::{InvalidParameter, Rule};

use crate::errors::{ApiError, Surface};

/// A JSON object body: `application/json` (or `+json`), at most the surface's body limit, strictly parsed.
#[derive(Debug)]
pub struct JsonBody<E>(pub Map<String, Value>, PhantomData<E>);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads a whole body, refusing more than `limit` bytes (checked against `Content-Length` first, then while
/// reading, since chunked bodies announce nothing).
pub async fn read_body_limited(
    headers: &http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::PayloadTooLarge { limit }),
        Err(_) => Err(ApiError::invalid(
            InvalidParameter::new("body", Rule::Invalid, "the request body could not be read").in_body(),
        )),
    }
}

impl<S: Send + Sync, E: Surface> FromRequest<S> for JsonBody<E> {
    type Rejection = E;

    async fn from_request(req: Request, _state: &S) -> Result<Self, E> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType { expected: "application/json" }.into());
        }
        let (parts, body) = req.into_parts();
        let bytes = read_body_limited(&parts.headers, body, E::BODY_LIMIT).await?;
        let map = parse_object(&bytes).map_err(ApiError::invalid)?;
        Ok(Self(map, PhantomData))
    }
}

/// Path parameters as strings, in order; parse them with [`path_id`].
#[derive(Debug)]
pub struct PathParams<E>(pub Vec<String>, PhantomData<E>);

impl<S: Send + Sync, E: Surface> FromRequestParts<S> for PathParams<E> {
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, E> {
        match Path::<Vec<String>>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self(params, PhantomData)),
            Err(_) => Err(ApiError::invalid(
                InvalidParameter::new("path", Rule::Invalid, "the path is not valid UTF-8").in_path(),
            )
            .into()),
        }
    }
}

/// Parses a path parameter, answering 400 with the parameter's name when it is malformed.
pub fn path_id<T>(name: &str, value: &str, parse: impl FnOnce(&str) -> Option<T>, rule: Rule) -> Result<T, ApiError> {
    parse(value).ok_or_else(|| {
        let reason = match rule {
            Rule::IsUuid => "must be a UUID".to_owned(),
            _ => "is not a valid identifier".to_owned(),
        };
        ApiError::invalid(InvalidParameter::new(name, rule, reason).in_path())
    })
}

/// The route fallback: an unknown path is a 404 in the surface's format.
pub async fn not_found<E: Surface>() -> E {
    ApiError::NotFound("Not Found".to_owned()).into()
}

pub async fn method_not_allowed<E: Surface>() -> E {
    ApiError::MethodNotAllowed.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in
            ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"]
        {
            assert!(is_json(ok), "{ok}");
        }
        for bad in ["", "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "text/json"] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
