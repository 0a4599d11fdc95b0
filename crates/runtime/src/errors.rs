//! Typed errors inside, one renderer per surface at the edge.
//!
//! Handlers return [`ApiError`] values (or store errors that convert into them); each surface turns them into its
//! own wire format: problem+json for the Konnect APIs (`/v1` and `/v2` differ in trace prefix and 401 body), Kong's
//! `{code,name,message,fields}` for the Admin API and core entities, RFC 6749 JSON for OAuth endpoints. Internal
//! failures are logged with a trace id and never echoed.

use std::fmt;
use std::marker::PhantomData;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use gatehouse_model::kong::{KongErrorBody, MessageBody};
use gatehouse_model::oauth::{OAuthErrorBody, OAuthErrorCode};
use gatehouse_model::problem::{InvalidParameter, ProblemBody, title_for};
use gatehouse_store::StoreError;

/// Correlates an error response with its log line; also read by the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub u64);

impl TraceId {
    pub fn new() -> Self {
        // Kong's trace ids are decimal digits; keep them within i64 so every JSON reader holds them exactly.
        Self(u64::from_le_bytes(crate::random::bytes::<8>()) >> 1)
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// 400 with the parameters at fault.
    Invalid(Vec<InvalidParameter>),
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType {
        expected: &'static str,
    },
    MethodNotAllowed,
    TooManyRequests {
        retry_after_secs: u64,
    },
    Unavailable(BoxError),
    Internal(BoxError),
}

impl ApiError {
    pub fn invalid(p: InvalidParameter) -> Self {
        ApiError::Invalid(vec![p])
    }

    pub fn internal(e: impl Into<BoxError>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A human-readable sentence for the client. Internal details never appear here.
    fn detail(&self) -> String {
        match self {
            ApiError::Unauthorized => "Invalid credentials".to_owned(),
            ApiError::Forbidden(d) | ApiError::NotFound(d) | ApiError::Conflict(d) => d.clone(),
            ApiError::Invalid(_) => "Invalid request".to_owned(),
            ApiError::PayloadTooLarge { limit } => {
                format!("The request body is larger than [{limit}] bytes")
            }
            ApiError::UnsupportedMediaType { expected } => {
                format!("The request body must be [{expected}]")
            }
            ApiError::MethodNotAllowed => "Method not allowed".to_owned(),
            ApiError::TooManyRequests { retry_after_secs } => {
                format!("Too many requests; retry in [{retry_after_secs}] seconds")
            }
            ApiError::Unavailable(_) => "The service is temporarily unavailable".to_owned(),
            ApiError::Internal(_) => "An unexpected error occurred".to_owned(),
        }
    }

    /// Logs what the client will not see. Returns the trace id the response carries.
    fn log(&self) -> TraceId {
        let trace = TraceId::new();
        match self {
            ApiError::Internal(e) => tracing::error!(trace = trace.0, error = %e, "internal error"),
            ApiError::Unavailable(e) => {
                tracing::warn!(trace = trace.0, error = %e, "dependency unavailable")
            }
            _ => tracing::debug!(trace = trace.0, status = self.status().as_u16(), "request refused"),
        }
        trace
    }

    fn headers(&self, response: &mut Response) {
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.detail())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("Not Found".to_owned()),
            StoreError::Conflict(_) => ApiError::Conflict("The resource already exists".to_owned()),
            StoreError::Unavailable(_) => ApiError::Unavailable(Box::new(e)),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

/// A surface's error type: built from [`ApiError`], rendered in the surface's format, with its body limit.
pub trait Surface: From<ApiError> + IntoResponse + Send + 'static {
    const BODY_LIMIT: usize;
}

/// How a Konnect API shapes problem+json.
pub trait ProblemStyle: Send + Sync + 'static {
    const TRACE_PREFIX: &'static str;
    const UNAUTHORIZED_TITLE: &'static str;
    const UNAUTHORIZED_DETAIL: &'static str;
}

/// `/v1` (Kong Identity).
#[derive(Debug)]
pub struct IdentityApi;
impl ProblemStyle for IdentityApi {
    const TRACE_PREFIX: &'static str = "kong:trace:";
    const UNAUTHORIZED_TITLE: &'static str = "Unauthorized";
    const UNAUTHORIZED_DETAIL: &'static str = "Invalid credentials";
}

/// `/v2/control-planes`.
#[derive(Debug)]
pub struct ControlPlaneApi;
impl ProblemStyle for ControlPlaneApi {
    const TRACE_PREFIX: &'static str = "konnect:trace:";
    const UNAUTHORIZED_TITLE: &'static str = "Unauthenticated";
    const UNAUTHORIZED_DETAIL: &'static str = "A valid token is required";
}

pub const MANAGEMENT_BODY_LIMIT: usize = 64 * 1024;
pub const OAUTH_BODY_LIMIT: usize = 16 * 1024;

/// An error of a problem+json surface.
pub struct Problem<S>(pub ApiError, PhantomData<S>);

pub type V1Error = Problem<IdentityApi>;
pub type V2Error = Problem<ControlPlaneApi>;

impl<S> fmt::Debug for Problem<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<S> From<ApiError> for Problem<S> {
    fn from(e: ApiError) -> Self {
        Self(e, PhantomData)
    }
}

impl<S> From<StoreError> for Problem<S> {
    fn from(e: StoreError) -> Self {
        Self(e.into(), PhantomData)
    }
}

impl<S: ProblemStyle> Surface for Problem<S> {
    const BODY_LIMIT: usize = MANAGEMENT_BODY_LIMIT;
}

impl<S: ProblemStyle> IntoResponse for Problem<S> {
    fn into_response(self) -> Response {
        let e = self.0;
        let trace = e.log();
        let status = e.status();
        let (title, detail) = match &e {
            ApiError::Unauthorized => (S::UNAUTHORIZED_TITLE, S::UNAUTHORIZED_DETAIL.to_owned()),
            _ => (title_for(status.as_u16()), e.detail()),
        };
        let mut invalid_parameters: Vec<InvalidParameter> = Vec::new();
        if let ApiError::Invalid(params) = &e {
            for p in params {
                if !invalid_parameters.contains(p) {
                    invalid_parameters.push(p.clone());
                }
            }
        }
        let body = ProblemBody {
            status: status.as_u16(),
            title,
            type_uri: format!("https://httpstatuses.com/{}", status.as_u16()),
            instance: format!("{}{}", S::TRACE_PREFIX, trace.0),
            detail,
            invalid_parameters,
        };
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        e.headers(&mut response);
        response.extensions_mut().insert(trace);
        response
    }
}

/// An error of the Kong Admin API and of Konnect's core-entities mirror.
#[derive(Debug)]
pub enum KongError {
    Api(ApiError),
    /// One of Kong's DAO errors, with its code (`2` schema violation, `4` foreign key violation, `5` unique
    /// violation, …).
    Dao {
        status: StatusCode,
        body: KongErrorBody,
    },
}

impl KongError {
    pub fn dao(
        status: StatusCode,
        code: u16,
        name: &'static str,
        message: impl Into<String>,
        fields: Option<Value>,
    ) -> Self {
        KongError::Dao { status, body: KongErrorBody { code, name, message: message.into(), fields } }
    }

    /// Code 2: schema violations at dotted paths, rendered as Kong nests them (`{"config":{"ttl":"…"}}`), each
    /// listed once however many times it was found (a form field given twice).
    pub fn schema_violation(violations: &[(String, String)]) -> Self {
        let mut unique: Vec<&(String, String)> = Vec::with_capacity(violations.len());
        for v in violations {
            if !unique.contains(&v) {
                unique.push(v);
            }
        }
        let mut fields = Map::new();
        for (path, message) in &unique {
            insert_nested(&mut fields, path, message);
        }
        for value in fields.values_mut() {
            positions_as_arrays(value);
        }
        // Kong's order (`errors.lua`): the entity checks' messages as they are, then every field's, by path.
        let mut listed: Vec<String> = unique.iter().filter(|(p, _)| p == "@entity").map(|(_, m)| m.clone()).collect();
        let mut by_field: Vec<&&(String, String)> = unique.iter().filter(|(p, _)| p != "@entity").collect();
        by_field.sort_by(|a, b| a.0.cmp(&b.0));
        listed.extend(by_field.into_iter().map(|(p, m)| format!("{p}: {m}")));
        let listed = listed.join("; ");
        let message = match unique.len() {
            1 => format!("schema violation ({listed})"),
            n => format!("{n} schema violations ({listed})"),
        };
        Self::dao(StatusCode::BAD_REQUEST, 2, "schema violation", message, Some(Value::Object(fields)))
    }
}

/// Errors of array elements are keyed by position (`config.allow.3`); Kong's are a Lua table with integer keys,
/// which its JSON encoder writes as an array, `null` where an element was fine. (A map keyed by numbers would be
/// written as an array too; no Kong schema has one whose keys are all numbers.)
fn positions_as_arrays(value: &mut Value) {
    let Value::Object(map) = value else { return };
    for child in map.values_mut() {
        positions_as_arrays(child);
    }
    let position = |k: &str| k.parse::<usize>().ok().filter(|n| *n >= 1 && !k.starts_with('0') && *n <= 1000);
    if map.is_empty() || !map.keys().all(|k| position(k).is_some()) {
        return;
    }
    let len = map.keys().filter_map(|k| position(k)).max().unwrap_or_default();
    let mut items = vec![Value::Null; len];
    for (k, v) in std::mem::take(map) {
        if let Some(slot) = position(&k).and_then(|n| items.get_mut(n - 1)) {
            *slot = v;
        }
    }
    *value = Value::Array(items);
}

fn insert_nested(fields: &mut Map<String, Value>, path: &str, message: &str) {
    if path == "@entity" {
        let list = fields.entry("@entity").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(Value::String(message.to_owned()));
        }
        return;
    }
    match path.split_once('.') {
        Some((head, rest)) => {
            let child = fields.entry(head).or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(m) = child {
                insert_nested(m, rest, message);
            }
        }
        None => {
            fields.insert(path.to_owned(), Value::String(message.to_owned()));
        }
    }
}

impl From<ApiError> for KongError {
    fn from(e: ApiError) -> Self {
        KongError::Api(e)
    }
}

impl From<StoreError> for KongError {
    fn from(e: StoreError) -> Self {
        KongError::Api(e.into())
    }
}

impl Surface for KongError {
    const BODY_LIMIT: usize = MANAGEMENT_BODY_LIMIT;
}

impl IntoResponse for KongError {
    fn into_response(self) -> Response {
        let e = match self {
            KongError::Dao { status, body } => return (status, Json(body)).into_response(),
            KongError::Api(e) => e,
        };
        let trace = e.log();
        let status = e.status();
        let message = |m: &str| Json(MessageBody { message: m.to_owned(), status: None }).into_response();
        let mut response = match &e {
            ApiError::Unauthorized => {
                Json(MessageBody { message: "Unauthorized".into(), status: Some(401) }).into_response()
            }
            ApiError::Invalid(params) => {
                let violations: Vec<(String, String)> =
                    params.iter().map(|p| (p.field.clone(), p.reason.clone())).collect();
                return KongError::schema_violation(&violations).into_response();
            }
            ApiError::Conflict(detail) => Json(KongErrorBody {
                code: 5,
                name: "unique constraint violation",
                message: detail.clone(),
                fields: None,
            })
            .into_response(),
            ApiError::NotFound(_) => message("Not found"),
            ApiError::Internal(_) => message("An unexpected error occurred"),
            other => message(&other.detail()),
        };
        *response.status_mut() = status;
        e.headers(&mut response);
        response.extensions_mut().insert(trace);
        response
    }
}

/// An RFC 6749 §5.2 error of an OAuth endpoint.
#[derive(Debug)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: Option<String>,
    /// Answer `invalid_client` with `WWW-Authenticate: Basic`, as RFC 6749 requires when Basic was used.
    pub basic_challenge: bool,
    status_override: Option<StatusCode>,
    retry_after_secs: Option<u64>,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: Some(description.into()),
            basic_challenge: false,
            status_override: None,
            retry_after_secs: None,
        }
    }

    /// The error as a metric label: `throttled` for the brute-force limits' 429, else the OAuth error code.
    pub fn outcome(&self) -> &'static str {
        if self.retry_after_secs.is_some() { "throttled" } else { self.code.as_str() }
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        let trace = e.log();
        let (code, status) = match &e {
            ApiError::Unauthorized => (OAuthErrorCode::InvalidClient, None),
            ApiError::Internal(_) => (OAuthErrorCode::ServerError, None),
            ApiError::Unavailable(_) => (OAuthErrorCode::TemporarilyUnavailable, None),
            other => (OAuthErrorCode::InvalidRequest, Some(other.status())),
        };
        let description = match &e {
            ApiError::Invalid(params) => {
                params.iter().map(|p| format!("{}: {}", p.field, p.reason)).collect::<Vec<_>>().join("; ")
            }
            ApiError::Internal(_) => format!("an unexpected error occurred (trace {})", trace.0),
            other => other.detail(),
        };
        let retry_after_secs = match e {
            ApiError::TooManyRequests { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        Self { code, description: Some(description), basic_challenge: false, status_override: status, retry_after_secs }
    }
}

impl Surface for OAuthError {
    const BODY_LIMIT: usize = OAUTH_BODY_LIMIT;
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self
            .status_override
            .unwrap_or_else(|| StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::BAD_REQUEST));
        let mut response =
            (status, Json(OAuthErrorBody { error: self.code, error_description: self.description })).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge && status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"gatehouse\""));
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_violation_is_listed_once() {
        let twice = ("paths.x".to_owned(), "given both as a value and with nested fields".to_owned());
        let other = ("host".to_owned(), "required field missing".to_owned());
        let KongError::Dao { body, .. } = KongError::schema_violation(&[twice.clone(), other, twice]) else {
            panic!("a schema violation is a DAO error")
        };
        assert_eq!(
            body.message,
            "2 schema violations (host: required field missing; paths.x: given both as a value and with nested fields)"
        );
    }

    #[test]
    fn entity_checks_come_first_without_their_key_then_fields_by_path() {
        let violations = [
            ("config.redis.host".to_owned(), "required field missing".to_owned()),
            ("@entity".to_owned(), "failed conditional validation given value of field 'config.policy'".to_owned()),
            ("config.header_name".to_owned(), "required field missing".to_owned()),
        ];
        let KongError::Dao { body, .. } = KongError::schema_violation(&violations) else {
            panic!("a schema violation is a DAO error")
        };
        assert_eq!(
            body.message,
            "3 schema violations (failed conditional validation given value of field 'config.policy'; \
             config.header_name: required field missing; config.redis.host: required field missing)"
        );
    }

    #[test]
    fn array_elements_are_reported_in_arrays_as_kong_does() {
        let violations = [
            ("config.allow.3".to_owned(), "invalid ip or cidr range: 'hello'".to_owned()),
            ("config.allow.1".to_owned(), "invalid ip or cidr range: 'x'".to_owned()),
            ("config.headers.x-1".to_owned(), "expected a string".to_owned()),
        ];
        let KongError::Dao { body, .. } = KongError::schema_violation(&violations) else {
            panic!("a schema violation is a DAO error")
        };
        assert_eq!(
            body.fields,
            Some(serde_json::json!({"config": {
                "allow": ["invalid ip or cidr range: 'x'", null, "invalid ip or cidr range: 'hello'"],
                "headers": {"x-1": "expected a string"}}}))
        );
    }
}
