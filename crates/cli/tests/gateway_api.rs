//! Control planes (`/v2/control-planes`), core entities under them, and the Kong Admin API: Konnect's and Kong's
//! bodies, status codes and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, decode};

/// An Admin API request with a `curl --data` body: the text as written, sent as a URL-encoded form.
async fn admin_form(node: &TestNode, method: Method, path: &str, form: &str) -> (StatusCode, Value) {
    let request = reqwest::Client::new()
        .request(method, format!("{}{path}", node.node.admin_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    decode(request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"))).await
}

async fn admin_raw(node: &TestNode, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let request = reqwest::Client::new()
        .post(format!("{}{path}", node.node.admin_url()))
        .header("content-type", content_type)
        .body(body);
    decode(request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"))).await
}

#[tokio::test]
async fn control_planes_crud_filters_and_errors() {
    let node = TestNode::start().await;
    let (status, list) = node.get("/v2/control-planes?filter%5Bname%5D%5Bcontains%5D=default").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"][0]["name"], "default", "a node always serves a control plane");
    let served = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["data"][0]["config"]["control_plane_endpoint"], node.node.admin_url());

    let (status, cp) = node.post("/v2/control-planes", json!({"name": "staging", "labels": {"env": "stage"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{cp}");
    assert_eq!(cp["config"]["cluster_type"], "CLUSTER_TYPE_CONTROL_PLANE");
    assert_eq!(cp["config"]["auth_type"], "pinned_client_certs");
    assert_eq!(cp["config"]["cloud_gateway"], false);
    let id = cp["id"].as_str().unwrap().to_owned();
    node.post("/v2/control-planes", json!({"name": "serverless", "cluster_type": "CLUSTER_TYPE_SERVERLESS"})).await;

    let names = |v: &Value| {
        v["data"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(&node.get("/v2/control-planes?filter[name][eq]=staging").await.1), vec!["staging"]);
    assert_eq!(
        names(&node.get("/v2/control-planes?filter[name][neq]=staging&sort=name").await.1),
        vec!["default", "serverless"]
    );
    assert_eq!(
        names(&node.get("/v2/control-planes?filter[cluster_type][eq]=CLUSTER_TYPE_SERVERLESS").await.1),
        vec!["serverless"]
    );
    assert_eq!(
        names(&node.get(&format!("/v2/control-planes?filter[id][oeq]={id},{served}&sort=name")).await.1),
        vec!["default", "staging"]
    );
    assert_eq!(names(&node.get("/v2/control-planes?labels=env:stage").await.1), vec!["staging"]);
    assert_eq!(names(&node.get("/v2/control-planes?labels=env").await.1), vec!["staging"]);
    assert_eq!(node.get("/v2/control-planes?filter[cloud_gateway]=false").await.1["meta"]["page"]["total"], 3);

    let (status, dup) = node.post("/v2/control-planes", json!({"name": "staging"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(dup["detail"], "Control Plane with provided name already exists.");
    assert!(dup["instance"].as_str().unwrap().starts_with("konnect:trace:"));
    let (status, bad) = node.post("/v2/control-planes", json!({"name": "x", "id": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["invalid_parameters"].as_array().unwrap().len(), 2, "{bad}");
    let (status, unauth) = node.call_as(None, Method::GET, "/v2/control-planes", None).await;
    assert_eq!(
        (status, unauth["title"].as_str(), unauth["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Unauthenticated"), Some("A valid token is required"))
    );

    let (status, patched) =
        node.patch(&format!("/v2/control-planes/{id}"), json!({"description": "d", "labels": {"env": null}})).await;
    assert_eq!(
        (status, patched["description"].as_str(), patched["labels"].clone()),
        (StatusCode::OK, Some("d"), json!({}))
    );
    assert_eq!(
        node.patch(&format!("/v2/control-planes/{id}"), json!({"cluster_type": "CLUSTER_TYPE_SERVERLESS"})).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, gone) = node.get("/v2/control-planes/0190a0a0-0000-7000-8000-00000000dead").await;
    assert_eq!(
        (status, gone["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("The requested control plane was not found."))
    );
    assert_eq!(node.get("/v2/control-planes/nope").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        node.delete(&format!("/v2/control-planes/{served}")).await.0,
        StatusCode::CONFLICT,
        "the served one stays"
    );
    assert_eq!(node.delete(&format!("/v2/control-planes/{id}")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.get(&format!("/v2/control-planes/{id}")).await.0, StatusCode::NOT_FOUND);
    node.stop().await;
}

#[tokio::test]
async fn core_entities_with_kongs_shapes() {
    let node = TestNode::start().await;
    let (_, cp) = node.post("/v2/control-planes", json!({"name": "other"})).await;
    let base = format!("/v2/control-planes/{}/core-entities", cp["id"].as_str().unwrap());

    let (status, svc) = node
        .post(
            &format!("{base}/services"),
            json!({"name": "example-service", "url": "http://httpbin.konghq.com/anything"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{svc}");
    assert!(svc["created_at"].is_i64(), "epoch timestamps");
    assert_eq!(
        (svc["host"].as_str(), svc["path"].as_str(), svc["port"].as_i64()),
        (Some("httpbin.konghq.com"), Some("/anything"), Some(80))
    );
    let (status, route) = node
        .post(
            &format!("{base}/services/example-service/routes"),
            json!({"name": "example-route", "paths": ["/anything"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    assert_eq!(route["service"]["id"], svc["id"]);

    // The tutorial's global plugin, with a trailing slash.
    let plugin = json!({"name": "oauth2-introspection", "config": {"introspection_url": "http://127.0.0.1:8003/k/introspect",
        "authorization_value": "Basic c2VjcmV0", "consumer_by": "client_id", "custom_claims_forward": ["Claim"]}});
    let (status, created) = node.post(&format!("{base}/plugins/"), plugin.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["config"]["authorization_value"], "Basic c2VjcmV0", "returned in clear, as Kong does");
    assert_eq!(created["config"]["ttl"], 30);
    let (status, dup) = node.post(&format!("{base}/plugins"), plugin).await;
    assert_eq!(
        (status, dup["code"].as_u64(), dup["name"].as_str()),
        (StatusCode::CONFLICT, Some(5), Some("unique constraint violation"))
    );

    // PUT upserts with a client-chosen UUID, PATCH merges, and the list has Kong's shape.
    let id = "5e3e0c9b-3b6f-4e5b-9a6e-0e8b7c0c0c01";
    let (status, put) =
        node.put(&format!("{base}/consumers/{id}"), json!({"username": "alice", "custom_id": "client-a"})).await;
    assert_eq!((status, put["id"].as_str()), (StatusCode::OK, Some(id)));
    let (status, patched) = node.patch(&format!("{base}/consumers/alice"), json!({"tags": ["team-a"]})).await;
    assert_eq!(
        (status, patched["custom_id"].as_str(), patched["tags"].clone()),
        (StatusCode::OK, Some("client-a"), json!(["team-a"]))
    );
    let (status, list) = node.get(&format!("{base}/consumers?size=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["next"].is_null());
    let (_, unauth) = node.call_as(None, Method::GET, &format!("{base}/services"), None).await;
    assert_eq!(unauth, json!({"message": "Unauthorized", "status": 401}));
    let (status, schema) = node.get(&format!("{base}/schemas/plugins/oauth2-introspection")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(schema.to_string().contains("introspection_url"));
    assert_eq!(
        node.get("/v2/control-planes/0190a0a0-0000-7000-8000-00000000dead/core-entities/services").await.0,
        StatusCode::NOT_FOUND
    );
    node.stop().await;
}

#[tokio::test]
async fn admin_api_for_the_served_control_plane() {
    let node = TestNode::start().await;
    let (status, root) = node.admin(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(root["version"].as_str().unwrap().starts_with("3."), "decK reads a Kong 3.x version");
    assert_eq!(node.admin(Method::GET, "/status", None).await.1["database"]["reachable"], true);

    // Schema violations list every field, nested as Kong nests them.
    let (status, e) = node.admin(Method::POST, "/services", Some(json!({"port": 99999, "bogus": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!((e["code"].as_u64(), e["name"].as_str()), (Some(2), Some("schema violation")));
    assert_eq!(e["fields"]["host"], "required field missing");
    assert_eq!(e["fields"]["bogus"], "unknown field");
    assert!(e["message"].as_str().unwrap().starts_with("3 schema violations"), "{e}");
    let (_, e) = node
        .admin(Method::POST, "/plugins", Some(json!({"name": "oauth2-introspection", "config": {"ttl": "x"}})))
        .await;
    assert_eq!(e["fields"]["config"]["ttl"], "expected a number");
    assert_eq!(e["fields"]["config"]["introspection_url"], "required field missing");
    let (status, e) = node.admin(Method::POST, "/plugins", Some(json!({"name": "made-up", "config": {}}))).await;
    assert_eq!((status, e["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(2)));

    let (status, svc) =
        node.admin(Method::POST, "/services", Some(json!({"name": "svc", "host": "example.com"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, dup) =
        node.admin(Method::POST, "/services", Some(json!({"name": "svc", "host": "example.com"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(dup["message"], "UNIQUE violation detected on '{name=\"svc\"}'");
    let (status, fk) = node
        .admin(
            Method::POST,
            "/routes",
            Some(json!({"paths": ["/x"], "service": {"id": "0190a0a0-0000-7000-8000-00000000dead"}})),
        )
        .await;
    assert_eq!((status, fk["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(4)));
    let (status, route) =
        node.admin(Method::POST, "/services/svc/routes", Some(json!({"name": "r", "paths": ["/r"]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, service_of_route) = node.admin(Method::GET, "/routes/r/service", None).await;
    assert_eq!((status, service_of_route["id"].clone()), (StatusCode::OK, svc["id"].clone()));
    let (status, plugin) = node
        .admin(
            Method::POST,
            "/routes/r/plugins",
            Some(json!({"name": "request-termination", "config": {"status_code": 403, "message": "no"}})),
        )
        .await;
    assert_eq!((status, plugin["route"]["id"].clone()), (StatusCode::CREATED, route["id"].clone()));
    assert_eq!(node.admin(Method::GET, "/services/svc/plugins", None).await.1["data"].as_array().unwrap().len(), 0);
    assert_eq!(node.admin(Method::GET, "/routes/r/plugins", None).await.1["data"].as_array().unwrap().len(), 1);

    // A service with routes cannot be deleted; its route can, and takes its plugins along.
    let (status, referenced) = node.admin(Method::DELETE, "/services/svc", None).await;
    assert_eq!((status, referenced["name"].as_str()), (StatusCode::BAD_REQUEST, Some("referenced by others")));
    assert_eq!(node.admin(Method::DELETE, "/routes/r", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.admin(Method::GET, "/plugins", None).await.1["data"], json!([]));
    assert_eq!(node.admin(Method::DELETE, "/services/svc", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        node.admin(Method::DELETE, "/services/svc", None).await.0,
        StatusCode::NO_CONTENT,
        "Kong answers 204 anyway"
    );
    assert_eq!(
        node.admin(Method::GET, "/services/svc", None).await,
        (StatusCode::NOT_FOUND, json!({"message": "Not found"}))
    );
    assert_eq!(node.admin(Method::GET, "/nothing/here/at/all/x", None).await.0, StatusCode::NOT_FOUND);

    // Paging: size, opaque offset, next; tags with AND and OR.
    for i in 0..5 {
        let tags = if i % 2 == 0 { json!(["even", "all"]) } else { json!(["odd", "all"]) };
        node.admin(Method::POST, "/consumers", Some(json!({"username": format!("user{i}"), "tags": tags}))).await;
    }
    let (_, page1) = node.admin(Method::GET, "/consumers?size=2", None).await;
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    let next = page1["next"].as_str().unwrap().to_owned();
    assert!(
        next.starts_with("/consumers?")
            && next.contains("size=2")
            && next.contains(&format!("offset={}", page1["offset"].as_str().unwrap()))
    );
    let (_, page2) = node.admin(Method::GET, &next, None).await;
    let (_, page3) = node.admin(Method::GET, page2["next"].as_str().unwrap(), None).await;
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert!(page3["next"].is_null() && page3.get("offset").is_none());
    let mut seen: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().iter().map(|c| c["username"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    assert_eq!(seen, vec!["user0", "user1", "user2", "user3", "user4"]);
    assert_eq!(node.admin(Method::GET, "/consumers?tags=even,all", None).await.1["data"].as_array().unwrap().len(), 3);
    assert_eq!(node.admin(Method::GET, "/consumers?tags=even/odd", None).await.1["data"].as_array().unwrap().len(), 5);
    assert_eq!(node.admin(Method::GET, "/consumers?size=0", None).await.1["code"], 9);
    assert_eq!(node.admin(Method::GET, "/consumers?offset=garbage", None).await.1["code"], 7);

    let (status, valid) = node.admin(Method::POST, "/schemas/routes/validate", Some(json!({"paths": ["/ok"]}))).await;
    assert_eq!((status, valid["message"].as_str()), (StatusCode::OK, Some("schema validation successful")));
    assert_eq!(
        node.admin(Method::POST, "/schemas/routes/validate", Some(json!({"paths": ["nope"]}))).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, plugin_ok) = node
        .admin(Method::POST, "/schemas/plugins/validate", Some(json!({"name": "request-termination", "config": {}})))
        .await;
    assert_eq!((status, plugin_ok["message"].as_str()), (StatusCode::OK, Some("schema validation successful")));
    let (_, schema) = node.admin(Method::GET, "/schemas/services", None).await;
    assert!(schema["fields"].as_array().unwrap().iter().any(|f| f.get("port").is_some_and(|p| p["default"] == 80)));
    node.stop().await;
}

#[tokio::test]
async fn secret_plugin_fields_are_sealed_at_rest() {
    let node = TestNode::start().await;
    let secret = "Basic c3VwZXItc2VjcmV0LWNyZWRlbnRpYWxz";
    let (status, _) = node
        .admin(
            Method::POST,
            "/plugins",
            Some(json!({"name": "oauth2-introspection", "config": {"introspection_url": "http://i/x", "authorization_value": secret}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = node.admin(Method::GET, "/plugins", None).await;
    assert_eq!(listed["data"][0]["config"]["authorization_value"], secret);
    let stored = node.db.raw_contents().await;
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "the database holds it only sealed");
    node.stop().await;
}

/// Kong's docs create everything with `curl --data`; those exact commands work, and the proxy runs what they
/// made.
#[tokio::test]
async fn kongs_documented_curl_commands_work_with_form_bodies() {
    let node = TestNode::start().await;
    let upstream = format!("{}/anything", node.echo_url());
    let (status, service) = admin_form(&node, Method::POST, "/services", &format!("name=s&url={upstream}")).await;
    assert_eq!(status, StatusCode::CREATED, "{service}");
    assert_eq!((service["host"].as_str(), service["path"].as_str()), (Some("127.0.0.1"), Some("/anything")));
    assert_eq!(service["retries"], 5, "defaults as for JSON");
    let (status, route) = admin_form(&node, Method::POST, "/services/s/routes", "paths[]=/s").await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    assert_eq!((route["paths"].clone(), route["service"]["id"].clone()), (json!(["/s"]), service["id"].clone()));
    node.wait_config().await;
    let proxied = reqwest::get(format!("{}/s/x", node.proxy_url())).await.unwrap();
    assert_eq!(proxied.status(), StatusCode::OK);
    let echoed: Value = proxied.json().await.unwrap();
    assert!(echoed["url"].as_str().is_some_and(|u| u.ends_with("/anything/x")), "{echoed}");

    let (status, plugin) = admin_form(
        &node,
        Method::POST,
        "/services/s/plugins",
        "name=oauth2-introspection&config.introspection_url=http://127.0.0.1:9/introspect\
         &config.authorization_value=Basic dXNlcjpwYXNz",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    assert_eq!(plugin["config"]["authorization_value"], "Basic dXNlcjpwYXNz");
    assert_eq!((plugin["config"]["ttl"].clone(), plugin["service"]["id"].clone()), (json!(30), service["id"].clone()));

    // Values take the schema's types; one value where an array is expected is an array; nested map keys.
    let id = plugin["id"].as_str().unwrap();
    let (status, tuned) = admin_form(
        &node,
        Method::PATCH,
        &format!("/plugins/{id}"),
        "config.ttl=60&config.hide_credentials=true&config.custom_introspection_headers.X-Tenant=t1\
         &config.custom_claims_forward=sub&tags=a&config.token_type_hint=access_token",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tuned}");
    let config = &tuned["config"];
    assert_eq!((config["ttl"].clone(), config["hide_credentials"].clone()), (json!(60), json!(true)));
    assert_eq!(config["custom_introspection_headers"], json!({"X-Tenant": "t1"}));
    assert_eq!((config["custom_claims_forward"].clone(), tuned["tags"].clone()), (json!(["sub"]), json!(["a"])));
    assert_eq!(config["introspection_url"], "http://127.0.0.1:9/introspect", "the rest of the config is kept");
    // An empty value unsets.
    let (status, unset) =
        admin_form(&node, Method::PATCH, &format!("/plugins/{id}"), "config.token_type_hint=&tags=").await;
    assert_eq!(status, StatusCode::OK, "{unset}");
    assert_eq!((unset["config"]["token_type_hint"].clone(), unset["tags"].clone()), (Value::Null, Value::Null));

    let (status, other) = admin_form(
        &node,
        Method::POST,
        "/routes",
        &format!("methods=GET&paths[1]=/a&paths[2]=/b&hosts=a.example&service.id={}", service["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_eq!((other["methods"].clone(), other["paths"].clone()), (json!(["GET"]), json!(["/a", "/b"])));
    assert_eq!(other["hosts"], json!(["a.example"]));

    // multipart/form-data (`curl -F`), a file part's content being its value.
    let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n\
        --XyZ\r\nContent-Disposition: form-data; name=\"custom_id\"; filename=\"id.txt\"\r\n\
        Content-Type: text/plain\r\n\r\nc-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\nx\r\n--XyZ--\r\n";
    let (status, consumer) =
        admin_raw(&node, "/consumers", "multipart/form-data; boundary=XyZ", multipart.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{consumer}");
    assert_eq!(
        (consumer["username"].as_str(), consumer["custom_id"].as_str(), consumer["tags"].clone()),
        (Some("alice"), Some("c-1"), json!(["x"]))
    );

    // The same rules on the core entities of the platform API.
    let (_, planes) = node.get("/v2/control-planes").await;
    let cp = planes["data"][0]["id"].as_str().unwrap().to_owned();
    let request = node
        .raw(Method::POST, &format!("/v2/control-planes/{cp}/core-entities/consumers"))
        .bearer_auth(&node.token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=bob&tags=b");
    let (status, bob) = decode(request.send().await.unwrap()).await;
    assert_eq!((status, bob["tags"].clone()), (StatusCode::CREATED, json!(["b"])), "{bob}");
    node.stop().await;
}

#[tokio::test]
async fn bad_form_bodies_get_kongs_errors() {
    let node = TestNode::start().await;
    let (status, e) = admin_form(&node, Method::POST, "/services", "host=h&port=eighty&enabled=yes").await;
    assert_eq!((status, e["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(2)), "{e}");
    assert_eq!(
        (e["fields"]["port"].as_str(), e["fields"]["enabled"].as_str()),
        (Some("expected an integer"), Some("expected a boolean"))
    );
    let (status, e) = admin_form(&node, Method::POST, "/routes", "paths=/a&paths.x=/b&paths.x=/c").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(
        e["message"], "schema violation (paths.x: given both as a value and with nested fields)",
        "a problem found twice is listed once"
    );
    let (status, e) = admin_form(&node, Method::POST, "/routes", "paths[]=/a&path_handling=v1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["fields"]["path_handling"].as_str().unwrap().starts_with("not supported by Gatehouse"), "{e}");
    let (status, e) =
        admin_raw(&node, "/services", "application/x-www-form-urlencoded", b"name=%FF&host=h".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["fields"]["body"].as_str().unwrap().contains("UTF-8"), "{e}");
    let (status, e) = admin_raw(&node, "/services", "multipart/form-data; boundary=b", b"--b\r\nbroken".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let mut big = b"host=h&name=".to_vec();
    big.resize(64 * 1024 + 1, b'a');
    let (status, _) = admin_raw(&node, "/services", "application/x-www-form-urlencoded", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, e) = admin_raw(&node, "/services", "text/plain", b"host=h".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{e}");
    assert!(e["message"].as_str().unwrap().contains("application/x-www-form-urlencoded"), "{e}");
    // `curl -X POST` with no data is an empty form, as in Kong: the entity's own rules answer.
    let bare = reqwest::Client::new().post(format!("{}/consumers", node.node.admin_url())).send().await.unwrap();
    let (status, e) = decode(bare).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["fields"]["@entity"][0].as_str().unwrap().contains("'custom_id', 'username'"), "{e}");
    let (_, services) = node.admin(Method::GET, "/services", None).await;
    assert_eq!(services["data"], json!([]), "nothing was created");
    node.stop().await;
}

/// Fields of Kong 3.x and Konnect entities that Gatehouse lacks: what Kong and decK send unset goes through,
/// a value that would change behaviour is refused by name, never as an unknown field.
#[tokio::test]
async fn kong_fields_gatehouse_lacks() {
    let node = TestNode::start().await;
    let service = node
        .admin_ok(
            Method::POST,
            "/services",
            json!({"name": "s", "host": "h", "tls_verify_depth": null, "ca_certificates": [], "client_certificate": null,
                "tls_sans": null}),
        )
        .await;
    assert!(service.get("tls_sans").is_none(), "{service}");
    let route = node
        .admin_ok(
            Method::POST,
            "/services/s/routes",
            json!({"paths": ["/r"], "snis": [], "sources": null, "destinations": [], "path_handling": "v0",
                "expression": null, "priority": 0, "response_buffering": false}),
        )
        .await;
    assert!(route.get("priority").is_none() && route.get("expression").is_none(), "{route}");
    assert_eq!((route["path_handling"].as_str(), route["response_buffering"].as_bool()), (Some("v0"), Some(false)));
    let plugin = node
        .admin_ok(
            Method::POST,
            "/plugins",
            json!({"name": "request-termination", "consumer_group": null, "partials": [], "ordering": null,
                "protocols": ["http", "https"], "instance_name": "rt"}),
        )
        .await;
    assert!(plugin.get("consumer_group").is_none() && plugin.get("partials").is_none(), "{plugin}");
    assert_eq!(plugin["protocols"], json!(["http", "https"]));

    let uuid = "0190a0a0-0000-7000-8000-000000000001";
    for (path, body, field) in [
        ("/routes", json!({"paths": ["/x"], "sources": [{"ip": "10.0.0.0/8"}]}), "sources"),
        ("/routes", json!({"expression": "http.path == \"/x\""}), "expression"),
        ("/plugins", json!({"name": "request-termination", "consumer_group": {"id": uuid}}), "consumer_group"),
        ("/plugins", json!({"name": "request-termination", "ordering": {"before": {"access": ["x"]}}}), "ordering"),
        ("/plugins", json!({"name": "request-termination", "partials": [{"id": uuid}]}), "partials"),
    ] {
        let (status, e) = node.admin(Method::POST, path, Some(body.clone())).await;
        assert_eq!((status, e["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(2)), "{body}: {e}");
        let message = e["fields"][field].as_str().unwrap_or_default();
        assert!(message.starts_with("not supported by Gatehouse"), "{body}: {e}");
    }
    node.stop().await;
}

/// Whatever GET returns, PUT takes back unchanged.
#[tokio::test]
async fn every_entity_a_get_returns_puts_back_unchanged() {
    let node = TestNode::start().await;
    let upstream = format!("{}/anything", node.echo_url());
    let (status, _) = admin_form(&node, Method::POST, "/services", &format!("name=s&url={upstream}&tags=t")).await;
    assert_eq!(status, StatusCode::CREATED);
    node.admin_ok(
        Method::POST,
        "/services/s/routes",
        json!({"name": "r", "paths": ["/r", "~/v\\d+"], "methods": ["GET"], "headers": {"x-v": ["1"]}}),
    )
    .await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "u", "custom_id": "c"})).await;
    node.admin_ok(
        Method::POST,
        "/routes/r/plugins",
        json!({"name": "oauth2-introspection", "instance_name": "intro", "config": {
            "introspection_url": "http://127.0.0.1:9/i", "authorization_value": "Basic eDp5",
            "custom_introspection_headers": {"x-api-key": "k"}, "custom_claims_forward": ["sub"]}}),
    )
    .await;
    node.admin_ok(Method::POST, "/consumers/u/plugins", json!({"name": "request-termination"})).await;
    for collection in ["services", "routes", "consumers", "plugins"] {
        let (_, list) = node.admin(Method::GET, &format!("/{collection}"), None).await;
        for listed in list["data"].as_array().unwrap() {
            let path = format!("/{collection}/{}", listed["id"].as_str().unwrap());
            let (_, got) = node.admin(Method::GET, &path, None).await;
            let (status, put) = node.admin(Method::PUT, &path, Some(got.clone())).await;
            assert_eq!(status, StatusCode::OK, "{path}: {put}");
            let without_updated = |v: &Value| {
                let mut v = v.clone();
                v.as_object_mut().unwrap().remove("updated_at");
                v
            };
            assert_eq!(without_updated(&put), without_updated(&got), "{path}");
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn kongs_rules_for_parents_empty_strings_and_repeated_parameters() {
    let node = TestNode::start().await;
    let a = node.admin_ok(Method::POST, "/services", json!({"name": "a", "host": "a.internal"})).await;
    let b = node.admin_ok(Method::POST, "/services", json!({"name": "b", "host": "b.internal"})).await;
    // The path's parent wins over the body's, as in Kong.
    let (status, route) = node
        .admin(
            Method::POST,
            "/services/a/routes",
            Some(json!({"name": "r", "paths": ["/r"], "service": {"id": b["id"]}})),
        )
        .await;
    assert_eq!((status, route["service"]["id"].clone()), (StatusCode::CREATED, a["id"].clone()), "{route}");
    let (status, route) = node
        .admin(Method::PUT, "/services/a/routes/r2", Some(json!({"paths": ["/r2"], "service": {"id": b["id"]}})))
        .await;
    assert_eq!((status, route["service"]["id"].clone()), (StatusCode::OK, a["id"].clone()), "{route}");

    for body in [json!({"username": ""}), json!({"username": "u", "custom_id": ""})] {
        let (status, e) = node.admin(Method::POST, "/consumers", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        let field = if body["username"] == "" { "username" } else { "custom_id" };
        assert_eq!(e["fields"][field], "length must be at least 1", "{e}");
    }

    let (status, e) = node.get("/v2/control-planes?page[size]=0&page[size]=0&page[size]=0&bogus=1&bogus=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let listed: Vec<(String, String)> = e["invalid_parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["field"].as_str().unwrap().to_owned(), p["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(listed.len(), 4, "each problem once: {listed:?}");
    assert_eq!(listed.iter().filter(|(f, r)| f == "page[size]" && r.contains("at most once")).count(), 1);
    node.stop().await;
}
