//! schemathesis (PyPI) against the three OpenAPI documents a real node serves, every check enabled: the run fails
//! on any server error and on any response that its document does not describe (status, content type, schema).
//! The other checks' findings (the documents' request schemas are looser than the handlers' validation, which
//! Kong's and Konnect's own documents are too) are printed, not failed on.
//!
//! Skipped, with a `schemathesis suite: SKIPPED` line, unless `GATEHOUSE_TEST_SCHEMATHESIS` names the `st`
//! binary (`.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use gatehouse_store::testing::TempDir;
use gatehouse_testkit::TestNode;

/// Test cases per operation: with about 130 operations over the three documents, the whole run stays within a
/// few minutes on two cores.
const MAX_EXAMPLES: &str = "10";

/// What a run may not find: a 5xx, or a response its document does not describe.
const FATAL_CHECKS: &[&str] =
    &["not_a_server_error", "response_schema_conformance", "status_code_conformance", "content_type_conformance"];

/// Generous: a run that takes longer has hung.
const RUN_LIMIT: Duration = Duration::from_secs(600);

struct Run {
    name: &'static str,
    document: String,
    headers: Vec<String>,
}

/// Runs `st` on one document; returns the failures found, per check, with an example of each.
async fn run(st: &str, dir: &std::path::Path, run: &Run) -> BTreeMap<String, Vec<String>> {
    let report = dir.join(format!("{}.ndjson", run.name));
    let mut cmd = tokio::process::Command::new(st);
    cmd.arg("run")
        .arg(&run.document)
        .args(["--checks", "all", "--max-examples", MAX_EXAMPLES, "--seed", "23", "--workers", "2"])
        .args(["--phases", "examples,coverage,fuzzing", "--no-shrink", "--request-timeout", "30"])
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(&report)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    for h in &run.headers {
        cmd.args(["-H", h]);
    }
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(RUN_LIMIT, cmd.output()).await.expect("schemathesis hung").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("--- schemathesis {} ({:.0?}, {})", run.name, started.elapsed(), output.status);
    // The summary lines, not the whole log.
    for line in stdout.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev() {
        println!("{line}");
    }
    let events = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!("no report from schemathesis ({e}): {}\n{stdout}", String::from_utf8_lossy(&output.stderr))
    });
    failures(&events)
}

/// The failed checks in schemathesis's NDJSON events: `{check name: [example]}`.
fn failures(events: &str) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in events.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else { continue };
        let mut checks = Vec::new();
        collect_checks(&event, &mut checks);
        for check in checks {
            let name = check["name"].as_str().unwrap_or("?").to_owned();
            let example = format!(
                "{} {} -> {}: {}",
                check["request"]["method"].as_str().unwrap_or("?"),
                check["request"]["uri"].as_str().unwrap_or("?"),
                check["response"]["status_code"],
                check["failure_info"]["failure"]["title"].as_str().unwrap_or(""),
            );
            let examples = found.entry(name).or_default();
            if examples.len() < 5 && !examples.contains(&example) {
                examples.push(example);
            }
        }
    }
    found
}

/// Every failed check object anywhere in an event (the report nests them under the scenario's interactions).
fn collect_checks<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map.get("status").and_then(Value::as_str) == Some("FAILURE") && map.contains_key("name") {
                out.push(value);
            }
            map.values().for_each(|v| collect_checks(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_checks(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_undescribed_response() {
    let Ok(st) = std::env::var("GATEHOUSE_TEST_SCHEMATHESIS") else {
        println!("schemathesis suite: SKIPPED (GATEHOUSE_TEST_SCHEMATHESIS is unset)");
        return;
    };
    let node = TestNode::start().await;
    // Something to find: an auth server with a scope, a claim and a client; a service with a route and a plugin.
    let (_, server) = node.post("/v1/auth-servers", json!({"name": "fuzzed", "audience": "fuzz"})).await;
    let server = server["id"].as_str().unwrap().to_owned();
    let (_, scope) = node.post(&format!("/v1/auth-servers/{server}/scopes"), json!({"name": "read"})).await;
    node.post(&format!("/v1/auth-servers/{server}/claims"), json!({"name": "team", "value": "blue"})).await;
    node.post(
        &format!("/v1/auth-servers/{server}/clients"),
        json!({"name": "app", "grant_types": ["client_credentials"], "allow_scopes": [scope["id"]]}),
    )
    .await;
    node.example_service().await;

    let dir = TempDir::new("schemathesis");
    let bearer = format!("Authorization: Bearer {}", node.token);
    let runs = [
        Run { name: "v1", document: format!("{}/v1/openapi.json", node.platform), headers: vec![bearer.clone()] },
        Run { name: "v2", document: format!("{}/v2/openapi.json", node.platform), headers: vec![bearer] },
        Run { name: "admin", document: format!("{}/openapi.json", node.node.admin_url()), headers: vec![] },
    ];
    let mut fatal = Vec::new();
    for r in &runs {
        let found = run(&st, dir.path(), r).await;
        for (check, examples) in &found {
            let is_fatal = FATAL_CHECKS.contains(&check.as_str());
            println!("{} {check}: {}", r.name, if is_fatal { "FAILED" } else { "reported" });
            for e in examples {
                println!("    {e}");
            }
            if is_fatal {
                fatal.push(format!("{} {check}: {}", r.name, examples.join(" | ")));
            }
        }
    }
    node.stop().await;
    assert!(fatal.is_empty(), "schemathesis found:\n{}", fatal.join("\n"));
}
