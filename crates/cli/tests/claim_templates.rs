//! Templated claims end to end over real sockets: the examples of Kong Identity's documentation (reference §5.2)
//! created through the management API and read back from a minted token, the `test-claim` endpoint, parse
//! errors refused at create/patch with their position, and a render failure turning the token request into
//! `server_error`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, Tutorial, assert_problem};

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn add_claim(node: &TestNode, t: &Tutorial, name: &str, value: &str) -> (StatusCode, Value) {
    node.post(
        &format!("/v1/auth-servers/{}/claims", t.server_id),
        json!({"name": name, "value": value, "include_in_token": true, "include_in_all_scopes": true}),
    )
    .await
}

async fn mint(node: &TestNode, t: &Tutorial) -> (StatusCode, Value) {
    node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await
}

const EXAMPLES: &[(&str, &str)] = &[
    ("uuid", "${ uuidv4 }"),
    ("client_name", "${ .Client.Name }"),
    ("issued", "${ now | date \"2006-01-02T15:04:05Z07:00\" }"),
    ("environment", "${ .Client.Labels.environment | default \"production\" }"),
    ("loud_name", "${ upper .Client.Name }"),
    ("nonce", "${ randAlphaNum 16 }"),
    ("aud_client", "${ .AuthServer.Audience }-${ .Client.ID }"),
    ("groups", "${ list (.Client.Labels.groups | default \"\") | compact }"),
    ("tier", "${ .Client.Labels.tier | default \"3\" | atoi }"),
    ("static_json", "[\"a\",1]"),
];

#[tokio::test]
async fn reference_examples_through_a_minted_token() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    for (name, value) in EXAMPLES {
        let (status, body) = add_claim(&node, &t, name, value).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body["value"], *value, "stored as written");
    }

    let (status, body) = mint(&node, &t).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = payload(body["access_token"].as_str().unwrap());
    let uuid: uuid::Uuid = claims["uuid"].as_str().unwrap().parse().unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(claims["client_name"], "Client");
    let issued = claims["issued"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(issued, &time::format_description::well_known::Rfc3339).is_ok(), "{issued}");
    assert!(issued.ends_with('Z'));
    assert_eq!(claims["environment"], "production", "a missing label renders empty, so default applies");
    assert_eq!(claims["loud_name"], "CLIENT");
    let nonce = claims["nonce"].as_str().unwrap();
    assert!(nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_alphanumeric()), "{nonce}");
    assert_eq!(claims["aud_client"], format!("http://myhttpbin.dev-{}", t.client_id));
    assert_eq!(claims["groups"], json!([]), "a JSON array, empty without the label");
    assert_eq!(claims["tier"], 3, "numbers are inferred");
    assert_eq!(claims["static_json"], json!(["a", 1]));
    // Registered claims are untouched.
    assert_eq!(claims["client_id"], t.client_id.as_str());

    // Rendered at every mint: a new uuid each time; labels changed on the client show up in the next token.
    let (status, _) = node
        .patch(
            &format!("/v1/auth-servers/{}/clients/{}", t.server_id, t.client_id),
            json!({"labels": {"environment": "staging", "groups": "suspended"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = mint(&node, &t).await;
    let again = payload(body["access_token"].as_str().unwrap());
    assert_ne!(again["uuid"], claims["uuid"]);
    assert_eq!(again["environment"], "staging");
    assert_eq!(again["groups"], json!(["suspended"]));

    // Introspection answers with the token's claims as minted.
    let introspection =
        node.introspect(&t.issuer, &t.client_id, &t.client_secret, body["access_token"].as_str().unwrap()).await;
    assert_eq!(introspection["uuid"], again["uuid"]);
    node.stop().await;
}

#[tokio::test]
async fn test_claim_endpoint_renders_for_a_client() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    let path = format!("/v1/auth-servers/{}/clients/{}/test-claim", t.server_id, t.client_id);
    let (status, body) = node
        .post(
            &path,
            json!({"destination": "anywhere", "uuid": "${ uuidv4 }", "alt_scopes": "${ list \"openid\" \"profile\" }",
                "count": "${ len .Client.GrantTypes }"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["destination"], "anywhere");
    assert!(uuid::Uuid::parse_str(body["uuid"].as_str().unwrap()).is_ok());
    assert_eq!(body["alt_scopes"], json!(["openid", "profile"]));
    assert_eq!(body["count"], 1);

    let (status, body) = node.post(&path, json!({"bad": "x ${ nosuch 1 }"})).await;
    assert_problem(&body, 400);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["invalid_parameters"][0]["field"], "bad");
    assert!(body["invalid_parameters"][0]["reason"].as_str().unwrap().contains("position 3"), "{body}");
    let (status, body) = node.post(&path, json!({"boom": "${ div 1 0 }"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["invalid_parameters"][0]["reason"].as_str().unwrap().contains("divide by zero"));
    let (status, _) = node.post(&path, json!({"n": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let missing = format!("/v1/auth-servers/{}/clients/nosuchclient/test-claim", t.server_id);
    let (status, _) = node.post(&missing, json!({"a": "b"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    node.stop().await;
}

#[tokio::test]
async fn parse_errors_are_refused_with_their_position() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    let (status, body) = add_claim(&node, &t, "bad", "ok ${ .Client.Name | }").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_problem(&body, 400);
    let param = &body["invalid_parameters"][0];
    assert_eq!(param["field"], "value");
    assert!(param["reason"].as_str().unwrap().starts_with("template error at position 4:"), "{param}");
    let (status, body) = add_claim(&node, &t, "unclosed", "${ if .Client.Name }x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["invalid_parameters"][0]["reason"].as_str().unwrap().contains("position 1"), "{body}");

    let (status, claim) = add_claim(&node, &t, "fine", "${ .Client.Name }").await;
    assert_eq!(status, StatusCode::CREATED);
    let claim_path = format!("/v1/auth-servers/{}/claims/{}", t.server_id, claim["id"].as_str().unwrap());
    let (status, body) = node.patch(&claim_path, json!({"value": "${ end }"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, unchanged) = node.get(&claim_path).await;
    assert_eq!(unchanged["value"], "${ .Client.Name }");
    node.stop().await;
}

#[tokio::test]
async fn a_failing_template_fails_the_token_request() {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    let (status, claim) = add_claim(&node, &t, "boom", "${ div 1 0 }").await;
    assert_eq!(status, StatusCode::CREATED, "parses; fails only when rendered");
    let (status, body) = mint(&node, &t).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"], "server_error");
    assert!(!body["error_description"].as_str().unwrap().contains("divide"), "internals are not echoed");
    let (status, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");

    // Bounded: a runaway loop fails the same way instead of spinning.
    let claim_path = format!("/v1/auth-servers/{}/claims/{}", t.server_id, claim["id"].as_str().unwrap());
    let (status, _) =
        node.patch(&claim_path, json!({"value": "${ range until 1000 }${ range until 1000 }${ end }${ end }"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = mint(&node, &t).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");

    let (status, _) = node.patch(&claim_path, json!({"value": "${ add 1 2 }"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = mint(&node, &t).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(payload(body["access_token"].as_str().unwrap())["boom"], 3);
    node.stop().await;
}
