//! `gatehouse backup --to FILE` and `gatehouse restore --from FILE`: a SQLite node's database copied while it runs,
//! and put back into an empty data dir once the master key is shown to open it. PostgreSQL is left to its own tools.

use std::path::{Path, PathBuf};

use gatehouse_runtime::config::Config;
use gatehouse_runtime::master_key::{self, KEY_CHECK_META, KeySource};
use gatehouse_store::{StorageUrl, StoreError, backup};

use crate::node::{NodeLocation, StartError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "the node stores its data in PostgreSQL ({url}): back it up with PostgreSQL's tools, e.g. \
         `pg_dump --format=custom --file=gatehouse.dump{schema} '{url}'` (with the password), and keep the master key \
         with the dump but apart from it; `gatehouse backup` copies SQLite databases only"
    )]
    PostgresBackup { url: String, schema: String },
    #[error(
        "the node stores its data in PostgreSQL ({url}): restore a `pg_dump` with PostgreSQL's tools, e.g. \
         `pg_restore --dbname='{url}' gatehouse.dump`, then start the nodes with the master key it was made with"
    )]
    PostgresRestore { url: String },
    #[error(transparent)]
    Node(#[from] StartError),
    #[error(transparent)]
    Key(#[from] master_key::KeyError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{backup} is not a Gatehouse backup: it holds no master key check value")]
    NotABackup { backup: PathBuf },
    #[error(
        "no master key to check {backup} with: put the key file that was backed up with it at {path} (mode 0600), \
         or give it as GATEHOUSE_MASTER_KEY or master_key_file. Nothing was restored"
    )]
    NoKey { backup: PathBuf, path: PathBuf },
    #[error(
        "the master key given is not the one {backup} was made with: its data would not open. Restore with the key \
         that was backed up alongside it. Nothing was restored"
    )]
    WrongKey { backup: PathBuf },
    #[error("restore only into an empty data dir: {0} exists (move it away first)")]
    NotEmpty(PathBuf),
}

/// `-n SCHEMA` for `pg_dump` when the node uses a schema of its own.
fn schema_flag(config: &Config) -> String {
    config.storage.schema.as_ref().map(|s| format!(" --schema={s}")).unwrap_or_default()
}

/// Copies the node's database to `to` (which must not exist), consistent while the node runs. Returns the bytes
/// written and the database copied.
pub async fn backup(config: &Config, to: &Path) -> Result<(u64, PathBuf), BackupError> {
    let database = match config.storage_url().map_err(StartError::from)? {
        StorageUrl::Postgres(_) => {
            let url = config.storage_url().map_err(StartError::from)?.redacted();
            return Err(BackupError::PostgresBackup { url, schema: schema_flag(config) });
        }
        StorageUrl::Sqlite(database) => database,
    };
    if !database.is_file() {
        let location = NodeLocation::of(config)?;
        return Err(StartError::NoNode {
            missing: format!("the database {} does not exist", database.display()),
            data_dir: location.data_dir,
            database: location.database,
        }
        .into());
    }
    let bytes = backup::sqlite_snapshot(&database, to).await?;
    Ok((bytes, database))
}

/// Puts `from` (a `gatehouse backup` file) in place as the node's database, into a data dir that has none, after
/// checking that the configured master key is the one the backup's data was sealed with. Returns the database
/// written.
pub async fn restore(config: &Config, from: &Path) -> Result<PathBuf, BackupError> {
    let storage = config.storage_url().map_err(StartError::from)?;
    let database = match &storage {
        StorageUrl::Postgres(_) => return Err(BackupError::PostgresRestore { url: storage.redacted() }),
        StorageUrl::Sqlite(database) => database.clone(),
    };
    for file in ["", "-wal", "-shm"] {
        let mut name = database.clone().into_os_string();
        name.push(file);
        let path = PathBuf::from(name);
        if path.exists() {
            return Err(BackupError::NotEmpty(path));
        }
    }
    let stored = backup::sqlite_backup_meta(from, KEY_CHECK_META)
        .await?
        .ok_or_else(|| BackupError::NotABackup { backup: from.to_owned() })?;
    let key = match master_key::locate(config, &storage)? {
        KeySource::Found(key) => key,
        KeySource::ToCreate(path) => return Err(BackupError::NoKey { backup: from.to_owned(), path }),
    };
    if !master_key::opens(&key.derive(), &stored) {
        return Err(BackupError::WrongKey { backup: from.to_owned() });
    }
    backup::sqlite_put_in_place(from, &database)?;
    Ok(database)
}
