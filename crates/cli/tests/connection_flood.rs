//! Issue 15, item 2, through the real binary: 2,000 idle connections against a node whose open-file limit is 1,024
//! leave every listener answering, and the server closes the idle connections itself. Alone in its test binary, so
//! no other test competes with it for the machine's two cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

use futures_util::future::join_all;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::{bin, closed_by_server};
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::GatehouseProcess;

/// The deadlines the binary test configures, in seconds: long enough that the flood is opened and every listener
/// asked well before the first idle connection's deadline, even on a loaded machine.
const DEADLINE: u64 = 5;

/// The issue's scenario through the real binary: a node whose open-file limit is 1024 (soft and hard), 2,000
/// idle connections spread over its five listeners (half silent, half stopped in the middle of a request head),
/// and every listener must still answer a normal request before any idle connection's deadline has passed (so it
/// was not let in by a deadline that made room); the server closes every idle connection itself within the
/// configured deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_leave_every_listener_answering() {
    // The test itself holds 2,000 sockets.
    gatehouse_net::raise_nofile_limit().unwrap();
    let dir = TempDir::new("idle-flood");
    let deadline = DEADLINE.to_string();
    let mut env: Vec<(&str, String)> = common::ephemeral_listeners().to_vec();
    env.extend([
        ("GATEHOUSE_LOG__FORMAT", "json".to_owned()),
        ("GATEHOUSE_LOG__LEVEL", "info".to_owned()),
        ("GATEHOUSE_PROXY__CLIENT_HEADER_TIMEOUT", deadline.clone()),
        ("GATEHOUSE_ISSUER__CLIENT_HEADER_TIMEOUT", deadline.clone()),
        ("GATEHOUSE_PLATFORM__CLIENT_HEADER_TIMEOUT", deadline.clone()),
        ("GATEHOUSE_ADMIN__CLIENT_HEADER_TIMEOUT", deadline.clone()),
        ("GATEHOUSE_ECHO__CLIENT_HEADER_TIMEOUT", deadline.clone()),
    ]);
    let gatehouse = bin().display().to_string();
    let script = r#"ulimit -n 1024 && exec "$0" "$@""#;
    let mut node = GatehouseProcess::spawn(
        Path::new("/bin/sh"),
        &["-c", script, &gatehouse, "quickstart", "--data-dir", "data"],
        &env,
        dir.path(),
    );
    node.wait_for_line(Duration::from_secs(60), |l| l == "Gatehouse Ready").await;
    let pid = node.child.id().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(open_files.split_whitespace().nth(3), Some("1024"), "the node runs under ulimit -n 1024: {open_files}");

    let mut listeners = Vec::new();
    for (name, path) in [
        ("proxy", "/nothing"),
        ("issuer", "/health"),
        ("platform", "/health"),
        ("admin", "/status"),
        ("echo", "/anything"),
    ] {
        listeners.push((name, node.listener_address(name).await, path));
    }

    let opened = Instant::now();
    let mut idle = Vec::with_capacity(2000);
    for i in 0..2000 {
        let (_, addr, _) = &listeners[i % listeners.len()];
        let mut stream = TcpStream::connect(addr.as_str()).await.unwrap();
        if i % 2 == 1 {
            // A head that never ends; the server may already have closed the connection to make room.
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n").await;
        }
        idle.push(stream);
    }
    eprintln!("2000 idle connections opened in {:?}", opened.elapsed());

    let http = reqwest::Client::new();
    for (name, addr, path) in &listeners {
        let started = Instant::now();
        let res = http.get(format!("http://{addr}{path}")).send().await.unwrap();
        let took = started.elapsed();
        eprintln!("{name}: {} in {took:?}", res.status());
        let expected = if *name == "proxy" { StatusCode::NOT_FOUND } else { StatusCode::OK };
        assert_eq!(res.status(), expected, "{name}");
        // The server's deadlines start when it accepts, after `opened`: an answer before `opened + DEADLINE` came
        // from the caps making room, not from a deadline. (Before: "within one second", a bound on the machine.)
        let answered = opened.elapsed();
        assert!(answered < Duration::from_secs(DEADLINE), "{name} answered {answered:?} after the flood began");
    }

    let closes = join_all(idle.into_iter().map(|s| closed_by_server(s, Duration::from_secs(DEADLINE + 20)))).await;
    let open_still = closes.iter().filter(|c| c.is_none()).count();
    assert_eq!(open_still, 0, "every idle connection is closed by the server");
    let last = closes.iter().flatten().map(|at| at.duration_since(opened)).max().unwrap();
    eprintln!("the last idle connection was closed {last:?} after the flood began");
    assert!(last >= Duration::from_secs(DEADLINE), "some waited for their deadline rather than being refused");

    // Still serving, and the flood did not flood the log.
    let res = http.get(format!("http://{}/health", listeners[2].1)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let accept_errors = node.output.stderr_text().matches("accept failed").count();
    assert!(accept_errors <= 2 * (DEADLINE as usize + 25), "{accept_errors} accept-error lines");
    node.interrupt(Duration::from_secs(30)).await;
}
