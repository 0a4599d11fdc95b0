//! `/status/ready` follows the database: a PostgreSQL node reached through a TCP relay the test cuts (every
//! connection closed, the port refusing) answers 503 on the first probe after the cut, and 200 again once the relay
//! is back. Runs with the PostgreSQL suite (`GATEHOUSE_TEST_DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use gatehouse_store::StorageUrl;
use gatehouse_store::testing::TestDatabase;
use gatehouse_testkit::TestNode;

/// Relays connections from `listener` to `target` until `stop` is cancelled, then drops them all.
async fn relay(listener: TcpListener, target: SocketAddr, stop: CancellationToken) {
    loop {
        let (mut client, _) = tokio::select! {
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
            () = stop.cancelled() => return,
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else { return };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn ready(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let res = client.get(url).send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

#[tokio::test]
async fn readiness_turns_503_when_postgres_is_unreachable_and_200_when_it_returns() {
    let Some(mut db) = TestDatabase::postgres() else {
        println!("PostgreSQL suite: SKIPPED (set GATEHOUSE_TEST_DATABASE_URL)");
        return;
    };
    let StorageUrl::Postgres(settings) = &mut db.url else { unreachable!() };
    let mut url = url::Url::parse(&settings.url).unwrap();
    let host = url.host_str().unwrap().to_owned();
    let target = tokio::net::lookup_host((host.as_str(), url.port().unwrap_or(5432))).await.unwrap().next().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = listener.local_addr().unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(relay_addr.port())).unwrap();
    // The schema is made (and later dropped) through the relay too.
    settings.url = url.to_string();
    let mut stop = CancellationToken::new();
    tokio::spawn(relay(listener, target, stop.clone()));

    let node = TestNode::builder().database(db).start().await.unwrap();
    node.wait_config().await;
    let client = reqwest::Client::new();
    let probe = format!("{}/status/ready", node.node.status_url());
    assert_eq!(ready(&client, &probe).await, (StatusCode::OK, json!({"message": "ready"})));

    stop.cancel();
    // The probe checks the database on each call (bounded to 800 ms), so the first one after the cut says so.
    let (status, body) = ready(&client, &probe).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, json!({"message": "failed to connect to database"}));
    let status: Value =
        client.get(format!("{}/status", node.node.status_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["database"]["reachable"], false);

    stop = CancellationToken::new();
    let listener = TcpListener::bind(relay_addr).await.unwrap();
    tokio::spawn(relay(listener, target, stop.clone()));
    // The pool reconnects on its next use; a backstop bounds the wait.
    tokio::time::timeout(Duration::from_secs(30), async {
        while ready(&client, &probe).await.0 != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("/status/ready never answered 200 again");
    node.stop_keeping_database().await.cleanup().await;
    stop.cancel();
}
