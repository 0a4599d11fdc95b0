//! Every error body each surface answers, as snapshots (`tests/snapshots/`): problem+json for `/v1` and `/v2`,
//! Kong's shapes for the Admin API, RFC 6749 for OAuth endpoints. A change to any of them shows up as a snapshot
//! diff to review, where a hand-written assertion would only check the fields someone thought of. Trace ids are
//! random per response, so they are redacted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use gatehouse_model::oauth::OAuthErrorCode;
use gatehouse_model::{InvalidParameter, Rule};
use gatehouse_runtime::errors::{ApiError, KongError, OAuthError, V1Error, V2Error};

/// One of each `ApiError`, with a name for its snapshot. Internal and unavailable errors carry a detail that
/// must never reach the body (the snapshots show it does not).
fn every_api_error() -> Vec<(&'static str, ApiError)> {
    let leak = || std::io::Error::other("db password=hunter2 at 10.0.0.7");
    let mut choices = InvalidParameter::new("signing_algorithm", Rule::Invalid, "must be one of the listed values");
    choices.choices = Some(vec!["RS256".into(), "ES256".into()]);
    vec![
        ("unauthorized", ApiError::Unauthorized),
        ("forbidden", ApiError::Forbidden("The token may not do that".into())),
        ("not_found", ApiError::NotFound("Not Found".into())),
        ("conflict", ApiError::Conflict("The resource already exists".into())),
        (
            "invalid",
            ApiError::Invalid(vec![
                InvalidParameter::new("name", Rule::Required, "is required"),
                InvalidParameter::new("config.ttl", Rule::IsInteger, "must be an integer"),
                choices,
            ]),
        ),
        ("payload_too_large", ApiError::PayloadTooLarge { limit: 65536 }),
        ("unsupported_media_type", ApiError::UnsupportedMediaType { expected: "application/json" }),
        ("method_not_allowed", ApiError::MethodNotAllowed),
        ("too_many_requests", ApiError::TooManyRequests { retry_after_secs: 7 }),
        ("unavailable", ApiError::Unavailable(Box::new(leak()))),
        ("internal", ApiError::internal(leak())),
    ]
}

/// What a client sees: status, the headers that belong to the error, and the body.
async fn seen(response: Response) -> Value {
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let headers = json!({
        "content-type": header("content-type"),
        "retry-after": header("retry-after"),
        "www-authenticate": header("www-authenticate"),
        "cache-control": header("cache-control"),
        "pragma": header("pragma"),
    });
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(!body.to_string().contains("hunter2"), "an internal detail leaked: {body}");
    json!({"status": status, "headers": headers, "body": body})
}

/// The trace id is redacted from the snapshot; its shape is checked here instead: the prefix, then a decimal
/// number that fits an i64 (Kong's).
fn assert_trace(seen: &Value, prefix: &str) {
    let instance = seen["body"]["instance"].as_str().unwrap();
    let trace = instance.strip_prefix(prefix).unwrap_or_else(|| panic!("{instance}"));
    assert!(trace.parse::<i64>().is_ok_and(|t| t >= 0), "{instance}");
}

#[tokio::test]
async fn problem_json_v1() {
    for (name, error) in every_api_error() {
        let seen = seen(V1Error::from(error).into_response()).await;
        assert_trace(&seen, "kong:trace:");
        insta::assert_json_snapshot!(format!("v1_{name}"), seen, {".body.instance" => "kong:trace:[trace]"});
    }
}

#[tokio::test]
async fn problem_json_v2() {
    for (name, error) in every_api_error() {
        let seen = seen(V2Error::from(error).into_response()).await;
        assert_trace(&seen, "konnect:trace:");
        insta::assert_json_snapshot!(format!("v2_{name}"), seen, {".body.instance" => "konnect:trace:[trace]"});
    }
}

#[tokio::test]
async fn kong_admin_api() {
    for (name, error) in every_api_error() {
        insta::assert_json_snapshot!(format!("kong_{name}"), seen(KongError::from(error).into_response()).await);
    }
    let dao = [
        (
            "kong_dao_foreign_key",
            KongError::dao(
                StatusCode::BAD_REQUEST,
                4,
                "foreign key violation",
                "the foreign key '{id=\"0190a0a0-0000-7000-8000-000000000001\"}' does not reference an existing 'services' entity.",
                Some(json!({"service": {"id": "0190a0a0-0000-7000-8000-000000000001"}})),
            ),
        ),
        (
            "kong_dao_not_found",
            KongError::dao(StatusCode::NOT_FOUND, 3, "not found", "could not find the entity", None),
        ),
        (
            "kong_schema_violations",
            KongError::schema_violation(&[
                ("config.ttl".into(), "expected a number".into()),
                ("config.introspection_url".into(), "required field missing".into()),
                ("@entity".into(), "at least one of these fields must be non-empty: 'paths', 'hosts'".into()),
            ]),
        ),
        ("kong_schema_violation", KongError::schema_violation(&[("name".into(), "expected a string".into())])),
    ];
    for (name, error) in dao {
        insta::assert_json_snapshot!(name, seen(error.into_response()).await);
    }
}

#[tokio::test]
async fn oauth_endpoints() {
    // What handlers turn into OAuth errors. The internal error's description names its trace id.
    for (name, error) in every_api_error() {
        let seen = seen(OAuthError::from(error).into_response()).await;
        insta::assert_json_snapshot!(format!("oauth_from_{name}"), seen, {
            ".body.error_description" => insta::dynamic_redaction(|value, _| {
                let text = value.as_str().unwrap_or_default();
                match text.strip_prefix("an unexpected error occurred (trace ") {
                    Some(rest) if rest.trim_end_matches(')').bytes().all(|b| b.is_ascii_digit()) => {
                        "an unexpected error occurred (trace [trace])".into()
                    }
                    _ => value,
                }
            }),
        });
    }
    let codes = [
        OAuthErrorCode::InvalidRequest,
        OAuthErrorCode::InvalidClient,
        OAuthErrorCode::InvalidGrant,
        OAuthErrorCode::UnauthorizedClient,
        OAuthErrorCode::UnsupportedGrantType,
        OAuthErrorCode::InvalidScope,
        OAuthErrorCode::UnsupportedTokenType,
        OAuthErrorCode::ServerError,
        OAuthErrorCode::TemporarilyUnavailable,
    ];
    for code in codes {
        let name = serde_json::to_value(code).unwrap().as_str().unwrap().to_owned();
        let seen = seen(OAuthError::new(code, format!("what went wrong ({name})")).into_response()).await;
        insta::assert_json_snapshot!(format!("oauth_{name}"), seen);
    }
    let mut basic = OAuthError::new(OAuthErrorCode::InvalidClient, "Client authentication failed");
    basic.basic_challenge = true;
    insta::assert_json_snapshot!("oauth_invalid_client_basic", seen(basic.into_response()).await);
}
