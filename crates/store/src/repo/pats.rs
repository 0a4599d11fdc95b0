use async_trait::async_trait;

use gatehouse_model::pat::PersonalAccessToken;
use gatehouse_model::{PatId, SecretHash, Timestamp};

use super::{SqlStore, found, parse_id};
use crate::bus::Invalidation;
use crate::sql::{Row, params};
use crate::{PatStore, Result, StoreError};

const COLUMNS: &str = "id, name, hash, created_at, expires_at";

fn decode(row: &dyn Row) -> Result<PersonalAccessToken> {
    Ok(PersonalAccessToken {
        id: parse_id(row, "id")?,
        name: row.text("name")?,
        hash: SecretHash::from_hex(&row.text("hash")?).ok_or_else(|| StoreError::corrupt("column hash: not hex"))?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        expires_at: Timestamp::from_micros(row.int("expires_at")?),
    })
}

#[async_trait]
impl PatStore for SqlStore {
    async fn create_pat(&self, pat: &PersonalAccessToken, replace_same_name: bool) -> Result<()> {
        let mut tx = self.db.writer().await?;
        if replace_same_name {
            tx.execute("DELETE FROM personal_access_tokens WHERE name = ?", params![&pat.name]).await?;
        }
        tx.execute(
            &format!("INSERT INTO personal_access_tokens ({COLUMNS}) VALUES (?, ?, ?, ?, ?)"),
            params![pat.id.to_string(), &pat.name, pat.hash.to_hex(), pat.created_at.micros(), pat.expires_at.micros()],
        )
        .await?;
        tx.notify(Invalidation::PersonalAccessTokens);
        tx.commit().await
    }

    async fn find_pat(&self, hash: &SecretHash) -> Result<Option<PersonalAccessToken>> {
        // The lookup key is a keyed hash: an attacker cannot choose it, so an index lookup leaks nothing useful.
        let row = self
            .fetch_one(&format!("SELECT {COLUMNS} FROM personal_access_tokens WHERE hash = ?"), params![hash.to_hex()])
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn list_pats(&self) -> Result<Vec<PersonalAccessToken>> {
        let rows = self
            .fetch(&format!("SELECT {COLUMNS} FROM personal_access_tokens ORDER BY created_at, id"), vec![])
            .await?;
        rows.iter().map(|r| decode(r.as_ref())).collect()
    }

    async fn delete_pat(&self, id: PatId) -> Result<()> {
        let mut tx = self.db.writer().await?;
        found(tx.execute("DELETE FROM personal_access_tokens WHERE id = ?", params![id.to_string()]).await?)?;
        tx.notify(Invalidation::PersonalAccessTokens);
        tx.commit().await
    }
}
