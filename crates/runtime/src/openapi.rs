//! What the OpenAPI 3.1 documents of the management APIs share. utoipa derives each document's paths, operations
//! and schemas from the handlers and the request and response types; what every operation of an API has in
//! common (the personal access token, the path parameters, the error responses, the list queries) is added here,
//! from the same tables the handlers parse with, so no handler has to repeat it.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use gatehouse_model::listing::{CollectionSpec, FilterKind, MAX_PAGE_SIZE};
use gatehouse_model::problem::ProblemBody;

/// The methods an operation can be under, in the order the documents list them.
pub const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// The security scheme every management operation requires.
pub const PAT_SCHEME: &str = "personalAccessToken";

/// A path parameter, by the name the path templates use.
#[derive(Debug, Clone, Copy)]
pub struct PathParam {
    pub name: &'static str,
    pub description: &'static str,
    /// `None`: a UUID; otherwise a string matching this pattern.
    pub pattern: Option<&'static str>,
}

impl PathParam {
    pub const fn uuid(name: &'static str, description: &'static str) -> Self {
        Self { name, description, pattern: None }
    }

    pub const fn text(name: &'static str, description: &'static str, pattern: &'static str) -> Self {
        Self { name, description, pattern: Some(pattern) }
    }

    fn to_json(self) -> Value {
        let schema = match self.pattern {
            None => json!({"type": "string", "format": "uuid"}),
            Some(pattern) => json!({"type": "string", "pattern": pattern}),
        };
        json!({"name": self.name, "in": "path", "required": true, "description": self.description, "schema": schema})
    }
}

/// Calls `f` with the path, method and object of every operation of `doc`.
pub fn for_each_operation(doc: &mut Value, mut f: impl FnMut(&str, &str, &mut Map<String, Value>)) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                f(path, method, op);
            }
        }
    }
}

/// The `{name}`s of a path template, in order.
pub fn template_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

fn components(doc: &mut Value) -> &mut Map<String, Value> {
    let root = doc.as_object_mut().expect("an OpenAPI document is an object");
    let components = root.entry("components").or_insert_with(|| json!({}));
    if !components.is_object() {
        *components = json!({});
    }
    components.as_object_mut().expect("made an object above")
}

/// Adds a schema (and those it refers to) to `components.schemas`.
pub fn add_schema<T: ToSchema>(doc: &mut Value) {
    let mut all = Vec::new();
    T::schemas(&mut all);
    all.push((T::name().into_owned(), T::schema()));
    let schemas = components(doc).entry("schemas").or_insert_with(|| json!({}));
    for (name, schema) in all {
        if let Some(map) = schemas.as_object_mut() {
            map.entry(name).or_insert_with(|| serde_json::to_value(schema).unwrap_or(Value::Null));
        }
    }
}

/// Adds the personal access token as the one security scheme, required by every operation.
pub fn require_pat(doc: &mut Value) {
    let schemes = components(doc).entry("securitySchemes").or_insert_with(|| json!({}));
    if let Some(map) = schemes.as_object_mut() {
        map.insert(
            PAT_SCHEME.into(),
            json!({
                "type": "http",
                "scheme": "bearer",
                "description": "A personal access token (`gatehouse token create`), as `Authorization: Bearer …`."
            }),
        );
    }
    doc["security"] = json!([{ PAT_SCHEME: [] }]);
}

/// Declares the path parameters of every operation from `params` (by template name); a name the table lacks is
/// left for the document's test to report.
pub fn add_path_params(doc: &mut Value, params: &[PathParam]) {
    for_each_operation(doc, |path, _, op| {
        let names = template_params(path);
        let list = op.entry("parameters").or_insert_with(|| json!([]));
        let Some(list) = list.as_array_mut() else { return };
        for name in names {
            let declared = list.iter().any(|p| p["in"] == "path" && p["name"] == name);
            if let (false, Some(param)) = (declared, params.iter().find(|p| p.name == name)) {
                list.push(param.to_json());
            }
        }
    });
}

/// The query parameters a collection's list operation accepts: Konnect's `page[size]`, `page[number]`, `sort`
/// and deepObject filters, from the [`CollectionSpec`] the handler parses the query with.
pub fn list_params(spec: &CollectionSpec) -> Vec<Value> {
    let mut out = vec![
        json!({"name": "page[size]", "in": "query", "description": "Items per page (default 100).",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}}),
        json!({"name": "page[number]", "in": "query", "description": "The page, from 1.",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}),
    ];
    if !spec.sorts.is_empty() {
        let names: Vec<&str> = spec.sorts.iter().map(|f| f.as_str()).collect();
        out.push(json!({"name": "sort", "in": "query",
            "description": format!("A comma-separated list of `attribute [asc|desc]`; attributes: {}.", names.join(", ")),
            "schema": {"type": "string"}}));
    }
    for (field, kind) in spec.filters {
        let field = field.as_str();
        let ops: &[&str] = match kind {
            FilterKind::Text => &["eq", "contains"],
            FilterKind::Equals | FilterKind::Boolean | FilterKind::Label => &["eq"],
            FilterKind::TextWithNeq => &["eq", "neq", "contains", "oeq"],
            FilterKind::Enumerated => &["eq", "neq", "oeq"],
            FilterKind::EqualsOrAnyOf => &["eq", "oeq"],
        };
        let schema = match kind {
            FilterKind::Boolean => json!({"type": "string", "enum": ["true", "false"]}),
            FilterKind::Label => json!({"type": "string", "pattern": "^[^:]+:.+$"}),
            _ => json!({"type": "string"}),
        };
        for op in ops {
            let description = match *op {
                "eq" => format!("`{field}` equals the value."),
                "neq" => format!("`{field}` differs from the value."),
                "contains" => format!("`{field}` contains the value."),
                _ => format!("`{field}` is one of the comma-separated values."),
            };
            out.push(json!({"name": format!("filter[{field}][{op}]"), "in": "query", "description": description,
                "schema": schema}));
        }
    }
    out
}

/// Adds `params` to the operation `method path`.
pub fn add_query_params(doc: &mut Value, path: &str, method: &str, params: Vec<Value>) {
    if let Some(list) = doc["paths"][path][method].as_object_mut().map(|op| op.entry("parameters")) {
        let list = list.or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.extend(params);
        }
    }
}

/// The error responses every operation of a problem+json API may give: 401 without a valid token, 404 for an
/// unknown resource, 400 for bad input, and `default` for the rest (405, 409, 413, 415, 429, 500, 503), all as
/// `application/problem+json`.
pub fn add_problem_responses(doc: &mut Value) {
    add_schema::<ProblemBody>(doc);
    let problem = |description: &str| {
        json!({"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}})
    };
    for_each_operation(doc, |path, _, op| {
        let responses = op.entry("responses").or_insert_with(|| json!({}));
        let Some(responses) = responses.as_object_mut() else { return };
        responses
            .entry("400")
            .or_insert_with(|| problem("Invalid input: `invalid_parameters` names each field at fault."));
        responses.entry("401").or_insert_with(|| problem("No valid personal access token."));
        if !template_params(path).is_empty() {
            responses.entry("404").or_insert_with(|| problem("The resource, or one it is nested in, does not exist."));
        }
        responses.entry("default").or_insert_with(|| problem("Any other error."));
    });
}

/// The document as served: its JSON, built once.
#[derive(Debug, Clone)]
pub struct Document(Bytes);

impl Document {
    pub fn new(doc: &Value) -> Self {
        Self(Bytes::from(serde_json::to_vec(doc).unwrap_or_default()))
    }

    pub fn response(&self) -> Response {
        let mut response = self.0.clone().into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}
