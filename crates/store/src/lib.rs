//! Storage: small traits per aggregate, implemented once in SQL over SQLite (embedded default) and PostgreSQL
//! (shared by several nodes). The backend is chosen once, in [`open`]; nothing above this crate knows which.

pub mod backup;
pub mod bus;
mod error;
pub mod files;
mod health;
pub mod metered;
pub mod migrations;
mod repo;
mod sql;
pub mod testing;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use gatehouse_model::gateway::cluster::DataPlaneNode;
use gatehouse_model::gateway::control_plane::ControlPlane;
use gatehouse_model::gateway::{EntityKind, StoredEntity};
use gatehouse_model::identity::{AuthServer, Claim, Client, ClientSecret, IssuedToken, Scope, SigningKey};
use gatehouse_model::listing::ListQuery;
use gatehouse_model::pat::PersonalAccessToken;
use gatehouse_model::{
    AuthServerId, ClaimId, ClientId, ClientSecretId, PatId, ScopeId, SecretHash, SigningKeyId, Timestamp, TokenId,
};

pub use bus::{Invalidation, LocalBus};
pub use error::{Conflict, StoreError};
pub use health::WriteStatus;
pub use sql::postgres::PgSettings;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One page of a list and the total number of matching rows.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[async_trait]
pub trait AuthServerStore: Send + Sync {
    /// Creates the server together with its first signing key, atomically.
    async fn create_auth_server(&self, server: &AuthServer, key: &SigningKey) -> Result<()>;
    async fn get_auth_server(&self, id: AuthServerId) -> Result<Option<AuthServer>>;
    async fn find_auth_server_by_issuer_key(&self, issuer_key: &str) -> Result<Option<AuthServer>>;
    async fn list_auth_servers(&self, query: &ListQuery) -> Result<Listed<AuthServer>>;
    /// Saves the server. With `new_key`, that key becomes current and the server's other keys are retired as of
    /// `server.updated_at`.
    async fn update_auth_server(&self, server: &AuthServer, new_key: Option<&SigningKey>) -> Result<()>;
    /// Without `force`, fails with [`StoreError::NotEmpty`] while clients, scopes or claims exist; with it,
    /// removes everything under the server.
    async fn delete_auth_server(&self, id: AuthServerId, force: bool) -> Result<()>;
}

#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Every key of the server, current (not retired) first.
    async fn signing_keys(&self, auth_server: AuthServerId) -> Result<Vec<SigningKey>>;
    /// Makes `key` the server's current key and retires the others as of `key.created_at`.
    async fn rotate_signing_key(&self, key: &SigningKey) -> Result<()>;
}

#[async_trait]
pub trait ScopeStore: Send + Sync {
    async fn create_scope(&self, scope: &Scope) -> Result<()>;
    async fn get_scope(&self, auth_server: AuthServerId, id: ScopeId) -> Result<Option<Scope>>;
    async fn list_scopes(&self, auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Scope>>;
    async fn all_scopes(&self, auth_server: AuthServerId) -> Result<Vec<Scope>>;
    async fn update_scope(&self, scope: &Scope) -> Result<()>;
    /// Also removes the scope from clients' `allow_scopes`. Without `force`, fails with
    /// [`StoreError::ScopeInUse`] while claims list it in `include_in_scopes`; with it, removes it there too.
    async fn delete_scope(&self, auth_server: AuthServerId, id: ScopeId, force: bool) -> Result<()>;
}

#[async_trait]
pub trait ClaimStore: Send + Sync {
    async fn create_claim(&self, claim: &Claim) -> Result<()>;
    async fn get_claim(&self, auth_server: AuthServerId, id: ClaimId) -> Result<Option<Claim>>;
    async fn list_claims(&self, auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Claim>>;
    async fn all_claims(&self, auth_server: AuthServerId) -> Result<Vec<Claim>>;
    async fn update_claim(&self, claim: &Claim) -> Result<()>;
    async fn delete_claim(&self, auth_server: AuthServerId, id: ClaimId) -> Result<()>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Creates the client with its first secret, atomically.
    async fn create_client(&self, client: &Client, secret: &ClientSecret) -> Result<()>;
    async fn get_client(&self, auth_server: AuthServerId, id: &ClientId) -> Result<Option<Client>>;
    async fn list_clients(&self, auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Client>>;
    async fn all_clients(&self, auth_server: AuthServerId) -> Result<Vec<Client>>;
    /// Saves the client; with `replacement`, every existing secret is deleted and this one takes their place.
    async fn update_client(&self, client: &Client, replacement: Option<&ClientSecret>) -> Result<()>;
    /// Also removes the client's secrets, token records and revocations: its tokens are refused from now on
    /// because the client is gone, and stay refused if the id is re-created (they predate its `created_at`).
    async fn delete_client(&self, auth_server: AuthServerId, id: &ClientId) -> Result<()>;
}

#[async_trait]
pub trait ClientSecretStore: Send + Sync {
    async fn list_client_secrets(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        query: &ListQuery,
    ) -> Result<Listed<ClientSecret>>;
    async fn get_client_secret(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        id: ClientSecretId,
    ) -> Result<Option<ClientSecret>>;
    /// Adds a secret; fails with [`StoreError::SecretLimit`] past the enabled or total limit.
    async fn add_client_secret(&self, secret: &ClientSecret, max_enabled: usize, max_total: usize) -> Result<()>;
    /// Enables or disables a secret; enabling fails with [`StoreError::SecretLimit`] past `max_enabled`.
    async fn set_client_secret_enabled(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        id: ClientSecretId,
        enabled: bool,
        max_enabled: usize,
        now: Timestamp,
    ) -> Result<ClientSecret>;
    async fn delete_client_secret(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        id: ClientSecretId,
    ) -> Result<()>;
    /// The enabled secrets of every client of the server (for the issuer's in-memory snapshot).
    async fn enabled_client_secrets(&self, auth_server: AuthServerId) -> Result<Vec<ClientSecret>>;
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Persists records in one transaction (the issuer batches concurrent mints into one call); returns once
    /// they are durable.
    async fn record_tokens(&self, tokens: &[IssuedToken]) -> Result<()>;
    /// Tokens not revoked, oldest first by default.
    async fn list_tokens(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        query: &ListQuery,
    ) -> Result<Listed<IssuedToken>>;
    async fn get_token(&self, auth_server: AuthServerId, client: &ClientId, id: TokenId)
    -> Result<Option<IssuedToken>>;
    /// Revokes one token: its record becomes a revocation kept until the token expires. `NotFound` when the
    /// client has no such (unrevoked) token.
    async fn revoke_token(&self, auth_server: AuthServerId, client: &ClientId, id: TokenId) -> Result<IssuedToken>;
    /// Revokes every token of a client; returns the revoked ids with their expiry.
    async fn revoke_client_tokens(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
    ) -> Result<Vec<(TokenId, Timestamp)>>;
    /// Revoked tokens that have not expired by `now`.
    async fn live_revocations(&self, now: Timestamp) -> Result<Vec<(TokenId, Timestamp)>>;
    async fn client_revocations(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
    ) -> Result<Vec<(TokenId, Timestamp)>>;
    /// Deletes records expired for longer than the retention and revocations of expired tokens.
    async fn prune_tokens(&self, now: Timestamp) -> Result<u64>;
    /// The latest expiry of an unrevoked token the key signed (a retired key stays published until then).
    async fn key_token_expiry(&self, key: SigningKeyId) -> Result<Option<Timestamp>>;
}

#[async_trait]
pub trait ControlPlaneStore: Send + Sync {
    /// `Conflict(Name)` when the name is taken.
    async fn create_control_plane(&self, cp: &ControlPlane) -> Result<()>;
    async fn get_control_plane(&self, id: uuid::Uuid) -> Result<Option<ControlPlane>>;
    async fn find_control_plane_by_name(&self, name: &str) -> Result<Option<ControlPlane>>;
    async fn list_control_planes(&self, query: &ListQuery) -> Result<Listed<ControlPlane>>;
    async fn update_control_plane(&self, cp: &ControlPlane) -> Result<()>;
    /// Deletes the control plane and every entity it holds.
    async fn delete_control_plane(&self, id: uuid::Uuid) -> Result<()>;
}

/// A data plane client certificate a control plane pins (Konnect's `dp-client-certificates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpClientCertificate {
    pub id: uuid::Uuid,
    pub control_plane_id: uuid::Uuid,
    /// PEM.
    pub cert: String,
    pub title: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Hybrid mode: what a control plane knows of its data planes, and the certificates it pins for them.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Creates the record or replaces everything but `created_at`.
    async fn upsert_data_plane(&self, node: &DataPlaneNode) -> Result<()>;
    async fn get_data_plane(&self, control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<Option<DataPlaneNode>>;
    /// A page of the control plane's data planes by id, after `after`; and how many it has.
    async fn list_data_planes(
        &self,
        control_plane: uuid::Uuid,
        after: Option<uuid::Uuid>,
        size: u32,
    ) -> Result<Listed<DataPlaneNode>>;
    /// Whether there was one.
    async fn delete_data_plane(&self, control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<bool>;
    /// Publishes `Invalidation::DpClientCertificates` so listeners reload the pinned set.
    async fn create_dp_certificate(&self, cert: &DpClientCertificate) -> Result<()>;
    async fn get_dp_certificate(
        &self,
        control_plane: uuid::Uuid,
        id: uuid::Uuid,
    ) -> Result<Option<DpClientCertificate>>;
    /// Every certificate the control plane pins, oldest first.
    async fn list_dp_certificates(&self, control_plane: uuid::Uuid) -> Result<Vec<DpClientCertificate>>;
    async fn delete_dp_certificate(&self, control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<bool>;
}

/// Tag filters of Kong's lists: `tags=a,b` (all) or `tags=a/b` (any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TagFilter {
    #[default]
    None,
    All(Vec<String>),
    Any(Vec<String>),
}

/// One stored gateway entity as its row holds it, unparsed: a reader that keeps what it made of each row can
/// compare texts and parse only the rows that changed (the configuration publisher).
#[derive(Debug, Clone)]
pub struct EntityRow {
    pub kind: EntityKind,
    pub id: uuid::Uuid,
    /// See `StoredEntity::endpoint_key` (a keyauth credential's key hash).
    pub endpoint_key: Option<String>,
    /// The entity's JSON text, as `StoredEntity::data` is parsed from.
    pub data: String,
}

impl EntityRow {
    /// The parsed entity.
    pub fn parse(&self) -> Result<gatehouse_model::gateway::Normalized> {
        match serde_json::from_str(&self.data) {
            Ok(serde_json::Value::Object(data)) => Ok(data),
            Ok(_) => Err(StoreError::corrupt("data is not an object")),
            Err(e) => Err(StoreError::corrupt(format!("data: {e}"))),
        }
    }
}

/// A page of gateway entities: keyset paging by id, as Kong's opaque `offset` does.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    pub size: u32,
    pub after: Option<uuid::Uuid>,
    pub tags: TagFilter,
    pub service_id: Option<uuid::Uuid>,
    pub route_id: Option<uuid::Uuid>,
    pub consumer_id: Option<uuid::Uuid>,
    /// An SNI's certificate.
    pub certificate_id: Option<uuid::Uuid>,
    /// A target's upstream.
    pub upstream_id: Option<uuid::Uuid>,
    /// Exact match on the endpoint key (`name`, `username`, `instance_name`).
    pub key_eq: Option<String>,
    pub key_contains: Option<String>,
    pub custom_id: Option<String>,
}

#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// Inserts a new entity. Fails with `Conflict(Field(_))` on a unique key, `Conflict(Id)` on a taken id,
    /// `MissingReference` when a referenced entity does not exist, `NotFound` without the control plane.
    async fn insert_entity(&self, control_plane: uuid::Uuid, entity: &StoredEntity) -> Result<()>;
    /// Inserts or replaces by id (PUT); returns whether it was created.
    async fn upsert_entity(&self, control_plane: uuid::Uuid, entity: &StoredEntity) -> Result<bool>;
    /// A certificate and, with `snis`, exactly those SNIs (matched by name, case-insensitively: a kept one keeps
    /// its id, one no longer listed is deleted, a new one inserted), in one transaction. `create`: a taken id is
    /// `Conflict(Id)` (POST) rather than replaced (PUT, PATCH). Returns whether the certificate was created.
    async fn write_certificate(
        &self,
        control_plane: uuid::Uuid,
        certificate: &StoredEntity,
        create: bool,
        snis: Option<&[StoredEntity]>,
    ) -> Result<bool>;
    async fn get_entity(
        &self,
        control_plane: uuid::Uuid,
        kind: EntityKind,
        id: uuid::Uuid,
    ) -> Result<Option<StoredEntity>>;
    async fn find_entity(&self, control_plane: uuid::Uuid, kind: EntityKind, key: &str)
    -> Result<Option<StoredEntity>>;
    /// Returns the page and, when more follow, the id to continue after.
    async fn list_entities(
        &self,
        control_plane: uuid::Uuid,
        kind: EntityKind,
        query: &EntityQuery,
    ) -> Result<(Vec<StoredEntity>, Option<uuid::Uuid>)>;
    /// Returns whether something was deleted. Plugins of a deleted service, route or consumer go with it; a service
    /// that routes still use is refused with `Referenced`.
    async fn delete_entity(&self, control_plane: uuid::Uuid, kind: EntityKind, id: uuid::Uuid) -> Result<bool>;
    /// Every entity of a control plane (to build the proxy's configuration).
    async fn all_entities(&self, control_plane: uuid::Uuid) -> Result<Vec<StoredEntity>>;
    /// Every entity of a control plane, unparsed, ordered by kind and id.
    async fn all_entity_rows(&self, control_plane: uuid::Uuid) -> Result<Vec<EntityRow>>;
}

#[async_trait]
pub trait PatStore: Send + Sync {
    /// Stores a token; with `replace_same_name`, tokens with the same name are deleted in the same transaction.
    async fn create_pat(&self, pat: &PersonalAccessToken, replace_same_name: bool) -> Result<()>;
    async fn find_pat(&self, hash: &SecretHash) -> Result<Option<PersonalAccessToken>>;
    async fn list_pats(&self) -> Result<Vec<PersonalAccessToken>>;
    async fn delete_pat(&self, id: PatId) -> Result<()>;
}

#[async_trait]
pub trait MetaStore: Send + Sync {
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` unless the key exists; returns what is stored either way.
    async fn init_meta(&self, key: &str, value: &str) -> Result<String>;
}

/// One `rate-limiting` counter of the `cluster` policy: one window of one period, for one identifier, in the scope
/// of one plugin instance. Borrowed, so a request counting in several periods copies nothing to name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RateLimitCounter<'a> {
    pub route_id: Option<uuid::Uuid>,
    pub service_id: Option<uuid::Uuid>,
    pub identifier: &'a str,
    /// Kong's period name (`second` … `year`).
    pub period: &'a str,
    /// The window's first second (unix time).
    pub period_date: i64,
    /// When the window ends (unix seconds); the counter is pruned after it.
    pub expires_at: i64,
}

/// The `cluster` policy's counters, shared by every node on one database.
#[async_trait]
pub trait RateLimitCounterStore: Send + Sync {
    /// Adds `by` to every counter (creating missing ones at 0) in one transaction and returns the values after,
    /// in the order given. Each addition is one atomic upsert, so nodes counting at once never read the same
    /// value: a shared limit is exact.
    async fn increment_rate_limits(&self, counters: &[RateLimitCounter<'_>], by: u64) -> Result<Vec<u64>>;
    /// The counters' values (0 for a missing one), in the order given.
    async fn rate_limit_values(&self, counters: &[RateLimitCounter<'_>]) -> Result<Vec<u64>>;
    /// Deletes counters whose window ended at or before `now` (unix seconds); returns how many. Run periodically,
    /// never per request.
    async fn prune_rate_limits(&self, now: i64) -> Result<u64>;
}

/// Everything the server needs from storage.
pub trait Store:
    AuthServerStore
    + SigningKeyStore
    + ScopeStore
    + ClaimStore
    + ClientStore
    + ClientSecretStore
    + TokenStore
    + ControlPlaneStore
    + GatewayStore
    + PatStore
    + MetaStore
    + RateLimitCounterStore
    + ClusterStore
    + fmt::Debug
{
    /// This node's invalidation bus; it carries this node's writes and, on PostgreSQL, other nodes'.
    fn bus(&self) -> &Arc<LocalBus>;
    fn backend(&self) -> Backend;
    /// Whether writes are failing for a storage reason (disk full, I/O, lost database); read from memory.
    fn write_status(&self) -> WriteStatus;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the data lives: `sqlite://PATH` or `postgres://…`.
#[derive(Debug, Clone)]
pub enum StorageUrl {
    Sqlite(PathBuf),
    Postgres(PgSettings),
}

impl StorageUrl {
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Config("sqlite:// needs a file path".into()));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PgSettings::new(url)));
        }
        Err(StoreError::Config("storage URL must start with sqlite:// or postgres://".into()))
    }

    /// The URL without credentials, for logs.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Postgres(s) => match url::Url::parse(&s.url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("[redacted]"));
                    }
                    u.to_string()
                }
                Err(_) => "postgres://[unparseable]".to_owned(),
            },
        }
    }
}

/// Opens the store, creating the database file or schema if needed and running migrations.
pub async fn open(url: &StorageUrl) -> Result<Arc<dyn Store>> {
    let bus = LocalBus::new();
    let store = match url {
        StorageUrl::Sqlite(path) => {
            files::prepare_sqlite(path)?;
            let db = sql::sqlite::SqliteDb::open(path, bus.clone()).await?;
            repo::SqlStore::new(Arc::new(db), bus, Backend::Sqlite)
        }
        StorageUrl::Postgres(settings) => {
            let db = sql::postgres::PgDb::connect(settings, bus.clone()).await?;
            repo::SqlStore::new(Arc::new(db), bus, Backend::Postgres)
        }
    };
    Ok(Arc::new(store))
}
