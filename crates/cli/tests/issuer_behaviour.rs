//! Issuer behaviour: claim inclusion rules, default scopes, key rotation (with the test clock), revocation and
//! token records, clients re-created under an old id, ES256 signature malleability, CORS, discovery locations and
//! host-based issuers. Brute-force limits have their own file, `issuer_brute_force.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, Tutorial};

fn payload(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

async fn mint(node: &TestNode, t: &Tutorial, scope: Option<&str>) -> String {
    let (status, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, scope).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn claim_inclusion_rules_and_default_scopes() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    let claims = format!("/v1/auth-servers/{}/claims", t.server_id);
    let scopes = format!("/v1/auth-servers/{}/scopes", t.server_id);
    for (name, value, all, scoped, in_token, enabled) in [
        ("always", "1", true, false, true, true),
        ("when-no-scope", "[\"a\",\"b\"]", false, false, true, true),
        ("never", "x", false, false, false, true),
        ("disabled", "x", true, false, true, false),
        ("json-object", "{\"tier\":\"gold\"}", false, true, true, true),
    ] {
        let body = json!({"name": name, "value": value, "include_in_token": in_token, "include_in_all_scopes": all,
            "include_in_scopes": if scoped { json!([t.scope_id]) } else { json!([]) }, "enabled": enabled});
        assert_eq!(node.post(&claims, body).await.0, StatusCode::CREATED);
    }
    let none = payload(&mint(&node, &t, None).await);
    assert_eq!(none["scope"], "");
    assert_eq!((none["always"].clone(), none["when-no-scope"].clone()), (json!(1), json!(["a", "b"])));
    for absent in ["never", "disabled", "json-object", "test-claim"] {
        assert!(none.get(absent).is_none(), "{absent}");
    }
    let scoped = payload(&mint(&node, &t, Some("my-scope")).await);
    assert_eq!((scoped["always"].clone(), scoped["test-claim"].clone()), (json!(1), json!("test")));
    assert_eq!(scoped["json-object"], json!({"tier": "gold"}));
    assert!(scoped.get("when-no-scope").is_none());

    // A default scope the client may use is granted unrequested, and then "no scopes" no longer holds.
    let (_, base) = node.post(&scopes, json!({"name": "base", "default": true})).await;
    node.patch(
        &format!("/v1/auth-servers/{}/clients/{}", t.server_id, t.client_id),
        json!({"allow_scopes": [t.scope_id, base["id"]]}),
    )
    .await;
    let defaulted = payload(&mint(&node, &t, None).await);
    assert_eq!(defaulted["scope"], "base");
    assert!(defaulted.get("when-no-scope").is_none());
    assert_eq!(payload(&mint(&node, &t, Some("my-scope")).await)["scope"], "my-scope base");
    node.stop().await;
}

async fn jwks_kids(issuer: &str) -> Vec<String> {
    let jwks: Value = reqwest::get(format!("{issuer}/.well-known/jwks")).await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn rotated_keys_verify_until_their_tokens_expire() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("RS256").await;
    let old = mint(&node, &t, Some("my-scope")).await;
    assert_eq!(jwks_kids(&t.issuer).await, vec![kid(&old)]);

    clock.advance_secs(10);
    let (status, rotated) = node.post(&format!("/v1/auth-servers/{}/keys/rotate", t.server_id), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new = mint(&node, &t, Some("my-scope")).await;
    assert_eq!(kid(&new), rotated["id"].as_str().unwrap());
    assert_ne!(kid(&new), kid(&old));
    let mut published = jwks_kids(&t.issuer).await;
    published.sort();
    let mut both = vec![kid(&old), kid(&new)];
    both.sort();
    assert_eq!(published, both, "the old key stays while its token lives");
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &old).await["active"], true);
    let (_, keys) = node.get(&format!("/v1/auth-servers/{}/keys", t.server_id)).await;
    assert_eq!(
        keys["data"].as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect::<Vec<_>>(),
        vec!["current", "retired"]
    );

    // Past the old token's expiry (and the leeway) the old key leaves JWKS; the new token still works.
    clock.advance_secs(3600 - 10 + 31);
    assert_eq!(jwks_kids(&t.issuer).await, vec![kid(&new)]);
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &old).await, json!({"active": false}));
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &new).await["active"], true);

    // Changing the algorithm rotates too.
    let (_, patched) =
        node.patch(&format!("/v1/auth-servers/{}", t.server_id), json!({"signing_algorithm": "EdDSA"})).await;
    assert_eq!(patched["signing_algorithm"], "EdDSA");
    let eddsa = mint(&node, &t, None).await;
    assert_eq!(jsonwebtoken::decode_header(&eddsa).unwrap().alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(jwks_kids(&t.issuer).await.len(), 2);
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &new).await["active"], true);
    node.stop().await;
}

#[tokio::test]
async fn token_records_list_and_revoke() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    let records = format!("/v1/auth-servers/{}/clients/{}/tokens", t.server_id, t.client_id);
    let first = mint(&node, &t, Some("my-scope")).await;
    let second = mint(&node, &t, None).await;
    let (status, listed) = node.get(&records).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["meta"]["page"]["total"], 2);
    let record = &listed["data"][0];
    assert_eq!(record["id"], payload(&first)["jti"]);
    assert_eq!(record["granted_scope_names"], json!(["my-scope"]));
    assert!(record["created_at"].is_string() && record["expires_at"].is_string());
    let (_, one) = node.get(&format!("{records}/{}", record["id"].as_str().unwrap())).await;
    assert_eq!(&one, record);
    let (_, by_expiry) = node.get(&format!("{records}?sort=expires_at%20desc&page[size]=1")).await;
    assert_eq!(by_expiry["data"][0]["id"], payload(&second)["jti"]);

    // Revoking a record is seen by introspection at once.
    assert_eq!(node.delete(&format!("{records}/{}", record["id"].as_str().unwrap())).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &first).await, json!({"active": false}));
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &second).await["active"], true);
    assert_eq!(node.delete(&format!("{records}/{}", record["id"].as_str().unwrap())).await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.delete(&records).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &second).await, json!({"active": false}));
    assert_eq!(node.get(&records).await.1["meta"]["page"]["total"], 0);
    assert_eq!(node.get(&format!("{records}/not-a-uuid")).await.0, StatusCode::BAD_REQUEST);
    node.stop().await;
}

#[tokio::test]
async fn a_recreated_client_id_does_not_revive_old_tokens() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    let path = format!("/v1/auth-servers/{}/clients/legacy", t.server_id);
    let secret = "R".repeat(30);
    let body = json!({"name": "legacy", "grant_types": ["client_credentials"], "client_secret": secret, "allow_scopes": [t.scope_id]});
    assert_eq!(node.put(&path, body.clone()).await.0, StatusCode::CREATED);
    let (_, old) = node.token(&t.issuer, "legacy", &secret, None).await;
    let old = old["access_token"].as_str().unwrap().to_owned();
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &old).await["active"], true);

    assert_eq!(node.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &old).await, json!({"active": false}));
    assert_eq!(node.put(&path, body).await.0, StatusCode::CREATED, "the same id and secret again");
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &old).await, json!({"active": false}));
    let (_, fresh) = node.token(&t.issuer, "legacy", &secret, None).await;
    assert_eq!(
        node.introspect(&t.issuer, &t.client_id, &t.client_secret, fresh["access_token"].as_str().unwrap()).await["active"],
        true
    );
    node.stop().await;
}

/// The same token with its ES256 signature's S replaced by n − S: the signature's other valid form.
fn malleated(token: &str) -> String {
    let (signed, encoded) = token.rsplit_once('.').unwrap();
    let signature = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
    let twin = p256::ecdsa::Signature::from_scalars(signature.r(), -signature.s()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(twin.to_bytes()))
}

#[tokio::test]
async fn es256_tokens_are_accepted_in_their_low_s_form_only() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    for _ in 0..4 {
        let token = mint(&node, &t, None).await;
        assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &token).await["active"], true);
        let twin = malleated(&token);
        assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &twin).await, json!({"active": false}));
        let userinfo =
            reqwest::Client::new().get(format!("{}/userinfo", t.issuer)).bearer_auth(&twin).send().await.unwrap();
        assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    }
    node.stop().await;
}

#[tokio::test]
async fn cors_discovery_locations_and_host_based_issuers() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    node.patch(&format!("/v1/auth-servers/{}", t.server_id), json!({"trusted_origins": ["https://app.example.com"]}))
        .await;
    node.patch(
        &format!("/v1/auth-servers/{}/scopes/{}", t.server_id, t.scope_id),
        json!({"include_in_metadata": true}),
    )
    .await;
    let http = reqwest::Client::new();

    let res = http
        .get(format!("{}/.well-known/jwks", t.issuer))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(res.headers()["vary"], "Origin");
    let res = http
        .get(format!("{}/.well-known/jwks", t.issuer))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{}/oauth/token", t.issuer))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers()["access-control-allow-methods"], "GET, POST, OPTIONS");
    assert_eq!(preflight.headers()["access-control-allow-headers"], "Authorization, Content-Type");

    let oidc: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", t.issuer)).await.unwrap().json().await.unwrap();
    let oauth: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", t.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (origin, key) = t.issuer.rsplit_once('/').unwrap();
    let rfc8414: Value = reqwest::get(format!("{origin}/.well-known/oauth-authorization-server/{key}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc, oauth);
    assert_eq!(oidc, rfc8414);
    assert_eq!(oidc["scopes_supported"], json!(["my-scope"]));
    assert_eq!(oidc["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(oidc["token_endpoint"], format!("{}/oauth/token", t.issuer));
    assert_eq!(oidc["id_token_signing_alg_values_supported"], json!(["ES256"]));
    node.stop().await;

    // Host-based: the key is the first label of Host.
    let node = TestNode::builder()
        .configure(|c| c.identity_public_url = Some("https://{key}.id.example.com".into()))
        .start()
        .await
        .unwrap();
    let t = node.tutorial_setup("ES256").await;
    let key = t.issuer.trim_start_matches("https://").split('.').next().unwrap().to_owned();
    assert_eq!(t.issuer, format!("https://{key}.id.example.com"));
    let listener = node.node.issuer_listener_url();
    let res = http
        .post(format!("{listener}/oauth/token"))
        .header("host", format!("{key}.id.example.com"))
        .form(&[("grant_type", "client_credentials"), ("client_id", &t.client_id), ("client_secret", &t.client_secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(payload(body["access_token"].as_str().unwrap())["iss"], t.issuer.as_str());
    let wrong_host =
        http.post(format!("{listener}/oauth/token")).header("host", "evil.example.com").send().await.unwrap();
    assert_eq!(wrong_host.status(), StatusCode::NOT_FOUND);
    node.stop().await;
}
