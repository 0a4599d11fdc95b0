use async_trait::async_trait;

use gatehouse_model::Timestamp;
use gatehouse_model::gateway::cluster::DataPlaneNode;

use super::{SqlStore, parse_id};
use crate::bus::Invalidation;
use crate::sql::{Row, params};
use crate::{ClusterStore, DpClientCertificate, Listed, Result};

const NODE_COLUMNS: &str =
    "control_plane_id, id, hostname, version, config_hash, last_error, last_ping, created_at, updated_at";
const CERT_COLUMNS: &str = "control_plane_id, id, cert, title, created_at, updated_at";

fn decode_node(row: &dyn Row) -> Result<DataPlaneNode> {
    Ok(DataPlaneNode {
        id: parse_id(row, "id")?,
        control_plane_id: parse_id(row, "control_plane_id")?,
        hostname: row.text("hostname")?,
        version: row.text("version")?,
        config_hash: row.text("config_hash")?,
        last_error: row.opt_text("last_error")?,
        last_ping: Timestamp::from_micros(row.int("last_ping")?),
        created_at: Timestamp::from_micros(row.int("created_at")?),
        updated_at: Timestamp::from_micros(row.int("updated_at")?),
    })
}

fn decode_cert(row: &dyn Row) -> Result<DpClientCertificate> {
    Ok(DpClientCertificate {
        id: parse_id(row, "id")?,
        control_plane_id: parse_id(row, "control_plane_id")?,
        cert: row.text("cert")?,
        title: row.text("title")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        updated_at: Timestamp::from_micros(row.int("updated_at")?),
    })
}

#[async_trait]
impl ClusterStore for SqlStore {
    async fn upsert_data_plane(&self, node: &DataPlaneNode) -> Result<()> {
        let mut tx = self.db.writer().await?;
        tx.execute(
            &format!(
                "INSERT INTO data_plane_nodes ({NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (control_plane_id, id) DO UPDATE SET hostname = excluded.hostname, \
                 version = excluded.version, config_hash = excluded.config_hash, last_error = excluded.last_error, \
                 last_ping = excluded.last_ping, updated_at = excluded.updated_at"
            ),
            params![
                node.control_plane_id.to_string(),
                node.id.to_string(),
                &node.hostname,
                &node.version,
                &node.config_hash,
                node.last_error.clone(),
                node.last_ping.micros(),
                node.created_at.micros(),
                node.updated_at.micros(),
            ],
        )
        .await?;
        tx.commit().await
    }

    async fn get_data_plane(&self, control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<Option<DataPlaneNode>> {
        let row = self
            .fetch_one(
                &format!("SELECT {NODE_COLUMNS} FROM data_plane_nodes WHERE control_plane_id = ? AND id = ?"),
                params![control_plane.to_string(), id.to_string()],
            )
            .await?;
        row.map(|r| decode_node(r.as_ref())).transpose()
    }

    async fn list_data_planes(
        &self,
        control_plane: uuid::Uuid,
        after: Option<uuid::Uuid>,
        size: u32,
    ) -> Result<Listed<DataPlaneNode>> {
        let cp = control_plane.to_string();
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let rows = self
            .fetch(
                &format!(
                    "SELECT {NODE_COLUMNS} FROM data_plane_nodes WHERE control_plane_id = ? AND id > ? \
                     ORDER BY id LIMIT ?"
                ),
                params![cp.clone(), after, i64::from(size)],
            )
            .await?;
        let items = rows.iter().map(|r| decode_node(r.as_ref())).collect::<Result<Vec<_>>>()?;
        let total = self
            .fetch_one("SELECT COUNT(*) AS n FROM data_plane_nodes WHERE control_plane_id = ?", params![cp])
            .await?
            .map(|r| r.int("n"))
            .transpose()?
            .unwrap_or_default();
        Ok(Listed { items, total: u64::try_from(total).unwrap_or_default() })
    }

    async fn delete_data_plane(&self, control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<bool> {
        let mut tx = self.db.writer().await?;
        let deleted = tx
            .execute(
                "DELETE FROM data_plane_nodes WHERE control_plane_id = ? AND id = ?",
                params![control_plane.to_string(), id.to_string()],
            )
            .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn create_dp_certificate(&self, cert: &DpClientCertificate) -> Result<()> {
        let mut tx = self.db.writer().await?;
        tx.execute(
            &format!("INSERT INTO dp_client_certificates ({CERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"),
            params![
                cert.control_plane_id.to_string(),
                cert.id.to_string(),
                &cert.cert,
                &cert.title,
                cert.created_at.micros(),
                cert.updated_at.micros(),
            ],
        )
        .await?;
        tx.notify(Invalidation::DpClientCertificates { control_plane_id: cert.control_plane_id });
        tx.commit().await
    }

    async fn get_dp_certificate(
        &self,
        control_plane: uuid::Uuid,
        id: uuid::Uuid,
    ) -> Result<Option<DpClientCertificate>> {
        let row = self
            .fetch_one(
                &format!("SELECT {CERT_COLUMNS} FROM dp_client_certificates WHERE control_plane_id = ? AND id = ?"),
                params![control_plane.to_string(), id.to_string()],
            )
            .await?;
        row.map(|r| decode_cert(r.as_ref())).transpose()
    }

    async fn list_dp_certificates(&self, control_plane: uuid::Uuid) -> Result<Vec<DpClientCertificate>> {
        let rows = self
            .fetch(
                &format!(
                    "SELECT {CERT_COLUMNS} FROM dp_client_certificates WHERE control_plane_id = ? \
                     ORDER BY created_at, id"
                ),
                params![control_plane.to_string()],
            )
            .await?;
        rows.iter().map(|r| decode_cert(r.as_ref())).collect()
    }

    async fn delete_dp_certificate(&self, control_plane: uuid::Uuid, id: uuid::Uuid) -> Result<bool> {
        let mut tx = self.db.writer().await?;
        let deleted = tx
            .execute(
                "DELETE FROM dp_client_certificates WHERE control_plane_id = ? AND id = ?",
                params![control_plane.to_string(), id.to_string()],
            )
            .await?;
        if deleted > 0 {
            tx.notify(Invalidation::DpClientCertificates { control_plane_id: control_plane });
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }
}
