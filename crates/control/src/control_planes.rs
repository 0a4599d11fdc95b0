//! `/v2/control-planes`: Konnect's control-plane API.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use gatehouse_model::Timestamp;
use gatehouse_model::gateway::control_plane::{ControlPlane, ControlPlanePatch, NewControlPlane};
use gatehouse_model::listing::{
    CollectionSpec, Field, Filter, FilterKind, FilterOp, Page, parse_list_query, take_param,
};
use gatehouse_model::problem::{InvalidParameter, Rule};
use gatehouse_runtime::auth::Principal;
use gatehouse_runtime::errors::{ApiError, V2Error};
use gatehouse_runtime::extract::{JsonBody, PathParams, method_not_allowed, path_id};
use gatehouse_store::{Conflict, StoreError};

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

pub fn control_planes_router(state: ControlState) -> Router {
    Router::new()
        .route("/v2/control-planes", get(list).post(create))
        .route("/v2/control-planes/{control_plane}", get(get_one).patch(patch).delete(delete))
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

async fn get_one(_: Auth, State(state): State<ControlState>, params: PathParams<V2Error>) -> Result<Response> {
    let id = control_plane_id(&params)?;
    let cp = state.services.store.get_control_plane(id).await?.ok_or_else(not_found_error)?;
    Ok(respond(&state, &cp, StatusCode::OK))
}

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
