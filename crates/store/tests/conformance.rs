//! The store conformance suite: every case runs on SQLite and, when `GATEHOUSE_TEST_DATABASE_URL` is set, on
//! PostgreSQL, each on its own database or schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_model::gateway::cluster::DataPlaneNode;
use gatehouse_model::gateway::control_plane::{AuthType, ClusterType, ControlPlane, ProxyUrl};
use gatehouse_model::gateway::entities::{EntityKind, StoredEntity, validate_entity};
use gatehouse_model::identity::client::{GrantType, ResponseType, TokenEndpointAuthMethod};
use gatehouse_model::identity::{
    AuthServer, Claim, Client, ClientSecret, IssuedToken, Scope, SigningAlgorithm, SigningKey,
};
use gatehouse_model::listing::{self, Field, Filter, FilterOp, ListQuery, SortKey};
use gatehouse_model::pat::PersonalAccessToken;
use gatehouse_model::{
    AuthServerId, ClaimId, ClientId, ClientSecretId, Labels, PatId, ScopeId, SecretHash, SigningKeyId, Timestamp,
    TokenId,
};
use gatehouse_store::testing::TestDatabase;
use gatehouse_store::{
    Conflict, DpClientCertificate, EntityQuery, Invalidation, RateLimitCounter, Store, StoreError, TagFilter,
};

type S = Arc<dyn Store>;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = gatehouse_store::testing::TestDatabase::sqlite();
                    super::$case(db.open().await, &db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = gatehouse_store::testing::TestDatabase::postgres() else { return };
                    super::$case(db.open().await, &db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    auth_server_round_trip,
    auth_server_names_are_unique,
    auth_server_list_pages_filters_and_sorts,
    auth_server_delete_needs_force_while_not_empty,
    new_signing_key_retires_the_old_ones,
    scope_round_trip_and_unique_names,
    scope_delete_is_guarded_by_claims_and_cleans_clients,
    claim_round_trip,
    client_round_trip_with_secret,
    client_ids_and_names_are_unique_per_server,
    client_update_can_replace_every_secret,
    secret_limits_hold,
    secret_limits_hold_under_concurrency,
    secret_list_filters,
    personal_access_tokens,
    meta_is_initialised_once,
    writes_publish_invalidations,
    deleting_a_client_removes_its_secrets,
    token_records_round_trip,
    token_revocation_one_and_all,
    token_records_are_pruned_after_retention,
    rotating_a_key_and_key_expiries,
    issuer_snapshot_reads,
    control_plane_round_trip_and_unique_names,
    control_plane_list_filters,
    control_plane_delete_takes_its_entities,
    gateway_entity_round_trip_and_upsert,
    gateway_entity_unique_keys_and_references,
    gateway_entity_deletes_guard_and_cascade,
    gateway_acls_are_unique_per_consumer_and_follow_it,
    gateway_key_auths_are_unique_by_their_hash_and_follow_their_consumer,
    gateway_snis_are_unique_need_their_certificate_and_go_with_it,
    gateway_a_certificate_and_its_snis_are_written_at_once,
    gateway_ca_certificates_are_unique_by_digest,
    gateway_targets_are_unique_per_upstream_and_go_with_it,
    gateway_entity_list_pages_and_filters,
    gateway_writes_publish_invalidations,
    rate_limit_counters_count_and_prune,
    rate_limit_counters_are_exact_across_nodes,
    cluster_nodes_are_upserted_paged_and_go_with_their_control_plane,
    cluster_pinned_certificates_round_trip_and_publish,
);

#[test]
fn postgres_suite_status() {
    gatehouse_store::testing::report_postgres_suite();
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_secs(1_700_000_000 + secs)
}

fn server(name: &str, at: i64) -> AuthServer {
    AuthServer {
        id: AuthServerId::new(),
        issuer_key: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
        name: name.to_owned(),
        audience: format!("aud-{name}"),
        description: String::new(),
        signing_algorithm: SigningAlgorithm::RS256,
        labels: Labels::default(),
        trusted_origins: vec![],
        created_at: ts(at),
        updated_at: ts(at),
    }
}

fn key_for(s: &AuthServer) -> SigningKey {
    SigningKey {
        id: SigningKeyId::new(),
        auth_server_id: s.id,
        algorithm: s.signing_algorithm,
        encrypted_private_key: vec![1, 2, 3],
        public_jwk: serde_json::json!({"kty": "RSA", "n": "x", "e": "AQAB"}),
        created_at: s.updated_at,
        retired_at: None,
    }
}

async fn make_server(store: &S, name: &str) -> AuthServer {
    let s = server(name, 0);
    store.create_auth_server(&s, &key_for(&s)).await.unwrap();
    s
}

fn scope(server: &AuthServer, name: &str) -> Scope {
    Scope {
        id: ScopeId::new(),
        auth_server_id: server.id,
        name: name.to_owned(),
        description: String::new(),
        default: false,
        include_in_metadata: false,
        enabled: true,
        created_at: ts(1),
        updated_at: ts(1),
    }
}

fn claim(server: &AuthServer, name: &str, scopes: Vec<ScopeId>) -> Claim {
    Claim {
        id: ClaimId::new(),
        auth_server_id: server.id,
        name: name.to_owned(),
        value: "test".to_owned(),
        include_in_token: true,
        include_in_all_scopes: false,
        include_in_scopes: scopes,
        enabled: true,
        created_at: ts(1),
        updated_at: ts(1),
    }
}

fn client(server: &AuthServer, id: &str, name: &str) -> Client {
    Client {
        id: ClientId::parse(id).unwrap(),
        auth_server_id: server.id,
        name: name.to_owned(),
        grant_types: vec![GrantType::ClientCredentials],
        response_types: vec![ResponseType::IdToken, ResponseType::Token],
        redirect_uris: vec!["https://app.example.com/cb".into()],
        login_uri: Some("https://app.example.com/login".into()),
        access_token_duration: 3600,
        id_token_duration: 300,
        allow_all_scopes: false,
        allow_scopes: vec![],
        labels: Labels([("env".to_owned(), "dev".to_owned())].into()),
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        created_at: ts(2),
        updated_at: ts(2),
    }
}

fn secret(c: &Client, byte: u8, enabled: bool, at: i64) -> ClientSecret {
    ClientSecret {
        id: ClientSecretId::new(),
        auth_server_id: c.auth_server_id,
        client_id: c.id.clone(),
        hash: SecretHash([byte; 32]),
        enabled,
        created_at: ts(at),
        updated_at: ts(at),
    }
}

async fn make_client(store: &S, server: &AuthServer, id: &str) -> Client {
    let c = client(server, id, &format!("client-{id}"));
    store.create_client(&c, &secret(&c, 1, true, 2)).await.unwrap();
    c
}

fn query(filters: Vec<Filter>, sort: Vec<SortKey>, size: u32, number: u32) -> ListQuery {
    ListQuery { page_size: size, page_number: number, filters, sort }
}

async fn auth_server_round_trip(store: S, _db: &TestDatabase) {
    let mut s = server("Appointments Dev", 0);
    s.labels = Labels([("env".into(), "dev".into())].into());
    s.trusted_origins = vec!["https://app.example.com".into()];
    s.signing_algorithm = SigningAlgorithm::ES256;
    store.create_auth_server(&s, &key_for(&s)).await.unwrap();
    assert_eq!(store.get_auth_server(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.find_auth_server_by_issuer_key(&s.issuer_key).await.unwrap(), Some(s.clone()));
    assert_eq!(store.get_auth_server(AuthServerId::new()).await.unwrap(), None);

    let mut changed = s.clone();
    changed.description = "now described".into();
    changed.updated_at = ts(10);
    store.update_auth_server(&changed, None).await.unwrap();
    assert_eq!(store.get_auth_server(s.id).await.unwrap(), Some(changed));

    let missing = server("missing", 0);
    assert!(matches!(store.update_auth_server(&missing, None).await, Err(StoreError::NotFound)));
    store.delete_auth_server(s.id, false).await.unwrap();
    assert_eq!(store.get_auth_server(s.id).await.unwrap(), None);
    assert!(matches!(store.delete_auth_server(s.id, false).await, Err(StoreError::NotFound)));
}

async fn auth_server_names_are_unique(store: S, _db: &TestDatabase) {
    let a = make_server(&store, "a").await;
    let b = make_server(&store, "b").await;
    let dup = server("a", 1);
    assert!(matches!(store.create_auth_server(&dup, &key_for(&dup)).await, Err(StoreError::Conflict(Conflict::Name))));
    let mut renamed = b.clone();
    renamed.name = "a".into();
    assert!(matches!(store.update_auth_server(&renamed, None).await, Err(StoreError::Conflict(Conflict::Name))));
    // Keeping one's own name is not a conflict.
    store.update_auth_server(&a, None).await.unwrap();
}

async fn auth_server_list_pages_filters_and_sorts(store: S, _db: &TestDatabase) {
    for (i, name) in ["charlie", "alpha", "bravo", "alphabet"].iter().enumerate() {
        let mut s = server(name, i as i64);
        if i % 2 == 0 {
            s.labels = Labels([("env".into(), "prod".into())].into());
        }
        store.create_auth_server(&s, &key_for(&s)).await.unwrap();
    }
    let all = store.list_auth_servers(&ListQuery::default()).await.unwrap();
    assert_eq!(all.total, 4);
    let names: Vec<_> = all.items.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["charlie", "alpha", "bravo", "alphabet"], "default order is creation time");

    let by_name = query(vec![], vec![SortKey { field: Field::Name, descending: true }], 2, 2);
    let page = store.list_auth_servers(&by_name).await.unwrap();
    assert_eq!((page.total, page.items.len()), (4, 2));
    assert_eq!(page.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["alphabet", "alpha"]);

    let contains = query(vec![Filter { field: Field::Name, op: FilterOp::Contains("alpha".into()) }], vec![], 100, 1);
    assert_eq!(store.list_auth_servers(&contains).await.unwrap().total, 2);
    let case_sensitive =
        query(vec![Filter { field: Field::Name, op: FilterOp::Contains("ALPHA".into()) }], vec![], 100, 1);
    assert_eq!(store.list_auth_servers(&case_sensitive).await.unwrap().total, 0);
    let wildcard = query(vec![Filter { field: Field::Name, op: FilterOp::Contains("%".into()) }], vec![], 100, 1);
    assert_eq!(store.list_auth_servers(&wildcard).await.unwrap().total, 0, "% is not a wildcard");
    let eq = query(vec![Filter { field: Field::Name, op: FilterOp::Eq("alpha".into()) }], vec![], 100, 1);
    assert_eq!(store.list_auth_servers(&eq).await.unwrap().total, 1);
    let label = query(
        vec![Filter { field: Field::Labels, op: FilterOp::Label { key: "env".into(), value: "prod".into() } }],
        vec![],
        100,
        1,
    );
    let prod = store.list_auth_servers(&label).await.unwrap();
    assert_eq!(prod.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["charlie", "bravo"]);
    let beyond = query(vec![], vec![], 10, 5);
    let empty = store.list_auth_servers(&beyond).await.unwrap();
    assert_eq!((empty.total, empty.items.len()), (4, 0));
    assert_eq!(listing::DEFAULT_PAGE_SIZE, ListQuery::default().page_size);
}

async fn auth_server_delete_needs_force_while_not_empty(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "full").await;
    let sc = scope(&s, "read");
    store.create_scope(&sc).await.unwrap();
    store.create_claim(&claim(&s, "c", vec![sc.id])).await.unwrap();
    let c = make_client(&store, &s, "client1").await;
    match store.delete_auth_server(s.id, false).await {
        Err(StoreError::NotEmpty { clients: 1, scopes: 1, claims: 1 }) => {}
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    assert!(store.get_auth_server(s.id).await.unwrap().is_some(), "nothing deleted");
    store.delete_auth_server(s.id, true).await.unwrap();
    assert!(store.get_client(s.id, &c.id).await.unwrap().is_none());
    assert!(store.get_scope(s.id, sc.id).await.unwrap().is_none());
    assert!(store.signing_keys(s.id).await.unwrap().is_empty());
    assert!(store.all_claims(s.id).await.unwrap().is_empty());
}

async fn new_signing_key_retires_the_old_ones(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "keys").await;
    let first = store.signing_keys(s.id).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].retired_at, None);
    assert_eq!(first[0].encrypted_private_key, vec![1, 2, 3]);

    let mut changed = s.clone();
    changed.signing_algorithm = SigningAlgorithm::EdDSA;
    changed.updated_at = ts(50);
    let mut second = key_for(&changed);
    second.created_at = ts(50);
    store.update_auth_server(&changed, Some(&second)).await.unwrap();
    let keys = store.signing_keys(s.id).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].id, keys[0].retired_at, keys[0].algorithm), (second.id, None, SigningAlgorithm::EdDSA));
    assert_eq!((keys[1].id, keys[1].retired_at), (first[0].id, Some(ts(50))));
}

async fn scope_round_trip_and_unique_names(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "scopes").await;
    let other = make_server(&store, "other").await;
    let mut sc = scope(&s, "my-scope");
    sc.default = true;
    store.create_scope(&sc).await.unwrap();
    assert_eq!(store.get_scope(s.id, sc.id).await.unwrap(), Some(sc.clone()));
    assert_eq!(store.get_scope(other.id, sc.id).await.unwrap(), None, "scopes belong to one server");
    assert!(matches!(store.create_scope(&scope(&s, "my-scope")).await, Err(StoreError::Conflict(Conflict::Name))));
    store.create_scope(&scope(&other, "my-scope")).await.unwrap();
    assert!(matches!(store.create_scope(&scope(&server("ghost", 0), "x")).await, Err(StoreError::NotFound)));

    let mut changed = sc.clone();
    changed.enabled = false;
    changed.include_in_metadata = true;
    store.update_scope(&changed).await.unwrap();
    assert_eq!(store.get_scope(s.id, sc.id).await.unwrap(), Some(changed));
    let listed = store
        .list_scopes(
            s.id,
            &query(vec![Filter { field: Field::Id, op: FilterOp::Eq(sc.id.to_string()) }], vec![], 10, 1),
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
}

async fn scope_delete_is_guarded_by_claims_and_cleans_clients(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "guard").await;
    let keep = scope(&s, "keep");
    let gone = scope(&s, "gone");
    store.create_scope(&keep).await.unwrap();
    store.create_scope(&gone).await.unwrap();
    let cl = claim(&s, "test-claim", vec![keep.id, gone.id]);
    store.create_claim(&cl).await.unwrap();
    let mut c = client(&s, "c1", "c1");
    c.allow_scopes = vec![gone.id, keep.id];
    store.create_client(&c, &secret(&c, 1, true, 2)).await.unwrap();

    match store.delete_scope(s.id, gone.id, false).await {
        Err(StoreError::ScopeInUse { claims }) => assert_eq!(claims, vec!["test-claim".to_owned()]),
        other => panic!("expected ScopeInUse, got {other:?}"),
    }
    assert!(store.get_scope(s.id, gone.id).await.unwrap().is_some(), "refused delete changes nothing");
    store.delete_scope(s.id, gone.id, true).await.unwrap();
    assert_eq!(store.get_claim(s.id, cl.id).await.unwrap().unwrap().include_in_scopes, vec![keep.id]);
    assert_eq!(store.get_client(s.id, &c.id).await.unwrap().unwrap().allow_scopes, vec![keep.id]);
    assert!(matches!(store.delete_scope(s.id, gone.id, true).await, Err(StoreError::NotFound)));
}

async fn claim_round_trip(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "claims").await;
    let c = claim(&s, "test-claim", vec![]);
    store.create_claim(&c).await.unwrap();
    assert_eq!(store.get_claim(s.id, c.id).await.unwrap(), Some(c.clone()));
    assert!(matches!(
        store.create_claim(&claim(&s, "test-claim", vec![])).await,
        Err(StoreError::Conflict(Conflict::Name))
    ));
    let mut changed = c.clone();
    changed.value = "${ .Client.Name }".into();
    changed.include_in_all_scopes = true;
    store.update_claim(&changed).await.unwrap();
    assert_eq!(store.all_claims(s.id).await.unwrap(), vec![changed]);
    let page = store
        .list_claims(
            s.id,
            &query(vec![Filter { field: Field::Name, op: FilterOp::Contains("test".into()) }], vec![], 10, 1),
        )
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    store.delete_claim(s.id, c.id).await.unwrap();
    assert!(matches!(store.delete_claim(s.id, c.id).await, Err(StoreError::NotFound)));
}

async fn client_round_trip_with_secret(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "clients").await;
    let c = client(&s, "12yvvmecnlghhnfg", "Client");
    let sec = secret(&c, 9, true, 2);
    store.create_client(&c, &sec).await.unwrap();
    assert_eq!(store.get_client(s.id, &c.id).await.unwrap(), Some(c.clone()));
    let secrets = store.list_client_secrets(s.id, &c.id, &ListQuery::default()).await.unwrap();
    assert_eq!(secrets.items, vec![sec.clone()]);
    assert_eq!(store.get_client_secret(s.id, &c.id, sec.id).await.unwrap(), Some(sec));

    let mut changed = c.clone();
    changed.login_uri = None;
    changed.labels = Labels::default();
    changed.updated_at = ts(9);
    store.update_client(&changed, None).await.unwrap();
    assert_eq!(store.get_client(s.id, &c.id).await.unwrap(), Some(changed));

    let label = query(
        vec![Filter { field: Field::Labels, op: FilterOp::Label { key: "env".into(), value: "dev".into() } }],
        vec![],
        10,
        1,
    );
    assert_eq!(store.list_clients(s.id, &label).await.unwrap().total, 0);
    assert_eq!(store.list_clients(s.id, &ListQuery::default()).await.unwrap().total, 1);
}

async fn client_ids_and_names_are_unique_per_server(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "uniq").await;
    let other = make_server(&store, "uniq2").await;
    let c = make_client(&store, &s, "same-id").await;
    let dup_id = client(&s, "same-id", "another name");
    assert!(matches!(
        store.create_client(&dup_id, &secret(&dup_id, 2, true, 3)).await,
        Err(StoreError::Conflict(Conflict::Id))
    ));
    let dup_name = client(&s, "other-id", &c.name);
    assert!(matches!(
        store.create_client(&dup_name, &secret(&dup_name, 2, true, 3)).await,
        Err(StoreError::Conflict(Conflict::Name))
    ));
    make_client(&store, &other, "same-id").await;
}

async fn client_update_can_replace_every_secret(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "replace").await;
    let c = make_client(&store, &s, "c").await;
    store.add_client_secret(&secret(&c, 2, true, 3), 2, 10).await.unwrap();
    let replacement = secret(&c, 7, true, 4);
    store.update_client(&c, Some(&replacement)).await.unwrap();
    let secrets = store.list_client_secrets(s.id, &c.id, &ListQuery::default()).await.unwrap();
    assert_eq!(secrets.items, vec![replacement]);
}

async fn secret_limits_hold(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "limits").await;
    let c = make_client(&store, &s, "c").await;
    let second = secret(&c, 2, true, 3);
    store.add_client_secret(&second, 2, 4).await.unwrap();
    assert!(matches!(
        store.add_client_secret(&secret(&c, 3, true, 4), 2, 4).await,
        Err(StoreError::SecretLimit { enabled_limit: true })
    ));
    let disabled = secret(&c, 4, false, 5);
    store.add_client_secret(&disabled, 2, 4).await.unwrap();
    assert!(matches!(
        store.set_client_secret_enabled(s.id, &c.id, disabled.id, true, 2, ts(6)).await,
        Err(StoreError::SecretLimit { enabled_limit: true })
    ));
    let off = store.set_client_secret_enabled(s.id, &c.id, second.id, false, 2, ts(7)).await.unwrap();
    assert!(!off.enabled);
    assert_eq!(off.updated_at, ts(7));
    store.set_client_secret_enabled(s.id, &c.id, disabled.id, true, 2, ts(8)).await.unwrap();
    store.add_client_secret(&secret(&c, 5, false, 9), 2, 4).await.unwrap();
    assert!(matches!(
        store.add_client_secret(&secret(&c, 6, false, 10), 2, 4).await,
        Err(StoreError::SecretLimit { enabled_limit: false })
    ));
    store.delete_client_secret(s.id, &c.id, second.id).await.unwrap();
    assert!(matches!(store.delete_client_secret(s.id, &c.id, second.id).await, Err(StoreError::NotFound)));
    let ghost = ClientId::parse("ghost").unwrap();
    assert!(matches!(
        store.add_client_secret(&ClientSecret { client_id: ghost, ..secret(&c, 8, true, 11) }, 2, 4).await,
        Err(StoreError::NotFound)
    ));
}

async fn secret_limits_hold_under_concurrency(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "race").await;
    let c = make_client(&store, &s, "c").await;
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        let sec = secret(&c, 10 + i, true, 3);
        tokio::spawn(async move { store.add_client_secret(&sec, 2, 10).await })
    });
    let mut ok = 0;
    for a in attempts {
        match a.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::SecretLimit { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1, "only one more enabled secret fits");
}

async fn secret_list_filters(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "filters").await;
    let c = make_client(&store, &s, "c").await;
    store.add_client_secret(&secret(&c, 2, false, 3), 2, 10).await.unwrap();
    let enabled = query(vec![Filter { field: Field::Enabled, op: FilterOp::Is(true) }], vec![], 10, 1);
    assert_eq!(store.list_client_secrets(s.id, &c.id, &enabled).await.unwrap().total, 1);
    let newest_first = query(vec![], vec![SortKey { field: Field::CreatedAt, descending: true }], 10, 1);
    let listed = store.list_client_secrets(s.id, &c.id, &newest_first).await.unwrap();
    assert!(!listed.items[0].enabled && listed.items[1].enabled);
}

async fn personal_access_tokens(store: S, _db: &TestDatabase) {
    let pat = |name: &str, byte: u8| PersonalAccessToken {
        id: PatId::new(),
        name: name.to_owned(),
        hash: SecretHash([byte; 32]),
        created_at: ts(0),
        expires_at: ts(100),
    };
    let a = pat("quickstart", 1);
    let b = pat("ci", 2);
    store.create_pat(&a, true).await.unwrap();
    store.create_pat(&b, false).await.unwrap();
    assert_eq!(store.find_pat(&SecretHash([1; 32])).await.unwrap(), Some(a.clone()));
    assert_eq!(store.find_pat(&SecretHash([3; 32])).await.unwrap(), None);
    let a2 = pat("quickstart", 3);
    store.create_pat(&a2, true).await.unwrap();
    assert_eq!(store.find_pat(&a.hash).await.unwrap(), None, "replaced");
    assert_eq!(store.list_pats().await.unwrap(), vec![b.clone(), a2]);
    store.delete_pat(b.id).await.unwrap();
    assert!(matches!(store.delete_pat(b.id).await, Err(StoreError::NotFound)));
}

async fn meta_is_initialised_once(store: S, _db: &TestDatabase) {
    assert_eq!(store.get_meta("key_check").await.unwrap(), None);
    assert_eq!(store.init_meta("key_check", "first").await.unwrap(), "first");
    assert_eq!(store.init_meta("key_check", "second").await.unwrap(), "first");
    assert_eq!(store.get_meta("key_check").await.unwrap().as_deref(), Some("first"));
}

async fn writes_publish_invalidations(store: S, _db: &TestDatabase) {
    let mut rx = store.bus().subscribe();
    let s = make_server(&store, "events").await;
    assert_eq!(rx.recv().await.unwrap(), Invalidation::AuthServer { id: s.id });
    store.create_scope(&scope(&s, "x")).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), Invalidation::AuthServer { id: s.id });
    // A failed write publishes nothing.
    assert!(store.create_scope(&scope(&s, "x")).await.is_err());
    store
        .create_pat(
            &PersonalAccessToken {
                id: PatId::new(),
                name: "n".into(),
                hash: SecretHash([5; 32]),
                created_at: ts(0),
                expires_at: ts(1),
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        // A wait that ends when the notice arrives: its bound is only what no loaded machine takes.
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap(),
        Invalidation::PersonalAccessTokens
    );
}

async fn deleting_a_client_removes_its_secrets(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "del").await;
    let c = make_client(&store, &s, "c").await;
    store.delete_client(s.id, &c.id).await.unwrap();
    assert!(matches!(store.delete_client(s.id, &c.id).await, Err(StoreError::NotFound)));
    // Recreating the id starts with only the new secret.
    let again = client(&s, "c", "client-c");
    let fresh = secret(&again, 9, true, 5);
    store.create_client(&again, &fresh).await.unwrap();
    assert_eq!(store.list_client_secrets(s.id, &c.id, &ListQuery::default()).await.unwrap().items, vec![fresh]);
}

fn token(c: &Client, key: SigningKeyId, at: i64, lifetime: i64) -> IssuedToken {
    IssuedToken {
        id: TokenId::new(),
        auth_server_id: c.auth_server_id,
        client_id: c.id.clone(),
        signing_key_id: key,
        granted_scope_names: vec!["my-scope".into()],
        created_at: ts(at),
        expires_at: ts(at + lifetime),
    }
}

async fn token_records_round_trip(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "tokens").await;
    let a = make_client(&store, &s, "a").await;
    let b = make_client(&store, &s, "b").await;
    let key = SigningKeyId::new();
    let (t1, t2, t3) = (token(&a, key, 10, 300), token(&a, key, 20, 60), token(&b, key, 30, 300));
    store.record_tokens(&[t1.clone(), t2.clone(), t3.clone()]).await.unwrap();
    store.record_tokens(&[]).await.unwrap();
    let listed = store.list_tokens(s.id, &a.id, &ListQuery::default()).await.unwrap();
    assert_eq!((listed.total, listed.items), (2, vec![t1.clone(), t2.clone()]));
    let by_expiry = query(vec![], vec![SortKey { field: Field::ExpiresAt, descending: false }], 10, 1);
    assert_eq!(store.list_tokens(s.id, &a.id, &by_expiry).await.unwrap().items, vec![t2.clone(), t1.clone()]);
    let by_id = query(vec![Filter { field: Field::Id, op: FilterOp::Eq(t2.id.to_string()) }], vec![], 10, 1);
    assert_eq!(store.list_tokens(s.id, &a.id, &by_id).await.unwrap().items, vec![t2.clone()]);
    assert_eq!(store.get_token(s.id, &a.id, t1.id).await.unwrap(), Some(t1.clone()));
    assert_eq!(store.get_token(s.id, &b.id, t1.id).await.unwrap(), None, "records belong to their client");
    // Large batches are split into several statements inside one transaction.
    let many: Vec<_> = (0..1200).map(|i| token(&b, key, 40 + i, 300)).collect();
    store.record_tokens(&many).await.unwrap();
    assert_eq!(store.list_tokens(s.id, &b.id, &ListQuery::default()).await.unwrap().total, 1201);
    // A duplicate id fails the whole batch and writes nothing.
    assert!(store.record_tokens(&[token(&a, key, 50, 60), t1.clone()]).await.is_err());
    assert_eq!(store.list_tokens(s.id, &a.id, &ListQuery::default()).await.unwrap().total, 2);
}

async fn token_revocation_one_and_all(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "revoke").await;
    let a = make_client(&store, &s, "a").await;
    let key = SigningKeyId::new();
    let (t1, t2, t3) = (token(&a, key, 10, 300), token(&a, key, 20, 300), token(&a, key, 30, 300));
    store.record_tokens(&[t1.clone(), t2.clone(), t3.clone()]).await.unwrap();
    let mut rx = store.bus().subscribe();
    assert_eq!(store.revoke_token(s.id, &a.id, t1.id).await.unwrap(), t1);
    assert_eq!(rx.recv().await.unwrap(), Invalidation::TokenRevoked { id: t1.id, expires_at: t1.expires_at.micros() });
    assert!(matches!(store.revoke_token(s.id, &a.id, t1.id).await, Err(StoreError::NotFound)));
    assert_eq!(store.live_revocations(ts(0)).await.unwrap(), vec![(t1.id, t1.expires_at)]);
    assert!(store.live_revocations(ts(400)).await.unwrap().is_empty(), "expired tokens need no revocation");
    let mut all = store.revoke_client_tokens(s.id, &a.id).await.unwrap();
    all.sort_by_key(|r| r.1);
    assert_eq!(all, vec![(t2.id, t2.expires_at), (t3.id, t3.expires_at)]);
    assert_eq!(
        rx.recv().await.unwrap(),
        Invalidation::ClientTokensRevoked { auth_server_id: s.id, client_id: a.id.clone() }
    );
    assert_eq!(store.list_tokens(s.id, &a.id, &ListQuery::default()).await.unwrap().total, 0);
    let mut revoked = store.client_revocations(s.id, &a.id).await.unwrap();
    revoked.sort_by_key(|r| r.1);
    assert_eq!(revoked, vec![(t1.id, t1.expires_at), (t2.id, t2.expires_at), (t3.id, t3.expires_at)]);
    // Deleting the client drops its records and revocations.
    store.record_tokens(&[token(&a, key, 40, 300)]).await.unwrap();
    store.delete_client(s.id, &a.id).await.unwrap();
    assert!(store.client_revocations(s.id, &a.id).await.unwrap().is_empty());
    assert_eq!(store.list_tokens(s.id, &a.id, &ListQuery::default()).await.unwrap().total, 0);
}

async fn token_records_are_pruned_after_retention(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "prune").await;
    let a = make_client(&store, &s, "a").await;
    let key = SigningKeyId::new();
    let (short, long) = (token(&a, key, 0, 60), token(&a, key, 0, 10 * 86_400));
    let revoked = token(&a, key, 0, 120);
    store.record_tokens(&[short.clone(), long.clone(), revoked.clone()]).await.unwrap();
    store.revoke_token(s.id, &a.id, revoked.id).await.unwrap();
    assert_eq!(store.prune_tokens(ts(3600)).await.unwrap(), 1, "only the revocation of an expired token goes");
    assert_eq!(store.list_tokens(s.id, &a.id, &ListQuery::default()).await.unwrap().total, 2);
    store.prune_tokens(ts(60 + 86_400 + 1)).await.unwrap();
    assert_eq!(store.list_tokens(s.id, &a.id, &ListQuery::default()).await.unwrap().items, vec![long]);
}

async fn rotating_a_key_and_key_expiries(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "rotate").await;
    let first = store.signing_keys(s.id).await.unwrap().remove(0);
    let c = make_client(&store, &s, "c").await;
    assert_eq!(store.key_token_expiry(first.id).await.unwrap(), None);
    store.record_tokens(&[token(&c, first.id, 0, 300), token(&c, first.id, 5, 100)]).await.unwrap();
    assert_eq!(store.key_token_expiry(first.id).await.unwrap(), Some(ts(300)));
    let mut rx = store.bus().subscribe();
    let mut next = key_for(&s);
    next.created_at = ts(500);
    store.rotate_signing_key(&next).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), Invalidation::AuthServer { id: s.id });
    let keys = store.signing_keys(s.id).await.unwrap();
    assert_eq!((keys[0].id, keys[0].retired_at), (next.id, None));
    assert_eq!((keys[1].id, keys[1].retired_at), (first.id, Some(ts(500))));
    let ghost = SigningKey { auth_server_id: AuthServerId::new(), ..key_for(&s) };
    assert!(matches!(store.rotate_signing_key(&ghost).await, Err(StoreError::NotFound)));
}

async fn issuer_snapshot_reads(store: S, _db: &TestDatabase) {
    let s = make_server(&store, "snapshot").await;
    let a = make_client(&store, &s, "a").await;
    let b = make_client(&store, &s, "b").await;
    store.add_client_secret(&secret(&b, 5, false, 3), 2, 10).await.unwrap();
    let clients = store.all_clients(s.id).await.unwrap();
    assert_eq!(clients.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), vec![a.id.clone(), b.id.clone()]);
    let secrets = store.enabled_client_secrets(s.id).await.unwrap();
    assert_eq!(secrets.len(), 2, "disabled secrets are left out");
    assert!(secrets.iter().all(|x| x.enabled));
}

// --- control planes and gateway entities ---------------------------------------------------------------------

fn control_plane(name: &str, cluster_type: ClusterType, labels: &[(&str, &str)]) -> ControlPlane {
    ControlPlane {
        id: uuid::Uuid::new_v4(),
        name: name.to_owned(),
        description: format!("{name} plane"),
        cluster_type,
        auth_type: AuthType::PinnedClientCerts,
        cloud_gateway: false,
        proxy_urls: vec![ProxyUrl { host: "gw.example".into(), port: 8000, protocol: "http".into() }],
        labels: Labels(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
        created_at: ts(0),
        updated_at: ts(0),
    }
}

async fn make_control_plane(store: &S, name: &str) -> uuid::Uuid {
    let cp = control_plane(name, ClusterType::ControlPlane, &[]);
    store.create_control_plane(&cp).await.unwrap();
    cp.id
}

/// Builds an entity the way the API does: validated by the model, then given an id and timestamps.
fn entity(kind: EntityKind, body: serde_json::Value) -> StoredEntity {
    let mut data = validate_entity(kind, body.as_object().unwrap()).unwrap();
    if data.get("id").is_none_or(serde_json::Value::is_null) {
        data.insert("id".into(), serde_json::json!(uuid::Uuid::new_v4().to_string()));
    }
    data.insert("created_at".into(), serde_json::json!(1_700_000_000));
    data.insert("updated_at".into(), serde_json::json!(1_700_000_000));
    StoredEntity::from_data(kind, data).unwrap()
}

fn service(name: &str, tags: &[&str]) -> StoredEntity {
    entity(EntityKind::Service, serde_json::json!({"name": name, "url": "http://upstream.example/x", "tags": tags}))
}

fn route(name: &str, service: &StoredEntity) -> StoredEntity {
    entity(
        EntityKind::Route,
        serde_json::json!({"name": name, "paths": [format!("/{name}")], "service": {"id": service.id.to_string()}}),
    )
}

fn termination(scope: Option<(&str, &StoredEntity)>, instance: Option<&str>) -> StoredEntity {
    let mut body = serde_json::json!({"name": "request-termination", "config": {"status_code": 403}});
    if let Some((field, target)) = scope {
        body[field] = serde_json::json!({"id": target.id.to_string()});
    }
    if let Some(name) = instance {
        body["instance_name"] = serde_json::json!(name);
    }
    entity(EntityKind::Plugin, body)
}

fn entity_query(size: u32) -> EntityQuery {
    EntityQuery { size, ..EntityQuery::default() }
}

async fn control_plane_round_trip_and_unique_names(store: S, _db: &TestDatabase) {
    let cp = control_plane("one", ClusterType::K8sIngressController, &[("env", "test")]);
    store.create_control_plane(&cp).await.unwrap();
    assert_eq!(store.get_control_plane(cp.id).await.unwrap().as_ref(), Some(&cp));
    assert_eq!(store.find_control_plane_by_name("one").await.unwrap().as_ref(), Some(&cp));
    assert!(store.find_control_plane_by_name("One").await.unwrap().is_none(), "names match exactly");

    let twin = control_plane("one", ClusterType::ControlPlane, &[]);
    assert!(matches!(store.create_control_plane(&twin).await, Err(StoreError::Conflict(Conflict::Name))));

    let other = control_plane("two", ClusterType::ControlPlane, &[]);
    store.create_control_plane(&other).await.unwrap();
    let mut renamed = other.clone();
    renamed.name = "one".into();
    assert!(matches!(store.update_control_plane(&renamed).await, Err(StoreError::Conflict(Conflict::Name))));

    let mut updated = cp.clone();
    updated.description = "changed".into();
    updated.auth_type = AuthType::PkiClientCerts;
    updated.proxy_urls.clear();
    updated.updated_at = ts(5);
    store.update_control_plane(&updated).await.unwrap();
    assert_eq!(store.get_control_plane(cp.id).await.unwrap(), Some(updated.clone()));

    let mut ghost = updated;
    ghost.id = uuid::Uuid::new_v4();
    ghost.name = "ghost".into();
    assert!(matches!(store.update_control_plane(&ghost).await, Err(StoreError::NotFound)));
    assert!(matches!(store.delete_control_plane(ghost.id).await, Err(StoreError::NotFound)));
}

async fn control_plane_list_filters(store: S, _db: &TestDatabase) {
    for (name, cluster, labels) in [
        ("alpha", ClusterType::ControlPlane, vec![("team", "a")]),
        ("beta", ClusterType::K8sIngressController, vec![("team", "b")]),
        ("gamma", ClusterType::ControlPlane, vec![]),
    ] {
        store.create_control_plane(&control_plane(name, cluster, &labels)).await.unwrap();
    }
    let list = |filters: Vec<Filter>| {
        let store = store.clone();
        async move {
            let by_name = vec![SortKey { field: Field::Name, descending: false }];
            let page = store.list_control_planes(&query(filters, by_name, 10, 1)).await.unwrap();
            (page.total, page.items.into_iter().map(|c| c.name).collect::<Vec<_>>())
        }
    };
    let by_cluster = vec![Filter { field: Field::ClusterType, op: FilterOp::Eq("CLUSTER_TYPE_CONTROL_PLANE".into()) }];
    assert_eq!(list(by_cluster).await, (2, vec!["alpha".to_owned(), "gamma".to_owned()]));
    let by_label = vec![Filter { field: Field::Labels, op: FilterOp::Label { key: "team".into(), value: "b".into() } }];
    assert_eq!(list(by_label).await, (1, vec!["beta".to_owned()]));
    let has_label = vec![Filter { field: Field::Labels, op: FilterOp::LabelExists { key: "team".into() } }];
    assert_eq!(list(has_label).await.0, 2);
    let not_cloud = vec![Filter { field: Field::CloudGateway, op: FilterOp::Eq("false".into()) }];
    assert_eq!(list(not_cloud).await.0, 3);
    let page =
        store.list_control_planes(&query(vec![], vec![SortKey { field: Field::Name, descending: true }], 2, 2)).await;
    let page = page.unwrap();
    assert_eq!((page.total, page.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()), (3, vec!["alpha"]));
}

async fn control_plane_delete_takes_its_entities(store: S, _db: &TestDatabase) {
    let doomed = make_control_plane(&store, "doomed").await;
    let kept = make_control_plane(&store, "kept").await;
    let svc = service("svc", &[]);
    for cp in [doomed, kept] {
        store.insert_entity(cp, &svc).await.unwrap();
        store.insert_entity(cp, &route("r", &svc)).await.unwrap();
    }
    store.delete_control_plane(doomed).await.unwrap();
    assert!(store.get_control_plane(doomed).await.unwrap().is_none());
    assert!(store.all_entities(doomed).await.unwrap().is_empty(), "entities go with their control plane");
    assert_eq!(store.all_entities(kept).await.unwrap().len(), 2, "the same ids in another control plane stay");
    assert!(
        matches!(store.insert_entity(doomed, &service("late", &[])).await, Err(StoreError::NotFound)),
        "no entity without its control plane"
    );
}

async fn gateway_entity_round_trip_and_upsert(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let svc = service("svc", &["a"]);
    store.insert_entity(cp, &svc).await.unwrap();
    assert_eq!(store.get_entity(cp, EntityKind::Service, svc.id).await.unwrap().as_ref(), Some(&svc));
    assert_eq!(store.find_entity(cp, EntityKind::Service, "svc").await.unwrap().as_ref(), Some(&svc));
    assert!(store.get_entity(cp, EntityKind::Route, svc.id).await.unwrap().is_none(), "kinds do not mix");
    assert!(matches!(store.insert_entity(cp, &svc).await, Err(StoreError::Conflict(Conflict::Id))));

    let mut changed = service("renamed", &["b"]);
    changed.id = svc.id;
    changed.data["id"] = serde_json::json!(svc.id.to_string());
    changed.updated_at = 1_700_000_100;
    assert!(!store.upsert_entity(cp, &changed).await.unwrap(), "an existing id is replaced");
    assert_eq!(store.get_entity(cp, EntityKind::Service, svc.id).await.unwrap().as_ref(), Some(&changed));
    assert!(store.find_entity(cp, EntityKind::Service, "svc").await.unwrap().is_none(), "the old name is free");
    assert!(store.upsert_entity(cp, &service("fresh", &[])).await.unwrap(), "an unknown id is created");

    let consumer = entity(EntityKind::Consumer, serde_json::json!({"username": "ann", "custom_id": "c-1"}));
    store.insert_entity(cp, &consumer).await.unwrap();
    assert_eq!(store.find_entity(cp, EntityKind::Consumer, "ann").await.unwrap(), Some(consumer));
}

async fn gateway_entity_unique_keys_and_references(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let svc = service("svc", &[]);
    store.insert_entity(cp, &svc).await.unwrap();
    let conflict = |r| matches!(r, Err(StoreError::Conflict(Conflict::Field(f))) if f == "name");
    assert!(conflict(store.insert_entity(cp, &service("svc", &[])).await), "service names are unique");
    assert!(conflict(store.upsert_entity(cp, &service("svc", &[])).await.map(|_| ())), "also through PUT");

    let ann = entity(EntityKind::Consumer, serde_json::json!({"username": "ann", "custom_id": "c-1"}));
    store.insert_entity(cp, &ann).await.unwrap();
    let same_custom = entity(EntityKind::Consumer, serde_json::json!({"username": "bob", "custom_id": "c-1"}));
    assert!(matches!(
        store.insert_entity(cp, &same_custom).await,
        Err(StoreError::Conflict(Conflict::Field("custom_id")))
    ));

    store.insert_entity(cp, &termination(Some(("service", &svc)), Some("deny"))).await.unwrap();
    assert!(
        matches!(
            store.insert_entity(cp, &termination(Some(("service", &svc)), None)).await,
            Err(StoreError::Conflict(Conflict::Field("cache_key")))
        ),
        "one instance of a plugin per scope"
    );
    assert!(matches!(
        store.insert_entity(cp, &termination(None, Some("deny"))).await,
        Err(StoreError::Conflict(Conflict::Field("instance_name")))
    ));
    store.insert_entity(cp, &termination(None, None)).await.unwrap();

    let orphan_service = service("ghost", &[]);
    assert!(matches!(
        store.insert_entity(cp, &route("r", &orphan_service)).await,
        Err(StoreError::MissingReference { field: "service" })
    ));
    assert!(
        matches!(
            store.insert_entity(cp, &termination(Some(("consumer", &svc)), None)).await,
            Err(StoreError::MissingReference { field: "consumer" })
        ),
        "a reference must name an entity of the right kind"
    );

    let elsewhere = make_control_plane(&store, "elsewhere").await;
    store.insert_entity(elsewhere, &service("svc", &[])).await.unwrap();
    assert!(
        matches!(
            store.insert_entity(elsewhere, &route("r", &svc)).await,
            Err(StoreError::MissingReference { field: "service" })
        ),
        "references stay inside one control plane"
    );
}

async fn gateway_entity_deletes_guard_and_cascade(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let svc = service("svc", &[]);
    store.insert_entity(cp, &svc).await.unwrap();
    let r = route("r", &svc);
    store.insert_entity(cp, &r).await.unwrap();
    let on_route = termination(Some(("route", &r)), None);
    let on_service = termination(Some(("service", &svc)), None);
    let global = termination(None, None);
    for p in [&on_route, &on_service, &global] {
        store.insert_entity(cp, p).await.unwrap();
    }
    assert!(matches!(
        store.delete_entity(cp, EntityKind::Service, svc.id).await,
        Err(StoreError::Referenced { by: "routes" })
    ));
    assert!(store.get_entity(cp, EntityKind::Service, svc.id).await.unwrap().is_some(), "a refused delete keeps it");

    assert!(store.delete_entity(cp, EntityKind::Route, r.id).await.unwrap());
    assert!(store.get_entity(cp, EntityKind::Plugin, on_route.id).await.unwrap().is_none(), "its plugins go too");
    assert!(store.delete_entity(cp, EntityKind::Service, svc.id).await.unwrap());
    assert!(store.get_entity(cp, EntityKind::Plugin, on_service.id).await.unwrap().is_none());
    assert!(store.get_entity(cp, EntityKind::Plugin, global.id).await.unwrap().is_some(), "global plugins stay");
    assert!(!store.delete_entity(cp, EntityKind::Service, svc.id).await.unwrap(), "a second delete finds nothing");
}

fn acl(consumer: &StoredEntity, group: &str) -> StoredEntity {
    let mut e =
        entity(EntityKind::Acl, serde_json::json!({"consumer": {"id": consumer.id.to_string()}, "group": group}));
    e.data.remove("updated_at");
    e
}

/// `acls` need no table of their own: a group is unique per consumer (the cache key), the consumer must exist,
/// and deleting the consumer deletes its acls (Kong's `on_delete = "cascade"`).
async fn gateway_acls_are_unique_per_consumer_and_follow_it(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let ann = entity(EntityKind::Consumer, serde_json::json!({"username": "ann"}));
    let bob = entity(EntityKind::Consumer, serde_json::json!({"username": "bob"}));
    store.insert_entity(cp, &ann).await.unwrap();
    store.insert_entity(cp, &bob).await.unwrap();
    let (ann_admins, bob_admins) = (acl(&ann, "admins"), acl(&bob, "admins"));
    store.insert_entity(cp, &ann_admins).await.unwrap();
    store.insert_entity(cp, &bob_admins).await.unwrap();
    assert!(matches!(
        store.insert_entity(cp, &acl(&ann, "admins")).await,
        Err(StoreError::Conflict(Conflict::Field("cache_key")))
    ));
    let ghost = entity(EntityKind::Consumer, serde_json::json!({"username": "ghost"}));
    assert!(matches!(
        store.insert_entity(cp, &acl(&ghost, "admins")).await,
        Err(StoreError::MissingReference { field: "consumer" })
    ));
    let of_ann = EntityQuery { consumer_id: Some(ann.id), ..entity_query(100) };
    let (listed, _) = store.list_entities(cp, EntityKind::Acl, &of_ann).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&ann_admins));

    assert!(store.delete_entity(cp, EntityKind::Consumer, ann.id).await.unwrap());
    assert!(store.get_entity(cp, EntityKind::Acl, ann_admins.id).await.unwrap().is_none(), "its acls go too");
    assert!(store.get_entity(cp, EntityKind::Acl, bob_admins.id).await.unwrap().is_some(), "others' stay");
}

/// A keyauth credential as the control plane stores it: the key sealed in the data, its keyed hash (here a stand-in)
/// in `endpoint_key`.
fn key_auth(consumer: &StoredEntity, hash: &str) -> StoredEntity {
    let mut e = entity(
        EntityKind::KeyAuth,
        serde_json::json!({"consumer": {"id": consumer.id.to_string()}, "key": "gatehouse:sealed:v1:AAAA"}),
    );
    e.data.remove("updated_at");
    e.endpoint_key = Some(hash.to_owned());
    e
}

/// Keys are unique by their hash (the `endpoint_key` column, which `find_entity` looks up), and deleting the
/// consumer deletes its keys (Kong's `on_delete = "cascade"`).
async fn gateway_key_auths_are_unique_by_their_hash_and_follow_their_consumer(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let ann = entity(EntityKind::Consumer, serde_json::json!({"username": "ann"}));
    let bob = entity(EntityKind::Consumer, serde_json::json!({"username": "bob"}));
    store.insert_entity(cp, &ann).await.unwrap();
    store.insert_entity(cp, &bob).await.unwrap();
    let (ann_key, bob_key) = (key_auth(&ann, "hash-a"), key_auth(&bob, "hash-b"));
    store.insert_entity(cp, &ann_key).await.unwrap();
    store.insert_entity(cp, &bob_key).await.unwrap();
    assert!(matches!(
        store.insert_entity(cp, &key_auth(&bob, "hash-a")).await,
        Err(StoreError::Conflict(Conflict::Field("key")))
    ));
    assert_eq!(store.find_entity(cp, EntityKind::KeyAuth, "hash-b").await.unwrap(), Some(bob_key.clone()));
    assert!(store.find_entity(cp, EntityKind::KeyAuth, "gatehouse:sealed:v1:AAAA").await.unwrap().is_none());

    assert!(store.delete_entity(cp, EntityKind::Consumer, ann.id).await.unwrap());
    assert!(store.get_entity(cp, EntityKind::KeyAuth, ann_key.id).await.unwrap().is_none(), "its keys go too");
    assert!(store.get_entity(cp, EntityKind::KeyAuth, bob_key.id).await.unwrap().is_some(), "others' stay");
}

/// A certificate as the control plane stores it (key sealed; the PEM is not looked at by the store).
fn certificate() -> StoredEntity {
    let mut e = entity(
        EntityKind::Certificate,
        serde_json::json!({"cert": "-----BEGIN CERTIFICATE-----", "key": "-----BEGIN PRIVATE KEY-----"}),
    );
    e.data.insert("key".into(), serde_json::json!("gatehouse:sealed:v1:AAAA"));
    e
}

fn sni(name: &str, certificate: &StoredEntity) -> StoredEntity {
    entity(EntityKind::Sni, serde_json::json!({"name": name, "certificate": {"id": certificate.id.to_string()}}))
}

/// SNI names are unique (the endpoint key), an SNI needs its certificate (the `certificate_id` column, migration
/// 5), lists filter by certificate, and deleting a certificate deletes its SNIs (Kong's certificates DAO).
async fn gateway_snis_are_unique_need_their_certificate_and_go_with_it(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let (one, two) = (certificate(), certificate());
    store.insert_entity(cp, &one).await.unwrap();
    store.insert_entity(cp, &two).await.unwrap();
    assert_eq!(one.endpoint_key, None, "a certificate has no name");
    let (a, b) = (sni("a.example.com", &one), sni("*.example.org", &two));
    store.insert_entity(cp, &a).await.unwrap();
    store.insert_entity(cp, &b).await.unwrap();
    assert_eq!(a.certificate_id, Some(one.id));
    assert!(matches!(
        store.insert_entity(cp, &sni("a.example.com", &two)).await,
        Err(StoreError::Conflict(Conflict::Field("name")))
    ));
    assert!(matches!(
        store.insert_entity(cp, &sni("c.example.com", &certificate())).await,
        Err(StoreError::MissingReference { field: "certificate" })
    ));
    assert_eq!(store.find_entity(cp, EntityKind::Sni, "a.example.com").await.unwrap(), Some(a.clone()));
    let of_one = EntityQuery { certificate_id: Some(one.id), ..entity_query(100) };
    let (listed, _) = store.list_entities(cp, EntityKind::Sni, &of_one).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&a));

    assert!(store.delete_entity(cp, EntityKind::Certificate, one.id).await.unwrap());
    assert!(store.get_entity(cp, EntityKind::Sni, a.id).await.unwrap().is_none(), "its SNIs go too");
    assert!(store.get_entity(cp, EntityKind::Sni, b.id).await.unwrap().is_some(), "others' stay");
}

/// `write_certificate`: the certificate and its SNI list in one transaction; a kept name keeps its SNI's id, and a
/// list that cannot be written (a name another certificate holds) leaves the certificate unwritten too.
async fn gateway_a_certificate_and_its_snis_are_written_at_once(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let (one, other) = (certificate(), certificate());
    store.insert_entity(cp, &other).await.unwrap();
    store.insert_entity(cp, &sni("taken.example.com", &other)).await.unwrap();
    let names = |list: &[StoredEntity]| {
        let mut names: Vec<String> = list.iter().filter_map(|s| s.endpoint_key.clone()).collect();
        names.sort();
        names
    };
    let of_one = EntityQuery { certificate_id: Some(one.id), ..entity_query(100) };

    let first = [sni("a.example.com", &one), sni("b.example.com", &one)];
    assert!(store.write_certificate(cp, &one, true, Some(&first)).await.unwrap(), "created");
    let (listed, _) = store.list_entities(cp, EntityKind::Sni, &of_one).await.unwrap();
    assert_eq!(names(&listed), ["a.example.com", "b.example.com"]);
    assert!(matches!(store.write_certificate(cp, &one, true, None).await, Err(StoreError::Conflict(Conflict::Id))));

    let second = [sni("B.example.com", &one), sni("c.example.com", &one)];
    assert!(!store.write_certificate(cp, &one, false, Some(&second)).await.unwrap());
    let (listed, _) = store.list_entities(cp, EntityKind::Sni, &of_one).await.unwrap();
    assert_eq!(names(&listed), ["b.example.com", "c.example.com"], "a name kept in another case stays as it was");
    let kept = listed.iter().find(|s| s.endpoint_key.as_deref() == Some("b.example.com")).unwrap();
    assert_eq!(kept.id, first[1].id, "a kept SNI keeps its id");

    // A name another certificate holds: nothing of the write happens, the certificate included.
    let fresh = certificate();
    let clash = [sni("d.example.com", &fresh), sni("taken.example.com", &fresh)];
    assert!(matches!(
        store.write_certificate(cp, &fresh, true, Some(&clash)).await,
        Err(StoreError::Conflict(Conflict::Field("name")))
    ));
    assert!(store.get_entity(cp, EntityKind::Certificate, fresh.id).await.unwrap().is_none());
    assert!(store.find_entity(cp, EntityKind::Sni, "d.example.com").await.unwrap().is_none());
}

fn target(address: &str, upstream: &StoredEntity) -> StoredEntity {
    entity(EntityKind::Target, serde_json::json!({"target": address, "upstream": {"id": upstream.id.to_string()}}))
}

/// A target needs its upstream (the `upstream_id` column, migration 6), is unique per upstream by its cache key
/// (the same address under another upstream is fine), lists filter by upstream, and deleting an upstream deletes
/// its targets (Kong's `on_delete = "cascade"`).
async fn gateway_targets_are_unique_per_upstream_and_go_with_it(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let one = entity(EntityKind::Upstream, serde_json::json!({"name": "one"}));
    let two = entity(EntityKind::Upstream, serde_json::json!({"name": "two"}));
    store.insert_entity(cp, &one).await.unwrap();
    store.insert_entity(cp, &two).await.unwrap();
    let (a, b) = (target("10.0.0.1:80", &one), target("10.0.0.1:80", &two));
    store.insert_entity(cp, &a).await.unwrap();
    store.insert_entity(cp, &b).await.unwrap();
    assert_eq!((a.upstream_id, a.endpoint_key.clone()), (Some(one.id), None));
    assert!(matches!(
        store.insert_entity(cp, &target("10.0.0.1:80", &one)).await,
        Err(StoreError::Conflict(Conflict::Field("cache_key")))
    ));
    let orphan = entity(EntityKind::Upstream, serde_json::json!({"name": "orphan"}));
    assert!(matches!(
        store.insert_entity(cp, &target("10.0.0.2", &orphan)).await,
        Err(StoreError::MissingReference { field: "upstream" })
    ));
    let of_one = EntityQuery { upstream_id: Some(one.id), ..entity_query(100) };
    let (listed, _) = store.list_entities(cp, EntityKind::Target, &of_one).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&a));

    assert!(store.delete_entity(cp, EntityKind::Upstream, one.id).await.unwrap());
    assert!(store.get_entity(cp, EntityKind::Target, a.id).await.unwrap().is_none(), "its targets go too");
    assert!(store.get_entity(cp, EntityKind::Target, b.id).await.unwrap().is_some(), "others' stay");
}

/// A CA certificate's digest is its unique cache key.
async fn gateway_ca_certificates_are_unique_by_digest(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let ca = |digest: &str| {
        entity(
            EntityKind::CaCertificate,
            serde_json::json!({"cert": "-----BEGIN CERTIFICATE-----", "cert_digest": digest}),
        )
    };
    let first = ca("abc");
    store.insert_entity(cp, &first).await.unwrap();
    assert_eq!(first.cache_key.as_deref(), Some("abc"));
    assert!(matches!(
        store.insert_entity(cp, &ca("abc")).await,
        Err(StoreError::Conflict(Conflict::Field("cache_key")))
    ));
    store.insert_entity(cp, &ca("def")).await.unwrap();
    assert_eq!(store.get_entity(cp, EntityKind::CaCertificate, first.id).await.unwrap(), Some(first));
}

async fn gateway_entity_list_pages_and_filters(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let tagged: [(&str, &[&str]); 5] =
        [("s1", &["red"]), ("s2", &["red", "blue"]), ("s3", &["blue"]), ("s4", &[]), ("s5", &["redder"])];
    let mut services = Vec::new();
    for (name, tags) in tagged {
        let s = service(name, tags);
        store.insert_entity(cp, &s).await.unwrap();
        services.push(s);
    }
    let mut ids: Vec<_> = services.iter().map(|s| s.id).collect();
    ids.sort();

    let mut seen = Vec::new();
    let mut q = entity_query(2);
    loop {
        let (page, next) = store.list_entities(cp, EntityKind::Service, &q).await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|e| e.id));
        match next {
            Some(after) => q.after = Some(after),
            None => break,
        }
    }
    assert_eq!(seen, ids, "keyset pages visit every entity once, in id order");

    let names = |q: EntityQuery| {
        let store = store.clone();
        async move {
            let (page, _) = store.list_entities(cp, EntityKind::Service, &q).await.unwrap();
            let mut names: Vec<String> = page.into_iter().filter_map(|e| e.endpoint_key).collect();
            names.sort();
            names
        }
    };
    let tags = |f: TagFilter| EntityQuery { tags: f, ..entity_query(100) };
    assert_eq!(names(tags(TagFilter::All(vec!["red".into()]))).await, ["s1", "s2"], "whole tags only");
    assert_eq!(names(tags(TagFilter::All(vec!["red".into(), "blue".into()]))).await, ["s2"]);
    assert_eq!(names(tags(TagFilter::Any(vec!["red".into(), "blue".into()]))).await, ["s1", "s2", "s3"]);
    assert_eq!(names(EntityQuery { key_eq: Some("s4".into()), ..entity_query(100) }).await, ["s4"]);
    assert_eq!(names(EntityQuery { key_contains: Some("s".into()), ..entity_query(100) }).await.len(), 5);

    let r1 = route("r1", &services[0]);
    let r2 = route("r2", &services[1]);
    store.insert_entity(cp, &r1).await.unwrap();
    store.insert_entity(cp, &r2).await.unwrap();
    let (of_s1, _) = store
        .list_entities(cp, EntityKind::Route, &EntityQuery { service_id: Some(services[0].id), ..entity_query(100) })
        .await
        .unwrap();
    assert_eq!(of_s1, vec![r1]);
    let all = store.all_entities(cp).await.unwrap();
    assert_eq!(all.len(), 7);
    // The unparsed rows, for the publisher: the same entities in the same order, the same data once parsed.
    let rows = store.all_entity_rows(cp).await.unwrap();
    let parsed: Vec<_> = rows.iter().map(|r| (r.kind, r.id, r.endpoint_key.clone(), r.parse().unwrap())).collect();
    let expected: Vec<_> = all.into_iter().map(|e| (e.kind, e.id, e.endpoint_key, e.data)).collect();
    assert_eq!(parsed, expected);
}

async fn gateway_writes_publish_invalidations(store: S, _db: &TestDatabase) {
    let cp = make_control_plane(&store, "cp").await;
    let mut events = store.bus().subscribe();
    let svc = service("svc", &[]);
    store.insert_entity(cp, &svc).await.unwrap();
    let expected = Invalidation::GatewayConfig { control_plane_id: cp };
    let next = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!(next, expected);
    // A refused write publishes nothing.
    let _ = store.insert_entity(cp, &svc).await.unwrap_err();
    assert!(store.delete_entity(cp, EntityKind::Service, svc.id).await.unwrap());
    let next = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!(next, expected, "the delete is the next event");
}

fn counter(
    route: Option<uuid::Uuid>,
    identifier: &'static str,
    period: &'static str,
    period_date: i64,
) -> RateLimitCounter<'static> {
    RateLimitCounter {
        route_id: route,
        service_id: None,
        identifier,
        period,
        period_date,
        expires_at: period_date + 60,
    }
}

async fn rate_limit_counters_count_and_prune(store: S, _db: &TestDatabase) {
    let route = Some(uuid::Uuid::new_v4());
    let minute = counter(route, "1.2.3.4", "minute", 1_700_000_040);
    let hour = RateLimitCounter { period: "hour", period_date: 1_699_999_200, expires_at: 1_700_002_800, ..minute };
    let unscoped = counter(None, "1.2.3.4", "minute", 1_700_000_040);
    let next = counter(route, "1.2.3.4", "minute", 1_700_000_100);

    assert_eq!(store.rate_limit_values(&[minute, hour]).await.unwrap(), [0, 0], "missing counters read 0");
    assert_eq!(store.increment_rate_limits(&[minute, hour], 1).await.unwrap(), [1, 1]);
    assert_eq!(store.increment_rate_limits(&[hour, minute], 3).await.unwrap(), [4, 4], "answers in the order asked");
    assert_eq!(store.increment_rate_limits(&[unscoped], 2).await.unwrap(), [2], "another scope, another counter");
    assert_eq!(store.increment_rate_limits(&[next], 1).await.unwrap(), [1], "another window, another counter");
    assert_eq!(store.increment_rate_limits(&[], 1).await.unwrap(), Vec::<u64>::new());
    assert_eq!(store.rate_limit_values(&[minute, hour, unscoped, next]).await.unwrap(), [4, 4, 2, 1]);

    // The first minute ends at 1_700_000_100: it and the unscoped one go, the hour and the next minute stay.
    assert_eq!(store.prune_rate_limits(1_700_000_099).await.unwrap(), 0);
    assert_eq!(store.prune_rate_limits(1_700_000_100).await.unwrap(), 2);
    assert_eq!(store.rate_limit_values(&[minute, hour, unscoped, next]).await.unwrap(), [0, 4, 0, 1]);
}

/// Nodes on one database (on PostgreSQL a second store handle, with its own pool; on SQLite, whose file belongs
/// to one node, concurrent requests of that node) counting at once never see the same value.
async fn rate_limit_counters_are_exact_across_nodes(store: S, db: &TestDatabase) {
    let second = match db.shared() {
        Some(shared) => shared.open().await,
        None => store.clone(),
    };
    let route = uuid::Uuid::new_v4();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let node = if i % 2 == 0 { store.clone() } else { second.clone() };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..40 {
                    let keys = [
                        counter(Some(route), "a", "minute", 1_700_000_040),
                        counter(Some(route), "a", "second", 1_700_000_041),
                    ];
                    let values = node.increment_rate_limits(&keys, 1).await.unwrap();
                    assert_eq!(values[0], values[1]);
                    seen.push(values[0]);
                }
                seen
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=320).collect::<Vec<u64>>());
    let key = [counter(Some(route), "a", "minute", 1_700_000_040)];
    assert_eq!(second.rate_limit_values(&key).await.unwrap(), [320]);
    assert_eq!(store.rate_limit_values(&key).await.unwrap(), [320]);
}

fn data_plane(cp: uuid::Uuid, id: u128, at: i64) -> DataPlaneNode {
    DataPlaneNode {
        id: uuid::Uuid::from_u128(id),
        control_plane_id: cp,
        hostname: format!("edge-{id}"),
        version: "0.1.0".into(),
        config_hash: String::new(),
        last_error: None,
        last_ping: ts(at),
        created_at: ts(at),
        updated_at: ts(at),
    }
}

async fn cluster_nodes_are_upserted_paged_and_go_with_their_control_plane(store: S, _db: &TestDatabase) {
    let cp = control_plane("hybrid", ClusterType::ControlPlane, &[]);
    let other = control_plane("elsewhere", ClusterType::ControlPlane, &[]);
    store.create_control_plane(&cp).await.unwrap();
    store.create_control_plane(&other).await.unwrap();
    for id in [3, 1, 2] {
        store.upsert_data_plane(&data_plane(cp.id, id, 10)).await.unwrap();
    }
    store.upsert_data_plane(&data_plane(other.id, 9, 10)).await.unwrap();

    // A report replaces everything but when the node was first seen.
    let mut report = data_plane(cp.id, 2, 99);
    report.config_hash = "ab".repeat(16);
    report.last_error = Some("refused".into());
    store.upsert_data_plane(&report).await.unwrap();
    let stored = store.get_data_plane(cp.id, report.id).await.unwrap().unwrap();
    assert_eq!(stored.created_at, ts(10));
    assert_eq!((stored.last_ping, stored.updated_at), (ts(99), ts(99)));
    assert_eq!(
        (stored.config_hash.as_str(), stored.last_error.as_deref()),
        (report.config_hash.as_str(), Some("refused"))
    );
    assert!(store.get_data_plane(other.id, report.id).await.unwrap().is_none(), "per control plane");

    let first = store.list_data_planes(cp.id, None, 2).await.unwrap();
    assert_eq!(first.total, 3);
    let ids: Vec<u128> = first.items.iter().map(|n| n.id.as_u128()).collect();
    assert_eq!(ids, [1, 2]);
    let rest = store.list_data_planes(cp.id, Some(first.items[1].id), 2).await.unwrap();
    assert_eq!(rest.items.iter().map(|n| n.id.as_u128()).collect::<Vec<_>>(), [3]);

    assert!(store.delete_data_plane(cp.id, uuid::Uuid::from_u128(3)).await.unwrap());
    assert!(!store.delete_data_plane(cp.id, uuid::Uuid::from_u128(3)).await.unwrap());
    store.delete_control_plane(cp.id).await.unwrap();
    assert_eq!(store.list_data_planes(cp.id, None, 10).await.unwrap().total, 0, "gone with the control plane");
    assert_eq!(store.list_data_planes(other.id, None, 10).await.unwrap().total, 1);
}

async fn cluster_pinned_certificates_round_trip_and_publish(store: S, _db: &TestDatabase) {
    let cp = control_plane("pki", ClusterType::ControlPlane, &[]);
    store.create_control_plane(&cp).await.unwrap();
    let mut events = store.bus().subscribe();
    let cert = |id: u128, at: i64| DpClientCertificate {
        id: uuid::Uuid::from_u128(id),
        control_plane_id: cp.id,
        cert: format!("-----BEGIN CERTIFICATE-----\n{id}\n-----END CERTIFICATE-----\n"),
        title: format!("edge {id}"),
        created_at: ts(at),
        updated_at: ts(at),
    };
    store.create_dp_certificate(&cert(2, 20)).await.unwrap();
    store.create_dp_certificate(&cert(1, 30)).await.unwrap();
    let expected = Invalidation::DpClientCertificates { control_plane_id: cp.id };
    assert_eq!(events.recv().await.unwrap(), expected);
    assert_eq!(store.get_dp_certificate(cp.id, cert(1, 30).id).await.unwrap(), Some(cert(1, 30)));
    let listed = store.list_dp_certificates(cp.id).await.unwrap();
    assert_eq!(listed, [cert(2, 20), cert(1, 30)], "oldest first");
    assert!(store.delete_dp_certificate(cp.id, cert(2, 20).id).await.unwrap());
    assert!(!store.delete_dp_certificate(cp.id, cert(2, 20).id).await.unwrap());
    assert_eq!(store.list_dp_certificates(cp.id).await.unwrap(), [cert(1, 30)]);
}
