//! The binary's commands as a user runs them: quickstart, serve, token, configuration checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use tokio::time::Instant;

use reqwest::StatusCode;

use common::{ProcessEnv, bin};
use gatehouse_runtime::master_key::MasterKey;
use gatehouse_store::testing::{TempDir, TestDatabase};
use gatehouse_testkit::{GatehouseProcess, run_to_end};

fn exports(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

fn export<'a>(all: &'a [(String, String)], key: &str) -> &'a str {
    all.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no export {key}"))
}

async fn quickstart(dir: &std::path::Path) -> (GatehouseProcess, Vec<(String, String)>, Duration) {
    let started = Instant::now();
    // Every listener on an ephemeral port so parallel tests never collide on the quickstart's fixed ports.
    let env = common::ephemeral_listeners();
    let mut p = GatehouseProcess::spawn(&bin(), &["quickstart", "--data-dir", "data"], &env, dir);
    p.wait_for_line(Duration::from_secs(30), |l| l == "Gatehouse Ready").await;
    let elapsed = started.elapsed();
    let vars = exports(&p.output.stdout_text());
    (p, vars, elapsed)
}

#[tokio::test]
async fn quickstart_exports_survive_a_restart() {
    let dir = TempDir::new("quickstart");
    let (mut first, vars, elapsed) = quickstart(dir.path()).await;
    eprintln!("quickstart ready in {elapsed:?}");
    let printed = first.output.stdout_text();
    let token = export(&vars, "KONNECT_TOKEN").to_owned();
    assert_eq!(export(&vars, "DECK_KONNECT_TOKEN"), "$KONNECT_TOKEN");
    let url = export(&vars, "KONNECT_CONTROL_PLANE_URL").to_owned();
    assert_eq!(export(&vars, "DECK_KONNECT_ADDR"), url);
    assert!(dir.path().join("data/gatehouse.db").exists() && dir.path().join("data/master.key").exists());
    let data_dir = std::fs::canonicalize(dir.path().join("data")).unwrap();
    assert!(printed.contains(&format!("data dir {}", data_dir.display())), "{printed}");
    for listener in ["platform API", "issuer", "Admin API", "proxy (TLS)", "status and metrics", "echo upstream"] {
        assert!(printed.lines().any(|l| l.starts_with("#   ") && l.contains(listener)), "{listener}: {printed}");
    }
    // decK without a token talks to the Admin API the quickstart printed.
    let admin: serde_json::Value =
        reqwest::get(format!("{}/", export(&vars, "DECK_KONG_ADDR"))).await.unwrap().json().await.unwrap();
    assert!(admin["version"].as_str().unwrap().starts_with("3."), "{admin}");
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join("data/quickstart.env")), 0o600, "the file holds the token");

    let http = reqwest::Client::new();
    let res = http
        .post(format!("{url}/v1/auth-servers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "kept", "audience": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let status = first.interrupt(Duration::from_secs(10)).await;
    assert!(status.success(), "Ctrl-C stops cleanly: {status}");

    let (mut second, vars, _) = quickstart(dir.path()).await;
    assert_eq!(export(&vars, "KONNECT_TOKEN"), token, "the token pasted elsewhere stays the quickstart's");
    let url = export(&vars, "KONNECT_CONTROL_PLANE_URL");
    let res = http.get(format!("{url}/v1/auth-servers")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the token made before the restart works after it");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["data"][0]["name"], "kept", "data survives a restart");

    // `quickstart env` prints what the running quickstart printed, from any directory with --data-dir after it.
    let elsewhere = TempDir::new("elsewhere");
    let data = data_dir.display().to_string();
    let (code, out, err) = run_to_end(&bin(), &["quickstart", "env", "--data-dir", &data], &[], elsewhere.path()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(exports(&out), vars);
    assert!(second.interrupt(Duration::from_secs(10)).await.success());

    let (code, _, err) = run_to_end(&bin(), &["quickstart", "env"], &[], elsewhere.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("no quickstart exports in the data dir") && err.contains("gatehouse-data"), "{err}");
    assert!(!elsewhere.path().join("gatehouse-data").exists(), "nothing was created");
}

#[tokio::test]
async fn token_commands_create_list_and_revoke() {
    let db = TestDatabase::sqlite();
    let env = ProcessEnv::for_db(&db);
    let token = env.create_token("ci").await;
    assert!(token.starts_with("gpat_") && token.len() == 45, "{token}");
    let (code, out, _) = run_to_end(&bin(), &["token", "list"], &env.vars, env.path()).await;
    assert_eq!(code, 0);
    assert!(out.contains("ci") && out.contains("active") && !out.contains(&token), "{out}");

    let (mut p, base) = env.serve(&[]).await;
    let http = reqwest::Client::new();
    let get = || http.get(format!("{base}/v1/auth-servers")).bearer_auth(&token).send();
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    let (code, out, _) = run_to_end(&bin(), &["token", "revoke", "ci"], &env.vars, env.path()).await;
    assert_eq!((code, out.trim()), (0, "revoked 1 token(s)"));
    assert_eq!(get().await.unwrap().status(), StatusCode::UNAUTHORIZED, "revocation is immediate");
    let (code, _, err) = run_to_end(&bin(), &["token", "revoke", "ci"], &env.vars, env.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("no token matches"), "{err}");
    let (code, _, err) =
        run_to_end(&bin(), &["token", "create", "--name", "x", "--expires-in", "400d"], &env.vars, env.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("365"), "{err}");
    p.kill_hard().await;
}

/// `token` commands manage an existing node: run where there is none, they say where they looked and create
/// nothing; pointed at one with flags after the subcommand, they say which one they used.
#[tokio::test]
async fn token_commands_never_create_a_node() {
    let work = TempDir::new("no-node");
    for args in [&["token", "list"][..], &["token", "create", "--name", "x"], &["token", "revoke", "x"]] {
        let (code, out, err) = run_to_end(&bin(), args, &[], work.path()).await;
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}: {err}");
        let expected = work.path().canonicalize().unwrap().join("gatehouse-data");
        assert!(
            err.contains("no Gatehouse node's data here") && err.contains(&expected.display().to_string()),
            "{err}"
        );
        assert!(err.contains("--data-dir"), "{err}");
        assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "{args:?} created nothing");
    }
    // A data dir with a key but no database (a node's data moved away) is no node either.
    let data = work.path().join("data");
    let vars = [("GATEHOUSE_DATA_DIR", data.display().to_string())];
    common::set_up_node(&vars).await;
    std::fs::rename(data.join("gatehouse.db"), work.path().join("moved.db")).unwrap();
    let (code, _, err) = run_to_end(&bin(), &["token", "list"], &vars, work.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("gatehouse.db does not exist"), "{err}");
    assert!(!data.join("gatehouse.db").exists());

    let node = TempDir::new("a-node");
    let data = node.path().join("data");
    common::set_up_node(&[("GATEHOUSE_DATA_DIR", data.display().to_string())]).await;
    std::fs::write(node.path().join("g.toml"), format!("data_dir = \"{}\"\n", data.display())).unwrap();
    let config = node.path().join("g.toml").display().to_string();
    let data = data.display().to_string();
    for flags in [["--data-dir", data.as_str()], ["-c", config.as_str()]] {
        let mut args = vec!["token", "create", "--name", "after"];
        args.extend(flags);
        let (code, out, err) = run_to_end(&bin(), &args, &[], work.path()).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.starts_with("gpat_"), "{out}");
        assert!(err.contains(&format!("data dir {data}, database sqlite://{data}/gatehouse.db")), "{err}");
    }
    let (code, out, _) = run_to_end(&bin(), &["token", "list", "--data-dir", &data], &[], work.path()).await;
    assert_eq!(code, 0);
    assert_eq!(out.matches("after").count(), 2, "{out}");
}

#[tokio::test]
async fn completion_scripts_for_every_shell() {
    let work = TempDir::new("completion");
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run_to_end(&bin(), &["completion", shell], &[], work.path()).await;
        assert_eq!(code, 0, "{shell}: {err}");
        for word in ["quickstart", "token", "data-dir"] {
            assert!(out.contains(word), "{shell} completes {word}");
        }
    }
    let (code, _, err) = run_to_end(&bin(), &["completion", "tcsh"], &[], work.path()).await;
    assert_eq!(code, 2);
    assert!(err.contains("bash") && err.contains("fish"), "the choices are named: {err}");
}

#[tokio::test]
async fn the_version_names_the_commit() {
    let work = TempDir::new("version");
    let (code, out, _) = run_to_end(&bin(), &["-V"], &[], work.path()).await;
    assert_eq!(code, 0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8(o.stdout).unwrap().trim().to_owned());
    assert_eq!(out.trim(), format!("gatehouse {} (commit {commit})", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn check_config_reports_unknown_keys_and_unsafe_binds() {
    let dir = TempDir::new("check");
    let base = [("GATEHOUSE_DATA_DIR", dir.path().display().to_string())];
    let (code, out, _) = run_to_end(&bin(), &["serve", "--check-config"], &base, dir.path()).await;
    assert_eq!((code, out.trim()), (0, "configuration OK"));

    let mut env = base.to_vec();
    env.push(("GATEHOUSE_PLATFORM__LISEN", "x".to_owned()));
    let (code, _, err) = run_to_end(&bin(), &["serve", "--check-config"], &env, dir.path()).await;
    assert_eq!(code, 2);
    assert!(err.contains("platform.lisen"), "{err}");

    std::fs::write(dir.path().join("g.toml"), "[admin]\nlisten = \"0.0.0.0:8001\"\n").unwrap();
    let (code, _, err) = run_to_end(&bin(), &["serve", "--check-config", "-c", "g.toml"], &base, dir.path()).await;
    assert_eq!(code, 2);
    assert!(err.contains("admin") && err.contains("loopback"), "{err}");

    let mut env = base.to_vec();
    env.push(("GATEHOUSE_PLATFORM__LISTEN", "0.0.0.0:0".to_owned()));
    let (code, _, err) = run_to_end(&bin(), &["serve"], &env, dir.path()).await;
    assert_eq!(code, 2);
    assert!(err.contains("allow_plaintext_public"), "{err}");
}

#[tokio::test]
async fn serve_logs_its_addresses_and_warns_about_unknown_keys() {
    let db = TestDatabase::sqlite();
    let env = ProcessEnv::for_db(&db).with("GATEHOUSE_GATEWAY__CONTROL_PLAN", "typo");
    let (mut p, base) = env.serve(&[]).await;
    let warning = p.wait_for_line(Duration::from_secs(5), |l| l.contains("unknown configuration key")).await;
    assert!(warning.contains("gateway.control_plan"), "{warning}");
    assert_eq!(reqwest::get(format!("{base}/health")).await.unwrap().status(), StatusCode::OK);
    assert!(p.interrupt(Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn a_different_master_key_is_refused() {
    let db = TestDatabase::sqlite();
    let env = ProcessEnv::for_db(&db).with("GATEHOUSE_MASTER_KEY", MasterKey::generate().to_text().expose().to_owned());
    let (mut p, _) = env.serve(&[]).await;
    p.kill_hard().await;
    let other =
        ProcessEnv::for_db(&db).with("GATEHOUSE_MASTER_KEY", MasterKey::generate().to_text().expose().to_owned());
    let (code, _, err) = run_to_end(&bin(), &["serve"], &other.vars, other.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("not the one the database was set up with"), "{err}");
}

#[tokio::test]
async fn postgres_needs_an_explicit_master_key() {
    let Some(db) = TestDatabase::postgres() else { return };
    let env = ProcessEnv::for_db(&db);
    let vars: Vec<_> = env.vars.iter().filter(|(k, _)| *k != "GATEHOUSE_MASTER_KEY").cloned().collect();
    let (code, _, err) = run_to_end(&bin(), &["serve"], &vars, env.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("PostgreSQL needs an explicit master key"), "{err}");
    db.cleanup().await;
}

/// `gatehouse token create` on a SQLite data dir (and its default database in it); returns (exit code, stderr).
async fn token_create(data_dir: &std::path::Path, work: &std::path::Path) -> (i32, String) {
    let vars = [("GATEHOUSE_DATA_DIR", data_dir.display().to_string())];
    let (code, _, err) = run_to_end(&bin(), &["token", "create", "--name", "t"], &vars, work).await;
    (code, err)
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_files_are_private() {
    let work = TempDir::new("private");
    let data = work.path().join("fresh/data");
    let mut vars = common::ephemeral_listeners().to_vec();
    vars.push(("GATEHOUSE_DATA_DIR", data.display().to_string()));
    let mut p = GatehouseProcess::spawn(&bin(), &["serve", "--log-format", "json"], &vars, work.path());
    p.listener_address("platform").await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&work.path().join("fresh")), 0o700, "missing parents too");
    for file in ["gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm", "master.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    p.kill_hard().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_data_dir_others_can_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let work = TempDir::new("shared-dir");
    let data = work.path().join("data");
    for shared in [0o777, 0o775, 0o1777] {
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(shared)).unwrap();
        let (code, err) = token_create(&data, work.path()).await;
        assert_eq!(code, 1, "{shared:o}: {err}");
        assert!(err.contains("is writable by other users"), "{err}");
        assert!(std::fs::read_dir(&data).unwrap().next().is_none(), "nothing was created in it");
    }
}

#[tokio::test]
async fn a_deleted_master_key_is_not_replaced() {
    let work = TempDir::new("lost-key");
    let data = work.path().join("data");
    common::set_up_node(&[("GATEHOUSE_DATA_DIR", data.display().to_string())]).await;
    assert_eq!(token_create(&data, work.path()).await.0, 0);
    let key_file = data.join("master.key");
    let original = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    for _ in 0..2 {
        let (code, err) = token_create(&data, work.path()).await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("master.key does not exist"), "{err}");
        assert!(!key_file.exists(), "no new key was written");
    }
    std::fs::write(&key_file, original).unwrap();
    assert_eq!(token_create(&data, work.path()).await.0, 0, "the restored key opens the data again");
}

#[tokio::test]
async fn an_emptied_database_beside_its_key_is_refused() {
    let work = TempDir::new("emptied");
    let data = work.path().join("data");
    common::set_up_node(&[("GATEHOUSE_DATA_DIR", data.display().to_string())]).await;
    assert_eq!(token_create(&data, work.path()).await.0, 0);
    for leftover in ["gatehouse.db-wal", "gatehouse.db-shm"] {
        let _ = std::fs::remove_file(data.join(leftover));
    }
    std::fs::write(data.join("gatehouse.db"), b"").unwrap();
    let (code, err) = token_create(&data, work.path()).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is empty (0 bytes)"), "{err}");
    assert_eq!(std::fs::metadata(data.join("gatehouse.db")).unwrap().len(), 0, "left as found");
}

/// The shipped example is a valid configuration, and every key `--print-config` shows is in it.
#[tokio::test]
async fn the_example_configuration_is_accepted_and_complete() {
    let work = TempDir::new("example");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../gatehouse.example.toml");
    let (code, out, err) = run_to_end(&bin(), &["serve", "--check-config", "-c", example], &[], work.path()).await;
    assert_eq!((code, out.trim()), (0, "configuration OK"), "{err}");
    let text = std::fs::read_to_string(example).unwrap();
    let (code, printed, err) = run_to_end(&bin(), &["serve", "--print-config", "-c", example], &[], work.path()).await;
    assert_eq!(code, 0, "{err}");
    let mut section = String::new();
    for line in printed.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('[') {
            assert!(text.contains(&format!("\n{line}\n")), "{line} is not in the example");
            section = line.to_owned();
            continue;
        }
        let key = line.split(" = ").next().unwrap();
        let start = if section.is_empty() { Some(text.as_str()) } else { text.split(&format!("\n{section}\n")).nth(1) };
        let in_section = start.unwrap().split("\n[").next().unwrap();
        let present = in_section.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ")));
        assert!(present, "{section} {key} is not in the example");
    }
}

/// `--print-config` shows what is in effect (file, variables and flags merged) and never a secret.
#[tokio::test]
async fn print_config_merges_sources_and_redacts_secrets() {
    let work = TempDir::new("print-config");
    std::fs::write(work.path().join("g.toml"), "[proxy]\nlisten = \"127.0.0.1:9000\"\n[log]\nformat = \"json\"\n")
        .unwrap();
    let key = MasterKey::generate().to_text().expose().to_owned();
    let vars = [
        ("GATEHOUSE_MASTER_KEY", key.clone()),
        ("GATEHOUSE_STORAGE__URL", "postgres://gatehouse:hunter2-secret@db.internal/gatehouse".to_owned()),
        ("GATEHOUSE_LOG__FORMAT", "text".to_owned()),
    ];
    let args = ["serve", "--print-config", "-c", "g.toml", "--issuer-listen", "127.0.0.1:9003"];
    let (code, out, err) = run_to_end(&bin(), &args, &vars, work.path()).await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(&key) && !out.contains("hunter2"), "{out}");
    assert!(out.contains("master_key = \"[redacted]\""), "{out}");
    assert!(out.contains("url = \"postgres://gatehouse:%5Bredacted%5D@db.internal/gatehouse\""), "{out}");
    let section =
        |name: &str| out.split(&format!("[{name}]\n")).nth(1).unwrap().split("\n[").next().unwrap().to_owned();
    assert!(section("proxy").contains("listen = \"127.0.0.1:9000\""), "from the file: {out}");
    assert!(section("issuer").contains("listen = \"127.0.0.1:9003\""), "from the flag: {out}");
    assert!(section("log").contains("format = \"text\""), "the variable wins over the file: {out}");
    assert!(section("admin").contains("listen = \"127.0.0.1:8001\""), "defaults too: {out}");
}

/// Under systemd's `Type=notify`, `serve` sends `READY=1` to `NOTIFY_SOCKET` once its listeners answer.
#[cfg(unix)]
#[tokio::test]
async fn serve_notifies_systemd_when_ready() {
    let db = TestDatabase::sqlite();
    let socket_dir = TempDir::new("notify");
    let socket_path = socket_dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let env = ProcessEnv::for_db(&db).with("NOTIFY_SOCKET", socket_path.display().to_string());
    let mut p = GatehouseProcess::spawn(&bin(), &["serve", "--log-format", "json"], &env.vars, env.path());
    let mut buf = vec![0u8; 4096];
    let n =
        tokio::time::timeout(Duration::from_secs(60), socket.recv(&mut buf)).await.expect("a notification").unwrap();
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");
    assert!(message.contains("STATUS=serving: platform http://127.0.0.1:"), "{message}");
    // Ready means answering: the platform listener named in the message serves at once.
    let platform = message.split("platform ").nth(1).unwrap().split(',').next().unwrap();
    assert_eq!(reqwest::get(format!("{platform}/health")).await.unwrap().status(), StatusCode::OK);
    assert!(p.interrupt(Duration::from_secs(10)).await.success());
    let n =
        tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf)).await.expect("a notification").unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
}
