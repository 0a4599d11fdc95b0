//! TLS on the listeners (issue 19, item 1): the proxy's second listener (`proxy.listen_tls`) and the platform
//! listener with certificate files, checked with real TLS clients (reqwest, tokio-rustls, curl) against
//! certificates made at test time. HTTP/1.1 and HTTP/2 by ALPN, `X-Forwarded-Proto`/`Port`, routes' `protocols`
//! over each listener, TLS 1.1 refused, an unfinished handshake closed by `client_header_timeout`, and a renewed
//! certificate file served to new connections while an open one keeps working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use common::closed_by_server;
use common::tls::{Leaf, TestCa, connect, get_on, presented};
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::TestNode;

struct TlsNode {
    node: TestNode,
    ca: TestCa,
    dir: TempDir,
    tls: SocketAddr,
    files: (std::path::PathBuf, std::path::PathBuf),
}

/// A node whose proxy also listens with TLS, serving a `localhost` certificate from files; `header_timeout` in
/// seconds for the proxy.
async fn tls_node(header_timeout: Option<f64>) -> TlsNode {
    let ca = TestCa::new();
    let dir = TempDir::new("gatehouse-tls");
    let files = ca.leaf(&["localhost"]).write(dir.path(), "proxy");
    // Trailing newlines (ignored by PEM readers) leave room for a renewed PEM of another length to keep the
    // file's length (the SIGHUP test).
    for path in [&files.0, &files.1] {
        let text = std::fs::read_to_string(path).unwrap() + "\n\n\n\n\n\n\n\n";
        std::fs::write(path, text).unwrap();
    }
    let (cert, key) = files.clone();
    let node = TestNode::builder()
        .configure(move |c| {
            c.proxy.listen_tls = Some("127.0.0.1:0".parse().unwrap());
            c.proxy.tls_cert = Some(cert);
            c.proxy.tls_key = Some(key);
            c.proxy.client_header_timeout = header_timeout;
        })
        .start()
        .await
        .unwrap();
    let tls = node.node.proxy_tls_addr.expect("the TLS listener is up");
    TlsNode { node, ca, dir, tls, files }
}

impl TlsNode {
    fn client(&self) -> reqwest::Client {
        self.ca.reqwest().resolve("localhost", self.tls).build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.tls.port())
    }
}

#[tokio::test]
async fn the_proxy_serves_tls_over_http1_and_http2_and_says_so_upstream() {
    let t = tls_node(None).await;
    t.node.example_service().await;

    let res = t.client().get(t.url("/anything")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "ALPN picks h2 when the client offers it");
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["headers"]["X-Forwarded-Proto"], "https");
    assert_eq!(echo["headers"]["X-Forwarded-Port"], t.tls.port().to_string());

    let h1 = t.ca.reqwest().resolve("localhost", t.tls).http1_only().build().unwrap();
    let res = h1.get(t.url("/anything")).send().await.unwrap();
    assert_eq!((res.status(), res.version()), (StatusCode::OK, reqwest::Version::HTTP_11));

    // The plain listener is unchanged.
    let echo: Value = reqwest::get(format!("{}/anything", t.node.proxy_url())).await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["X-Forwarded-Proto"], "http");

    // A client that does not trust the CA refuses the certificate: the chain is what the test CA signed.
    let stranger = reqwest::Client::builder().resolve("localhost", t.tls).build().unwrap();
    assert!(stranger.get(t.url("/anything")).send().await.is_err());
}

#[tokio::test]
async fn routes_take_the_listeners_their_protocols_name() {
    let t = tls_node(None).await;
    let url = format!("{}/anything", t.node.echo_url());
    t.node.admin_ok(Method::POST, "/services", json!({"name": "echo", "url": url})).await;
    for (name, protocols) in
        [("secure", json!(["https"])), ("plain", json!(["http"])), ("both", json!(["http", "https"]))]
    {
        let route = json!({"name": name, "paths": [format!("/{name}")], "protocols": protocols});
        t.node.admin_ok(Method::POST, "/services/echo/routes", route).await;
    }
    t.node.wait_config().await;
    let tls = t.client();
    let status = |res: reqwest::Response| res.status();
    assert_eq!(status(tls.get(t.url("/secure")).send().await.unwrap()), StatusCode::OK);
    assert_eq!(status(tls.get(t.url("/both")).send().await.unwrap()), StatusCode::OK);
    assert_eq!(status(tls.get(t.url("/plain")).send().await.unwrap()), StatusCode::NOT_FOUND, "http only");
    let plain = |path: &str| format!("{}{path}", t.node.proxy_url());
    assert_eq!(status(reqwest::get(plain("/secure")).await.unwrap()), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(status(reqwest::get(plain("/plain")).await.unwrap()), StatusCode::OK);
    assert_eq!(status(reqwest::get(plain("/both")).await.unwrap()), StatusCode::OK);
}

/// A TLS 1.1 ClientHello (no `supported_versions` extension), with two TLS 1.0/1.1 cipher suites.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x42; 32]);
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn tls_1_1_is_refused() {
    let t = tls_node(None).await;
    let mut stream = tokio::net::TcpStream::connect(t.tls).await.unwrap();
    stream.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    // An alert record (type 21: protocol_version or handshake_failure), never a ServerHello (type 22).
    assert_eq!(answer.first(), Some(&0x15), "answered {answer:02x?}");

    // The same through curl when it is installed: it must fail to connect with TLS 1.1 at most.
    if let Some((printed, code)) = curl(&["--tlsv1.1", "--tls-max", "1.1", "-k", &t.url("/")], t.tls).await {
        // 35: the TLS handshake failed (4 when this curl cannot even offer TLS 1.1).
        assert!(printed.starts_with("000") && [35, 4].contains(&code), "curl with TLS 1.1: {printed} {code}");
    }
}

/// Runs curl (when installed) with `localhost` resolved to `addr`; returns the status it printed and its exit code.
async fn curl(args: &[&str], addr: SocketAddr) -> Option<(String, i32)> {
    let resolve = format!("localhost:{}:{}", addr.port(), addr.ip());
    let output = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", "30", "--resolve"])
        .arg(&resolve)
        .args(args)
        .output()
        .await
        .ok()?;
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    Some((printed, output.status.code().unwrap_or(-1)))
}

#[tokio::test]
async fn curl_verifies_the_chain_with_cacert() {
    let t = tls_node(None).await;
    t.node.example_service().await;
    let ca = t.ca.write(t.dir.path());
    let ca = ca.to_str().unwrap();
    let Some((printed, code)) = curl(&["--cacert", ca, &t.url("/anything")], t.tls).await else {
        // Without curl, the same verification by a rustls client: the chain checks out against the CA alone.
        let stream = connect(t.ca.rustls(&[]), t.tls, "localhost").await.unwrap();
        assert!(!presented(&stream).is_empty());
        return;
    };
    assert_eq!((printed.as_str(), code), ("200 2", 0), "HTTP/2 over a verified chain");
    let (printed, code) = curl(&["--http1.1", "--cacert", ca, &t.url("/anything")], t.tls).await.unwrap();
    assert_eq!((printed.as_str(), code), ("200 1.1", 0));
    // Without the CA, curl refuses the certificate (60: peer certificate cannot be authenticated).
    let (_, code) = curl(&[&t.url("/anything")], t.tls).await.unwrap();
    assert_eq!(code, 60);
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_closed_after_the_header_timeout() {
    let t = tls_node(Some(1.0)).await;
    // One sends nothing; the other starts a ClientHello record and stops.
    let silent = tokio::net::TcpStream::connect(t.tls).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(t.tls).await.unwrap();
    let from = Instant::now();
    partial.write_all(&tls11_client_hello()[..8]).await.unwrap();
    for stream in [silent, partial] {
        let closed = closed_by_server(stream, Duration::from_secs(15)).await.expect("closed by the server");
        assert!(closed - from >= Duration::from_millis(900), "not before the deadline: {:?}", closed - from);
    }
}

#[tokio::test]
async fn a_renewed_certificate_file_is_served_to_new_connections_while_open_ones_keep_working() {
    let t = tls_node(None).await;
    t.node.example_service().await;
    let client = t.ca.rustls(&[b"http/1.1"]);
    let first = std::fs::read_to_string(&t.files.0).unwrap();
    let mut open = connect(client.clone(), t.tls, "localhost").await.unwrap();
    assert_eq!(get_on(&mut open, "localhost").await, "HTTP/1.1 200 OK");

    let renewed: Leaf = t.ca.leaf(&["localhost"]);
    // The key first, then the certificate: a reload between the two sees a mismatch and keeps the old pair.
    std::fs::write(&t.files.1, &renewed.key).unwrap();
    std::fs::write(&t.files.0, &renewed.cert).unwrap();
    let started = Instant::now();
    loop {
        // A new client each time: a resumed session would show the certificate of the session it resumes.
        let fresh = connect(t.ca.rustls(&[]), t.tls, "localhost").await.unwrap();
        if presented(&fresh) == renewed.der {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the renewed certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(first, renewed.cert);
    assert_eq!(get_on(&mut open, "localhost").await, "HTTP/1.1 200 OK", "the open connection was not dropped");
}

#[tokio::test]
async fn the_platform_listener_serves_tls_with_its_files() {
    let ca = TestCa::new();
    let dir = TempDir::new("gatehouse-tls");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "platform");
    let node = TestNode::builder()
        .configure(move |c| {
            c.platform.tls_cert = Some(cert);
            c.platform.tls_key = Some(key);
        })
        .start()
        .await
        .unwrap();
    assert!(node.platform.starts_with("https://"), "{}", node.platform);
    let addr = node.node.platform_addr;
    let client = ca.reqwest().resolve("localhost", addr).build().unwrap();
    let res = client.get(format!("https://localhost:{}/health", addr.port())).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Plain HTTP gets no answer from a TLS listener.
    assert!(reqwest::get(format!("http://{addr}/health")).await.is_err());
}

/// Writes `text` to `path` by rename, padded with newlines to `len` bytes and with `modified` as its time: to the
/// once-a-second check, the file has not changed.
fn replace_unchanged(path: &std::path::Path, text: &str, len: u64, modified: std::time::SystemTime) {
    let mut padded = text.to_owned();
    assert!(padded.len() as u64 <= len, "the new PEM fits the old file's length");
    padded.push_str(&"\n".repeat(len as usize - padded.len()));
    let staging = path.with_extension("staging");
    std::fs::write(&staging, padded).unwrap();
    std::fs::File::options().write(true).open(&staging).unwrap().set_modified(modified).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_certificate_files_even_when_they_look_unchanged() {
    // Held by this test too, so a SIGHUP to the test process is never the default action (terminate).
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let t = tls_node(None).await;
    let (cert_path, key_path) = &t.files;
    let meta = |p: &std::path::Path| std::fs::metadata(p).unwrap();
    // The files as the node started with them (`tls_node` padded them): their stamp is what the check compares.
    let (cert_meta, key_meta) = (meta(cert_path), meta(key_path));
    let started = Instant::now();
    let first = connect(t.ca.rustls(&[]), t.tls, "localhost").await.unwrap();
    let served_first = presented(&first);

    let renewed = t.ca.leaf(&["localhost"]);
    replace_unchanged(key_path, &renewed.key, key_meta.len(), key_meta.modified().unwrap());
    replace_unchanged(cert_path, &renewed.cert, cert_meta.len(), cert_meta.modified().unwrap());
    std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().unwrap();
    hangups.recv().await;
    loop {
        let fresh = connect(t.ca.rustls(&[]), t.tls, "localhost").await.unwrap();
        if presented(&fresh) == renewed.der {
            break;
        }
        assert_eq!(presented(&fresh), served_first, "the old certificate until the reload");
        assert!(started.elapsed() < Duration::from_secs(30), "SIGHUP did not reload the certificate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
