//! Upstream targets named by a host name (issue 19): resolved through the name server in `gateway.dns_resolver`
//! (Kong's `dns_resolver`), here a real DNS server on a loopback UDP port serving an in-memory zone, and resolved
//! again when the answer's TTL runs out, so a changed record moves the traffic. A name that does not resolve is
//! Kong's `DNS_ERROR` and takes no traffic. Without `dns_resolver` the system's resolver answers (`localhost`).
//! Changes are waited for by polling with a generous deadline, never by sleeping for the TTL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::backends::Backend;
use gatehouse_testkit::TestNode;

const ZONE: &str = "gatehouse.test.";
/// Short, so the test waits about a second for a change; the proxy never resolves a name more often than this.
const TTL: u32 = 1;

/// An authoritative name server for [`ZONE`] on a loopback UDP port.
struct NameServer {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    serial: u32,
    _server: Server<Catalog>,
}

impl NameServer {
    async fn start() -> NameServer {
        let origin = Name::from_str(ZONE).unwrap();
        let zone = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_str("ns.gatehouse.test.").unwrap(),
            Name::from_str("admin.gatehouse.test.").unwrap(),
            1,
            60,
            60,
            60,
            TTL,
        );
        assert!(zone.upsert(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1).await);
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        NameServer { addr, zone, serial: 1, _server: server }
    }

    /// Makes `name` (relative to the zone) answer `ip` alone, or nothing.
    async fn set(&mut self, name: &str, ip: Option<Ipv4Addr>) {
        self.set_all(name, ip.as_slice()).await;
    }

    /// Makes `name` answer every one of `ips` (nothing when empty).
    async fn set_all(&mut self, name: &str, ips: &[Ipv4Addr]) {
        let name = Name::from_str(&format!("{name}.{ZONE}")).unwrap();
        self.zone.records_mut().await.remove(&RrKey::new(LowerName::new(&name), RecordType::A));
        for ip in ips {
            self.serial += 1;
            assert!(self.zone.upsert(Record::from_rdata(name.clone(), TTL, RData::A(A(*ip))), self.serial).await);
        }
    }
}

/// A node whose `gateway.dns_resolver` is `dns`.
async fn node_asking(dns: &NameServer) -> TestNode {
    let resolver = dns.addr;
    TestNode::builder()
        .configure(move |c| c.gateway.dns_resolver = vec![resolver])
        .start()
        .await
        .expect("a node on SQLite")
}

async fn health(node: &TestNode, upstream: &str) -> Vec<Value> {
    let (status, body) = node.admin(Method::GET, &format!("/upstreams/{upstream}/health"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

fn entry<'a>(health: &'a [Value], target: &str) -> &'a Value {
    health.iter().find(|t| t["target"] == target).unwrap_or_else(|| panic!("{target} missing: {health:?}"))
}

/// Sends requests until one is answered by `want`; panics past a generous deadline.
async fn until_answered_by(node: &TestNode, path: &str, want: &str) {
    let client = reqwest::Client::new();
    let started = tokio::time::Instant::now();
    loop {
        let r = client.get(format!("{}{path}", node.proxy_url())).send().await.unwrap();
        if r.status() == StatusCode::OK && r.text().await.unwrap() == want {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{want} never answered {path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn answers(node: &TestNode, path: &str, n: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = client.get(format!("{}{path}", node.proxy_url())).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        out.push(r.text().await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_changed_record_moves_the_traffic_after_its_ttl() {
    let mut dns = NameServer::start().await;
    // Two backends on the same port of two loopback addresses: the name's record decides which one is reached.
    let old = Backend::start_on("old", "127.0.0.1:0".parse().unwrap()).await;
    let port = old.addr.port();
    let new = Backend::start_on("new", SocketAddr::new(IpAddr::from([127, 0, 0, 2]), port)).await;
    dns.set("app", Some(Ipv4Addr::new(127, 0, 0, 1))).await;

    let node = node_asking(&dns).await;
    let target = format!("app.gatehouse.test:{port}");
    let missing = format!("missing.gatehouse.test:{port}");
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "named"})).await;
    node.admin_ok(Method::POST, "/upstreams/named/targets", json!({"target": target})).await;
    node.admin_ok(Method::POST, "/services", json!({"name": "dns", "host": "named"})).await;
    node.admin_ok(Method::POST, "/services/dns/routes", json!({"paths": ["/dns"]})).await;
    node.wait_config().await;

    assert!(answers(&node, "/dns", 5).await.iter().all(|a| a == "old"));
    let h = health(&node, "named").await;
    let app = &entry(&h, &target)["data"];
    assert_eq!(app["dns"], "A", "{app}");
    assert_eq!(
        app["addresses"],
        json!([{"ip": "127.0.0.1", "port": port, "health": "HEALTHCHECKS_OFF", "weight": 100}])
    );

    // The record changes; within its TTL (and a request or two) the traffic follows it.
    dns.set("app", Some(Ipv4Addr::new(127, 0, 0, 2))).await;
    until_answered_by(&node, "/dns", "new").await;
    assert!(answers(&node, "/dns", 5).await.iter().all(|a| a == "new"), "the old address is no longer used");
    let h = health(&node, "named").await;
    assert_eq!(entry(&h, &target)["data"]["addresses"][0]["ip"], "127.0.0.2");

    // Kong's per-address endpoints: the name's one address set unhealthy leaves the target nothing to send to.
    let address = |ip: &str, state: &str| format!("/upstreams/named/targets/{target}/{ip}:{port}/{state}");
    let (status, _) = node.admin(Method::PUT, &address("127.0.0.2", "unhealthy"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let r = reqwest::get(format!("{}/dns", node.proxy_url())).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "no address left");
    let (status, body) = node.admin(Method::PUT, &address("127.0.0.9", "unhealthy"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not one of the name's addresses: {body}");
    assert!(body["message"].as_str().unwrap().contains("127.0.0.9"), "{body}");
    let (status, _) = node.admin(Method::PUT, &address("127.0.0.2", "healthy"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(answers(&node, "/dns", 3).await.iter().all(|a| a == "new"));

    // A name the server does not know: DNS_ERROR, and no request goes its way.
    node.admin_ok(Method::POST, "/upstreams/named/targets", json!({"target": missing})).await;
    node.wait_config().await;
    let started = tokio::time::Instant::now();
    while entry(&health(&node, "named").await, &missing)["health"] != "DNS_ERROR" {
        assert!(started.elapsed() < Duration::from_secs(30), "{missing} never reported DNS_ERROR");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answers(&node, "/dns", 10).await.iter().all(|a| a == "new"), "every request reaches the resolved name");
    let h = health(&node, "named").await;
    assert_eq!(entry(&h, &missing)["data"]["addresses"], json!([]));
    assert_eq!(entry(&h, &target)["health"], "HEALTHCHECKS_OFF");
    drop(new);
    node.stop().await;
}

/// Kong's rule for a name's addresses (`balancers.lua`, `addAddress`): each carries the target's full weight. A
/// name answering two addresses beside an IP target of the same weight gets two thirds of the requests (a third
/// per address), not half; `GET …/health` shows each address with the target's weight.
#[tokio::test]
async fn every_address_of_a_name_carries_the_targets_weight() {
    let mut dns = NameServer::start().await;
    let one = Backend::start_on("one", "127.0.0.1:0".parse().unwrap()).await;
    let port = one.addr.port();
    let two = Backend::start_on("two", SocketAddr::new(IpAddr::from([127, 0, 0, 2]), port)).await;
    let three = Backend::start_on("three", SocketAddr::new(IpAddr::from([127, 0, 0, 3]), port)).await;
    dns.set_all("pair", &[Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)]).await;
    let node = node_asking(&dns).await;
    let (name, ip) = (format!("pair.gatehouse.test:{port}"), format!("127.0.0.3:{port}"));
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "weighted"})).await;
    for target in [&name, &ip] {
        node.admin_ok(Method::POST, "/upstreams/weighted/targets", json!({"target": target, "weight": 100})).await;
    }
    node.admin_ok(Method::POST, "/services", json!({"name": "weighted", "host": "weighted"})).await;
    node.admin_ok(Method::POST, "/services/weighted/routes", json!({"paths": ["/w"]})).await;
    node.wait_config().await;
    let started = tokio::time::Instant::now();
    while entry(&health(&node, "weighted").await, &name)["data"]["addresses"].as_array().is_none_or(|a| a.len() < 2) {
        assert!(started.elapsed() < Duration::from_secs(30), "{name} never resolved to both addresses");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let h = health(&node, "weighted").await;
    let data = &entry(&h, &name)["data"];
    assert!(data["addresses"].as_array().unwrap().iter().all(|a| a["weight"] == 100), "{data}");
    assert_eq!(data["weight"], json!({"total": 200, "available": 200, "unavailable": 0}), "{data}");
    assert_eq!(data["nodeWeight"], 100);

    let got = answers(&node, "/w", 300).await;
    let count = |who: &str| got.iter().filter(|a| *a == who).count();
    // Round-robin over a cycle of three is exact; a little room for the one rebuild of the schedule when the
    // name's answer arrived.
    for who in ["one", "two", "three"] {
        assert!((95..=105).contains(&count(who)), "{who}: {} of 300 (Kong's rule: a third each)", count(who));
    }
    drop((two, three));
    node.stop().await;
}

#[tokio::test]
async fn without_a_resolver_the_systems_resolves_localhost() {
    let backend = Backend::start("local").await;
    let node = TestNode::start().await;
    let target = format!("localhost:{}", backend.addr.port());
    node.admin_ok(Method::POST, "/upstreams", json!({"name": "local"})).await;
    node.admin_ok(Method::POST, "/upstreams/local/targets", json!({"target": target})).await;
    node.admin_ok(Method::POST, "/services", json!({"name": "local", "host": "local"})).await;
    node.admin_ok(Method::POST, "/services/local/routes", json!({"paths": ["/local"]})).await;
    node.wait_config().await;
    assert!(answers(&node, "/local", 5).await.iter().all(|a| a == "local"));
    let h = health(&node, "local").await;
    let ips = entry(&h, &target)["data"]["addresses"].as_array().unwrap().clone();
    assert!(ips.iter().any(|a| a["ip"] == "127.0.0.1"), "{ips:?}");
    node.stop().await;
}
