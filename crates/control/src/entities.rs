//! Kong's entity API (services, routes, consumers, plugins, the `acl` plugin's `acls`, the `key-auth` plugin's
//! `keyauth_credentials` at `/key-auths` and the `jwt` plugin's `jwt_secrets` at `/jwts`), served twice: on the
//! admin listener for the node's control plane, and under `/v2/control-planes/{id}/core-entities` on the platform
//! listener (with a personal access token). One set of handlers; [`Target`] resolves which control plane a request
//! is about.

use axum::extract::{FromRef, FromRequestParts, Path, RawQuery};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::entities::plugin_schema_document;
use gatehouse_model::gateway::form::entity_object;
use gatehouse_model::gateway::schema::Violation;
use gatehouse_model::gateway::{EntityKind, StoredEntity, is_uuid, validate_entity};
use gatehouse_runtime::Services;
use gatehouse_runtime::auth::Principal;
use gatehouse_runtime::errors::{ApiError, KongError};
use gatehouse_runtime::extract::{AdminBody, AdminInput};
use gatehouse_store::{Conflict, EntityQuery, StoreError, TagFilter};

use crate::{ControlState, secrets};

type Result<T, E = KongError> = std::result::Result<T, E>;
type Body = AdminBody<KongError>;

/// Which control plane an entity API instance works on.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The admin listener: the control plane this node serves.
    Served,
    /// Konnect's core entities: the `{controlPlaneId}` in the path, after a personal access token.
    FromPath,
}

#[derive(Debug, Clone)]
pub(crate) struct EntityApi {
    control: ControlState,
    scope: Scope,
}

impl FromRef<EntityApi> for Services {
    fn from_ref(api: &EntityApi) -> Services {
        api.control.services.clone()
    }
}

/// The control plane a request is about, the remaining path parameters, and the path prefix for `next` links.
#[derive(Debug)]
pub(crate) struct Target {
    control: ControlState,
    cp: uuid::Uuid,
    params: Vec<String>,
    base: String,
}

impl Target {
    pub(crate) fn store(&self) -> &std::sync::Arc<dyn gatehouse_store::Store> {
        &self.control.services.store
    }

    pub(crate) fn control_plane(&self) -> uuid::Uuid {
        self.cp
    }

    /// The node's balancers (health is per node).
    pub(crate) fn upstream_health(&self) -> Option<&dyn gatehouse_model::gateway::upstreams::UpstreamHealth> {
        self.control.upstream_health.as_deref()
    }

    /// Kong's `node_id` (the admin root's).
    pub(crate) fn node_id(&self) -> Option<String> {
        self.control.served.map(|id| id.to_string())
    }
}

fn not_found() -> KongError {
    ApiError::NotFound("Not found".into()).into()
}

impl FromRequestParts<EntityApi> for Target {
    type Rejection = KongError;

    async fn from_request_parts(parts: &mut Parts, api: &EntityApi) -> Result<Self> {
        let mut params = match Path::<Vec<String>>::from_request_parts(parts, api).await {
            Ok(Path(p)) => p,
            Err(_) => Vec::new(),
        };
        let (cp, base) = match api.scope {
            Scope::Served => (api.control.served.ok_or_else(not_found)?, String::new()),
            Scope::FromPath => {
                // Authentication first: nothing about the control plane is revealed without a token.
                Principal::<KongError>::from_request_parts(parts, api).await?;
                let raw = if params.is_empty() { String::new() } else { params.remove(0) };
                let cp: uuid::Uuid = is_uuid(&raw).then(|| raw.parse().ok()).flatten().ok_or_else(not_found)?;
                api.control.services.store.get_control_plane(cp).await?.ok_or_else(not_found)?;
                (cp, format!("/v2/control-planes/{cp}/core-entities"))
            }
        };
        Ok(Target { control: api.control.clone(), cp, params, base })
    }
}

fn entity_routes() -> Router<EntityApi> {
    Router::new()
        .route("/schemas/{entity}", get(schema))
        // `/schemas/plugins/validate` lands here too: matching prefers the static `plugins` segment.
        .route("/schemas/plugins/{name}", get(plugin_schema).post(validate_plugin))
        .route("/schemas/{entity}/validate", post(validate))
        .route("/{collection}", get(list).post(create))
        .route("/{collection}/{id}", get(read).put(replace).patch(update).delete(remove))
        .route("/{parent}/{parent_id}/{collection}", get(list_nested).post(create_nested))
        .route(
            "/{parent}/{parent_id}/{collection}/{id}",
            get(read_nested).put(replace_nested).patch(update_nested).delete(remove_nested),
        )
        // Every method, so a path of this shape that is not a target's health answers Kong's 404, not a 405.
        .route("/{parent}/{parent_id}/{collection}/{id}/{action}", axum::routing::any(target_health))
        .route("/{parent}/{parent_id}/{collection}/{id}/{address}/{action}", axum::routing::any(address_health))
}

/// `PUT /upstreams/{u}/targets/{t}/{address}/healthy|unhealthy`: one address (`ip:port`, the port 8000 when
/// absent, as Kong reads it) of a target.
async fn address_health(method: axum::http::Method, t: Target) -> Result<Response> {
    let (parent, target, healthy) = health_request(&method, &t, 5).await?;
    Ok(crate::upstream_health::set_address_health(&t, &parent, &target, param(&t, 4), healthy))
}

/// `PUT /upstreams/{u}/targets/{t}/healthy|unhealthy`.
async fn target_health(method: axum::http::Method, t: Target) -> Result<Response> {
    let (parent, target, healthy) = health_request(&method, &t, 4).await?;
    Ok(crate::upstream_health::set_health(&t, &parent, &target, healthy))
}

/// What both health endpoints check, in Kong's order: the action named by path segment `action_at`, then the
/// upstream and its target (404s), then the method (405), so a path of this shape that names no target's health
/// is Kong's 404. Gives the upstream, the target and whether it is to be healthy.
async fn health_request(
    method: &axum::http::Method,
    t: &Target,
    action_at: usize,
) -> Result<(StoredEntity, StoredEntity, bool)> {
    let healthy = match param(t, action_at) {
        "healthy" => true,
        "unhealthy" => false,
        _ => return Err(not_found()),
    };
    let (child, parent) = parent_of(t).await?;
    if child != EntityKind::Target {
        return Err(not_found());
    }
    let target = resolve_child(t, child, &parent, param(t, 3)).await?.filter(|e| belongs(e, &parent));
    let target = target.ok_or_else(not_found)?;
    if method != axum::http::Method::PUT {
        return Err(ApiError::MethodNotAllowed.into());
    }
    Ok((parent, target, healthy))
}

pub fn core_entities_router(control: ControlState) -> Router {
    let api = EntityApi { control, scope: Scope::FromPath };
    Router::new().nest("/v2/control-planes/{controlPlaneId}/core-entities", entity_routes()).with_state(api)
}

/// The entity routes for the served control plane, for the admin listener.
pub(crate) fn served_entity_routes(control: ControlState) -> Router {
    entity_routes().with_state(EntityApi { control, scope: Scope::Served })
}

fn kind_of(collection: &str) -> Result<EntityKind> {
    EntityKind::from_collection(collection).ok_or_else(not_found)
}

/// The nestings Kong offers: routes under services; plugins under services, routes and consumers; acls and
/// keyauth credentials (`/consumers/{c}/key-auth`, Kong's singular nested name) under consumers.
fn nested(parent: &str, collection: &str) -> Result<(EntityKind, EntityKind)> {
    let parent = kind_of(parent)?;
    let child = EntityKind::ALL.into_iter().find(|k| k.nested_collection() == collection).ok_or_else(not_found)?;
    NESTINGS.iter().copied().find(|n| *n == (parent, child)).ok_or_else(not_found)
}

/// (parent, child) for every nesting served (and described in the OpenAPI documents).
pub(crate) const NESTINGS: &[(EntityKind, EntityKind)] = &[
    (EntityKind::Service, EntityKind::Route),
    (EntityKind::Service, EntityKind::Plugin),
    (EntityKind::Route, EntityKind::Plugin),
    (EntityKind::Consumer, EntityKind::Plugin),
    (EntityKind::Consumer, EntityKind::Acl),
    (EntityKind::Consumer, EntityKind::KeyAuth),
    (EntityKind::Consumer, EntityKind::Jwt),
    (EntityKind::Consumer, EntityKind::BasicAuth),
    (EntityKind::Certificate, EntityKind::Sni),
    (EntityKind::Upstream, EntityKind::Target),
];

fn param(t: &Target, i: usize) -> &str {
    t.params.get(i).map(String::as_str).unwrap_or("")
}

async fn resolve(t: &Target, kind: EntityKind, id_or_key: &str) -> Result<Option<StoredEntity>> {
    let store = &t.control.services.store;
    if is_uuid(id_or_key) {
        let id = id_or_key.parse().map_err(|_| not_found())?;
        Ok(store.get_entity(t.cp, kind, id).await?)
    } else if matches!(kind, EntityKind::Acl | EntityKind::Target) {
        // A group names an acl only under its consumer, a `host:port` a target only under its upstream
        // (`resolve_child`).
        Ok(None)
    } else if kind == EntityKind::KeyAuth {
        // Keys are found by their keyed hash, the only form the store indexes them by.
        let hash = t.control.services.keys.hash_api_key(id_or_key);
        Ok(store.find_entity(t.cp, kind, &hash).await?)
    } else {
        Ok(store.find_entity(t.cp, kind, id_or_key).await?)
    }
}

/// A nested child by id or key. An acl's group is unique per consumer, so `/consumers/{c}/acls/{group}` looks
/// among that consumer's acls (Kong's `select_by_cache_key`); a consumer holds few, so they are listed.
async fn resolve_child(t: &Target, kind: EntityKind, parent: &StoredEntity, key: &str) -> Result<Option<StoredEntity>> {
    if !matches!(kind, EntityKind::Acl | EntityKind::Target) || is_uuid(key) {
        return resolve(t, kind, key).await;
    }
    let (field, key) = match kind {
        // Kong finds a target by its `host:port`, the default port added as when it was stored.
        EntityKind::Target => {
            ("target", gatehouse_model::gateway::upstreams::format_target(key).unwrap_or_else(|| key.to_owned()))
        }
        _ => ("group", key.to_owned()),
    };
    let mut q = EntityQuery { size: 1000, ..EntityQuery::default() };
    match kind {
        EntityKind::Target => q.upstream_id = Some(parent.id),
        _ => q.consumer_id = Some(parent.id),
    }
    loop {
        let (items, next) = t.control.services.store.list_entities(t.cp, kind, &q).await?;
        if let Some(found) = items.into_iter().find(|e| e.data.get(field).and_then(Value::as_str) == Some(&key)) {
            return Ok(Some(found));
        }
        match next {
            Some(after) => q.after = Some(after),
            None => return Ok(None),
        }
    }
}

async fn require(t: &Target, kind: EntityKind, id_or_key: &str) -> Result<StoredEntity> {
    resolve(t, kind, id_or_key).await?.ok_or_else(not_found)
}

/// The entity as the APIs show it: secret fields opened.
fn output(t: &Target, e: StoredEntity) -> Value {
    let mut data = e.data;
    secrets::open(&t.control.services.keys, e.kind, &mut data);
    Value::Object(data)
}

/// [`output`], with what Kong adds on read: a certificate's `snis`, the names of its SNIs, sorted.
async fn shown(t: &Target, e: StoredEntity) -> Result<Value> {
    let (kind, id) = (e.kind, e.id);
    let mut value = output(t, e);
    if kind == EntityKind::Certificate {
        let names: Vec<String> = snis_of(t, id).await?.into_iter().map(|(name, _)| name).collect();
        value["snis"] = json!(names);
    }
    Ok(value)
}

/// A certificate's SNIs: name and id, sorted by name.
async fn snis_of(t: &Target, certificate: uuid::Uuid) -> Result<Vec<(String, uuid::Uuid)>> {
    let mut q = EntityQuery { size: 1000, certificate_id: Some(certificate), ..EntityQuery::default() };
    let mut out = Vec::new();
    loop {
        let (items, next) = t.control.services.store.list_entities(t.cp, EntityKind::Sni, &q).await?;
        out.extend(items.into_iter().filter_map(|e| Some((e.data.get("name")?.as_str()?.to_owned(), e.id))));
        match next {
            Some(after) => q.after = Some(after),
            None => break,
        }
    }
    out.sort();
    Ok(out)
}

/// Kong's transient `snis` of a certificate body (validated with it): `None` when the body has none.
fn body_snis(body: &Map<String, Value>) -> Option<Vec<String>> {
    body.get("snis")?.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
}

/// Before a certificate is written with `names` as its SNIs: each name once, and none served by another
/// certificate (Kong's `snis:check_list_is_new`).
async fn check_snis(t: &Target, certificate: uuid::Uuid, names: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(violations(vec![Violation::new("snis", format!("{name} is duplicated"))]));
        }
        if let Some(existing) = t.control.services.store.find_entity(t.cp, EntityKind::Sni, name).await?
            && existing.certificate_id != Some(certificate)
        {
            let owner = existing.certificate_id.map(|c| c.to_string()).unwrap_or_default();
            return Err(violations(vec![Violation::new(
                "snis",
                format!("{name} already associated with existing certificate '{owner}'"),
            )]));
        }
    }
    Ok(())
}

/// Writes a validated entity: inserted (`create`) or upserted. A certificate goes with its SNIs, when `snis` lists
/// them, in one transaction (Kong's `snis:update_list` inside the certificate's write): those no longer listed
/// are deleted, new ones created.
async fn store_entity(t: &Target, entity: &StoredEntity, create: bool, snis: Option<&[String]>) -> Result<()> {
    let store = &t.control.services.store;
    let written = if entity.kind == EntityKind::Certificate {
        let snis = snis
            .map(|names| {
                names
                    .iter()
                    .map(|name| {
                        let mut body = Map::new();
                        body.insert("name".into(), json!(name));
                        body.insert("certificate".into(), json!({ "id": entity.id.to_string() }));
                        prepare(t, EntityKind::Sni, uuid::Uuid::new_v4(), now_secs(t), body)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        store.write_certificate(t.cp, entity, create, snis.as_deref()).await.map(|_| ())
    } else if create {
        store.insert_entity(t.cp, entity).await
    } else {
        store.upsert_entity(t.cp, entity).await.map(|_| ())
    };
    written.map_err(|e| store_failure(t, e, entity))
}

/// A service's `client_certificate` and `ca_certificates` must name existing entities: Kong's foreign-key
/// violation, with the field named. (The store checks the references it keeps as columns; these live in the
/// entity's data only.)
async fn check_references(t: &Target, entity: &StoredEntity) -> Result<()> {
    if entity.kind != EntityKind::Service {
        return Ok(());
    }
    let store = &t.control.services.store;
    let missing = |field: &str, collection: &str, id: &str| {
        let message =
            format!("the foreign key '{{id=\"{id}\"}}' does not reference an existing '{collection}' entity.");
        KongError::dao(
            StatusCode::BAD_REQUEST,
            4,
            "foreign key violation",
            message.clone(),
            Some(json!({ field: message })),
        )
    };
    let data = &entity.data;
    if let Some(id) = data.get("client_certificate").and_then(|c| c.get("id")).and_then(Value::as_str) {
        let found = match id.parse() {
            Ok(uuid) => store.get_entity(t.cp, EntityKind::Certificate, uuid).await?.is_some(),
            Err(_) => false,
        };
        if !found {
            return Err(missing("client_certificate", "certificates", id));
        }
    }
    for id in data.get("ca_certificates").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        let found = match id.parse() {
            Ok(uuid) => store.get_entity(t.cp, EntityKind::CaCertificate, uuid).await?.is_some(),
            Err(_) => false,
        };
        if !found {
            return Err(missing("ca_certificates", "ca_certificates", id));
        }
    }
    Ok(())
}

/// A certificate a service presents (`client_certificate`) or a CA certificate it trusts (`ca_certificates`) is not
/// deleted from under it: Kong's "referenced by others" (its `ca_certificates` DAO and the foreign key).
async fn refuse_if_a_service_uses(t: &Target, entity: &StoredEntity) -> Result<()> {
    let id = entity.id.to_string();
    let uses: fn(&Map<String, Value>, &str) -> bool = match entity.kind {
        EntityKind::Certificate => {
            |s, id| s.get("client_certificate").and_then(|c| c.get("id")).and_then(Value::as_str) == Some(id)
        }
        EntityKind::CaCertificate => {
            |s, id| s.get("ca_certificates").and_then(Value::as_array).is_some_and(|ids| ids.iter().any(|v| v == id))
        }
        _ => return Ok(()),
    };
    let mut q = EntityQuery { size: 1000, ..EntityQuery::default() };
    loop {
        let (items, next) = t.control.services.store.list_entities(t.cp, EntityKind::Service, &q).await?;
        if let Some(service) = items.iter().find(|s| uses(&s.data, &id)) {
            let message = match entity.kind {
                EntityKind::CaCertificate => {
                    format!("ca certificate {id} is still referenced by services (id = {})", service.id)
                }
                _ => "an existing 'services' entity references this 'certificates' entity".to_owned(),
            };
            return Err(KongError::dao(StatusCode::BAD_REQUEST, 19, "referenced by others", message, None));
        }
        match next {
            Some(after) => q.after = Some(after),
            None => return Ok(()),
        }
    }
}

fn violations(v: Vec<Violation>) -> KongError {
    KongError::schema_violation(&v.into_iter().map(|v| (v.path, v.message)).collect::<Vec<_>>())
}

fn quoted(v: &Option<String>) -> String {
    v.as_ref().map_or("null".to_owned(), |s| format!("\"{s}\""))
}

/// Store failures in Kong's DAO shapes; a keyauth credential's conflict names its key in clear, as Kong's does
/// (the client sent it), not the hash the store compared.
fn store_failure(t: &Target, e: StoreError, entity: &StoredEntity) -> KongError {
    if entity.kind == EntityKind::KeyAuth {
        let mut shown = entity.clone();
        secrets::open(&t.control.services.keys, shown.kind, &mut shown.data);
        shown.endpoint_key = shown.data.get("key").and_then(Value::as_str).map(str::to_owned);
        return store_error(e, &shown);
    }
    store_error(e, entity)
}

/// Store failures in Kong's DAO shapes.
fn store_error(e: StoreError, entity: &StoredEntity) -> KongError {
    match e {
        StoreError::Conflict(Conflict::Field("cache_key")) if entity.kind == EntityKind::Acl => {
            let consumer = entity.consumer_id.map_or("null".to_owned(), |u| format!("{{id=\"{u}\"}}"));
            let group = entity.data.get("group").and_then(Value::as_str).map(str::to_owned);
            let message = format!("UNIQUE violation detected on '{{consumer={consumer},group={}}}'", quoted(&group));
            KongError::dao(StatusCode::CONFLICT, 5, "unique constraint violation", message, None)
        }
        StoreError::Conflict(Conflict::Field("cache_key")) if entity.kind == EntityKind::Target => {
            let upstream = entity.upstream_id.map_or("null".to_owned(), |u| format!("{{id=\"{u}\"}}"));
            let target = entity.data.get("target").and_then(Value::as_str).map(str::to_owned);
            let message = format!("UNIQUE violation detected on '{{target={},upstream={upstream}}}'", quoted(&target));
            KongError::dao(StatusCode::CONFLICT, 5, "unique constraint violation", message, None)
        }
        StoreError::Conflict(Conflict::Field("cache_key")) if entity.kind == EntityKind::CaCertificate => {
            let digest = entity.cache_key.clone();
            KongError::dao(
                StatusCode::CONFLICT,
                5,
                "unique constraint violation",
                format!("UNIQUE violation detected on '{{cert_digest={}}}'", quoted(&digest)),
                None,
            )
        }
        StoreError::Conflict(Conflict::Field("cache_key")) => {
            let part = |id: Option<uuid::Uuid>| id.map_or("null".to_owned(), |u| format!("{{id=\"{u}\"}}"));
            let message = format!(
                "UNIQUE violation detected on '{{consumer={},name={},route={},service={}}}'",
                part(entity.consumer_id),
                quoted(&entity.name),
                part(entity.route_id),
                part(entity.service_id)
            );
            KongError::dao(StatusCode::CONFLICT, 5, "unique constraint violation", message, None)
        }
        StoreError::Conflict(Conflict::Field(field)) => {
            let value = match field {
                "custom_id" => entity.custom_id.clone(),
                _ => entity.endpoint_key.clone(),
            };
            let shown = value.clone().unwrap_or_default();
            KongError::dao(
                StatusCode::CONFLICT,
                5,
                "unique constraint violation",
                format!("UNIQUE violation detected on '{{{field}={}}}'", quoted(&value)),
                Some(json!({ field: format!("already exists with value '{shown}'") })),
            )
        }
        StoreError::Conflict(_) => KongError::dao(
            StatusCode::BAD_REQUEST,
            3,
            "primary key violation",
            format!("primary key violation on key '{{id=\"{}\"}}'", entity.id),
            Some(json!({ "id": format!("already exists with value '{}'", entity.id) })),
        ),
        StoreError::MissingReference { field } => {
            let id = entity.data.get(field).and_then(|f| f.get("id")).and_then(Value::as_str).unwrap_or_default();
            let message =
                format!("the foreign key '{{id=\"{id}\"}}' does not reference an existing '{field}s' entity.");
            KongError::dao(
                StatusCode::BAD_REQUEST,
                4,
                "foreign key violation",
                message.clone(),
                Some(json!({ field: message })),
            )
        }
        StoreError::Referenced { by } => KongError::dao(
            StatusCode::BAD_REQUEST,
            19,
            "referenced by others",
            format!("an existing '{by}' entity references this '{}' entity", entity.kind.collection()),
            None,
        ),
        StoreError::NotFound => not_found(),
        other => other.into(),
    }
}

fn now_secs(t: &Target) -> i64 {
    t.control.services.clock.now().secs()
}

/// Validates `body` as a whole entity and stamps id and timestamps; secret fields are sealed for storage.
fn prepare(
    t: &Target,
    kind: EntityKind,
    id: uuid::Uuid,
    created_at: i64,
    mut body: Map<String, Value>,
) -> Result<StoredEntity> {
    for auto in ["id", "created_at", "updated_at"] {
        body.remove(auto);
    }
    // Gatehouse's `_transform: false` on a basic-auth credential: its `password` is already Kong's hash (what decK
    // sends, and what a PATCH that leaves the password alone carries over).
    let stored_form = kind == EntityKind::BasicAuth && body.remove("_transform") == Some(Value::Bool(false));
    let mut data = validate_entity(kind, &body).map_err(violations)?;
    match kind {
        EntityKind::Certificate => {
            crate::certificates::check_certificate(&data).map_err(violations)?;
            // Kong's transient field: the `snis` entities hold the names (`write_snis`).
            data.remove("snis");
        }
        EntityKind::CaCertificate => {
            crate::certificates::prepare_ca_certificate(&mut data, now_secs(t)).map_err(violations)?;
        }
        EntityKind::BasicAuth => hash_password(&mut data, stored_form)?,
        EntityKind::Jwt => {
            crate::jwt_secrets::check_public_key(&data).map_err(violations)?;
            // Kong's `auto = true` key and secret: made when the client leaves them out.
            for field in ["key", "secret"] {
                if !data.get(field).is_some_and(Value::is_string) {
                    data.insert(field.into(), Value::String(gatehouse_runtime::random::alphanumeric(32)));
                }
            }
        }
        _ => {}
    }
    data.insert("id".into(), json!(id.to_string()));
    data.insert("created_at".into(), json!(created_at));
    if kind.has_updated_at() {
        data.insert("updated_at".into(), json!(now_secs(t)));
    }
    let keys = &t.control.services.keys;
    let mut key_hash = None;
    if kind == EntityKind::KeyAuth {
        // Kong's `auto = true` key: 32 random alphanumeric characters, shown once in the answer to the create (and
        // on every read, as Kong does, from the sealed copy).
        let key = match data.get("key") {
            Some(Value::String(key)) => key.clone(),
            _ => gatehouse_runtime::random::alphanumeric(32),
        };
        key_hash = Some(keys.hash_api_key(&key));
        data.insert("key".into(), Value::String(key));
    }
    secrets::seal(keys, kind, &mut data);
    let mut entity = StoredEntity::from_data(kind, data)
        .ok_or_else(|| KongError::from(ApiError::internal("a validated entity without an id")))?;
    if key_hash.is_some() {
        entity.endpoint_key = key_hash;
    }
    Ok(entity)
}

/// Kong's `on_write` transformation of `basicauth_credentials`: the password becomes `sha1(password ..
/// consumer_id)`. A password already in that form (`_transform: false`) is kept, and must have its shape.
fn hash_password(data: &mut gatehouse_model::gateway::Normalized, stored_form: bool) -> Result<()> {
    use gatehouse_model::gateway::plugins::basic_auth::{is_kong_hash, kong_hash};
    let consumer = data.get("consumer").and_then(|c| c.get("id")).and_then(Value::as_str).unwrap_or_default();
    let password = data.get("password").and_then(Value::as_str).unwrap_or_default();
    let hashed = if stored_form {
        if !is_kong_hash(password) {
            return Err(violations(vec![Violation::new(
                "password",
                "with _transform: false, expected Kong's hashed form (40 lower-case hexadecimal digits)",
            )]));
        }
        password.to_owned()
    } else {
        kong_hash(consumer, password)
    };
    data.insert("password".into(), Value::String(hashed));
    Ok(())
}

/// A body's `id`, when it sends one, must be a UUID (and match the path on PUT).
fn body_id(body: &Map<String, Value>) -> Result<Option<uuid::Uuid>> {
    match body.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_uuid(s) => Ok(s.parse().ok()),
        Some(_) => Err(violations(vec![Violation::new("id", "expected a valid UUID")])),
    }
}

/// The body as the JSON object validation reads. A form's values are typed by `kind`'s schema; a plugin's
/// config by the plugin the form names, else by `plugin` (a PATCH names it in the stored entity).
fn object(kind: EntityKind, body: Body, plugin: Option<&str>) -> Result<Map<String, Value>> {
    match body.0 {
        AdminInput::Json(object) => Ok(object),
        AdminInput::Form(pairs) => entity_object(kind, &pairs, plugin).map_err(violations),
    }
}

/// A nested create or replace belongs to the parent in the path, whatever parent the body names: Kong sets it
/// over the body's.
fn attach_parent(body: &mut Map<String, Value>, parent: Option<&StoredEntity>) {
    if let Some(parent) = parent {
        body.insert(parent.kind.singular().to_owned(), json!({ "id": parent.id.to_string() }));
    }
}

async fn do_create(
    t: Target,
    kind: EntityKind,
    parent: Option<StoredEntity>,
    mut body: Map<String, Value>,
) -> Result<Response> {
    attach_parent(&mut body, parent.as_ref());
    let id = body_id(&body)?.unwrap_or_else(uuid::Uuid::new_v4);
    let snis = if kind == EntityKind::Certificate { body_snis(&body) } else { None };
    let entity = prepare(&t, kind, id, now_secs(&t), body)?;
    check_references(&t, &entity).await?;
    if let Some(names) = &snis {
        check_snis(&t, id, names).await?;
    }
    store_entity(&t, &entity, true, snis.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(shown(&t, entity).await?)).into_response())
}

/// PUT: create or replace by id, or by endpoint key (a name in the path becomes the entity's name).
async fn do_replace(
    t: Target,
    kind: EntityKind,
    id_or_key: &str,
    parent: Option<StoredEntity>,
    mut body: Map<String, Value>,
) -> Result<Response> {
    attach_parent(&mut body, parent.as_ref());
    let existing = match &parent {
        Some(p) => resolve_child(&t, kind, p, id_or_key).await?,
        None => resolve(&t, kind, id_or_key).await?,
    };
    let id = if is_uuid(id_or_key) {
        id_or_key.parse().map_err(|_| not_found())?
    } else if kind == EntityKind::Acl {
        // Kong's acls API: the path's group fills a body without one, and the acl it names keeps its id.
        if parent.is_none() {
            return Err(not_found());
        }
        if body.get("group").is_none_or(Value::is_null) {
            body.insert("group".into(), json!(id_or_key));
        }
        existing.as_ref().map(|e| e.id).or(body_id(&body)?).unwrap_or_else(uuid::Uuid::new_v4)
    } else {
        let key = kind.endpoint_key();
        match body.get(key) {
            None | Some(Value::Null) => {
                body.insert(key.to_owned(), json!(id_or_key));
            }
            Some(v) if v.as_str() == Some(id_or_key) => {}
            Some(_) => {
                return Err(violations(vec![Violation::new(key, format!("must be '{id_or_key}', as in the path"))]));
            }
        }
        existing.as_ref().map(|e| e.id).or(body_id(&body)?).unwrap_or_else(uuid::Uuid::new_v4)
    };
    if body_id(&body)?.is_some_and(|b| b != id) {
        return Err(violations(vec![Violation::new("id", "must match the id in the path")]));
    }
    let created_at = existing.as_ref().map_or_else(|| now_secs(&t), |e| e.created_at);
    // Kong's upsert leaves a certificate's SNIs alone unless the body lists them.
    let snis = if kind == EntityKind::Certificate { body_snis(&body) } else { None };
    let entity = prepare(&t, kind, id, created_at, body)?;
    check_references(&t, &entity).await?;
    if let Some(names) = &snis {
        check_snis(&t, id, names).await?;
    }
    store_entity(&t, &entity, false, snis.as_deref()).await?;
    Ok(Json(shown(&t, entity).await?).into_response())
}

/// PATCH: the body's fields over the current entity; a plugin's `config` merges field by field, and its records too
/// (Kong's `merge_values`).
async fn do_update(t: Target, kind: EntityKind, existing: StoredEntity, body: Map<String, Value>) -> Result<Response> {
    let (id, created_at) = (existing.id, existing.created_at);
    let Value::Object(mut merged) = output(&t, existing) else { return Err(not_found()) };
    // A key that does not open (another master key) would be replaced by a generated one: a silent rotation.
    if kind == EntityKind::KeyAuth && merged.get("key").is_none_or(Value::is_null) && !body.contains_key("key") {
        return Err(ApiError::internal("the stored key does not open with this node's master key").into());
    }
    // The stored password is already Kong's hash: kept as it is unless the PATCH names a new one.
    if kind == EntityKind::BasicAuth && !body.contains_key("password") {
        if merged.get("password").is_none_or(Value::is_null) {
            return Err(ApiError::internal("the stored password does not open with this node's master key").into());
        }
        merged.insert("_transform".into(), Value::Bool(false));
    }
    let plugin = body.get("name").or_else(|| merged.get("name")).and_then(Value::as_str).map(str::to_owned);
    for (k, v) in body {
        match (merged.get_mut(&k), v) {
            (Some(Value::Object(current)), Value::Object(patch)) if k == "config" => {
                gatehouse_model::gateway::plugins::merge_config(plugin.as_deref().unwrap_or_default(), current, patch)
            }
            (_, v) => {
                merged.insert(k, v);
            }
        }
    }
    if body_id(&merged)?.is_some_and(|b| b != id) {
        return Err(violations(vec![Violation::new("id", "cannot be changed")]));
    }
    // A PATCH without `snis` leaves a certificate's SNIs as they are.
    let snis = if kind == EntityKind::Certificate { body_snis(&merged) } else { None };
    let entity = prepare(&t, kind, id, created_at, merged)?;
    check_references(&t, &entity).await?;
    if let Some(names) = &snis {
        check_snis(&t, id, names).await?;
    }
    store_entity(&t, &entity, false, snis.as_deref()).await?;
    Ok(Json(shown(&t, entity).await?).into_response())
}

async fn do_delete(t: Target, kind: EntityKind, target: Option<StoredEntity>) -> Result<StatusCode> {
    // Kong answers 204 for a delete of something that is not there.
    let Some(entity) = target else { return Ok(StatusCode::NO_CONTENT) };
    refuse_if_a_service_uses(&t, &entity).await?;
    t.control.services.store.delete_entity(t.cp, kind, entity.id).await.map_err(|e| store_failure(&t, e, &entity))?;
    Ok(StatusCode::NO_CONTENT)
}

fn size_error(reason: &str) -> KongError {
    KongError::dao(StatusCode::BAD_REQUEST, 9, "invalid size", format!("size {reason}"), None)
}

/// Kong's list: `size` (1–1000, default 100), an opaque `offset`, `tags` (`a,b` all, `a/b` any), and Konnect's
/// `filter[name][eq|contains]`; consumers also `custom_id`.
async fn do_list(
    t: Target,
    kind: EntityKind,
    parent: Option<StoredEntity>,
    raw: Option<String>,
    path: &str,
) -> Result<Response> {
    let mut q = EntityQuery { size: 100, ..EntityQuery::default() };
    // Parameters carried into the `next` link.
    let mut echo: Vec<(&'static str, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "size" => {
                let n: u32 = v.parse().map_err(|_| size_error("must be a number"))?;
                if !(1..=1000).contains(&n) {
                    return Err(size_error("must be an integer between 1 and 1000"));
                }
                q.size = n;
                echo.push(("size", v.into_owned()));
            }
            "offset" => {
                let decoded = URL_SAFE_NO_PAD.decode(v.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok());
                let after = decoded.filter(|s| is_uuid(s)).and_then(|s| s.parse().ok());
                q.after = Some(after.ok_or_else(|| {
                    KongError::dao(
                        StatusCode::BAD_REQUEST,
                        7,
                        "invalid offset",
                        format!("'{v}' is not a valid offset"),
                        None,
                    )
                })?);
            }
            "tags" => {
                let tags = if v.contains('/') {
                    TagFilter::Any(v.split('/').map(str::to_owned).collect())
                } else {
                    TagFilter::All(v.split(',').map(str::to_owned).collect())
                };
                q.tags = tags;
                echo.push(("tags", v.into_owned()));
            }
            "filter[name][eq]" | "filter[name]" => q.key_eq = Some(v.into_owned()),
            "filter[name][contains]" => q.key_contains = Some(v.into_owned()),
            "custom_id" if kind == EntityKind::Consumer => q.custom_id = Some(v.into_owned()),
            // Kong ignores query arguments it does not know.
            _ => {}
        }
    }
    if let Some(p) = &parent {
        match p.kind {
            EntityKind::Service => q.service_id = Some(p.id),
            EntityKind::Route => q.route_id = Some(p.id),
            EntityKind::Consumer => q.consumer_id = Some(p.id),
            EntityKind::Certificate => q.certificate_id = Some(p.id),
            EntityKind::Upstream => q.upstream_id = Some(p.id),
            _ => {}
        }
    }
    let (items, next) = t.control.services.store.list_entities(t.cp, kind, &q).await?;
    let mut data = Vec::with_capacity(items.len());
    for e in items {
        data.push(shown(&t, e).await?);
    }
    let mut body = json!({ "data": data, "next": null });
    if let Some(after) = next {
        let offset = URL_SAFE_NO_PAD.encode(after.to_string());
        echo.push(("offset", offset.clone()));
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(echo).finish();
        body["next"] = json!(format!("{}{path}?{query}", t.base));
        body["offset"] = json!(offset);
    }
    Ok(Json(body).into_response())
}

async fn list(t: Target, RawQuery(raw): RawQuery) -> Result<Response> {
    let kind = kind_of(param(&t, 0))?;
    let path = format!("/{}", kind.collection());
    do_list(t, kind, None, raw, &path).await
}

async fn create(t: Target, body: Body) -> Result<Response> {
    let kind = kind_of(param(&t, 0))?;
    let body = object(kind, body, None)?;
    do_create(t, kind, None, body).await
}

async fn read(t: Target) -> Result<Response> {
    let kind = kind_of(param(&t, 0))?;
    let entity = require(&t, kind, param(&t, 1)).await?;
    Ok(Json(shown(&t, entity).await?).into_response())
}

async fn replace(t: Target, body: Body) -> Result<Response> {
    let kind = kind_of(param(&t, 0))?;
    let key = param(&t, 1).to_owned();
    let body = object(kind, body, None)?;
    do_replace(t, kind, &key, None, body).await
}

async fn update(t: Target, body: Body) -> Result<Response> {
    let kind = kind_of(param(&t, 0))?;
    let existing = require(&t, kind, param(&t, 1)).await?;
    let body = object(kind, body, existing.name.as_deref())?;
    do_update(t, kind, existing, body).await
}

async fn remove(t: Target) -> Result<StatusCode> {
    let kind = kind_of(param(&t, 0))?;
    let target = resolve(&t, kind, param(&t, 1)).await?;
    do_delete(t, kind, target).await
}

async fn parent_of(t: &Target) -> Result<(EntityKind, StoredEntity)> {
    let (parent_kind, child) = nested(param(t, 0), param(t, 2))?;
    let parent = require(t, parent_kind, param(t, 1)).await?;
    Ok((child, parent))
}

/// A nested child must belong to the parent in the path.
fn belongs(child: &StoredEntity, parent: &StoredEntity) -> bool {
    match parent.kind {
        EntityKind::Service => child.service_id == Some(parent.id),
        EntityKind::Route => child.route_id == Some(parent.id),
        EntityKind::Consumer => child.consumer_id == Some(parent.id),
        EntityKind::Certificate => child.certificate_id == Some(parent.id),
        EntityKind::Upstream => child.upstream_id == Some(parent.id),
        _ => false,
    }
}

async fn list_nested(t: Target, RawQuery(raw): RawQuery) -> Result<Response> {
    // `GET /routes/{route}/service` and `GET /acls/{acl}/consumer` share this path shape.
    if param(&t, 0) == "routes" && param(&t, 2) == "service" {
        return route_service(t).await;
    }
    if matches!(param(&t, 0), "acls" | "key-auths" | "jwts" | "basic-auths") && param(&t, 2) == "consumer" {
        return acl_consumer(t).await;
    }
    if param(&t, 0) == "upstreams" && param(&t, 2) == "health" {
        let upstream = require(&t, EntityKind::Upstream, param(&t, 1)).await?;
        return crate::upstream_health::health(t, upstream, raw).await;
    }
    let (child, parent) = parent_of(&t).await?;
    let path = format!("/{}/{}/{}", param(&t, 0), param(&t, 1), child.nested_collection());
    do_list(t, child, Some(parent), raw, &path).await
}

async fn create_nested(t: Target, body: Body) -> Result<Response> {
    let (child, parent) = parent_of(&t).await?;
    let body = object(child, body, None)?;
    do_create(t, child, Some(parent), body).await
}

async fn read_nested(t: Target, RawQuery(raw): RawQuery) -> Result<Response> {
    let (child, parent) = parent_of(&t).await?;
    // Kong's `/upstreams/{u}/targets/all`: every target, those of weight 0 too (which the plain list shows as well).
    if child == EntityKind::Target && param(&t, 3) == "all" {
        let path = format!("/upstreams/{}/targets/all", param(&t, 1));
        return do_list(t, child, Some(parent), raw, &path).await;
    }
    let entity = resolve_child(&t, child, &parent, param(&t, 3)).await?.ok_or_else(not_found)?;
    if !belongs(&entity, &parent) {
        return Err(not_found());
    }
    Ok(Json(shown(&t, entity).await?).into_response())
}

async fn replace_nested(t: Target, body: Body) -> Result<Response> {
    let (child, parent) = parent_of(&t).await?;
    let key = param(&t, 3).to_owned();
    let body = object(child, body, None)?;
    do_replace(t, child, &key, Some(parent), body).await
}

async fn update_nested(t: Target, body: Body) -> Result<Response> {
    let (child, parent) = parent_of(&t).await?;
    let existing = resolve_child(&t, child, &parent, param(&t, 3)).await?.ok_or_else(not_found)?;
    if !belongs(&existing, &parent) {
        return Err(not_found());
    }
    let body = object(child, body, existing.name.as_deref())?;
    do_update(t, child, existing, body).await
}

async fn remove_nested(t: Target) -> Result<StatusCode> {
    let (child, parent) = parent_of(&t).await?;
    let target = resolve_child(&t, child, &parent, param(&t, 3)).await?.filter(|e| belongs(e, &parent));
    // Kong's acls API answers 404 for a group or id the consumer does not have, where other deletes answer 204.
    if target.is_none() && child == EntityKind::Acl {
        return Err(not_found());
    }
    do_delete(t, child, target).await
}

async fn route_service(t: Target) -> Result<Response> {
    let route = require(&t, EntityKind::Route, param(&t, 1)).await?;
    let service_id = route.service_id.ok_or_else(not_found)?;
    let service =
        t.control.services.store.get_entity(t.cp, EntityKind::Service, service_id).await?.ok_or_else(not_found)?;
    Ok(Json(output(&t, service)).into_response())
}

/// `GET /acls/{acl}/consumer`, and `/consumer` under a credential (`/key-auths/{id or key}`, `/jwts/{…}`,
/// `/basic-auths/{id or username}`).
async fn acl_consumer(t: Target) -> Result<Response> {
    let acl = require(&t, kind_of(param(&t, 0))?, param(&t, 1)).await?;
    let consumer_id = acl.consumer_id.ok_or_else(not_found)?;
    let consumer =
        t.control.services.store.get_entity(t.cp, EntityKind::Consumer, consumer_id).await?.ok_or_else(not_found)?;
    Ok(Json(output(&t, consumer)).into_response())
}

async fn schema(t: Target) -> Result<Response> {
    let name = param(&t, 0);
    match EntityKind::from_collection(name) {
        Some(kind) => Ok(Json(kind.schema_document()).into_response()),
        None => Err(KongError::dao(StatusCode::NOT_FOUND, 6, "not found", format!("No entity named '{name}'"), None)),
    }
}

async fn plugin_schema(t: Target) -> Result<Response> {
    let name = param(&t, 0);
    plugin_schema_document(name)
        .map(|d| Json(d).into_response())
        .ok_or_else(|| KongError::dao(StatusCode::NOT_FOUND, 6, "not found", format!("No plugin named '{name}'"), None))
}

async fn validate(t: Target, body: Body) -> Result<Response> {
    let name = param(&t, 0);
    let kind = EntityKind::from_collection(name).ok_or_else(|| {
        KongError::dao(StatusCode::NOT_FOUND, 6, "not found", format!("No entity named '{name}'"), None)
    })?;
    validate_entity(kind, &object(kind, body, None)?).map_err(violations)?;
    Ok(Json(json!({"message": "schema validation successful"})).into_response())
}

async fn validate_plugin(t: Target, body: Body) -> Result<Response> {
    if param(&t, 0) != "validate" {
        return Err(ApiError::MethodNotAllowed.into());
    }
    validate_entity(EntityKind::Plugin, &object(EntityKind::Plugin, body, None)?).map_err(violations)?;
    Ok(Json(json!({"message": "schema validation successful"})).into_response())
}
