//! Hybrid mode end to end: a control plane (in this process, or the binary as a child process where SIGKILL is
//! the point) and data planes in this process, on loopback with ephemeral ports and temporary data dirs.
//!
//! Data planes reach the control plane through a small TCP forwarder owned by the test, so a control plane that is
//! killed and started again (on a new ephemeral port) is reached at the same address, as a real one would be at
//! its DNS name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use gatehouse::cluster::{CACHE_FILE, DataPlaneNode, generate_shared_cert, start_data_plane};
use gatehouse::node::NodeOptions;
use gatehouse_gateway::cluster::LinkState;
use gatehouse_runtime::config::{ClusterMtls, Config, Role};
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{GatehouseProcess, TestNode};

/// Heartbeats (and the reconnection cap) of every node in these tests: short, so a lost peer is noticed fast.
const PING: f64 = 0.3;

/// Polls `check` until it holds; panics after `within` (far beyond what a loaded machine takes). Returns how long
/// it took.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// A shared-mode certificate and key in `dir`.
fn shared_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    generate_shared_cert(&cert, &key, false).unwrap();
    (cert, key)
}

fn control_plane_settings(config: &mut Config, cert: &Path, key: &Path) {
    config.role = Role::ControlPlane;
    config.cluster.listen = "127.0.0.1:0".parse().unwrap();
    config.cluster.cert = Some(cert.to_owned());
    config.cluster.cert_key = Some(key.to_owned());
    config.cluster.ping_interval = Some(PING);
}

fn data_plane_config(data_dir: &Path, control_plane: SocketAddr, cert: &Path, key: &Path) -> Config {
    let mut config = Config { role: Role::DataPlane, data_dir: data_dir.to_owned(), ..Config::default() };
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.status.listen = "127.0.0.1:0".parse().unwrap();
    config.cluster.control_plane = Some(control_plane.to_string());
    config.cluster.cert = Some(cert.to_owned());
    config.cluster.cert_key = Some(key.to_owned());
    config.cluster.ping_interval = Some(PING);
    config
}

async fn start_control_plane(cert: &Path, key: &Path) -> TestNode {
    let (cert, key) = (cert.to_owned(), key.to_owned());
    TestNode::builder().configure(move |c| control_plane_settings(c, &cert, &key)).start().await.unwrap()
}

/// A TCP forwarder to whatever address `target` holds (none: connections are closed at once).
struct Forwarder {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
}

async fn forwarder(target: Option<SocketAddr>) -> Forwarder {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = Arc::new(Mutex::new(target));
    let current = target.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let Some(to) = *current.lock().unwrap() else { continue };
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Forwarder { addr, target }
}

/// Creates a service (the echo upstream's `/anything`) and a route `path` on the control plane's core entities.
async fn add_route(cp: &TestNode, echo: &str, name: &str, path: &str) {
    let base = format!("/v2/control-planes/{}/core-entities", cp.node.control_plane.id);
    let (status, body) =
        cp.post(&format!("{base}/services"), json!({"name": name, "url": format!("{echo}/anything")})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = cp.post(&format!("{base}/services/{name}/routes"), json!({"paths": [path]})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn get_status(http: &reqwest::Client, url: &str) -> Option<StatusCode> {
    http.get(url).send().await.ok().map(|r| r.status())
}

async fn serves(http: &reqwest::Client, dp: &DataPlaneNode, path: &str) -> bool {
    get_status(http, &format!("{}{path}", dp.proxy_url())).await == Some(StatusCode::OK)
}

async fn ready(http: &reqwest::Client, dp: &DataPlaneNode) -> bool {
    get_status(http, &format!("{}/status/ready", dp.status_url())).await == Some(StatusCode::OK)
}

#[tokio::test]
async fn a_route_created_on_the_control_plane_reaches_both_data_planes() {
    let dir = TempDir::new("hybrid");
    let (cert, key) = shared_pair(dir.path(), "cluster");
    let cp = start_control_plane(&cert, &key).await;
    let cluster = cp.node.cluster_addr.expect("a control plane binds the cluster listener");
    let http = reqwest::Client::new();
    assert!(
        get_status(&http, &format!("{}/status/ready", cp.node.status_url())).await == Some(StatusCode::OK),
        "a control plane is ready without a proxy"
    );
    assert!(http.get(cp.node.proxy_url()).send().await.is_err(), "a control plane runs no proxy");

    let mut dps = Vec::new();
    for i in 0..2 {
        let config = data_plane_config(&dir.path().join(format!("dp{i}")), cluster, &cert, &key);
        dps.push(start_data_plane(&config, NodeOptions::default()).await.unwrap());
    }
    for dp in &dps {
        eventually("data plane ready", Duration::from_secs(30), || ready(&http, dp)).await;
    }

    add_route(&cp, &cp.echo_url(), "example-service", "/anything").await;
    for (i, dp) in dps.iter().enumerate() {
        // Pushed, not polled for: printed, the bound is for a machine under any load.
        let took =
            eventually("route on the data plane", Duration::from_secs(30), || serves(&http, dp, "/anything")).await;
        println!("data plane {i} served the new route after {took:?}");
    }

    // Visibility: both nodes, each with the expected hash once it acknowledged.
    let cp_id = cp.node.control_plane.id;
    let (status, expected) = cp.get(&format!("/v2/control-planes/{cp_id}/expected-config-hash")).await;
    assert_eq!(status, StatusCode::OK, "{expected}");
    let expected = expected["expected_hash"].as_str().unwrap().to_owned();
    assert_eq!(expected.len(), 32);
    let in_sync = || async {
        let (_, page) = cp.get(&format!("/v2/control-planes/{cp_id}/nodes")).await;
        page["items"]
            .as_array()
            .is_some_and(|items| items.len() == 2 && items.iter().all(|n| n["config_hash"] == expected.as_str()))
    };
    eventually("both nodes report the expected hash", Duration::from_secs(30), in_sync).await;
    let (_, page) = cp.get(&format!("/v2/control-planes/{cp_id}/nodes?page[size]=1")).await;
    assert_eq!(page["page"]["total_count"], 2, "{page}");
    let first = &page["items"][0];
    assert_eq!(first["type"], "kong-proxy");
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));
    assert!(first["last_ping"].as_i64().unwrap() > 0 && !first["hostname"].as_str().unwrap().is_empty());
    let next = page["page"]["next"].as_str().expect("a second page");
    let (_, second) = cp.get(next).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(second["items"][0]["id"], first["id"]);
    let ids: Vec<String> = dps.iter().map(|d| d.node_id.to_string()).collect();
    assert!(ids.contains(&first["id"].as_str().unwrap().to_owned()));
    let (status, one) = cp.get(&format!("/v2/control-planes/{cp_id}/nodes/{}", ids[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["item"]["id"], ids[0].as_str());
    let (_, kong) = cp.admin(Method::GET, "/clustering/data-planes", None).await;
    let data = kong["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{kong}");
    assert!(data.iter().all(|d| d["sync_status"] == "normal"), "{kong}");

    // A lagging node is visible: the expected hash moves on while a stopped data plane stays where it was.
    let stopped = dps.pop().unwrap();
    let stopped_id = stopped.node_id;
    stopped.shutdown().await;
    add_route(&cp, &cp.echo_url(), "second", "/second").await;
    eventually("the running data plane gets the change", Duration::from_secs(30), || serves(&http, &dps[0], "/second"))
        .await;
    let (_, expected) = cp.get(&format!("/v2/control-planes/{cp_id}/expected-config-hash")).await;
    let (_, lagging) = cp.get(&format!("/v2/control-planes/{cp_id}/nodes/{stopped_id}")).await;
    assert_ne!(lagging["item"]["config_hash"], expected["expected_hash"], "{lagging}");
    let (status, _) = cp.delete(&format!("/v2/control-planes/{cp_id}/nodes/{stopped_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = cp.get(&format!("/v2/control-planes/{cp_id}/nodes/{stopped_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for dp in dps {
        dp.shutdown().await;
    }
    cp.stop().await;
}

/// The cached configuration file, and a data plane that starts from it without a control plane.
#[tokio::test]
async fn a_data_plane_serves_its_cache_without_the_control_plane_and_refuses_a_corrupted_one() {
    let dir = TempDir::new("hybrid-cache");
    let (cert, key) = shared_pair(dir.path(), "cluster");
    let cp = start_control_plane(&cert, &key).await;
    add_route(&cp, &cp.echo_url(), "cached", "/cached").await;
    let forward = forwarder(cp.node.cluster_addr).await;
    let http = reqwest::Client::new();
    let data = dir.path().join("dp");
    let config = data_plane_config(&data, forward.addr, &cert, &key);
    let dp = start_data_plane(&config, NodeOptions::default()).await.unwrap();
    eventually("route served", Duration::from_secs(30), || serves(&http, &dp, "/cached")).await;
    let cache = data.join(CACHE_FILE);
    // Written once the configuration is installed, before the control plane hears it was applied.
    eventually("cache written", Duration::from_secs(30), || std::future::ready(cache.exists())).await;
    dp.shutdown().await;
    let sealed = std::fs::read(&cache).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("/cached"), "the cache is not readable on disk");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o600);

    // The control plane is gone: the cache is what the data plane serves, from its start.
    *forward.target.lock().unwrap() = None;
    let dp = start_data_plane(&config, NodeOptions::default()).await.unwrap();
    assert!(ready(&http, &dp).await, "ready from the cache");
    assert!(serves(&http, &dp, "/cached").await);
    assert!(matches!(*dp.link.borrow(), LinkState::Connecting | LinkState::Disconnected(_)));
    dp.shutdown().await;

    // One flipped byte: refused, not served, and the node is not ready until the control plane sends one.
    let mut corrupted = sealed.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x40;
    std::fs::write(&cache, &corrupted).unwrap();
    let dp = start_data_plane(&config, NodeOptions::default()).await.unwrap();
    assert_eq!(
        get_status(&http, &format!("{}/status/ready", dp.status_url())).await,
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(get_status(&http, &format!("{}/cached", dp.proxy_url())).await, Some(StatusCode::NOT_FOUND));
    // The control plane back: the data plane gets the configuration and replaces the bad cache.
    *forward.target.lock().unwrap() = cp.node.cluster_addr;
    eventually("served again", Duration::from_secs(30), || serves(&http, &dp, "/cached")).await;
    assert!(ready(&http, &dp).await);
    let config_again = data_plane_config(&data, forward.addr, &cert, &key);
    eventually("the bad cache replaced", Duration::from_secs(30), || {
        std::future::ready(std::fs::read(&cache).is_ok_and(|bytes| bytes != corrupted))
    })
    .await;
    dp.shutdown().await;
    *forward.target.lock().unwrap() = None;
    let dp = start_data_plane(&config_again, NodeOptions::default()).await.unwrap();
    assert!(serves(&http, &dp, "/cached").await, "the rewritten cache opens");
    dp.shutdown().await;
    cp.stop().await;
}

/// The control plane, as a child process, SIGKILLed under load: the data planes keep serving every request;
/// a data plane restarted meanwhile serves its cache; the control plane back, a change made on it arrives.
#[tokio::test]
async fn data_planes_keep_serving_through_a_control_plane_kill() {
    let dir = TempDir::new("hybrid-kill");
    let (cert, key) = shared_pair(dir.path(), "cluster");
    // The upstream lives apart from the control plane, so killing it leaves the upstream up.
    let echo = TestNode::start().await;
    let env = common::ProcessEnv::for_db(&gatehouse_store::testing::TestDatabase::sqlite())
        .with("GATEHOUSE_ROLE", "control_plane")
        .with("GATEHOUSE_CLUSTER__LISTEN", "127.0.0.1:0")
        .with("GATEHOUSE_CLUSTER__CERT", cert.display().to_string())
        .with("GATEHOUSE_CLUSTER__CERT_KEY", key.display().to_string())
        .with("GATEHOUSE_CLUSTER__PING_INTERVAL", PING.to_string());
    let token = env.create_token("hybrid").await;
    let spawn = || GatehouseProcess::spawn(&common::bin(), &["serve", "--log-format", "json"], &env.vars, env.path());
    let mut cp = spawn();
    let cluster: SocketAddr = cp.listener_address("cluster").await.parse().unwrap();
    let platform = format!("http://{}", cp.listener_address("platform").await);
    let forward = forwarder(Some(cluster)).await;
    let http = reqwest::Client::new();
    let api = |platform: String, token: String| {
        let http = http.clone();
        move |method: Method, path: String, body: Option<Value>| {
            let (http, platform, token) = (http.clone(), platform.clone(), token.clone());
            async move {
                let mut req = http.request(method, format!("{platform}{path}")).bearer_auth(&token);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let res = req.send().await.unwrap();
                let status = res.status();
                (status, res.json::<Value>().await.unwrap_or(Value::Null))
            }
        }
    };
    let call = api(platform.clone(), token.clone());
    let (_, cps) = call(Method::GET, "/v2/control-planes".into(), None).await;
    let cp_id = cps["data"][0]["id"].as_str().unwrap().to_owned();
    let entities = format!("/v2/control-planes/{cp_id}/core-entities");
    let (status, body) = call(
        Method::POST,
        format!("{entities}/services"),
        Some(json!({"name": "s", "url": format!("{}/anything", echo.echo_url())})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) =
        call(Method::POST, format!("{entities}/services/s/routes"), Some(json!({"paths": ["/load"]}))).await;
    assert_eq!(status, StatusCode::CREATED);

    let configs: Vec<Config> =
        (0..2).map(|i| data_plane_config(&dir.path().join(format!("dp{i}")), forward.addr, &cert, &key)).collect();
    let mut dps = Vec::new();
    for config in &configs {
        dps.push(start_data_plane(config, NodeOptions::default()).await.unwrap());
    }
    for dp in &dps {
        eventually("route on the data plane", Duration::from_secs(30), || serves(&http, dp, "/load")).await;
    }

    // Load on both data planes: 8 clients, 250 requests each, alternating between them. The control plane is
    // killed once a fifth of them are done.
    let urls: Arc<Vec<String>> = Arc::new(dps.iter().map(|d| format!("{}/load", d.proxy_url())).collect());
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (urls, done, failed, http) = (urls.clone(), done.clone(), failed.clone(), reqwest::Client::new());
            tokio::spawn(async move {
                for i in 0..250 {
                    let url = &urls[(c + i) % urls.len()];
                    match http.get(url).send().await {
                        Ok(res) if res.status() == StatusCode::OK => {}
                        other => {
                            eprintln!("failed: {:?}", other.map(|r| r.status()));
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    eventually("load under way", Duration::from_secs(60), || {
        let done = done.clone();
        async move { done.load(Ordering::Relaxed) >= 400 }
    })
    .await;
    cp.kill_hard().await;
    *forward.target.lock().unwrap() = None;
    let killed_at = done.load(Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let total = done.load(Ordering::Relaxed);
    println!("{total} requests, {} after the kill, {} failed", total - killed_at, failed.load(Ordering::Relaxed));
    assert!(total - killed_at > 0, "requests ran after the kill");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");

    // A data plane restarted while the control plane is down serves its cache.
    let restarted = dps.pop().unwrap();
    restarted.shutdown().await;
    let dp = start_data_plane(&configs[1], NodeOptions::default()).await.unwrap();
    assert!(serves(&http, &dp, "/load").await, "cached configuration served");
    dps.push(dp);

    // The control plane back (same database, new port behind the same address): a change made on it arrives.
    let mut cp = spawn();
    let cluster: SocketAddr = cp.listener_address("cluster").await.parse().unwrap();
    let platform = format!("http://{}", cp.listener_address("platform").await);
    let call = api(platform, token);
    let (status, body) =
        call(Method::POST, format!("{entities}/services/s/routes"), Some(json!({"paths": ["/after"]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    *forward.target.lock().unwrap() = Some(cluster);
    for dp in &dps {
        let took =
            eventually("the change made after the restart", Duration::from_secs(30), || serves(&http, dp, "/after"))
                .await;
        println!("the change arrived {took:?} after the control plane was reachable again");
        assert!(serves(&http, dp, "/load").await);
    }
    // The records survived the restart: both nodes are known.
    let (_, nodes) = call(Method::GET, format!("/v2/control-planes/{cp_id}/nodes"), None).await;
    assert_eq!(nodes["page"]["total_count"], 2, "{nodes}");
    for dp in dps {
        dp.shutdown().await;
    }
    cp.kill_hard().await;
    echo.stop().await;
}

#[tokio::test]
async fn foreign_certificates_and_unservable_versions_are_refused() {
    let dir = TempDir::new("hybrid-trust");
    let (cert, key) = shared_pair(dir.path(), "cluster");
    let (other_cert, other_key) = shared_pair(dir.path(), "other");
    let cp = start_control_plane(&cert, &key).await;
    let cluster = cp.node.cluster_addr.unwrap();
    let cp_id = cp.node.control_plane.id;

    // Shared mode: another shared certificate is refused, on both sides.
    let config = data_plane_config(&dir.path().join("foreign"), cluster, &other_cert, &other_key);
    let dp = start_data_plane(&config, NodeOptions::default()).await.unwrap();
    let mut link = dp.link.clone();
    let state = tokio::time::timeout(
        Duration::from_secs(30),
        link.wait_for(|s| matches!(s, LinkState::Disconnected(_) | LinkState::Refused(_))),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert!(refused_certificate(&state), "{state:?}");
    dp.shutdown().await;

    // A data plane whose major version the control plane cannot serve is refused with the reason.
    let config = data_plane_config(&dir.path().join("future"), cluster, &cert, &key);
    let dp = start_data_plane(&config, NodeOptions { version: Some("99.0.0".into()), ..NodeOptions::default() })
        .await
        .unwrap();
    let mut link = dp.link.clone();
    let state = tokio::time::timeout(Duration::from_secs(30), link.wait_for(|s| matches!(s, LinkState::Refused(_))))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert!(matches!(&state, LinkState::Refused(reason) if reason.contains("major version 99")), "{state:?}");
    dp.shutdown().await;
    let (_, nodes) = cp.get(&format!("/v2/control-planes/{cp_id}/nodes")).await;
    assert_eq!(nodes["page"]["total_count"], 0, "no refused node is recorded: {nodes}");
    cp.stop().await;
}

/// Waits until the data plane's link is in a state `check` accepts; panics with the last state after 30 s.
async fn wait_link(dp: &DataPlaneNode, check: fn(&LinkState) -> bool) -> LinkState {
    let mut link = dp.link.clone();
    match tokio::time::timeout(Duration::from_secs(30), link.wait_for(check)).await {
        Ok(Ok(state)) => state.clone(),
        _ => panic!("link state: {:?}", *dp.link.borrow()),
    }
}

/// Whether the link says the control plane refused this data plane's certificate (a TLS 1.3 client learns it from
/// the alert that follows its handshake).
fn refused_certificate(state: &LinkState) -> bool {
    matches!(state, LinkState::Disconnected(reason)
        if ["certificate", "fatal alert"].iter().any(|word| reason.to_lowercase().contains(word)))
}

/// PKI mode: certificates signed by the cluster CA are accepted, others only once pinned through
/// `dp-client-certificates`, and not after the pin is deleted.
#[tokio::test]
async fn pki_mode_takes_the_ca_and_pinned_certificates() {
    let dir = TempDir::new("hybrid-pki");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "cluster CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let pem = gatehouse_net::tls::pem_encode;
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca_path = write("ca.crt", pem("CERTIFICATE", ca.der()));
    let signed = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            write(&format!("{name}.crt"), pem("CERTIFICATE", cert.der())),
            write(&format!("{name}.key"), pem("PRIVATE KEY", &key.serialize_der())),
        )
    };
    let (cp_cert, cp_key) = signed("cp");
    let (dp_cert, dp_key) = signed("dp");
    let (stranger_cert, stranger_key) = shared_pair(dir.path(), "stranger");
    let ca_for_cp = ca_path.clone();
    let cp = TestNode::builder()
        .configure(move |c| {
            control_plane_settings(c, &cp_cert, &cp_key);
            c.cluster.mtls = ClusterMtls::Pki;
            c.cluster.ca_cert = Some(ca_for_cp);
        })
        .start()
        .await
        .unwrap();
    let cluster = cp.node.cluster_addr.unwrap();
    let cp_id = cp.node.control_plane.id;
    add_route(&cp, &cp.echo_url(), "pki", "/pki").await;
    let http = reqwest::Client::new();
    let pki_config = |name: &str, cert: &Path, key: &Path| {
        let mut config = data_plane_config(&dir.path().join(name), cluster, cert, key);
        config.cluster.mtls = ClusterMtls::Pki;
        config.cluster.ca_cert = Some(ca_path.clone());
        config.cluster.server_name = Some("localhost".into());
        config
    };

    let dp = start_data_plane(&pki_config("signed", &dp_cert, &dp_key), NodeOptions::default()).await.unwrap();
    eventually("a CA-signed data plane is served", Duration::from_secs(30), || serves(&http, &dp, "/pki")).await;
    dp.shutdown().await;

    let stranger = pki_config("stranger", &stranger_cert, &stranger_key);
    let dp = start_data_plane(&stranger, NodeOptions::default()).await.unwrap();
    wait_link(&dp, refused_certificate).await;
    assert!(!serves(&http, &dp, "/pki").await);

    // Pinned: the same data plane gets in at its next attempt.
    let (status, pinned) = cp
        .post(
            &format!("/v2/control-planes/{cp_id}/dp-client-certificates"),
            json!({"cert": std::fs::read_to_string(&stranger_cert).unwrap(), "title": "edge-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pinned}");
    let pin_id = pinned["item"]["id"].as_str().unwrap().to_owned();
    eventually("a pinned data plane is served", Duration::from_secs(30), || serves(&http, &dp, "/pki")).await;
    let (_, list) = cp.get(&format!("/v2/control-planes/{cp_id}/dp-client-certificates")).await;
    assert_eq!(list["items"][0]["title"], "edge-1", "{list}");
    let (status, _) = cp.get(&format!("/v2/control-planes/{cp_id}/dp-client-certificates/{pin_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) =
        cp.post(&format!("/v2/control-planes/{cp_id}/dp-client-certificates"), json!({"cert": "not a PEM"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    dp.shutdown().await;

    // Unpinned: refused again once the control plane has reloaded its pins, which it does when the bus delivers
    // the deletion (asynchronously, as for every node); a data plane that still got in is stopped and retried.
    let (status, _) = cp.delete(&format!("/v2/control-planes/{cp_id}/dp-client-certificates/{pin_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let started = tokio::time::Instant::now();
    for attempt in 0.. {
        let mut fresh = stranger.clone();
        fresh.data_dir = dir.path().join(format!("stranger-again-{attempt}"));
        let dp = start_data_plane(&fresh, NodeOptions::default()).await.unwrap();
        let state = wait_link(&dp, |s| refused_certificate(s) || matches!(s, LinkState::Connected)).await;
        dp.shutdown().await;
        if refused_certificate(&state) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "an unpinned data plane still gets in: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cp.stop().await;
}

/// The tutorial with the proxy being a data plane: the `oauth2-introspection` plugin, configured on the control
/// plane, runs on the data plane and calls the control plane's issuer.
#[tokio::test]
async fn the_tutorial_runs_with_the_proxy_as_a_data_plane() {
    let dir = TempDir::new("hybrid-tutorial");
    let (cert, key) = shared_pair(dir.path(), "cluster");
    let cp = start_control_plane(&cert, &key).await;
    let tutorial = cp.tutorial_setup("RS256").await;
    add_route(&cp, &cp.echo_url(), "example-service", "/anything").await;
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", tutorial.client_id, tutorial.client_secret));
    let (status, plugin) = cp
        .post(
            &format!("/v2/control-planes/{}/core-entities/plugins", cp.node.control_plane.id),
            json!({"name": "oauth2-introspection", "config": {
                "introspection_url": format!("{}/introspect", tutorial.issuer),
                "authorization_value": format!("Basic {basic}"),
                "consumer_by": "client_id",
                "custom_claims_forward": ["test-claim"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let config = data_plane_config(&dir.path().join("dp"), cp.node.cluster_addr.unwrap(), &cert, &key);
    let dp = start_data_plane(&config, NodeOptions::default()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/anything", dp.proxy_url());
    eventually("the plugin runs on the data plane", Duration::from_secs(30), || async {
        get_status(&http, &url).await == Some(StatusCode::UNAUTHORIZED)
    })
    .await;
    let (status, token) =
        cp.token(&tutorial.issuer, &tutorial.client_id, &tutorial.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let access_token = token["access_token"].as_str().unwrap();
    let res = http.get(&url).bearer_auth(access_token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let echoed: Value = res.json().await.unwrap();
    let headers = echoed["headers"].as_object().unwrap();
    let credential = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-credential-client-id")).map(|(_, v)| v);
    assert_eq!(credential.and_then(Value::as_str), Some(tutorial.client_id.as_str()), "{echoed}");
    // The secret travelled to the data plane sealed in transit (TLS) and is sealed at rest in its cache.
    let cache = std::fs::read(dir.path().join("dp").join(CACHE_FILE)).unwrap();
    assert!(!String::from_utf8_lossy(&cache).contains(&basic), "the plugin's secret is not in clear on disk");
    dp.shutdown().await;
    cp.stop().await;
}
