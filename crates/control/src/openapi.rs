//! The OpenAPI 3.1 documents of the Kong Admin API (`/openapi.json` on the admin listener) and of the `/v2` API
//! (`/v2/openapi.json`). The entity API is one dispatcher over entity kinds, so its paths are generated from the
//! tables it dispatches with ([`EntityKind::ALL`], [`NESTINGS`], each kind's endpoint key) and its schemas from
//! each kind's Kong schema fields, the ones `GET /schemas/{entity}` shows.

use serde_json::{Map, Value, json};

use gatehouse_model::gateway::EntityKind;
use gatehouse_model::gateway::plugins::{PLUGINS, config_fields};
use gatehouse_model::gateway::schema::{Field, Kind};
use gatehouse_runtime::openapi::{self, PathParam};

use crate::entities::NESTINGS;

/// Kong's error body: a `message`, and for its DAO errors a `code`, `name` and the `fields` at fault.
fn kong_error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string"},
            "name": {"type": "string"},
            "code": {"type": "integer"},
            "fields": {"description": "The fields at fault, nested as the entity nests them."},
            "status": {"type": "integer"}
        }
    })
}

fn kong_error(description: &str) -> Value {
    json!({"description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KongError"}}}})
}

fn json_body(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A schema name for a kind: `Service`, `CaCertificate`, `KeyAuth`.
fn schema_name(kind: EntityKind) -> String {
    kind.singular()
        .split('_')
        .filter(|w| *w != "credential")
        .map(|w| if w == "keyauth" { "KeyAuth".to_owned() } else { capitalise(w) })
        .collect()
}

fn capitalise(w: &str) -> String {
    let mut chars = w.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// A Kong schema field as JSON Schema. Every field may be `null` in what the API returns (Kong shows unset fields
/// as null), so types are nullable; the values a field is limited to are given as `enum`.
fn field_schema(field: &Field) -> Value {
    let mut schema = match &field.kind {
        Kind::String => json!({"type": ["string", "null"]}),
        Kind::Integer => json!({"type": ["integer", "null"]}),
        Kind::Number => json!({"type": ["number", "null"]}),
        Kind::Boolean => json!({"type": ["boolean", "null"]}),
        Kind::Array(item) | Kind::Set(item) => json!({"type": ["array", "null"], "items": field_schema(item)}),
        Kind::Map { values, .. } => json!({"type": ["object", "null"], "additionalProperties": field_schema(values)}),
        Kind::Record(fields) => {
            let properties: Map<String, Value> =
                fields.iter().filter(|f| !f.input_only).map(|f| (f.name.to_owned(), field_schema(f))).collect();
            json!({"type": ["object", "null"], "properties": properties})
        }
        Kind::Foreign(collection) => json!({
            "type": ["object", "null"],
            "description": format!("A reference to one of the `{collection}`."),
            "properties": {"id": {"type": "string"}}
        }),
    };
    if let Some(choices) = &field.one_of {
        let mut values: Vec<Value> = choices.iter().map(|c| json!(c)).collect();
        values.push(Value::Null);
        schema["enum"] = Value::Array(values);
    }
    let description = match (field.description, field.gatehouse_only) {
        (Some(d), true) => Some(format!("Gatehouse addition. {d}")),
        (None, true) => Some("Gatehouse addition.".to_owned()),
        (d, false) => d.map(str::to_owned),
    };
    if let (Some(description), Some(obj)) = (description, schema.as_object_mut()) {
        obj.insert("description".into(), json!(description));
    }
    schema
}

/// An entity as the API shows it (and takes it): its Kong schema's fields.
fn entity_schema(kind: EntityKind) -> Value {
    let fields = kind.fields();
    let properties: Map<String, Value> =
        fields.iter().filter(|f| !f.input_only).map(|f| (f.name.to_owned(), field_schema(f))).collect();
    json!({
        "type": "object",
        "description": format!(
            "A Kong `{}` entity. `GET /schemas/{}` lists its fields with their defaults and checks.",
            kind.singular(),
            kind.collection()
        ),
        "properties": properties
    })
}

fn list_schema(kind: EntityKind) -> Value {
    json!({
        "type": "object",
        "required": ["data", "next"],
        "properties": {
            "data": {"type": "array", "items": schema_ref(&schema_name(kind))},
            "next": {"type": ["string", "null"], "description": "The next page's path, or null on the last page."},
            "offset": {"type": "string", "description": "The `offset` that gives the next page."}
        }
    })
}

fn list_params(kind: EntityKind) -> Vec<Value> {
    let mut params = vec![
        json!({"name": "size", "in": "query", "description": "Items per page (default 100).",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}),
        json!({"name": "offset", "in": "query", "description": "The `offset` the previous page gave.",
            "schema": {"type": "string", "minLength": 1}}),
        json!({"name": "tags", "in": "query", "schema": {"type": "string"},
            "description": "Tags the entities have: `a,b` every one, `a/b` any one."}),
        json!({"name": "filter[name][eq]", "in": "query", "schema": {"type": "string"},
            "description": "The endpoint key (`name`, `username`, …) equals the value (Konnect)."}),
        json!({"name": "filter[name][contains]", "in": "query", "schema": {"type": "string"},
            "description": "The endpoint key contains the value (Konnect)."}),
    ];
    if kind == EntityKind::Consumer {
        params.push(json!({"name": "custom_id", "in": "query", "schema": {"type": "string"},
            "description": "The consumer with this `custom_id`."}));
    }
    params
}

/// The name of an entity's path parameter: `serviceIdOrName`, `caCertificateId`, `keyAuthIdOrKey`.
fn key_param(kind: EntityKind) -> (String, String) {
    let mut base = schema_name(kind);
    if let Some(first) = base.get(..1) {
        base = first.to_ascii_lowercase() + &base[1..];
    }
    let key = kind.endpoint_key();
    let name = match key {
        "id" => format!("{base}Id"),
        "instance_name" => format!("{base}IdOrInstanceName"),
        other => format!("{base}IdOr{}", capitalise(other)),
    };
    let description = match key {
        "id" => format!("The {}'s id.", kind.singular()),
        other => format!("The {}'s id or `{other}`.", kind.singular()),
    };
    (name, description)
}

fn path_param(kind: EntityKind) -> Value {
    let (name, description) = key_param(kind);
    json!({"name": name, "in": "path", "required": true, "description": description,
        "schema": {"type": "string", "minLength": 1}})
}

fn operation(summary: String, tag: &str, params: Vec<Value>, responses: Value) -> Value {
    json!({"summary": summary, "tags": [tag], "parameters": params, "responses": responses})
}

fn with_body(mut op: Value, kind: EntityKind) -> Value {
    op["requestBody"] = json!({
        "required": true,
        "description": "The entity's fields, as JSON, a form (`application/x-www-form-urlencoded`) or \
            `multipart/form-data`.",
        "content": {"application/json": {"schema": schema_ref(&schema_name(kind))}}
    });
    op
}

/// The entity API's paths under `prefix` (`""` on the admin listener), with the parameters `prefix` has.
fn entity_paths(prefix: &str, prefix_params: &[Value]) -> Map<String, Value> {
    let mut paths = Map::new();
    let entity = |kind: EntityKind| schema_ref(&schema_name(kind));
    for kind in EntityKind::ALL {
        let tag = kind.collection();
        let (singular, collection) = (kind.singular(), kind.collection());
        let own = path_param(kind);
        let params = |extra: &[&Value]| -> Vec<Value> {
            prefix_params.iter().cloned().chain(extra.iter().map(|v| (*v).clone())).collect()
        };
        paths.insert(
            format!("{prefix}/{collection}"),
            json!({
                "get": operation(format!("List {collection}"), tag, [params(&[]), list_params(kind)].concat(),
                    json!({"200": json_body("A page.", list_schema(kind))})),
                "post": with_body(operation(format!("Create a {singular}"), tag, params(&[]),
                    json!({"201": json_body("The created entity.", entity(kind)),
                        "409": kong_error("An entity with this id or endpoint key exists.")})), kind),
            }),
        );
        paths.insert(format!("{prefix}/{collection}/{{{}}}", key_param(kind).0), item_ops(kind, tag, params(&[&own])));
        // Kong's reverse lookups: a route's service, an acl's or key's consumer.
        let back = match kind {
            EntityKind::Route => Some(EntityKind::Service),
            EntityKind::Acl | EntityKind::KeyAuth | EntityKind::Jwt | EntityKind::BasicAuth => {
                Some(EntityKind::Consumer)
            }
            _ => None,
        };
        if let Some(owner) = back {
            paths.insert(
                format!("{prefix}/{collection}/{{{}}}/{}", key_param(kind).0, owner.singular()),
                json!({"get": operation(format!("Get the {} of a {singular}", owner.singular()), tag, params(&[&own]),
                    json!({"200": json_body("The entity.", entity(owner))}))}),
            );
        }
    }
    for (parent, child) in NESTINGS.iter().copied() {
        let tag = child.collection();
        let (pname, _) = key_param(parent);
        let parent_param = path_param(parent);
        let base = format!("{prefix}/{}/{{{pname}}}/{}", parent.collection(), child.nested_collection());
        let params: Vec<Value> = prefix_params.iter().cloned().chain([parent_param.clone()]).collect();
        let (singular, of) = (child.singular(), parent.singular());
        paths.insert(
            base.clone(),
            json!({
                "get": operation(format!("List the {} of a {of}", child.collection()), tag,
                    [params.clone(), list_params(child)].concat(),
                    json!({"200": json_body("A page.", list_schema(child))})),
                "post": with_body(operation(format!("Create a {singular} of a {of}"), tag, params.clone(),
                    json!({"201": json_body("The created entity.", entity(child)),
                        "409": kong_error("An entity with this id or endpoint key exists.")})), child),
            }),
        );
        let item_params: Vec<Value> = params.iter().cloned().chain([path_param(child)]).collect();
        paths.insert(format!("{base}/{{{}}}", key_param(child).0), item_ops(child, tag, item_params.clone()));
        if (parent, child) == (EntityKind::Upstream, EntityKind::Target) {
            paths.insert(
                format!("{base}/all"),
                json!({"get": operation("List every target of an upstream, weight 0 too".into(), tag,
                    [params.clone(), list_params(child)].concat(),
                    json!({"200": json_body("A page.", list_schema(child))}))}),
            );
            for action in ["healthy", "unhealthy"] {
                paths.insert(
                    format!("{base}/{{{}}}/{action}", key_param(child).0),
                    json!({"put": operation(format!("Set a target {action} in this node's balancer (passive health)"),
                        tag, item_params.clone(), json!({"204": {"description": "Set."}}))}),
                );
                let address = json!({"name": "address", "in": "path", "required": true,
                    "description": "One of the target's addresses, `ip:port`, as `GET …/health` lists them.",
                    "schema": {"type": "string"}});
                paths.insert(
                    format!("{base}/{{{}}}/{{address}}/{action}", key_param(child).0),
                    json!({"put": operation(
                        format!("Set one address of a target {action} in this node's balancer (passive health)"),
                        tag, item_params.iter().cloned().chain([address]).collect(),
                        json!({"204": {"description": "Set."},
                            "400": kong_error("The address is not one of the target's.")}))}),
                );
            }
            paths.insert(
                format!("{prefix}/upstreams/{{{pname}}}/health"),
                json!({"get": operation("The health of an upstream's targets on this node".into(), tag,
                    [params.clone(), list_params(child)].concat(),
                    json!({"200": json_body("Each target's health, and the balancer's.",
                        json!({"type": "object", "properties": {"data": {"type": "array"}}}))}))}),
            );
        }
    }
    let kinds: Vec<&str> = EntityKind::ALL.iter().map(|k| k.collection()).collect();
    let entity_param = json!({"name": "entity", "in": "path", "required": true, "description": "A collection.",
        "schema": {"type": "string", "enum": kinds}});
    let plugin_param = json!({"name": "pluginName", "in": "path", "required": true, "description": "A plugin's name.",
        "schema": {"type": "string", "minLength": 1}});
    let with = |p: &Value| -> Vec<Value> { prefix_params.iter().cloned().chain([p.clone()]).collect() };
    let valid = json_body(
        "The entity is valid.",
        json!({"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}),
    );
    let document = json_body("Kong's schema document.", json!({"type": "object"}));
    let any_entity = json!({"type": "object"});
    let body = |op: Value| -> Value {
        let mut op = op;
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": any_entity}}});
        op
    };
    paths.insert(
        format!("{prefix}/schemas/{{entity}}"),
        json!({"get": operation("Get an entity's schema".into(), "schemas", with(&entity_param),
            json!({"200": document.clone()}))}),
    );
    paths.insert(
        format!("{prefix}/schemas/{{entity}}/validate"),
        json!({"post": body(operation("Validate an entity without storing it".into(), "schemas", with(&entity_param),
            json!({"200": valid.clone()})))}),
    );
    paths.insert(
        format!("{prefix}/schemas/plugins/{{pluginName}}"),
        json!({"get": operation("Get a plugin's schema".into(), "schemas", with(&plugin_param),
            json!({"200": document}))}),
    );
    paths.insert(
        format!("{prefix}/schemas/plugins/validate"),
        json!({"post": body(operation("Validate a plugin without storing it".into(), "schemas",
            prefix_params.to_vec(), json!({"200": valid})))}),
    );
    paths
}

fn item_ops(kind: EntityKind, tag: &str, params: Vec<Value>) -> Value {
    let singular = kind.singular();
    let entity = schema_ref(&schema_name(kind));
    json!({
        "get": operation(format!("Get a {singular}"), tag, params.clone(),
            json!({"200": json_body("The entity.", entity.clone())})),
        "put": with_body(operation(format!("Create or replace a {singular}"), tag, params.clone(),
            json!({"200": json_body("The entity as stored.", entity.clone()),
                "409": kong_error("Another entity has this endpoint key.")})), kind),
        "patch": with_body(operation(format!("Update a {singular}"), tag, params.clone(),
            json!({"200": json_body("The updated entity.", entity),
                "409": kong_error("Another entity has this endpoint key.")})), kind),
        "delete": operation(format!("Delete a {singular}"), tag, params,
            json!({"204": {"description": "Deleted, or there was no such entity."}})),
    })
}

/// Kong's error responses on every entity operation (400, 404 and the rest as `default`) and the entity schemas.
fn add_entity_components(doc: &mut Value, paths: Map<String, Value>) {
    let mut paths = Value::Object(paths);
    for item in paths.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
        for method in openapi::METHODS {
            if let Some(responses) = item.get_mut(method).and_then(|op| op.get_mut("responses")) {
                let responses = responses.as_object_mut().expect("built as an object");
                responses.entry("400").or_insert_with(|| kong_error("Invalid input (Kong's schema violation)."));
                responses.entry("404").or_insert_with(|| kong_error("Not found."));
                responses.entry("default").or_insert_with(|| kong_error("Any other error."));
            }
        }
    }
    if let (Some(target), Value::Object(new)) = (doc["paths"].as_object_mut(), paths) {
        target.extend(new);
    }
    let schemas = doc["components"]["schemas"].as_object_mut();
    let mut added = Map::new();
    added.insert("KongError".into(), kong_error_schema());
    for kind in EntityKind::ALL {
        added.insert(schema_name(kind), entity_schema(kind));
    }
    // A plugin's `config` depends on its `name`: each plugin's is described on its own, as `GET
    // /schemas/plugins/{name}` shows it.
    for plugin in PLUGINS {
        if let Some(fields) = config_fields(plugin.name) {
            let mut schema = field_schema(&Field::new("config", Kind::Record(fields)));
            schema["description"] = json!(format!("The `config` of a `{}` plugin.", plugin.name));
            added.insert(format!("PluginConfig.{}", plugin.name), schema);
        }
    }
    match schemas {
        Some(schemas) => schemas.extend(added),
        None => doc["components"]["schemas"] = Value::Object(added),
    }
}

/// The Admin API document, as the admin listener serves it at `/openapi.json`.
pub fn admin_openapi() -> Value {
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gatehouse Kong Admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Kong Gateway {}'s Admin API for the control plane this node serves, on the admin listener (loopback \
                 only, no authentication). Gatehouse's additions are fields of the entities (such as the `proxy-cache` \
                 plugin's `negative_ttl`), listed by `GET /schemas/…`.",
                crate::admin::KONG_VERSION
            )
        },
        "paths": {
            "/": {"get": {"summary": "Node information: the Kong version decK reads, the plugins available",
                "tags": ["information"], "responses": {"200": json_body("Information.", json!({"type": "object",
                    "required": ["version"], "properties": {"version": {"type": "string"},
                    "tagline": {"type": "string"}, "plugins": {"type": "object"}}}))}}},
            "/status": {"get": {"summary": "Whether the database answers, and the served configuration's hash",
                "tags": ["information"], "responses": {"200": json_body("Status.", json!({"type": "object",
                    "required": ["database", "configuration_hash"], "properties": {
                        "database": {"type": "object", "properties": {"reachable": {"type": "boolean"}}},
                        "configuration_hash": {"type": "string"}}}))}}},
            "/clustering/data-planes": {"get": {"summary": "The data planes of the control plane this node serves",
                "tags": ["clustering"], "responses": {"200": json_body("Data planes, with the hash each serves \
                    (`sync_status` `normal` when it is the control plane's).", json!({"type": "object",
                    "required": ["data"], "properties": {"data": {"type": "array", "items": {"type": "object",
                    "properties": {"id": {"type": "string"}, "hostname": {"type": "string"},
                    "version": {"type": "string"}, "config_hash": {"type": "string"},
                    "last_seen": {"type": "integer"}, "sync_status": {"type": "string"}}}},
                    "next": {"type": ["string", "null"]}}}))}}}
        },
        "components": {"schemas": {}}
    });
    add_entity_components(&mut doc, entity_paths("", &[]));
    doc
}

/// The `/v2` document: Konnect's control planes, and each control plane's core entities (in Kong's shapes).
pub fn v2_openapi() -> Value {
    let mut doc = crate::control_planes::control_planes_openapi();
    doc["info"] = json!({
        "title": "Gatehouse control planes API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Konnect's `/v2/control-planes` API and each control plane's core entities \
            (`/v2/control-planes/{controlPlaneId}/core-entities/…`, Kong's Admin API shapes), as Gatehouse serves \
            them on the platform listener."
    });
    openapi::require_pat(&mut doc);
    openapi::add_path_params(
        &mut doc,
        &[
            PathParam::uuid("controlPlaneId", "The control plane's id."),
            PathParam::uuid("nodeId", "The data plane's node id."),
            PathParam::uuid("certificateId", "The pinned certificate's id."),
        ],
    );
    openapi::add_problem_responses(&mut doc);
    let cp = json!({"name": "controlPlaneId", "in": "path", "required": true,
        "description": "The control plane's id.", "schema": {"type": "string", "format": "uuid"}});
    let mut paths = entity_paths("/v2/control-planes/{controlPlaneId}/core-entities", &[cp]);
    for item in paths.values_mut() {
        for method in openapi::METHODS {
            if let Some(responses) = item.get_mut(method).and_then(|op| op.get_mut("responses")) {
                responses["401"] = kong_error("No valid personal access token.");
            }
        }
    }
    add_entity_components(&mut doc, paths);
    doc
}
