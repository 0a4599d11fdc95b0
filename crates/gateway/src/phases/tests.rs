//! The phase runner end to end: a test-only plugin (`plugins/probe`, one folder and one registry line) runs in
//! every phase, and `log` runs once for a proxied request, a plugin's answer, an upstream failure and a request
//! no route matched.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use gatehouse_model::gateway::snapshot::{ConfigSnapshot, PluginInstance};

use crate::plugins::{Registry, probe};
use crate::proxy::harness::{route_to as route, service};
use crate::proxy::{Proxy, ProxySettings, serve};

/// An upstream that answers 200 "ok" to everything.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(b"ok"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn probe_instance(id: u128, route: Option<u128>, config: serde_json::Value) -> PluginInstance {
    PluginInstance {
        id: uuid::Uuid::from_u128(id),
        name: probe::NAME.into(),
        instance_name: None,
        enabled: true,
        route: route.map(uuid::Uuid::from_u128),
        service: None,
        consumer: None,
        protocols: vec!["http".into()],
        config: config.as_object().cloned().unwrap_or_default(),
    }
}

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

fn seen() -> Vec<String> {
    std::mem::take(&mut *probe::SEEN.lock().unwrap())
}

#[tokio::test]
async fn a_test_plugin_runs_in_every_phase_and_logs_every_outcome() {
    let up = upstream().await;
    let dead = closed_port().await;
    let settings =
        ProxySettings { workers: 1, registry: Registry::builtin().with(&probe::PLUGIN), ..Default::default() };
    let proxy = Proxy::new(settings);
    let snapshot = ConfigSnapshot {
        services: vec![service(1, up.port()), service(2, dead)],
        routes: vec![route(10, "/ok", 1), route(11, "/answered", 1), route(12, "/dead", 2)],
        plugins: vec![probe_instance(20, None, json!({})), probe_instance(21, Some(11), json!({"answer": 418}))],
        ..ConfigSnapshot::empty(None, 1)
    };
    proxy.install(&snapshot).unwrap();
    let listener =
        TcpListener::from_std(crate::proxy::reusable_listener("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve(proxy, listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    seen();

    assert_eq!(status_of(&client, format!("http://{addr}/ok")).await, 200);
    assert_eq!(seen(), ["rewrite", "access", "response 200", "log 200 proxied (access ran)"]);

    assert_eq!(status_of(&client, format!("http://{addr}/answered")).await, 418);
    assert_eq!(seen(), ["rewrite", "access", "response 418", "log 418 answered by probe (access ran)"]);

    assert_eq!(status_of(&client, format!("http://{addr}/dead")).await, 502);
    assert_eq!(seen(), ["rewrite", "access", "response 502", "log 502 failed 502 (access ran)"]);

    // No route: the global instance still sees `rewrite`, the response head and `log`.
    assert_eq!(status_of(&client, format!("http://{addr}/nowhere")).await, 404);
    assert_eq!(seen(), ["rewrite", "response 404", "log 404 failed 404 (no slot)"]);

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// Kong runs the `log` of plugins after the one that answered (their `access` is skipped): `prometheus`, at
/// priority 13, counts `ip-restriction`'s (priority 990) 403. (Not the probe: its record is shared with the test
/// above, which runs concurrently.)
#[tokio::test]
async fn log_plugins_after_an_answering_plugin_still_log() {
    let up = upstream().await;
    let proxy = Proxy::new(ProxySettings { workers: 1, ..Default::default() });
    let mut deny = probe_instance(
        21,
        Some(11),
        json!({"allow": null, "deny": ["127.0.0.1"], "status": null,
        "message": null}),
    );
    deny.name = "ip-restriction".into();
    let mut prometheus = probe_instance(
        30,
        None,
        json!({"per_consumer": false, "status_code_metrics": true,
        "ai_metrics": false, "latency_metrics": false, "bandwidth_metrics": false, "upstream_health_metrics": false,
        "wasm_metrics": false}),
    );
    prometheus.name = "prometheus".into();
    let snapshot = ConfigSnapshot {
        services: vec![service(1, up.port())],
        routes: vec![route(11, "/answered", 1)],
        plugins: vec![deny, prometheus],
        ..ConfigSnapshot::empty(None, 1)
    };
    proxy.install(&snapshot).unwrap();
    let metrics = proxy.metrics().clone();
    let listener =
        TcpListener::from_std(crate::proxy::reusable_listener("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve(proxy, listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    assert_eq!(status_of(&client, format!("http://{addr}/answered")).await, 403);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    let mut text = String::new();
    metrics.render(&mut text);
    let counted: Vec<&str> = text.lines().filter(|l| l.starts_with("kong_http_requests_total{")).collect();
    assert_eq!(counted.len(), 1, "{text}");
    assert!(counted[0].contains("code=\"403\",source=\"kong\"") && counted[0].ends_with(" 1"), "{text}");
}
