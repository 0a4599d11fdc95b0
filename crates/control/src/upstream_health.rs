//! Kong's upstream health endpoints: `GET /upstreams/{u}/health` (each target's health on this node, or with
//! `?balancer_health=1` the upstream's), and `PUT /upstreams/{u}/targets/{t}/healthy|unhealthy`. Health lives in
//! the node's proxy (the same process), reached through [`crate::Control::upstream_health`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use gatehouse_model::gateway::upstreams::TargetHealth;
use gatehouse_model::gateway::{EntityKind, StoredEntity};
use gatehouse_runtime::errors::KongError;
use gatehouse_store::EntityQuery;

use crate::entities::Target;

/// Every target of `upstream`, in id order (the store's).
async fn targets_of(t: &Target, upstream: &StoredEntity) -> Result<Vec<StoredEntity>, KongError> {
    let mut q = EntityQuery { size: 1000, upstream_id: Some(upstream.id), ..EntityQuery::default() };
    let mut out = Vec::new();
    loop {
        let (items, next) = t.store().list_entities(t.control_plane(), EntityKind::Target, &q).await?;
        out.extend(items);
        match next {
            Some(after) => q.after = Some(after),
            None => return Ok(out),
        }
    }
}

fn node_health(t: &Target, upstream: &StoredEntity) -> Option<Vec<TargetHealth>> {
    t.upstream_health()?.targets_health(upstream.id)
}

/// `GET /upstreams/{u}/health[?balancer_health=1]`.
pub(crate) async fn health(
    t: Target,
    upstream: StoredEntity,
    raw_query: Option<String>,
) -> Result<Response, KongError> {
    let balancer_health = form_urlencoded::parse(raw_query.as_deref().unwrap_or("").as_bytes())
        .any(|(k, v)| k == "balancer_health" && v == "1");
    let health = node_health(&t, &upstream);
    let node_id = t.node_id();
    if balancer_health {
        return Ok(Json(
            json!({ "data": balancer_summary(&upstream, health.as_deref()), "next": null, "node_id": node_id }),
        )
        .into_response());
    }
    let mut data = Vec::new();
    for target in targets_of(&t, &upstream).await? {
        let mut value = Value::Object(target.data.clone());
        let name = target.data.get("target").and_then(Value::as_str).unwrap_or_default();
        match health.as_deref().and_then(|h| h.iter().find(|x| x.target == name)) {
            Some(h) => {
                value["health"] = json!(h.health);
                // Each address carries the target's full weight (Kong's `addAddress`), as the proxy balances them.
                let addresses: Vec<Value> = h
                    .addresses
                    .iter()
                    .map(|a| json!({"ip": a.ip.to_string(), "port": h.port, "health": a.health, "weight": h.weight}))
                    .collect();
                value["data"] = json!({
                    "host": h.host,
                    "port": h.port,
                    "nodeWeight": h.weight,
                    "dns": h.dns,
                    "addresses": addresses,
                    "weight": weights(std::slice::from_ref(h)),
                });
            }
            // The node has not loaded this target yet (a change being published).
            None => value["health"] = json!("HEALTHCHECKS_OFF"),
        }
        data.push(value);
    }
    Ok(Json(json!({ "data": data, "next": null, "node_id": node_id })).into_response())
}

/// Kong's `weight` object: the sum of the addresses' weights (each the target's), and of those that can take
/// requests. A name with no address (not resolved yet, or `DNS_ERROR`) weighs nothing, as in Kong.
fn weights(targets: &[TargetHealth]) -> Value {
    let sum = |up: fn(&str) -> bool| -> u64 {
        let per_target =
            |h: &TargetHealth| u64::from(h.weight) * h.addresses.iter().filter(|a| up(a.health)).count() as u64;
        targets.iter().map(per_target).sum()
    };
    let total = sum(|_| true);
    let available = sum(|health| matches!(health, "HEALTHY" | "HEALTHCHECKS_OFF"));
    json!({ "total": total, "available": available, "unavailable": total - available })
}

/// Kong's `get_balancer_health`: the upstream is `HEALTHY` while some weight is available, `UNHEALTHY` when none
/// is, `HEALTHCHECKS_OFF` when it has no health checks.
fn balancer_summary(upstream: &StoredEntity, health: Option<&[TargetHealth]>) -> Value {
    let targets = health.unwrap_or_default();
    let weight = weights(targets);
    let off = health.is_none() || targets.iter().all(|h| h.health == "HEALTHCHECKS_OFF");
    let healthy = weight["available"].as_u64().unwrap_or(0) > 0;
    let state = if off {
        "HEALTHCHECKS_OFF"
    } else if healthy {
        "HEALTHY"
    } else {
        "UNHEALTHY"
    };
    json!({
        "id": upstream.id.to_string(),
        "health": state,
        "details": { "healthy": healthy || off, "weight": weight },
    })
}

/// `PUT /upstreams/{u}/targets/{t}/healthy|unhealthy`: 204, or 404 for a target the upstream does not have.
/// Kong answers 400 with the balancer's message when the node cannot set it.
pub(crate) fn set_health(t: &Target, upstream: &StoredEntity, target: &StoredEntity, healthy: bool) -> Response {
    let name = target.data.get("target").and_then(Value::as_str).unwrap_or_default();
    let set = t.upstream_health().is_some_and(|node| node.set_target_health(upstream.id, name, healthy));
    if !set {
        let message = "target not found in this node's balancer (its configuration may still be loading)";
        return (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `PUT /upstreams/{u}/targets/{t}/{address}/healthy|unhealthy`: 204, or Kong's 400 with a message for an address
/// that is not one of the target's on this node.
pub(crate) fn set_address_health(
    t: &Target,
    upstream: &StoredEntity,
    target: &StoredEntity,
    address: &str,
    healthy: bool,
) -> Response {
    let name = target.data.get("target").and_then(Value::as_str).unwrap_or_default();
    let parsed = gatehouse_model::gateway::upstreams::split_target(address).and_then(|(host, port)| {
        let ip = host.parse::<std::net::IpAddr>().ok()?;
        Some(std::net::SocketAddr::new(ip, port.unwrap_or(gatehouse_model::gateway::upstreams::DEFAULT_TARGET_PORT)))
    });
    let Some(address) = parsed else {
        let message = format!("invalid address '{address}': an IP address, with a port or not");
        return (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response();
    };
    let set = t.upstream_health().is_some_and(|node| node.set_address_health(upstream.id, name, address, healthy));
    if !set {
        let message = format!("no address {address} for target {name} in this node's balancer");
        return (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}
