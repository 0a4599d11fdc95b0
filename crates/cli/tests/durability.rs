//! Nothing acknowledged is lost: an entity created right before `kill -9` is there after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::ProcessEnv;
use gatehouse_store::testing::TestDatabase;

async fn survives_kill_9(db: TestDatabase) {
    let env = ProcessEnv::for_db(&db);
    let token = env.create_token("durability").await;
    let http = reqwest::Client::new();
    let (mut first, base) = env.serve(&[]).await;
    let res = http
        .post(format!("{base}/v1/auth-servers"))
        .bearer_auth(&token)
        .json(&json!({"name": "durable", "audience": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let sid = created["id"].as_str().unwrap().to_owned();
    let res = http
        .post(format!("{base}/v1/auth-servers/{sid}/clients"))
        .bearer_auth(&token)
        .json(&json!({"name": "c", "grant_types": ["client_credentials"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let client: Value = res.json().await.unwrap();
    first.kill_hard().await;

    let (mut second, base) = env.serve(&[]).await;
    let res = http.get(format!("{base}/v1/auth-servers/{sid}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let again: Value = res.json().await.unwrap();
    let key = |v: &Value| v["issuer"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    assert_eq!(key(&again), key(&created), "the issuer key persisted");
    let path = format!("{base}/v1/auth-servers/{sid}/clients/{}", client["id"].as_str().unwrap());
    assert_eq!(http.get(path).bearer_auth(&token).send().await.unwrap().status(), StatusCode::OK);
    second.kill_hard().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_keeps_acknowledged_writes_across_kill_9() {
    survives_kill_9(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn postgres_keeps_acknowledged_writes_across_kill_9() {
    if let Some(db) = TestDatabase::postgres() {
        survives_kill_9(db).await;
    }
}

/// A token minted just before `kill -9` is listed and revocable after the restart.
async fn token_records_survive_kill_9(db: TestDatabase) {
    let env = ProcessEnv::for_db(&db).with("GATEHOUSE_IDENTITY_PUBLIC_URL", "http://issuer.gatehouse.test");
    let token = env.create_token("records").await;
    let http = reqwest::Client::new();
    let (mut first, base) = env.serve(&[]).await;
    let issuer_listener = format!("http://{}", first.listener_address("issuer").await);
    let post = |path: String, body: Value| http.post(format!("{base}{path}")).bearer_auth(&token).json(&body).send();
    let server: Value =
        post("/v1/auth-servers".into(), json!({"name": "s", "audience": "a"})).await.unwrap().json().await.unwrap();
    let sid = server["id"].as_str().unwrap().to_owned();
    let client: Value =
        post(format!("/v1/auth-servers/{sid}/clients"), json!({"name": "c", "grant_types": ["client_credentials"]}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let (id, secret) =
        (client["id"].as_str().unwrap().to_owned(), client["client_secret"].as_str().unwrap().to_owned());
    let issuer = server["issuer"].as_str().unwrap().replace("http://issuer.gatehouse.test", &issuer_listener);
    let res = http
        .post(format!("{issuer}/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let minted: Value = res.json().await.unwrap();
    first.kill_hard().await;

    let (mut second, base) = env.serve(&[]).await;
    let issuer_listener = format!("http://{}", second.listener_address("issuer").await);
    let issuer = server["issuer"].as_str().unwrap().replace("http://issuer.gatehouse.test", &issuer_listener);
    let records = format!("{base}/v1/auth-servers/{sid}/clients/{id}/tokens");
    let listed: Value = http.get(&records).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["meta"]["page"]["total"], 1, "the record of the token issued before kill -9 is there");
    let jti = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let introspect = || {
        http.post(format!("{issuer}/introspect"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", minted["access_token"].as_str().unwrap())])
            .send()
    };
    let before: Value = introspect().await.unwrap().json().await.unwrap();
    assert_eq!(before["active"], true);
    assert_eq!(before["jti"], jti.as_str());
    let revoked = http.delete(format!("{records}/{jti}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let after: Value = introspect().await.unwrap().json().await.unwrap();
    assert_eq!(after, json!({"active": false}));
    second.kill_hard().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_keeps_token_records_across_kill_9() {
    token_records_survive_kill_9(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn postgres_keeps_token_records_across_kill_9() {
    if let Some(db) = TestDatabase::postgres() {
        token_records_survive_kill_9(db).await;
    }
}
