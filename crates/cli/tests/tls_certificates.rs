//! Kong's `certificates`, `snis` and `ca_certificates` (issue 19, item 2) through a real node: the proxy's TLS
//! listener picks a certificate by SNI (exact, wildcard, `*`, then its file certificate), live after an Admin API
//! change with no restart and without dropping open connections; Kong's 400s for bad PEM, mismatched keys and
//! unusable CA certificates; keys sealed at rest and returned in clear, as Kong returns them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::tls::{Leaf, TestCa, connect, get_on, presented};
use gatehouse_store::StorageUrl;
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::TestNode;

struct TlsNode {
    node: TestNode,
    ca: TestCa,
    default: Leaf,
    tls: SocketAddr,
    _dir: TempDir,
}

/// A node whose proxy listens with TLS, its file certificate (the default) for `default.test` and 127.0.0.1.
async fn tls_node() -> TlsNode {
    let ca = TestCa::new();
    let dir = TempDir::new("gatehouse-tls");
    let default = ca.leaf(&["default.test", "127.0.0.1"]);
    let (cert, key) = default.write(dir.path(), "default");
    let node = TestNode::builder()
        .configure(move |c| {
            c.proxy.listen_tls = Some("127.0.0.1:0".parse().unwrap());
            c.proxy.tls_cert = Some(cert);
            c.proxy.tls_key = Some(key);
        })
        .start()
        .await
        .unwrap();
    let tls = node.node.proxy_tls_addr.unwrap();
    TlsNode { node, ca, default, tls, _dir: dir }
}

impl TlsNode {
    /// The end-entity certificate the proxy presents for `sni` (an IP address: no SNI is sent).
    async fn served_for(&self, sni: &str) -> Vec<u8> {
        presented(&connect(self.ca.rustls(&[]), self.tls, sni).await.unwrap())
    }

    async fn add_certificate(&self, leaf: &Leaf, snis: &[&str]) -> Value {
        let body = json!({"cert": leaf.cert, "key": leaf.key, "snis": snis});
        self.node.admin_ok(Method::POST, "/certificates", body).await
    }
}

#[tokio::test]
async fn the_certificate_is_picked_by_sni_among_three_and_the_default() {
    let t = tls_node().await;
    let (a, b, wild) = (t.ca.leaf(&["a.example.com"]), t.ca.leaf(&["b.example.com"]), t.ca.leaf(&["*.example.org"]));
    t.add_certificate(&a, &["a.example.com"]).await;
    let b_entity = t.add_certificate(&b, &["b.example.com"]).await;
    t.add_certificate(&wild, &["*.example.org"]).await;
    t.node.wait_config().await;

    assert_eq!(t.served_for("a.example.com").await, a.der);
    assert_eq!(t.served_for("B.Example.com").await, b.der, "names compare case-insensitively");
    assert_eq!(t.served_for("www.example.org").await, wild.der, "the wildcard");
    assert_eq!(t.served_for("default.test").await, t.default.der, "no SNI entity: the listener's file certificate");
    assert_eq!(t.served_for("127.0.0.1").await, t.default.der, "no SNI at all: the file certificate");

    // Kong's `*` SNI comes before the file certificate for a name nothing else matches.
    let b_id = b_entity["id"].as_str().unwrap();
    let star = json!({"name": "*", "certificate": {"id": b_id}});
    let (status, body) = t.node.admin(Method::POST, "/snis", Some(star)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    t.node.wait_config().await;
    // B's certificate does not name default.test, so a verifying client refuses it: proof it was B's.
    assert!(connect(t.ca.rustls(&[]), t.tls, "default.test").await.is_err());
    assert_eq!(t.served_for("127.0.0.1").await, t.default.der, "without SNI, still the file certificate");
    let (_, listed) = t.node.admin(Method::GET, &format!("/certificates/{b_id}"), None).await;
    assert_eq!(listed["snis"], json!(["*", "b.example.com"]), "Kong's transient `snis`, sorted");
}

#[tokio::test]
async fn cert_alt_is_served_to_a_client_that_cannot_verify_the_main_key_type() {
    let t = tls_node().await;
    let ecdsa = t.ca.leaf(&["dual.example.com"]);
    let rsa = t.ca.leaf_with(&["dual.example.com"], rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap());
    let body = json!({"cert": ecdsa.cert, "key": ecdsa.key, "cert_alt": rsa.cert, "key_alt": rsa.key,
        "snis": ["dual.example.com"]});
    t.node.admin_ok(Method::POST, "/certificates", body).await;
    t.node.wait_config().await;
    assert_eq!(t.served_for("dual.example.com").await, ecdsa.der, "a modern client gets the main (ECDSA) certificate");
    let old = connect(t.ca.rustls_rsa_only(), t.tls, "dual.example.com").await.unwrap();
    assert_eq!(presented(&old), rsa.der, "an RSA-only client gets the alternative");
}

#[tokio::test]
async fn a_certificate_replaced_on_the_admin_api_is_served_at_once_while_open_connections_stay() {
    let t = tls_node().await;
    t.node.example_service().await;
    let first = t.ca.leaf(&["a.example.com"]);
    let entity = t.add_certificate(&first, &["a.example.com"]).await;
    t.node.wait_config().await;
    let mut open = connect(t.ca.rustls(&[b"http/1.1"]), t.tls, "a.example.com").await.unwrap();
    assert_eq!(presented(&open), first.der);
    assert_eq!(get_on(&mut open, "a.example.com").await, "HTTP/1.1 200 OK");

    let renewed = t.ca.leaf(&["a.example.com"]);
    let id = entity["id"].as_str().unwrap();
    let patch = json!({"cert": renewed.cert, "key": renewed.key});
    let answer = t.node.admin_ok(Method::PATCH, &format!("/certificates/{id}"), patch).await;
    assert_eq!(answer["snis"], json!(["a.example.com"]), "a PATCH without snis keeps them");
    let took = t.node.wait_config().await;
    assert!(took.as_secs() < 1, "live within a second: {took:?}");
    assert_eq!(t.served_for("a.example.com").await, renewed.der);
    assert_eq!(get_on(&mut open, "a.example.com").await, "HTTP/1.1 200 OK", "the open connection was not dropped");

    // Deleting the certificate takes its SNIs: the name falls back to the file certificate.
    let (status, _) = t.node.admin(Method::DELETE, &format!("/certificates/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, snis) = t.node.admin(Method::GET, "/snis", None).await;
    assert_eq!(snis["data"], json!([]));
    t.node.wait_config().await;
    // A new client (no session to resume): default.test's certificate does not verify for this name.
    assert!(connect(t.ca.rustls(&[]), t.tls, "a.example.com").await.is_err(), "the file certificate is served");
}

fn fields(body: &Value) -> Value {
    body["fields"].clone()
}

#[tokio::test]
async fn bad_certificates_get_kong_s_400_naming_the_field() {
    let t = tls_node().await;
    let leaf = t.ca.leaf(&["a.example.com"]);
    let other = t.ca.leaf(&["b.example.com"]);
    let post = |body: Value| t.node.admin(Method::POST, "/certificates", Some(body));

    let (status, body) = post(json!({"cert": "not a certificate", "key": leaf.key})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["name"], "schema violation");
    assert!(fields(&body)["cert"].as_str().unwrap().starts_with("invalid"), "{body}");

    let garbage = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    let (status, body) = post(json!({"cert": garbage, "key": leaf.key})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(fields(&body)["cert"].as_str().unwrap().starts_with("invalid certificate"), "{body}");

    let bad_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let (status, body) = post(json!({"cert": leaf.cert, "key": bad_key})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(fields(&body)["key"].as_str().unwrap().starts_with("invalid key"), "{body}");
    assert!(!body.to_string().contains("AAAA"), "the key's text is not echoed: {body}");

    let (status, body) = post(json!({"cert": leaf.cert, "key": other.key})).await;
    assert_eq!(
        (status, fields(&body)),
        (StatusCode::BAD_REQUEST, json!({"@entity": ["certificate does not match key"]}))
    );

    let (status, body) = post(json!({"cert": leaf.cert, "key": leaf.key, "cert_alt": other.cert})).await;
    assert_eq!(
        (status, fields(&body)),
        (
            StatusCode::BAD_REQUEST,
            json!({"@entity": ["all or none of these fields must be set: 'cert_alt', 'key_alt'"]})
        )
    );
    let (status, body) =
        post(json!({"cert": leaf.cert, "key": leaf.key, "cert_alt": other.cert, "key_alt": other.key})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(fields(&body)["@entity"][0].as_str().unwrap().contains("different type"), "two ECDSA keys: {body}");

    let (status, body) = post(json!({"cert": leaf.cert, "key": leaf.key, "snis": ["a.example.com:443"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = post(json!({"cert": leaf.cert, "key": leaf.key, "snis": ["a.*.com"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // An SNI belongs to one certificate.
    let first = t.add_certificate(&leaf, &["a.example.com"]).await;
    let (status, body) = post(json!({"cert": other.cert, "key": other.key, "snis": ["a.example.com"]})).await;
    let owner = first["id"].as_str().unwrap();
    assert_eq!(
        (status, fields(&body)),
        (
            StatusCode::BAD_REQUEST,
            json!({"snis": format!("a.example.com already associated with existing certificate '{owner}'")})
        )
    );
    let sni = json!({"name": "a.example.com", "certificate": {"id": owner}});
    let (status, body) = t.node.admin(Method::POST, "/snis", Some(sni)).await;
    assert_eq!((status, body["name"].clone()), (StatusCode::CONFLICT, json!("unique constraint violation")));
    let missing = json!({"name": "c.example.com", "certificate": {"id": uuid::Uuid::new_v4().to_string()}});
    let (status, body) = t.node.admin(Method::POST, "/snis", Some(missing)).await;
    assert_eq!((status, body["name"].clone()), (StatusCode::BAD_REQUEST, json!("foreign key violation")));
    // Nested under its certificate.
    let (status, body) = t.node.admin(Method::GET, &format!("/certificates/{owner}/snis"), None).await;
    assert_eq!((status, body["data"][0]["name"].clone()), (StatusCode::OK, json!("a.example.com")));
}

#[tokio::test]
async fn ca_certificates_must_be_one_unexpired_ca_certificate() {
    let t = tls_node().await;
    let post = |body: Value| t.node.admin(Method::POST, "/ca_certificates", Some(body));
    let (status, created) = post(json!({"cert": t.ca.pem, "tags": ["root"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["cert_digest"].as_str().map(str::len), Some(64), "{created}");
    let (status, body) = post(json!({"cert": t.ca.pem})).await;
    assert_eq!((status, body["name"].clone()), (StatusCode::CONFLICT, json!("unique constraint violation")));

    let leaf = t.ca.leaf(&["a.example.com"]);
    let (status, body) = post(json!({"cert": leaf.cert})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(fields(&body)["@entity"][0].as_str().unwrap().contains("\"CA\" basic constraint"), "{body}");
    let (status, body) = post(json!({"cert": format!("{}{}", TestCa::new().pem, TestCa::new().pem)})).await;
    assert_eq!(
        (status, fields(&body)),
        (StatusCode::BAD_REQUEST, json!({"@entity": ["please submit only one certificate at a time"]}))
    );
    let expired = TestCa::expired();
    let (status, body) = post(json!({"cert": expired})).await;
    assert_eq!(
        (status, fields(&body)),
        (StatusCode::BAD_REQUEST, json!({"@entity": ["certificate expired, \"Not After\" time is in the past"]}))
    );
}

/// Every byte SQLite has written for the node (the main file and its write-ahead log).
fn database_bytes(node: &TestNode) -> Vec<u8> {
    let StorageUrl::Sqlite(path) = &node.db.url else { panic!("a SQLite node") };
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", path.display())) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty());
    bytes
}

#[tokio::test]
async fn private_keys_are_sealed_at_rest_and_returned_as_kong_returns_them() {
    let t = tls_node().await;
    let leaf = t.ca.leaf(&["a.example.com"]);
    let created = t.add_certificate(&leaf, &["a.example.com"]).await;
    assert_eq!(created["key"], leaf.key.as_str(), "Kong returns the key on the Admin API");
    let id = created["id"].as_str().unwrap();
    let (_, read) = t.node.admin(Method::GET, &format!("/certificates/{id}"), None).await;
    assert_eq!(read["key"], leaf.key.as_str());
    // The key's base64 body never reaches the database file; the certificate does.
    let body_line = leaf.key.lines().nth(1).unwrap();
    let bytes = database_bytes(&t.node);
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(body_line), "the private key is sealed");
    assert!(contains(leaf.cert.lines().nth(1).unwrap()), "the certificate is stored as it is");
}

#[tokio::test]
async fn konnect_core_entities_serve_certificates_and_snis_too() {
    let t = tls_node().await;
    let leaf = t.ca.leaf(&["k.example.com"]);
    let base = format!("/v2/control-planes/{}/core-entities", t.node.node.control_plane.id);
    let body = json!({"cert": leaf.cert, "key": leaf.key, "snis": ["k.example.com"]});
    let (status, created) = t.node.post(&format!("{base}/certificates"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, snis) = t.node.get(&format!("{base}/snis")).await;
    assert_eq!((status, snis["data"][0]["name"].clone()), (StatusCode::OK, json!("k.example.com")));
    let (status, _) = t.node.call_as(None, Method::GET, &format!("{base}/certificates"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a token is needed");
    t.node.wait_config().await;
    assert_eq!(t.served_for("k.example.com").await, leaf.der);
}
