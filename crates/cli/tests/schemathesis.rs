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

/// Test cases per operation: with about 290 operations over the three documents, the whole run stays within a
/// few minutes on two cores. `GATEHOUSE_TEST_SCHEMATHESIS_EXAMPLES` asks for more (a deeper run by hand).
const MAX_EXAMPLES: &str = "20";

/// What a run may not find: a 5xx, or a response its document does not describe.
const FATAL_CHECKS: &[&str] =
    &["not_a_server_error", "response_schema_conformance", "status_code_conformance", "content_type_conformance"];

/// Generous: a run that takes longer has hung.
const RUN_LIMIT: Duration = Duration::from_secs(600);

struct Run {
    name: &'static str,
    document: String,
    headers: Vec<String>,
    /// Path parameters pinned to what exists, so that cases reach past the 404 of a made-up parent.
    parameters: Vec<(&'static str, String)>,
}

/// Runs `st` on one document; returns the failures found, per check, with an example of each.
async fn run(st: &str, dir: &std::path::Path, run: &Run) -> BTreeMap<String, Vec<String>> {
    let report = dir.join(format!("{}.ndjson", run.name));
    let config = dir.join(format!("{}.toml", run.name));
    let mut toml = String::from("[parameters]\n");
    for (name, value) in &run.parameters {
        toml.push_str(&format!("\"path.{name}\" = \"{value}\"\n"));
    }
    std::fs::write(&config, toml).unwrap();
    let examples = std::env::var("GATEHOUSE_TEST_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_owned());
    let mut cmd = tokio::process::Command::new(st);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&run.document)
        .args(["--checks", "all", "--max-examples", &examples, "--seed", "23", "--workers", "2"])
        .args(["--phases", "examples,coverage,fuzzing", "--no-shrink", "--request-timeout", "30"])
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(&report)
        // schemathesis keeps a cache of what it found in its working directory: the report directory, not the
        // source tree.
        .current_dir(dir)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    for h in &run.headers {
        cmd.args(["-H", h]);
    }
    let started = tokio::time::Instant::now();
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

/// The failed checks in schemathesis's NDJSON events, `{check name: [examples]}`: each scenario's recorder holds
/// its checks and its interactions by case id.
fn failures(events: &str) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in events.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else { continue };
        if let Some(error) = event.get("NonFatalError") {
            // schemathesis's own trouble generating a case (not a finding about the server).
            println!("schemathesis error on {}: {}", error["label"], error["value"]["message"]);
            continue;
        }
        let recorder = &event["ScenarioFinished"]["recorder"];
        let Some(checks) = recorder["checks"].as_object() else { continue };
        for (case, results) in checks {
            for check in results.as_array().into_iter().flatten().filter(|c| c["status"] == "failure") {
                let interaction = &recorder["interactions"][case];
                let failure = &check["failure_info"]["failure"];
                let example = format!(
                    "{} {} -> {}: {}",
                    interaction["request"]["method"].as_str().unwrap_or("?"),
                    interaction["request"]["uri"].as_str().unwrap_or("?"),
                    interaction["response"]["status_code"],
                    failure["title"].as_str().unwrap_or(""),
                );
                let examples = found.entry(check["name"].as_str().unwrap_or("?").to_owned()).or_default();
                if examples.len() < 5 && !examples.contains(&example) {
                    examples.push(example);
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_undescribed_response() {
    let Ok(st) = std::env::var("GATEHOUSE_TEST_SCHEMATHESIS") else {
        println!("schemathesis suite: SKIPPED (GATEHOUSE_TEST_SCHEMATHESIS is unset)");
        return;
    };
    // PostgreSQL when the suite has it (its types are stricter than SQLite's), SQLite otherwise.
    let node = match TestNode::builder().postgres().start().await {
        Some(node) => node,
        None => TestNode::start().await,
    };
    // Something to find: an auth server with a scope, a claim and a client; a service with a route and a plugin.
    let (_, server) = node.post("/v1/auth-servers", json!({"name": "fuzzed", "audience": "fuzz"})).await;
    let server = server["id"].as_str().unwrap().to_owned();
    let (_, scope) = node.post(&format!("/v1/auth-servers/{server}/scopes"), json!({"name": "read"})).await;
    let (_, claim) =
        node.post(&format!("/v1/auth-servers/{server}/claims"), json!({"name": "team", "value": "blue"})).await;
    let (_, client) = node
        .post(
            &format!("/v1/auth-servers/{server}/clients"),
            json!({"name": "app", "grant_types": ["client_credentials"], "allow_scopes": [scope["id"]]}),
        )
        .await;
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    node.example_service().await;
    node.admin_ok(reqwest::Method::POST, "/consumers", json!({"username": "alice"})).await;
    node.admin_ok(reqwest::Method::POST, "/consumers/alice/acls", json!({"group": "staff"})).await;
    node.admin_ok(reqwest::Method::POST, "/upstreams", json!({"name": "pool"})).await;
    node.admin_ok(reqwest::Method::POST, "/upstreams/pool/targets", json!({"target": "127.0.0.1:9"})).await;
    let (_, plugin) = node
        .admin(reqwest::Method::POST, "/services/example-service/plugins", Some(json!({"name": "correlation-id"})))
        .await;
    let entities = vec![
        ("serviceIdOrName", "example-service".to_owned()),
        ("routeIdOrName", "example-route".to_owned()),
        ("consumerIdOrUsername", "alice".to_owned()),
        ("aclIdOrGroup", "staff".to_owned()),
        ("upstreamIdOrName", "pool".to_owned()),
        ("targetIdOrTarget", "127.0.0.1:9".to_owned()),
        ("pluginIdOrInstanceName", text(&plugin["id"])),
    ];
    let (_, planes) = node.get("/v2/control-planes").await;
    let v1_params = vec![
        ("authServerId", server.clone()),
        ("scopeId", text(&scope["id"])),
        ("claimId", text(&claim["id"])),
        ("clientId", text(&client["id"])),
    ];

    // The reports (NDJSON events, one file per document) go to a temporary directory, or where
    // `GATEHOUSE_TEST_SCHEMATHESIS_REPORTS` says, to be kept.
    let temp = TempDir::new("schemathesis");
    let dir =
        std::env::var_os("GATEHOUSE_TEST_SCHEMATHESIS_REPORTS").map_or_else(|| temp.path().to_owned(), Into::into);
    let dir = std::path::absolute(dir).unwrap();
    let bearer = format!("Authorization: Bearer {}", node.token);
    let runs = [
        Run {
            name: "v1",
            document: format!("{}/v1/openapi.json", node.platform),
            headers: vec![bearer.clone()],
            parameters: v1_params,
        },
        Run {
            name: "v2",
            document: format!("{}/v2/openapi.json", node.platform),
            headers: vec![bearer],
            parameters: [vec![("controlPlaneId", text(&planes["data"][0]["id"]))], entities.clone()].concat(),
        },
        Run {
            name: "admin",
            document: format!("{}/openapi.json", node.node.admin_url()),
            headers: vec![],
            parameters: entities,
        },
    ];
    let mut fatal = Vec::new();
    for r in &runs {
        let found = run(&st, &dir, r).await;
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
