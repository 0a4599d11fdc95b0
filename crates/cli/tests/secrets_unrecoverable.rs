//! A client secret is shown once and is unrecoverable afterwards: no API response, no log line (even at debug
//! level) and no byte of the database holds it. The same goes for personal access tokens. The IdP credentials of
//! `oauth2-introspection` (its authorization value and custom header values) are returned by the Admin API, as Kong
//! does, but never stored or logged readable, and the tokens it checks are never logged, even when the IdP's error
//! page repeats them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::ProcessEnv;
use gatehouse_store::testing::TestDatabase;

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    /// Every response body seen after the secrets were created.
    seen: Vec<String>,
}

impl Api {
    async fn send(&mut self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        self.seen.push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn secrets_never_reappear(db: TestDatabase) {
    let env = ProcessEnv::for_db(&db).with("GATEHOUSE_LOG__LEVEL", "trace");
    let token = env.create_token("secret-test").await;
    let (mut process, base) = env.serve(&[]).await;
    let mut api = Api { base, token: token.clone(), http: reqwest::Client::new(), seen: Vec::new() };
    use reqwest::Method as M;

    let (_, server) = api.send(M::POST, "/v1/auth-servers", Some(json!({"name": "s", "audience": "a"}))).await;
    let sid = server["id"].as_str().unwrap().to_owned();
    let clients = format!("/v1/auth-servers/{sid}/clients");
    let mut secrets = Vec::new();

    let (status, created) =
        api.send(M::POST, &clients, Some(json!({"name": "generated", "grant_types": ["client_credentials"]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let generated_id = created["id"].as_str().unwrap().to_owned();
    secrets.push(created["client_secret"].as_str().unwrap().to_owned());

    let chosen = "Chosen-Secret_0123456789abcdefXYZ".to_owned();
    let (status, _) = api
        .send(
            M::PUT,
            &format!("{clients}/imported-client"),
            Some(json!({"name": "imported", "grant_types": ["client_credentials"], "client_secret": chosen})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    secrets.push(chosen);

    let (status, extra) = api.send(M::POST, &format!("{clients}/{generated_id}/secrets"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    secrets.push(extra["secret"].as_str().unwrap().to_owned());

    let patched = "Patched-Secret-9876543210zyxwvuTSR".to_owned();
    let (status, _) =
        api.send(M::PATCH, &format!("{clients}/imported-client"), Some(json!({"client_secret": patched}))).await;
    assert_eq!(status, StatusCode::OK);
    secrets.push(patched);

    // Use the secrets: a token from the issuer, introspected, with credentials in the query too (never logged).
    let issuer_listener = format!("http://{}", process.listener_address("issuer").await);
    let issuer = server["issuer"].as_str().unwrap().to_owned();
    let issuer = format!("{issuer_listener}/{}", issuer.rsplit('/').next().unwrap());
    let minted: Value = api
        .http
        .post(format!("{issuer}/oauth/token?client_secret={}", secrets[0]))
        .form(&[("grant_type", "client_credentials"), ("client_id", &generated_id), ("client_secret", &secrets[0])])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access_token = minted["access_token"].as_str().expect("a token").to_owned();
    let introspected: Value = api
        .http
        .post(format!("{issuer}/introspect?access_token={access_token}"))
        .basic_auth(&generated_id, Some(&secrets[0]))
        .form(&[("token", &access_token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);

    // Everything a caller could read afterwards.
    api.seen.clear();
    for path in [
        clients.clone(),
        format!("{clients}/{generated_id}"),
        format!("{clients}/imported-client"),
        format!("{clients}/{generated_id}/secrets"),
        format!("{clients}/imported-client/secrets"),
    ] {
        let (status, _) = api.send(M::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let secret_items = api.seen[3].clone();
    let first_secret_id =
        serde_json::from_str::<Value>(&secret_items).unwrap()["data"][0]["id"].as_str().unwrap().to_owned();
    api.send(M::GET, &format!("{clients}/{generated_id}/secrets/{first_secret_id}"), None).await;

    let proxy = format!("http://{}", process.listener_address("proxy").await);
    let plugin_secrets = introspection_secrets(&mut api, &proxy).await;

    let status = process.interrupt(Duration::from_secs(10)).await;
    assert!(status.success(), "clean exit on SIGINT: {status}");
    let logs = format!("{}\n{}", process.output.stdout_text(), process.output.stderr_text());
    assert!(logs.contains("introspection failed"), "the IdP failures were logged");
    for needle in &plugin_secrets {
        assert!(!logs.contains(needle.as_str()), "the logs contain {needle}");
    }
    assert!(logs.contains("\"listening\""), "logs were captured");
    let stored = db.raw_contents().await;
    assert!(stored.len() > 1000, "database contents were read");

    for needle in &plugin_secrets {
        assert!(!stored.windows(needle.len()).any(|w| w == needle.as_bytes()), "the database holds {needle}");
    }

    let mut needles = secrets.clone();
    needles.push(token.clone());
    needles.push(access_token.clone());
    for needle in &needles {
        for body in &api.seen {
            assert!(!body.contains(needle.as_str()), "an API response contains a secret: {body}");
        }
        assert!(!logs.contains(needle.as_str()), "the logs contain a secret");
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the database contains a secret in plain text"
        );
    }
    db.cleanup().await;
}

/// What the scripted IdP was sent: the headers of each introspection request.
type Seen = Arc<Mutex<Vec<axum::http::HeaderMap>>>;

/// An `oauth2-introspection` plugin with an API key among its custom headers, in front of an IdP that answers
/// every token with an error page repeating it (400, then a 200 that is not JSON). Returns what must never be
/// stored or logged: the authorization value, the API key and the token.
async fn introspection_secrets(api: &mut Api, proxy: &str) -> Vec<String> {
    use reqwest::Method as M;
    let seen = Seen::default();
    let status = Arc::new(Mutex::new(400u16));
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post({
            let (seen, status) = (seen.clone(), status.clone());
            move |headers: axum::http::HeaderMap, body: String| async move {
                seen.lock().unwrap().push(headers);
                let code = *status.lock().unwrap();
                (axum::http::StatusCode::from_u16(code).unwrap(), format!("<p>invalid: {body}</p>"))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (authorization, api_key) = ("Basic aWRwLWNsaWVudDppZHAtc2VjcmV0LTQ4MjE=", "idp-api-key-7f3a9c1e5b");
    let token = "opaque-token-c0ffee-5eed-7e11-b0b5-d1ce";
    let (_, cps) = api.send(M::GET, "/v2/control-planes?filter[name][eq]=default", None).await;
    let base = format!("/v2/control-planes/{}/core-entities", cps["data"][0]["id"].as_str().unwrap());
    let (status_code, _) =
        api.send(M::POST, &format!("{base}/services"), Some(json!({"name": "s", "url": "http://127.0.0.1:9/"}))).await;
    assert_eq!(status_code, StatusCode::CREATED);
    api.send(M::POST, &format!("{base}/services/s/routes"), Some(json!({"paths": ["/"]}))).await;
    let config = json!({"introspection_url": idp, "authorization_value": authorization,
        "custom_introspection_headers": {"x_api_key": api_key}});
    let (status_code, plugin) = api
        .send(M::POST, &format!("{base}/plugins"), Some(json!({"name": "oauth2-introspection", "config": config})))
        .await;
    assert_eq!(status_code, StatusCode::CREATED, "{plugin}");
    assert_eq!(plugin["config"]["custom_introspection_headers"]["x_api_key"], api_key, "returned in clear, as Kong");

    // The proxy runs the plugin once the configuration reaches it (polled for up to 30 s: the loop ends as soon as
    // it does, so only a loaded machine gets near the bound).
    let http = reqwest::Client::new();
    let mut answered = 0;
    for _ in 0..1500 {
        let res = http.get(format!("{proxy}/anything")).bearer_auth(token).send().await.unwrap();
        if res.status() == StatusCode::UNAUTHORIZED {
            answered += 1;
            if answered == 1 {
                *status.lock().unwrap() = 200;
            } else {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(answered, 2, "both IdP failures answered 401");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|h| h["x-api-key"] == api_key && h["authorization"] == authorization), "{seen:?}");
    vec![authorization.to_owned(), api_key.to_owned(), token.to_owned()]
}

#[tokio::test]
async fn secrets_are_unrecoverable_on_sqlite() {
    secrets_never_reappear(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn secrets_are_unrecoverable_on_postgres() {
    if let Some(db) = TestDatabase::postgres() {
        secrets_never_reappear(db).await;
    }
}
