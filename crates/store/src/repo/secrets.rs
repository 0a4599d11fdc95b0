use async_trait::async_trait;

use gatehouse_model::identity::ClientSecret;
use gatehouse_model::listing::ListQuery;
use gatehouse_model::{AuthServerId, ClientId, ClientSecretId, SecretHash, Timestamp};

use super::{SqlStore, found, parse_id};
use crate::bus::Invalidation;
use crate::sql::{Row, SqlBuf, Tx, params};
use crate::{ClientSecretStore, Listed, Result, StoreError};

const COLUMNS: &str = "id, auth_server_id, client_id, hash, enabled, created_at, updated_at";

fn decode(row: &dyn Row) -> Result<ClientSecret> {
    Ok(ClientSecret {
        id: parse_id(row, "id")?,
        auth_server_id: parse_id(row, "auth_server_id")?,
        client_id: gatehouse_model::ClientId::parse(&row.text("client_id")?)
            .map_err(|_| StoreError::corrupt("column client_id: bad client id"))?,
        hash: SecretHash::from_slice(&row.bytes("hash")?).ok_or_else(|| StoreError::corrupt("column hash: length"))?,
        enabled: row.boolean("enabled")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        updated_at: Timestamp::from_micros(row.int("updated_at")?),
    })
}

pub(super) async fn insert_secret(tx: &mut dyn Tx, s: &ClientSecret) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO client_secrets ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
        params![
            s.id.to_string(),
            s.auth_server_id.to_string(),
            s.client_id.as_str(),
            s.hash.as_bytes().to_vec(),
            s.enabled,
            s.created_at.micros(),
            s.updated_at.micros(),
        ],
    )
    .await?;
    Ok(())
}

/// Locks the client row (PostgreSQL takes a row lock on update; SQLite already holds the write lock), so two
/// concurrent requests cannot both pass a secret limit, and fails with `NotFound` for a missing client.
async fn lock_client(tx: &mut dyn Tx, auth_server: AuthServerId, client: &ClientId) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE clients SET updated_at = updated_at WHERE auth_server_id = ? AND id = ?",
            params![auth_server.to_string(), client.as_str()],
        )
        .await?;
    found(n)
}

async fn count_secrets(
    tx: &mut dyn Tx,
    auth_server: AuthServerId,
    client: &ClientId,
    only_enabled: bool,
) -> Result<u64> {
    let mut sql = SqlBuf::new("SELECT COUNT(*) AS n FROM client_secrets WHERE auth_server_id = ? AND client_id = ?");
    sql.bind(auth_server.to_string()).bind(client.as_str());
    if only_enabled {
        sql.push(" AND enabled = ?").bind(true);
    }
    tx.count(&sql.sql, sql.params).await
}

#[async_trait]
impl ClientSecretStore for SqlStore {
    async fn list_client_secrets(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        query: &ListQuery,
    ) -> Result<Listed<ClientSecret>> {
        let mut base =
            SqlBuf::new(&format!("SELECT {COLUMNS} FROM client_secrets WHERE auth_server_id = ? AND client_id = ?"));
        base.bind(auth_server.to_string()).bind(client.as_str());
        self.list(base, query, decode).await
    }

    async fn get_client_secret(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        id: ClientSecretId,
    ) -> Result<Option<ClientSecret>> {
        let row = self
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM client_secrets WHERE auth_server_id = ? AND client_id = ? AND id = ?"),
                params![auth_server.to_string(), client.as_str(), id.to_string()],
            )
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn add_client_secret(&self, s: &ClientSecret, max_enabled: usize, max_total: usize) -> Result<()> {
        let mut tx = self.db.writer().await?;
        lock_client(tx.as_mut(), s.auth_server_id, &s.client_id).await?;
        let total = count_secrets(tx.as_mut(), s.auth_server_id, &s.client_id, false).await?;
        if total >= max_total as u64 {
            return Err(StoreError::SecretLimit { enabled_limit: false });
        }
        if s.enabled && count_secrets(tx.as_mut(), s.auth_server_id, &s.client_id, true).await? >= max_enabled as u64 {
            return Err(StoreError::SecretLimit { enabled_limit: true });
        }
        insert_secret(tx.as_mut(), s).await?;
        tx.notify(Invalidation::AuthServer { id: s.auth_server_id });
        tx.commit().await
    }

    async fn set_client_secret_enabled(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        id: ClientSecretId,
        enabled: bool,
        max_enabled: usize,
        now: Timestamp,
    ) -> Result<ClientSecret> {
        let mut tx = self.db.writer().await?;
        lock_client(tx.as_mut(), auth_server, client).await?;
        let row = tx
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM client_secrets WHERE auth_server_id = ? AND client_id = ? AND id = ?"),
                params![auth_server.to_string(), client.as_str(), id.to_string()],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut secret = decode(row.as_ref())?;
        if enabled
            && !secret.enabled
            && count_secrets(tx.as_mut(), auth_server, client, true).await? >= max_enabled as u64
        {
            return Err(StoreError::SecretLimit { enabled_limit: true });
        }
        tx.execute(
            "UPDATE client_secrets SET enabled = ?, updated_at = ? WHERE id = ?",
            params![enabled, now.micros(), id.to_string()],
        )
        .await?;
        secret.enabled = enabled;
        secret.updated_at = now;
        tx.notify(Invalidation::AuthServer { id: auth_server });
        tx.commit().await?;
        Ok(secret)
    }

    async fn delete_client_secret(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        id: ClientSecretId,
    ) -> Result<()> {
        let mut tx = self.db.writer().await?;
        let n = tx
            .execute(
                "DELETE FROM client_secrets WHERE auth_server_id = ? AND client_id = ? AND id = ?",
                params![auth_server.to_string(), client.as_str(), id.to_string()],
            )
            .await?;
        found(n)?;
        tx.notify(Invalidation::AuthServer { id: auth_server });
        tx.commit().await
    }

    async fn enabled_client_secrets(&self, auth_server: AuthServerId) -> Result<Vec<ClientSecret>> {
        let rows = self
            .fetch(
                &format!("SELECT {COLUMNS} FROM client_secrets WHERE auth_server_id = ? AND enabled = ?"),
                params![auth_server.to_string(), true],
            )
            .await?;
        rows.iter().map(|r| decode(r.as_ref())).collect()
    }
}
