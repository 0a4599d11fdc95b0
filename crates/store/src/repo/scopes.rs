use async_trait::async_trait;

use gatehouse_model::identity::Scope;
use gatehouse_model::listing::ListQuery;
use gatehouse_model::{AuthServerId, ScopeId, Timestamp};

use super::{SqlStore, found, from_json, parse_id, to_json};
use crate::bus::Invalidation;
use crate::error::Conflict;
use crate::sql::{Row, SqlBuf, Tx, params};
use crate::{Listed, Result, ScopeStore, StoreError};

const COLUMNS: &str =
    "id, auth_server_id, name, description, is_default, include_in_metadata, enabled, created_at, updated_at";

fn decode(row: &dyn Row) -> Result<Scope> {
    Ok(Scope {
        id: parse_id(row, "id")?,
        auth_server_id: parse_id(row, "auth_server_id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        default: row.boolean("is_default")?,
        include_in_metadata: row.boolean("include_in_metadata")?,
        enabled: row.boolean("enabled")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        updated_at: Timestamp::from_micros(row.int("updated_at")?),
    })
}

/// Checks a name is free within the auth server (and, on create, that the server exists).
pub(super) async fn ensure_name_free(
    tx: &mut dyn Tx,
    table: &str,
    auth_server: AuthServerId,
    name: &str,
    except: Option<&str>,
) -> Result<()> {
    let rows = tx
        .fetch(
            &format!("SELECT id FROM {table} WHERE auth_server_id = ? AND name = ?"),
            params![auth_server.to_string(), name],
        )
        .await?;
    let taken = rows.iter().any(|r| r.text("id").ok().as_deref() != except);
    if taken { Err(StoreError::Conflict(Conflict::Name)) } else { Ok(()) }
}

pub(super) async fn ensure_auth_server(tx: &mut dyn Tx, auth_server: AuthServerId) -> Result<()> {
    found(tx.count("SELECT COUNT(*) AS n FROM auth_servers WHERE id = ?", params![auth_server.to_string()]).await?)
}

#[async_trait]
impl ScopeStore for SqlStore {
    async fn create_scope(&self, s: &Scope) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_auth_server(tx.as_mut(), s.auth_server_id).await?;
        ensure_name_free(tx.as_mut(), "scopes", s.auth_server_id, &s.name, None).await?;
        tx.execute(
            &format!("INSERT INTO scopes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            params![
                s.id.to_string(),
                s.auth_server_id.to_string(),
                &s.name,
                &s.description,
                s.default,
                s.include_in_metadata,
                s.enabled,
                s.created_at.micros(),
                s.updated_at.micros(),
            ],
        )
        .await?;
        tx.notify(Invalidation::AuthServer { id: s.auth_server_id });
        tx.commit().await
    }

    async fn get_scope(&self, auth_server: AuthServerId, id: ScopeId) -> Result<Option<Scope>> {
        let row = self
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM scopes WHERE auth_server_id = ? AND id = ?"),
                params![auth_server.to_string(), id.to_string()],
            )
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn list_scopes(&self, auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Scope>> {
        let mut base = SqlBuf::new(&format!("SELECT {COLUMNS} FROM scopes WHERE auth_server_id = ?"));
        base.bind(auth_server.to_string());
        self.list(base, query, decode).await
    }

    async fn all_scopes(&self, auth_server: AuthServerId) -> Result<Vec<Scope>> {
        let rows = self
            .fetch(
                &format!("SELECT {COLUMNS} FROM scopes WHERE auth_server_id = ? ORDER BY created_at, id"),
                params![auth_server.to_string()],
            )
            .await?;
        rows.iter().map(|r| decode(r.as_ref())).collect()
    }

    async fn update_scope(&self, s: &Scope) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_name_free(tx.as_mut(), "scopes", s.auth_server_id, &s.name, Some(&s.id.to_string())).await?;
        let n = tx
            .execute(
                "UPDATE scopes SET name = ?, description = ?, is_default = ?, include_in_metadata = ?, enabled = ?, \
                 updated_at = ? WHERE auth_server_id = ? AND id = ?",
                params![
                    &s.name,
                    &s.description,
                    s.default,
                    s.include_in_metadata,
                    s.enabled,
                    s.updated_at.micros(),
                    s.auth_server_id.to_string(),
                    s.id.to_string(),
                ],
            )
            .await?;
        found(n)?;
        tx.notify(Invalidation::AuthServer { id: s.auth_server_id });
        tx.commit().await
    }

    async fn delete_scope(&self, auth_server: AuthServerId, id: ScopeId, force: bool) -> Result<()> {
        let mut tx = self.db.writer().await?;
        let server = auth_server.to_string();
        let sid = id.to_string();
        let n = tx.execute("DELETE FROM scopes WHERE auth_server_id = ? AND id = ?", params![&server, &sid]).await?;
        found(n)?;
        // The scope id lives inside JSON arrays: find candidate rows by text, then rewrite the arrays in code, the
        // same way on both backends.
        let needle = format!("%\"{sid}\"%");
        let claims = tx
            .fetch(
                "SELECT id, name, include_in_scopes FROM claims WHERE auth_server_id = ? AND include_in_scopes LIKE ?",
                params![&server, &needle],
            )
            .await?;
        if !claims.is_empty() && !force {
            let names = claims.iter().map(|r| r.text("name")).collect::<Result<Vec<_>>>()?;
            return Err(StoreError::ScopeInUse { claims: names });
        }
        for row in &claims {
            let mut scopes: Vec<ScopeId> = from_json(row.as_ref(), "include_in_scopes")?;
            scopes.retain(|s| *s != id);
            tx.execute(
                "UPDATE claims SET include_in_scopes = ? WHERE auth_server_id = ? AND id = ?",
                params![to_json(&scopes), &server, row.text("id")?],
            )
            .await?;
        }
        let clients = tx
            .fetch(
                "SELECT id, allow_scopes FROM clients WHERE auth_server_id = ? AND allow_scopes LIKE ?",
                params![&server, &needle],
            )
            .await?;
        for row in &clients {
            let mut scopes: Vec<ScopeId> = from_json(row.as_ref(), "allow_scopes")?;
            scopes.retain(|s| *s != id);
            tx.execute(
                "UPDATE clients SET allow_scopes = ? WHERE auth_server_id = ? AND id = ?",
                params![to_json(&scopes), &server, row.text("id")?],
            )
            .await?;
        }
        tx.notify(Invalidation::AuthServer { id: auth_server });
        tx.commit().await
    }
}
