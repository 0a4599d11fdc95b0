use async_trait::async_trait;

use super::SqlStore;
use crate::sql::params;
use crate::{MetaStore, Result, StoreError};

#[async_trait]
impl MetaStore for SqlStore {
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = self.fetch_one("SELECT value FROM gatehouse_meta WHERE key = ?", params![key]).await?;
        row.map(|r| r.text("value")).transpose()
    }

    async fn init_meta(&self, key: &str, value: &str) -> Result<String> {
        // When two nodes start at once, the first insert wins and both read back the same value.
        let mut tx = self.db.writer().await?;
        tx.execute(
            "INSERT INTO gatehouse_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            params![key, value],
        )
        .await?;
        let row = tx
            .fetch_one("SELECT value FROM gatehouse_meta WHERE key = ?", params![key])
            .await?
            .ok_or_else(|| StoreError::corrupt("meta value vanished"))?;
        let stored = row.text("value")?;
        tx.commit().await?;
        Ok(stored)
    }
}
