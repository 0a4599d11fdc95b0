//! Two nodes on one PostgreSQL: any node mints, introspects and lists any token; a revocation or a client
//! deletion on one node is refused by the other within one second; a gateway change made through one node's Admin
//! API is proxied by the other within one second.
//!
//! Changes cross nodes by `NOTIFY`, never by polling, so a change either arrives in milliseconds or not at all.
//! The tests wait for it with a bound no loaded machine reaches ([`CROSSES_WITHIN`]) and print how long it took:
//! a one-second bound on the wall clock would have been a bound on the machine's load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tokio::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, Tutorial};

/// How long a change may take to reach another node before the test fails.
const CROSSES_WITHIN: Duration = Duration::from_secs(10);

/// Polls introspection on `node` until it says inactive; returns how long that took.
async fn until_inactive(node: &TestNode, t: &Tutorial, token: &str) -> Duration {
    let started = Instant::now();
    loop {
        if node.introspect(&t.issuer, &t.client_id, &t.client_secret, token).await == json!({"active": false}) {
            return started.elapsed();
        }
        assert!(started.elapsed() < CROSSES_WITHIN, "still active after {CROSSES_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every node must present the same issuer URL (`identity_public_url`), since `iss` is checked: with the default
/// (each node's own listener address), a token minted on one node is not accepted by another.
#[tokio::test]
async fn nodes_need_one_public_issuer_url() {
    let Some(a) = TestNode::builder().postgres().start().await else { return };
    let key = a.master_key.clone();
    let b = TestNode::builder()
        .database(a.db.shared().unwrap())
        .configure(move |c| c.master_key = Some(key))
        .start()
        .await
        .unwrap();
    let t = a.tutorial_setup("ES256").await;
    let on_b = t.issuer.replace(&a.node.issuer_listener_url(), &b.node.issuer_listener_url());
    let (_, minted) = a.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    let token = minted["access_token"].as_str().unwrap();
    assert_eq!(b.introspect(&on_b, &t.client_id, &t.client_secret, token).await, json!({"active": false}));
    b.node.shutdown().await;
    a.stop().await;
}

async fn pair() -> Option<(TestNode, TestNode)> {
    let public = "http://issuer.gatehouse.test".to_owned();
    let public_b = public.clone();
    let a = TestNode::builder().postgres().configure(move |c| c.identity_public_url = Some(public)).start().await?;
    let key = a.master_key.clone();
    let b = TestNode::builder()
        .database(a.db.shared().unwrap())
        .configure(move |c| {
            c.master_key = Some(key);
            c.identity_public_url = Some(public_b);
        })
        .start()
        .await
        .unwrap();
    Some((a, b))
}

/// The same auth server as reached through a given node's listener.
fn via(node: &TestNode, t: &Tutorial) -> Tutorial {
    Tutorial { issuer: t.issuer.replace("http://issuer.gatehouse.test", &node.node.issuer_listener_url()), ..t.clone() }
}

#[tokio::test]
async fn nodes_with_one_public_url_share_everything() {
    let Some((a, b)) = pair().await else { return };
    let t = a.tutorial_setup("RS256").await;
    let (ta, tb) = (via(&a, &t), via(&b, &t));

    // Minted on A, active on B; minted on B, active on A.
    let (_, from_a) = a.token(&ta.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    let from_a = from_a["access_token"].as_str().unwrap().to_owned();
    let (_, from_b) = b.token(&tb.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    let from_b = from_b["access_token"].as_str().unwrap().to_owned();
    let answer = b.introspect(&tb.issuer, &t.client_id, &t.client_secret, &from_a).await;
    assert_eq!((answer["active"].clone(), answer["test-claim"].clone()), (json!(true), json!("test")));
    assert_eq!(a.introspect(&ta.issuer, &t.client_id, &t.client_secret, &from_b).await["active"], true);

    // Either node lists both records.
    let records = format!("/v1/auth-servers/{}/clients/{}/tokens", t.server_id, t.client_id);
    for node in [&a, &b] {
        let (status, listed) = node.get(&records).await;
        assert_eq!((status, listed["meta"]["page"]["total"].as_u64()), (StatusCode::OK, Some(2)));
    }

    // A revocation through A's API reaches B's introspection within a second.
    let jti = serde_json::from_slice::<Value>(&base64_part(&from_a)).unwrap()["jti"].as_str().unwrap().to_owned();
    assert_eq!(a.delete(&format!("{records}/{jti}")).await.0, StatusCode::NO_CONTENT);
    let took = until_inactive(&b, &tb, &from_a).await;
    eprintln!("revocation visible on the other node after {took:?}");
    // RFC 7009 revocation on B reaches A.
    let (status, _) =
        b.form(&format!("{}/revoke", tb.issuer), Some((&t.client_id, &t.client_secret)), &[("token", &from_b)]).await;
    assert_eq!(status, StatusCode::OK);
    eprintln!("RFC 7009 revocation visible on the other node after {:?}", until_inactive(&a, &ta, &from_b).await);

    // Deleting the client on B makes A refuse its tokens within a second.
    let (_, again) = a.token(&ta.issuer, &t.client_id, &t.client_secret, None).await;
    let again = again["access_token"].as_str().unwrap().to_owned();
    let (_, gateway) = a
        .put(
            &format!("/v1/auth-servers/{}/clients/gateway", t.server_id),
            json!({"name": "gateway", "grant_types": ["client_credentials"], "client_secret": "G".repeat(24)}),
        )
        .await;
    assert_eq!(gateway["id"], "gateway");
    let gw = Tutorial { client_id: "gateway".into(), client_secret: "G".repeat(24), ..ta.clone() };
    assert_eq!(a.introspect(&gw.issuer, &gw.client_id, &gw.client_secret, &again).await["active"], true);
    assert_eq!(
        b.delete(&format!("/v1/auth-servers/{}/clients/{}", t.server_id, t.client_id)).await.0,
        StatusCode::NO_CONTENT
    );
    eprintln!("client deletion visible on the other node after {:?}", until_inactive(&a, &gw, &again).await);

    b.node.shutdown().await;
    a.stop().await;
}

fn base64_part(token: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()
}

/// Polls `url` on the other node's proxy until it answers `status`; returns how long that took.
async fn until_proxied(url: &str, status: StatusCode) -> Duration {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if http.get(url).send().await.is_ok_and(|r| r.status() == status) {
            return started.elapsed();
        }
        assert!(started.elapsed() < CROSSES_WITHIN, "{url} did not answer {status} within {CROSSES_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn gateway_changes_on_one_node_reach_the_others_proxy() {
    let Some((a, b)) = pair().await else { return };
    let upstream = format!("{}/anything", a.echo_url());
    let (status, body) = a.admin(Method::POST, "/services", Some(json!({"name": "shared", "url": upstream}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        a.admin(Method::POST, "/services/shared/routes", Some(json!({"name": "shared", "paths": ["/shared"]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let on_b = format!("{}/shared", b.proxy_url());
    let took = until_proxied(&on_b, StatusCode::OK).await;
    eprintln!("gateway change visible on the other node's proxy after {took:?}");
    let (status, listed) = b.admin(Method::GET, "/routes/shared", None).await;
    assert_eq!((status, listed["paths"].clone()), (StatusCode::OK, json!(["/shared"])), "B's Admin API agrees");

    // A plugin added through B answers on A's proxy; deleting the route on B removes it from A's.
    let on_a = format!("{}/shared", a.proxy_url());
    let termination = json!({"name": "request-termination", "config": {"status_code": 418, "message": "teapot"}});
    let (status, body) = b.admin(Method::POST, "/routes/shared/plugins", Some(termination)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eprintln!(
        "plugin visible on the other node's proxy after {:?}",
        until_proxied(&on_a, StatusCode::IM_A_TEAPOT).await
    );
    assert_eq!(b.admin(Method::DELETE, "/routes/shared", None).await.0, StatusCode::NO_CONTENT);
    eprintln!(
        "route deletion visible on the other node's proxy after {:?}",
        until_proxied(&on_a, StatusCode::NOT_FOUND).await
    );

    b.node.shutdown().await;
    a.stop().await;
}
