//! The `cluster` rate-limiting policy at the `Counters` level: two nodes' counters over one database (two store
//! handles on one PostgreSQL schema when `GATEHOUSE_TEST_DATABASE_URL` is set; on SQLite, whose file belongs to
//! one node, two nodes' counter layers over that node's store). With `sync_rate` 0 or -1 every increment is a
//! database upsert, so a limit of N admits exactly N; above 0, nodes batch and the limit holds within
//! N + nodes × one interval's requests.
//!
//! The batch syncs are driven by calling `sync` (the timer that calls it is tested with paused time in the
//! gateway crate): tokio's paused clock would also fire the database pool's timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse::counters::{StoreCounters, prune_once};
use gatehouse_gateway::counters::batched::BatchedCounters;
use gatehouse_gateway::counters::{CounterKey, CounterStores, Counters, Period, Policy};
use gatehouse_model::{Clock, ManualClock, SharedClock, Timestamp};
use gatehouse_store::Store;
use gatehouse_store::testing::{TestDatabase, report_postgres_suite};

const START: i64 = 1_700_000_040;

fn key(route: uuid::Uuid) -> CounterKey {
    CounterKey {
        route_id: Some(route),
        service_id: None,
        identifier: "10.0.0.1".to_owned(),
        period: Period::Minute,
        window_start: START,
        expires_at: START + 60,
    }
}

fn clock() -> (Arc<ManualClock>, SharedClock) {
    let manual = Arc::new(ManualClock::new(Timestamp::from_micros(START * 1_000_000)));
    (manual.clone(), SharedClock::new(manual as Arc<dyn Clock>))
}

/// The databases to run on: SQLite always, PostgreSQL when enabled. Each comes with the store handles of two
/// nodes.
async fn databases() -> Vec<(TestDatabase, [Arc<dyn Store>; 2])> {
    report_postgres_suite();
    let mut out = Vec::new();
    let sqlite = TestDatabase::sqlite();
    let store = sqlite.open().await;
    out.push((sqlite, [store.clone(), store]));
    if let Some(pg) = TestDatabase::postgres() {
        let first = pg.open().await;
        let second = pg.shared().expect("a PostgreSQL schema can be shared").open().await;
        out.push((pg, [first, second]));
    }
    out
}

/// A node's counter stores, as `node::start` builds them.
fn node(store: &Arc<dyn Store>, clock: &SharedClock) -> CounterStores {
    CounterStores::new(Some(Arc::new(StoreCounters::new(store.clone()))), clock.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_cluster_counters_admit_exactly_the_limit_across_two_nodes() {
    const LIMIT: u64 = 25;
    for (db, stores) in databases().await {
        let (_, clock) = clock();
        let route = uuid::Uuid::new_v4();
        // -1 (Kong's default) and 0 are both synchronous.
        let counters: Vec<Arc<dyn Counters>> = vec![
            node(&stores[0], &clock).get(&Policy::Cluster, -1.0).unwrap(),
            node(&stores[1], &clock).get(&Policy::Cluster, 0.0).unwrap(),
        ];
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let counters = counters[i % 2].clone();
                tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..20 {
                        // Counted first, admitted while the count is within the limit: the value each request
                        // gets back is its own, so exactly LIMIT requests are admitted.
                        if counters.increment(&[key(route)], 1).await.unwrap()[0] <= LIMIT {
                            admitted += 1;
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        assert_eq!(admitted, LIMIT, "{:?}", db.url);
        assert_eq!(counters[0].values(&[key(route)]).await.unwrap(), [160]);
        assert_eq!(counters[1].values(&[key(route)]).await.unwrap(), [160]);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_cluster_counters_hold_the_limit_within_nodes_times_one_batch() {
    const LIMIT: u64 = 30;
    const PER_INTERVAL: u64 = 4;
    for (db, stores) in databases().await {
        let (_, clock) = clock();
        let route = uuid::Uuid::new_v4();
        let runtime = tokio::runtime::Handle::current();
        // An interval the test never reaches: the syncs below are the test's.
        let nodes: Vec<_> = stores
            .iter()
            .map(|store| {
                let inner: Arc<dyn Counters> = Arc::new(StoreCounters::new(store.clone()));
                BatchedCounters::start(inner, Duration::from_secs(3600), clock.clone(), &runtime)
            })
            .collect();
        let mut admitted = 0;
        for _ in 0..20 {
            for node in &nodes {
                for _ in 0..PER_INTERVAL {
                    // Kong's order: read the usage, refuse at the limit, count what is admitted.
                    if node.values(&[key(route)]).await.unwrap()[0] < LIMIT {
                        node.increment(&[key(route)], 1).await.unwrap();
                        admitted += 1;
                    }
                }
            }
            for node in &nodes {
                node.sync().await;
            }
        }
        assert!(admitted >= LIMIT, "the limit is reached: {admitted} ({:?})", db.url);
        assert!(admitted <= LIMIT + 2 * PER_INTERVAL, "N + nodes × batch: {admitted} ({:?})", db.url);
        let store = StoreCounters::new(stores[0].clone());
        assert_eq!(
            store.values(&[key(route)]).await.unwrap(),
            [admitted],
            "every admitted request reached the database"
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn ended_windows_are_pruned() {
    for (db, stores) in databases().await {
        let (manual, _) = clock();
        let route = uuid::Uuid::new_v4();
        let counters = StoreCounters::new(stores[0].clone());
        let hour =
            CounterKey { period: Period::Hour, window_start: 1_699_999_200, expires_at: 1_700_002_800, ..key(route) };
        assert_eq!(counters.increment(&[key(route), hour.clone()], 2).await.unwrap(), [2, 2]);
        assert_eq!(prune_once(stores[0].as_ref(), manual.as_ref()).await.unwrap(), 0, "both windows are open");
        manual.advance_secs(60);
        assert_eq!(prune_once(stores[1].as_ref(), manual.as_ref()).await.unwrap(), 1, "the minute has ended");
        assert_eq!(counters.values(&[key(route), hour]).await.unwrap(), [0, 2]);
        db.cleanup().await;
    }
}
