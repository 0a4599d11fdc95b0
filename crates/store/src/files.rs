//! The SQLite files on disk: a private data dir (created 0700, refused when others can write to it) and a
//! database created 0600, whose WAL and shared-memory files SQLite then creates with the same mode.

use std::io;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// Creates `dir` (and missing parents) with mode 0700; refuses an existing one that group or others can write
/// to, since whoever can write there can swap the database or the key file.
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .map_err(|e| StoreError::Config(format!("cannot read {}: {e}", dir.display())))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(StoreError::Config(format!(
                "the data dir {} is writable by other users (mode {:o}); run `chmod go-w` on it or choose another",
                dir.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// Readies the directory and the database file before SQLite opens it.
pub(crate) fn prepare_sqlite(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    match std::fs::metadata(path) {
        Ok(meta) => {
            let wal = sibling(path, "-wal");
            if meta.len() == 0 && std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                return Err(StoreError::Config(format!(
                    "the database {} is empty but its write-ahead log {} holds data: the database file was \
                     truncated or replaced. Restore it from a backup; to start afresh, move both files away",
                    path.display(),
                    wal.display()
                )));
            }
            for file in [path.to_owned(), wal, sibling(path, "-shm")] {
                make_private(&file);
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_private(path)
            .map_err(|e| StoreError::Config(format!("cannot create the database {}: {e}", path.display()))),
        Err(e) => Err(StoreError::Config(format!("cannot read {}: {e}", path.display()))),
    }
}

pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// An empty file is a valid empty SQLite database; creating it ourselves is what sets its mode.
pub(crate) fn create_private(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

/// Files of an older version (created 0644) are narrowed to 0600.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else { return };
        if meta.permissions().mode() & 0o077 == 0 {
            return;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::info!(path = %path.display(), "made the database file private (mode 600)"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the database file is readable by other users and could not be made private")
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_data_dir_and_database_files_are_private() {
        let root = crate::testing::TempDir::new("files");
        let dir = root.path().join("a").join("data");
        let db = dir.join("gatehouse.db");
        let store = crate::open(&crate::StorageUrl::Sqlite(db.clone())).await.unwrap_or_else(|e| panic!("{e}"));
        store.init_meta("k", "v").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700, "missing parents too");
        for file in [db.clone(), sibling(&db, "-wal"), sibling(&db, "-shm")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_data_dir_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let root = crate::testing::TempDir::new("files");
        for shared in [0o770, 0o757, 0o1777] {
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(shared))
                .unwrap_or_else(|e| panic!("{e}"));
            let err = crate::open(&crate::StorageUrl::Sqlite(root.path().join("gatehouse.db"))).await.unwrap_err();
            assert!(err.to_string().contains("writable by other users"), "{shared:o}: {err}");
            assert!(!root.path().join("gatehouse.db").exists(), "nothing created");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn files_of_an_older_version_are_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = crate::testing::TempDir::new("files");
        let db = root.path().join("gatehouse.db");
        drop(crate::open(&crate::StorageUrl::Sqlite(db.clone())).await.unwrap_or_else(|e| panic!("{e}")));
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
        drop(crate::open(&crate::StorageUrl::Sqlite(db.clone())).await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(mode(&db), 0o600);
    }

    #[tokio::test]
    async fn an_emptied_database_with_a_write_ahead_log_is_refused() {
        let root = crate::testing::TempDir::new("files");
        let db = root.path().join("gatehouse.db");
        std::fs::write(&db, b"").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(sibling(&db, "-wal"), b"frames").unwrap_or_else(|e| panic!("{e}"));
        let err = crate::open(&crate::StorageUrl::Sqlite(db.clone())).await.unwrap_err();
        assert!(err.to_string().contains("was truncated or replaced"), "{err}");
        assert_eq!(std::fs::metadata(&db).map(|m| m.len()).ok(), Some(0), "left as found");
    }
}
