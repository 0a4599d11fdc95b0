//! Control planes and their gateway entities (services, routes, consumers, plugins) through `/v2`, and "test this
//! route", which sends a request through this node's proxy.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::plugins;
use gatehouse_model::gateway::schema::{self, Kind as SchemaKind};

use crate::api::Answer;
use crate::view::{Action, Cell, Detail, Field, FieldErrors, Form, Kind, Link, Row, Search, Section, Table};
use crate::{
    Console, ConsoleError, J, ListParams, Posted, Result, Signed, body_of, call, fetch, items, list, page, pager, s,
    see_other, seg,
};

const PAGE_SIZE: u64 = 20;
/// Entities listed per kind on a control plane's page (Kong's default page size).
const ENTITY_PAGE: u64 = 100;

/// The entity kinds the console lists and deletes.
const KINDS: [&str; 4] = ["services", "routes", "consumers", "plugins"];

pub(crate) fn routes() -> Router<Console> {
    let mut router = Router::new();
    // One route per kind rather than a `{kind}` segment, which would overlap `routes/{rid}/test`.
    for kind in KINDS {
        router = router.route(
            &format!("/console/control-planes/{{cp}}/{kind}/{{eid}}/delete"),
            post(move |state: State<Console>, path: Path<(String, String)>, posted: Posted| {
                delete_entity(state, kind, path, posted)
            }),
        );
    }
    router
        .route("/console/control-planes", get(planes).post(create_plane))
        .route("/console/control-planes/{cp}", get(plane))
        .route("/console/control-planes/{cp}/services/new", get(new_service).post(create_service))
        .route("/console/control-planes/{cp}/routes/new", get(new_route).post(create_route))
        .route("/console/control-planes/{cp}/consumers/new", get(new_consumer).post(create_consumer))
        .route("/console/control-planes/{cp}/plugins/new", get(new_plugin).post(create_plugin))
        .route("/console/control-planes/{cp}/routes/{rid}/test", get(test_page).post(test_route))
}

fn home() -> Link {
    Link::new("Control planes", "/console/control-planes")
}

fn base(cp: &str) -> String {
    format!("/console/control-planes/{}", seg(cp))
}

fn entities(cp: &str, kind: &str) -> String {
    format!("/v2/control-planes/{}/core-entities/{kind}", seg(cp))
}

// ---- control planes ----

fn plane_form() -> Form {
    Form::new(
        "new-control-plane",
        "Create a control plane",
        "/console/control-planes",
        "Create control plane",
        vec![Field::text("name", "Name").required(), Field::text("description", "Description")],
    )
}

async fn planes_page(console: &Console, signed: &Signed, params: &ListParams, form: Form) -> Result {
    let answer = fetch(console, signed, &format!("/v2/control-planes?{}", params.api_query(PAGE_SIZE))).await?;
    let rows = items(&answer)
        .iter()
        .map(|v| Row {
            cells: vec![
                Cell::link(s(v, "name"), base(&s(v, "id"))),
                Cell::text(s(v, "id")),
                Cell::text(s(v, "description")),
            ],
            actions: Vec::new(),
        })
        .collect();
    let total = answer.pointer("/meta/page/total").and_then(Value::as_u64).unwrap_or(0);
    let table = Table {
        id: "control-planes".into(),
        heading: "Control planes".into(),
        columns: vec!["Name".into(), "ID".into(), "Description".into()],
        rows,
        empty: "No control planes.".into(),
        search: Some(Search {
            url: "/console/control-planes".into(),
            query: params.q.clone(),
            label: "Search by name".into(),
        }),
        pager: Some(pager("/console/control-planes", &params.q, params.page(), PAGE_SIZE, total)),
    };
    Ok(page(&signed.current, "gateway", "Control planes", Vec::new(), vec![Section::Table(table), Section::Form(form)])
        .into_response())
}

async fn planes(State(console): State<Console>, signed: Signed, Query(params): Query<ListParams>) -> Result {
    planes_page(&console, &signed, &params, plane_form()).await
}

async fn create_plane(State(console): State<Console>, posted: Posted) -> Result {
    let body = body_of(&posted, &[("name", J::Str), ("description", J::Opt)]);
    match call(&console, &posted.current, posted.peer, Method::POST, "/v2/control-planes", Some(&body)).await? {
        Answer::Ok(v) => Ok(see_other(&base(&s(&v, "id")))),
        Answer::Refused(_, errors) => {
            planes_page(
                &console,
                &posted.signed(),
                &ListParams::default(),
                plane_form().with_submission(&posted.pairs, &errors),
            )
            .await
        }
    }
}

/// A name for an entity reference (`{"id": …}`) among listed entities.
fn name_of(reference: Option<&Value>, among: &[Value], key: &str) -> String {
    let Some(id) = reference.and_then(|r| r.get("id")).and_then(Value::as_str) else { return String::new() };
    among
        .iter()
        .find(|e| s(e, "id") == id)
        .map(|e| s(e, key))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.to_owned())
}

fn delete_action(cp: &str, kind: &str, v: &Value, what: &str) -> Action {
    Action::danger("Delete", format!("{}/{kind}/{}/delete", base(cp), seg(&s(v, "id"))), format!("Delete {what}?"))
}

async fn plane(State(console): State<Console>, signed: Signed, Path(cp): Path<String>) -> Result {
    let v = fetch(&console, &signed, &format!("/v2/control-planes/{}", seg(&cp))).await?;
    let listed = |kind: &'static str| {
        let (console, signed, cp) = (&console, &signed, &cp);
        async move {
            Ok::<_, ConsoleError>(items(
                &fetch(console, signed, &format!("{}?size={ENTITY_PAGE}", entities(cp, kind))).await?,
            ))
        }
    };
    let services = listed("services").await?;
    let routes = listed("routes").await?;
    let consumers = listed("consumers").await?;
    let plugins = listed("plugins").await?;
    let table = |id: &str, heading: &str, columns: &[&str], rows: Vec<Row>, empty: &str| {
        Section::Table(Table {
            id: id.into(),
            heading: heading.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows,
            empty: empty.into(),
            search: None,
            pager: None,
        })
    };
    let service_rows = services
        .iter()
        .map(|e| Row {
            cells: vec![
                Cell::text(s(e, "name")),
                Cell::text(format!("{}://{}:{}{}", s(e, "protocol"), s(e, "host"), s(e, "port"), s(e, "path"))),
                Cell::text(s(e, "enabled")),
            ],
            actions: vec![delete_action(&cp, "services", e, &format!("the service {}", s(e, "name")))],
        })
        .collect();
    let route_rows = routes
        .iter()
        .map(|e| Row {
            cells: vec![
                Cell::text(s(e, "name")),
                Cell::text(list(e, "paths")),
                Cell::text(list(e, "hosts")),
                Cell::text(name_of(e.get("service"), &services, "name")),
            ],
            actions: vec![
                Action::link("Test", format!("{}/routes/{}/test", base(&cp), seg(&s(e, "id")))),
                delete_action(&cp, "routes", e, &format!("the route {}", s(e, "name"))),
            ],
        })
        .collect();
    let consumer_rows = consumers
        .iter()
        .map(|e| Row {
            cells: vec![Cell::text(s(e, "username")), Cell::text(s(e, "custom_id"))],
            actions: vec![delete_action(&cp, "consumers", e, "this consumer")],
        })
        .collect();
    let plugin_rows = plugins
        .iter()
        .map(|e| {
            let applies =
                [("service", &services, "name"), ("route", &routes, "name"), ("consumer", &consumers, "username")]
                    .iter()
                    .filter_map(|(k, among, key)| {
                        let n = name_of(e.get(*k), among, key);
                        (!n.is_empty()).then(|| format!("{k} {n}"))
                    })
                    .collect::<Vec<_>>();
            Row {
                cells: vec![
                    Cell::text(s(e, "name")),
                    Cell::text(if applies.is_empty() { "global".to_owned() } else { applies.join(", ") }),
                    Cell::text(s(e, "enabled")),
                ],
                actions: vec![delete_action(&cp, "plugins", e, &format!("the plugin {}", s(e, "name")))],
            }
        })
        .collect();
    let sections = vec![
        Section::Details {
            heading: "Control plane".into(),
            rows: vec![
                Detail::text("ID", s(&v, "id")),
                Detail::text("Description", s(&v, "description")),
                Detail::text("Proxy (this node)", console.proxy_url.clone()),
            ],
        },
        Section::Actions(vec![
            Action::link("New service", format!("{}/services/new", base(&cp))),
            Action::link("New route", format!("{}/routes/new", base(&cp))),
            Action::link("New consumer", format!("{}/consumers/new", base(&cp))),
            Action::link(
                "New oauth2-introspection plugin",
                format!("{}/plugins/new?name=oauth2-introspection", base(&cp)),
            ),
            Action::link("New plugin", format!("{}/plugins/new", base(&cp))),
        ]),
        table("services", "Services", &["Name", "Upstream URL", "Enabled"], service_rows, "No services."),
        table("routes", "Routes", &["Name", "Paths", "Hosts", "Service"], route_rows, "No routes."),
        table("consumers", "Consumers", &["Username", "Custom id"], consumer_rows, "No consumers."),
        table("plugins", "Plugins", &["Name", "Applies to", "Enabled"], plugin_rows, "No plugins."),
    ];
    Ok(page(&signed.current, "gateway", s(&v, "name"), vec![home()], sections).into_response())
}

async fn plane_name(console: &Console, signed: &Signed, cp: &str) -> Result<String> {
    Ok(s(&fetch(console, signed, &format!("/v2/control-planes/{}", seg(cp))).await?, "name"))
}

/// A create page: one form under the control plane's crumbs.
async fn form_page(
    console: &Console,
    signed: &Signed,
    cp: &str,
    title: &str,
    mut sections: Vec<Section>,
    form: Form,
) -> Result {
    let crumbs = vec![home(), Link::new(plane_name(console, signed, cp).await?, base(cp))];
    sections.push(Section::Form(form));
    Ok(page(&signed.current, "gateway", title, crumbs, sections).into_response())
}

/// POSTs a JSON body to a collection; on success back to the control plane, else the form again with messages.
async fn create(
    console: &Console,
    posted: &Posted,
    cp: &str,
    kind: &str,
    body: &Value,
    title: &str,
    form: Form,
) -> Result {
    match call(console, &posted.current, posted.peer, Method::POST, &entities(cp, kind), Some(body)).await? {
        Answer::Ok(..) => Ok(see_other(&base(cp))),
        Answer::Refused(_, errors) => {
            form_page(console, &posted.signed(), cp, title, Vec::new(), form.with_submission(&posted.pairs, &errors))
                .await
        }
    }
}

/// Entities of a kind as select options (id → name), with a first "none" choice.
async fn options(console: &Console, signed: &Signed, cp: &str, kind: &str, key: &str) -> Result<Vec<(String, String)>> {
    let listed = items(&fetch(console, signed, &format!("{}?size={ENTITY_PAGE}", entities(cp, kind))).await?);
    let mut out = vec![(String::new(), "(none)".to_owned())];
    out.extend(listed.iter().map(|e| (s(e, "id"), format!("{} ({})", s(e, key), s(e, "id")))));
    Ok(out)
}

/// `{"id": …}` for a chosen reference; nothing when none was chosen.
fn reference(posted: &Posted, field: &str, body: &mut Value) {
    let id = posted.get(field).trim();
    if !id.is_empty() {
        body[field] = json!({ "id": id });
    }
}

// ---- services ----

fn service_form(cp: &str) -> Form {
    Form::new(
        "new-service",
        "Create a service",
        format!("{}/services/new", base(cp)),
        "Create service",
        vec![
            Field::text("name", "Name"),
            Field::new("url", "Upstream URL", Kind::Url)
                .required()
                .help("For example http://httpbin.konghq.com/anything."),
        ],
    )
}

async fn new_service(State(console): State<Console>, signed: Signed, Path(cp): Path<String>) -> Result {
    form_page(&console, &signed, &cp, "New service", Vec::new(), service_form(&cp)).await
}

async fn create_service(State(console): State<Console>, Path(cp): Path<String>, posted: Posted) -> Result {
    let body = body_of(&posted, &[("name", J::Opt), ("url", J::Str)]);
    create(&console, &posted, &cp, "services", &body, "New service", service_form(&cp)).await
}

// ---- routes ----

fn route_form(cp: &str, services: Vec<(String, String)>) -> Form {
    Form::new(
        "new-route",
        "Create a route",
        format!("{}/routes/new", base(cp)),
        "Create route",
        vec![
            Field::text("name", "Name"),
            Field::new("paths", "Paths", Kind::Textarea)
                .help("One per line, e.g. /anything; a path starting ~ is a regex."),
            Field::new("hosts", "Hosts", Kind::Textarea).help("One per line; empty matches any host."),
            Field::text("service", "Service").options(services),
            Field::boolean("strip_path", "Strip path", true).help("Remove the matched path prefix before proxying."),
        ],
    )
}

async fn new_route(State(console): State<Console>, signed: Signed, Path(cp): Path<String>) -> Result {
    let services = options(&console, &signed, &cp, "services", "name").await?;
    form_page(&console, &signed, &cp, "New route", Vec::new(), route_form(&cp, services)).await
}

async fn create_route(State(console): State<Console>, Path(cp): Path<String>, posted: Posted) -> Result {
    let mut body =
        body_of(&posted, &[("name", J::Opt), ("paths", J::Lines), ("hosts", J::Lines), ("strip_path", J::Bool)]);
    reference(&posted, "service", &mut body);
    let services = options(&console, &posted.signed(), &cp, "services", "name").await?;
    create(&console, &posted, &cp, "routes", &body, "New route", route_form(&cp, services)).await
}

// ---- consumers ----

fn consumer_form(cp: &str) -> Form {
    Form::new(
        "new-consumer",
        "Create a consumer",
        format!("{}/consumers/new", base(cp)),
        "Create consumer",
        vec![
            Field::text("username", "Username"),
            Field::text("custom_id", "Custom id")
                .help("oauth2-introspection with consumer_by = client_id matches a client's id here."),
        ],
    )
}

async fn new_consumer(State(console): State<Console>, signed: Signed, Path(cp): Path<String>) -> Result {
    form_page(&console, &signed, &cp, "New consumer", Vec::new(), consumer_form(&cp)).await
}

async fn create_consumer(State(console): State<Console>, Path(cp): Path<String>, posted: Posted) -> Result {
    let body = body_of(&posted, &[("username", J::Opt), ("custom_id", J::Opt)]);
    create(&console, &posted, &cp, "consumers", &body, "New consumer", consumer_form(&cp)).await
}

// ---- plugins ----

#[derive(Debug, Default, serde::Deserialize)]
struct PluginQuery {
    #[serde(default)]
    name: String,
}

/// Whether a schema field is edited as one input (otherwise as JSON).
fn simple(kind: &SchemaKind) -> bool {
    match kind {
        SchemaKind::String | SchemaKind::Integer | SchemaKind::Number | SchemaKind::Boolean => true,
        SchemaKind::Set(of) | SchemaKind::Array(of) => {
            matches!(of.kind, SchemaKind::String | SchemaKind::Integer | SchemaKind::Number)
        }
        SchemaKind::Map { keys, values } => {
            matches!((&keys.kind, &values.kind), (SchemaKind::String, SchemaKind::String))
        }
        _ => false,
    }
}

/// A form input for one config field, with the schema's description as help and its default filled in.
fn config_input(f: &schema::Field) -> Field {
    let name = format!("config.{}", f.name);
    let label = f.name.replace('_', " ");
    let mut help = f.description.unwrap_or("").to_owned();
    let default = f.default.as_ref();
    let mut field = match &f.kind {
        SchemaKind::Boolean => Field::boolean(&name, &label, default.and_then(Value::as_bool).unwrap_or(false)),
        SchemaKind::String if f.one_of.is_some() => {
            let choices = f.one_of.clone().unwrap_or_default();
            let mut options: Vec<(String, String)> =
                choices.iter().map(|c| ((*c).to_owned(), (*c).to_owned())).collect();
            if default.is_none() {
                options.insert(0, (String::new(), "(not set)".into()));
            }
            Field::text(&name, &label).options(options).value(default.and_then(Value::as_str).unwrap_or(""))
        }
        SchemaKind::String => {
            Field::new(name.as_str(), label.as_str(), if f.encrypted { Kind::Password } else { Kind::Text })
                .value(default.and_then(Value::as_str).unwrap_or(""))
        }
        SchemaKind::Integer | SchemaKind::Number => Field::new(name.as_str(), label.as_str(), Kind::Number)
            .value(default.map(Value::to_string).unwrap_or_default()),
        SchemaKind::Set(_) | SchemaKind::Array(_) => {
            help.push_str(" One per line.");
            let lines = default.and_then(Value::as_array).map(|a| {
                a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join("\n")
            });
            Field::new(name.as_str(), label.as_str(), Kind::Textarea).value(lines.unwrap_or_default())
        }
        SchemaKind::Map { .. } => {
            help.push_str(" One \"Name: value\" per line.");
            Field::new(name.as_str(), label.as_str(), Kind::Textarea)
        }
        _ => {
            help.push_str(" As JSON.");
            Field::new(name.as_str(), label.as_str(), Kind::Textarea)
                .value(default.map(Value::to_string).unwrap_or_default())
        }
    };
    field.help = help.trim().to_owned();
    field.required = f.required && f.default.is_none();
    field
}

/// The config object from the inputs of [`config_input`]; inputs that cannot be read are reported per field.
fn config_value(fields: &[schema::Field], posted: &Posted, errors: &mut FieldErrors) -> Map<String, Value> {
    let mut config = Map::new();
    for f in fields.iter().filter(|f| !f.unsupported && !f.auto) {
        let key = format!("config.{}", f.name);
        let raw = posted.get(&key).trim();
        if raw.is_empty() {
            continue;
        }
        let value = match &f.kind {
            SchemaKind::Boolean => Value::Bool(raw == "true"),
            SchemaKind::String => Value::from(raw),
            SchemaKind::Integer => raw.parse::<i64>().map_or_else(|_| Value::from(raw), Value::from),
            SchemaKind::Number => raw
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                .unwrap_or_else(|| Value::from(raw)),
            SchemaKind::Set(of) | SchemaKind::Array(of) => Value::Array(
                raw.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| match of.kind {
                        SchemaKind::String => Value::from(l),
                        _ => serde_json::from_str(l).unwrap_or_else(|_| Value::from(l)),
                    })
                    .collect(),
            ),
            SchemaKind::Map { .. } => {
                let mut map = Map::new();
                for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    match line.split_once(':') {
                        Some((k, v)) => {
                            map.insert(k.trim().to_owned(), Value::from(v.trim()));
                        }
                        None => errors.fields.push((key.clone(), format!("[{line}] is not \"Name: value\""))),
                    }
                }
                Value::Object(map)
            }
            _ => match serde_json::from_str(raw) {
                Ok(v) => v,
                Err(e) => {
                    errors.fields.push((key.clone(), format!("not valid JSON: {e}")));
                    continue;
                }
            },
        };
        config.insert(f.name.to_owned(), value);
    }
    config
}

/// The plugin's schema fields when every one can be a form input; `None` means "edit the config as JSON".
fn form_fields(name: &str) -> Option<Vec<schema::Field>> {
    let fields: Vec<schema::Field> =
        plugins::config_fields(name)?.into_iter().filter(|f| !f.unsupported && !f.auto && !f.input_only).collect();
    fields.iter().all(|f| simple(&f.kind)).then_some(fields)
}

async fn plugin_form(console: &Console, signed: &Signed, cp: &str, name: &str) -> Result<Form> {
    let scope = |label: &str, kind: &str| (label.to_owned(), kind.to_owned());
    let mut fields = Vec::new();
    let action = format!("{}/plugins/new?name={}", base(cp), crate::q(name));
    if name.is_empty() {
        let names = plugins::PLUGINS.iter().map(|p| (p.name.to_owned(), p.name.to_owned())).collect();
        fields.push(Field::text("name", "Plugin").options(names).required());
        fields.push(
            Field::new("config", "Config (JSON)", Kind::Textarea)
                .value("{}")
                .help("The plugin's config object; the plugin's schema checks it."),
        );
    } else {
        fields.push(Field::text("name", "Plugin").options(vec![(name.to_owned(), name.to_owned())]).value(name));
        match form_fields(name) {
            Some(schema_fields) => fields.extend(schema_fields.iter().map(config_input)),
            None => fields.push(Field::new("config", "Config (JSON)", Kind::Textarea).value("{}")),
        }
    }
    if name == plugins::oauth2_introspection::NAME {
        fields.push(Field::text("basic_client_id", "Or: client ID for authorization value").help(
            "With the client secret below and authorization value left empty, the console sets it to Basic base64(client_id:client_secret), as the tutorial does by hand.",
        ));
        fields.push(Field::new("basic_client_secret", "Client secret for authorization value", Kind::Password));
    }
    for (label, kind) in [scope("Service", "service"), scope("Route", "route"), scope("Consumer", "consumer")] {
        let key = if kind == "consumer" { "username" } else { "name" };
        let opts = options(console, signed, cp, &format!("{kind}s"), key).await?;
        fields.push(
            Field::text(&kind, &label).options(opts).help("Leave (none) for every request of the control plane."),
        );
    }
    fields.push(Field::boolean("enabled", "Enabled", true));
    let heading = if name.is_empty() { "Add a plugin".to_owned() } else { format!("Add {name}") };
    Ok(Form::new("new-plugin", &heading, action, "Add plugin", fields))
}

async fn plugin_help(console: &Console, signed: &Signed, name: &str) -> Result<Vec<Section>> {
    if name != plugins::oauth2_introspection::NAME {
        return Ok(Vec::new());
    }
    let servers = fetch(console, signed, "/v1/auth-servers?page%5Bsize%5D=20").await?;
    let rows = items(&servers)
        .iter()
        .map(|v| Detail::text(s(v, "name"), format!("{}/introspect", s(v, "issuer"))))
        .collect::<Vec<_>>();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Section::Details { heading: "Introspection URLs of your auth servers".into(), rows }])
}

async fn new_plugin(
    State(console): State<Console>,
    signed: Signed,
    Path(cp): Path<String>,
    Query(query): Query<PluginQuery>,
) -> Result {
    let form = plugin_form(&console, &signed, &cp, &query.name).await?;
    let help = plugin_help(&console, &signed, &query.name).await?;
    form_page(&console, &signed, &cp, "New plugin", help, form).await
}

async fn create_plugin(State(console): State<Console>, Path(cp): Path<String>, posted: Posted) -> Result {
    let signed = posted.signed();
    let name = posted.get("name").trim().to_owned();
    let chosen = if posted.values.contains_key("config") { String::new() } else { name.clone() };
    let mut errors = FieldErrors::default();
    let config = match form_fields(&chosen) {
        Some(fields) if !chosen.is_empty() => {
            let mut config = config_value(&fields, &posted, &mut errors);
            if name == plugins::oauth2_introspection::NAME && !config.contains_key("authorization_value") {
                let (id, secret) = (posted.get("basic_client_id").trim(), posted.get("basic_client_secret").trim());
                if !id.is_empty() && !secret.is_empty() {
                    config.insert("authorization_value".into(), Value::from(crate::oauth::basic(id, secret)));
                }
            }
            Value::Object(config)
        }
        _ => match serde_json::from_str::<Value>(posted.get("config")) {
            Ok(v) => v,
            Err(e) => {
                errors.fields.push(("config".into(), format!("not valid JSON: {e}")));
                Value::Null
            }
        },
    };
    let form = plugin_form(&console, &signed, &cp, &chosen).await?;
    if !errors.is_empty() {
        let help = plugin_help(&console, &signed, &chosen).await?;
        return form_page(&console, &signed, &cp, "New plugin", help, form.with_submission(&posted.pairs, &errors))
            .await;
    }
    let mut body = json!({ "name": name, "config": config, "enabled": posted.get("enabled") != "false" });
    for kind in ["service", "route", "consumer"] {
        reference(&posted, kind, &mut body);
    }
    create(&console, &posted, &cp, "plugins", &body, "New plugin", form).await
}

// ---- delete ----

async fn delete_entity(
    State(console): State<Console>,
    kind: &'static str,
    Path((cp, eid)): Path<(String, String)>,
    posted: Posted,
) -> Result {
    let path = format!("{}/{}", entities(&cp, kind), seg(&eid));
    match call(&console, &posted.current, posted.peer, Method::DELETE, &path, None).await? {
        Answer::Ok(..) => Ok(see_other(&base(&cp))),
        Answer::Refused(status, errors) => Err(ConsoleError::Failed(status, errors.general.join(" "))),
    }
}

// ---- test this route ----

fn test_form(cp: &str, rid: &str, path: &str) -> Form {
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        .iter()
        .map(|m| ((*m).to_owned(), (*m).to_owned()))
        .collect();
    Form::new(
        "test-route",
        "Send a request through the proxy",
        format!("{}/routes/{}/test", base(cp), seg(rid)),
        "Send request",
        vec![
            Field::text("method", "Method").options(methods).value("GET"),
            Field::text("path", "Path").required().value(path),
            Field::text("host", "Host header").help("Leave empty unless the route matches on hosts."),
            Field::text("authorization", "Authorization header")
                .help("For example Bearer followed by a token from Try it; empty sends none."),
        ],
    )
}

async fn test_view(
    console: &Console,
    signed: &Signed,
    cp: &str,
    rid: &str,
    form: Option<Form>,
    results: Vec<Section>,
) -> Result {
    let route = fetch(console, signed, &format!("{}/{}", entities(cp, "routes"), seg(rid))).await?;
    let first = route
        .get("paths")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    let form = form.unwrap_or_else(|| test_form(cp, rid, if first.starts_with('~') { "/" } else { &first }));
    let crumbs = vec![home(), Link::new(plane_name(console, signed, cp).await?, base(cp))];
    let mut sections =
        vec![Section::Text(format!("Route {} on {}.", s(&route, "name"), console.proxy_url)), Section::Form(form)];
    sections.extend(results);
    Ok(page(&signed.current, "gateway", "Test this route", crumbs, sections).into_response())
}

async fn test_page(State(console): State<Console>, signed: Signed, Path((cp, rid)): Path<(String, String)>) -> Result {
    test_view(&console, &signed, &cp, &rid, None, Vec::new()).await
}

async fn test_route(State(console): State<Console>, Path((cp, rid)): Path<(String, String)>, posted: Posted) -> Result {
    let signed = posted.signed();
    let form = test_form(&cp, &rid, "/").with_submission(&posted.pairs, &FieldErrors::default());
    let path = posted.get("path").trim();
    if !path.starts_with('/') {
        let errors = FieldErrors { general: Vec::new(), fields: vec![("path".into(), "must start with /".into())] };
        let form = test_form(&cp, &rid, "/").with_submission(&posted.pairs, &errors);
        return test_view(&console, &signed, &cp, &rid, Some(form), Vec::new()).await;
    }
    let sent = crate::proxy::send(
        &console.proxy_url,
        posted.get("method"),
        path,
        posted.get("host").trim(),
        posted.get("authorization").trim(),
    )
    .await;
    let results = match sent {
        Ok((status, headers, body)) => {
            let kind = if status.is_success() { "ok" } else { "warn" };
            vec![
                Section::Notice { kind, text: format!("The proxy answered {status}.") },
                Section::Code { id: "proxy-status".into(), heading: "Status".into(), text: status.to_string() },
                Section::Code { id: "proxy-headers".into(), heading: "Response headers".into(), text: headers },
                Section::Code { id: "proxy-body".into(), heading: "Response body".into(), text: body },
            ]
        }
        Err(e) => vec![Section::Notice { kind: "error", text: format!("The request did not get an answer: {e}") }],
    };
    test_view(&console, &signed, &cp, &rid, Some(form), results).await
}
