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
async fn quickstart_prints_working_exports_and_replaces_its_token() {
    let dir = TempDir::new("quickstart");
    let (mut first, vars, elapsed) = quickstart(dir.path()).await;
    eprintln!("quickstart ready in {elapsed:?}");
    let token = export(&vars, "KONNECT_TOKEN").to_owned();
    assert_eq!(export(&vars, "DECK_KONNECT_TOKEN"), "$KONNECT_TOKEN");
    let url = export(&vars, "KONNECT_CONTROL_PLANE_URL").to_owned();
    assert_eq!(export(&vars, "DECK_KONNECT_ADDR"), url);
    assert!(dir.path().join("data/gatehouse.db").exists() && dir.path().join("data/master.key").exists());

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
    let new_token = export(&vars, "KONNECT_TOKEN");
    let url = export(&vars, "KONNECT_CONTROL_PLANE_URL");
    assert_ne!(new_token, token);
    let list = |t: String| http.get(format!("{url}/v1/auth-servers")).bearer_auth(t).send();
    assert_eq!(list(token.clone()).await.unwrap().status(), StatusCode::UNAUTHORIZED, "the old token was replaced");
    let res = list(new_token.to_owned()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["data"][0]["name"], "kept", "data survives a restart");
    assert!(second.interrupt(Duration::from_secs(10)).await.success());
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
    assert_eq!(token_create(&data, work.path()).await.0, 0);
    let key_file = data.join("master.key");
    let original = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    for _ in 0..2 {
        let (code, err) = token_create(&data, work.path()).await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("master.key is missing"), "{err}");
        assert!(!key_file.exists(), "no new key was written");
    }
    std::fs::write(&key_file, original).unwrap();
    assert_eq!(token_create(&data, work.path()).await.0, 0, "the restored key opens the data again");
}

#[tokio::test]
async fn an_emptied_database_beside_its_key_is_refused() {
    let work = TempDir::new("emptied");
    let data = work.path().join("data");
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
