//! The `redis` policy: counters in a Redis server, so every node pointed at it enforces one limit.
//!
//! One [`RedisCounters`] per distinct `redis` block on a node (see `CounterStores::get`) holds one multiplexed,
//! self-reconnecting connection: concurrent requests from every worker are pipelined on it without a lock. It is
//! opened on first use (building a configuration never waits on the network) and on the node's main runtime when
//! there is one, so its socket is not driven by a proxy worker busy with requests.
//!
//! An increment is one round trip: a `MULTI`/`EXEC` block of `INCRBY` + `EXPIRE` per key. Keys are named as
//! Kong names them, so a Kong node and a Gatehouse node on one Redis would count alike. Every call, including
//! connecting, AUTH and SELECT, is bounded by the block's `timeout`: a Redis that is down or does not answer yields
//! a [`CounterError`] within it, and the plugin decides (by `fault_tolerant`) whether the request passes.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{CounterError, CounterKey, Counters, RedisSettings};

/// Kong's placeholder for a counter of an instance without a route or service.
const EMPTY_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// What `timeout = 0` stands for: nginx's default `lua_socket_*_timeout`.
const DEFAULT_TIMEOUT_MS: u64 = 60_000;

pub struct RedisCounters {
    settings: RedisSettings,
    timeout: Duration,
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    /// Where the connection's tasks run (the node's main runtime), when one was found at build time.
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters")
            .field("host", &self.settings.host)
            .field("port", &self.settings.port)
            .field("database", &self.settings.database)
            .finish_non_exhaustive()
    }
}

impl RedisCounters {
    /// Refuses what this build cannot honour: TLS (see `docs/compatibility.md`).
    pub fn new(settings: RedisSettings, runtime: Option<tokio::runtime::Handle>) -> Result<Self, String> {
        if settings.ssl {
            return Err("redis.ssl: TLS connections to Redis are not supported by this build".to_owned());
        }
        let mut redis = redis::RedisConnectionInfo::default().set_db(settings.database).set_skip_set_lib_name();
        if let Some(password) = settings.password.as_ref().filter(|p| !p.is_empty()) {
            redis = redis.set_password(password.expose());
            // Kong sends a username only together with a password (`AUTH user pass`), as Redis requires.
            if let Some(username) = settings.username.as_ref().filter(|u| !u.is_empty()) {
                redis = redis.set_username(username);
            }
        }
        let info = redis::IntoConnectionInfo::into_connection_info(redis::ConnectionAddr::Tcp(
            settings.host.clone(),
            settings.port,
        ))
        .map_err(|e| format!("redis: {e}"))?
        .set_redis_settings(redis);
        let client = redis::Client::open(info).map_err(|e| format!("redis: {e}"))?;
        // Kong accepts 0, which leaves OpenResty's sockets on their configured defaults (60 s out of the box); a
        // zero deadline here would fail every call instead.
        let timeout =
            Duration::from_millis(if settings.timeout_ms == 0 { DEFAULT_TIMEOUT_MS } else { settings.timeout_ms });
        Ok(Self { settings, timeout, client, connection: OnceCell::new(), runtime })
    }

    /// Kong's key: `ratelimit:<route_id>:<service_id>:<identifier>:<period_date>:<period>`, the window's start in
    /// milliseconds, the null UUID for a missing route or service.
    pub fn key_name(key: &CounterKey) -> String {
        let mut name = String::with_capacity(96 + key.identifier.len());
        let id = |id: Option<uuid::Uuid>| id.map_or_else(|| EMPTY_UUID.to_owned(), |u| u.to_string());
        let _ = write!(
            name,
            "ratelimit:{}:{}:{}:{}:{}",
            id(key.route_id),
            id(key.service_id),
            key.identifier,
            key.window_start.saturating_mul(1000),
            key.period.name()
        );
        name
    }

    async fn connection(&self) -> Result<ConnectionManager, CounterError> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    // Reconnecting is retried by the next request, not by a backoff loop nobody waits for.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(self.timeout);
                let connect = ConnectionManager::new_with_config(self.client.clone(), config);
                match &self.runtime {
                    Some(runtime) => runtime
                        .spawn(connect)
                        .await
                        .map_err(|_| self.error("the connection task ended"))?
                        .map_err(|e| self.redis_error(&e)),
                    None => connect.await.map_err(|e| self.redis_error(&e)),
                }
            })
            .await?;
        Ok(manager.clone())
    }

    /// Runs one call against Redis, connection included, within the block's `timeout`.
    async fn bounded<T>(
        &self,
        call: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, CounterError> {
        let attempt = async {
            let mut connection = self.connection().await?;
            call(&mut connection).await.map_err(|e| self.redis_error(&e))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(self.error(&format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    fn redis_error(&self, error: &redis::RedisError) -> CounterError {
        self.error(&error.to_string())
    }

    /// The error's text names the server, never the password (some servers echo what they were sent).
    fn error(&self, detail: &str) -> CounterError {
        let mut text = format!("redis at {}:{}: {detail}", self.settings.host, self.settings.port);
        if let Some(password) = self.settings.password.as_ref().filter(|p| !p.is_empty())
            && text.contains(password.expose())
        {
            text = text.replace(password.expose(), "[redacted]");
        }
        CounterError(text)
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn increment(&self, keys: &[CounterKey], by: u64) -> Result<Vec<u64>, CounterError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in keys {
            let name = Self::key_name(key);
            pipe.cmd("INCRBY").arg(&name).arg(by);
            // A time to live of the window's length, as Kong sets it, rather than `EXPIREAT` its end: the end is
            // this node's clock, and a node a second behind Redis would have every `second` key deleted as soon
            // as it is written, so the limit would never bind.
            let ttl = (key.expires_at - key.window_start).max(1);
            pipe.cmd("EXPIRE").arg(&name).arg(ttl).ignore();
        }
        let values: Vec<u64> = self.bounded(async |c| pipe.query_async(c).await).await?;
        if values.len() != keys.len() {
            return Err(self.error("the increment answered the wrong number of values"));
        }
        Ok(values)
    }

    async fn values(&self, keys: &[CounterKey]) -> Result<Vec<u64>, CounterError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(Self::key_name(key));
        }
        let values: Vec<Option<u64>> = self.bounded(async |c| cmd.query_async(c).await).await?;
        if values.len() != keys.len() {
            return Err(self.error("MGET answered the wrong number of values"));
        }
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }
}

/// `upstream-oauth`'s `redis` cache strategy: tokens kept under their key until they lapse, on the same connection.
#[async_trait]
impl crate::plugins::token_client::SharedStore for RedisCounters {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        let cmd = redis::cmd("GET").arg(key).clone();
        self.bounded(async |c| cmd.query_async(c).await).await.map_err(|e| e.0)
    }

    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), String> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cmd = redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis).clone();
        self.bounded(async |c| cmd.query_async::<()>(c).await).await.map_err(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Period;

    #[test]
    fn keys_are_named_like_kongs() {
        let route: uuid::Uuid = "6e6f7cdd-53b9-4d6c-9d27-0a4a4f43a2b1".parse().unwrap_or_default();
        let key = CounterKey {
            route_id: Some(route),
            service_id: None,
            identifier: "127.0.0.1".to_owned(),
            period: Period::Minute,
            window_start: 1_700_000_040,
            expires_at: 1_700_000_100,
        };
        assert_eq!(
            RedisCounters::key_name(&key),
            "ratelimit:6e6f7cdd-53b9-4d6c-9d27-0a4a4f43a2b1:00000000-0000-0000-0000-000000000000:127.0.0.1:\
             1700000040000:minute"
        );
    }

    fn settings() -> RedisSettings {
        RedisSettings {
            host: "127.0.0.1".to_owned(),
            port: 6379,
            username: None,
            password: None,
            database: 0,
            timeout_ms: 2000,
            ssl: false,
            ssl_verify: false,
            server_name: None,
        }
    }

    #[test]
    fn tls_is_refused_at_build_and_a_zero_timeout_is_nginxs_default() {
        let tls = RedisCounters::new(RedisSettings { ssl: true, ..settings() }, None);
        assert!(tls.is_err_and(|e| e.starts_with("redis.ssl:")));
        let zero = RedisCounters::new(RedisSettings { timeout_ms: 0, ..settings() }, None).unwrap();
        assert_eq!(zero.timeout, Duration::from_secs(60));
        assert_eq!(RedisCounters::new(settings(), None).unwrap().timeout, Duration::from_secs(2));
    }
}
