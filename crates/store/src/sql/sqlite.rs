//! SQLite: one file, WAL, `synchronous=FULL` (a commit is on disk before it is acknowledged), foreign keys on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use crate::bus::LocalBus;
use crate::health::WriteHealth;
use crate::migrations;
use crate::sql::{Db, Dialect, Tx};

crate::sql::sqlx_glue!(db: Sqlite, row: sqlx::sqlite::SqliteRow, prepare: |s: &str| s.to_owned());

#[derive(Debug)]
pub(crate) struct SqliteDb {
    pool: SqlitePool,
    bus: Arc<LocalBus>,
    health: Arc<WriteHealth>,
}

impl SqliteDb {
    pub(crate) async fn open(path: &Path, bus: Arc<LocalBus>) -> Result<Self, crate::StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .before_acquire(discard_if_in_transaction)
            .connect_with(options)
            .await
            .map_err(from_sqlx)?;
        migrations::sqlite().run(&pool).await?;
        Ok(Self { pool, bus, health: WriteHealth::new() })
    }

    /// Opens without migrating, for the migration tests.
    pub(crate) async fn open_unmigrated(path: &Path) -> Result<SqlitePool, crate::StoreError> {
        let options = SqliteConnectOptions::new().filename(path).create_if_missing(true).foreign_keys(true);
        SqlitePool::connect_with(options).await.map_err(from_sqlx)
    }
}

#[async_trait]
impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn reader(&self) -> Result<Box<dyn Executor>, crate::StoreError> {
        Ok(Box::new(Conn(self.pool.acquire().await.map_err(from_sqlx)?)))
    }

    async fn writer(&self) -> Result<Box<dyn Tx>, crate::StoreError> {
        // IMMEDIATE takes the write lock now; a deferred transaction that reads first can fail with SQLITE_BUSY
        // when it upgrades, without waiting for the busy timeout.
        Ok(Box::new(WriteTx::new(self.pool.begin_with("BEGIN IMMEDIATE").await, &self.bus, &self.health)?))
    }

    fn health(&self) -> &Arc<WriteHealth> {
        &self.health
    }
}

#[async_trait]
impl Tx for WriteTx {
    fn notify(&mut self, event: crate::bus::Invalidation) {
        if !self.events.contains(&event) {
            self.events.push(event);
        }
    }

    async fn commit(self: Box<Self>) -> Result<(), crate::StoreError> {
        self.finish().await
    }
}
