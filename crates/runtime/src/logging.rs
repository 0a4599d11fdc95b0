//! Logs: structured (`text` or `json`), and never carrying credentials. Request lines hold the method, the path
//! and a query string with credential parameters masked; headers and bodies are never logged.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};
use crate::errors::TraceId;
use crate::listener::ListenerKind;

/// Query parameters whose values are credentials (RFC 6750 puts tokens in `access_token`).
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "client_secret",
    "secret",
    "password",
    "code",
    "refresh_token",
    "id_token",
    "assertion",
    "client_assertion",
    "apikey",
    "api_key",
];

pub const REDACTED: &str = "[redacted]";

/// Installs the global subscriber (once per process; later calls are ignored so tests can share a process).
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.level).map_err(|e| format!("log.level [{}]: {e}", config.level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// A path and query fit for logs: credential parameters keep their name but lose their value.
pub fn redact_uri(uri: &http::Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_owned();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (name, _) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded: String = form_urlencoded::parse(name.as_bytes()).map(|(k, _)| k.into_owned()).collect();
            if SECRET_PARAMS.iter().any(|s| decoded.eq_ignore_ascii_case(s)) {
                format!("{name}={REDACTED}")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

pub(crate) async fn access_log(kind: ListenerKind, req: Request, next: Next) -> Response {
    // Request lines are info level; at warn (the quickstart's default) only failures are logged, and the path is
    // redacted only then, so the hot paths pay nothing for logging they do not do.
    let info = tracing::enabled!(tracing::Level::INFO);
    let started = tokio::time::Instant::now();
    let method = req.method().clone();
    let target = if info { redact_uri(req.uri()) } else { String::new() };
    let uri = (!info).then(|| req.uri().clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let trace = response.extensions().get::<TraceId>().map(|t| t.0);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        let target = uri.map_or(target, |u| redact_uri(&u));
        tracing::warn!(listener = kind.as_str(), %method, target, status, latency_ms, trace, "request");
    } else if info {
        tracing::info!(listener = kind.as_str(), %method, target, status, latency_ms, trace, "request");
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
