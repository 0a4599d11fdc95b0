//! "Test this route": one request through this node's proxy, over a real connection, as a client would send it.

use std::time::Duration;

use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long the proxy gets to answer.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Response bodies are shown up to this size.
const MAX_SHOWN: usize = 16 * 1024;

/// Sends `method path` to the proxy; returns the status, the headers as text and the start of the body.
pub(crate) async fn send(
    proxy: &str,
    method: &str,
    path: &str,
    host: &str,
    authorization: &str,
) -> Result<(StatusCode, String, String), String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| format!("unknown method {method}"))?;
    let mut request = Request::builder().method(method).uri(format!("{proxy}{path}"));
    if !host.is_empty() {
        request = request.header(header::HOST, host);
    }
    if !authorization.is_empty() {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|e| format!("bad request: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("no answer within {} s", TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = match tokio::time::timeout(TIMEOUT, Limited::new(body, 4 * 1024 * 1024).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    };
    let shown = &bytes[..bytes.len().min(MAX_SHOWN)];
    Ok((parts.status, headers, String::from_utf8_lossy(shown).into_owned()))
}
