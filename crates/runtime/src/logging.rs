//! Logs: structured (`text` or `json`), and never carrying credentials. Request lines hold the method, the path
//! and a query string with credential parameters masked; headers and bodies are never logged.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};
use crate::errors::TraceId;
use crate::listener::ListenerKind;

pub use gatehouse_model::redact::REDACTED;

/// Installs the global subscriber (once per process; later calls are ignored so tests can share a process).
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.level).map_err(|e| format!("log.level [{}]: {e}", config.level))?;
    // Colour codes only for a person at a terminal: in a file or a log collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// A path and query fit for logs: credential parameters keep their name but lose their value.
pub fn redact_uri(uri: &http::Uri) -> String {
    match uri.query() {
        Some(query) => format!("{}?{}", uri.path(), gatehouse_model::redact::redact_query(query)),
        None => uri.path().to_owned(),
    }
}

pub(crate) async fn access_log(kind: ListenerKind, req: Request, next: Next) -> Response {
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
        tracing::warn!(listener = kind.as_str(), %method, path, status, latency_ms, trace, "request");
    } else if info {
        tracing::info!(listener = kind.as_str(), %method, path, status, latency_ms, trace, "request");
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
