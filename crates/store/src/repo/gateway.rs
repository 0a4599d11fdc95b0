use async_trait::async_trait;
use serde_json::Value;

use gatehouse_model::gateway::{EntityKind, StoredEntity};

use super::{SqlStore, parse_id, to_json};
use crate::bus::Invalidation;
use crate::error::Conflict;
use crate::sql::{Param, Row, SqlBuf, Tx, params};
use crate::{EntityQuery, EntityRow, GatewayStore, Result, StoreError, TagFilter};

const COLUMNS: &str = "kind, id, endpoint_key, custom_id, cache_key, service_id, route_id, consumer_id, name, tags, \
                       data, created_at, updated_at, certificate_id, upstream_id";

fn decode(row: &dyn Row) -> Result<StoredEntity> {
    let kind_text = row.text("kind")?;
    let kind =
        EntityKind::from_collection(&kind_text).ok_or_else(|| StoreError::corrupt(format!("kind {kind_text}")))?;
    let data: Value =
        serde_json::from_str(&row.text("data")?).map_err(|e| StoreError::corrupt(format!("data: {e}")))?;
    let Value::Object(data) = data else { return Err(StoreError::corrupt("data is not an object")) };
    let opt_id = |col: &str| -> Result<Option<uuid::Uuid>> {
        row.opt_text(col)?.map(|t| t.parse().map_err(|_| StoreError::corrupt(format!("{col}: {t}")))).transpose()
    };
    Ok(StoredEntity {
        kind,
        id: parse_id(row, "id")?,
        endpoint_key: row.opt_text("endpoint_key")?,
        custom_id: row.opt_text("custom_id")?,
        cache_key: row.opt_text("cache_key")?,
        service_id: opt_id("service_id")?,
        route_id: opt_id("route_id")?,
        consumer_id: opt_id("consumer_id")?,
        certificate_id: opt_id("certificate_id")?,
        upstream_id: opt_id("upstream_id")?,
        name: row.opt_text("name")?,
        tags: serde_json::from_str(&row.text("tags")?).map_err(|e| StoreError::corrupt(format!("tags: {e}")))?,
        data,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

fn row_params(cp: uuid::Uuid, e: &StoredEntity) -> Vec<Param> {
    let id = |u: Option<uuid::Uuid>| u.map(|u| u.to_string());
    params![
        cp.to_string(),
        e.kind.collection(),
        e.id.to_string(),
        e.endpoint_key.clone(),
        e.custom_id.clone(),
        e.cache_key.clone(),
        id(e.service_id),
        id(e.route_id),
        id(e.consumer_id),
        e.name.clone(),
        to_json(&e.tags),
        to_json(&e.data),
        e.created_at,
        e.updated_at,
        id(e.certificate_id),
        id(e.upstream_id),
    ]
}

/// Unique keys and references are checked inside the write transaction so the caller learns which rule failed.
async fn check_keys(tx: &mut dyn Tx, cp: uuid::Uuid, e: &StoredEntity) -> Result<()> {
    let (cp_text, kind, id) = (cp.to_string(), e.kind.collection(), e.id.to_string());
    let endpoint_field = e.kind.endpoint_key();
    for (column, value, field) in [
        ("endpoint_key", &e.endpoint_key, endpoint_field),
        ("custom_id", &e.custom_id, "custom_id"),
        ("cache_key", &e.cache_key, "cache_key"),
    ] {
        let Some(value) = value else { continue };
        let n = tx
            .count(
                &format!("SELECT COUNT(*) AS n FROM gateway_entities WHERE control_plane_id = ? AND kind = ? AND {column} = ? AND id <> ?"),
                params![&cp_text, kind, value, &id],
            )
            .await?;
        if n > 0 {
            return Err(StoreError::Conflict(Conflict::Field(field)));
        }
    }
    for (reference, target, field) in [
        (e.service_id, EntityKind::Service, "service"),
        (e.route_id, EntityKind::Route, "route"),
        (e.consumer_id, EntityKind::Consumer, "consumer"),
        (e.certificate_id, EntityKind::Certificate, "certificate"),
        (e.upstream_id, EntityKind::Upstream, "upstream"),
    ] {
        let Some(reference) = reference else { continue };
        let n = tx
            .count(
                "SELECT COUNT(*) AS n FROM gateway_entities WHERE control_plane_id = ? AND kind = ? AND id = ?",
                params![&cp_text, target.collection(), reference.to_string()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::MissingReference { field });
        }
    }
    Ok(())
}

async fn ensure_control_plane(tx: &mut dyn Tx, cp: uuid::Uuid) -> Result<()> {
    let n = tx.count("SELECT COUNT(*) AS n FROM control_planes WHERE id = ?", params![cp.to_string()]).await?;
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

async fn exists(tx: &mut dyn Tx, cp: uuid::Uuid, e: &StoredEntity) -> Result<bool> {
    Ok(tx
        .count(
            "SELECT COUNT(*) AS n FROM gateway_entities WHERE control_plane_id = ? AND kind = ? AND id = ?",
            params![cp.to_string(), e.kind.collection(), e.id.to_string()],
        )
        .await?
        > 0)
}

/// Inserts or replaces `e` by id; returns whether it was created.
async fn upsert(tx: &mut dyn Tx, cp: uuid::Uuid, e: &StoredEntity) -> Result<bool> {
    check_keys(tx, cp, e).await?;
    let created = !exists(tx, cp, e).await?;
    if created {
        insert(tx, cp, e).await?;
    } else {
        let mut p = row_params(cp, e);
        // Move the key columns (control plane, kind, id) to the WHERE clause.
        let key: Vec<Param> = p.drain(..3).collect();
        p.extend(key);
        tx.execute(
            "UPDATE gateway_entities SET endpoint_key = ?, custom_id = ?, cache_key = ?, service_id = ?, \
             route_id = ?, consumer_id = ?, name = ?, tags = ?, data = ?, created_at = ?, updated_at = ?, \
             certificate_id = ?, upstream_id = ? WHERE control_plane_id = ? AND kind = ? AND id = ?",
            p,
        )
        .await?;
    }
    Ok(created)
}

async fn insert(tx: &mut dyn Tx, cp: uuid::Uuid, e: &StoredEntity) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO gateway_entities (control_plane_id, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ),
        row_params(cp, e),
    )
    .await?;
    Ok(())
}

#[async_trait]
impl GatewayStore for SqlStore {
    async fn insert_entity(&self, cp: uuid::Uuid, e: &StoredEntity) -> Result<()> {
        let mut tx = self.db.writer().await?;
        ensure_control_plane(tx.as_mut(), cp).await?;
        if exists(tx.as_mut(), cp, e).await? {
            return Err(StoreError::Conflict(Conflict::Id));
        }
        check_keys(tx.as_mut(), cp, e).await?;
        insert(tx.as_mut(), cp, e).await?;
        tx.notify(Invalidation::GatewayConfig { control_plane_id: cp });
        tx.commit().await
    }

    async fn upsert_entity(&self, cp: uuid::Uuid, e: &StoredEntity) -> Result<bool> {
        let mut tx = self.db.writer().await?;
        ensure_control_plane(tx.as_mut(), cp).await?;
        let created = upsert(tx.as_mut(), cp, e).await?;
        tx.notify(Invalidation::GatewayConfig { control_plane_id: cp });
        tx.commit().await?;
        Ok(created)
    }

    async fn write_certificate(
        &self,
        cp: uuid::Uuid,
        certificate: &StoredEntity,
        create: bool,
        snis: Option<&[StoredEntity]>,
    ) -> Result<bool> {
        let mut tx = self.db.writer().await?;
        ensure_control_plane(tx.as_mut(), cp).await?;
        let created = if create {
            if exists(tx.as_mut(), cp, certificate).await? {
                return Err(StoreError::Conflict(Conflict::Id));
            }
            check_keys(tx.as_mut(), cp, certificate).await?;
            insert(tx.as_mut(), cp, certificate).await?;
            true
        } else {
            upsert(tx.as_mut(), cp, certificate).await?
        };
        if let Some(snis) = snis {
            let rows = tx
                .fetch(
                    &format!(
                        "SELECT {COLUMNS} FROM gateway_entities WHERE control_plane_id = ? AND kind = 'snis' \
                         AND certificate_id = ?"
                    ),
                    params![cp.to_string(), certificate.id.to_string()],
                )
                .await?;
            let current = rows.iter().map(|r| decode(r.as_ref())).collect::<Result<Vec<_>>>()?;
            let same = |a: &StoredEntity, b: &StoredEntity| match (&a.endpoint_key, &b.endpoint_key) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            };
            for old in current.iter().filter(|old| !snis.iter().any(|sni| same(sni, old))) {
                tx.execute(
                    "DELETE FROM gateway_entities WHERE control_plane_id = ? AND kind = 'snis' AND id = ?",
                    params![cp.to_string(), old.id.to_string()],
                )
                .await?;
            }
            for sni in snis.iter().filter(|sni| !current.iter().any(|old| same(sni, old))) {
                check_keys(tx.as_mut(), cp, sni).await?;
                insert(tx.as_mut(), cp, sni).await?;
            }
        }
        tx.notify(Invalidation::GatewayConfig { control_plane_id: cp });
        tx.commit().await?;
        Ok(created)
    }

    async fn get_entity(&self, cp: uuid::Uuid, kind: EntityKind, id: uuid::Uuid) -> Result<Option<StoredEntity>> {
        let row = self
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM gateway_entities WHERE control_plane_id = ? AND kind = ? AND id = ?"),
                params![cp.to_string(), kind.collection(), id.to_string()],
            )
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn find_entity(&self, cp: uuid::Uuid, kind: EntityKind, key: &str) -> Result<Option<StoredEntity>> {
        let row = self
            .fetch_one(
                &format!(
                    "SELECT {COLUMNS} FROM gateway_entities WHERE control_plane_id = ? AND kind = ? AND endpoint_key = ?"
                ),
                params![cp.to_string(), kind.collection(), key],
            )
            .await?;
        row.map(|r| decode(r.as_ref())).transpose()
    }

    async fn list_entities(
        &self,
        cp: uuid::Uuid,
        kind: EntityKind,
        q: &EntityQuery,
    ) -> Result<(Vec<StoredEntity>, Option<uuid::Uuid>)> {
        let dialect = self.dialect();
        let mut sql =
            SqlBuf::new(&format!("SELECT {COLUMNS} FROM gateway_entities WHERE control_plane_id = ? AND kind = ?"));
        sql.bind(cp.to_string()).bind(kind.collection());
        if let Some(after) = q.after {
            sql.push(" AND id > ?").bind(after.to_string());
        }
        for (column, value) in [
            ("service_id", q.service_id),
            ("route_id", q.route_id),
            ("consumer_id", q.consumer_id),
            ("certificate_id", q.certificate_id),
            ("upstream_id", q.upstream_id),
        ] {
            if let Some(v) = value {
                sql.push(&format!(" AND {column} = ?")).bind(v.to_string());
            }
        }
        if let Some(v) = &q.key_eq {
            sql.push(" AND endpoint_key = ?").bind(v);
        }
        if let Some(v) = &q.key_contains {
            sql.push(&format!(" AND {}", dialect.contains("endpoint_key"))).bind(v);
        }
        if let Some(v) = &q.custom_id {
            sql.push(" AND custom_id = ?").bind(v);
        }
        // Tags are stored as a JSON array; a quoted tag is found as a whole element.
        let tag_test = dialect.contains("tags");
        match &q.tags {
            TagFilter::None => {}
            TagFilter::All(tags) => {
                for t in tags {
                    sql.push(&format!(" AND {tag_test}")).bind(to_json(t));
                }
            }
            TagFilter::Any(tags) => {
                let any = vec![tag_test.as_str(); tags.len()].join(" OR ");
                sql.push(&format!(" AND ({any})"));
                for t in tags {
                    sql.bind(to_json(t));
                }
            }
        }
        let size = i64::from(q.size.max(1));
        sql.push(" ORDER BY id LIMIT ?").bind(size + 1);
        let rows = self.fetch(&sql.sql, sql.params).await?;
        let mut items = rows.iter().map(|r| decode(r.as_ref())).collect::<Result<Vec<_>>>()?;
        let next = if items.len() as i64 > size {
            items.truncate(size as usize);
            items.last().map(|e| e.id)
        } else {
            None
        };
        Ok((items, next))
    }

    async fn delete_entity(&self, cp: uuid::Uuid, kind: EntityKind, id: uuid::Uuid) -> Result<bool> {
        let mut tx = self.db.writer().await?;
        let (cp_text, id_text) = (cp.to_string(), id.to_string());
        if kind == EntityKind::Service {
            let routes = tx
                .count(
                    "SELECT COUNT(*) AS n FROM gateway_entities WHERE control_plane_id = ? AND kind = 'routes' AND service_id = ?",
                    params![&cp_text, &id_text],
                )
                .await?;
            if routes > 0 {
                return Err(StoreError::Referenced { by: "routes" });
            }
        }
        let column = match kind {
            EntityKind::Service => Some("service_id"),
            EntityKind::Route => Some("route_id"),
            EntityKind::Consumer => Some("consumer_id"),
            _ => None,
        };
        if let Some(column) = column {
            tx.execute(
                &format!(
                    "DELETE FROM gateway_entities WHERE control_plane_id = ? AND kind = 'plugins' AND {column} = ?"
                ),
                params![&cp_text, &id_text],
            )
            .await?;
        }
        if kind == EntityKind::Consumer {
            // Kong's `acls.consumer` and its credentials' `consumer` are `on_delete = "cascade"`, like the
            // consumer's plugins.
            tx.execute(
                "DELETE FROM gateway_entities WHERE control_plane_id = ? AND kind IN ('acls', 'key-auths', 'jwts', 'basic-auths') \
                 AND consumer_id = ?",
                params![&cp_text, &id_text],
            )
            .await?;
        }
        if kind == EntityKind::Certificate {
            // Kong deletes a certificate's SNIs with it (`kong/db/dao/certificates.lua`).
            tx.execute(
                "DELETE FROM gateway_entities WHERE control_plane_id = ? AND kind = 'snis' AND certificate_id = ?",
                params![&cp_text, &id_text],
            )
            .await?;
        }
        if kind == EntityKind::Upstream {
            // Kong's `targets.upstream` is `on_delete = "cascade"`.
            tx.execute(
                "DELETE FROM gateway_entities WHERE control_plane_id = ? AND kind = 'targets' AND upstream_id = ?",
                params![&cp_text, &id_text],
            )
            .await?;
        }
        let n = tx
            .execute(
                "DELETE FROM gateway_entities WHERE control_plane_id = ? AND kind = ? AND id = ?",
                params![&cp_text, kind.collection(), &id_text],
            )
            .await?;
        if n > 0 {
            tx.notify(Invalidation::GatewayConfig { control_plane_id: cp });
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn all_entities(&self, cp: uuid::Uuid) -> Result<Vec<StoredEntity>> {
        let rows = self
            .fetch(
                &format!("SELECT {COLUMNS} FROM gateway_entities WHERE control_plane_id = ? ORDER BY kind, id"),
                params![cp.to_string()],
            )
            .await?;
        rows.iter().map(|r| decode(r.as_ref())).collect()
    }

    async fn all_entity_rows(&self, cp: uuid::Uuid) -> Result<Vec<EntityRow>> {
        let rows = self
            .fetch(
                "SELECT kind, id, endpoint_key, data FROM gateway_entities WHERE control_plane_id = ? ORDER BY kind, id",
                params![cp.to_string()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let r = r.as_ref();
                let kind_text = r.text("kind")?;
                let kind = EntityKind::from_collection(&kind_text)
                    .ok_or_else(|| StoreError::corrupt(format!("kind {kind_text}")))?;
                Ok(EntityRow {
                    kind,
                    id: parse_id(r, "id")?,
                    endpoint_key: r.opt_text("endpoint_key")?,
                    data: r.text("data")?,
                })
            })
            .collect()
    }
}
