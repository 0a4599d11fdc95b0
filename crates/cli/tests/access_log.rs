//! The proxy's access log, through the real binary: one line per request with Kong's fields, in the node's log
//! format, to standard error or to a file, and never a token — neither the bearer token nor an `access_token`
//! query parameter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::{ProcessEnv, recording_upstream};
use gatehouse_store::testing::TestDatabase;

const BEARER: &str = "bearer-token-5f1d7c0a9e3b-must-not-be-logged";
const QUERY_TOKEN: &str = "query-token-8a2e4c6b1d3f-must-not-be-logged";

/// Creates a service in front of a recording upstream and a route `/logged` on the served control plane, then
/// sends one request carrying both tokens once the proxy has the route. Returns the upstream's address.
async fn proxy_one_request(base: &str, token: &str, proxy: &str) -> String {
    let http = reqwest::Client::new();
    let (upstream, _seen) = recording_upstream().await;
    let cps: Value = http
        .get(format!("{base}/v2/control-planes?filter[name][eq]=default"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entities = format!("{base}/v2/control-planes/{}/core-entities", cps["data"][0]["id"].as_str().unwrap());
    let created = http
        .post(format!("{entities}/services"))
        .bearer_auth(token)
        .json(&json!({"name": "logged-service", "url": upstream}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = http
        .post(format!("{entities}/services/logged-service/routes"))
        .bearer_auth(token)
        .json(&json!({"name": "logged-route", "paths": ["/logged"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // The configuration reaches the proxy asynchronously: wait for the route, with a probe that carries nothing.
    let mut routed = false;
    for _ in 0..500 {
        let status = http.get(format!("{proxy}/logged/ready")).send().await.unwrap().status();
        if status == 200 {
            routed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(routed, "the route reached the proxy");
    let res =
        http.get(format!("{proxy}/logged/x?a=1&access_token={QUERY_TOKEN}")).bearer_auth(BEARER).send().await.unwrap();
    assert_eq!(res.status(), 200);
    upstream.trim_start_matches("http://").to_owned()
}

fn access_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "gatehouse::access")
        .collect()
}

#[tokio::test]
async fn each_request_gets_a_line_with_kongs_fields_and_no_token() {
    let db = TestDatabase::sqlite();
    let env = ProcessEnv::for_db(&db);
    let token = env.create_token("access-log").await;
    let (mut process, base) = env.serve(&[]).await;
    let proxy = format!("http://{}", process.listener_address("proxy").await);
    let upstream = proxy_one_request(&base, &token, &proxy).await;
    assert!(process.interrupt(Duration::from_secs(10)).await.success());
    let logs = format!("{}\n{}", process.output.stdout_text(), process.output.stderr_text());

    let lines = access_lines(&logs);
    let line = lines.iter().find(|l| l["path"].as_str().is_some_and(|p| p.starts_with("/logged/x"))).unwrap();
    assert_eq!(line["path"], "/logged/x?a=1&access_token=[redacted]");
    assert_eq!((line["method"].as_str(), line["status"].as_u64()), (Some("GET"), Some(200)));
    assert_eq!((line["route"].as_str(), line["service"].as_str()), (Some("logged-route"), Some("logged-service")));
    assert_eq!(line["upstream"].as_str(), Some(upstream.as_str()));
    assert_eq!((line["client"].as_str(), line["bytes"].as_u64()), (Some("127.0.0.1"), Some(2)));
    assert_eq!(line["request_id"].as_str().map(str::len), Some(32));
    assert_eq!(line["outcome"], "proxied");
    assert!(line["consumer"].is_null());
    for latency in ["latency_kong", "latency_upstream", "latency_request"] {
        assert!(line[latency].is_u64(), "{latency}: {line}");
    }
    assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    // The readiness probes were logged too, and a request no route matched is logged as failed.
    assert!(lines.iter().any(|l| l["path"] == "/logged/ready" && l["status"] == 200));

    assert!(!logs.contains(BEARER), "the bearer token is in the logs");
    assert!(!logs.contains(QUERY_TOKEN), "the query token is in the logs");
    db.cleanup().await;
}

#[tokio::test]
async fn a_file_destination_takes_the_lines_and_off_writes_none() {
    let db = TestDatabase::sqlite();
    let dir = gatehouse_store::testing::TempDir::new("gatehouse-access-log");
    let file = dir.path().join("proxy-access.log");
    let env = ProcessEnv::for_db(&db).with("GATEHOUSE_GATEWAY__ACCESS_LOG", file.display().to_string());
    let token = env.create_token("access-log-file").await;
    let (mut process, base) = env.serve(&[]).await;
    let proxy = format!("http://{}", process.listener_address("proxy").await);
    proxy_one_request(&base, &token, &proxy).await;
    let unrouted = reqwest::get(format!("{proxy}/nowhere?token={QUERY_TOKEN}")).await.unwrap();
    assert_eq!(unrouted.status(), 404);
    assert!(process.interrupt(Duration::from_secs(10)).await.success());

    let written = std::fs::read_to_string(&file).unwrap();
    let lines = access_lines(&written);
    assert!(lines.iter().any(|l| l["path"] == "/logged/x?a=1&access_token=[redacted]"), "{written}");
    let missed = lines.iter().find(|l| l["path"] == "/nowhere?token=[redacted]").unwrap();
    assert_eq!((missed["status"].as_u64(), missed["outcome"].as_str()), (Some(404), Some("failed")));
    assert!(missed["route"].is_null() && missed["latency_upstream"].is_null());
    assert!(access_lines(&process.output.stderr_text()).is_empty(), "not on stderr as well");
    assert!(!written.contains(BEARER) && !written.contains(QUERY_TOKEN));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    db.cleanup().await;

    let db = TestDatabase::sqlite();
    let env = ProcessEnv::for_db(&db).with("GATEHOUSE_GATEWAY__ACCESS_LOG", "off");
    let (mut process, _) = env.serve(&[]).await;
    let proxy = format!("http://{}", process.listener_address("proxy").await);
    assert_eq!(reqwest::get(format!("{proxy}/nowhere")).await.unwrap().status(), 404);
    assert!(process.interrupt(Duration::from_secs(10)).await.success());
    let logs = process.output.stderr_text();
    assert!(logs.contains("\"listening\""), "logs were captured");
    assert!(access_lines(&logs).is_empty(), "off writes nothing");
    db.cleanup().await;
}

/// An access log that cannot be opened stops the node at start with the setting named, as nginx refuses to start,
/// rather than serving without the log the operator asked for.
#[tokio::test]
async fn an_access_log_that_cannot_be_opened_is_a_start_error() {
    let db = TestDatabase::sqlite();
    let dir = gatehouse_store::testing::TempDir::new("gatehouse-access-log-missing");
    let unwritable = dir.path().join("no-such-dir").join("access.log");
    let env = ProcessEnv::for_db(&db).with("GATEHOUSE_GATEWAY__ACCESS_LOG", unwritable.display().to_string());
    let (code, _, stderr) = gatehouse_testkit::run_to_end(&common::bin(), &["serve"], &env.vars, env.path()).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("gateway.access_log"), "{stderr}");
    assert!(stderr.contains("no-such-dir"), "the path is named: {stderr}");
    db.cleanup().await;
}
