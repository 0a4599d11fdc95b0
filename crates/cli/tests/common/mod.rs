//! Running the real `gatehouse` binary against a test database.

#![allow(dead_code)]

pub mod auth;
pub mod backends;
pub mod deck;
pub mod metrics;
pub mod tls;
pub mod tutorial;

use std::path::{Path, PathBuf};

use gatehouse_runtime::master_key::MasterKey;
use gatehouse_store::StorageUrl;
use gatehouse_store::testing::{TempDir, TestDatabase};
use gatehouse_testkit::{GatehouseProcess, run_to_end};

/// Every listener on an ephemeral port, so parallel tests never collide on the quickstart's fixed ports.
pub fn ephemeral_listeners() -> [(&'static str, String); 7] {
    [
        "GATEHOUSE_PLATFORM__LISTEN",
        "GATEHOUSE_ISSUER__LISTEN",
        "GATEHOUSE_PROXY__LISTEN",
        "GATEHOUSE_PROXY__LISTEN_TLS",
        "GATEHOUSE_ADMIN__LISTEN",
        "GATEHOUSE_ECHO__LISTEN",
        "GATEHOUSE_STATUS__LISTEN",
    ]
    .map(|var| (var, "127.0.0.1:0".to_owned()))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gatehouse"))
}

/// The environment that points a `gatehouse` process at `db`, with every listener on port 0.
pub struct ProcessEnv {
    pub dir: TempDir,
    pub vars: Vec<(&'static str, String)>,
}

impl ProcessEnv {
    pub fn for_db(db: &TestDatabase) -> Self {
        let dir = TempDir::new("gatehouse-proc");
        let mut vars = vec![
            ("GATEHOUSE_DATA_DIR", dir.path().display().to_string()),
            ("GATEHOUSE_PLATFORM__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_ISSUER__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_PROXY__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_ECHO__LISTEN", "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_STATUS__LISTEN", "127.0.0.1:0".to_owned()),
        ];
        match &db.url {
            StorageUrl::Sqlite(path) => vars.push(("GATEHOUSE_STORAGE__URL", format!("sqlite://{}", path.display()))),
            StorageUrl::Postgres(s) => {
                vars.push(("GATEHOUSE_STORAGE__URL", s.url.clone()));
                vars.push(("GATEHOUSE_STORAGE__SCHEMA", s.schema.clone().unwrap_or_default()));
                vars.push(("GATEHOUSE_MASTER_KEY", MasterKey::generate().to_text().expose().to_owned()));
            }
        }
        Self { dir, vars }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.vars.push((key, value.into()));
        self
    }

    /// `gatehouse token create --name NAME` (setting the node's storage up first, as its first start would);
    /// returns the token.
    pub async fn create_token(&self, name: &str) -> String {
        set_up_node(&self.vars).await;
        let (code, stdout, stderr) =
            run_to_end(&bin(), &["token", "create", "--name", name], &self.vars, self.path()).await;
        assert_eq!(code, 0, "token create failed: {stderr}");
        stdout.lines().next().unwrap_or_default().to_owned()
    }

    /// `gatehouse serve --log-format json` plus `args`; returns the process and the platform URL.
    pub async fn serve(&self, args: &[&str]) -> (GatehouseProcess, String) {
        let mut all = vec!["serve", "--log-format", "json"];
        all.extend_from_slice(args);
        let mut p = GatehouseProcess::spawn(&bin(), &all, &self.vars, self.path());
        let addr = p.listener_address("platform").await;
        (p, format!("http://{addr}"))
    }
}

/// What a node's first start does to its storage (data dir, database, master key), for commands such as `gatehouse
/// token create` that refuse to do it; `vars` are the `GATEHOUSE_*` variables the node runs with.
pub async fn set_up_node(vars: &[(&str, String)]) {
    use gatehouse_runtime::config::{ConfigSources, load};
    let sources =
        ConfigSources { env: vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(), ..Default::default() };
    let config = load(&sources).expect("configuration").config;
    gatehouse::node::open_services(&config, std::sync::Arc::new(gatehouse_model::SystemClock))
        .await
        .expect("setting the node's storage up");
}

/// One request as [`recording_upstream`] saw it: its head as soon as it was parsed, its body once complete
/// (`None` while unread or when the body broke off).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// Names lower-cased by the parser, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

pub type SeenLog = std::sync::Arc<std::sync::Mutex<Vec<Seen>>>;

/// An HTTP/1.1 upstream on a loopback port that records every request head it parses (and the body, once read)
/// and answers 200 `ok`. Returns its URL and the record.
pub async fn recording_upstream() -> (String, SeenLog) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = SeenLog::default();
    let record = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let index = {
                            let mut seen = record.lock().unwrap();
                            seen.push(Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into()))
                                    .collect(),
                                body: None,
                            });
                            seen.len() - 1
                        };
                        if let Ok(collected) = body.collect().await {
                            record.lock().unwrap()[index].body = Some(collected.to_bytes().to_vec());
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .max_headers(200)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), log)
}

/// Sends raw bytes on a new connection and returns everything answered until the server closes it (or 30 s pass:
/// a backstop, since every caller sends what the server closes after, and a loaded machine may be slow to).
pub async fn raw_exchange(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1 response (0 when there is none).
pub fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Waits until the server closes `stream` (end of stream or a reset) and returns when that happened.
pub async fn closed_by_server(
    mut stream: tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<tokio::time::Instant> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await {
                Ok(0) | Err(_) => return tokio::time::Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}
