//! Storage errors: what callers branch on (not found, conflicts, domain limits) plus opaque backend failures.

use std::fmt;

use sqlx::error::DatabaseError;

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
    /// The database cannot do the work right now: unreachable, out of disk, failing I/O, locked for too long.
    /// Callers answer 503; readiness reports failing writes.
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

    /// For [`StoreError::Unavailable`], a short phrase saying why that reveals nothing about the deployment.
    pub fn unavailable_reason(&self) -> Option<&'static str> {
        let StoreError::Unavailable(e) = self else { return None };
        Some(match e {
            sqlx::Error::Database(db) if sqlite_code(db.as_ref()) == Some(SQLITE_FULL) => "the disk is full",
            sqlx::Error::Database(db) if db.code().as_deref() == Some(PG_DISK_FULL) => "the disk is full",
            sqlx::Error::Database(db) if sqlite_code(db.as_ref()).is_some() => "the database cannot be written",
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("53") || c.starts_with("58")) => {
                "the database server is out of resources"
            }
            _ => "the database is unreachable",
        })
    }
}

const SQLITE_FULL: i32 = 13;
/// Primary SQLite result codes that say the database or its file system cannot do the work now, not that the
/// statement is wrong: BUSY (the lock was held past the busy timeout), LOCKED, NOMEM, READONLY, IOERR, FULL,
/// CANTOPEN.
const SQLITE_UNAVAILABLE: [i32; 7] = [5, 6, 7, 8, 10, SQLITE_FULL, 14];
const PG_DISK_FULL: &str = "53100";

/// The primary result code of a SQLite error (extended codes carry it in the low byte).
fn sqlite_code(e: &dyn DatabaseError) -> Option<i32> {
    let e = e.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    Some(e.code()?.parse::<i32>().ok()? & 0xff)
}

/// PostgreSQL SQLSTATE classes of the same kind: connection exceptions (08), insufficient resources such as a
/// full disk (53), operator intervention such as a terminated backend or a shutdown (57, but not 57014: a statement
/// cancelled or past `statement_timeout` says nothing about the server's health), system errors such as I/O (58),
/// and a read-only server (25006).
fn pg_unavailable(code: &str) -> bool {
    let class = ["08", "53", "57", "58"].iter().any(|class| code.starts_with(class));
    (class && code != "57014") || code == "25006"
}

fn is_unavailable(db: &dyn DatabaseError) -> bool {
    match sqlite_code(db) {
        Some(code) => SQLITE_UNAVAILABLE.contains(&code),
        None => db.code().is_some_and(|c| pg_unavailable(&c)),
    }
}

/// The one mapping from driver errors; the same for every backend because sqlx classifies them.
pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(Conflict::Other),
        sqlx::Error::Database(db) if is_unavailable(db.as_ref()) => StoreError::Unavailable(e),
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
        _ => StoreError::Database(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_faults_of_the_server_make_postgres_unavailable() {
        for fault in ["08006", "53100", "57P01", "58030", "25006"] {
            assert!(pg_unavailable(fault), "{fault}");
        }
        // A cancelled or timed-out statement, a constraint, a serialization failure: the server is fine.
        for fine in ["57014", "23505", "40001", "42P01"] {
            assert!(!pg_unavailable(fine), "{fine}");
        }
    }
}
