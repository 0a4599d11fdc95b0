use async_trait::async_trait;

use gatehouse_model::identity::IssuedToken;
use gatehouse_model::identity::token::RECORD_RETENTION_SECS;
use gatehouse_model::listing::ListQuery;
use gatehouse_model::{AuthServerId, ClientId, SigningKeyId, Timestamp, TokenId};

use super::{SqlStore, from_json, parse_id, to_json};
use crate::bus::Invalidation;
use crate::sql::{Param, Row, SqlBuf, params};
use crate::{Listed, Result, StoreError, TokenStore};

const COLUMNS: &str = "id, auth_server_id, client_id, signing_key_id, granted_scope_names, created_at, expires_at";
/// Rows per INSERT statement: well under SQLite's and PostgreSQL's bound-parameter limits.
const ROWS_PER_INSERT: usize = 500;

fn decode(row: &dyn Row) -> Result<IssuedToken> {
    Ok(IssuedToken {
        id: parse_id(row, "id")?,
        auth_server_id: parse_id(row, "auth_server_id")?,
        client_id: ClientId::parse(&row.text("client_id")?)
            .map_err(|_| StoreError::corrupt("column client_id: bad client id"))?,
        signing_key_id: parse_id(row, "signing_key_id")?,
        granted_scope_names: from_json(row, "granted_scope_names")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        expires_at: Timestamp::from_micros(row.int("expires_at")?),
    })
}

fn revocation(row: &dyn Row) -> Result<(TokenId, Timestamp)> {
    Ok((parse_id(row, "id")?, Timestamp::from_micros(row.int("expires_at")?)))
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn record_tokens(&self, tokens: &[IssuedToken]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.writer().await?;
        for chunk in tokens.chunks(ROWS_PER_INSERT) {
            let mut sql = SqlBuf::new(&format!("INSERT INTO issued_tokens ({COLUMNS}) VALUES "));
            for (i, t) in chunk.iter().enumerate() {
                sql.push(if i == 0 { "(?, ?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?, ?)" });
                sql.params.extend([
                    Param::Text(t.id.to_string()),
                    Param::Text(t.auth_server_id.to_string()),
                    Param::Text(t.client_id.as_str().to_owned()),
                    Param::Text(t.signing_key_id.to_string()),
                    Param::Text(to_json(&t.granted_scope_names)),
                    Param::Int(t.created_at.micros()),
                    Param::Int(t.expires_at.micros()),
                ]);
            }
            tx.execute(&sql.sql, sql.params).await?;
        }
        tx.commit().await
    }

    async fn list_tokens(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        query: &ListQuery,
    ) -> Result<Listed<IssuedToken>> {
        let mut base =
            SqlBuf::new(&format!("SELECT {COLUMNS} FROM issued_tokens WHERE auth_server_id = ? AND client_id = ?"));
        base.bind(auth_server.to_string()).bind(client.as_str());
        self.list(base, query, decode).await
    }

    async fn get_token(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
        id: TokenId,
    ) -> Result<Option<IssuedToken>> {
        let row = self
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM issued_tokens WHERE auth_server_id = ? AND client_id = ? AND id = ?"),
                params![auth_server.to_string(), client.as_str(), id.to_string()],
            )
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn revoke_token(&self, auth_server: AuthServerId, client: &ClientId, id: TokenId) -> Result<IssuedToken> {
        let mut tx = self.db.writer().await?;
        let key = params![auth_server.to_string(), client.as_str(), id.to_string()];
        let row = tx
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM issued_tokens WHERE auth_server_id = ? AND client_id = ? AND id = ?"),
                key.clone(),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let token = decode(row.as_ref())?;
        tx.execute("DELETE FROM issued_tokens WHERE auth_server_id = ? AND client_id = ? AND id = ?", key).await?;
        tx.execute(
            "INSERT INTO token_revocations (id, auth_server_id, client_id, expires_at) VALUES (?, ?, ?, ?)",
            params![id.to_string(), auth_server.to_string(), client.as_str(), token.expires_at.micros()],
        )
        .await?;
        tx.notify(Invalidation::TokenRevoked { id, expires_at: token.expires_at.micros() });
        tx.commit().await?;
        Ok(token)
    }

    async fn revoke_client_tokens(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
    ) -> Result<Vec<(TokenId, Timestamp)>> {
        let mut tx = self.db.writer().await?;
        let key = params![auth_server.to_string(), client.as_str()];
        let revoked = tx
            .fetch("SELECT id, expires_at FROM issued_tokens WHERE auth_server_id = ? AND client_id = ?", key.clone())
            .await?
            .iter()
            .map(|r| revocation(r.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        tx.execute(
            "INSERT INTO token_revocations (id, auth_server_id, client_id, expires_at) \
                 SELECT id, auth_server_id, client_id, expires_at FROM issued_tokens \
                 WHERE auth_server_id = ? AND client_id = ?",
            key.clone(),
        )
        .await?;
        tx.execute("DELETE FROM issued_tokens WHERE auth_server_id = ? AND client_id = ?", key).await?;
        tx.notify(Invalidation::ClientTokensRevoked { auth_server_id: auth_server, client_id: client.clone() });
        tx.commit().await?;
        Ok(revoked)
    }

    async fn live_revocations(&self, now: Timestamp) -> Result<Vec<(TokenId, Timestamp)>> {
        let rows = self
            .fetch("SELECT id, expires_at FROM token_revocations WHERE expires_at > ?", params![now.micros()])
            .await?;
        rows.iter().map(|r| revocation(r.as_ref())).collect()
    }

    async fn client_revocations(
        &self,
        auth_server: AuthServerId,
        client: &ClientId,
    ) -> Result<Vec<(TokenId, Timestamp)>> {
        let rows = self
            .fetch(
                "SELECT id, expires_at FROM token_revocations WHERE auth_server_id = ? AND client_id = ?",
                params![auth_server.to_string(), client.as_str()],
            )
            .await?;
        rows.iter().map(|r| revocation(r.as_ref())).collect()
    }

    async fn prune_tokens(&self, now: Timestamp) -> Result<u64> {
        let mut tx = self.db.writer().await?;
        let records = tx
            .execute(
                "DELETE FROM issued_tokens WHERE expires_at < ?",
                params![now.plus_secs(-RECORD_RETENTION_SECS).micros()],
            )
            .await?;
        // A revocation matters only while its token could still verify (expiry plus clock leeway).
        let revocations = tx
            .execute("DELETE FROM token_revocations WHERE expires_at < ?", params![now.plus_secs(-300).micros()])
            .await?;
        tx.commit().await?;
        Ok(records + revocations)
    }

    async fn key_token_expiry(&self, key: SigningKeyId) -> Result<Option<Timestamp>> {
        let row = self
            .fetch_one(
                "SELECT MAX(expires_at) AS latest FROM issued_tokens WHERE signing_key_id = ?",
                params![key.to_string()],
            )
            .await?;
        Ok(row.map(|r| r.opt_int("latest")).transpose()?.flatten().map(Timestamp::from_micros))
    }
}
