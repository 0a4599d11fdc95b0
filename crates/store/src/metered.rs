//! Store query latency at the trait boundary: [`Metered`] wraps the node's store and times every operation
//! into `gatehouse_store_query_seconds{operation, outcome}`. The operation is the trait method's name, so the
//! label set is fixed by this file, whatever the requests.

use std::sync::Arc;
use tokio::time::Instant;

use async_trait::async_trait;

use gatehouse_model::gateway::cluster::DataPlaneNode;
use gatehouse_model::gateway::control_plane::ControlPlane;
use gatehouse_model::gateway::{EntityKind, StoredEntity};
use gatehouse_model::identity::{AuthServer, Claim, Client, ClientSecret, IssuedToken, Scope, SigningKey};
use gatehouse_model::listing::ListQuery;
use gatehouse_model::metrics::gatehouse::{GatehouseMetrics, outcome};
use gatehouse_model::pat::PersonalAccessToken;
use gatehouse_model::{
    AuthServerId, ClaimId, ClientId, ClientSecretId, PatId, ScopeId, SecretHash, SigningKeyId, Timestamp, TokenId,
};

use crate::*;

/// The node's store, timed.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Store>,
    metrics: Arc<GatehouseMetrics>,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<GatehouseMetrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }

    fn observe<T>(&self, operation: &'static str, started: Instant, result: &Result<T>) {
        self.metrics.store_queries.observe(&[operation, outcome(result)], started.elapsed().as_secs_f64());
    }
}

/// Each method forwards to the wrapped store and records how long it took.
macro_rules! metered {
    ($($trait:ident { $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* })*) => {$(
        #[async_trait]
        impl $trait for Metered {
            $(async fn $name(&self, $($arg: $ty),*) -> $ret {
                let started = Instant::now();
                let result = self.inner.$name($($arg),*).await;
                self.observe(stringify!($name), started, &result);
                result
            })*
        }
    )*};
}

metered! {
    AuthServerStore {
        fn create_auth_server(server: &AuthServer, key: &SigningKey) -> Result<()>;
        fn get_auth_server(id: AuthServerId) -> Result<Option<AuthServer>>;
        fn find_auth_server_by_issuer_key(issuer_key: &str) -> Result<Option<AuthServer>>;
        fn list_auth_servers(query: &ListQuery) -> Result<Listed<AuthServer>>;
        fn update_auth_server(server: &AuthServer, new_key: Option<&SigningKey>) -> Result<()>;
        fn delete_auth_server(id: AuthServerId, force: bool) -> Result<()>;
    }
    SigningKeyStore {
        fn signing_keys(auth_server: AuthServerId) -> Result<Vec<SigningKey>>;
        fn rotate_signing_key(key: &SigningKey) -> Result<()>;
    }
    ScopeStore {
        fn create_scope(scope: &Scope) -> Result<()>;
        fn get_scope(auth_server: AuthServerId, id: ScopeId) -> Result<Option<Scope>>;
        fn list_scopes(auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Scope>>;
        fn all_scopes(auth_server: AuthServerId) -> Result<Vec<Scope>>;
        fn update_scope(scope: &Scope) -> Result<()>;
        fn delete_scope(auth_server: AuthServerId, id: ScopeId, force: bool) -> Result<()>;
    }
    ClaimStore {
        fn create_claim(claim: &Claim) -> Result<()>;
        fn get_claim(auth_server: AuthServerId, id: ClaimId) -> Result<Option<Claim>>;
        fn list_claims(auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Claim>>;
        fn all_claims(auth_server: AuthServerId) -> Result<Vec<Claim>>;
        fn update_claim(claim: &Claim) -> Result<()>;
        fn delete_claim(auth_server: AuthServerId, id: ClaimId) -> Result<()>;
    }
    ClientStore {
        fn create_client(client: &Client, secret: &ClientSecret) -> Result<()>;
        fn get_client(auth_server: AuthServerId, id: &ClientId) -> Result<Option<Client>>;
        fn list_clients(auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Client>>;
        fn all_clients(auth_server: AuthServerId) -> Result<Vec<Client>>;
        fn update_client(client: &Client, replacement: Option<&ClientSecret>) -> Result<()>;
        fn delete_client(auth_server: AuthServerId, id: &ClientId) -> Result<()>;
    }
    ClientSecretStore {
        fn list_client_secrets(auth_server: AuthServerId, client: &ClientId, query: &ListQuery) -> Result<Listed<ClientSecret>>;
        fn get_client_secret(auth_server: AuthServerId, client: &ClientId, id: ClientSecretId) -> Result<Option<ClientSecret>>;
        fn add_client_secret(secret: &ClientSecret, max_enabled: usize, max_total: usize) -> Result<()>;
        fn set_client_secret_enabled(auth_server: AuthServerId, client: &ClientId, id: ClientSecretId, enabled: bool, max_enabled: usize, now: Timestamp) -> Result<ClientSecret>;
        fn delete_client_secret(auth_server: AuthServerId, client: &ClientId, id: ClientSecretId) -> Result<()>;
        fn enabled_client_secrets(auth_server: AuthServerId) -> Result<Vec<ClientSecret>>;
    }
    TokenStore {
        fn record_tokens(tokens: &[IssuedToken]) -> Result<()>;
        fn list_tokens(auth_server: AuthServerId, client: &ClientId, query: &ListQuery) -> Result<Listed<IssuedToken>>;
        fn get_token(auth_server: AuthServerId, client: &ClientId, id: TokenId) -> Result<Option<IssuedToken>>;
        fn revoke_token(auth_server: AuthServerId, client: &ClientId, id: TokenId) -> Result<IssuedToken>;
        fn revoke_client_tokens(auth_server: AuthServerId, client: &ClientId) -> Result<Vec<(TokenId, Timestamp)>>;
        fn live_revocations(now: Timestamp) -> Result<Vec<(TokenId, Timestamp)>>;
        fn client_revocations(auth_server: AuthServerId, client: &ClientId) -> Result<Vec<(TokenId, Timestamp)>>;
        fn prune_tokens(now: Timestamp) -> Result<u64>;
        fn key_token_expiry(key: SigningKeyId) -> Result<Option<Timestamp>>;
    }
    ControlPlaneStore {
        fn create_control_plane(cp: &ControlPlane) -> Result<()>;
        fn get_control_plane(id: uuid::Uuid) -> Result<Option<ControlPlane>>;
        fn find_control_plane_by_name(name: &str) -> Result<Option<ControlPlane>>;
        fn list_control_planes(query: &ListQuery) -> Result<Listed<ControlPlane>>;
        fn update_control_plane(cp: &ControlPlane) -> Result<()>;
        fn delete_control_plane(id: uuid::Uuid) -> Result<()>;
    }
    GatewayStore {
        fn insert_entity(control_plane: uuid::Uuid, entity: &StoredEntity) -> Result<()>;
        fn upsert_entity(control_plane: uuid::Uuid, entity: &StoredEntity) -> Result<bool>;
        fn write_certificate(control_plane: uuid::Uuid, certificate: &StoredEntity, create: bool, snis: Option<&[StoredEntity]>) -> Result<bool>;
        fn get_entity(control_plane: uuid::Uuid, kind: EntityKind, id: uuid::Uuid) -> Result<Option<StoredEntity>>;
        fn find_entity(control_plane: uuid::Uuid, kind: EntityKind, key: &str) -> Result<Option<StoredEntity>>;
        fn list_entities(control_plane: uuid::Uuid, kind: EntityKind, query: &EntityQuery) -> Result<(Vec<StoredEntity>, Option<uuid::Uuid>)>;
        fn delete_entity(control_plane: uuid::Uuid, kind: EntityKind, id: uuid::Uuid) -> Result<bool>;
        fn all_entities(control_plane: uuid::Uuid) -> Result<Vec<StoredEntity>>;
        fn all_entity_rows(control_plane: uuid::Uuid) -> Result<Vec<EntityRow>>;
    }
    PatStore {
        fn create_pat(pat: &PersonalAccessToken, replace_same_name: bool) -> Result<()>;
        fn find_pat(hash: &SecretHash) -> Result<Option<PersonalAccessToken>>;
        fn list_pats() -> Result<Vec<PersonalAccessToken>>;
        fn delete_pat(id: PatId) -> Result<()>;
    }
    MetaStore {
        fn get_meta(key: &str) -> Result<Option<String>>;
        fn init_meta(key: &str, value: &str) -> Result<String>;
    }
    RateLimitCounterStore {
        fn increment_rate_limits(counters: &[RateLimitCounter<'_>], by: u64) -> Result<Vec<u64>>;
        fn rate_limit_values(counters: &[RateLimitCounter<'_>]) -> Result<Vec<u64>>;
        fn prune_rate_limits(now: i64) -> Result<u64>;
    }
    ClusterStore {
        fn upsert_data_plane(node: &DataPlaneNode) -> Result<()>;
        fn get_data_plane(control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<Option<DataPlaneNode>>;
        fn list_data_planes(control_plane: uuid::Uuid, after: Option<uuid::Uuid>, size: u32) -> Result<Listed<DataPlaneNode>>;
        fn delete_data_plane(control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<bool>;
        fn create_dp_certificate(cert: &DpClientCertificate) -> Result<()>;
        fn get_dp_certificate(control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<Option<DpClientCertificate>>;
        fn list_dp_certificates(control_plane: uuid::Uuid) -> Result<Vec<DpClientCertificate>>;
        fn delete_dp_certificate(control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<bool>;
    }
}

impl Store for Metered {
    fn bus(&self) -> &Arc<LocalBus> {
        self.inner.bus()
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn write_status(&self) -> WriteStatus {
        self.inner.write_status()
    }
}
