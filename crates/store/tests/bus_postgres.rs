//! Invalidations across nodes sharing one PostgreSQL: delivered to the other node (by NOTIFY, not polling), and a node
//! whose listener connection drops tells its subscribers to resync once it listens again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gatehouse_model::identity::{AuthServer, SigningAlgorithm, SigningKey};
use gatehouse_model::{AuthServerId, Labels, SigningKeyId, Timestamp};
use gatehouse_store::testing::TestDatabase;
use gatehouse_store::{Invalidation, StorageUrl};
use tokio::sync::broadcast::Receiver;

fn server(name: &str) -> (AuthServer, SigningKey) {
    let s = AuthServer {
        id: AuthServerId::new(),
        issuer_key: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
        name: name.to_owned(),
        audience: "aud".to_owned(),
        description: String::new(),
        signing_algorithm: SigningAlgorithm::ES256,
        labels: Labels::default(),
        trusted_origins: vec![],
        created_at: Timestamp::from_secs(1),
        updated_at: Timestamp::from_secs(1),
    };
    let k = SigningKey {
        id: SigningKeyId::new(),
        auth_server_id: s.id,
        algorithm: s.signing_algorithm,
        encrypted_private_key: vec![0],
        public_jwk: serde_json::json!({}),
        created_at: s.created_at,
        retired_at: None,
    };
    (s, k)
}

/// The next invalidation. The wait ends as soon as one arrives, so `within` only has to be beyond what a loaded
/// machine takes; how fast delivery is, is not what these tests can tell on a shared machine.
async fn next(rx: &mut Receiver<Invalidation>, within: Duration) -> Invalidation {
    tokio::time::timeout(within, rx.recv()).await.expect("an invalidation in time").expect("bus open")
}

async fn terminate_listeners(db: &TestDatabase) {
    let StorageUrl::Postgres(settings) = &db.url else { unreachable!() };
    let pool = sqlx::PgPool::connect(&settings.url).await.unwrap();
    let schema = settings.schema.clone().unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND query LIKE '%' || $1 || '%'",
    )
    .bind(&schema)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "found the listener connections");
    pool.close().await;
}

#[tokio::test]
async fn other_nodes_hear_writes_and_resync_after_reconnect() {
    let Some(db) = TestDatabase::postgres() else {
        return;
    };
    let node_a = db.open().await;
    let node_b = db.open().await;
    let mut heard_by_b = node_b.bus().subscribe();
    let mut heard_by_a = node_a.bus().subscribe();

    let (s, k) = server("cross-node");
    node_a.create_auth_server(&s, &k).await.unwrap();
    assert_eq!(next(&mut heard_by_a, Duration::from_secs(10)).await, Invalidation::AuthServer { id: s.id });
    assert_eq!(next(&mut heard_by_b, Duration::from_secs(10)).await, Invalidation::AuthServer { id: s.id });
    // A node does not hear its own notice twice.
    assert!(tokio::time::timeout(Duration::from_millis(300), heard_by_a.recv()).await.is_err());

    terminate_listeners(&db).await;
    assert_eq!(next(&mut heard_by_b, Duration::from_secs(30)).await, Invalidation::Resync);

    let (s2, k2) = server("after-reconnect");
    node_a.create_auth_server(&s2, &k2).await.unwrap();
    let mut got = next(&mut heard_by_b, Duration::from_secs(10)).await;
    if got == Invalidation::Resync {
        got = next(&mut heard_by_b, Duration::from_secs(10)).await;
    }
    assert_eq!(got, Invalidation::AuthServer { id: s2.id });

    drop((node_a, node_b));
    db.cleanup().await;
}
