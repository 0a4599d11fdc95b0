//! The OpenAPI 3.1 documents a node serves (`/v1/openapi.json`, `/v2/openapi.json`, the Admin API's
//! `/openapi.json`): well-formed, every operation described, every `$ref` resolvable, and the documents agree with
//! the routers over a real socket: each documented operation is served, and on the paths of `/v1` and of the
//! control planes every method that is not documented is refused with 405.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

async fn fetch(url: &str) -> Value {
    let res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/json", "{url}");
    res.json().await.unwrap()
}

fn template_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The structure OpenAPI 3.1 requires of what the documents use, and what Gatehouse requires of every operation:
/// a summary, a success response, every response described, every path parameter declared.
fn check_document(name: &str, doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(format!("{name}: {p}"));
    if doc["openapi"] != "3.1.0" {
        problem(format!("openapi is {}, not 3.1.0", doc["openapi"]));
    }
    for field in ["title", "version"] {
        if doc["info"][field].as_str().is_none_or(str::is_empty) {
            problem(format!("info.{field} is missing"));
        }
    }
    let paths = doc["paths"].as_object().expect("paths");
    if paths.is_empty() {
        problem("no paths".into());
    }
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        if !path.starts_with('/') {
            problem(format!("path {path} does not start with /"));
        }
        let item = item.as_object().expect("a path item is an object");
        for key in item.keys() {
            if !METHODS.contains(&key.as_str()) && key != "parameters" {
                problem(format!("{path}: unexpected key {key}"));
            }
        }
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let at = format!("{} {path}", method.to_uppercase());
            if op["summary"].as_str().is_none_or(|s| s.trim().is_empty()) {
                problem(format!("{at} has no summary"));
            }
            if let Some(id) = op["operationId"].as_str()
                && !operation_ids.insert(id.to_owned())
            {
                problem(format!("{at}: operationId {id} is used twice"));
            }
            let responses = op["responses"].as_object().expect("responses");
            if !responses.keys().any(|s| s.starts_with('2')) {
                problem(format!("{at} documents no success response"));
            }
            for (status, response) in responses {
                if status != "default" && !(status.len() == 3 && status.parse::<u16>().is_ok()) {
                    problem(format!("{at}: response key {status}"));
                }
                if response.get("$ref").is_none() && !response["description"].is_string() {
                    problem(format!("{at} {status} has no description"));
                }
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                let location = p["in"].as_str().unwrap_or("");
                if !["path", "query", "header", "cookie"].contains(&location) || !p["name"].is_string() {
                    problem(format!("{at}: malformed parameter {p}"));
                }
                if location == "path" && p["required"] != true {
                    problem(format!("{at}: path parameter {} is not required", p["name"]));
                }
            }
            let declared: BTreeSet<&str> =
                params.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect();
            let templated: BTreeSet<&str> = template_params(path).into_iter().collect();
            if declared != templated {
                problem(format!("{at}: path parameters {declared:?} differ from the template's {templated:?}"));
            }
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/");
        if name.is_none_or(|n| doc["components"]["schemas"].get(n).is_none()) {
            problem(format!("unresolved $ref {r}"));
        }
    }
    problems
}

/// A concrete path for a template: every parameter an id that exists nowhere.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "00000000-0000-4000-8000-000000000000" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn methods_of(item: &Value) -> BTreeSet<&'static str> {
    METHODS.into_iter().filter(|m| item.get(*m).is_some()).collect()
}

#[tokio::test]
async fn documents_are_served_complete_and_match_the_routes() {
    let node = TestNode::start().await;
    let http = reqwest::Client::new();
    // The documents are public: no token.
    let v1 = fetch(&format!("{}/v1/openapi.json", node.platform)).await;
    let v2 = fetch(&format!("{}/v2/openapi.json", node.platform)).await;
    let admin = fetch(&format!("{}/openapi.json", node.node.admin_url())).await;

    // What is served is what the crates build.
    assert_eq!(v1, gatehouse_identity::management_openapi());
    assert_eq!(v2, gatehouse_control::v2_openapi());
    assert_eq!(admin, gatehouse_control::admin_openapi());

    let mut problems = Vec::new();
    for (name, doc) in [("/v1", &v1), ("/v2", &v2), ("admin", &admin)] {
        problems.extend(check_document(name, doc));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Every operation of /v1 and of the control planes answers its documented methods, and only those.
    let platform_paths = v1["paths"]
        .as_object()
        .unwrap()
        .iter()
        .chain(v2["paths"].as_object().unwrap().iter().filter(|(p, _)| !p.contains("/core-entities")));
    let mut seen = 0;
    for (path, item) in platform_paths {
        let documented = methods_of(item);
        for method in METHODS {
            let url = format!("{}{}", node.platform, concrete(path));
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = http.request(verb, &url).bearer_auth(&node.token).json(&json!({})).send().await.unwrap();
            let status = res.status();
            if documented.contains(method) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not served");
                seen += 1;
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is served but not documented");
            }
        }
    }
    assert!(seen >= 38, "only {seen} operations");

    // The entity API is one dispatcher: every documented operation reaches a handler (which answers 404 for the
    // made-up ids, in Kong's shape, never 405).
    for (base, doc) in [(node.node.admin_url(), &admin), (node.platform.clone(), &v2)] {
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in methods_of(item) {
                let url = format!("{base}{}", concrete(path));
                let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let res = http.request(verb, &url).bearer_auth(&node.token).json(&json!({})).send().await.unwrap();
                assert_ne!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented, not served");
            }
        }
    }

    // Gatehouse's additions are described.
    let paths = v1["paths"].as_object().unwrap();
    assert!(paths["/v1/auth-servers/{authServerId}/keys/rotate"]["post"]["summary"].is_string());
    let test_claim = &paths["/v1/auth-servers/{authServerId}/clients/{clientId}/test-claim"]["post"];
    assert!(test_claim["responses"]["200"]["description"].as_str().unwrap().contains("template"), "{test_claim}");
    // A rendered claim is any JSON value: a string, or what a template's JSON output parses to.
    let rendered = &test_claim["responses"]["200"]["content"]["application/json"]["schema"]["additionalProperties"];
    assert!(rendered.get("type").is_none(), "{rendered}");
    let algorithms = &v1["components"]["schemas"]["SigningAlgorithm"]["enum"];
    assert!(algorithms.as_array().unwrap().contains(&json!("EdDSA")), "{algorithms}");
    let introspection = &admin["components"]["schemas"]["PluginConfig.oauth2-introspection"];
    let negative_ttl = &introspection["properties"]["negative_ttl"];
    assert!(negative_ttl["description"].as_str().unwrap().starts_with("Gatehouse addition"), "{introspection}");
    // Error bodies: problem+json on /v1 and /v2, Kong's shape on the entity APIs.
    let problem = &v1["paths"]["/v1/auth-servers"]["get"]["responses"]["401"]["content"];
    assert_eq!(problem["application/problem+json"]["schema"]["$ref"], "#/components/schemas/ProblemBody");
    let kong = &admin["paths"]["/services"]["post"]["responses"]["400"]["content"];
    assert_eq!(kong["application/json"]["schema"]["$ref"], "#/components/schemas/KongError");
    node.stop().await;
}
