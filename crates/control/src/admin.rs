//! The Kong Admin API on the admin listener: the entities of the control plane this node serves, `GET /` with a
//! Kong 3.x version decK accepts, `GET /status`, the schema endpoints, and this API's description
//! (`GET /openapi.json`). It has no authentication, which is why
//! its listener only binds loopback, answers only to local host names, and takes no writes from other web pages.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use gatehouse_model::gateway::plugins::PLUGINS;
use gatehouse_runtime::errors::{ApiError, KongError};

use crate::ControlState;
use crate::browsers::LocalHosts;
use crate::entities::served_entity_routes;

/// The Kong release whose Admin API this one follows; decK decides its behaviour from it.
pub const KONG_VERSION: &str = "3.10.0";

/// `allowed_hosts`: the names besides `localhost` and loopback addresses that requests may give as `Host`
/// (`admin.allowed_hosts`).
pub fn admin_router(control: ControlState, allowed_hosts: Vec<url::Host>) -> Router {
    let document = gatehouse_runtime::openapi::Document::new(&crate::openapi::admin_openapi());
    let info = Router::new()
        .route("/", get(root))
        .route("/status", get(status))
        .route("/clustering/data-planes", get(clustering_data_planes))
        .route("/openapi.json", get(move || std::future::ready(document.response())))
        .with_state(control.clone());
    let api = info
        .merge(served_entity_routes(control))
        .fallback(|| async { KongError::from(ApiError::NotFound("Not found".into())) })
        .method_not_allowed_fallback(|| async { KongError::from(ApiError::MethodNotAllowed) });
    LocalHosts::new(allowed_hosts, "admin.allowed_hosts").with_same_origin_writes().guard(api)
}

async fn root(State(control): State<ControlState>) -> impl IntoResponse {
    let available: serde_json::Map<String, Value> =
        PLUGINS.iter().map(|p| (p.name.to_owned(), json!({"version": KONG_VERSION, "priority": p.priority}))).collect();
    Json(json!({
        "tagline": "Welcome to kong",
        "version": KONG_VERSION,
        "edition": "community",
        "server": format!("gatehouse/{}", env!("CARGO_PKG_VERSION")),
        "hostname": "gatehouse",
        "node_id": control.served.map(|id| id.to_string()),
        "lua_version": "none",
        "plugins": {"available_on_server": available, "enabled_in_cluster": []},
        "configuration": {
            "database": match control.services.store.backend() {
                gatehouse_store::Backend::Sqlite => "sqlite",
                gatehouse_store::Backend::Postgres => "postgres",
            },
            "role": "traditional",
            "router_flavor": "traditional_compatible",
            "admin_listen": [control.admin_url.trim_start_matches("http://")],
        },
    }))
}

async fn clustering_data_planes(State(control): State<ControlState>) -> Result<Json<Value>, KongError> {
    Ok(Json(crate::nodes::clustering_data_planes(&control).await?))
}

/// Kong's status shape: whether the database answers, and a hash that changes with the served configuration.
async fn status(State(control): State<ControlState>) -> impl IntoResponse {
    let entities = match control.served {
        Some(cp) => control.services.store.all_entities(cp).await.map(Some),
        None => Ok(None),
    };
    let reachable = entities.is_ok();
    let hash = match entities {
        Ok(Some(entities)) => crate::publish::config_hash(entities.iter().map(|e| &e.data)),
        _ => "0".repeat(32),
    };
    Json(json!({ "database": {"reachable": reachable}, "configuration_hash": hash }))
}
