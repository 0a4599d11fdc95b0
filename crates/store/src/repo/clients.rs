use async_trait::async_trait;

use gatehouse_model::body::Choice;
use gatehouse_model::identity::{Client, ClientSecret};
use gatehouse_model::listing::ListQuery;
use gatehouse_model::{AuthServerId, ClientId, Timestamp};

use super::scopes::{ensure_auth_server, ensure_name_free};
use super::secrets::insert_secret;
use super::{SqlStore, choice, choices, choices_to_json, found, from_json, parse_id, to_json};
use crate::bus::Invalidation;
use crate::error::Conflict;
use crate::sql::{Row, SqlBuf, params};
use crate::{ClientStore, Listed, Result, StoreError};

const COLUMNS: &str = "auth_server_id, id, name, grant_types, response_types, redirect_uris, login_uri, \
                       access_token_duration, id_token_duration, allow_all_scopes, allow_scopes, labels, \
                       token_endpoint_auth_method, created_at, updated_at";

fn decode(row: &dyn Row) -> Result<Client> {
    Ok(Client {
        id: ClientId::parse(&row.text("id")?).map_err(|_| StoreError::corrupt("column id: bad client id"))?,
        auth_server_id: parse_id(row, "auth_server_id")?,
        name: row.text("name")?,
        grant_types: choices(row, "grant_types")?,
        response_types: choices(row, "response_types")?,
        redirect_uris: from_json(row, "redirect_uris")?,
        login_uri: row.opt_text("login_uri")?,
        access_token_duration: row.int("access_token_duration")?,
        id_token_duration: row.int("id_token_duration")?,
        allow_all_scopes: row.boolean("allow_all_scopes")?,
        allow_scopes: from_json(row, "allow_scopes")?,
        labels: from_json(row, "labels")?,
        token_endpoint_auth_method: choice(row, "token_endpoint_auth_method")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        updated_at: Timestamp::from_micros(row.int("updated_at")?),
    })
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn create_client(&self, c: &Client, secret: &ClientSecret) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_auth_server(tx.as_mut(), c.auth_server_id).await?;
        let id_taken = tx
            .count(
                "SELECT COUNT(*) AS n FROM clients WHERE auth_server_id = ? AND id = ?",
                params![c.auth_server_id.to_string(), c.id.as_str()],
            )
            .await?;
        if id_taken > 0 {
            return Err(StoreError::Conflict(Conflict::Id));
        }
        ensure_name_free(tx.as_mut(), "clients", c.auth_server_id, &c.name, None).await?;
        tx.execute(
            &format!("INSERT INTO clients ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            params![
                c.auth_server_id.to_string(),
                c.id.as_str(),
                &c.name,
                choices_to_json(&c.grant_types),
                choices_to_json(&c.response_types),
                to_json(&c.redirect_uris),
                c.login_uri.clone(),
                c.access_token_duration,
                c.id_token_duration,
                c.allow_all_scopes,
                to_json(&c.allow_scopes),
                to_json(&c.labels),
                c.token_endpoint_auth_method.as_str(),
                c.created_at.micros(),
                c.updated_at.micros(),
            ],
        )
        .await?;
        insert_secret(tx.as_mut(), secret).await?;
        tx.notify(Invalidation::AuthServer { id: c.auth_server_id });
        tx.commit().await
    }

    async fn get_client(&self, auth_server: AuthServerId, id: &ClientId) -> Result<Option<Client>> {
        let row = self
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM clients WHERE auth_server_id = ? AND id = ?"),
                params![auth_server.to_string(), id.as_str()],
            )
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn list_clients(&self, auth_server: AuthServerId, query: &ListQuery) -> Result<Listed<Client>> {
        let mut base = SqlBuf::new(&format!("SELECT {COLUMNS} FROM clients WHERE auth_server_id = ?"));
        base.bind(auth_server.to_string());
        self.list(base, query, decode).await
    }

    async fn all_clients(&self, auth_server: AuthServerId) -> Result<Vec<Client>> {
        let rows = self
            .fetch(
                &format!("SELECT {COLUMNS} FROM clients WHERE auth_server_id = ? ORDER BY created_at, id"),
                params![auth_server.to_string()],
            )
            .await?;
        rows.iter().map(|r| decode(r.as_ref())).collect()
    }

    async fn update_client(&self, c: &Client, replacement: Option<&ClientSecret>) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_name_free(tx.as_mut(), "clients", c.auth_server_id, &c.name, Some(c.id.as_str())).await?;
        let n = tx
            .execute(
                "UPDATE clients SET name = ?, grant_types = ?, response_types = ?, redirect_uris = ?, login_uri = ?, \
                 access_token_duration = ?, id_token_duration = ?, allow_all_scopes = ?, allow_scopes = ?, \
                 labels = ?, token_endpoint_auth_method = ?, updated_at = ? WHERE auth_server_id = ? AND id = ?",
                params![
                    &c.name,
                    choices_to_json(&c.grant_types),
                    choices_to_json(&c.response_types),
                    to_json(&c.redirect_uris),
                    c.login_uri.clone(),
                    c.access_token_duration,
                    c.id_token_duration,
                    c.allow_all_scopes,
                    to_json(&c.allow_scopes),
                    to_json(&c.labels),
                    c.token_endpoint_auth_method.as_str(),
                    c.updated_at.micros(),
                    c.auth_server_id.to_string(),
                    c.id.as_str(),
                ],
            )
            .await?;
        found(n)?;
        if let Some(secret) = replacement {
            tx.execute(
                "DELETE FROM client_secrets WHERE auth_server_id = ? AND client_id = ?",
                params![c.auth_server_id.to_string(), c.id.as_str()],
            )
            .await?;
            insert_secret(tx.as_mut(), secret).await?;
        }
        tx.notify(Invalidation::AuthServer { id: c.auth_server_id });
        tx.commit().await
    }

    async fn delete_client(&self, auth_server: AuthServerId, id: &ClientId) -> Result<()> {
        let mut tx = self.db.writer().await?;
        let n = tx
            .execute(
                "DELETE FROM clients WHERE auth_server_id = ? AND id = ?",
                params![auth_server.to_string(), id.as_str()],
            )
            .await?;
        found(n)?;
        for table in ["issued_tokens", "token_revocations"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE auth_server_id = ? AND client_id = ?"),
                params![auth_server.to_string(), id.as_str()],
            )
            .await?;
        }
        tx.notify(Invalidation::AuthServer { id: auth_server });
        tx.commit().await
    }
}
