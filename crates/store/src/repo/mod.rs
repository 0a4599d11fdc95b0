//! The SQL implementation of every store trait, written once over [`Db`].

mod auth_servers;
mod claims;
mod clients;
mod cluster;
mod control_planes;
mod gateway;
mod meta;
mod pats;
mod rate_limits;
mod scopes;
mod secrets;
mod tokens;

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use gatehouse_model::body::Choice;
use gatehouse_model::listing::{Field, FilterOp, ListQuery};

use crate::bus::LocalBus;
use crate::error::StoreError;
use crate::sql::{Db, Dialect, Param, Row, SqlBuf};
use crate::{Backend, Listed, Store, WriteStatus};

#[derive(Debug)]
pub(crate) struct SqlStore {
    db: Arc<dyn Db>,
    bus: Arc<LocalBus>,
    backend: Backend,
}

impl SqlStore {
    pub(crate) fn new(db: Arc<dyn Db>, bus: Arc<LocalBus>, backend: Backend) -> Self {
        db.health().probe_with(Arc::downgrade(&db));
        Self { db, bus, backend }
    }

    fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    async fn fetch(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Box<dyn Row>>, StoreError> {
        self.db.reader().await?.fetch(sql, params).await
    }

    async fn fetch_one(&self, sql: &str, params: Vec<Param>) -> Result<Option<Box<dyn Row>>, StoreError> {
        self.db.reader().await?.fetch_one(sql, params).await
    }

    /// Runs a list query: `base` selects from one table with its fixed conditions (ending in a WHERE clause);
    /// filters, sorting and paging come from the typed query.
    async fn list<T>(
        &self,
        base: SqlBuf,
        query: &ListQuery,
        decode: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Listed<T>, StoreError> {
        let dialect = self.dialect();
        let mut filtered = base;
        for filter in &query.filters {
            let col = column(filter.field);
            match &filter.op {
                FilterOp::Eq(v) if filter.field == Field::CloudGateway => {
                    filtered.push(&format!(" AND {col} = ?")).bind(v == "true")
                }
                FilterOp::Eq(v) => filtered.push(&format!(" AND {col} = ?")).bind(v),
                FilterOp::Neq(v) => filtered.push(&format!(" AND {col} <> ?")).bind(v),
                FilterOp::OneOf(values) => {
                    let marks = vec!["?"; values.len().max(1)].join(", ");
                    filtered.push(&format!(" AND {col} IN ({marks})"));
                    if values.is_empty() {
                        filtered.bind("");
                    }
                    for v in values {
                        filtered.bind(v);
                    }
                    &mut filtered
                }
                FilterOp::LabelExists { key } => {
                    filtered.push(&format!(" AND {}", dialect.json_key_exists(col))).bind(key)
                }
                FilterOp::Contains(v) => filtered.push(&format!(" AND {}", dialect.contains(col))).bind(v),
                FilterOp::Is(b) => filtered.push(&format!(" AND {col} = ?")).bind(*b),
                FilterOp::Label { key, value } => {
                    filtered.push(&format!(" AND {}", dialect.json_key_equals(col))).bind(key).bind(value)
                }
            };
        }
        let count_sql = format!("SELECT COUNT(*) AS n FROM ({}) AS matched", filtered.sql);
        let mut conn = self.db.reader().await?;
        let total = conn.count(&count_sql, filtered.params.clone()).await?;

        let mut order: Vec<String> = query
            .sort
            .iter()
            .map(|k| format!("{} {}", column(k.field), if k.descending { "DESC" } else { "ASC" }))
            .collect();
        order.push("created_at ASC".into());
        order.push("id ASC".into());
        filtered.push(&format!(" ORDER BY {} LIMIT ? OFFSET ?", order.join(", ")));
        filtered.bind(i64::from(query.page_size)).bind(i64::try_from(query.offset()).unwrap_or(i64::MAX));
        let rows = conn.fetch(&filtered.sql, filtered.params).await?;
        let items = rows.iter().map(|r| decode(r.as_ref())).collect::<Result<_, _>>()?;
        Ok(Listed { items, total })
    }
}

impl Store for SqlStore {
    fn bus(&self) -> &Arc<LocalBus> {
        &self.bus
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    fn write_status(&self) -> WriteStatus {
        self.db.health().status()
    }
}

/// Every table names its listable columns like the API attributes (`Field::as_str`), so the typed field is the
/// column; nothing from the request reaches the SQL text.
fn column(field: Field) -> &'static str {
    field.as_str()
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serialising plain data (maps of strings, arrays of strings and ids) cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn from_json<T: DeserializeOwned>(row: &dyn Row, col: &str) -> Result<T, StoreError> {
    let text = row.text(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::corrupt(format!("column {col}: {e}")))
}

fn choice<C: Choice>(row: &dyn Row, col: &str) -> Result<C, StoreError> {
    let text = row.text(col)?;
    C::parse(&text).ok_or_else(|| StoreError::corrupt(format!("column {col}: unknown value {text}")))
}

fn choices_to_json<C: Choice>(values: &[C]) -> String {
    to_json(&values.iter().map(|c| c.as_str()).collect::<Vec<_>>())
}

fn choices<C: Choice>(row: &dyn Row, col: &str) -> Result<Vec<C>, StoreError> {
    let names: Vec<String> = from_json(row, col)?;
    names
        .iter()
        .map(|n| C::parse(n).ok_or_else(|| StoreError::corrupt(format!("column {col}: unknown value {n}"))))
        .collect()
}

fn parse_id<T: std::str::FromStr>(row: &dyn Row, col: &str) -> Result<T, StoreError> {
    let text = row.text(col)?;
    text.parse().map_err(|_| StoreError::corrupt(format!("column {col}: bad id {text}")))
}

/// Fails with `NotFound` when an update or delete touched no row.
fn found(rows: u64) -> Result<(), StoreError> {
    if rows == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}
