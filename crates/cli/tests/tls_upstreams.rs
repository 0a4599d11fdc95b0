//! Services over TLS (issue 19, item 3): the proxy verifies an `https` upstream's certificate by default, against
//! the web PKI roots or the service's `ca_certificates`, within its `tls_verify_depth`; presents its
//! `client_certificate` to an upstream that demands one (mutual TLS); and sends the service's host, or a
//! `preserve_host` route's, as the server name. The upstreams here are rustls + hyper servers that record the
//! server name and client certificate of each handshake; every certificate is made at test time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use common::tls::{Leaf, TestCa};
use gatehouse_testkit::TestNode;

/// What one upstream handshake carried.
#[derive(Debug, Clone)]
struct Handshake {
    sni: Option<String>,
    client_certificate: Option<Vec<u8>>,
}

/// A TLS upstream serving `chain` (PEM, end-entity first) with `key`; with `client_ca`, it asks for a client
/// certificate that CA signed and, when `Demand::Required`, refuses the handshake without one.
#[derive(Clone, Copy, PartialEq)]
enum Demand {
    Required,
    Optional,
}

struct TlsUpstream {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
}

impl TlsUpstream {
    async fn start(chain: &str, key: &str, client_ca: Option<(&str, Demand)>) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some((pem, demand)) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
                let mut verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if demand == Demand::Optional {
                    verifier = verifier.allow_unauthenticated();
                }
                builder.with_client_cert_verifier(verifier.build().unwrap())
            }
        };
        let chain: Vec<_> = CertificateDer::pem_slice_iter(chain.as_bytes()).map(Result::unwrap).collect();
        let config = builder.with_single_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    // A refused handshake (no client certificate) just ends the connection.
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let session = stream.get_ref().1;
                    let handshake = Handshake {
                        sni: session.server_name().map(str::to_owned),
                        client_certificate: session.peer_certificates().map(|c| c[0].to_vec()),
                    };
                    seen.lock().unwrap().push(handshake.clone());
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = json!({
                            "sni": handshake.sni,
                            "client_certificate": handshake.client_certificate.is_some(),
                            "host": req.headers().get("host").and_then(|h| h.to_str().ok()),
                        });
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                body.to_string(),
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, handshakes }
    }

    fn last(&self) -> Option<Handshake> {
        self.handshakes.lock().unwrap().last().cloned()
    }
}

/// A service `name` for `https://localhost:{port}` with `fields`, and a route `/{name}` with `route` fields.
async fn service(node: &TestNode, name: &str, upstream: &TlsUpstream, fields: Value, route: Value) {
    let mut body = json!({"name": name, "url": format!("https://localhost:{}", upstream.addr.port())});
    body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    node.admin_ok(Method::POST, "/services", body).await;
    let mut r = json!({"paths": [format!("/{name}")]});
    r.as_object_mut().unwrap().extend(route.as_object().unwrap().clone());
    node.admin_ok(Method::POST, &format!("/services/{name}/routes"), r).await;
}

async fn ca_certificate(node: &TestNode, ca: &TestCa) -> String {
    let created = node.admin_ok(Method::POST, "/ca_certificates", json!({"cert": ca.pem})).await;
    created["id"].as_str().unwrap().to_owned()
}

/// A `certificates` entity for `leaf`; returns its id.
async fn certificate(node: &TestNode, leaf: &Leaf) -> String {
    let created = node.admin_ok(Method::POST, "/certificates", json!({"cert": leaf.cert, "key": leaf.key})).await;
    created["id"].as_str().unwrap().to_owned()
}

async fn get(node: &TestNode, path: &str) -> (StatusCode, Value) {
    let res = reqwest::get(format!("{}{path}", node.proxy_url())).await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_upstream_certificate_is_verified_by_default_and_trusted_through_ca_certificates() {
    let node = TestNode::start().await;
    let upstream_ca = TestCa::new();
    let leaf = upstream_ca.leaf(&["localhost", "app.test"]);
    let upstream = TlsUpstream::start(&leaf.cert, &leaf.key, None).await;
    let ca = ca_certificate(&node, &upstream_ca).await;

    service(&node, "default", &upstream, json!({}), json!({})).await;
    service(&node, "unverified", &upstream, json!({"tls_verify": false}), json!({})).await;
    service(&node, "trusted", &upstream, json!({"ca_certificates": [ca]}), json!({})).await;
    // A CA the upstream's certificate does not chain to.
    let other = ca_certificate(&node, &TestCa::new()).await;
    service(&node, "stranger", &upstream, json!({"ca_certificates": [other]}), json!({})).await;
    service(&node, "preserved", &upstream, json!({"ca_certificates": [ca]}), json!({"preserve_host": true})).await;
    node.wait_config().await;

    let (status, body) = get(&node, "/default").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "its CA is not among the web PKI roots: {body}");
    let (status, body) = get(&node, "/stranger").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let (status, body) = get(&node, "/unverified").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(&node, "/trusted").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The server name is the service's host.
    assert_eq!(body["sni"], "localhost");
    assert_eq!(upstream.last().unwrap().sni.as_deref(), Some("localhost"));

    // A `preserve_host` route names the client's host, as Kong's `proxy_ssl_name $upstream_host` does, and the
    // certificate is verified for it.
    let res = reqwest::Client::new()
        .get(format!("{}/preserved", node.proxy_url()))
        .header("host", "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["sni"].as_str(), body["host"].as_str()), (Some("app.test"), Some("app.test")));
    let res = reqwest::Client::new()
        .get(format!("{}/preserved", node.proxy_url()))
        .header("host", "other.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "the certificate is not for other.test");
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let node = TestNode::start().await;
    let upstream_ca = TestCa::new();
    let client_ca = TestCa::new();
    let leaf = upstream_ca.leaf(&["localhost"]);
    let upstream = TlsUpstream::start(&leaf.cert, &leaf.key, Some((&client_ca.pem, Demand::Required))).await;
    let ca = ca_certificate(&node, &upstream_ca).await;
    let client: Leaf = client_ca.leaf(&["gatehouse-client"]);
    let certificate = certificate(&node, &client).await;

    service(&node, "anonymous", &upstream, json!({"ca_certificates": [ca]}), json!({})).await;
    let fields = json!({"ca_certificates": [ca], "client_certificate": {"id": certificate}});
    service(&node, "mutual", &upstream, fields, json!({})).await;
    node.wait_config().await;

    let (status, body) = get(&node, "/anonymous").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "the upstream demands a client certificate: {body}");
    let (status, body) = get(&node, "/mutual").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_certificate"], true);
    assert_eq!(upstream.last().unwrap().client_certificate.as_deref(), Some(client.der.as_slice()));
}

#[tokio::test]
async fn tls_verify_depth_bounds_the_intermediates() {
    let node = TestNode::start().await;
    let root = TestCa::new();
    let intermediate = root.intermediate();
    let leaf = intermediate.leaf(&["localhost"]);
    let upstream = TlsUpstream::start(&format!("{}{}", leaf.cert, intermediate.pem), &leaf.key, None).await;
    let ca = ca_certificate(&node, &root).await;
    for (name, depth) in [("depth0", json!(0)), ("depth1", json!(1)), ("unbounded", Value::Null)] {
        service(&node, name, &upstream, json!({"ca_certificates": [ca], "tls_verify_depth": depth}), json!({})).await;
    }
    node.wait_config().await;

    let (status, body) = get(&node, "/depth0").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "one intermediate is more than 0: {body}");
    let (status, body) = get(&node, "/depth1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(&node, "/unbounded").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn connections_with_other_tls_settings_are_never_shared() {
    let node = TestNode::start().await;
    let upstream_ca = TestCa::new();
    let client_ca = TestCa::new();
    let leaf = upstream_ca.leaf(&["localhost"]);
    // A client certificate is asked for but not required; one presented is recorded.
    let upstream = TlsUpstream::start(&leaf.cert, &leaf.key, Some((&client_ca.pem, Demand::Optional))).await;
    let ca = ca_certificate(&node, &upstream_ca).await;
    let client = client_ca.leaf(&["gatehouse-client"]);
    let certificate = certificate(&node, &client).await;
    service(&node, "plain", &upstream, json!({"ca_certificates": [ca]}), json!({})).await;
    let fields = json!({"ca_certificates": [ca], "client_certificate": {"id": certificate}});
    service(&node, "mutual", &upstream, fields, json!({})).await;
    node.wait_config().await;

    // Alternating on one client connection: each request goes out on a connection made with its own settings.
    let client = reqwest::Client::new();
    for round in 0..3 {
        for (path, presented) in [("/plain", false), ("/mutual", true)] {
            let res = client.get(format!("{}{path}", node.proxy_url())).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path} in round {round}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["client_certificate"], presented, "{path} in round {round}");
        }
    }
}

#[tokio::test]
async fn bad_upstream_tls_settings_are_refused_by_name() {
    let node = TestNode::start().await;
    let unknown = "0190a0a0-0000-7000-8000-00000000abcd";
    let cases = [
        (json!({"url": "https://h", "ca_certificates": [unknown]}), "ca_certificates"),
        (json!({"url": "https://h", "client_certificate": {"id": unknown}}), "client_certificate"),
        (json!({"url": "http://h", "tls_verify_depth": 2}), "tls_verify_depth"),
        (json!({"url": "http://h", "ca_certificates": [unknown]}), "ca_certificates"),
        (json!({"url": "https://h", "tls_verify_depth": 65}), "tls_verify_depth"),
    ];
    for (body, field) in cases.clone() {
        let (status, answer) = node.admin(Method::POST, "/services", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["fields"][field].is_string(), "{body}: {answer}");
    }
    let (_, answer) = node.admin(Method::POST, "/services", Some(cases[0].0.clone())).await;
    assert_eq!(
        answer["fields"]["ca_certificates"],
        format!("the foreign key '{{id=\"{unknown}\"}}' does not reference an existing 'ca_certificates' entity.")
    );
}

/// A YAML block scalar of `text`, indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!("|\n{}", text.lines().map(|l| format!("{pad}{l}\n")).collect::<String>())
}

/// decK carries the new fields: a service's `ca_certificates`, `client_certificate` and `tls_verify_depth`, a
/// route's `snis`; sync, a second sync, dump and diff agree, and the proxy uses what was synced.
#[tokio::test]
async fn deck_round_trips_the_upstream_tls_fields_and_route_snis() {
    let node = TestNode::start().await;
    let upstream_ca = TestCa::new();
    let client_ca = TestCa::new();
    let leaf = upstream_ca.leaf(&["localhost"]);
    let upstream = TlsUpstream::start(&leaf.cert, &leaf.key, Some((&client_ca.pem, Demand::Required))).await;
    let client = client_ca.leaf(&["gatehouse-client"]);
    let (ca_id, cert_id) = ("0190a0a0-0000-7000-8000-0000000000c1", "0190a0a0-0000-7000-8000-0000000000c2");
    let file = format!(
        "_format_version: \"3.0\"\nca_certificates:\n- id: {ca_id}\n  cert: {}certificates:\n- id: {cert_id}\n  cert: {}  key: {}services:\n- name: mutual\n  url: https://localhost:{}\n  ca_certificates: [{ca_id}]\n  client_certificate:\n    id: {cert_id}\n  tls_verify_depth: 1\n  routes:\n  - name: mutual\n    paths: [/mutual]\n  - name: by-sni\n    protocols: [https]\n    snis: [api.example.com]\n",
        block(&upstream_ca.pem, 4),
        block(&client.cert, 4),
        block(&client.key, 4),
        upstream.addr.port(),
    );
    let deck = common::deck::Deck::admin(&node);
    let path = deck.write("kong.yaml", &file);
    let out = deck.ok(&["sync", &path]).await;
    assert_eq!(common::deck::summary(&out), (5, 0, 0), "{out}");
    let out = deck.ok(&["sync", &path]).await;
    assert_eq!(common::deck::summary(&out), (0, 0, 0), "nothing left to do:\n{out}");
    deck.ok(&["dump", "-o", "dump.yaml"]).await;
    let dumped = deck.read("dump.yaml");
    for expected in ["tls_verify_depth: 1", "api.example.com", ca_id, cert_id] {
        assert!(dumped.contains(expected), "{expected} in {dumped}");
    }
    let out = deck.ok(&["diff", "dump.yaml"]).await;
    assert_eq!(common::deck::summary(&out), (0, 0, 0), "the dump syncs back unchanged:\n{out}");

    node.wait_config().await;
    let (status, body) = get(&node, "/mutual").await;
    assert_eq!((status, body["client_certificate"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
}

/// A certificate or CA certificate a service uses is not deleted from under it (Kong's "referenced by others").
#[tokio::test]
async fn certificates_a_service_uses_are_not_deleted() {
    let node = TestNode::start().await;
    let ca = TestCa::new();
    let ca_id = ca_certificate(&node, &ca).await;
    let client = ca.leaf(&["gatehouse-client"]);
    let cert_id = certificate(&node, &client).await;
    let body =
        json!({"name": "s", "url": "https://h", "ca_certificates": [ca_id], "client_certificate": {"id": cert_id}});
    node.admin_ok(Method::POST, "/services", body).await;

    let (status, body) = node.admin(Method::DELETE, &format!("/ca_certificates/{ca_id}"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with(&format!("ca certificate {ca_id} is still referenced")));
    let (status, body) = node.admin(Method::DELETE, &format!("/certificates/{cert_id}"), None).await;
    assert_eq!((status, body["name"].as_str()), (StatusCode::BAD_REQUEST, Some("referenced by others")), "{body}");

    // Once the service lets go, they can go.
    node.admin_ok(Method::PATCH, "/services/s", json!({"ca_certificates": null, "client_certificate": null})).await;
    for path in [format!("/ca_certificates/{ca_id}"), format!("/certificates/{cert_id}")] {
        let (status, body) = node.admin(Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}: {body}");
    }
}

/// A service whose host names an upstream reaches its target's address but names the upstream over TLS (Kong's
/// `proxy_ssl_name $upstream_host`), or the upstream's `host_header` when it sets one; either name is verified.
#[tokio::test]
async fn a_balanced_target_is_verified_for_the_upstreams_name() {
    let node = TestNode::start().await;
    let upstream_ca = TestCa::new();
    let leaf = upstream_ca.leaf(&["app.test", "api.test"]);
    let upstream = TlsUpstream::start(&leaf.cert, &leaf.key, None).await;
    let ca = ca_certificate(&node, &upstream_ca).await;
    let target = json!({"target": format!("127.0.0.1:{}", upstream.addr.port())});
    for (name, fields) in [("app.test", json!({})), ("renamed.test", json!({"host_header": "api.test"}))] {
        let mut body = json!({"name": name});
        body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        node.admin_ok(Method::POST, "/upstreams", body).await;
        node.admin_ok(Method::POST, &format!("/upstreams/{name}/targets"), target.clone()).await;
        let service = name.replace('.', "-");
        let body = json!({"name": service, "url": format!("https://{name}"), "ca_certificates": [ca]});
        node.admin_ok(Method::POST, "/services", body).await;
        let route = json!({"paths": [format!("/{service}")]});
        node.admin_ok(Method::POST, &format!("/services/{service}/routes"), route).await;
    }
    node.wait_config().await;

    let (status, body) = get(&node, "/app-test").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sni"], "app.test", "the upstream's name, not the target's address");
    let (status, body) = get(&node, "/renamed-test").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["sni"].as_str(), body["host"].as_str()), (Some("api.test"), Some("api.test")));
}

/// Active HTTPS probes send the upstream's `https_sni` as the server name (a target given as an address sends none
/// otherwise).
#[tokio::test]
async fn https_probes_send_the_configured_sni() {
    let node = TestNode::start().await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["probe.test"]);
    let upstream = TlsUpstream::start(&leaf.cert, &leaf.key, None).await;
    let checks = json!({"active": {
        "type": "https", "https_sni": "probe.test", "https_verify_certificate": false,
        "healthy": {"interval": 0.05, "successes": 1}, "unhealthy": {"interval": 0.05, "tcp_failures": 1},
    }});
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "probed", "healthchecks": checks})).await;
    let target = json!({"target": format!("127.0.0.1:{}", upstream.addr.port())});
    node.admin_ok(Method::POST, "/upstreams/probed/targets", target).await;
    node.wait_config().await;
    let started = tokio::time::Instant::now();
    while upstream.last().is_none() {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no probe arrived");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(upstream.last().unwrap().sni.as_deref(), Some("probe.test"));
    let (status, body) = node
        .admin(
            Method::POST,
            "/upstreams",
            Some(json!({"name": "bad", "healthchecks": {"active": {"https_sni": "10.0.0.1"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an address is not a server name: {body}");
    node.stop().await;
}
