//! Each surface renders the same typed errors in its own format, including the 413 for an oversized body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tower::ServiceExt;

use gatehouse_runtime::errors::{ApiError, KongError, OAuthError, Surface, V1Error, V2Error};
use gatehouse_runtime::extract::{JsonBody, read_body_limited};

async fn echo_json<E: Surface>(body: JsonBody<E>) -> Result<String, E> {
    Ok(body.0.len().to_string())
}

async fn oauth_form(req: axum::extract::Request) -> Result<String, OAuthError> {
    let (parts, body) = req.into_parts();
    let bytes = read_body_limited(&parts.headers, body, <OAuthError as Surface>::BODY_LIMIT).await?;
    Ok(bytes.len().to_string())
}

async fn unauthorized<E: Surface>() -> E {
    ApiError::Unauthorized.into()
}

fn app() -> Router {
    Router::new()
        .route("/v1", post(echo_json::<V1Error>))
        .route("/v2", post(echo_json::<V2Error>))
        .route("/kong", post(echo_json::<KongError>))
        .route("/oauth", post(oauth_form))
        .route("/v1/unauth", post(unauthorized::<V1Error>))
        .route("/v2/unauth", post(unauthorized::<V2Error>))
        .route("/kong/unauth", post(unauthorized::<KongError>))
}

async fn call(path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, String, Value) {
    let req = Request::post(path).header("content-type", content_type).body(Body::from(body)).unwrap();
    let res = app().oneshot(req).await.unwrap();
    let status = res.status();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, ct, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn oversized_bodies_get_413_in_each_format() {
    let big = vec![b' '; 64 * 1024 + 1];
    let (s, ct, v1) = call("/v1", "application/json", big.clone()).await;
    assert_eq!((s, ct.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "application/problem+json"));
    assert_eq!(v1["status"], 413);
    assert!(v1["instance"].as_str().unwrap().starts_with("kong:trace:"));
    let (s, _, v2) = call("/v2", "application/json", big.clone()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v2["instance"].as_str().unwrap().starts_with("konnect:trace:"));
    let (s, _, kong) = call("/kong", "application/json", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(kong["message"].as_str().unwrap().contains("65536"));
    let (s, _, oauth) = call("/oauth", "application/x-www-form-urlencoded", vec![b'a'; 16 * 1024 + 1]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(oauth["error"], "invalid_request");
    // At the limit is fine.
    let (s, _, _) = call("/oauth", "application/x-www-form-urlencoded", vec![b'a'; 16 * 1024]).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn unauthorized_bodies_differ_per_surface() {
    let (s, _, v1) = call("/v1/unauth", "application/json", vec![]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v1["title"], "Unauthorized");
    let (_, _, v2) = call("/v2/unauth", "application/json", vec![]).await;
    assert_eq!(
        (v2["title"].as_str(), v2["detail"].as_str()),
        (Some("Unauthenticated"), Some("A valid token is required"))
    );
    let (_, _, kong) = call("/kong/unauth", "application/json", vec![]).await;
    assert_eq!(kong, serde_json::json!({"message": "Unauthorized", "status": 401}));
}

#[tokio::test]
async fn bad_bodies_are_400_or_415_never_500() {
    let (s, _, v1) = call("/v1", "text/plain", b"{}".to_vec()).await;
    assert_eq!((s, v1["status"].as_u64()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some(415)));
    let (s, _, v1) = call("/v1", "application/json", b"{\"a\":".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v1["invalid_parameters"][0]["field"], "body");
    let (s, _, kong) = call("/kong", "application/json", b"[]".to_vec()).await;
    assert_eq!(
        (s, kong["code"].as_u64(), kong["name"].as_str()),
        (StatusCode::BAD_REQUEST, Some(2), Some("schema violation"))
    );
}
