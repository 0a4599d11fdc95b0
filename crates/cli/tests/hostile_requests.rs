//! Malformed and hostile requests against the management API: each gets its documented 4xx body (problem+json,
//! the parameter at fault named), never a 5xx or a panic, and nothing is written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, assert_problem};

enum Auth {
    Token,
    Missing,
    Header(&'static str),
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    auth: Auth,
    body: Body,
    status: u16,
    /// The first invalid parameter's field and rule, for 400s.
    field: Option<&'static str>,
    rule: Option<&'static str>,
}

fn case(name: &'static str, method: Method, path: impl Into<String>, body: Body, status: u16) -> Case {
    Case { name, method, path: path.into(), auth: Auth::Token, body, status, field: None, rule: None }
}

impl Case {
    fn param(mut self, field: &'static str, rule: &'static str) -> Self {
        self.field = Some(field);
        self.rule = Some(rule);
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

fn json(v: Value) -> Body {
    Body::Json(v)
}

fn server_body(extra: Value) -> Body {
    let mut b = json!({"name": "new-server", "audience": "aud"});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    Body::Json(b)
}

fn client_body(extra: Value) -> Body {
    let mut b = json!({"name": "new-client", "grant_types": ["client_credentials"]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    Body::Json(b)
}

async fn counts(node: &TestNode, server: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/auth-servers".to_owned(),
        format!("/v1/auth-servers/{server}/scopes"),
        format!("/v1/auth-servers/{server}/claims"),
        format!("/v1/auth-servers/{server}/clients"),
        format!("/v1/auth-servers/{server}/clients/existing-client/secrets"),
    ] {
        let (status, body) = node.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        out.push(body["data"].clone());
    }
    out
}

#[tokio::test]
async fn hostile_requests_get_documented_errors_and_change_nothing() {
    let node = TestNode::start().await;
    let (_, server) = node.post("/v1/auth-servers", json!({"name": "existing", "audience": "a"})).await;
    let sid = server["id"].as_str().unwrap().to_owned();
    let (_, scope) = node.post(&format!("/v1/auth-servers/{sid}/scopes"), json!({"name": "existing-scope"})).await;
    let scope_id = scope["id"].as_str().unwrap().to_owned();
    let (status, _) = node
        .put(
            &format!("/v1/auth-servers/{sid}/clients/existing-client"),
            json!({"name": "existing-client", "grant_types": ["client_credentials"], "client_secret": "s".repeat(24)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, secrets) = node.get(&format!("/v1/auth-servers/{sid}/clients/existing-client/secrets")).await;
    let secret_id = secrets["data"][0]["id"].as_str().unwrap().to_owned();
    let before = counts(&node, &sid).await;

    let servers = "/v1/auth-servers";
    let scopes = format!("/v1/auth-servers/{sid}/scopes");
    let claims = format!("/v1/auth-servers/{sid}/claims");
    let clients = format!("/v1/auth-servers/{sid}/clients");
    let missing = "0190a0a0-0000-7000-8000-00000000dead";
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let many_labels: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let many_origins: Vec<String> = (0..17).map(|i| format!("https://o{i}.example.com")).collect();
    use Method as M;
    let cases = vec![
        case("no token", M::POST, servers, server_body(json!({})), 401).auth(Auth::Missing),
        case("unknown token", M::POST, servers, server_body(json!({})), 401)
            .auth(Auth::Header("Bearer gpat_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")),
        case("basic instead of bearer", M::GET, servers, Body::None, 401).auth(Auth::Header("Basic dXNlcjpwYXNz")),
        case("konnect-shaped token", M::GET, servers, Body::None, 401)
            .auth(Auth::Header("Bearer kpat_0123456789012345678901234567890123456789")),
        case("bearer without token", M::GET, servers, Body::None, 401).auth(Auth::Header("Bearer ")),
        case("name not a string", M::POST, servers, json(json!({"name": 5, "audience": "a"})), 400)
            .param("name", "is_string"),
        case("name missing", M::POST, servers, json(json!({"audience": "a"})), 400).param("name", "required"),
        case("audience missing", M::POST, servers, json(json!({"name": "n"})), 400).param("audience", "required"),
        case("name too long", M::POST, servers, server_body(json!({"name": "n".repeat(257)})), 400)
            .param("name", "max_length"),
        case("name empty", M::POST, servers, server_body(json!({"name": ""})), 400).param("name", "min_length"),
        case("read-only issuer", M::POST, servers, server_body(json!({"issuer": "https://evil"})), 400)
            .param("issuer", "unknown_property"),
        case("bad algorithm", M::POST, servers, server_body(json!({"signing_algorithm": "HS256"})), 400)
            .param("signing_algorithm", "enum"),
        case("reserved label key", M::POST, servers, server_body(json!({"labels": {"kong-x": "v"}})), 400)
            .param("labels.kong-x", "is_label"),
        case("bad label value", M::POST, servers, server_body(json!({"labels": {"env": "-x"}})), 400)
            .param("labels.env", "is_label"),
        case("labels not an object", M::POST, servers, server_body(json!({"labels": ["a"]})), 400)
            .param("labels", "is_object"),
        case("too many labels", M::POST, servers, server_body(json!({"labels": many_labels})), 400)
            .param("labels", "max_items"),
        case("origins not an array", M::POST, servers, server_body(json!({"trusted_origins": "x"})), 400)
            .param("trusted_origins", "is_array"),
        case("origin with a path", M::POST, servers, server_body(json!({"trusted_origins": ["https://a.com/x"]})), 400)
            .param("trusted_origins[0]", "invalid"),
        case("too many origins", M::POST, servers, server_body(json!({"trusted_origins": many_origins})), 400)
            .param("trusted_origins", "max_items"),
        case("duplicate server name", M::POST, servers, server_body(json!({"name": "existing"})), 409),
        case("invalid JSON", M::POST, servers, Body::Raw("application/json", b"{\"name\":".to_vec()), 400)
            .param("body", "invalid"),
        case("JSON array body", M::POST, servers, Body::Raw("application/json", b"[]".to_vec()), 400)
            .param("body", "is_object"),
        case("empty body", M::POST, servers, Body::Raw("application/json", Vec::new()), 400).param("body", "required"),
        case(
            "duplicate JSON keys",
            M::POST,
            servers,
            Body::Raw("application/json", br#"{"name":"a","name":"b","audience":"x"}"#.to_vec()),
            400,
        )
        .param("body", "invalid"),
        case("deeply nested JSON", M::POST, servers, Body::Raw("application/json", deep.into_bytes()), 400)
            .param("body", "invalid"),
        case("text/plain body", M::POST, servers, Body::Raw("text/plain", b"{}".to_vec()), 415),
        case("form body", M::POST, servers, Body::Raw("application/x-www-form-urlencoded", b"name=x".to_vec()), 415),
        case("body over 64 KiB", M::POST, servers, Body::Raw("application/json", vec![b' '; 65 * 1024]), 413),
        case("server id not a uuid", M::GET, "/v1/auth-servers/not-a-uuid", Body::None, 400)
            .param("authServerId", "is_uuid"),
        case("unknown server", M::GET, format!("/v1/auth-servers/{missing}"), Body::None, 404),
        case("path traversal", M::GET, "/v1/auth-servers/..%2F..%2Fetc%2Fpasswd", Body::None, 400)
            .param("authServerId", "is_uuid"),
        case("invalid UTF-8 in path", M::GET, "/v1/auth-servers/%FF%FE", Body::None, 400),
        case("page size zero", M::GET, "/v1/auth-servers?page[size]=0", Body::None, 400).param("page[size]", "min"),
        case("page size too big", M::GET, "/v1/auth-servers?page%5Bsize%5D=1001", Body::None, 400)
            .param("page[size]", "max"),
        case("page number not a number", M::GET, "/v1/auth-servers?page[number]=abc", Body::None, 400)
            .param("page[number]", "is_integer"),
        case("negative page number", M::GET, "/v1/auth-servers?page[number]=-3", Body::None, 400)
            .param("page[number]", "min"),
        case("unknown filter operator", M::GET, "/v1/auth-servers?filter[name][like]=x", Body::None, 400)
            .param("filter[name][like]", "enum"),
        case("unknown filter field", M::GET, "/v1/auth-servers?filter[secret]=1", Body::None, 400)
            .param("filter[secret]", "enum"),
        case("broken filter syntax", M::GET, "/v1/auth-servers?filter[name=x", Body::None, 400)
            .param("filter[name", "invalid"),
        case("unknown sort attribute", M::GET, "/v1/auth-servers?sort=secret", Body::None, 400).param("sort", "enum"),
        case("label filter without colon", M::GET, "/v1/auth-servers?filter[labels][eq]=env", Body::None, 400)
            .param("filter[labels][eq]", "is_label"),
        case("unknown query parameter", M::GET, "/v1/auth-servers?limit=5", Body::None, 400)
            .param("limit", "unknown_property"),
        case("scope name with a space", M::POST, &scopes, json(json!({"name": "a b"})), 400)
            .param("name", "matches_regex"),
        case("duplicate scope name", M::POST, &scopes, json(json!({"name": "existing-scope"})), 409),
        case("scopes of an unknown server", M::GET, format!("/v1/auth-servers/{missing}/scopes"), Body::None, 404),
        case("reserved claim name", M::POST, &claims, json(json!({"name": "sub", "value": "x"})), 400)
            .param("name", "invalid"),
        case(
            "claim scope not a uuid",
            M::POST,
            &claims,
            json(json!({"name": "c", "value": "x", "include_in_scopes": ["nope"]})),
            400,
        )
        .param("include_in_scopes[0]", "is_uuid"),
        case(
            "claim scope of nowhere",
            M::POST,
            &claims,
            json(json!({"name": "c", "value": "x", "include_in_scopes": [missing]})),
            400,
        )
        .param("include_in_scopes[0]", "missing_reference"),
        case("claim value empty", M::POST, &claims, json(json!({"name": "c", "value": ""})), 400)
            .param("value", "min_length"),
        case(
            "unsupported grant type",
            M::POST,
            &clients,
            client_body(json!({"grant_types": ["authorization_code"]})),
            400,
        )
        .param("grant_types[0]", "enum"),
        case("token lifetime too short", M::POST, &clients, client_body(json!({"access_token_duration": 59})), 400)
            .param("access_token_duration", "min"),
        case("token lifetime as text", M::POST, &clients, client_body(json!({"access_token_duration": "3600"})), 400)
            .param("access_token_duration", "is_integer"),
        case("token lifetime huge", M::POST, &clients, client_body(json!({"access_token_duration": 1e30})), 400)
            .param("access_token_duration", "is_integer"),
        case("plain-http redirect", M::POST, &clients, client_body(json!({"redirect_uris": ["http://a.com/cb"]})), 400)
            .param("redirect_uris[0]", "invalid"),
        case("secret on POST", M::POST, &clients, client_body(json!({"client_secret": "x".repeat(30)})), 400)
            .param("client_secret", "unknown_property"),
        case("allow unknown scope", M::POST, &clients, client_body(json!({"allow_scopes": [missing]})), 400)
            .param("allow_scopes[0]", "missing_reference"),
        case("duplicate client name", M::POST, &clients, client_body(json!({"name": "existing-client"})), 409),
        case(
            "client id with a space",
            M::PUT,
            format!("{clients}/bad%20id"),
            client_body(json!({"client_secret": "s".repeat(24)})),
            400,
        )
        .param("clientId", "matches_regex"),
        case(
            "client id too long",
            M::PUT,
            format!("{clients}/{}", "x".repeat(37)),
            client_body(json!({"client_secret": "s".repeat(24)})),
            400,
        )
        .param("clientId", "matches_regex"),
        case(
            "chosen secret too short",
            M::PUT,
            format!("{clients}/newone"),
            client_body(json!({"client_secret": "short"})),
            400,
        )
        .param("client_secret", "min_length"),
        case("PUT without secret", M::PUT, format!("{clients}/newone"), client_body(json!({})), 400)
            .param("client_secret", "required"),
        case(
            "PATCH with unknown scope",
            M::PATCH,
            format!("{clients}/existing-client"),
            json(json!({"allow_scopes": [missing]})),
            400,
        )
        .param("allow_scopes[0]", "missing_reference"),
        case(
            "secret too short",
            M::POST,
            format!("{clients}/existing-client/secrets"),
            json(json!({"secret": "short"})),
            400,
        )
        .param("secret", "min_length"),
        case(
            "secret enabled as text",
            M::PATCH,
            format!("{clients}/existing-client/secrets/{secret_id}"),
            json(json!({"enabled": "yes"})),
            400,
        )
        .param("enabled", "is_boolean"),
        case("force is not a boolean", M::DELETE, format!("/v1/auth-servers/{sid}?force=maybe"), Body::None, 400)
            .param("force", "enum"),
        case("delete a server that has children", M::DELETE, format!("/v1/auth-servers/{sid}"), Body::None, 400)
            .param("force", "invalid"),
        case(
            "delete a scope claims use",
            M::DELETE,
            format!("{scopes}/{scope_id}?force=false"),
            Body::None,
            204, // no claim uses it: the guard lets it through (re-created below)
        ),
        case("null name on PATCH", M::PATCH, format!("/v1/auth-servers/{sid}"), json(json!({"name": null})), 400)
            .param("name", "is_string"),
        case("PUT on a collection", M::PUT, servers, Body::None, 405),
        case("unknown route", M::GET, "/v1/nope", Body::None, 404),
    ];
    assert!(cases.len() >= 40);

    let mut failures = Vec::new();
    let mut scope_was_deleted = false;
    for c in cases {
        let mut req = node.raw(c.method.clone(), &c.path);
        req = match c.auth {
            Auth::Token => req.bearer_auth(&node.token),
            Auth::Missing => req,
            Auth::Header(h) => req.header("authorization", h),
        };
        req = match c.body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, bytes) => req.header("content-type", ct).body(bytes),
        };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let (_, body) = gatehouse_testkit::decode(res).await;
        if status == 204 {
            scope_was_deleted = true;
        }
        let ok = status == c.status
            && (status == 204 || content_type.as_deref() == Some("application/problem+json"))
            && (c.field.is_none() || body["invalid_parameters"][0]["field"] == c.field.unwrap())
            && (c.rule.is_none() || body["invalid_parameters"][0]["rule"] == c.rule.unwrap());
        if !ok {
            failures.push(format!("{}: got {status} {content_type:?} {body}", c.name));
        } else if status != 204 {
            assert_problem(&body, status);
            if status == 400 {
                assert!(body["invalid_parameters"].as_array().is_some_and(|a| !a.is_empty()), "{}: {body}", c.name);
            }
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));

    // Nothing was written, except the one scope delete the table meant to succeed.
    assert!(scope_was_deleted);
    node.post(&scopes, json!({"name": "existing-scope"})).await;
    let after = counts(&node, &sid).await;
    let names = |v: &Value| v.as_array().unwrap().iter().map(|e| e["name"].clone()).collect::<Vec<_>>();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.as_array().unwrap().len(), a.as_array().unwrap().len());
        assert_eq!(names(b), names(a));
    }
    let (_, client) = node.get(&format!("{clients}/existing-client")).await;
    assert_eq!(client["allow_scopes"], json!([]));
    node.stop().await;
}
