//! Kong's `acls` entity on the Admin API and Konnect's core entities: every endpoint, Kong's 400, 404 and 409
//! bodies, the cascade from a consumer, and the `acl` plugin's schema errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, decode};

const ZERO: &str = "00000000-0000-0000-0000-000000000000";

async fn admin_form(node: &TestNode, method: Method, path: &str, form: &str) -> (StatusCode, Value) {
    let request = reqwest::Client::new()
        .request(method, format!("{}{path}", node.node.admin_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    decode(request.send().await.unwrap()).await
}

fn groups(list: &Value) -> Vec<String> {
    let mut g: Vec<String> =
        list["data"].as_array().unwrap().iter().map(|a| a["group"].as_str().unwrap().to_owned()).collect();
    g.sort();
    g
}

#[tokio::test]
async fn acls_under_a_consumer_by_group_or_id() {
    let node = TestNode::start().await;
    let bob = node.admin_ok(Method::POST, "/consumers", json!({"username": "bob"})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "alice"})).await;
    let bob_id = bob["id"].as_str().unwrap();

    let (status, acl) = node.admin(Method::POST, "/consumers/bob/acls", Some(json!({"group": "admins"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{acl}");
    let mut keys: Vec<&str> = acl.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["consumer", "created_at", "group", "id", "tags"], "Kong's acls have no updated_at");
    assert_eq!((acl["consumer"].clone(), acl["group"].clone()), (json!({"id": bob_id}), json!("admins")));
    let acl_id = acl["id"].as_str().unwrap().to_owned();

    // Kong's 409 on the cache key (consumer, group); the same group for another consumer is fine.
    let (status, dup) = node.admin(Method::POST, "/consumers/bob/acls", Some(json!({"group": "admins"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        dup,
        json!({"code": 5, "name": "unique constraint violation",
            "message": format!("UNIQUE violation detected on '{{consumer={{id=\"{bob_id}\"}},group=\"admins\"}}'")})
    );
    node.admin_ok(Method::POST, "/consumers/alice/acls", json!({"group": "admins"})).await;

    // A body without group; a form body as `curl --data` sends it; the path's consumer wins over the body's.
    let (status, e) = node.admin(Method::POST, "/consumers/bob/acls", Some(json!({}))).await;
    assert_eq!((status, e["fields"].clone()), (StatusCode::BAD_REQUEST, json!({"group": "required field missing"})));
    let (status, form) = admin_form(&node, Method::POST, "/consumers/bob/acls", "group=from-a-form").await;
    assert_eq!((status, form["group"].as_str()), (StatusCode::CREATED, Some("from-a-form")));
    let alice_id = node.admin(Method::GET, "/consumers/alice", None).await.1["id"].clone();
    let (_, elsewhere) = node
        .admin(Method::POST, "/consumers/bob/acls", Some(json!({"group": "g", "consumer": {"id": alice_id}})))
        .await;
    assert_eq!(elsewhere["consumer"]["id"], bob_id);

    // Reads: by id or group, only under the consumer that has it.
    assert_eq!(node.admin(Method::GET, "/consumers/bob/acls/admins", None).await.1["id"], acl_id.as_str());
    assert_eq!(node.admin(Method::GET, &format!("/consumers/{bob_id}/acls/{acl_id}"), None).await.0, StatusCode::OK);
    let (status, missing) = node.admin(Method::GET, &format!("/consumers/alice/acls/{acl_id}"), None).await;
    assert_eq!((status, missing), (StatusCode::NOT_FOUND, json!({"message": "Not found"})));
    assert_eq!(node.admin(Method::GET, "/consumers/bob/acls/nobody", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::GET, "/consumers/nobody/acls", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(groups(&node.admin(Method::GET, "/consumers/bob/acls", None).await.1), ["admins", "from-a-form", "g"]);

    // PUT by group: creates it (the path names the group), then keeps its id.
    let (status, pro) = node.admin(Method::PUT, "/consumers/bob/acls/pro", Some(json!({}))).await;
    assert_eq!((status, pro["group"].as_str()), (StatusCode::OK, Some("pro")), "{pro}");
    let (_, again) = node.admin(Method::PUT, "/consumers/bob/acls/pro", Some(json!({"tags": ["t"]}))).await;
    assert_eq!((again["id"].clone(), again["tags"].clone()), (pro["id"].clone(), json!(["t"])));
    let (status, e) = node.admin(Method::PUT, "/consumers/bob/acls/pro", Some(json!({"group": 1}))).await;
    assert_eq!((status, e["fields"].clone()), (StatusCode::BAD_REQUEST, json!({"group": "expected a string"})));

    // PATCH by id or group.
    let (status, renamed) =
        node.admin(Method::PATCH, &format!("/consumers/bob/acls/{acl_id}"), Some(json!({"group": "updated"}))).await;
    assert_eq!((status, renamed["group"].as_str()), (StatusCode::OK, Some("updated")));
    assert_eq!(renamed["created_at"], acl["created_at"]);
    let (status, e) = node.admin(Method::PATCH, "/consumers/bob/acls/updated", Some(json!({"group": 1}))).await;
    assert_eq!((status, e["fields"].clone()), (StatusCode::BAD_REQUEST, json!({"group": "expected a string"})));

    // DELETE: by group, by id; Kong's 404 for what the consumer does not have.
    assert_eq!(node.admin(Method::DELETE, "/consumers/bob/acls/blah", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::DELETE, &format!("/consumers/bob/acls/{ZERO}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.admin(Method::DELETE, "/consumers/bob/acls/pro", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        node.admin(Method::DELETE, &format!("/consumers/bob/acls/{acl_id}"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(groups(&node.admin(Method::GET, "/consumers/bob/acls", None).await.1), ["from-a-form", "g"]);

    // Deleting the consumer deletes its acls (Kong's cascade), and leaves others'.
    assert_eq!(node.admin(Method::DELETE, "/consumers/bob", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(groups(&node.admin(Method::GET, "/acls", None).await.1), ["admins"]);
    node.stop().await;
}

#[tokio::test]
async fn the_acls_collection_and_core_entities() {
    let node = TestNode::start().await;
    let carol = node.admin_ok(Method::POST, "/consumers", json!({"username": "carol"})).await;
    let carol_id = carol["id"].as_str().unwrap();

    let (status, e) = node.admin(Method::POST, "/acls", Some(json!({"group": "g"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["message"], "schema violation (consumer: required field missing)");
    let (status, e) = node.admin(Method::POST, "/acls", Some(json!({"group": "g", "consumer": {"id": ZERO}}))).await;
    assert_eq!(
        (status, e["code"].as_u64(), e["name"].as_str()),
        (StatusCode::BAD_REQUEST, Some(4), Some("foreign key violation"))
    );
    assert_eq!(
        e["message"],
        format!("the foreign key '{{id=\"{ZERO}\"}}' does not reference an existing 'consumers' entity.")
    );

    let (status, acl) =
        node.admin(Method::POST, "/acls", Some(json!({"group": "test-group", "consumer": {"id": carol_id}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{acl}");
    let id = acl["id"].as_str().unwrap();
    assert_eq!(node.admin(Method::GET, &format!("/acls/{id}"), None).await.1, acl);
    assert_eq!(node.admin(Method::GET, &format!("/acls/{id}/consumer"), None).await.1["username"], "carol");
    assert_eq!(node.admin(Method::GET, "/acls/test-group", None).await.0, StatusCode::NOT_FOUND, "ids only");
    let (status, patched) = node.admin(Method::PATCH, &format!("/acls/{id}"), Some(json!({"tags": ["a"]}))).await;
    assert_eq!((status, patched["tags"].clone()), (StatusCode::OK, json!(["a"])));
    let put_id = "5e3e0c9b-3b6f-4e5b-9a6e-0e8b7c0c0c02";
    let (status, put) = node
        .admin(Method::PUT, &format!("/acls/{put_id}"), Some(json!({"group": "other", "consumer": {"id": carol_id}})))
        .await;
    assert_eq!((status, put["id"].as_str()), (StatusCode::OK, Some(put_id)));
    let (status, e) = node.admin(Method::PUT, &format!("/acls/{put_id}"), Some(json!({"group": "other"}))).await;
    assert_eq!(
        (status, e["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("schema violation (consumer: required field missing)"))
    );
    assert_eq!(groups(&node.admin(Method::GET, "/acls?tags=a", None).await.1), ["test-group"]);
    let (_, page) = node.admin(Method::GET, "/acls?size=1", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert!(page["offset"].is_string(), "{page}");
    assert_eq!(node.admin(Method::DELETE, &format!("/acls/{id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.admin(Method::GET, "/schemas/acls", None).await.0, StatusCode::OK);

    // Konnect's core entities for another control plane: the same handlers.
    let (_, cp) = node.post("/v2/control-planes", json!({"name": "other"})).await;
    let base = format!("/v2/control-planes/{}/core-entities", cp["id"].as_str().unwrap());
    let (status, _) = node.post(&format!("{base}/consumers"), json!({"username": "dave"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, acl) = node.post(&format!("{base}/consumers/dave/acls"), json!({"group": "admins"})).await;
    assert_eq!(status, StatusCode::CREATED, "{acl}");
    assert_eq!(node.get(&format!("{base}/consumers/dave/acls/admins")).await.1["id"], acl["id"]);
    assert_eq!(groups(&node.get(&format!("{base}/acls")).await.1), ["admins"]);
    assert_eq!(groups(&node.admin(Method::GET, "/acls", None).await.1), ["other"], "control planes stay apart");
    assert_eq!(node.delete(&format!("{base}/consumers/dave/acls/admins")).await.0, StatusCode::NO_CONTENT);
    node.stop().await;
}

/// The `acl` plugin's configuration errors, as Kong words them (Admin API; decK validates with the same schema).
#[tokio::test]
async fn acl_plugin_configs_are_refused_with_kongs_400() {
    let node = TestNode::start().await;
    let (status, neither) = node.admin(Method::POST, "/plugins", Some(json!({"name": "acl", "config": {}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        neither,
        json!({"code": 2, "name": "schema violation",
            "message": "schema violation (at least one of these fields must be non-empty: 'config.allow', 'config.deny')",
            "fields": {"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]}})
    );
    let (status, both) = node
        .admin(Method::POST, "/plugins", Some(json!({"name": "acl", "config": {"allow": ["a"], "deny": ["b"]}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        both["fields"],
        json!({"@entity": ["exactly one of these fields must be non-empty: 'config.allow', 'config.deny'"]})
    );
    let consumer = node.admin_ok(Method::POST, "/consumers", json!({"username": "erin"})).await;
    let (status, scoped) = node
        .admin(Method::POST, "/consumers/erin/plugins", Some(json!({"name": "acl", "config": {"allow": ["a"]}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(scoped["fields"]["consumer"], "value must be null; the acl plugin cannot be applied to a consumer");
    assert!(consumer["id"].is_string());
    let (status, typed) = node
        .admin(
            Method::POST,
            "/plugins",
            Some(json!({"name": "acl", "config": {"allow": ["a"], "hide_groups_header": "x"}})),
        )
        .await;
    assert_eq!(
        (status, typed["fields"].clone()),
        (StatusCode::BAD_REQUEST, json!({"config": {"hide_groups_header": "expected a boolean"}}))
    );
    let (status, enterprise) = node
        .admin(
            Method::POST,
            "/plugins",
            Some(json!({"name": "acl", "config": {"allow": ["a"], "include_consumer_groups": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let refusal = enterprise["fields"]["config"]["include_consumer_groups"].as_str().unwrap();
    assert!(refusal.starts_with("not supported by Gatehouse"), "{enterprise}");
    let (status, created) =
        node.admin(Method::POST, "/plugins", Some(json!({"name": "acl", "config": {"deny": ["x"]}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["config"],
        json!({"allow": null, "deny": ["x"], "hide_groups_header": false, "always_use_authenticated_groups": false})
    );
    assert_eq!(created["protocols"], json!(["grpc", "grpcs", "http", "https"]));
    let (status, schema) = node.admin(Method::GET, "/schemas/plugins/acl", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = schema.to_string();
    assert!(text.contains("hide_groups_header") && !text.contains("include_consumer_groups"), "{text}");
    node.stop().await;
}
