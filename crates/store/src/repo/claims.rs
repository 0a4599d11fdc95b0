use async_trait::async_trait;

use gatehouse_model::identity::Claim;
use gatehouse_model::listing::ListQuery;
use gatehouse_model::{AuthServerId, ClaimId, Timestamp};

use super::scopes::{ensure_auth_server, ensure_name_free};
use super::{SqlStore, found, from_json, parse_id, to_json};
use crate::bus::Invalidation;
use crate::sql::{Row, SqlBuf, params};
use crate::{ClaimStore, Listed, Result};

const COLUMNS: &str = "id, auth_server_id, name, value, include_in_token, include_in_all_scopes, include_in_scopes, \
                       enabled, created_at, updated_at";

fn decode(row: &dyn Row) -> Result<Claim> {
    Ok(Claim {
        id: parse_id(row, "id")?,
        auth_server_id: parse_id(row, "auth_server_id")?,
        name: row.text("name")?,
        value: row.text("value")?,
        include_in_token: row.boolean("include_in_token")?,
        include_in_all_scopes: row.boolean("include_in_all_scopes")?,
        include_in_scopes: from_json(row, "include_in_scopes")?,
        enabled: row.boolean("enabled")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        updated_at: Timestamp::from_micros(row.int("updated_at")?),
    })
}

#[async_trait]
impl ClaimStore for SqlStore {
    async fn create_claim(&self, c: &Claim) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_auth_server(tx.as_mut(), c.auth_server_id).await?;
        ensure_name_free(tx.as_mut(), "claims", c.auth_server_id, &c.name, None).await?;
        tx.execute(
            &format!("INSERT INTO claims ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            params![
                c.id.to_string(),
                c.auth_server_id.to_string(),
                &c.name,
                &c.value,
                c.include_in_token,
                c.include_in_all_scopes,
                to_json(&c.include_in_scopes),
                c.enabled,
                c.created_at.micros(),
                c.updated_at.micros(),
            ],
        )
        .await?;
        tx.notify(Invalidation::AuthServer { id: c.auth_server_id });
        tx.commit().await
    }

    async fn get_claim(&self, auth_server: AuthServerId, id: ClaimId) -> Result<Option<Claim>> {
        let row = self
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM claims WHERE auth_server_id = ? AND id = ?"),
                params![auth_server.to_string(), id.to_string()],
            )
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn list_claims(&self, auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Claim>> {
        let mut base = SqlBuf::new(&format!("SELECT {COLUMNS} FROM claims WHERE auth_server_id = ?"));
        base.bind(auth_server.to_string());
        self.list(base, query, decode).await
    }

    async fn all_claims(&self, auth_server: AuthServerId) -> Result<Vec<Claim>> {
        let rows = self
            .fetch(
                &format!("SELECT {COLUMNS} FROM claims WHERE auth_server_id = ? ORDER BY created_at, id"),
                params![auth_server.to_string()],
            )
            .await?;
        rows.iter().map(|r| decode(r.as_ref())).collect()
    }

    async fn update_claim(&self, c: &Claim) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_name_free(tx.as_mut(), "claims", c.auth_server_id, &c.name, Some(&c.id.to_string())).await?;
        let n = tx
            .execute(
                "UPDATE claims SET name = ?, value = ?, include_in_token = ?, include_in_all_scopes = ?, \
                 include_in_scopes = ?, enabled = ?, updated_at = ? WHERE auth_server_id = ? AND id = ?",
                params![
                    &c.name,
                    &c.value,
                    c.include_in_token,
                    c.include_in_all_scopes,
                    to_json(&c.include_in_scopes),
                    c.enabled,
                    c.updated_at.micros(),
                    c.auth_server_id.to_string(),
                    c.id.to_string(),
                ],
            )
            .await?;
        found(n)?;
        tx.notify(Invalidation::AuthServer { id: c.auth_server_id });
        tx.commit().await
    }

    async fn delete_claim(&self, auth_server: AuthServerId, id: ClaimId) -> Result<()> {
        let mut tx = self.db.writer().await?;
        let n = tx
            .execute(
                "DELETE FROM claims WHERE auth_server_id = ? AND id = ?",
                params![auth_server.to_string(), id.to_string()],
            )
            .await?;
        found(n)?;
        tx.notify(Invalidation::AuthServer { id: auth_server });
        tx.commit().await
    }
}
