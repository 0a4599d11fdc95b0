//! `/v2/control-planes`: Konnect's control-plane API.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use gatehouse_model::Timestamp;
use gatehouse_model::gateway::control_plane::{ControlPlane, ControlPlanePatch, ControlPlaneView, NewControlPlane};
use gatehouse_model::listing::{
    CollectionSpec, Field, Filter, FilterKind, FilterOp, Page, parse_list_query, take_param,
};
use gatehouse_model::problem::{InvalidParameter, ProblemBody, Rule};
use gatehouse_runtime::auth::Principal;
use gatehouse_runtime::errors::{ApiError, V2Error};
use gatehouse_runtime::extract::{JsonBody, PathParams, method_not_allowed, path_id};
use gatehouse_runtime::openapi::{self, Document};
use gatehouse_store::{Conflict, StoreError};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ControlState;

type Auth = Principal<V2Error>;
type Result<T, E = V2Error> = std::result::Result<T, E>;

const COLLECTION: CollectionSpec = CollectionSpec {
    filters: &[
        (Field::Id, FilterKind::EqualsOrAnyOf),
        (Field::Name, FilterKind::TextWithNeq),
        (Field::ClusterType, FilterKind::Enumerated),
        (Field::CloudGateway, FilterKind::Equals),
    ],
    sorts: &[Field::CreatedAt, Field::UpdatedAt, Field::Name],
};

fn routes() -> OpenApiRouter<ControlState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, patch, delete))
        .merge(crate::nodes::routes())
}

/// The control-plane operations of the `/v2` document; [`crate::entities`] adds the core entities.
pub(crate) fn control_planes_openapi() -> Value {
    let (_, api) = routes().split_for_parts();
    let mut doc = serde_json::to_value(api).unwrap_or_default();
    let mut params = openapi::list_params(&COLLECTION);
    params.push(json!({"name": "labels", "in": "query", "schema": {"type": "string"},
        "description": "`key:value` or `key` conditions, comma-separated: every one must hold."}));
    openapi::add_query_params(&mut doc, "/v2/control-planes", "get", params);
    doc
}

pub fn control_planes_router(state: ControlState) -> Router {
    let (router, _) = routes().split_for_parts();
    let document = Document::new(&crate::openapi::v2_openapi());
    router
        // The description of the API is public, like Kong's; every operation it describes needs a token.
        .route("/v2/openapi.json", get(move || std::future::ready(document.response())))
        .method_not_allowed_fallback(|_: Auth| method_not_allowed::<V2Error>())
        .with_state(state)
}

fn not_found_error() -> ApiError {
    ApiError::NotFound("The requested control plane was not found.".into())
}

fn conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(Conflict::Name) => {
            ApiError::Conflict("Control Plane with provided name already exists.".into())
        }
        other => other.into(),
    }
}

fn control_plane_id(params: &PathParams<V2Error>) -> Result<uuid::Uuid, ApiError> {
    let raw = params.0.first().map(String::as_str).unwrap_or("");
    path_id(
        "controlPlaneId",
        raw,
        |s| gatehouse_model::gateway::is_uuid(s).then(|| s.parse().ok()).flatten(),
        Rule::IsUuid,
    )
}

fn respond(state: &ControlState, cp: &ControlPlane, status: StatusCode) -> Response {
    (status, Json(cp.view(&state.admin_url))).into_response()
}

/// `labels=key:value,otherkey` (Konnect): every condition must hold; a bare key tests that the label exists.
fn label_filters(values: Vec<String>) -> Result<Vec<Filter>, ApiError> {
    let mut filters = Vec::new();
    for value in values {
        for condition in value.split(',').filter(|c| !c.is_empty()) {
            let op = match condition.split_once(':') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => FilterOp::Label { key: k.into(), value: v.into() },
                None => FilterOp::LabelExists { key: condition.into() },
                _ => {
                    return Err(ApiError::invalid(
                        InvalidParameter::new("labels", Rule::IsLabel, "must be key:value or key").in_query(),
                    ));
                }
            };
            let key = match &op {
                FilterOp::Label { key, .. } | FilterOp::LabelExists { key } => key,
                _ => unreachable!("built above"),
            };
            gatehouse_model::labels::check_key(key)
                .map_err(|r| ApiError::invalid(InvalidParameter::new("labels", Rule::IsLabel, r).in_query()))?;
            filters.push(Filter { field: Field::Labels, op });
        }
    }
    Ok(filters)
}

/// List control planes
#[utoipa::path(operation_id = "listControlPlanes", get, path = "/v2/control-planes", tag = "Control Planes", responses((status = 200, description = "A page of control planes.", body = Page<ControlPlaneView>)))]
async fn list(_: Auth, State(state): State<ControlState>, RawQuery(raw): RawQuery) -> Result<Response> {
    let (labels, rest) = take_param(raw.as_deref(), "labels");
    let mut query = parse_list_query(Some(&rest), &COLLECTION).map_err(ApiError::Invalid)?;
    query.filters.extend(label_filters(labels)?);
    if let Some(bad) = query
        .filters
        .iter()
        .find(|f| f.field == Field::CloudGateway && !matches!(&f.op, FilterOp::Eq(v) if v == "true" || v == "false"))
    {
        let _ = bad;
        return Err(ApiError::invalid(
            InvalidParameter::new("filter[cloud_gateway]", Rule::IsBoolean, "must be true or false").in_query(),
        )
        .into());
    }
    let listed = state.services.store.list_control_planes(&query).await?;
    let views: Vec<_> = listed.items.iter().map(|cp| cp.view(&state.admin_url)).collect();
    Ok(Json(Page::new(views, &query, listed.total)).into_response())
}

/// Create a control plane
#[utoipa::path(operation_id = "createControlPlane", post, path = "/v2/control-planes", tag = "Control Planes", request_body = NewControlPlane, responses((status = 201, description = "The control plane; its `control_plane_endpoint` is this node's Admin API.", body = ControlPlaneView), (status = 409, description = "A control plane with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
async fn create(_: Auth, State(state): State<ControlState>, body: JsonBody<V2Error>) -> Result<Response> {
    let input = NewControlPlane::from_body(&body.0).map_err(ApiError::Invalid)?;
    let now = state.services.clock.now();
    let cp = ControlPlane {
        id: uuid::Uuid::new_v4(),
        name: input.name,
        description: input.description,
        cluster_type: input.cluster_type,
        auth_type: input.auth_type,
        cloud_gateway: input.cloud_gateway,
        proxy_urls: input.proxy_urls,
        labels: input.labels,
        created_at: now,
        updated_at: now,
    };
    state.services.store.create_control_plane(&cp).await.map_err(conflict)?;
    Ok(respond(&state, &cp, StatusCode::CREATED))
}

/// Get a control plane
#[utoipa::path(operation_id = "getControlPlane", get, path = "/v2/control-planes/{controlPlaneId}", tag = "Control Planes", responses((status = 200, description = "The control plane.", body = ControlPlaneView)))]
async fn get_one(_: Auth, State(state): State<ControlState>, params: PathParams<V2Error>) -> Result<Response> {
    let id = control_plane_id(&params)?;
    let cp = state.services.store.get_control_plane(id).await?.ok_or_else(not_found_error)?;
    Ok(respond(&state, &cp, StatusCode::OK))
}

/// Update a control plane
#[utoipa::path(operation_id = "updateControlPlane", patch, path = "/v2/control-planes/{controlPlaneId}", tag = "Control Planes", request_body = ControlPlanePatch, responses((status = 200, description = "The updated control plane.", body = ControlPlaneView), (status = 409, description = "A control plane with this name exists.", body = ProblemBody, content_type = "application/problem+json")))]
async fn patch(
    _: Auth,
    State(state): State<ControlState>,
    params: PathParams<V2Error>,
    body: JsonBody<V2Error>,
) -> Result<Response> {
    let id = control_plane_id(&params)?;
    let patch = ControlPlanePatch::from_body(&body.0).map_err(ApiError::Invalid)?;
    let current = state.services.store.get_control_plane(id).await?.ok_or_else(not_found_error)?;
    let now: Timestamp = state.services.clock.now();
    let updated = patch.apply(&current, now).map_err(ApiError::Invalid)?;
    state.services.store.update_control_plane(&updated).await.map_err(conflict)?;
    Ok(respond(&state, &updated, StatusCode::OK))
}

/// Delete a control plane
#[utoipa::path(operation_id = "deleteControlPlane", delete, path = "/v2/control-planes/{controlPlaneId}", tag = "Control Planes", responses((status = 204, description = "Deleted, with its entities."), (status = 409, description = "The control plane is the one this node serves (`gateway.control_plane`).", body = ProblemBody, content_type = "application/problem+json")))]
async fn delete(_: Auth, State(state): State<ControlState>, params: PathParams<V2Error>) -> Result<StatusCode> {
    let id = control_plane_id(&params)?;
    if state.served == Some(id) {
        return Err(ApiError::Conflict(
            "This control plane is served by this node (gateway.control_plane) and cannot be deleted while it is"
                .into(),
        )
        .into());
    }
    match state.services.store.delete_control_plane(id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(not_found_error().into()),
        Err(e) => Err(e.into()),
    }
}
