//! Upgrade tests: a database holding rows written by an older schema version is migrated to the latest and read
//! back through the store. Each version's fixture is the SQL that version's code wrote; when migration N+1
//! arrives, add `fixture_v{N+1}` and a case that starts from version N.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse_model::gateway::entities::EntityKind;
use gatehouse_model::listing::ListQuery;
use gatehouse_model::{AuthServerId, ClientId, SecretHash};
use gatehouse_store::migrations::latest_version;
use gatehouse_store::testing::TestDatabase;
use gatehouse_store::{RateLimitCounter, StorageUrl};

const SERVER: &str = "0190a0a0-0000-7000-8000-000000000001";
const SCOPE: &str = "0190a0a0-0000-7000-8000-000000000002";

/// Rows as version 1 wrote them. `blob` renders a byte string in the dialect's literal syntax.
fn fixture_v1(blob: impl Fn(&[u8]) -> String) -> String {
    format!(
        r#"
INSERT INTO gatehouse_meta (key, value) VALUES ('key_check', 'abc');
INSERT INTO personal_access_tokens (id, name, hash, created_at, expires_at)
  VALUES ('0190a0a0-0000-7000-8000-000000000009', 'old', '{hash}', 1, 2);
INSERT INTO auth_servers (id, issuer_key, name, audience, description, signing_algorithm, labels, trusted_origins, created_at, updated_at)
  VALUES ('{SERVER}', 'abcdefghij012345', 'Appointments Dev', 'http://myhttpbin.dev', '', 'RS256', '{{"env":"dev"}}', '[]', 1700000000000000, 1700000000000000);
INSERT INTO signing_keys (id, auth_server_id, algorithm, encrypted_private_key, public_jwk, created_at, retired_at)
  VALUES ('0190a0a0-0000-7000-8000-000000000003', '{SERVER}', 'RS256', {key}, '{{"kty":"RSA"}}', 1700000000000000, NULL);
INSERT INTO scopes (id, auth_server_id, name, description, is_default, include_in_metadata, enabled, created_at, updated_at)
  VALUES ('{SCOPE}', '{SERVER}', 'my-scope', '', FALSE, FALSE, TRUE, 1700000000000001, 1700000000000001);
INSERT INTO claims (id, auth_server_id, name, value, include_in_token, include_in_all_scopes, include_in_scopes, enabled, created_at, updated_at)
  VALUES ('0190a0a0-0000-7000-8000-000000000004', '{SERVER}', 'test-claim', 'test', TRUE, FALSE, '["{SCOPE}"]', TRUE, 1700000000000002, 1700000000000002);
INSERT INTO clients (auth_server_id, id, name, grant_types, response_types, redirect_uris, login_uri, access_token_duration, id_token_duration, allow_all_scopes, allow_scopes, labels, token_endpoint_auth_method, created_at, updated_at)
  VALUES ('{SERVER}', 'legacyclient0001', 'Client', '["client_credentials"]', '["id_token","token"]', '[]', NULL, 3600, 3600, FALSE, '["{SCOPE}"]', '{{}}', 'client_secret_post', 1700000000000003, 1700000000000003);
INSERT INTO client_secrets (id, auth_server_id, client_id, hash, enabled, created_at, updated_at)
  VALUES ('0190a0a0-0000-7000-8000-000000000005', '{SERVER}', 'legacyclient0001', {secret}, TRUE, 1700000000000003, 1700000000000003);
"#,
        hash = "ab".repeat(32),
        key = blob(&[1, 2, 3]),
        secret = blob(&[7; 32]),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rows as version 2 added them.
fn fixture_v2() -> String {
    format!(
        r#"
INSERT INTO issued_tokens (id, auth_server_id, client_id, signing_key_id, granted_scope_names, created_at, expires_at)
  VALUES ('0190a0a0-0000-7000-8000-000000000006', '{SERVER}', 'legacyclient0001', '0190a0a0-0000-7000-8000-000000000003', '["my-scope"]', 1700000000000000, 4102444800000000);
INSERT INTO token_revocations (id, auth_server_id, client_id, expires_at)
  VALUES ('0190a0a0-0000-7000-8000-000000000007', '{SERVER}', 'legacyclient0001', 4102444800000000);
"#
    )
}

const CONTROL_PLANE: &str = "0190a0a0-0000-7000-8000-000000000008";
const SERVICE: &str = "0190a0a0-0000-7000-8000-000000000009";

/// Rows as version 3 added them: a control plane holding one service.
fn fixture_v3() -> String {
    format!(
        r#"
INSERT INTO control_planes (id, name, description, cluster_type, auth_type, cloud_gateway, proxy_urls, labels, created_at, updated_at)
  VALUES ('{CONTROL_PLANE}', 'legacy-cp', '', 'CLUSTER_TYPE_CONTROL_PLANE', 'pinned_client_certs', FALSE, '[]', '{{"env":"dev"}}', 1700000000000000, 1700000000000000);
INSERT INTO gateway_entities (control_plane_id, kind, id, endpoint_key, custom_id, cache_key, service_id, route_id, consumer_id, name, tags, data, created_at, updated_at)
  VALUES ('{CONTROL_PLANE}', 'services', '{SERVICE}', 'legacy-service', NULL, NULL, NULL, NULL, NULL, NULL, '["old"]',
          '{{"id":"{SERVICE}","name":"legacy-service","host":"upstream.example","port":80,"protocol":"http","tags":["old"],"created_at":1700000000,"updated_at":1700000000}}',
          1700000000, 1700000000);
"#
    )
}

const ROUTE: &str = "0190a0a0-0000-7000-8000-00000000000a";

/// Rows as version 4 added them: a `cluster` rate-limiting counter.
fn fixture_v4() -> String {
    format!(
        r#"
INSERT INTO ratelimiting_metrics (route_id, service_id, identifier, period, period_date, value, expires_at)
  VALUES ('{ROUTE}', '00000000-0000-0000-0000-000000000000', '10.0.0.1', 'minute', 1700000040, 7, 1700000100);
"#
    )
}

fn legacy_counter() -> RateLimitCounter<'static> {
    RateLimitCounter {
        route_id: Some(ROUTE.parse().unwrap()),
        service_id: None,
        identifier: "10.0.0.1",
        period: "minute",
        period_date: 1_700_000_040,
        expires_at: 1_700_000_100,
    }
}

/// Migrates to `from`, writes every fixture up to that version, then opens (migrating to the latest).
async fn upgrade_from(db: TestDatabase, from: i64) {
    db.migrate_to(from).await.unwrap();
    let mut script = match db.url {
        StorageUrl::Sqlite(_) => fixture_v1(|b| format!("X'{}'", hex(b))),
        StorageUrl::Postgres(_) => fixture_v1(|b| format!("'\\x{}'::bytea", hex(b))),
    };
    if from >= 2 {
        script.push_str(&fixture_v2());
    }
    if from >= 3 {
        script.push_str(&fixture_v3());
    }
    if from >= 4 {
        script.push_str(&fixture_v4());
    }
    db.execute_script(&script).await.unwrap();

    let store = db.open().await; // runs every newer migration
    let server: AuthServerId = SERVER.parse().unwrap();
    let s = store.get_auth_server(server).await.unwrap().expect("auth server survives");
    assert_eq!((s.name.as_str(), s.labels.get("env")), ("Appointments Dev", Some("dev")));
    assert_eq!(store.signing_keys(server).await.unwrap()[0].encrypted_private_key, vec![1, 2, 3]);
    assert_eq!(store.all_scopes(server).await.unwrap()[0].name, "my-scope");
    assert_eq!(store.all_claims(server).await.unwrap()[0].include_in_scopes[0].to_string(), SCOPE);
    let client_id = ClientId::parse("legacyclient0001").unwrap();
    let c = store.get_client(server, &client_id).await.unwrap().expect("client survives");
    assert_eq!(c.access_token_duration, 3600);
    let secrets = store.list_client_secrets(server, &client_id, &ListQuery::default()).await.unwrap();
    assert_eq!(secrets.items[0].hash, SecretHash([7; 32]));
    assert_eq!(store.list_pats().await.unwrap()[0].name, "old");
    assert_eq!(store.get_meta("key_check").await.unwrap().as_deref(), Some("abc"));
    // Version 2's tables work whether they were created under old rows or held rows of their own.
    let tokens = store.list_tokens(server, &client_id, &ListQuery::default()).await.unwrap();
    let revocations = store.client_revocations(server, &client_id).await.unwrap();
    if from >= 2 {
        assert_eq!(tokens.items[0].granted_scope_names, vec!["my-scope".to_owned()]);
        assert_eq!(revocations.len(), 1);
    } else {
        assert_eq!((tokens.total, revocations.len()), (0, 0));
    }
    let control_plane: uuid::Uuid = CONTROL_PLANE.parse().unwrap();
    if from >= 3 {
        let cp = store.get_control_plane(control_plane).await.unwrap().expect("control plane survives");
        assert_eq!((cp.name.as_str(), cp.labels.get("env")), ("legacy-cp", Some("dev")));
        let service = store.find_entity(control_plane, EntityKind::Service, "legacy-service").await.unwrap();
        assert_eq!(service.expect("service survives").id.to_string(), SERVICE);
    } else {
        assert!(store.get_control_plane(control_plane).await.unwrap().is_none());
    }
    // Version 4's counters: kept, or counted from 0 on a table the upgrade created.
    let counted = store.increment_rate_limits(&[legacy_counter()], 1).await.unwrap();
    assert_eq!(counted, [if from >= 4 { 8 } else { 1 }]);
    // Version 7's tables, created under every older version's rows, take records at once.
    if from >= 3 {
        let nodes = store.list_data_planes(control_plane, None, 10).await.unwrap();
        assert_eq!(nodes.total, 0);
        assert!(store.list_dp_certificates(control_plane).await.unwrap().is_empty());
    }
    assert!(latest_version() >= 4);
    drop(store);
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_upgrades_from_every_version() {
    for from in 1..=latest_version() {
        upgrade_from(TestDatabase::sqlite(), from).await;
    }
}

#[tokio::test]
async fn postgres_upgrades_from_every_version() {
    for from in 1..=latest_version() {
        if let Some(db) = TestDatabase::postgres() {
            upgrade_from(db, from).await;
        }
    }
}
