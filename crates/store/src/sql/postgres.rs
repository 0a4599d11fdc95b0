//! PostgreSQL: the shared store when several nodes run. Commits are synchronous (`synchronous_commit=on`);
//! invalidations travel as `NOTIFY` inside the writing transaction, so other nodes hear exactly what committed.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::bus::{Invalidation, LocalBus};
use crate::health::WriteHealth;
use crate::migrations;
use crate::sql::{Db, Dialect, Tx, number_placeholders};

crate::sql::sqlx_glue!(db: Postgres, row: sqlx::postgres::PgRow, prepare: number_placeholders);

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub url: String,
    /// A schema to create if missing and use (`search_path`); tests give each store its own.
    pub schema: Option<String>,
    pub max_connections: u32,
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), schema: None, max_connections: 10 }
    }

    fn channel(&self) -> String {
        match &self.schema {
            Some(s) => format!("gatehouse_{s}"),
            None => "gatehouse".to_owned(),
        }
    }

    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions, crate::StoreError> {
        let mut options = PgConnectOptions::from_str(&self.url)
            .map_err(|e| crate::StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("gatehouse");
        let mut settings = vec![("synchronous_commit", "on".to_owned())];
        if let Some(schema) = &self.schema {
            settings.push(("search_path", quote_ident(schema)?));
        }
        options = options.options(settings);
        Ok(options)
    }
}

fn quote_ident(name: &str) -> Result<String, crate::StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(crate::StoreError::Config(format!("schema name [{name}] must be 1-63 of a-z, 0-9, _")))
    }
}

#[derive(Serialize, Deserialize)]
struct Notice {
    node: Uuid,
    event: Invalidation,
}

#[derive(Debug)]
pub(crate) struct PgDb {
    pool: PgPool,
    bus: Arc<LocalBus>,
    node: Uuid,
    channel: String,
    listener: JoinHandle<()>,
    health: Arc<WriteHealth>,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgDb {
    pub(crate) async fn connect(settings: &PgSettings, bus: Arc<LocalBus>) -> Result<Self, crate::StoreError> {
        if let Some(schema) = &settings.schema {
            let bootstrap = PgSettings { schema: None, ..settings.clone() };
            let mut conn = sqlx::ConnectOptions::connect(&bootstrap.connect_options()?).await.map_err(from_sqlx)?;
            let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)?);
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.map_err(from_sqlx)?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .before_acquire(discard_if_in_transaction)
            .connect_with(settings.connect_options()?)
            .await
            .map_err(from_sqlx)?;
        migrations::postgres().run(&pool).await?;
        let channel = settings.channel();
        let node = Uuid::new_v4();
        // Listen before returning, so nothing committed after `connect` returns can be missed.
        let listener = listen(&pool, &channel).await.map_err(from_sqlx)?;
        let listener = tokio::spawn(relay(listener, pool.clone(), channel.clone(), node, bus.clone()));
        Ok(Self { pool, bus, node, channel, listener, health: WriteHealth::new() })
    }

    pub(crate) async fn connect_unmigrated(settings: &PgSettings) -> Result<PgPool, crate::StoreError> {
        PgPoolOptions::new().max_connections(2).connect_with(settings.connect_options()?).await.map_err(from_sqlx)
    }
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Forwards other nodes' notices to this node's subscribers. When the connection drops, notices sent meanwhile
/// are lost, so after listening again it tells subscribers to resync.
async fn relay(mut listener: PgListener, pool: PgPool, channel: String, node: Uuid, bus: Arc<LocalBus>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match serde_json::from_str::<Notice>(n.payload()) {
                Ok(notice) if notice.node != node => bus.publish(notice.event),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed invalidation notice"),
            },
            Ok(None) | Err(_) => {
                tracing::warn!(channel, "lost the invalidation listener connection; reconnecting");
                let mut delay = Duration::from_millis(50);
                listener = loop {
                    match listen(&pool, &channel).await {
                        Ok(l) => break l,
                        Err(e) => {
                            tracing::warn!(error = %e, "invalidation listener could not reconnect");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(2));
                        }
                    }
                };
                tracing::info!(channel, "invalidation listener reconnected; resyncing");
                bus.publish(Invalidation::Resync);
            }
        }
    }
}

#[async_trait]
impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn reader(&self) -> Result<Box<dyn Executor>, crate::StoreError> {
        Ok(Box::new(Conn(self.pool.acquire().await.map_err(from_sqlx)?)))
    }

    async fn writer(&self) -> Result<Box<dyn Tx>, crate::StoreError> {
        Ok(Box::new(PgWriteTx {
            inner: WriteTx::new(self.pool.begin().await, &self.bus, &self.health)?,
            node: self.node,
            channel: self.channel.clone(),
        }))
    }

    fn health(&self) -> &Arc<WriteHealth> {
        &self.health
    }
}

struct PgWriteTx {
    inner: WriteTx,
    node: Uuid,
    channel: String,
}

#[async_trait]
impl Executor for PgWriteTx {
    async fn execute(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, crate::StoreError> {
        self.inner.execute(sql, params).await
    }
    async fn fetch(&mut self, sql: &str, params: Vec<Param>) -> Result<Rows, crate::StoreError> {
        self.inner.fetch(sql, params).await
    }
}

#[async_trait]
impl Tx for PgWriteTx {
    fn notify(&mut self, event: Invalidation) {
        if !self.inner.events.contains(&event) {
            self.inner.events.push(event);
        }
    }

    async fn commit(mut self: Box<Self>) -> Result<(), crate::StoreError> {
        for event in self.inner.events.clone() {
            let payload = serde_json::to_string(&Notice { node: self.node, event })
                .map_err(|e| crate::StoreError::corrupt(format!("notice: {e}")))?;
            let channel = self.channel.clone();
            self.inner.execute("SELECT pg_notify(?, ?)", vec![Param::Text(channel), Param::Text(payload)]).await?;
        }
        self.inner.finish().await
    }
}
