//! Throwaway databases for tests: a SQLite file in its own temporary directory, or a fresh PostgreSQL schema
//! when `GATEHOUSE_TEST_DATABASE_URL` is set. Every test gets its own, so tests run in parallel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sql::postgres::PgDb;
use crate::sql::sqlite::SqliteDb;
use crate::{PgSettings, StorageUrl, Store, StoreError, open};

pub const DATABASE_URL_VAR: &str = "GATEHOUSE_TEST_DATABASE_URL";

/// The PostgreSQL URL of the test server, if the suite is enabled.
pub fn postgres_url() -> Option<String> {
    std::env::var(DATABASE_URL_VAR).ok().filter(|v| !v.is_empty())
}

/// Says, in the test output itself (not captured), whether the PostgreSQL suite runs.
pub fn report_postgres_suite() {
    let line = match postgres_url() {
        Some(_) => "PostgreSQL suite: enabled\n".to_owned(),
        None => format!("PostgreSQL suite: SKIPPED ({DATABASE_URL_VAR} is not set)\n"),
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// A fresh temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", random_suffix()));
        crate::files::private_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
pub struct TestDatabase {
    pub url: StorageUrl,
    dir: Option<TempDir>,
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let dir = TempDir::new("gatehouse-test");
        let url = StorageUrl::Sqlite(dir.path().join("gatehouse.db"));
        Self { url, dir: Some(dir) }
    }

    /// A fresh schema on the test server, or `None` when the PostgreSQL suite is disabled.
    pub fn postgres() -> Option<Self> {
        let mut settings = PgSettings::new(postgres_url()?);
        settings.schema = Some(format!("gh_t_{}", random_suffix()));
        settings.max_connections = 4;
        Some(Self { url: StorageUrl::Postgres(settings), dir: None })
    }

    /// Another handle on the same PostgreSQL schema, for a second node (`None` for SQLite, whose file belongs to
    /// one handle). Only the original handle's `cleanup` drops the schema.
    pub fn shared(&self) -> Option<TestDatabase> {
        match &self.url {
            StorageUrl::Postgres(_) => Some(Self { url: self.url.clone(), dir: None }),
            StorageUrl::Sqlite(_) => None,
        }
    }

    /// The directory holding a SQLite test database.
    pub fn path(&self) -> Option<&Path> {
        self.dir.as_ref().map(TempDir::path)
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        open(&self.url).await.unwrap_or_else(|e| panic!("open test store: {e}"))
    }

    /// Applies migrations up to and including `version` only (for upgrade tests).
    pub async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        match &self.url {
            StorageUrl::Sqlite(path) => {
                let pool = SqliteDb::open_unmigrated(path).await?;
                crate::migrations::sqlite().run_to(version, &pool).await?;
                pool.close().await;
            }
            StorageUrl::Postgres(settings) => {
                create_schema(settings).await?;
                let pool = PgDb::connect_unmigrated(settings).await?;
                crate::migrations::postgres().run_to(version, &pool).await?;
                pool.close().await;
            }
        }
        Ok(())
    }

    /// Runs a script of raw SQL statements (fixtures of an older schema version).
    pub async fn execute_script(&self, sql: &str) -> Result<(), StoreError> {
        match &self.url {
            StorageUrl::Sqlite(path) => {
                let pool = SqliteDb::open_unmigrated(path).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&pool)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                pool.close().await;
            }
            StorageUrl::Postgres(settings) => {
                let pool = PgDb::connect_unmigrated(settings).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&pool)
                    .await
                    .map_err(crate::error::from_sqlx)?;
                pool.close().await;
            }
        }
        Ok(())
    }

    /// Everything the database holds, as bytes: the SQLite file and its WAL, or every row of every table of the
    /// schema as text. Tests scan it for secrets that must never be stored.
    pub async fn raw_contents(&self) -> Vec<u8> {
        match &self.url {
            StorageUrl::Sqlite(path) => {
                let mut out = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    let p = PathBuf::from(format!("{}{suffix}", path.display()));
                    out.extend(std::fs::read(&p).unwrap_or_default());
                }
                out
            }
            StorageUrl::Postgres(settings) => dump_schema(settings).await.unwrap_or_else(|e| panic!("dump: {e}")),
        }
    }

    /// Removes the database. PostgreSQL schemas are dropped here; SQLite directories also go when dropped.
    pub async fn cleanup(self) {
        if let StorageUrl::Postgres(settings) = &self.url {
            let _ = drop_schema(settings).await;
        }
    }
}

async fn bootstrap_pool(settings: &PgSettings) -> Result<sqlx::PgPool, StoreError> {
    let plain = PgSettings { schema: None, ..settings.clone() };
    PgDb::connect_unmigrated(&plain).await
}

async fn create_schema(settings: &PgSettings) -> Result<(), StoreError> {
    let pool = bootstrap_pool(settings).await?;
    let schema = settings.schema.clone().unwrap_or_default();
    let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.map_err(crate::error::from_sqlx)?;
    pool.close().await;
    Ok(())
}

async fn drop_schema(settings: &PgSettings) -> Result<(), StoreError> {
    let Some(schema) = &settings.schema else {
        return Ok(());
    };
    let pool = bootstrap_pool(settings).await?;
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.map_err(crate::error::from_sqlx)?;
    pool.close().await;
    Ok(())
}

async fn dump_schema(settings: &PgSettings) -> Result<Vec<u8>, StoreError> {
    use sqlx::Row;
    let pool = PgDb::connect_unmigrated(settings).await?;
    let schema = settings.schema.clone().unwrap_or_else(|| "public".to_owned());
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1")
            .bind(&schema)
            .fetch_all(&pool)
            .await
            .map_err(crate::error::from_sqlx)?;
    let mut out = Vec::new();
    for table in tables {
        let sql = format!("SELECT row_to_json(t)::text AS j FROM \"{schema}\".\"{table}\" t");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.map_err(crate::error::from_sqlx)?;
        for row in rows {
            let j: String = row.try_get("j").map_err(crate::error::from_sqlx)?;
            out.extend(j.into_bytes());
            out.push(b'\n');
        }
    }
    pool.close().await;
    Ok(out)
}
