use async_trait::async_trait;

use gatehouse_model::Timestamp;
use gatehouse_model::body::Choice;
use gatehouse_model::gateway::control_plane::{AuthType, ClusterType, ControlPlane};
use gatehouse_model::listing::ListQuery;

use super::{SqlStore, choice, found, from_json, parse_id, to_json};
use crate::bus::Invalidation;
use crate::error::Conflict;
use crate::sql::{Row, SqlBuf, Tx, params};
use crate::{ControlPlaneStore, Listed, Result, StoreError};

const COLUMNS: &str =
    "id, name, description, cluster_type, auth_type, cloud_gateway, proxy_urls, labels, created_at, updated_at";

fn decode(row: &dyn Row) -> Result<ControlPlane> {
    Ok(ControlPlane {
        id: parse_id(row, "id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        cluster_type: choice::<ClusterType>(row, "cluster_type")?,
        auth_type: choice::<AuthType>(row, "auth_type")?,
        cloud_gateway: row.boolean("cloud_gateway")?,
        proxy_urls: from_json(row, "proxy_urls")?,
        labels: from_json(row, "labels")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        updated_at: Timestamp::from_micros(row.int("updated_at")?),
    })
}

async fn ensure_name_free(tx: &mut dyn Tx, name: &str, except: Option<uuid::Uuid>) -> Result<()> {
    let rows = tx.fetch("SELECT id FROM control_planes WHERE name = ?", params![name]).await?;
    let taken = rows.iter().any(|r| r.text("id").ok() != except.map(|id| id.to_string()));
    if taken { Err(StoreError::Conflict(Conflict::Name)) } else { Ok(()) }
}

#[async_trait]
impl ControlPlaneStore for SqlStore {
    async fn create_control_plane(&self, cp: &ControlPlane) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_name_free(tx.as_mut(), &cp.name, None).await?;
        tx.execute(
            &format!("INSERT INTO control_planes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            params![
                cp.id.to_string(),
                &cp.name,
                &cp.description,
                cp.cluster_type.as_str(),
                cp.auth_type.as_str(),
                cp.cloud_gateway,
                to_json(&cp.proxy_urls),
                to_json(&cp.labels),
                cp.created_at.micros(),
                cp.updated_at.micros(),
            ],
        )
        .await?;
        tx.notify(Invalidation::ControlPlanes);
        tx.commit().await
    }

    async fn get_control_plane(&self, id: uuid::Uuid) -> Result<Option<ControlPlane>> {
        let row = self
            .fetch_one(&format!("SELECT {COLUMNS} FROM control_planes WHERE id = ?"), params![id.to_string()])
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn find_control_plane_by_name(&self, name: &str) -> Result<Option<ControlPlane>> {
        let row =
            self.fetch_one(&format!("SELECT {COLUMNS} FROM control_planes WHERE name = ?"), params![name]).await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn list_control_planes(&self, query: &ListQuery) -> Result<Listed<ControlPlane>> {
        self.list(SqlBuf::new(&format!("SELECT {COLUMNS} FROM control_planes WHERE 1 = 1")), query, decode).await
    }

    async fn update_control_plane(&self, cp: &ControlPlane) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_name_free(tx.as_mut(), &cp.name, Some(cp.id)).await?;
        let n = tx
            .execute(
                "UPDATE control_planes SET name = ?, description = ?, auth_type = ?, proxy_urls = ?, labels = ?, \
                 updated_at = ? WHERE id = ?",
                params![
                    &cp.name,
                    &cp.description,
                    cp.auth_type.as_str(),
                    to_json(&cp.proxy_urls),
                    to_json(&cp.labels),
                    cp.updated_at.micros(),
                    cp.id.to_string(),
                ],
            )
            .await?;
        found(n)?;
        tx.notify(Invalidation::ControlPlanes);
        tx.commit().await
    }

    async fn delete_control_plane(&self, id: uuid::Uuid) -> Result<()> {
        let mut tx = self.db.writer().await?;
        found(tx.execute("DELETE FROM control_planes WHERE id = ?", params![id.to_string()]).await?)?;
        tx.notify(Invalidation::ControlPlanes);
        tx.notify(Invalidation::GatewayConfig { control_plane_id: id });
        tx.commit().await
    }
}
