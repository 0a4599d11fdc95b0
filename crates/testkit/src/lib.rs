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

pub use process::{GatehouseProcess, ProcessOutput, run_to_end, run_with_input};

/// A node running in this process, with its own database and a valid personal access token.
#[derive(Debug)]
pub struct TestNode {
    pub node: RunningNode,
    pub platform: String,
    pub token: String,
    pub db: TestDatabase,
    pub clock: Option<ManualClock>,
    /// The master key the node runs with (a second node on the same database needs the same).
    pub master_key: gatehouse_model::SecretString,
    _data_dir: TempDir,
    http: reqwest::Client,
}

/// A change to the configuration before a node starts.
pub type Configure = Box<dyn FnOnce(&mut Config) + Send>;

/// How to start a test node.
#[derive(Default)]
pub struct TestNodeBuilder {
    postgres: bool,
    manual_clock: bool,
    configure: Option<Configure>,
    database: Option<TestDatabase>,
}

impl std::fmt::Debug for TestNodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNodeBuilder").field("postgres", &self.postgres).finish_non_exhaustive()
    }
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

    /// Adjusts the configuration before the node starts.
    pub fn configure(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure = Some(Box::new(f));
        self
    }

    /// Runs on an existing database (a second node of the same PostgreSQL, for instance).
    pub fn database(mut self, db: TestDatabase) -> Self {
        self.database = Some(db);
        self
    }

    /// `None` when PostgreSQL was asked for and the suite is disabled.
    pub async fn start(self) -> Option<TestNode> {
        let db = match self.database {
            Some(db) => db,
            None if self.postgres => TestDatabase::postgres()?,
            None => TestDatabase::sqlite(),
        };
        Some(TestNode::start_with(db, self.manual_clock, self.configure).await)
    }
}

/// A configuration for tests: every listener on port 0, storage as given, an explicit master key.
pub fn test_config(storage: &StorageUrl, data_dir: &std::path::Path) -> Config {
    let mut config = Config { data_dir: data_dir.to_owned(), ..Config::default() };
    let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
    for listener in [&mut config.proxy, &mut config.admin, &mut config.platform, &mut config.echo, &mut config.status] {
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
        Self::start_with(TestDatabase::sqlite(), false, None).await
    }

    async fn start_with(db: TestDatabase, manual_clock: bool, configure: Option<Configure>) -> TestNode {
        let data_dir = TempDir::new("gatehouse-node");
        let mut config = test_config(&db.url, data_dir.path());
        if let Some(f) = configure {
            f(&mut config);
        }
        let master_key = config.master_key.clone().unwrap_or_else(|| unreachable!("test configs set a key"));
        let (clock, dyn_clock): (Option<ManualClock>, Arc<dyn Clock>) = if manual_clock {
            let c = ManualClock::new(Timestamp::from_secs(1_800_000_000));
            (Some(c.clone()), Arc::new(c))
        } else {
            (None, Arc::new(SystemClock))
        };
        let node = node::start(&config, NodeOptions { clock: dyn_clock, echo: true, version: None })
            .await
            .unwrap_or_else(|e| panic!("start node: {e}"));
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
            master_key,
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

    /// A request to the Kong Admin API of the node (no authentication).
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.node.admin_url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        decode(req.send().await.unwrap_or_else(|e| panic!("admin request to {path}: {e}"))).await
    }

    /// An Admin API request that must succeed; returns its body.
    pub async fn admin_ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, v) = self.admin(method, path, Some(body)).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// The tutorial's `example-service` (the echo upstream's `/anything`) and `example-route` (`/anything`), once
    /// the proxy runs them.
    pub async fn example_service(&self) {
        let url = format!("{}/anything", self.echo_url());
        self.admin_ok(Method::POST, "/services", serde_json::json!({"name": "example-service", "url": url})).await;
        let route = serde_json::json!({"name": "example-route", "paths": ["/anything"]});
        self.admin_ok(Method::POST, "/services/example-service/routes", route).await;
        self.wait_config().await;
    }

    pub fn proxy_url(&self) -> String {
        self.node.proxy_url()
    }

    pub fn echo_url(&self) -> String {
        self.node.echo_url().unwrap_or_default()
    }

    /// Waits until the proxy runs a configuration that includes every change made so far (the publisher rebuilds
    /// asynchronously after each write); returns how long that took. It gives up after 30 s: the wait ends as
    /// soon as the change is in, so the bound only has to be far beyond what a loaded machine can take.
    pub async fn wait_config(&self) -> std::time::Duration {
        let started = tokio::time::Instant::now();
        let target = self.node.config_changes.load(std::sync::atomic::Ordering::SeqCst);
        while self.node.proxy.version() < target {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "the proxy did not pick up the change");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        started.elapsed()
    }

    /// A raw request builder against the platform listener (for malformed requests).
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.platform))
    }

    pub async fn stop(self) {
        self.node.shutdown().await;
        self.db.cleanup().await;
    }

    /// Stops the node but keeps its database (to start another node on it).
    pub async fn stop_keeping_database(self) -> TestDatabase {
        self.node.shutdown().await;
        self.db
    }

    /// The tutorial's identity setup: auth server (with `algorithm`), scope `my-scope`, claim `test-claim`
    /// limited to that scope, and a client allowed the scope.
    pub async fn tutorial_setup(&self, algorithm: &str) -> Tutorial {
        let (status, server) = self
            .post(
                "/v1/auth-servers",
                serde_json::json!({"name": format!("Appointments Dev {algorithm}"), "audience": "http://myhttpbin.dev",
                    "signing_algorithm": algorithm}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{server}");
        let server_id = server["id"].as_str().unwrap_or_default().to_owned();
        let (_, scope) =
            self.post(&format!("/v1/auth-servers/{server_id}/scopes"), serde_json::json!({"name": "my-scope"})).await;
        let scope_id = scope["id"].as_str().unwrap_or_default().to_owned();
        let (status, claim) = self
            .post(
                &format!("/v1/auth-servers/{server_id}/claims"),
                serde_json::json!({"name": "test-claim", "value": "test", "include_in_token": true,
                    "include_in_all_scopes": false, "include_in_scopes": [scope_id], "enabled": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{claim}");
        let (status, client) = self
            .post(
                &format!("/v1/auth-servers/{server_id}/clients"),
                serde_json::json!({"name": "Client", "grant_types": ["client_credentials"], "allow_all_scopes": false,
                    "allow_scopes": [scope_id], "access_token_duration": 3600, "id_token_duration": 3600,
                    "response_types": ["id_token", "token"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{client}");
        Tutorial {
            issuer: server["issuer"].as_str().unwrap_or_default().to_owned(),
            server_id,
            scope_id,
            client_id: client["id"].as_str().unwrap_or_default().to_owned(),
            client_secret: client["client_secret"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// A form POST to an issuer endpoint.
    pub async fn form(&self, url: &str, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut req = self.http.post(url).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        decode(req.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"))).await
    }

    /// `client_credentials` with the secret in the body, as the tutorial does.
    pub async fn token(&self, issuer: &str, client_id: &str, secret: &str, scope: Option<&str>) -> (StatusCode, Value) {
        let mut form = vec![("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.form(&format!("{issuer}/oauth/token"), None, &form).await
    }

    /// Introspection with Basic credentials, as the oauth2-introspection plugin sends it.
    pub async fn introspect(&self, issuer: &str, client_id: &str, secret: &str, token: &str) -> Value {
        let (status, body) =
            self.form(&format!("{issuer}/introspect"), Some((client_id, secret)), &[("token", token)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// Identifiers and credentials made by [`TestNode::tutorial_setup`].
#[derive(Debug, Clone)]
pub struct Tutorial {
    pub server_id: String,
    pub issuer: String,
    pub scope_id: String,
    pub client_id: String,
    pub client_secret: String,
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
