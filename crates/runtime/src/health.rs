//! `/health` on the platform and issuer listeners: readiness. It answers from memory (how the last write ended),
//! so a probe costs no database work; while writes fail for a storage reason it answers 503 with the reason.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use gatehouse_store::{Store, WriteStatus};

pub fn response(store: &dyn Store) -> Response {
    match store.write_status() {
        WriteStatus::Ok => Json(json!({"status": "ok"})).into_response(),
        WriteStatus::Failing { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "storage": {"writes": "failing", "reason": reason}})),
        )
            .into_response(),
    }
}
