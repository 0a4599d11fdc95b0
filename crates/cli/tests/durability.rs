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
    assert_eq!(again["issuer"], created["issuer"], "the issuer key persisted");
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
