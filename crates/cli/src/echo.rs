//! `gatehouse echo`: an httpbin-compatible upstream for demos and tests. `/anything[/*]` echoes the request as
//! httpbin does (method, url, args, headers, origin, data, form, json), `/status/{code}` answers that status,
//! `/delay/{seconds}` waits (10 s at most) before echoing, `/headers` and `/get` as httpbin's. It answers only to
//! `localhost`, loopback addresses and the configured names, so a web page cannot read it through DNS rebinding.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use gatehouse_control::LocalHosts;

const BODY_LIMIT: usize = 1024 * 1024;
const MAX_DELAY_SECS: f64 = 10.0;

/// `hosts`: what requests may give as `Host` (`echo.allowed_hosts`, or `gatehouse echo --allowed-hosts`).
pub fn echo_router(hosts: LocalHosts) -> Router {
    let echo = Router::new()
        .route("/anything", any(anything))
        .route("/anything/{*rest}", any(anything))
        .route("/headers", get(|headers: HeaderMap| async move { Json(json!({ "headers": header_map(&headers) })) }))
        .route("/get", get(anything))
        .route("/status/{code}", any(status))
        .route("/delay/{seconds}", any(delay))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }));
    hosts.guard(echo)
}

/// httpbin's header names: title case, repeated values joined with commas.
fn header_map(headers: &HeaderMap) -> Map<String, Value> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let title = name
            .as_str()
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-");
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(title)
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

/// Query or form pairs; a repeated name becomes a list, as in httpbin.
fn pairs(raw: &[u8]) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in form_urlencoded::parse(raw) {
        let v = Value::String(v.into_owned());
        match out.get_mut(k.as_ref()) {
            Some(Value::Array(list)) => list.push(v),
            Some(existing) => *existing = Value::Array(vec![existing.clone(), v]),
            None => {
                out.insert(k.into_owned(), v);
            }
        }
    }
    out
}

async fn describe(request: Request) -> Result<Value, Response> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response())?;
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    let json_body = if content_type.contains("json") { serde_json::from_slice::<Value>(&bytes).ok() } else { None };
    let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let origin = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).map(str::to_owned).unwrap_or(peer);
    Ok(json!({
        "args": pairs(parts.uri.query().unwrap_or("").as_bytes()),
        "data": if is_form { String::new() } else { String::from_utf8_lossy(&bytes).into_owned() },
        "files": {},
        "form": if is_form { pairs(&bytes) } else { Map::new() },
        "headers": header_map(&parts.headers),
        "json": json_body,
        "method": parts.method.as_str(),
        "origin": origin,
        "url": format!("http://{host}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str())),
    }))
}

async fn anything(request: Request) -> Response {
    match describe(request).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn status(Path(code): Path<String>) -> Response {
    match code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
        Some(status) => status.into_response(),
        None => (StatusCode::BAD_REQUEST, "Invalid status code").into_response(),
    }
}

async fn delay(Path(seconds): Path<String>, request: Request) -> Response {
    let Ok(seconds) = seconds.parse::<f64>() else {
        return (StatusCode::BAD_REQUEST, "Invalid delay").into_response();
    };
    tokio::time::sleep(Duration::from_secs_f64(seconds.clamp(0.0, MAX_DELAY_SECS))).await;
    anything(request).await
}
