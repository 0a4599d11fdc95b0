//! A real Prometheus server scrapes a node's status listener, and its query API answers
//! `sum(kong_http_requests_total)` with the number of requests sent. Needs Debian's `prometheus` package:
//! `GATEHOUSE_TEST_PROMETHEUS` (set by `.ci/run`) names the binary and makes the suite required; without it the
//! binary is looked up on the PATH, and when absent the suite prints `Prometheus suite: SKIPPED`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

fn prometheus_binary() -> Option<String> {
    if let Ok(path) = std::env::var("GATEHOUSE_TEST_PROMETHEUS") {
        assert!(std::path::Path::new(&path).is_file(), "GATEHOUSE_TEST_PROMETHEUS={path} is not a file");
        return Some(path);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| format!("{dir}/prometheus"))
        .find(|path| std::path::Path::new(path).is_file())
}

/// A free loopback port for Prometheus's own listener (it logs the configured address, not the bound one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn prometheus_scrapes_the_status_listener() {
    let Some(binary) = prometheus_binary() else {
        println!("Prometheus suite: SKIPPED (no prometheus binary; set GATEHOUSE_TEST_PROMETHEUS)");
        return;
    };
    let node = TestNode::start().await;
    node.example_service().await;
    node.admin_ok(Method::POST, "/plugins", json!({"name": "prometheus", "config": {"status_code_metrics": true}}))
        .await;
    node.wait_config().await;
    let client = reqwest::Client::new();
    for _ in 0..7 {
        assert!(client.get(format!("{}/anything", node.proxy_url())).send().await.unwrap().status().is_success());
    }

    let dir = tempfile_dir();
    let target = node.node.status_addr;
    let config = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: gatehouse\n    \
         static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    // Killed when dropped, however the test ends.
    let _server = tokio::process::Command::new(&binary)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));

    // Prometheus scrapes on its own schedule: ask until the sum is there (a backstop bounds the wait).
    let query = format!("http://127.0.0.1:{port}/api/v1/query");
    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let res = client.get(&query).query(&[("query", "sum(kong_http_requests_total)")]).send().await;
            if let Ok(res) = res
                && let Ok(body) = res.json::<Value>().await
                && let Some(value) = body["data"]["result"][0]["value"][1].as_str()
            {
                return value.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("Prometheus never returned sum(kong_http_requests_total)");
    assert_eq!(answer, "7");

    let up = client.get(&query).query(&[("query", "up{job=\"gatehouse\"}")]).send().await.unwrap();
    let up: Value = up.json().await.unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    let _ = std::fs::remove_dir_all(&dir);
    println!("Prometheus suite: passed ({binary})");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-prometheus-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
