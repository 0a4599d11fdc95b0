//! Routes over the proxy's two listeners (issue 19, item 3): `https`-only routes reached over plain HTTP answer
//! with their `https_redirect_status_code`, an `http`-only route gives way over TLS to the next matching route,
//! routes' `snis` select by the handshake's server name, and `X-Forwarded-Proto`/`Port` name the listener the
//! client used. Real TLS clients against certificates made at test time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::tls::TestCa;
use gatehouse_testkit::TestNode;

/// A node whose proxy also listens with TLS, with a certificate for `names`; `trusted` peers' forwarded headers
/// are believed.
async fn tls_node(names: &[&str], trusted: bool) -> (TestNode, TestCa, SocketAddr, gatehouse_store::testing::TempDir) {
    let ca = TestCa::new();
    let dir = gatehouse_store::testing::TempDir::new("gatehouse-tls-routes");
    let (cert, key) = ca.leaf(names).write(dir.path(), "proxy");
    let node = TestNode::builder()
        .configure(move |c| {
            c.proxy.listen_tls = Some("127.0.0.1:0".parse().unwrap());
            c.proxy.tls_cert = Some(cert);
            c.proxy.tls_key = Some(key);
            if trusted {
                c.proxy.trusted_ips = vec!["127.0.0.0/8".parse().unwrap()];
            }
        })
        .start()
        .await
        .unwrap();
    let tls = node.node.proxy_tls_addr.expect("the TLS listener is up");
    (node, ca, tls, dir)
}

/// A service for the echo upstream's `/anything/{name}` with one route.
async fn service_with_route(node: &TestNode, name: &str, route: Value) {
    let url = format!("{}/anything/{name}", node.echo_url());
    node.admin_ok(Method::POST, "/services", json!({"name": name, "url": url})).await;
    node.admin_ok(Method::POST, &format!("/services/{name}/routes"), route).await;
}

/// The echo upstream's answer to `request`.
async fn echoed(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn an_https_route_over_plain_http_answers_its_redirect_status_code() {
    let (node, ca, tls, _dir) = tls_node(&["localhost"], false).await;
    for code in [426, 301, 302, 307, 308] {
        let route = json!({"paths": [format!("/r{code}")], "protocols": ["https"], "https_redirect_status_code": code});
        service_with_route(&node, &format!("s{code}"), route).await;
    }
    node.wait_config().await;
    let plain = no_redirects();
    let port = node.proxy_url().rsplit(':').next().unwrap().to_owned();

    let res = plain.get(format!("http://localhost:{port}/r426/x?q=1")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(res.headers()["connection"], "Upgrade");
    assert_eq!(res.headers()["upgrade"], "TLS/1.2, HTTP/1.1");
    assert!(res.headers().get("location").is_none());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "Please use HTTPS protocol");

    for code in [301, 302, 307, 308] {
        let res = plain.get(format!("http://localhost:{port}/r{code}/x?q=1")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), code);
        // The host without the plain listener's port, with the TLS listener's (it is not 443).
        let location = format!("https://localhost:{}/r{code}/x?q=1", tls.port());
        assert_eq!(res.headers()["location"], location.as_str(), "{code}");
        assert_eq!(res.bytes().await.unwrap().len(), 0, "Kong's redirect has no body");
    }

    // Following the redirect reaches the route over TLS.
    let follow = ca.reqwest().resolve("localhost", tls).build().unwrap();
    let res = follow.get(format!("http://localhost:{port}/r308/x?q=1")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let echo: Value = res.json().await.unwrap();
    assert!(echo["url"].as_str().unwrap().ends_with("/anything/s308/x?q=1"), "{echo}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_its_forwarded_scheme_and_host_count() {
    let (node, _ca, _tls, _dir) = tls_node(&["localhost"], true).await;
    let route = json!({"paths": ["/secure"], "protocols": ["https"], "https_redirect_status_code": 301});
    service_with_route(&node, "secure", route).await;
    node.wait_config().await;
    let url = format!("{}/secure", node.proxy_url());
    let client = no_redirects();

    // The proxy in front terminated TLS: no redirect.
    let res = client.get(&url).header("x-forwarded-proto", "https").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["headers"]["X-Forwarded-Proto"], "https");

    // It did not: the redirect names the host it was asked for, as Kong's does, and no port of this node's.
    let res = client.get(&url).header("x-forwarded-host", "api.example.com").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(res.headers()["location"], "https://api.example.com/secure");
}

#[tokio::test]
async fn an_http_only_route_gives_way_over_tls_to_the_next_matching_one() {
    let (node, ca, tls, _dir) = tls_node(&["localhost"], false).await;
    // The plain route sets more fields (method and path), so it would win wherever it may compete.
    service_with_route(&node, "plain", json!({"paths": ["/x"], "methods": ["GET"], "protocols": ["http"]})).await;
    service_with_route(&node, "secure", json!({"paths": ["/x"], "protocols": ["https"]})).await;
    node.wait_config().await;

    let echo: Value = reqwest::get(format!("{}/x", node.proxy_url())).await.unwrap().json().await.unwrap();
    assert!(echo["url"].as_str().unwrap().contains("/anything/plain"), "{echo}");
    let client = ca.reqwest().resolve("localhost", tls).build().unwrap();
    let res = client.get(format!("https://localhost:{}/x", tls.port())).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let echo: Value = res.json().await.unwrap();
    assert!(echo["url"].as_str().unwrap().contains("/anything/secure"), "{echo}");
}

#[tokio::test]
async fn routes_snis_select_by_the_server_name_of_the_handshake() {
    let (node, ca, tls, _dir) = tls_node(&["localhost", "a.test", "b.test", "x.wild.test"], false).await;
    service_with_route(&node, "a", json!({"snis": ["a.test"], "protocols": ["https"]})).await;
    service_with_route(&node, "b", json!({"snis": ["b.test"], "paths": ["/"], "protocols": ["https"]})).await;
    service_with_route(&node, "wild", json!({"snis": ["*.wild.test"], "protocols": ["https"]})).await;
    node.wait_config().await;

    let client = ca
        .reqwest()
        .resolve("a.test", tls)
        .resolve("b.test", tls)
        .resolve("x.wild.test", tls)
        .resolve("localhost", tls)
        .http1_only()
        .build()
        .unwrap();
    for (name, service) in [("a.test", "a"), ("b.test", "b"), ("x.wild.test", "wild")] {
        let res = client.get(format!("https://{name}:{}/p", tls.port())).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}");
        let echo: Value = res.json().await.unwrap();
        assert!(echo["url"].as_str().unwrap().contains(&format!("/anything/{service}")), "{name}: {echo}");
    }
    // No route names this server name.
    let res = client.get(format!("https://localhost:{}/p", tls.port())).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The SNI is the handshake's, not the Host header's.
    let res = client.get(format!("https://a.test:{}/p", tls.port())).header("host", "b.test").send().await.unwrap();
    let echo: Value = res.json().await.unwrap();
    assert!(echo["url"].as_str().unwrap().contains("/anything/a"), "{echo}");

    // Kong's rules for the field.
    let (status, body) = node
        .admin(Method::POST, "/routes", Some(json!({"paths": ["/"], "protocols": ["http"], "snis": ["a.test"]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["fields"]["snis"],
        "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"
    );
    let (status, body) =
        node.admin(Method::POST, "/routes", Some(json!({"snis": ["a.test:443"], "protocols": ["https"]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["snis"].is_array() || body["fields"]["snis"].is_string(), "{body}");
}

#[tokio::test]
async fn forwarded_proto_and_port_name_the_listener_the_client_used() {
    let (node, ca, tls, _dir) = tls_node(&["localhost"], false).await;
    node.example_service().await;
    let plain_port = node.proxy_url().rsplit(':').next().unwrap().to_owned();

    // A Host naming another port does not change the port the client connected to.
    let echo =
        echoed(reqwest::Client::new().get(format!("{}/anything", node.proxy_url())).header("host", "localhost:9999"))
            .await;
    assert_eq!(echo["headers"]["X-Forwarded-Proto"], "http");
    assert_eq!(echo["headers"]["X-Forwarded-Port"], plain_port.as_str());
    assert_eq!(echo["headers"]["X-Forwarded-Host"], "localhost");

    let client = ca.reqwest().resolve("localhost", tls).http1_only().build().unwrap();
    let url = format!("https://localhost:{}/anything", tls.port());
    let echo = echoed(client.get(&url).header("host", "localhost:9999")).await;
    assert_eq!(echo["headers"]["X-Forwarded-Proto"], "https");
    assert_eq!(echo["headers"]["X-Forwarded-Port"], tls.port().to_string());

    // A client's own claims are replaced on both listeners.
    let echo = echoed(client.get(&url).header("x-forwarded-proto", "http").header("x-forwarded-port", "1")).await;
    assert_eq!(echo["headers"]["X-Forwarded-Proto"], "https");
    assert_eq!(echo["headers"]["X-Forwarded-Port"], tls.port().to_string());
}
