//! Copies of a SQLite database taken while a node writes to it, and what a restore reads from one before it is put
//! in place. PostgreSQL has its own tools (`pg_dump`), which Gatehouse points at instead of imitating.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::StoreError;
use crate::error::from_sqlx;
use crate::files::{create_private, sibling};

/// A connection of its own, read-only and without touching the schema: a backup reads the database as it is, never
/// migrates it, and never creates one that is not there.
async fn read_only(database: &Path) -> Result<SqliteConnection, StoreError> {
    SqliteConnectOptions::new()
        .filename(database)
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(from_sqlx)
}

/// Writes a consistent copy of `database` to `to` while nodes keep writing: `VACUUM INTO` reads one snapshot (a
/// read transaction on the WAL database), so the copy holds every write committed before it began and none half
/// done. The copy is written beside `to` and renamed into place, readable by its owner only; an existing `to` is
/// refused rather than replaced.
pub async fn sqlite_snapshot(database: &Path, to: &Path) -> Result<u64, StoreError> {
    if to.exists() {
        return Err(StoreError::Config(format!("{} exists; choose a new file for the backup", to.display())));
    }
    let partial = sibling(to, ".partial");
    let _ = std::fs::remove_file(&partial);
    // Created empty first so that SQLite writes into a file with our mode.
    create_private(&partial).map_err(|e| StoreError::Config(format!("cannot create {}: {e}", partial.display())))?;
    let mut connection = read_only(database).await?;
    let vacuumed = sqlx::query("VACUUM INTO ?").bind(partial.display().to_string()).execute(&mut connection).await;
    let _ = connection.close().await;
    if let Err(e) = vacuumed {
        let _ = std::fs::remove_file(&partial);
        return Err(from_sqlx(e));
    }
    let written = std::fs::File::open(&partial)
        .and_then(|f| f.sync_all().and_then(|()| f.metadata()))
        .and_then(|meta| std::fs::rename(&partial, to).map(|()| meta.len()))
        .map_err(|e| StoreError::Config(format!("cannot write {}: {e}", to.display())))?;
    Ok(written)
}

/// What a restore checks in a backup before using it: SQLite's integrity check passes, and the value stored under
/// `meta_key` (the master key's check value) if there is one.
pub async fn sqlite_backup_meta(backup: &Path, meta_key: &str) -> Result<Option<String>, StoreError> {
    if !backup.is_file() {
        return Err(StoreError::Config(format!("{} is not a file", backup.display())));
    }
    let mut connection = read_only(backup).await?;
    let integrity: String =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut connection).await.map_err(from_sqlx)?;
    if integrity != "ok" {
        return Err(StoreError::Corrupt(format!("{} fails SQLite's integrity check: {integrity}", backup.display())));
    }
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM gatehouse_meta WHERE key = ?")
        .bind(meta_key)
        .fetch_optional(&mut connection)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(_) => StoreError::Config(format!(
                "{} is not a Gatehouse database (no gatehouse_meta table)",
                backup.display()
            )),
            other => from_sqlx(other),
        })?;
    let _ = connection.close().await;
    Ok(value)
}

/// Copies `backup` to `database`, which must not exist: beside it first, synced, then renamed, so a failed restore
/// leaves no half-written database for a node to start on.
pub fn sqlite_put_in_place(backup: &Path, database: &Path) -> Result<(), StoreError> {
    let fail = |e: std::io::Error| StoreError::Config(format!("cannot restore into {}: {e}", database.display()));
    if database.exists() {
        return Err(StoreError::Config(format!("{} exists; restore only into an empty data dir", database.display())));
    }
    if let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::private_dir(dir)?;
    }
    let partial = sibling(database, ".partial");
    let _ = std::fs::remove_file(&partial);
    create_private(&partial).map_err(fail)?;
    std::fs::copy(backup, &partial).map_err(fail)?;
    std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(fail)?;
    std::fs::rename(&partial, database).map_err(fail)?;
    if let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
    }
    Ok(())
}
