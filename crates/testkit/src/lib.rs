//! Test support: whole nodes started in-process on port 0, a small HTTP client for the APIs, and helpers to run
//! the `gatehouse` binary as a child process (for what only a real process shows: signals, `kill -9`, logs).

mod process;

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use gatehouse::node::{self, NodeOptions, RunningNode};
use gatehouse_model::{Clock, ManualClock, SystemClock, Timestamp};
use gatehouse_runtime::auth::issue_pat;
use gatehouse_runtime::config::Config;
use gatehouse_runtime::master_key::MasterKey;
use gatehouse_store::StorageUrl;
use gatehouse_store::testing::{TempDir, TestDatabase};

pub use process::{GatehouseProcess, ProcessOutput, run_to_end};

/// A node running in this process, with its own database and a valid personal access token.
#[derive(Debug)]
pub struct TestNode {
    pub node: RunningNode,
    pub platform: String,
    pub token: String,
    pub db: TestDatabase,
    pub clock: Option<ManualClock>,
    _data_dir: TempDir,
    http: reqwest::Client,
}

/// How to start a test node.
#[derive(Debug, Default)]
pub struct TestNodeBuilder {
    postgres: bool,
    manual_clock: bool,
}

impl TestNodeBuilder {
    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    pub fn manual_clock(mut self) -> Self {
        self.manual_clock = true;
        self
    }

    /// `None` when PostgreSQL was asked for and the suite is disabled.
    pub async fn start(self) -> Option<TestNode> {
        let db = if self.postgres { TestDatabase::postgres()? } else { TestDatabase::sqlite() };
        Some(TestNode::start_with(db, self.manual_clock).await)
    }
}

/// A configuration for tests: every listener on port 0, storage as given, an explicit master key.
pub fn test_config(storage: &StorageUrl, data_dir: &std::path::Path) -> Config {
    let mut config = Config { data_dir: data_dir.to_owned(), ..Config::default() };
    let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
    for listener in [&mut config.proxy, &mut config.admin, &mut config.platform, &mut config.echo] {
        listener.listen = any_port;
    }
    config.issuer.listen = any_port;
    match storage {
        StorageUrl::Sqlite(path) => config.storage.url = Some(format!("sqlite://{}", path.display())),
        StorageUrl::Postgres(settings) => {
            config.storage.url = Some(settings.url.clone());
            config.storage.schema = settings.schema.clone();
            config.storage.max_connections = Some(settings.max_connections);
        }
    }
    config.master_key = Some(MasterKey::generate().to_text());
    config
}

impl TestNode {
    pub fn builder() -> TestNodeBuilder {
        TestNodeBuilder::default()
    }

    /// A node on a fresh SQLite database.
    pub async fn start() -> TestNode {
        Self::start_with(TestDatabase::sqlite(), false).await
    }

    async fn start_with(db: TestDatabase, manual_clock: bool) -> TestNode {
        let data_dir = TempDir::new("gatehouse-node");
        let config = test_config(&db.url, data_dir.path());
        let (clock, dyn_clock): (Option<ManualClock>, Arc<dyn Clock>) = if manual_clock {
            let c = ManualClock::new(Timestamp::from_secs(1_800_000_000));
            (Some(c.clone()), Arc::new(c))
        } else {
            (None, Arc::new(SystemClock))
        };
        let node =
            node::start(&config, NodeOptions { clock: dyn_clock }).await.unwrap_or_else(|e| panic!("start node: {e}"));
        let token = issue_pat(&node.services, "test", None, false)
            .await
            .unwrap_or_else(|e| panic!("issue token: {e}"))
            .token
            .expose()
            .to_owned();
        TestNode {
            platform: node.platform_url(),
            node,
            token,
            db,
            clock,
            _data_dir: data_dir,
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request to the platform API with the node's token; returns the status and the JSON body (`Null`
    /// when empty or not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(&self.token), method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.platform));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("request to {path}: {e}"));
        decode(res).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// A raw request builder against the platform listener (for malformed requests).
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.platform))
    }

    pub async fn stop(self) {
        self.node.shutdown().await;
        self.db.cleanup().await;
    }
}

pub async fn decode(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let bytes = res.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A problem+json body's shape: status, title, `kong:trace:` instance, detail.
pub fn assert_problem(body: &Value, status: u16) {
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["detail"].as_str().is_some(), "{body}");
    assert!(body["instance"].as_str().is_some_and(|i| i.starts_with("kong:trace:")), "{body}");
    assert_eq!(body["type"], format!("https://httpstatuses.com/{status}"), "{body}");
}
