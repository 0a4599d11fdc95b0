//! Storage errors: what callers branch on (not found, conflicts, domain limits) plus opaque backend failures.

use std::fmt;

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Name,
    Id,
    /// A named unique field of a gateway entity (`name`, `username`, `custom_id`, `instance_name`, `cache_key`).
    Field(&'static str),
    /// A constraint the store did not expect to hit first (a concurrent write won a race).
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict on {0:?}")]
    Conflict(Conflict),
    /// An auth server still has children and `force` was not given.
    #[error("auth server is not empty")]
    NotEmpty { clients: u64, scopes: u64, claims: u64 },
    /// Claims still name the scope in `include_in_scopes` and `force` was not given.
    #[error("scope is referenced by claims")]
    ScopeInUse { claims: Vec<String> },
    /// Creating or enabling a secret would pass a per-client limit.
    #[error("secret limit reached")]
    SecretLimit { enabled_limit: bool },
    /// A gateway entity names another (`service`, `route`, `consumer`) that does not exist.
    #[error("missing reference in {field}")]
    MissingReference { field: &'static str },
    /// Other entities still reference this one (`routes` reference a service).
    #[error("referenced by {by}")]
    Referenced { by: &'static str },
    /// A row could not be decoded: the database holds something this version does not understand.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn corrupt(msg: impl fmt::Display) -> Self {
        StoreError::Corrupt(msg.to_string())
    }
}

/// The one mapping from driver errors; the same for every backend because sqlx classifies them.
pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(Conflict::Other),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e)
        }
        _ => StoreError::Database(e),
    }
}
