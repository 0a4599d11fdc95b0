use async_trait::async_trait;

use gatehouse_model::identity::{AuthServer, SigningKey};
use gatehouse_model::listing::ListQuery;
use gatehouse_model::{AuthServerId, Timestamp};

use super::{SqlStore, choice, found, from_json, parse_id, to_json};
use crate::bus::Invalidation;
use crate::error::Conflict;
use crate::sql::{Row, SqlBuf, Tx, params};
use crate::{AuthServerStore, Listed, Result, SigningKeyStore, StoreError};

const COLUMNS: &str = "id, issuer_key, name, audience, description, signing_algorithm, labels, trusted_origins, \
                       created_at, updated_at";

fn decode(row: &dyn Row) -> Result<AuthServer> {
    Ok(AuthServer {
        id: parse_id(row, "id")?,
        issuer_key: row.text("issuer_key")?,
        name: row.text("name")?,
        audience: row.text("audience")?,
        description: row.text("description")?,
        signing_algorithm: choice(row, "signing_algorithm")?,
        labels: from_json(row, "labels")?,
        trusted_origins: from_json(row, "trusted_origins")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        updated_at: Timestamp::from_micros(row.int("updated_at")?),
    })
}

fn decode_key(row: &dyn Row) -> Result<SigningKey> {
    Ok(SigningKey {
        id: parse_id(row, "id")?,
        auth_server_id: parse_id(row, "auth_server_id")?,
        algorithm: choice(row, "algorithm")?,
        encrypted_private_key: row.bytes("encrypted_private_key")?,
        public_jwk: from_json(row, "public_jwk")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        retired_at: row.opt_int("retired_at")?.map(Timestamp::from_micros),
    })
}

async fn insert_key(tx: &mut dyn Tx, key: &SigningKey) -> Result<()> {
    use gatehouse_model::body::Choice;
    tx.execute(
        "INSERT INTO signing_keys (id, auth_server_id, algorithm, encrypted_private_key, public_jwk, created_at, \
         retired_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![
            key.id.to_string(),
            key.auth_server_id.to_string(),
            key.algorithm.as_str(),
            key.encrypted_private_key.clone(),
            to_json(&key.public_jwk),
            key.created_at.micros(),
            key.retired_at.map(|t| t.micros()),
        ],
    )
    .await?;
    Ok(())
}

/// Names are unique; checked inside the write transaction so the caller learns which rule it broke (the unique
/// index still guards against a concurrent writer on PostgreSQL).
async fn ensure_name_free(tx: &mut dyn Tx, name: &str, except: Option<AuthServerId>) -> Result<()> {
    let rows = tx.fetch("SELECT id FROM auth_servers WHERE name = ?", params![name]).await?;
    let taken = rows.iter().any(|r| r.text("id").ok() != except.map(|id| id.to_string()));
    if taken { Err(StoreError::Conflict(Conflict::Name)) } else { Ok(()) }
}

#[async_trait]
impl AuthServerStore for SqlStore {
    async fn create_auth_server(&self, s: &AuthServer, key: &SigningKey) -> Result<()> {
        use gatehouse_model::body::Choice;
        let mut tx = self.db.writer().await?;
        ensure_name_free(tx.as_mut(), &s.name, None).await?;
        tx.execute(
            &format!("INSERT INTO auth_servers ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            params![
                s.id.to_string(),
                &s.issuer_key,
                &s.name,
                &s.audience,
                &s.description,
                s.signing_algorithm.as_str(),
                to_json(&s.labels),
                to_json(&s.trusted_origins),
                s.created_at.micros(),
                s.updated_at.micros(),
            ],
        )
        .await?;
        insert_key(tx.as_mut(), key).await?;
        tx.notify(Invalidation::AuthServer { id: s.id });
        tx.commit().await
    }

    async fn get_auth_server(&self, id: AuthServerId) -> Result<Option<AuthServer>> {
        let row = self
            .fetch_one(&format!("SELECT {COLUMNS} FROM auth_servers WHERE id = ?"), params![id.to_string()])
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn find_auth_server_by_issuer_key(&self, issuer_key: &str) -> Result<Option<AuthServer>> {
        let row = self
            .fetch_one(&format!("SELECT {COLUMNS} FROM auth_servers WHERE issuer_key = ?"), params![issuer_key])
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn list_auth_servers(&self, query: &ListQuery) -> Result<Listed<AuthServer>> {
        let base = SqlBuf::new(&format!("SELECT {COLUMNS} FROM auth_servers WHERE 1 = 1"));
        self.list(base, query, decode).await
    }

    async fn update_auth_server(&self, s: &AuthServer, new_key: Option<&SigningKey>) -> Result<()> {
        use gatehouse_model::body::Choice;
        let mut tx = self.db.writer().await?;
        ensure_name_free(tx.as_mut(), &s.name, Some(s.id)).await?;
        let n = tx
            .execute(
                "UPDATE auth_servers SET name = ?, audience = ?, description = ?, signing_algorithm = ?, labels = ?, \
                 trusted_origins = ?, updated_at = ? WHERE id = ?",
                params![
                    &s.name,
                    &s.audience,
                    &s.description,
                    s.signing_algorithm.as_str(),
                    to_json(&s.labels),
                    to_json(&s.trusted_origins),
                    s.updated_at.micros(),
                    s.id.to_string(),
                ],
            )
            .await?;
        found(n)?;
        if let Some(key) = new_key {
            tx.execute(
                "UPDATE signing_keys SET retired_at = ? WHERE auth_server_id = ? AND retired_at IS NULL",
                params![s.updated_at.micros(), s.id.to_string()],
            )
            .await?;
            insert_key(tx.as_mut(), key).await?;
        }
        tx.notify(Invalidation::AuthServer { id: s.id });
        tx.commit().await
    }

    async fn delete_auth_server(&self, id: AuthServerId, force: bool) -> Result<()> {
        let mut tx = self.db.writer().await?;
        let sid = id.to_string();
        if !force {
            let mut counts = [0u64; 3];
            for (i, table) in ["clients", "scopes", "claims"].iter().enumerate() {
                counts[i] = tx
                    .count(&format!("SELECT COUNT(*) AS n FROM {table} WHERE auth_server_id = ?"), params![&sid])
                    .await?;
            }
            if counts.iter().any(|&c| c > 0) {
                // Still report a missing server as missing.
                let exists = tx.count("SELECT COUNT(*) AS n FROM auth_servers WHERE id = ?", params![&sid]).await?;
                found(exists)?;
                return Err(StoreError::NotEmpty { clients: counts[0], scopes: counts[1], claims: counts[2] });
            }
        }
        // Foreign keys cascade to keys, scopes, claims, clients and secrets; token records have no foreign key.
        for table in ["issued_tokens", "token_revocations"] {
            tx.execute(&format!("DELETE FROM {table} WHERE auth_server_id = ?"), params![&sid]).await?;
        }
        let n = tx.execute("DELETE FROM auth_servers WHERE id = ?", params![&sid]).await?;
        found(n)?;
        tx.notify(Invalidation::AuthServer { id });
        tx.commit().await
    }
}

#[async_trait]
impl SigningKeyStore for SqlStore {
    async fn signing_keys(&self, auth_server: AuthServerId) -> Result<Vec<SigningKey>> {
        let rows = self
            .fetch(
                "SELECT id, auth_server_id, algorithm, encrypted_private_key, public_jwk, created_at, retired_at \
                 FROM signing_keys WHERE auth_server_id = ? \
                 ORDER BY CASE WHEN retired_at IS NULL THEN 0 ELSE 1 END, created_at DESC",
                params![auth_server.to_string()],
            )
            .await?;
        rows.iter().map(|r| decode_key(r.as_ref())).collect()
    }

    async fn rotate_signing_key(&self, key: &SigningKey) -> Result<()> {
        let mut tx = self.db.writer().await?;
        let server = key.auth_server_id.to_string();
        found(tx.count("SELECT COUNT(*) AS n FROM auth_servers WHERE id = ?", params![&server]).await?)?;
        tx.execute(
            "UPDATE signing_keys SET retired_at = ? WHERE auth_server_id = ? AND retired_at IS NULL",
            params![key.created_at.micros(), &server],
        )
        .await?;
        insert_key(tx.as_mut(), key).await?;
        tx.notify(Invalidation::AuthServer { id: key.auth_server_id });
        tx.commit().await
    }
}
