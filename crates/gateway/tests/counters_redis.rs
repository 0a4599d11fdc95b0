//! The `redis` policy's counters against a real Redis server (`GATEHOUSE_TEST_REDIS_URL`, e.g.
//! `redis://127.0.0.1:6379`; the suite prints `Redis suite: SKIPPED` without it), and against servers that are
//! not there or never answer, which need no Redis. Every test counts under its own random route id, so tests
//! running in parallel on one server never share a key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_gateway::counters::redis::RedisCounters;
use gatehouse_gateway::counters::{CounterKey, Counters, Period, RedisSettings};
use gatehouse_model::secret::SecretString;
use gatehouse_model::{Clock, SystemClock};

const REDIS_URL_VAR: &str = "GATEHOUSE_TEST_REDIS_URL";

/// The test server's host and port, or `None` (and a line in the test output) when the suite is off.
fn redis_server() -> Option<(String, u16)> {
    let Some(url) = std::env::var(REDIS_URL_VAR).ok().filter(|v| !v.is_empty()) else {
        let _ = std::io::stderr().write_all(format!("Redis suite: SKIPPED ({REDIS_URL_VAR} is not set)\n").as_bytes());
        return None;
    };
    let url = url::Url::parse(&url).unwrap_or_else(|e| panic!("{REDIS_URL_VAR}: {e}"));
    Some((url.host_str().expect("a host").to_owned(), url.port().unwrap_or(6379)))
}

fn settings(host: &str, port: u16) -> RedisSettings {
    RedisSettings {
        host: host.to_owned(),
        port,
        username: None,
        password: None,
        database: 0,
        timeout_ms: 2000,
        ssl: false,
        ssl_verify: false,
        server_name: None,
    }
}

fn node(settings: RedisSettings) -> Arc<RedisCounters> {
    Arc::new(RedisCounters::new(settings, None).expect("valid settings"))
}

/// A minute window of the wall clock, read once per test process, so the keys of a test never straddle two windows
/// (each key lives for a minute from its last increment, and then Redis drops it).
fn key(route: uuid::Uuid, identifier: &str) -> CounterKey {
    static WINDOW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = *WINDOW.get_or_init(|| {
        let now = SystemClock.now().secs();
        now - now % 60
    });
    CounterKey {
        route_id: Some(route),
        service_id: None,
        identifier: identifier.to_owned(),
        period: Period::Minute,
        window_start: start,
        expires_at: start + 120,
    }
}

/// A plain connection, to look at what the counters wrote.
async fn raw(host: &str, port: u16, database: i64) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{host}:{port}/{database}")).expect("client");
    client.get_multiplexed_async_connection().await.expect("connect to the test Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_counting_at_once_see_every_value_exactly_once() {
    let Some((host, port)) = redis_server() else { return };
    let route = uuid::Uuid::new_v4();
    let nodes = [node(settings(&host, port)), node(settings(&host, port))];
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let node = nodes[i % 2].clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..100 {
                    let values = node.increment(&[key(route, "a"), key(route, "b")], 1).await.expect("increment");
                    assert_eq!(values[0], values[1], "both keys move in one atomic step");
                    seen.push(values[0]);
                }
                seen
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.expect("task"));
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=800).collect::<Vec<u64>>(), "no value seen twice, none skipped");
    for node in &nodes {
        assert_eq!(node.values(&[key(route, "a"), key(route, "never")]).await.unwrap(), [800, 0]);
    }
    assert_eq!(nodes[0].increment(&[key(route, "a")], 5).await.unwrap(), [805], "increments by more than 1");

    // Kong's key name, and the key lives for its window's length (Kong's `EXPIRE`), whatever Redis's clock says.
    let name = RedisCounters::key_name(&key(route, "a"));
    assert!(name.starts_with(&format!("ratelimit:{route}:00000000-0000-0000-0000-000000000000:a:")));
    let mut conn = raw(&host, port, 0).await;
    let ttl: i64 = redis::cmd("TTL").arg(&name).query_async(&mut conn).await.unwrap();
    let window = key(route, "a").expires_at - key(route, "a").window_start;
    assert!((window - 5..=window).contains(&ttl), "ttl {ttl} of a {window} s window");
    let stored: u64 = redis::cmd("GET").arg(&name).query_async(&mut conn).await.unwrap();
    assert_eq!(stored, 805);
}

#[tokio::test]
async fn counters_live_in_the_configured_database() {
    let Some((host, port)) = redis_server() else { return };
    let route = uuid::Uuid::new_v4();
    let counters = node(RedisSettings { database: 3, ..settings(&host, port) });
    assert_eq!(counters.increment(&[key(route, "db")], 2).await.unwrap(), [2]);
    let name = RedisCounters::key_name(&key(route, "db"));
    let in_3: Option<u64> = redis::cmd("GET").arg(&name).query_async(&mut raw(&host, port, 3).await).await.unwrap();
    let in_0: Option<u64> = redis::cmd("GET").arg(&name).query_async(&mut raw(&host, port, 0).await).await.unwrap();
    assert_eq!((in_3, in_0), (Some(2), None));
}

#[tokio::test]
async fn a_user_and_password_authenticate_and_a_wrong_password_is_never_echoed() {
    let Some((host, port)) = redis_server() else { return };
    let route = uuid::Uuid::new_v4();
    let user = format!("gatehouse-test-{}", route.simple());
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let mut admin = raw(&host, port, 0).await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", &user, "on", &format!(">{password}"), "~ratelimit:*", "+@all"])
        .query_async(&mut admin)
        .await
        .expect("create a Redis user");

    let with = |password: &str| RedisSettings {
        username: Some(user.clone()),
        password: Some(SecretString::from(password)),
        ..settings(&host, port)
    };
    let good = node(with(&password));
    assert_eq!(good.increment(&[key(route, "auth")], 1).await.unwrap(), [1]);

    let wrong = format!("wrong-{password}");
    let error = node(with(&wrong)).increment(&[key(route, "auth")], 1).await.expect_err("bad password");
    assert!(!error.0.contains(&wrong), "the password stays out of the error: {}", error.0);
    assert!(error.0.starts_with(&format!("redis at {host}:{port}: ")), "{}", error.0);

    let _: () = redis::cmd("ACL").arg(&["DELUSER", &user]).query_async(&mut admin).await.unwrap();
}

/// How long a failing call took, checked against the configured timeout. Measured, not waited for: the call
/// itself is what takes the time.
async fn fails_within(counters: &RedisCounters, timeout: Duration) -> String {
    let started = tokio::time::Instant::now();
    let error = counters.increment(&[key(uuid::Uuid::new_v4(), "x")], 1).await.expect_err("no Redis there");
    let took = started.elapsed();
    // A loaded machine may run the timer late; half a second of slack still proves the call was bounded by the
    // timeout (unbounded, it would hang on a silent server).
    assert!(took < timeout + Duration::from_millis(500), "answered in {took:?}, timeout {timeout:?}: {}", error.0);
    error.0
}

#[tokio::test]
async fn a_closed_port_fails_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let counters = node(RedisSettings { timeout_ms: 300, ..settings("127.0.0.1", port) });
    for _ in 0..2 {
        let error = fails_within(&counters, Duration::from_millis(300)).await;
        assert!(error.starts_with(&format!("redis at 127.0.0.1:{port}: ")), "{error}");
    }
    assert!(counters.values(&[key(uuid::Uuid::new_v4(), "x")]).await.is_err());
}

#[tokio::test]
async fn a_server_that_never_answers_fails_within_the_timeout() {
    // Accepts connections and reads what it is sent, but never replies: a hung Redis.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let counters = node(RedisSettings { timeout_ms: 250, ..settings("127.0.0.1", port) });
    for _ in 0..2 {
        let error = fails_within(&counters, Duration::from_millis(250)).await;
        assert!(error.contains("250 ms") || error.contains("timed out"), "{error}");
    }
    silent.abort();
}

/// A loopback relay to the test Redis that can be cut (open connections closed, new ones closed on accept) and
/// restored, standing in for a Redis that goes away and comes back.
struct Relay {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(host: &str, port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::broadcast::channel(1);
        let target = format!("{host}:{port}");
        let (is_up, cuts) = (up.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_up.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let mut cut = cuts.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Self { port: relay_port, up, cut, task }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            let _ = self.cut.send(());
        }
    }
}

#[tokio::test]
async fn a_redis_that_goes_away_fails_promptly_and_is_used_again_when_it_is_back() {
    let Some((host, port)) = redis_server() else { return };
    let relay = Relay::start(&host, port).await;
    let route = uuid::Uuid::new_v4();
    let counters = node(RedisSettings { timeout_ms: 500, ..settings("127.0.0.1", relay.port) });
    assert_eq!(counters.increment(&[key(route, "r")], 1).await.unwrap(), [1]);

    relay.set_up(false);
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let result = counters.increment(&[key(route, "r")], 1).await;
        assert!(result.is_err(), "counted through a cut connection: {result:?}");
        assert!(started.elapsed() < Duration::from_millis(1000), "took {:?} (timeout 500 ms)", started.elapsed());
    }

    relay.set_up(true);
    // The first call after the cut may still meet the closed connection; the connection is made again from then on.
    let mut answered = None;
    for _ in 0..5 {
        if let Ok(values) = counters.increment(&[key(route, "r")], 1).await {
            answered = Some(values[0]);
            break;
        }
    }
    assert_eq!(answered, Some(2), "counted again once Redis is back, and the failed calls counted nothing");
    relay.task.abort();
}
