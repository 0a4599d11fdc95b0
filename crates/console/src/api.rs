//! The console's only way to change anything: requests to the platform APIs' own router, in process, with the
//! signed-in token as the bearer. Validation, authorisation and storage are the APIs'; the console turns their
//! answers into pages (problem+json `invalid_parameters` and Kong's `fields` into messages next to form fields).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::session::Current;
use crate::view::FieldErrors;

/// Answers larger than this are not read (a page of 1,000 entities is far below it).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// How an API call went, as a page needs to know.
#[derive(Debug)]
pub enum Answer {
    Ok(Value),
    /// The API refused the input (400, 404, 409): messages for the form.
    Refused(StatusCode, FieldErrors),
}

/// Failures a page cannot show next to a form.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The token was refused (revoked or expired while the page was open).
    #[error("the token is no longer valid")]
    SignedOut,
    #[error("the API answered {0}: {1}")]
    Failed(StatusCode, String),
}

/// A request to one of the node's routers, as if it had come over the platform listener.
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, bytes::Bytes) {
    let response = match router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ANSWER).await.unwrap_or_default();
    (parts.status, parts.headers, bytes)
}

/// Calls the platform API as `current`; `body` is sent as JSON.
pub async fn call(
    api: &Router,
    current: &Current,
    peer: Option<SocketAddr>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, CallError> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", current.token.expose()));
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(v).unwrap_or_default())
        }
        None => Body::empty(),
    };
    let mut request =
        request.body(body).map_err(|e| CallError::Failed(StatusCode::BAD_REQUEST, format!("bad request: {e}")))?;
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    let (status, _, bytes) = send(api, request).await;
    let value: Value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    match status {
        s if s.is_success() => Ok(Answer::Ok(value)),
        StatusCode::UNAUTHORIZED => Err(CallError::SignedOut),
        s if s.is_client_error() => Ok(Answer::Refused(s, errors_of(&value))),
        s => Err(CallError::Failed(s, message_of(&value))),
    }
}

/// The human message of an error body in any of the platform's shapes.
pub fn message_of(body: &Value) -> String {
    ["detail", "message", "error_description", "title"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .unwrap_or("The request failed.")
        .to_owned()
}

/// Field messages from problem+json (`invalid_parameters`) or Kong's `fields` (nested objects flattened to
/// dotted paths); the general message when there are none.
pub fn errors_of(body: &Value) -> FieldErrors {
    let mut errors = FieldErrors::default();
    if let Some(list) = body.get("invalid_parameters").and_then(Value::as_array) {
        for p in list {
            let field = p.get("field").and_then(Value::as_str).unwrap_or("");
            let reason = p.get("reason").and_then(Value::as_str).unwrap_or("is invalid");
            errors.fields.push((field.to_owned(), reason.to_owned()));
        }
    }
    if let Some(fields) = body.get("fields") {
        flatten("", fields, &mut errors.fields);
    }
    if errors.fields.is_empty() {
        errors.general.push(message_of(body));
    }
    errors
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let join = |key: &str| if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                // Kong reports entity-level checks under `@entity`.
                if k == "@entity" {
                    flatten(prefix, v, out);
                } else {
                    flatten(&join(k), v, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten(prefix, item, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_error_shapes_become_field_messages() {
        let problem = json!({"detail": "Invalid parameters", "invalid_parameters": [
            {"field": "name", "reason": "is required"}, {"field": "allow_scopes[0]", "reason": "unknown scope"}]});
        let e = errors_of(&problem);
        assert_eq!(
            e.fields,
            vec![("name".into(), "is required".into()), ("allow_scopes[0]".into(), "unknown scope".into())]
        );
        let kong = json!({"message": "schema violation", "fields": {"config": {"ttl": "expected a number"},
            "@entity": ["at least one of these fields must be non-empty: 'paths'"]}});
        let e = errors_of(&kong);
        assert!(e.fields.contains(&("config.ttl".into(), "expected a number".into())), "{e:?}");
        assert!(e.fields.iter().any(|(p, m)| p.is_empty() && m.contains("paths")), "{e:?}");
        let conflict = json!({"detail": "An auth server named [x] already exists"});
        assert_eq!(errors_of(&conflict).general, vec!["An auth server named [x] already exists".to_owned()]);
    }
}
