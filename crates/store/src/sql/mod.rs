//! The one place that knows there are two SQL backends. Repositories are written once against [`Db`]; each
//! backend implements it (binding, row decoding, placeholders, transactions, notifications), and the choice is
//! made once, when the store is opened.

#[cfg(test)]
mod fault_tests;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::bus::Invalidation;
use crate::error::StoreError;
use crate::health::WriteHealth;

/// A bound value. Nulls carry their type because PostgreSQL checks parameter types.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Bytes(Vec<u8>),
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(s.to_owned())
    }
}
impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(s)
    }
}
impl From<&String> for Param {
    fn from(s: &String) -> Self {
        Param::Text(s.clone())
    }
}
impl From<Option<String>> for Param {
    fn from(s: Option<String>) -> Self {
        Param::OptText(s)
    }
}
impl From<i64> for Param {
    fn from(i: i64) -> Self {
        Param::Int(i)
    }
}
impl From<Option<i64>> for Param {
    fn from(i: Option<i64>) -> Self {
        Param::OptInt(i)
    }
}
impl From<bool> for Param {
    fn from(b: bool) -> Self {
        Param::Bool(b)
    }
}
impl From<Vec<u8>> for Param {
    fn from(b: Vec<u8>) -> Self {
        Param::Bytes(b)
    }
}

/// `params![a, b]` builds a parameter list from anything convertible into [`Param`].
macro_rules! params {
    ($($p:expr),* $(,)?) => { vec![$($crate::sql::Param::from($p)),*] };
}
pub(crate) use params;

/// One result row, read by column name.
pub(crate) trait Row: Send + Sync {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn boolean(&self, col: &str) -> Result<bool, StoreError>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError>;
}

pub(crate) type Rows = Vec<Box<dyn Row>>;

/// Runs statements. SQL is written with `?` placeholders; the PostgreSQL backend numbers them.
#[async_trait]
pub(crate) trait Executor: Send {
    async fn execute(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, StoreError>;
    async fn fetch(&mut self, sql: &str, params: Vec<Param>) -> Result<Rows, StoreError>;

    async fn fetch_one(&mut self, sql: &str, params: Vec<Param>) -> Result<Option<Box<dyn Row>>, StoreError> {
        Ok(self.fetch(sql, params).await?.into_iter().next())
    }

    async fn count(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, StoreError> {
        let row = self.fetch_one(sql, params).await?.ok_or(StoreError::corrupt("count returned no row"))?;
        Ok(u64::try_from(row.int("n")?).unwrap_or(0))
    }
}

/// A write transaction. Invalidations recorded with [`Tx::notify`] reach other nodes only if the transaction
/// commits (PostgreSQL delivers `NOTIFY` at commit), and this node's subscribers right after the commit.
#[async_trait]
pub(crate) trait Tx: Executor {
    fn notify(&mut self, event: Invalidation);
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A case-sensitive substring test; both sides are bound values, so `%` and `_` need no escaping.
    pub(crate) fn contains(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({column}, ?) > 0"),
            Dialect::Postgres => format!("strpos({column}, ?) > 0"),
        }
    }

    /// Tests that a JSON-object text column has a key; binds the key.
    pub(crate) fn json_key_exists(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.' || json_quote(?)) IS NOT NULL"),
            Dialect::Postgres => format!("(({column})::jsonb ->> ?) IS NOT NULL"),
        }
    }

    /// Compares one key of a JSON-object text column; binds the key then the value.
    pub(crate) fn json_key_equals(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.' || json_quote(?)) = ?"),
            Dialect::Postgres => format!("(({column})::jsonb ->> ?) = ?"),
        }
    }
}

#[async_trait]
pub(crate) trait Db: Send + Sync + fmt::Debug {
    fn dialect(&self) -> Dialect;
    /// A pooled connection for reads.
    async fn reader(&self) -> Result<Box<dyn Executor>, StoreError>;
    /// A write transaction (on SQLite it takes the write lock up front, so it never fails half-way on upgrade).
    async fn writer(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// How write transactions have been ending.
    fn health(&self) -> &Arc<WriteHealth>;
}

/// A statement being assembled from fixed fragments and bound values.
#[derive(Debug, Default)]
pub(crate) struct SqlBuf {
    pub sql: String,
    pub params: Vec<Param>,
}

impl SqlBuf {
    pub fn new(sql: &str) -> Self {
        Self { sql: sql.to_owned(), params: Vec::new() }
    }

    pub fn push(&mut self, fragment: &str) -> &mut Self {
        self.sql.push_str(fragment);
        self
    }

    pub fn bind(&mut self, p: impl Into<Param>) -> &mut Self {
        self.params.push(p.into());
        self
    }
}

/// Rewrites `?` placeholders to PostgreSQL's `$1, $2, …`. SQL in this crate never has a `?` in a literal.
pub(crate) fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The row, binding and executor glue is the same for every sqlx driver except for the types; this stamps it
/// out per backend. `$prepare` turns this crate's SQL into the backend's (placeholder style).
macro_rules! sqlx_glue {
    (db: $db:ty, row: $sqlx_row:ty, prepare: $prepare:expr) => {
        use crate::error::from_sqlx;
        use crate::sql::{Executor, Param, Row, Rows};
        use sqlx::Row as _;

        fn bind_all<'q>(
            mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            params: Vec<Param>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            for p in params {
                q = match p {
                    Param::Text(s) => q.bind(s),
                    Param::OptText(s) => q.bind(s),
                    Param::Int(i) => q.bind(i),
                    Param::OptInt(i) => q.bind(i),
                    Param::Bool(b) => q.bind(b),
                    Param::Bytes(b) => q.bind(b),
                };
            }
            q
        }

        struct RowOf($sqlx_row);

        fn column<'r, T: sqlx::Decode<'r, $db> + sqlx::Type<$db>>(
            row: &'r $sqlx_row,
            col: &str,
        ) -> Result<T, crate::StoreError> {
            row.try_get(col).map_err(|e| crate::StoreError::corrupt(format!("column {col}: {e}")))
        }

        impl Row for RowOf {
            fn text(&self, col: &str) -> Result<String, crate::StoreError> {
                column(&self.0, col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, crate::StoreError> {
                column(&self.0, col)
            }
            fn int(&self, col: &str) -> Result<i64, crate::StoreError> {
                column(&self.0, col)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, crate::StoreError> {
                column(&self.0, col)
            }
            fn boolean(&self, col: &str) -> Result<bool, crate::StoreError> {
                column(&self.0, col)
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>, crate::StoreError> {
                column(&self.0, col)
            }
        }

        async fn run_execute<'c, E>(e: E, sql: &str, params: Vec<Param>) -> Result<u64, crate::StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let prepared: String = $prepare(sql);
            let q = sqlx::query(sqlx::AssertSqlSafe(prepared));
            let done = bind_all(q, params).execute(e).await.map_err(from_sqlx)?;
            Ok(done.rows_affected())
        }

        async fn run_fetch<'c, E>(e: E, sql: &str, params: Vec<Param>) -> Result<Rows, crate::StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let prepared: String = $prepare(sql);
            let q = sqlx::query(sqlx::AssertSqlSafe(prepared));
            let rows = bind_all(q, params).fetch_all(e).await.map_err(from_sqlx)?;
            Ok(rows.into_iter().map(|r| Box::new(RowOf(r)) as Box<dyn Row>).collect())
        }

        struct Conn(sqlx::pool::PoolConnection<$db>);

        #[async_trait::async_trait]
        impl Executor for Conn {
            async fn execute(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, crate::StoreError> {
                run_execute(&mut *self.0, sql, params).await
            }
            async fn fetch(&mut self, sql: &str, params: Vec<Param>) -> Result<Rows, crate::StoreError> {
                run_fetch(&mut *self.0, sql, params).await
            }
        }

        /// A pool hook run before an idle connection is handed out. A transaction whose `COMMIT` failed after the
        /// database had already rolled it back (SQLite does on a full disk or an I/O error) also fails the
        /// `ROLLBACK` sqlx sends when it is dropped, so sqlx still counts the connection as inside a transaction
        /// and every later `BEGIN` on it would fail. Such a connection is closed (which ends whatever is left of
        /// the transaction) instead of being reused.
        fn discard_if_in_transaction(
            conn: &mut <$db as sqlx::Database>::Connection,
            _: sqlx::pool::PoolConnectionMetadata,
        ) -> futures_util::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
            let reusable = !sqlx::Connection::is_in_transaction(conn);
            if !reusable {
                tracing::warn!("closing a pooled database connection left inside a failed transaction");
            }
            Box::pin(std::future::ready(Ok(reusable)))
        }

        struct WriteTx {
            tx: sqlx::Transaction<'static, $db>,
            events: Vec<crate::bus::Invalidation>,
            bus: std::sync::Arc<crate::bus::LocalBus>,
            health: std::sync::Arc<crate::health::WriteHealth>,
        }

        impl WriteTx {
            fn new(
                begun: Result<sqlx::Transaction<'static, $db>, sqlx::Error>,
                bus: &std::sync::Arc<crate::bus::LocalBus>,
                health: &std::sync::Arc<crate::health::WriteHealth>,
            ) -> Result<Self, crate::StoreError> {
                let tx = begun.map_err(from_sqlx).inspect_err(|e| health.failed(e))?;
                Ok(WriteTx { tx, events: Vec::new(), bus: bus.clone(), health: health.clone() })
            }

            /// Commits, then tells this node's subscribers what changed.
            async fn finish(self) -> Result<(), crate::StoreError> {
                let WriteTx { tx, events, bus, health } = self;
                tx.commit().await.map_err(from_sqlx).inspect_err(|e| health.failed(e))?;
                health.succeeded();
                events.into_iter().for_each(|e| bus.publish(e));
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl Executor for WriteTx {
            async fn execute(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, crate::StoreError> {
                run_execute(&mut *self.tx, sql, params).await.inspect_err(|e| self.health.failed(e))
            }
            async fn fetch(&mut self, sql: &str, params: Vec<Param>) -> Result<Rows, crate::StoreError> {
                run_fetch(&mut *self.tx, sql, params).await.inspect_err(|e| self.health.failed(e))
            }
        }
    };
}
pub(crate) use sqlx_glue;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        assert_eq!(number_placeholders("a = ? AND b IN (?, ?)"), "a = $1 AND b IN ($2, $3)");
        assert_eq!(number_placeholders("no params"), "no params");
    }
}
