//! The API listeners' request log: one line per request (method, path with credential parameters masked, status,
//! latency, trace id, and the proxy's request id when the request came through a proxy), at info level, and at
//! warn for server errors; never headers or bodies.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::errors::TraceId;

/// A path and query fit for logs: credential parameters keep their name but lose their value.
pub fn redact_uri(uri: &http::Uri) -> String {
    match uri.query() {
        Some(query) => format!("{}?{}", uri.path(), gatehouse_model::redact::redact_query(query)),
        None => uri.path().to_owned(),
    }
}

/// The id a proxy gave the request: `X-Kong-Request-Id` (Gatehouse's proxy and Kong send it upstream, and the
/// `oauth2-introspection` plugin sends it with its calls), else `X-Request-Id` (other proxies, `correlation-id`).
/// Only a short run of id characters is taken: the header is the caller's to choose, and the log must not carry
/// whatever it holds.
pub fn incoming_request_id(headers: &http::HeaderMap) -> Option<&str> {
    const MAX: usize = 64;
    let looks_like_an_id =
        |v: &str| (1..=MAX).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ["x-kong-request-id", "x-request-id"]
        .into_iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .find(|v| looks_like_an_id(v))
}

pub(crate) async fn access_log(listener: &'static str, req: Request, next: Next) -> Response {
    // Request lines are info level; at warn (the quickstart's default) only failures are logged, and the path is
    // redacted only then, so the hot paths pay nothing for logging they do not do.
    let info = tracing::enabled!(tracing::Level::INFO);
    let started = tokio::time::Instant::now();
    let method = req.method().clone();
    // `path`, not `target`: JSON logs already carry the event's `target`, and a second key of that name hid it.
    let path = if info { redact_uri(req.uri()) } else { String::new() };
    let uri = (!info).then(|| req.uri().clone());
    let request_id = incoming_request_id(req.headers()).map(str::to_owned);
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let trace = response.extensions().get::<TraceId>().map(|t| t.0);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        let path = uri.map_or(path, |u| redact_uri(&u));
        tracing::warn!(listener, %method, path, status, latency_ms, trace, request_id, "request");
    } else if info {
        tracing::info!(listener, %method, path, status, latency_ms, trace, request_id, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_proxys_request_id_when_it_looks_like_one() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = http::HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, http::HeaderValue::from_str(value).unwrap());
            }
            h
        };
        let kong = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
        assert_eq!(
            incoming_request_id(&headers(&[("x-request-id", "other"), ("x-kong-request-id", kong)])),
            Some(kong)
        );
        assert_eq!(incoming_request_id(&headers(&[("x-request-id", "abc-123")])), Some("abc-123"));
        assert_eq!(incoming_request_id(&headers(&[("x-kong-request-id", "a b"), ("x-request-id", "ok")])), Some("ok"));
        assert_eq!(incoming_request_id(&headers(&[("x-request-id", &"a".repeat(65))])), None);
        assert_eq!(incoming_request_id(&headers(&[])), None);
    }

    #[test]
    fn masks_credentials_in_queries() {
        let uri: http::Uri =
            "/anything?a=1&access_token=eyJhbGci&Client_Secret=s3cr3t&x=2&%61ccess_token=zz".parse().unwrap();
        let out = redact_uri(&uri);
        assert_eq!(out, "/anything?a=1&access_token=[redacted]&Client_Secret=[redacted]&x=2&%61ccess_token=[redacted]");
        assert!(!out.contains("eyJ") && !out.contains("s3cr3t") && !out.contains("zz"));
        assert_eq!(redact_uri(&"/v1/auth-servers".parse().unwrap()), "/v1/auth-servers");
    }
}
