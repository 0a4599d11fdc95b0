//! Behaviour of the `/v1` management API over a real socket: defaults, paging, filters, sorting, labels, PUT
//! semantics, secret rotation and limits, delete guards, key rotation on algorithm change, token expiry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_model::AuthServerId;
use gatehouse_testkit::{TestNode, assert_problem};

async fn server(node: &TestNode, name: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "audience": format!("aud-{name}")});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, s) = node.post("/v1/auth-servers", body).await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    s["id"].as_str().unwrap().to_owned()
}

fn names(page: &Value) -> Vec<&str> {
    page["data"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn lists_page_filter_and_sort() {
    let node = TestNode::start().await;
    for (name, env) in [("charlie", "prod"), ("alpha", "dev"), ("bravo", "prod"), ("alphabet", "dev")] {
        server(&node, name, json!({"labels": {"env": env}, "description": format!("the {name} server")})).await;
    }
    let (_, all) = node.get("/v1/auth-servers").await;
    assert_eq!(names(&all), vec!["charlie", "alpha", "bravo", "alphabet"]);
    assert_eq!(all["meta"]["page"], json!({"number": 1, "size": 100, "total": 4}));

    let (_, page) = node.get("/v1/auth-servers?page[size]=3&page[number]=2&sort=name").await;
    assert_eq!(names(&page), vec!["charlie"]);
    assert_eq!(page["meta"]["page"], json!({"number": 2, "size": 3, "total": 4}));
    let (_, desc) = node.get("/v1/auth-servers?sort=name%20desc").await;
    assert_eq!(names(&desc), vec!["charlie", "bravo", "alphabet", "alpha"]);
    let (_, beyond) = node.get("/v1/auth-servers?page[number]=9").await;
    assert_eq!((beyond["data"].as_array().unwrap().len(), beyond["meta"]["page"]["total"].as_u64()), (0, Some(4)));

    let (_, contains) = node.get("/v1/auth-servers?filter%5Bname%5D%5Bcontains%5D=alpha").await;
    assert_eq!(names(&contains), vec!["alpha", "alphabet"]);
    let (_, eq) = node.get("/v1/auth-servers?filter[name]=alpha").await;
    assert_eq!(names(&eq), vec!["alpha"]);
    let (_, desc_filter) = node.get("/v1/auth-servers?filter[description][contains]=bravo").await;
    assert_eq!(names(&desc_filter), vec!["bravo"]);
    let (_, aud) = node.get("/v1/auth-servers?filter[audience][eq]=aud-charlie").await;
    assert_eq!(names(&aud), vec!["charlie"]);
    let (_, labels) = node.get("/v1/auth-servers?filter[labels][eq]=env:prod&sort=name").await;
    assert_eq!(names(&labels), vec!["bravo", "charlie"]);
    let id = all["data"][0]["id"].as_str().unwrap();
    let (_, by_id) = node.get(&format!("/v1/auth-servers?filter[id][eq]={id}")).await;
    assert_eq!(names(&by_id), vec!["charlie"]);
    node.stop().await;
}

#[tokio::test]
async fn auth_server_patch_merges_labels_and_rotates_keys_on_algorithm_change() {
    let node = TestNode::start().await;
    let id = server(&node, "s", json!({"labels": {"a": "1", "b": "2"}, "signing_algorithm": "ES256"})).await;
    let path = format!("/v1/auth-servers/{id}");
    let (status, patched) = node
        .patch(&path, json!({"labels": {"a": null, "c": "3"}, "description": "changed", "signing_algorithm": "EdDSA"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["labels"], json!({"b": "2", "c": "3"}));
    assert_eq!(patched["description"], "changed");
    assert_eq!(patched["signing_algorithm"], "EdDSA");
    assert_ne!(patched["updated_at"], patched["created_at"]);

    let server_id: AuthServerId = id.parse().unwrap();
    let keys = node.node.services.store.signing_keys(server_id).await.unwrap();
    assert_eq!(keys.len(), 2, "a new key for the new algorithm");
    assert_eq!((keys[0].public_jwk["alg"].as_str(), keys[0].retired_at), (Some("EdDSA"), None));
    assert_eq!(keys[1].public_jwk["alg"], "ES256");
    assert!(keys[1].retired_at.is_some(), "the old key is retired, not deleted");

    // The same algorithm again creates no key; labels: null clears them all.
    let (_, again) = node.patch(&path, json!({"signing_algorithm": "EdDSA", "labels": null})).await;
    assert_eq!(again["labels"], json!({}));
    assert_eq!(node.node.services.store.signing_keys(server_id).await.unwrap().len(), 2);
    // Read-only and computed fields cannot be patched.
    let (status, body) = node.patch(&path, json!({"issuer": "https://evil.example.com"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_problem(&body, 400);
    node.stop().await;
}

#[tokio::test]
async fn every_algorithm_is_accepted() {
    let node = TestNode::start().await;
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA"] {
        let (status, s) =
            node.post("/v1/auth-servers", json!({"name": alg, "audience": "a", "signing_algorithm": alg})).await;
        assert_eq!((status, s["signing_algorithm"].as_str()), (StatusCode::CREATED, Some(alg)));
        let keys = node.node.services.store.signing_keys(s["id"].as_str().unwrap().parse().unwrap()).await.unwrap();
        assert_eq!(keys[0].public_jwk["alg"], alg);
    }
    node.stop().await;
}

#[tokio::test]
async fn deleting_an_auth_server_needs_force_while_it_has_children() {
    let node = TestNode::start().await;
    let id = server(&node, "s", json!({})).await;
    node.post(&format!("/v1/auth-servers/{id}/scopes"), json!({"name": "x"})).await;
    let (status, body) = node.delete(&format!("/v1/auth-servers/{id}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["invalid_parameters"][0]["reason"].as_str().unwrap().contains("[1] scopes"), "{body}");
    assert_eq!(node.delete(&format!("/v1/auth-servers/{id}?force=true")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.get(&format!("/v1/auth-servers/{id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.delete(&format!("/v1/auth-servers/{id}?force=true")).await.0, StatusCode::NOT_FOUND);
    let empty = server(&node, "empty", json!({})).await;
    assert_eq!(node.delete(&format!("/v1/auth-servers/{empty}")).await.0, StatusCode::NO_CONTENT);
    node.stop().await;
}

#[tokio::test]
async fn scopes_and_claims() {
    let node = TestNode::start().await;
    let id = server(&node, "s", json!({})).await;
    let scopes = format!("/v1/auth-servers/{id}/scopes");
    let (_, scope) = node.post(&scopes, json!({"name": "read"})).await;
    assert_eq!(
        (
            scope["description"].as_str(),
            scope["default"].as_bool(),
            scope["include_in_metadata"].as_bool(),
            scope["enabled"].as_bool()
        ),
        (Some(""), Some(false), Some(false), Some(true))
    );
    let sid = scope["id"].as_str().unwrap();
    let (_, patched) = node.patch(&format!("{scopes}/{sid}"), json!({"default": true})).await;
    assert_eq!((patched["default"].as_bool(), patched["name"].as_str()), (Some(true), Some("read")));
    let (_, other) = node.post(&scopes, json!({"name": "write"})).await;
    let (status, _) = node.patch(&format!("{scopes}/{}", other["id"].as_str().unwrap()), json!({"name": "read"})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let claims = format!("/v1/auth-servers/{id}/claims");
    let (status, claim) =
        node.post(&claims, json!({"name": "tier", "value": "gold", "include_in_scopes": [sid]})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (claim["include_in_token"].as_bool(), claim["include_in_all_scopes"].as_bool(), claim["enabled"].as_bool()),
        (Some(false), Some(false), Some(true))
    );
    assert_eq!(node.post(&claims, json!({"name": "tier", "value": "x"})).await.0, StatusCode::CONFLICT);
    // The scope is in use: refused without force, and force empties the claim's list.
    let (status, body) = node.delete(&format!("{scopes}/{sid}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["invalid_parameters"][0]["reason"].as_str().unwrap().contains("[tier]"));
    assert_eq!(node.delete(&format!("{scopes}/{sid}?force=true")).await.0, StatusCode::NO_CONTENT);
    let (_, claim) = node.get(&format!("{claims}/{}", claim["id"].as_str().unwrap())).await;
    assert_eq!(claim["include_in_scopes"], json!([]));
    let (_, listed) = node.get(&format!("{claims}?filter[name][contains]=ti")).await;
    assert_eq!(listed["meta"]["page"]["total"], 1);
    assert_eq!(node.delete(&format!("{claims}/{}", claim["id"].as_str().unwrap())).await.0, StatusCode::NO_CONTENT);
    node.stop().await;
}

#[tokio::test]
async fn clients_put_patch_and_secret_rotation() {
    let node = TestNode::start().await;
    let id = server(&node, "s", json!({})).await;
    let clients = format!("/v1/auth-servers/{id}/clients");
    let (_, scope) = node.post(&format!("/v1/auth-servers/{id}/scopes"), json!({"name": "read"})).await;
    let scope_id = scope["id"].as_str().unwrap().to_owned();

    let (_, created) = node.post(&clients, json!({"name": "gen", "grant_types": ["client_credentials"]})).await;
    assert_eq!(created["access_token_duration"], 300);
    assert_eq!(created["id_token_duration"], 300);
    assert_eq!(created["response_types"], json!(["token"]));
    assert_eq!(created["labels"], json!({}));
    assert_eq!(created["allow_all_scopes"], false);

    // PUT creates with the caller's id and secret (201, secret echoed once) ...
    let legacy = "legacy_client-01";
    let body = json!({"name": "legacy", "grant_types": ["client_credentials"], "client_secret": "L".repeat(30),
        "labels": {"team": "a"}, "allow_scopes": [scope_id], "id": "ignored", "created_at": "ignored"});
    let (status, put) = node.put(&format!("{clients}/{legacy}"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{put}");
    assert_eq!((put["id"].as_str(), put["client_secret"].as_str()), (Some(legacy), Some("L".repeat(30).as_str())));
    // ... and replaces on the second call (200, no secret, created_at kept, omitted fields reset to defaults).
    let mut replacement = body;
    replacement["client_secret"] = json!("M".repeat(30));
    replacement.as_object_mut().unwrap().remove("labels");
    let (status, replaced) = node.put(&format!("{clients}/{legacy}"), replacement).await;
    assert_eq!(status, StatusCode::OK);
    assert!(replaced.get("client_secret").is_none());
    assert_eq!(replaced["created_at"], put["created_at"]);
    assert_eq!(replaced["labels"], json!({}));
    let (_, secrets) = node.get(&format!("{clients}/{legacy}/secrets")).await;
    assert_eq!(secrets["meta"]["page"]["total"], 1, "PUT replaces every secret");

    // Rotation: a second secret, then a third is refused while two are enabled.
    let secrets_path = format!("{clients}/{legacy}/secrets");
    let (status, second) = node.post(&secrets_path, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["secret"].as_str().unwrap().len(), 32);
    assert_eq!(second["enabled"], true);
    let (status, body) = node.post(&secrets_path, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_problem(&body, 403);
    let (status, disabled) = node.post(&secrets_path, json!({"enabled": false, "secret": "D".repeat(24)})).await;
    assert_eq!((status, disabled["enabled"].as_bool()), (StatusCode::CREATED, Some(false)));
    let disabled_path = format!("{secrets_path}/{}", disabled["id"].as_str().unwrap());
    assert_eq!(node.patch(&disabled_path, json!({"enabled": true})).await.0, StatusCode::FORBIDDEN);
    let (_, enabled_only) = node.get(&format!("{secrets_path}?filter[enabled]=true")).await;
    assert_eq!(enabled_only["meta"]["page"]["total"], 2);
    let old = &secrets["data"][0]["id"];
    assert_eq!(node.delete(&format!("{secrets_path}/{}", old.as_str().unwrap())).await.0, StatusCode::NO_CONTENT);
    let (status, now_enabled) = node.patch(&disabled_path, json!({"enabled": true})).await;
    assert_eq!((status, now_enabled["enabled"].as_bool()), (StatusCode::OK, Some(true)));
    assert!(now_enabled.get("secret").is_none());

    // PATCH merges, and a client_secret in it replaces every secret.
    let (status, patched) = node
        .patch(
            &format!("{clients}/{legacy}"),
            json!({"labels": {"x": "1"}, "client_secret": "P".repeat(24), "login_uri": "https://a.example.com/login"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "legacy");
    assert_eq!(patched["login_uri"], "https://a.example.com/login");
    let (_, secrets) = node.get(&secrets_path).await;
    assert_eq!(secrets["meta"]["page"]["total"], 1);
    let (_, patched) = node.patch(&format!("{clients}/{legacy}"), json!({"login_uri": null})).await;
    assert_eq!(patched["login_uri"], Value::Null);

    let (_, labelled) = node.get(&format!("{clients}?filter[labels][eq]=x:1")).await;
    assert_eq!(names(&labelled), vec!["legacy"]);
    assert_eq!(node.delete(&format!("{clients}/{legacy}")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.get(&format!("{clients}/{legacy}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.get(&secrets_path).await.0, StatusCode::NOT_FOUND);
    node.stop().await;
}

#[tokio::test]
async fn tokens_expire_and_health_needs_none() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    assert_eq!(node.get("/v1/auth-servers").await.0, StatusCode::OK);
    let (status, health) = node.call_as(None, Method::GET, "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (StatusCode::OK, Some("ok")));
    node.clock.as_ref().unwrap().advance_secs(91 * 86_400);
    let (status, body) = node.get("/v1/auth-servers").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a 90-day token is refused on day 91");
    assert_eq!(body["title"], "Unauthorized");
    node.stop().await;
}

#[tokio::test]
async fn trailing_slashes_and_bearer_case() {
    let node = TestNode::start().await;
    let res = node
        .raw(Method::GET, "/v1/auth-servers/")
        .header("authorization", format!("bearer {}", node.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    node.stop().await;
}
