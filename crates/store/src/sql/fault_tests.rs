//! Transactions that end badly must leave the pool usable: a commit refused by the database, a transaction the
//! database ended on its own, a connection killed mid-transaction. Both backends.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::StorageUrl;
use crate::bus::LocalBus;
use crate::error::StoreError;
use crate::health::WriteStatus;
use crate::sql::postgres::PgDb;
use crate::sql::sqlite::SqliteDb;
use crate::sql::{Db, params};
use crate::testing::TestDatabase;

async fn open(test: &TestDatabase) -> Arc<dyn Db> {
    let db: Arc<dyn Db> = match &test.url {
        StorageUrl::Sqlite(path) => {
            crate::files::prepare_sqlite(path).unwrap();
            Arc::new(SqliteDb::open(path, LocalBus::new()).await.unwrap())
        }
        StorageUrl::Postgres(settings) => Arc::new(PgDb::connect(settings, LocalBus::new()).await.unwrap()),
    };
    db.health().probe_with(Arc::downgrade(&db));
    db
}

/// Sequential writes that must all work. The pool hands idle connections out in turn, so ten of them reach every
/// connection a test could have left behind.
async fn writes_work(db: &dyn Db, round: &str) {
    for i in 0..10 {
        let mut tx = db.writer().await.unwrap_or_else(|e| panic!("{round}: begin {i}: {e}"));
        tx.execute(
            "INSERT INTO gatehouse_meta (key, value) VALUES (?, 'v') ON CONFLICT (key) DO NOTHING",
            params![format!("{round}-{i}")],
        )
        .await
        .unwrap_or_else(|e| panic!("{round}: insert {i}: {e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{round}: commit {i}: {e}"));
    }
}

async fn a_transaction_the_database_ended_leaves_no_poisoned_connection(test: TestDatabase) {
    let db = open(&test).await;
    writes_work(db.as_ref(), "before").await;
    // What SQLite does by itself when a COMMIT hits a full disk: the transaction is gone, but sqlx still counts
    // it, its COMMIT and the ROLLBACK it sends on drop both fail, and the connection goes back to the pool.
    let mut tx = db.writer().await.unwrap();
    tx.execute("ROLLBACK", vec![]).await.unwrap();
    let _ = tx.commit().await;
    writes_work(db.as_ref(), "after").await;
    assert_eq!(db.health().status(), WriteStatus::Ok, "a statement's failure is not a storage fault");
    test.cleanup().await;
}

#[tokio::test]
async fn sqlite_a_transaction_the_database_ended_leaves_no_poisoned_connection() {
    a_transaction_the_database_ended_leaves_no_poisoned_connection(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn postgres_a_transaction_the_database_ended_leaves_no_poisoned_connection() {
    if let Some(test) = TestDatabase::postgres() {
        a_transaction_the_database_ended_leaves_no_poisoned_connection(test).await;
    }
}

/// A commit the database refuses (a deferred foreign key checked at COMMIT) fails that write only.
async fn a_refused_commit_fails_only_its_write(test: TestDatabase) {
    let db = open(&test).await;
    let mut tx = db.writer().await.unwrap();
    tx.execute("CREATE TABLE fk_parent (id INTEGER PRIMARY KEY)", vec![]).await.unwrap();
    tx.execute(
        "CREATE TABLE fk_child (parent INTEGER REFERENCES fk_parent (id) DEFERRABLE INITIALLY DEFERRED)",
        vec![],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    for _ in 0..3 {
        let mut tx = db.writer().await.unwrap();
        tx.execute("INSERT INTO fk_child (parent) VALUES (1)", vec![]).await.unwrap();
        let err = tx.commit().await.unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        writes_work(db.as_ref(), "after").await;
    }
    let rows = db.reader().await.unwrap().count("SELECT COUNT(*) AS n FROM fk_child", vec![]).await.unwrap();
    assert_eq!(rows, 0, "nothing of the refused transactions stayed");
    assert_eq!(db.health().status(), WriteStatus::Ok);
    test.cleanup().await;
}

#[tokio::test]
async fn sqlite_a_refused_commit_fails_only_its_write() {
    a_refused_commit_fails_only_its_write(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn postgres_a_refused_commit_fails_only_its_write() {
    if let Some(test) = TestDatabase::postgres() {
        a_refused_commit_fails_only_its_write(test).await;
    }
}

/// PostgreSQL: the server ends the connection a transaction is on (`pg_terminate_backend`, a restart, a
/// failover), before a statement or before the COMMIT. The write answers unavailable, readiness says so, and the
/// next writes get fresh connections.
#[tokio::test]
async fn postgres_a_connection_killed_mid_transaction_is_replaced() {
    let Some(test) = TestDatabase::postgres() else { return };
    let db = open(&test).await;
    let admin = sqlx::PgPool::connect(&crate::testing::postgres_url().unwrap()).await.unwrap();
    for kill_before_commit in [false, true] {
        let mut tx = db.writer().await.unwrap();
        let pid = tx.fetch_one("SELECT pg_backend_pid()::bigint AS pid", vec![]).await.unwrap().unwrap();
        let pid = pid.int("pid").unwrap();
        let insert = "INSERT INTO gatehouse_meta (key, value) VALUES ('killed', 'v')";
        if kill_before_commit {
            tx.execute(insert, vec![]).await.unwrap();
        }
        sqlx::query("SELECT pg_terminate_backend($1::int)").bind(pid).execute(&admin).await.unwrap();
        let err = if kill_before_commit {
            tx.commit().await.unwrap_err()
        } else {
            let err = tx.execute(insert, vec![]).await.unwrap_err();
            drop(tx);
            err
        };
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert_eq!(db.health().status(), WriteStatus::Failing { reason: "the database is unreachable" });
        writes_work(db.as_ref(), &format!("after-{kill_before_commit}")).await;
        assert_eq!(db.health().status(), WriteStatus::Ok);
        let mut reader = db.reader().await.unwrap();
        let kept = reader.fetch_one("SELECT value FROM gatehouse_meta WHERE key = 'killed'", vec![]).await.unwrap();
        assert!(kept.is_none(), "the killed transaction committed nothing");
    }
    admin.close().await;
    test.cleanup().await;
}
