//! Hybrid mode on Konnect's API: a control plane's data planes (`…/nodes`, what they last reported),
//! `…/expected-config-hash` (what they should serve), and the data-plane client certificates it pins
//! (`…/dp-client-certificates`). A data plane whose `config_hash` differs from the expected hash is lagging.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use gatehouse_model::gateway::cluster::DataPlaneNode;
use gatehouse_model::problem::{InvalidParameter, Rule};
use gatehouse_runtime::auth::Principal;
use gatehouse_runtime::errors::{ApiError, V2Error};
use gatehouse_runtime::extract::{JsonBody, PathParams, path_id};
use gatehouse_store::DpClientCertificate;

use crate::ControlState;

type Auth = Principal<V2Error>;
type Result<T, E = V2Error> = std::result::Result<T, E>;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// A data plane as Konnect lists it; times in Unix seconds, as Konnect gives them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: String,
    pub version: String,
    pub hostname: String,
    /// When the data plane last reported (its connection, a heartbeat, an acknowledgement).
    pub last_ping: i64,
    /// Always `kong-proxy`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The hash of the configuration it serves; empty before its first.
    pub config_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Gatehouse's: why the last configuration sent could not be applied (the data plane serves its previous
    /// one); absent when the last one applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<&DataPlaneNode> for NodeView {
    fn from(n: &DataPlaneNode) -> Self {
        Self {
            id: n.id.to_string(),
            version: n.version.clone(),
            hostname: n.hostname.clone(),
            last_ping: n.last_ping.secs(),
            kind: "kong-proxy",
            config_hash: n.config_hash.clone(),
            created_at: n.created_at.secs(),
            updated_at: n.updated_at.secs(),
            last_error: n.last_error.clone(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodePage {
    pub items: Vec<NodeView>,
    /// `total_count`, and `next` (the next page's path) when there is one.
    #[schema(value_type = Object)]
    pub page: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeItem {
    pub item: NodeView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExpectedConfigHash {
    pub expected_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DpCertificateView {
    pub id: String,
    /// PEM.
    pub cert: String,
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&DpClientCertificate> for DpCertificateView {
    fn from(c: &DpClientCertificate) -> Self {
        Self {
            id: c.id.to_string(),
            cert: c.cert.clone(),
            title: c.title.clone(),
            created_at: c.created_at.secs(),
            updated_at: c.updated_at.secs(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DpCertificateItem {
    pub item: DpCertificateView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DpCertificatePage {
    pub items: Vec<DpCertificateView>,
    #[schema(value_type = Object)]
    pub page: Value,
}

/// The body of `POST …/dp-client-certificates`, for the OpenAPI document (the handler reads it field by field,
/// to report every invalid one in problem+json).
#[allow(dead_code)]
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct NewDpCertificate {
    /// The certificate, PEM.
    pub cert: String,
    pub title: Option<String>,
}

pub(crate) fn routes() -> OpenApiRouter<ControlState> {
    OpenApiRouter::new()
        .routes(routes!(list_nodes))
        .routes(routes!(get_node, delete_node))
        .routes(routes!(expected_config_hash))
        .routes(routes!(list_certificates, create_certificate))
        .routes(routes!(get_certificate, delete_certificate))
}

fn uuid_param(params: &PathParams<V2Error>, index: usize, name: &str) -> Result<uuid::Uuid, ApiError> {
    let raw = params.0.get(index).map(String::as_str).unwrap_or("");
    path_id(name, raw, |s| gatehouse_model::gateway::is_uuid(s).then(|| s.parse().ok()).flatten(), Rule::IsUuid)
}

/// The control plane of the path, which must exist.
async fn control_plane(state: &ControlState, params: &PathParams<V2Error>) -> Result<uuid::Uuid, ApiError> {
    let id = uuid_param(params, 0, "controlPlaneId")?;
    state
        .services
        .store
        .get_control_plane(id)
        .await?
        .map(|cp| cp.id)
        .ok_or_else(|| ApiError::NotFound("The requested control plane was not found.".into()))
}

fn page_param(raw: Option<&str>) -> Result<(u32, Option<uuid::Uuid>), ApiError> {
    let mut size = DEFAULT_PAGE;
    let mut after = None;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "page[size]" => {
                size = value.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                    ApiError::invalid(
                        InvalidParameter::new("page[size]", Rule::Max, format!("must be between 1 and {MAX_PAGE}"))
                            .in_query(),
                    )
                })?
            }
            "page[after]" => {
                after = Some(value.parse().map_err(|_| {
                    ApiError::invalid(InvalidParameter::new("page[after]", Rule::IsUuid, "must be a UUID").in_query())
                })?)
            }
            _ => {}
        }
    }
    Ok((size, after))
}

/// List data plane node records
#[utoipa::path(operation_id = "listDataplaneNodes", get, path = "/v2/control-planes/{controlPlaneId}/nodes", tag = "DP Nodes", params(("page[size]" = Option<u32>, Query, description = "Records per page, 1 to 1000; default 100."), ("page[after]" = Option<String>, Query, description = "The last id of the previous page (its `page.next` link carries it).")), responses((status = 200, description = "A page of the control plane's data planes, by id.", body = NodePage)))]
async fn list_nodes(
    _: Auth,
    State(state): State<ControlState>,
    params: PathParams<V2Error>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let cp = control_plane(&state, &params).await?;
    let (size, after) = page_param(raw.as_deref())?;
    let listed = state.services.store.list_data_planes(cp, after, size).await?;
    let mut page = json!({"total_count": listed.total});
    if listed.items.len() == size as usize
        && let Some(last) = listed.items.last()
    {
        page["next"] =
            json!(format!("/v2/control-planes/{cp}/nodes?page%5Bsize%5D={size}&page%5Bafter%5D={}", last.id));
    }
    let items = listed.items.iter().map(NodeView::from).collect();
    Ok(Json(NodePage { items, page }).into_response())
}

fn node_not_found() -> ApiError {
    ApiError::NotFound("The requested data plane node was not found.".into())
}

/// Get a data plane node record
#[utoipa::path(operation_id = "getNodesNodeId", get, path = "/v2/control-planes/{controlPlaneId}/nodes/{nodeId}", tag = "DP Nodes", responses((status = 200, description = "The data plane's record.", body = NodeItem)))]
async fn get_node(_: Auth, State(state): State<ControlState>, params: PathParams<V2Error>) -> Result<Response> {
    let cp = control_plane(&state, &params).await?;
    let id = uuid_param(&params, 1, "nodeId")?;
    let node = state.services.store.get_data_plane(cp, id).await?.ok_or_else(node_not_found)?;
    Ok(Json(NodeItem { item: NodeView::from(&node) }).into_response())
}

/// Delete a data plane node record
#[utoipa::path(operation_id = "deleteNodesNodeId", delete, path = "/v2/control-planes/{controlPlaneId}/nodes/{nodeId}", tag = "DP Nodes", responses((status = 204, description = "Deleted. A data plane still connected is recorded again at its next heartbeat, as in Konnect.")))]
async fn delete_node(_: Auth, State(state): State<ControlState>, params: PathParams<V2Error>) -> Result<StatusCode> {
    let cp = control_plane(&state, &params).await?;
    let id = uuid_param(&params, 1, "nodeId")?;
    if state.services.store.delete_data_plane(cp, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(node_not_found().into())
    }
}

/// Get the expected config hash
#[utoipa::path(operation_id = "getExpectedConfigHash", get, path = "/v2/control-planes/{controlPlaneId}/expected-config-hash", tag = "DP Nodes", responses((status = 200, description = "The hash of the configuration this control plane publishes; a data plane serving another is lagging.", body = ExpectedConfigHash)))]
async fn expected_config_hash(
    _: Auth,
    State(state): State<ControlState>,
    params: PathParams<V2Error>,
) -> Result<Response> {
    let cp = control_plane(&state, &params).await?;
    let published = match (&state.configuration, state.served) {
        (Some(configuration), Some(served)) if served == cp => configuration.borrow().clone(),
        _ => {
            return Err(ApiError::NotFound(
                "This node publishes no configuration for this control plane (gateway.control_plane names the one it \
                 serves)."
                    .into(),
            )
            .into());
        }
    };
    let record = state.services.store.get_control_plane(cp).await?;
    let created_at = record.map(|r| r.created_at.secs()).unwrap_or_default();
    let updated_at = state.services.clock.now().secs();
    Ok(Json(ExpectedConfigHash { expected_hash: published.hash(), created_at, updated_at }).into_response())
}

/// List DP client certificates
#[utoipa::path(operation_id = "listDpClientCertificates", get, path = "/v2/control-planes/{controlPlaneId}/dp-client-certificates", tag = "DP Certificates", responses((status = 200, description = "The certificates pinned for data planes (`cluster.mtls = pki`).", body = DpCertificatePage)))]
async fn list_certificates(
    _: Auth,
    State(state): State<ControlState>,
    params: PathParams<V2Error>,
) -> Result<Response> {
    let cp = control_plane(&state, &params).await?;
    let certs = state.services.store.list_dp_certificates(cp).await?;
    let items: Vec<_> = certs.iter().map(DpCertificateView::from).collect();
    let page = json!({"total_count": items.len()});
    Ok(Json(DpCertificatePage { items, page }).into_response())
}

/// Pin a new DP client certificate
#[utoipa::path(operation_id = "createDataplaneCertificate", post, path = "/v2/control-planes/{controlPlaneId}/dp-client-certificates", tag = "DP Certificates", request_body = NewDpCertificate, responses((status = 201, description = "Pinned: a data plane presenting this certificate (and holding its key) is accepted from its next connection.", body = DpCertificateItem)))]
async fn create_certificate(
    _: Auth,
    State(state): State<ControlState>,
    params: PathParams<V2Error>,
    body: JsonBody<V2Error>,
) -> Result<Response> {
    let cp = control_plane(&state, &params).await?;
    let invalid = |field: &str, rule, reason: String| ApiError::invalid(InvalidParameter::new(field, rule, reason));
    let cert = match body.0.get("cert") {
        Some(Value::String(pem)) => pem.clone(),
        Some(_) => return Err(invalid("cert", Rule::IsString, "must be a string".into()).into()),
        None => return Err(invalid("cert", Rule::Required, "is required".into()).into()),
    };
    let title = match body.0.get("title") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(invalid("title", Rule::IsString, "must be a string".into()).into()),
    };
    let chain = gatehouse_net::tls::parse_certificates(cert.as_bytes())
        .map_err(|e| invalid("cert", Rule::Invalid, e.to_string()))?;
    if chain.len() != 1 {
        return Err(invalid("cert", Rule::Invalid, "must be one PEM certificate".into()).into());
    }
    let now = state.services.clock.now();
    let record = DpClientCertificate {
        id: uuid::Uuid::new_v4(),
        control_plane_id: cp,
        cert,
        title,
        created_at: now,
        updated_at: now,
    };
    state.services.store.create_dp_certificate(&record).await?;
    Ok((StatusCode::CREATED, Json(DpCertificateItem { item: DpCertificateView::from(&record) })).into_response())
}

fn certificate_not_found() -> ApiError {
    ApiError::NotFound("The requested dp client certificate was not found.".into())
}

/// Get a DP client certificate
#[utoipa::path(operation_id = "getDataplaneCertificate", get, path = "/v2/control-planes/{controlPlaneId}/dp-client-certificates/{certificateId}", tag = "DP Certificates", responses((status = 200, description = "The pinned certificate.", body = DpCertificateItem)))]
async fn get_certificate(_: Auth, State(state): State<ControlState>, params: PathParams<V2Error>) -> Result<Response> {
    let cp = control_plane(&state, &params).await?;
    let id = uuid_param(&params, 1, "certificateId")?;
    let cert = state.services.store.get_dp_certificate(cp, id).await?.ok_or_else(certificate_not_found)?;
    Ok(Json(DpCertificateItem { item: DpCertificateView::from(&cert) }).into_response())
}

/// Delete a DP client certificate
#[utoipa::path(operation_id = "deleteDataplaneCertificate", delete, path = "/v2/control-planes/{controlPlaneId}/dp-client-certificates/{certificateId}", tag = "DP Certificates", responses((status = 204, description = "Unpinned: refused from the next connection (open ones are not cut).")))]
async fn delete_certificate(
    _: Auth,
    State(state): State<ControlState>,
    params: PathParams<V2Error>,
) -> Result<StatusCode> {
    let cp = control_plane(&state, &params).await?;
    let id = uuid_param(&params, 1, "certificateId")?;
    if state.services.store.delete_dp_certificate(cp, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(certificate_not_found().into())
    }
}

/// Kong's Admin API `GET /clustering/data-planes`: the served control plane's data planes in Kong's shape.
pub(crate) async fn clustering_data_planes(state: &ControlState) -> Result<Value, ApiError> {
    let Some(cp) = state.served else { return Ok(json!({"data": [], "next": null})) };
    let expected = state.configuration.as_ref().map(|c| c.borrow().hash());
    let listed = state.services.store.list_data_planes(cp, None, MAX_PAGE).await?;
    let data: Vec<Value> = listed
        .items
        .iter()
        .map(|n| {
            let sync_status = match &expected {
                Some(hash) if *hash == n.config_hash => "normal",
                _ => "unknown",
            };
            json!({
                "id": n.id, "hostname": n.hostname, "version": n.version, "config_hash": n.config_hash,
                "last_seen": n.last_ping.secs(), "sync_status": sync_status,
            })
        })
        .collect();
    Ok(json!({"data": data, "next": null}))
}
