//! The API listeners' request log: one line per request (method, path with credential parameters masked, status,
//! latency, trace id), at info level, and at warn for server errors; never headers or bodies.

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

pub(crate) async fn access_log(listener: &'static str, req: Request, next: Next) -> Response {
    // Request lines are info level; at warn (the quickstart's default) only failures are logged, and the path is
    // redacted only then, so the hot paths pay nothing for logging they do not do.
    let info = tracing::enabled!(tracing::Level::INFO);
    let started = tokio::time::Instant::now();
    let method = req.method().clone();
    // `path`, not `target`: JSON logs already carry the event's `target`, and a second key of that name hid it.
    let path = if info { redact_uri(req.uri()) } else { String::new() };
    let uri = (!info).then(|| req.uri().clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let trace = response.extensions().get::<TraceId>().map(|t| t.0);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        let path = uri.map_or(path, |u| redact_uri(&u));
        tracing::warn!(listener, %method, path, status, latency_ms, trace, "request");
    } else if info {
        tracing::info!(listener, %method, path, status, latency_ms, trace, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
