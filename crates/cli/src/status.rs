//! The status listener (Kong's `status_listen`): `GET /status` (Kong's shape), `GET /status/ready` (Kong's
//! readiness semantics) and `GET /metrics` (the Prometheus text exposition). It answers no other path and needs no
//! credentials: bind it where only scrapers and load balancers reach it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use gatehouse_gateway::Proxy;
use gatehouse_model::metrics::gatehouse::GatehouseMetrics;
use gatehouse_store::{Store, WriteStatus};

/// How long the database may take to answer a readiness or status check before it counts as unreachable: a
/// probe must answer well within a load balancer's timeout.
const DATABASE_CHECK: Duration = Duration::from_millis(800);

#[derive(Debug, Clone)]
pub struct StatusState {
    /// `None` on a data plane, which has no database: it reports it reachable (Kong's data planes do too) and is
    /// ready once it serves a configuration.
    pub store: Option<Arc<dyn Store>>,
    /// Whether readiness waits for the proxy's configuration (not on a control plane, which runs no proxy).
    pub serves_proxy: bool,
    pub proxy: Arc<Proxy>,
    /// The node's `gatehouse_` families.
    pub gatehouse: Arc<GatehouseMetrics>,
    /// Kong's `kong_node_info` labels.
    pub node_id: String,
}

pub fn status_router(state: StatusState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Not found"}))) })
        .with_state(state)
}

/// Whether the database answers a read now (Kong's `kong.db:connect()`), and whether writes are failing.
async fn database_reachable(store: Option<&dyn Store>) -> Result<(), &'static str> {
    let Some(store) = store else { return Ok(()) };
    if let WriteStatus::Failing { reason } = store.write_status() {
        return Err(reason);
    }
    match tokio::time::timeout(DATABASE_CHECK, store.get_meta("status_probe")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            // The store's error may name hosts or paths: logged for the operator, never sent.
            tracing::warn!(error = %e, "status: the database does not answer");
            Err("failed to connect to database")
        }
        Err(_) => Err("failed to connect to database"),
    }
}

async fn status(State(state): State<StatusState>) -> Response {
    let reachable = database_reachable(state.store.as_deref()).await.is_ok();
    let stats = state.proxy.connection_stats();
    let mut body = json!({
        "database": {"reachable": reachable},
        // nginx's `stub_status` counters, for the proxy listener.
        "server": {
            "connections_accepted": stats.accepted,
            "connections_handled": stats.handled,
            "connections_active": stats.active,
            "total_requests": stats.requests,
        },
    });
    // Kong reports the hash a data plane serves; a node that has loaded none says so with Kong's all-zero hash.
    body["configuration_hash"] = json!(state.proxy.config_hash().unwrap_or_else(|| "0".repeat(32)));
    axum::Json(body).into_response()
}

/// Kong's `/status/ready`: 200 `{"message":"ready"}` once the database answers and the proxy serves a
/// configuration; otherwise 503 with the reason.
async fn ready(State(state): State<StatusState>) -> Response {
    let not_ready = |message: &str| (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"message": message})));
    if let Err(reason) = database_reachable(state.store.as_deref()).await {
        return not_ready(reason).into_response();
    }
    if state.serves_proxy && state.proxy.config_hash().is_none() {
        return not_ready("no configuration available (configuration hash is not initialized)").into_response();
    }
    axum::Json(json!({"message": "ready"})).into_response()
}

/// The last scrape's length: the next one starts with a buffer that size, so a large scrape (a few MB with
/// thousands of routes) is written into one allocation instead of a dozen doublings and copies. A hint only, shared
/// by every node of the process.
static LAST_SCRAPE_BYTES: AtomicUsize = AtomicUsize::new(4096);

async fn metrics(State(state): State<StatusState>) -> Response {
    use gatehouse_gateway::metrics::gauge;
    let reachable = database_reachable(state.store.as_deref()).await.is_ok();
    // A little headroom for series made since.
    let hint = LAST_SCRAPE_BYTES.load(Ordering::Relaxed);
    let mut out = String::with_capacity(hint + hint / 8);
    gauge(
        &mut out,
        "kong_datastore_reachable",
        "Datastore reachable from Kong, 0 is unreachable",
        &[(&[], if reachable { 1.0 } else { 0.0 })],
    );
    gauge(
        &mut out,
        "kong_node_info",
        "Kong Node metadata information",
        &[(&[("node_id", &state.node_id), ("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    let stats = state.proxy.connection_stats();
    let node = state.node_id.as_str();
    let state_series = |name, value: u64| ([("node_id", node), ("subsystem", "http"), ("state", name)], value as f64);
    let connections = [
        state_series("accepted", stats.accepted),
        state_series("active", stats.active),
        state_series("handled", stats.handled),
        state_series("total", stats.requests),
    ];
    let connections: Vec<(&[(&str, &str)], f64)> = connections.iter().map(|(l, v)| (&l[..], *v)).collect();
    gauge(&mut out, "kong_nginx_connections_total", "Number of connections by subsystem", &connections);
    gauge(
        &mut out,
        "kong_nginx_requests_total",
        "Number of requests total",
        &[(&[("node_id", node), ("subsystem", "http")], stats.requests as f64)],
    );
    state.proxy.metrics().render(&mut out);
    state.proxy.render_target_health(&mut out);
    state.proxy.opentelemetry_spans().render(&mut out);
    state.proxy.log_entries().render(&mut out);
    state.gatehouse.render(&mut out);
    crate::process_metrics::render(&mut out);
    LAST_SCRAPE_BYTES.store(out.len(), Ordering::Relaxed);
    let mut response = out.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
