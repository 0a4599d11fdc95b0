//! The web console in a real browser: `gatehouse quickstart` as a child process on ephemeral ports, and
//! `tests/browser/tutorial.mjs` driving Debian's Chromium (playwright-core) through Kong Identity's tutorial, with
//! axe-core on every page. Needs `GATEHOUSE_TEST_CHROMIUM` (the browser's path, set by `.ci/run`) and `npm ci` in
//! `tests/browser`; prints `Browser suite: SKIPPED` otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use gatehouse_store::testing::TempDir;
use gatehouse_testkit::GatehouseProcess;

fn export(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches('\'').to_owned())
        .unwrap_or_else(|| panic!("no export {key} in {stdout}"))
}

#[tokio::test]
async fn the_tutorial_in_chromium() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = match std::env::var("GATEHOUSE_TEST_CHROMIUM") {
        Ok(path) if !path.is_empty() => path,
        _ => {
            println!("Browser suite: SKIPPED (GATEHOUSE_TEST_CHROMIUM is not set)");
            return;
        }
    };
    assert!(std::path::Path::new(&chromium).exists(), "GATEHOUSE_TEST_CHROMIUM={chromium} does not exist");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && browser_dir.join("node_modules/axe-core").is_dir(),
        "GATEHOUSE_TEST_CHROMIUM is set but {}/node_modules is missing: run `npm ci` there",
        browser_dir.display()
    );

    let dir = TempDir::new("console-browser");
    // Debug logs: the check below that no log line carries the client secret then covers every log line.
    let mut env = common::ephemeral_listeners().to_vec();
    env.push(("GATEHOUSE_LOG__LEVEL", "debug".to_owned()));
    let mut node = GatehouseProcess::spawn(&common::bin(), &["quickstart", "--data-dir", "data"], &env, dir.path());
    node.wait_for_line(Duration::from_secs(30), |l| l == "Gatehouse Ready").await;
    let stdout = node.output.stdout_text();
    let shots = PathBuf::from(
        std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target").display().to_string()),
    )
    .join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("tutorial.mjs"))
        .current_dir(&browser_dir)
        .env("CONSOLE_URL", export(&stdout, "KONNECT_CONTROL_PLANE_URL"))
        .env("TOKEN", export(&stdout, "KONNECT_TOKEN"))
        .env("ECHO_URL", export(&stdout, "ECHO_URL"))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run).await.expect("the browser run finishes").unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    println!("{out}");
    eprintln!("{err}");
    node.interrupt(Duration::from_secs(10)).await;
    assert!(output.status.success(), "the browser walk failed ({}):\n{out}\n{err}", output.status);

    // The secret the page showed once never reached the node's output (logs, access log).
    let secret =
        out.lines().find_map(|l| l.strip_prefix("CLIENT_SECRET=")).expect("the walk reports the secret it read");
    let logs = format!("{}{}", node.output.stdout_text(), node.output.stderr_text());
    assert!(!logs.contains(secret), "the node's output contains the client secret");
    assert!(logs.contains("/console/auth-servers"), "the access log saw the console's requests");
    assert!(std::fs::read_dir(&shots).unwrap().count() >= 15, "screenshots in {}", shots.display());
}
