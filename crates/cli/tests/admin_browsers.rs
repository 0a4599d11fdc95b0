//! The Admin API and the echo upstream answer only to local host names, and the Admin API takes no writes from
//! web pages of other origins (issue 15 item 8: DNS rebinding and cross-site requests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{bin, raw_exchange, status_of};
use gatehouse_runtime::config::parse_host;
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{GatehouseProcess, TestNode, decode, run_to_end};

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {url}"))
}

/// A request to `url` that says it is for `host`.
async fn with_host(method: Method, url: &str, host: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, url).header("host", host);
    if let Some(body) = body {
        request = request.json(&body);
    }
    decode(request.send().await.unwrap_or_else(|e| panic!("{url} as {host}: {e}"))).await
}

async fn service_names(node: &TestNode) -> Vec<String> {
    let (status, list) = node.admin(Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["data"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn foreign_hosts_are_refused_before_anything_runs() {
    let node = TestNode::start().await;
    let admin = node.node.admin_url();
    let echo = node.echo_url();
    let port = port_of(&admin);
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("0.0.0.0:{port}"),
    ] {
        let (status, body) = with_host(Method::GET, &format!("{admin}/services"), &host, None).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("admin.allowed_hosts"), "{host}: {body}");
        // Kong's bare message shape, nothing else.
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");

        let created = json!({"name": "planted", "url": "http://attacker.example"});
        let (status, body) = with_host(Method::POST, &format!("{admin}/services"), &host, Some(created)).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}: {body}");
        // Unknown paths and the root are behind the same check.
        let (status, _) = with_host(Method::GET, &format!("{admin}/"), &host, None).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        let (status, _) = with_host(Method::GET, &format!("{admin}/nothing-here"), &host, None).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}");

        let (status, body) = with_host(Method::GET, &format!("{echo}/anything"), &host, None).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "echo, {host}: {body}");
        assert!(body["message"].as_str().unwrap_or_default().contains("echo.allowed_hosts"), "{body}");
    }
    assert!(service_names(&node).await.is_empty(), "a refused request changed nothing");
    node.stop().await;
}

#[tokio::test]
async fn local_hosts_are_served_where_others_are_not() {
    let node = TestNode::start().await;
    let admin = node.node.admin_url();
    let echo = node.echo_url();
    for url in [&admin, &echo] {
        let port = port_of(url);
        let path = if url == &admin { "/services" } else { "/anything" };
        let (status, _) = with_host(Method::GET, &format!("{url}{path}"), &format!("evil.example:{port}"), None).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{url}");
        for host in [
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
            format!("127.0.0.2:{port}"),
            format!("LocalHost:{port}"),
            format!("gatehouse.localhost:{port}"),
            "localhost".to_owned(),
        ] {
            let (status, body) = with_host(Method::GET, &format!("{url}{path}"), &host, None).await;
            assert_eq!(status, StatusCode::OK, "{url} as {host}: {body}");
        }
    }
    let created = json!({"name": "via-localhost", "url": "http://upstream.example"});
    let (status, body) =
        with_host(Method::POST, &format!("{admin}/services"), &format!("localhost:{}", port_of(&admin)), Some(created))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    node.stop().await;
}

#[tokio::test]
async fn configured_names_are_served_on_their_listener_only() {
    let node = TestNode::builder()
        .configure(|config| {
            config.admin.allowed_hosts = vec![parse_host("gatehouse.internal").unwrap()];
            config.echo.allowed_hosts = vec![parse_host("echo.internal").unwrap()];
        })
        .start()
        .await
        .unwrap();
    let admin = node.node.admin_url();
    let echo = node.echo_url();
    let (status, body) = with_host(Method::GET, &format!("{admin}/services"), "Gatehouse.Internal:8001", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = with_host(Method::GET, &format!("{echo}/anything"), "echo.internal", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["headers"]["Host"], "echo.internal");
    let (status, _) = with_host(Method::GET, &format!("{admin}/services"), "echo.internal", None).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    let (status, _) = with_host(Method::GET, &format!("{echo}/anything"), "gatehouse.internal", None).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    node.stop().await;
}

/// HTTP/2 names the host in `:authority`; a request without `Host` must not slip through under a foreign one.
#[tokio::test]
async fn http2_authority_is_the_host() {
    let node = TestNode::start().await;
    let admin = node.node.admin_url();
    let port = port_of(&admin);
    let stream = tokio::net::TcpStream::connect(admin.trim_start_matches("http://")).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for (authority, expected) in [("evil.example", StatusCode::MISDIRECTED_REQUEST), ("localhost", StatusCode::OK)] {
        let request = hyper::Request::get(format!("http://{authority}:{port}/services"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        assert!(request.headers().get("host").is_none());
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), expected, "{authority}");
    }
    node.stop().await;
}

#[tokio::test]
async fn requests_without_one_host() {
    let node = TestNode::start().await;
    let admin = node.node.admin_url();
    let admin = admin.trim_start_matches("http://");
    let echo = node.echo_url();
    let echo = echo.trim_start_matches("http://");
    for (addr, path) in [(admin, "/services"), (echo, "/anything")] {
        let none = raw_exchange(addr, format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(status_of(&none), 400, "HTTP/1.1 requires Host: {none}");
        let two = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
        let two = raw_exchange(addr, two.as_bytes()).await;
        assert_eq!(status_of(&two), 400, "two Host headers: {two}");
        let junk = format!("GET {path} HTTP/1.1\r\nHost: user@localhost\r\nConnection: close\r\n\r\n");
        let junk = raw_exchange(addr, junk.as_bytes()).await;
        assert_eq!(status_of(&junk), 400, "{junk}");
        // HTTP/1.0 has no Host to require, and a browser never sends it (HAProxy's default health check does).
        let old = raw_exchange(addr, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await;
        assert_eq!(status_of(&old), 200, "{old}");
    }
    let absolute = format!("GET http://evil.example/services HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    let absolute = raw_exchange(admin, absolute.as_bytes()).await;
    assert_eq!(status_of(&absolute), 421, "an absolute-form target names the host: {absolute}");
    node.stop().await;
}

#[tokio::test]
async fn cross_site_writes_are_refused() {
    let node = TestNode::start().await;
    let admin = node.node.admin_url();
    let port = port_of(&admin);
    node.admin_ok(Method::POST, "/services", json!({"name": "kept", "url": "http://upstream.example"})).await;
    let http = reqwest::Client::new();
    let refused: [(&str, String); 7] = [
        ("origin", "http://evil.example".to_owned()),
        ("origin", format!("http://evil.example:{port}")),
        ("origin", "null".to_owned()),
        ("origin", format!("http://localhost:{}", port.wrapping_add(1))),
        ("sec-fetch-site", "cross-site".to_owned()),
        ("sec-fetch-site", "same-site".to_owned()),
        ("origin", format!("file://localhost:{port}")),
    ];
    for (name, value) in &refused {
        let attempts = [
            http.post(format!("{admin}/services")).json(&json!({"name": "planted", "url": "http://attacker.example"})),
            http.put(format!("{admin}/services/planted")).json(&json!({"url": "http://attacker.example"})),
            http.patch(format!("{admin}/services/kept")).json(&json!({"host": "attacker.example"})),
            http.delete(format!("{admin}/services/kept")),
        ];
        for attempt in attempts {
            let (status, body) = decode(attempt.header(*name, value).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value}: {body}");
            assert!(body["message"].as_str().is_some_and(|m| m.contains("another origin")), "{body}");
        }
    }
    assert_eq!(service_names(&node).await, ["kept"], "nothing was created, changed or deleted");
    let (_, kept) = node.admin(Method::GET, "/services/kept", None).await;
    assert_eq!(kept["host"], "upstream.example");
    // Reads are only host-checked: a page of another origin cannot read the answer anyway (no CORS).
    let read = http.get(format!("{admin}/services")).header("origin", "http://evil.example").send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn same_origin_and_non_browser_writes_work_where_cross_origin_ones_do_not() {
    let node = TestNode::start().await;
    let admin = node.node.admin_url();
    let port = port_of(&admin);
    let http = reqwest::Client::new();
    let allowed: [&[(&str, String)]; 5] = [
        &[],
        &[("origin", format!("http://127.0.0.1:{port}"))],
        &[("origin", format!("http://localhost:{port}")), ("sec-fetch-site", "same-origin".to_owned())],
        &[("sec-fetch-site", "none".to_owned())],
        &[("origin", format!("http://[::1]:{port}"))],
    ];
    for (n, headers) in allowed.iter().enumerate() {
        let mut request = http.post(format!("{admin}/services")).json(&json!({"name": format!("s{n}"), "host": "up"}));
        for (name, value) in *headers {
            request = request.header(*name, value);
        }
        let (status, body) = decode(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::CREATED, "{headers:?}: {body}");
    }
    // The same write from a page on another port of localhost is what is refused.
    let other_port = format!("http://localhost:{}", port.wrapping_add(1));
    let request = http.post(format!("{admin}/services")).json(&json!({"name": "s5", "host": "up"}));
    let (status, body) = decode(request.header("origin", other_port).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let mut names = service_names(&node).await;
    names.sort();
    assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);
    node.stop().await;
}

/// Form bodies are what a page can post to another site without a preflight: now that the Admin API takes them,
/// as Kong does, a cross-site one must be refused before anything is created, while curl's works.
#[tokio::test]
async fn cross_site_form_posts_are_refused_and_curls_are_served() {
    let node = TestNode::start().await;
    let admin = node.node.admin_url();
    let http = reqwest::Client::new();
    let form = |name: &str| {
        http.post(format!("{admin}/services"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("name={name}&url=http://attacker.example"))
    };
    let multipart = |name: &str| {
        http.post(format!("{admin}/services")).header("content-type", "multipart/form-data; boundary=b").body(format!(
            "--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n--b\r\n\
             Content-Disposition: form-data; name=\"host\"\r\n\r\nattacker.example\r\n--b--\r\n"
        ))
    };
    for (header, value) in [("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")] {
        for attempt in [form("planted"), multipart("planted")] {
            let (status, body) = decode(attempt.header(header, value).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{header}: {value}: {body}");
        }
    }
    assert!(service_names(&node).await.is_empty(), "nothing was created");
    // The same bodies without a page behind them (curl, decK) are served.
    let (status, body) = decode(form("by-curl").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = decode(multipart("by-curl-f").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut names = service_names(&node).await;
    names.sort();
    assert_eq!(names, ["by-curl", "by-curl-f"]);
    node.stop().await;
}

/// `gatehouse echo` alone (an upstream for a gateway elsewhere) takes its names from `--allowed-hosts`.
#[tokio::test]
async fn standalone_echo_takes_its_names_from_the_flag() {
    let dir = TempDir::new("echo-hosts");
    let env = [("NO_COLOR", "1".to_owned())];
    let args = ["echo", "--listen", "127.0.0.1:0", "--allowed-hosts", "echo,Upstream.Internal"];
    let mut echo = GatehouseProcess::spawn(&bin(), &args, &env, dir.path());
    let line = echo
        .wait_for_line(std::time::Duration::from_secs(30), |l| l.contains("listening") && l.contains("address="))
        .await;
    let addr = line.split("address=").nth(1).and_then(|a| a.split_whitespace().next()).unwrap().to_owned();
    let url = format!("http://{addr}/anything");
    for host in ["echo", "upstream.internal:8004", "localhost"] {
        let (status, body) = with_host(Method::GET, &url, host, None).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    let (status, body) = with_host(Method::GET, &url, "evil.example", None).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("--allowed-hosts"), "{body}");
    echo.kill_hard().await;

    let (code, _, err) = run_to_end(&bin(), &["echo", "--allowed-hosts", "echo:8004"], &[], dir.path()).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[echo:8004] is not a host name"), "{err}");
}
