//! The call to the introspection endpoint, as Kong's plugin makes it, and what its answer becomes.
//!
//! `POST` to the scheme, host, port and path of `introspection_url` (its query is dropped) with a form body
//! `token=…[&token_type_hint=…]` and `Content-Type`, `Accept: application/json`, `Authorization:
//! <authorization_value>`, then `X-Request-Http-Method`/`X-Request-Path` when `introspect_request` is on, then the
//! custom headers (which may override the built-in ones). Only a 200 with a JSON object counts as an answer; TLS is
//! verified against the web PKI roots.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Map, Value};

use gatehouse_model::Timestamp;

/// An IdP answer larger than this is a failure, not something to buffer.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why no answer came back. Never sent to the client (it gets Kong's generic `invalid_token`); logged with the
/// request id.
#[derive(Debug, thiserror::Error)]
pub enum IdpFailure {
    #[error("the introspection endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the introspection endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the introspection endpoint answered {status} ({body})")]
    Status { status: u16, body: BodySummary },
    #[error("the introspection endpoint's answer is not a JSON object ({0})")]
    NotJson(BodySummary),
    #[error("the introspection request cannot be built: {0}")]
    Request(String),
}

impl IdpFailure {
    /// The failure's index in `gatehouse_introspection_idp_failures_total`'s `kind` values.
    pub fn metric_kind(&self) -> usize {
        match self {
            IdpFailure::Unreachable(_) => 0,
            IdpFailure::Timeout(_) => 1,
            IdpFailure::Status { .. } => 2,
            IdpFailure::NotJson(_) => 3,
            IdpFailure::Request(_) => 4,
        }
    }
}

/// What the log says of a body that was not an answer: its length and a digest, never the body itself, which may
/// echo the token it was asked about (IdPs' error pages do). The digest tells whether two failures had the same body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySummary {
    len: usize,
    digest: [u8; 8],
}

impl BodySummary {
    pub(crate) fn of(body: &[u8]) -> Self {
        let sha256 = digest::digest(&digest::SHA256, body);
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&sha256.as_ref()[..8]);
        Self { len: body.len(), digest: prefix }
    }
}

impl std::fmt::Display for BodySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The first 64 bits of the SHA-256: enough to tell bodies apart in a log.
        write!(f, "body of {} bytes, sha256 ", self.len)?;
        self.digest.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// HTTP clients to introspection endpoints, one per (timeout, keepalive) pair, kept across configuration changes
/// so their idle connections survive them.
#[derive(Debug, Default)]
pub struct Clients {
    by_settings: Mutex<BTreeMap<(u64, u64), HttpClient>>,
}

impl Clients {
    fn get(&self, timeout_ms: u64, keepalive_ms: u64) -> HttpClient {
        let mut clients = self.by_settings.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry((timeout_ms, keepalive_ms))
            .or_insert_with(|| {
                let connector = crate::upstream::connector(timeout_ms, true);
                let mut builder = Client::builder(TokioExecutor::new());
                builder.pool_timer(TokioTimer::new()).timer(TokioTimer::new());
                if keepalive_ms == 0 {
                    builder.pool_max_idle_per_host(0);
                } else {
                    builder.pool_idle_timeout(Duration::from_millis(keepalive_ms));
                }
                builder.build(connector)
            })
            .clone()
    }
}

/// One plugin instance's introspection endpoint and what it sends there.
#[derive(Debug)]
pub struct Idp {
    client: HttpClient,
    uri: Uri,
    authorization: HeaderValue,
    token_type_hint: Option<String>,
    custom_headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl Idp {
    pub fn new(
        clients: &Arc<Clients>,
        config: &gatehouse_model::gateway::plugins::oauth2_introspection::Config,
    ) -> Result<Self, String> {
        let url = url::Url::parse(&config.introspection_url).map_err(|e| format!("introspection_url: {e}"))?;
        let host = url.host_str().ok_or("introspection_url has no host")?;
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let path = if url.path().is_empty() { "/" } else { url.path() };
        let uri = Uri::builder()
            .scheme(url.scheme())
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|e| format!("introspection_url: {e}"))?;
        let mut authorization = HeaderValue::from_str(config.authorization_value.expose())
            .map_err(|_| "authorization_value is not a valid header value".to_owned())?;
        // `Debug` prints "Sensitive", and HTTP/2 never indexes it.
        authorization.set_sensitive(true);
        let mut custom_headers = Vec::new();
        for (name, value) in &config.custom_introspection_headers {
            let name = HeaderName::from_bytes(name.replace('_', "-").as_bytes())
                .map_err(|_| format!("custom_introspection_headers: invalid header name {name}"))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| format!("custom_introspection_headers.{name}: invalid header value"))?;
            // These often carry an API key for the IdP.
            value.set_sensitive(true);
            custom_headers.push((name, value));
        }
        Ok(Self {
            client: clients.get(config.timeout, config.keepalive),
            uri,
            authorization,
            token_type_hint: config.token_type_hint.clone(),
            custom_headers,
            timeout: Duration::from_millis(config.timeout),
        })
    }

    /// Kong's attributes of a `kong.internal.request` span for a call to this endpoint.
    pub fn span_attributes(&self, status: Option<u16>) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
        use crate::trace::{attribute, int_value, string_value};
        let mut attributes = vec![
            attribute("http.method", string_value("POST")),
            attribute("http.url", string_value(self.uri.to_string())),
            attribute("http.flavor", string_value("1.1")),
        ];
        if let Some(status) = status {
            attributes.push(attribute("http.status_code", int_value(i64::from(status))));
        }
        attributes
    }

    /// Asks about `token`. `request` is the client request's method and path, sent when `introspect_request` is on.
    pub async fn introspect(
        &self,
        token: &str,
        request: Option<(&Method, &str)>,
        request_id: &str,
    ) -> Result<Map<String, Value>, IdpFailure> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token);
            if let Some(hint) = &self.token_type_hint {
                form.append_pair("token_type_hint", hint);
            }
            form.finish()
        };
        let mut req = Request::new(Full::new(Bytes::from(form)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(header::AUTHORIZATION, self.authorization.clone());
        // The id the proxy logs and sends upstream, so the IdP's access line for this call can be matched with it
        // (Gatehouse's issuer logs it as `request_id`).
        if let Ok(id) = HeaderValue::from_str(request_id) {
            h.insert(HeaderName::from_static("x-kong-request-id"), id);
        }
        if let Some((method, path)) = request {
            h.insert(
                HeaderName::from_static("x-request-http-method"),
                HeaderValue::from_str(method.as_str()).map_err(|e| IdpFailure::Request(e.to_string()))?,
            );
            h.insert(
                HeaderName::from_static("x-request-path"),
                HeaderValue::from_str(path).map_err(|e| IdpFailure::Request(e.to_string()))?,
            );
        }
        for (name, value) in &self.custom_headers {
            h.insert(name.clone(), value.clone());
        }
        let exchange = async {
            let response = self.client.request(req).await.map_err(|e| {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message = format!("{message}: {s}");
                    source = s.source();
                }
                IdpFailure::Unreachable(message)
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| IdpFailure::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, IdpFailure>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(self.timeout, exchange).await.map_err(|_| IdpFailure::Timeout(self.timeout))??;
        if status != http::StatusCode::OK {
            return Err(IdpFailure::Status { status: status.as_u16(), body: BodySummary::of(&body) });
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) | Err(_) => Err(IdpFailure::NotJson(BodySummary::of(&body))),
        }
    }
}

/// An answer, ready to be applied to requests: the upstream headers are rendered once, when it arrives.
#[derive(Debug)]
pub struct Introspected {
    /// Lua truthiness of `active`: anything but missing, `false` or `null`.
    pub active: bool,
    /// `X-Credential-*`, one value per array element, as a map with room for a request's own headers: a request
    /// starts from a copy of it, which costs no hashing of these names (see [`with_credentials`]).
    pub headers: HeaderMap,
    pub username: Option<String>,
    pub client_id: Option<String>,
    /// The token's `exp`; the answer is never used at or after it (by the node's clock).
    pub expires: Option<Timestamp>,
}

/// The standard fields Kong copies to `X-Credential-*` headers.
const CREDENTIAL_HEADERS: [(&str, &str); 11] = [
    ("x-credential-scope", "scope"),
    ("x-credential-client-id", "client_id"),
    ("x-credential-identifier", "username"),
    ("x-credential-token-type", "token_type"),
    ("x-credential-exp", "exp"),
    ("x-credential-iat", "iat"),
    ("x-credential-nbf", "nbf"),
    ("x-credential-sub", "sub"),
    ("x-credential-aud", "aud"),
    ("x-credential-iss", "iss"),
    ("x-credential-jti", "jti"),
];

/// Room for the credential headers and a typical request's own (clones keep the index size, so a request's
/// headers moved in rarely make it grow).
pub fn credential_map() -> HeaderMap {
    HeaderMap::with_capacity(32)
}

/// A [`credential_map`] to copy `headers` into, or an empty map (which allocates nothing) when there is nothing to
/// copy.
pub fn credential_map_for(headers: &HeaderMap) -> HeaderMap {
    if headers.is_empty() { HeaderMap::new() } else { credential_map() }
}

/// `map` as it is kept in a cache entry: a clone has the same index (so a request's headers still move in without
/// growing it, see [`with_credentials`]) but buckets for the headers it holds only, where a [`credential_map`] has
/// 48 whatever it holds (about 5 KiB, most of an entry's cost before this).
pub fn compact(map: HeaderMap) -> HeaderMap {
    if map.is_empty() { HeaderMap::new() } else { map.clone() }
}

/// Makes `headers` (a request's) into a copy of `credentials` with the request's headers moved in: the credential
/// names were hashed once, when the answer arrived, and the request's names move without a copy.
pub fn with_credentials(headers: &mut HeaderMap, credentials: &HeaderMap) {
    let request = std::mem::replace(headers, credentials.clone());
    let mut current: Option<header::OccupiedEntry<'_, HeaderValue>> = None;
    for (name, value) in request {
        match name {
            // A further value of the previous name.
            None => {
                if let Some(entry) = current.as_mut() {
                    entry.append(value);
                }
            }
            Some(name) => {
                current = Some(match headers.entry(name) {
                    header::Entry::Occupied(mut entry) => {
                        entry.append(value);
                        entry
                    }
                    header::Entry::Vacant(entry) => entry.insert_entry(value),
                });
            }
        }
    }
}

/// One of Kong's standard `X-Credential-*` names, as its static `HeaderName`.
pub fn standard_credential_header(name: &str) -> Option<HeaderName> {
    CREDENTIAL_HEADERS.iter().find(|(h, _)| *h == name).map(|(h, _)| HeaderName::from_static(h))
}

/// `custom_claims_forward` entries as (claim, header name): `x-credential-` + the claim with `_` → `-`.
pub fn claim_headers(claims: &[String]) -> Vec<(String, HeaderName)> {
    claims
        .iter()
        .filter_map(|claim| {
            let name = format!("x-credential-{}", claim.replace('_', "-")).to_ascii_lowercase();
            HeaderName::from_bytes(name.as_bytes()).ok().map(|h| (claim.clone(), h))
        })
        .collect()
}

impl Introspected {
    pub fn from_answer(answer: &Map<String, Value>, claims: &[(String, HeaderName)]) -> Self {
        let active = !matches!(answer.get("active"), None | Some(Value::Null | Value::Bool(false)));
        // An inactive answer forwards nothing, and a map made empty allocates nothing.
        let mut headers = if active { credential_map() } else { HeaderMap::new() };
        if active {
            for (name, field) in CREDENTIAL_HEADERS {
                for value in answer.get(field).map(header_values).unwrap_or_default() {
                    headers.append(HeaderName::from_static(name), value);
                }
            }
            for (claim, name) in claims {
                let values = answer.get(claim).map(header_values).unwrap_or_default();
                if values.is_empty() {
                    continue;
                }
                // A claim named like a standard field (`scope`, `exp`, ...) replaces its header, as Kong's
                // `set_header` does, rather than sending it twice.
                headers.remove(name);
                for value in values {
                    headers.append(name.clone(), value);
                }
            }
        }
        let text = |f: &str| answer.get(f).and_then(json_scalar);
        // Only an active answer is bounded by `exp`. An inactive one refuses the token whatever its `exp` says
        // (IdPs may send the expired token's): bounding it would keep it out of the cache for `negative_ttl`,
        // and every request with that token would reach the IdP.
        let expires = active
            .then(|| answer.get("exp"))
            .flatten()
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            // Rounded down to the microsecond: an answer never outlives its `exp`.
            .and_then(|s| i64::try_from(Duration::try_from_secs_f64(s).ok()?.as_micros()).ok())
            .map(Timestamp::from_micros);
        Self { active, headers: compact(headers), username: text("username"), client_id: text("client_id"), expires }
    }
}

fn json_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Numbers and booleans as text, each array element as its own value, objects as compact JSON; `null` and values
/// that cannot be header values (control characters) give nothing.
fn header_values(v: &Value) -> Vec<HeaderValue> {
    let one = |v: &Value| -> Option<HeaderValue> {
        let text = match v {
            Value::Null => return None,
            Value::Object(_) | Value::Array(_) => v.to_string(),
            other => json_scalar(other)?,
        };
        HeaderValue::from_str(&text).ok()
    };
    match v {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::oauth2_introspection::cache::{Entry, RecentAnswers, keep_for};
    use serde_json::json;

    #[tokio::test]
    async fn the_idp_credentials_are_never_printed() {
        let config: gatehouse_model::gateway::plugins::oauth2_introspection::Config = serde_json::from_value(json!({
            "introspection_url": "http://idp.test/introspect", "ttl": 30, "authorization_value": "Basic c2VjcmV0",
            "timeout": 1000, "keepalive": 1000, "introspect_request": false, "hide_credentials": false,
            "run_on_preflight": true, "anonymous": "", "consumer_by": "username",
            "custom_introspection_headers": {"x-api-key": "key-1234"}, "custom_claims_forward": [],
            "token_type_hint": null}))
        .unwrap();
        let idp = Idp::new(&Arc::new(Clients::default()), &config).unwrap();
        for printed in [format!("{config:?}"), format!("{idp:?}")] {
            assert!(!printed.contains("c2VjcmV0") && !printed.contains("key-1234"), "{printed}");
        }
        assert!(format!("{config:?}").contains("[redacted]"));
    }

    #[test]
    fn failed_bodies_are_logged_by_length_and_digest_only() {
        let echoed = b"<html>invalid token eyJhbGciOiJSUzI1NiJ9.secret-part</html>";
        let failure = IdpFailure::Status { status: 400, body: BodySummary::of(echoed) };
        let logged = failure.to_string();
        assert!(!logged.contains("secret-part") && !logged.contains("html"), "{logged}");
        assert!(logged.starts_with("the introspection endpoint answered 400 (body of 59 bytes, sha256 "), "{logged}");
        let not_json = IdpFailure::NotJson(BodySummary::of(b"secret-part")).to_string();
        assert!(!not_json.contains("secret-part"), "{not_json}");
        assert_eq!(BodySummary::of(echoed), BodySummary::of(echoed), "the same body, the same digest");
        assert_ne!(BodySummary::of(echoed).to_string(), BodySummary::of(b"secret-parT").to_string());
        assert!(!format!("{failure:?}").contains("secret-part"));
    }

    #[test]
    fn answers_become_headers_once() {
        let answer = json!({"active": true, "scope": "a b", "client_id": "c", "username": "u", "exp": 1700000000,
            "iat": 1.5, "aud": ["x", "y"], "custom_claim": {"k": 1}, "sub": null, "evil": "a\r\nb"});
        let claims = claim_headers(&["custom_claim".into(), "evil".into(), "absent".into()]);
        let i = Introspected::from_answer(answer.as_object().unwrap(), &claims);
        assert!(i.active);
        let get = |n: &str| i.headers.get_all(n).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(get("x-credential-scope"), ["a b"]);
        assert_eq!(get("x-credential-identifier"), ["u"]);
        assert_eq!(get("x-credential-exp"), ["1700000000"]);
        assert_eq!(get("x-credential-iat"), ["1.5"]);
        assert_eq!(get("x-credential-aud"), ["x", "y"], "one header per array value");
        assert_eq!(get("x-credential-custom-claim"), [r#"{"k":1}"#]);
        assert!(get("x-credential-sub").is_empty() && get("x-credential-evil").is_empty());
        assert!(get("x-credential-absent").is_empty());
        assert_eq!(i.expires, Some(Timestamp::from_secs(1_700_000_000)));
        assert_eq!((i.username.as_deref(), i.client_id.as_deref()), (Some("u"), Some("c")));

        // A claim named like a standard field replaces that header (Kong's `set_header`); it is not sent twice.
        let answer = json!({"active": true, "scope": "a b", "client_id": "c", "aud": ["x", "y"]});
        let claims = claim_headers(&["scope".into(), "client_id".into(), "aud".into(), "exp".into()]);
        let i = Introspected::from_answer(answer.as_object().unwrap(), &claims);
        let get = |n: &str| i.headers.get_all(n).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(get("x-credential-scope"), ["a b"]);
        assert_eq!(get("x-credential-client-id"), ["c"]);
        assert_eq!(get("x-credential-aud"), ["x", "y"]);
        assert!(get("x-credential-exp").is_empty());

        // An inactive answer's `exp` bounds nothing: it may be cached for `negative_ttl` however old the token.
        let inactive = Introspected::from_answer(json!({"active": false, "exp": 1}).as_object().unwrap(), &[]);
        assert_eq!(inactive.expires, None);
        let now = Timestamp::from_secs(1_800_000_000);
        let keep = keep_for(&inactive, Duration::from_secs(30), Duration::from_secs(5), now);
        assert_eq!(keep, Duration::from_secs(5));
        let recent = RecentAnswers::default();
        let kept = recent.keep(1, &Arc::new(Entry::new(inactive, keep, now)), now);
        assert!(
            recent.get(&1, now.plus_secs(4)).is_some_and(|found| Arc::ptr_eq(&found, &kept)),
            "kept for negative_ttl"
        );
        assert!(recent.get(&1, now.plus_secs(5)).is_none());
    }

    #[test]
    fn a_request_starts_from_the_credentials_and_keeps_all_its_headers() {
        let mut credentials = credential_map();
        credentials.append("x-credential-aud", HeaderValue::from_static("x"));
        credentials.append("x-credential-aud", HeaderValue::from_static("y"));
        credentials.append("x-credential-scope", HeaderValue::from_static("s"));
        let mut request = HeaderMap::new();
        request.append(header::HOST, HeaderValue::from_static("h"));
        request.append("x-a", HeaderValue::from_static("1"));
        request.append(header::ACCEPT, HeaderValue::from_static("a/b"));
        request.append("x-a", HeaderValue::from_static("2"));
        request.append("x-credential-scope", HeaderValue::from_static("appended"));
        with_credentials(&mut request, &credentials);
        let all = |n: &str| request.get_all(n).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(all("x-credential-aud"), ["x", "y"]);
        assert_eq!(all("x-a"), ["1", "2"], "every value, in order");
        assert_eq!((all("host"), all("accept")), (vec!["h"], vec!["a/b"]));
        assert_eq!(all("x-credential-scope"), ["s", "appended"], "nothing is lost; spoofed names are removed before");
        assert_eq!(request.len(), 8);
        assert_eq!(credentials.len(), 3, "the answer's map is left as it was");
    }

    #[test]
    fn active_is_lua_truthy() {
        for (active, expected) in
            [(json!(true), true), (json!(1), true), (json!("no"), true), (json!(false), false), (Value::Null, false)]
        {
            let answer = json!({"active": active, "scope": "s"});
            let i = Introspected::from_answer(answer.as_object().unwrap(), &[]);
            assert_eq!(i.active, expected, "{active}");
            assert_eq!(i.headers.is_empty(), !expected, "inactive answers give no headers");
        }
        assert!(!Introspected::from_answer(&Map::new(), &[]).active, "a missing `active` is falsy");
    }
}
