//! `gatehouse backup` while a node takes writes, and `gatehouse restore` of the copy into an empty data dir: every
//! write acknowledged before the backup began is in the restored node, and the master key is checked first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;

use common::bin;
use gatehouse_runtime::master_key::MasterKey;
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{GatehouseProcess, run_to_end};

/// A SQLite node's settings on a data dir under `work`, every listener on an ephemeral port.
fn node_vars(data: &std::path::Path) -> Vec<(&'static str, String)> {
    let mut vars = common::ephemeral_listeners().to_vec();
    vars.push(("GATEHOUSE_DATA_DIR", data.display().to_string()));
    vars
}

async fn serve(vars: &[(&'static str, String)], dir: &std::path::Path) -> (GatehouseProcess, String) {
    let mut p = GatehouseProcess::spawn(&bin(), &["serve", "--log-format", "json"], vars, dir);
    let addr = p.listener_address("platform").await;
    (p, format!("http://{addr}"))
}

async fn auth_server_names(http: &reqwest::Client, platform: &str, token: &str) -> Vec<String> {
    let res = http.get(format!("{platform}/v1/auth-servers?page[size]=1000")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    body["data"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_backup_under_writes_restores_every_acknowledged_write() {
    let work = TempDir::new("backup");
    let data = work.path().join("data");
    let vars = node_vars(&data);
    common::set_up_node(&vars).await;
    let (code, out, err) = run_to_end(&bin(), &["token", "create", "--name", "backup"], &vars, work.path()).await;
    assert_eq!(code, 0, "{err}");
    let token = out.lines().next().unwrap().to_owned();
    let (mut node, platform) = serve(&vars, work.path()).await;

    // A writer that records each write the node acknowledged.
    let http = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn({
        let (http, platform, token, acknowledged, stop) =
            (http.clone(), platform.clone(), token.clone(), acknowledged.clone(), stop.clone());
        async move {
            for i in 0..900 {
                if stop.is_cancelled() {
                    break;
                }
                let name = format!("written-{i}");
                let res = http
                    .post(format!("{platform}/v1/auth-servers"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"name": name, "audience": "backup"}))
                    .send()
                    .await
                    .unwrap();
                if res.status() == StatusCode::CREATED {
                    acknowledged.lock().unwrap().push(name);
                }
            }
        }
    });
    let started = tokio::time::Instant::now();
    while acknowledged.lock().unwrap().len() < 20 {
        assert!(started.elapsed() < Duration::from_secs(60), "the writer makes progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before_backup: Vec<String> = acknowledged.lock().unwrap().clone();
    let (code, out, err) = run_to_end(&bin(), &["backup", "--to", "backup.db"], &vars, work.path()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("backed up {}", data.join("gatehouse.db").display())), "{out}");
    assert!(err.contains(&format!("data dir {}", data.display())), "{err}");
    let during_backup = acknowledged.lock().unwrap().len() - before_backup.len();
    // The node kept taking writes: the backup held no lock that stopped them.
    while acknowledged.lock().unwrap().len() < before_backup.len() + during_backup + 5 {
        assert!(started.elapsed() < Duration::from_secs(120), "writes go on after the backup");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    writer.await.unwrap();
    let everything: Vec<String> = acknowledged.lock().unwrap().clone();
    eprintln!("writes acknowledged before the backup: {}, while it ran: {during_backup}", before_backup.len());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(work.path().join("backup.db")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, _, err) = run_to_end(&bin(), &["backup", "--to", "backup.db"], &vars, work.path()).await;
    assert_eq!(code, 1, "an existing file is not replaced");
    assert!(err.contains("backup.db exists"), "{err}");
    assert!(node.interrupt(Duration::from_secs(10)).await.success());

    // Restore refuses a wrong key and a missing one, writing nothing; with the original key it restores.
    let restored = work.path().join("restored");
    let restored_vars = node_vars(&restored);
    let wrong =
        [restored_vars.clone(), vec![("GATEHOUSE_MASTER_KEY", MasterKey::generate().to_text().expose().to_owned())]]
            .concat();
    let (code, _, err) = run_to_end(&bin(), &["restore", "--from", "backup.db"], &wrong, work.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("is not the one") && err.contains("Nothing was restored"), "{err}");
    let (code, _, err) = run_to_end(&bin(), &["restore", "--from", "backup.db"], &restored_vars, work.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("no master key to check") && err.contains("master.key"), "{err}");
    assert!(!restored.join("gatehouse.db").exists());
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(data.join("master.key"), restored.join("master.key")).unwrap();
    let (code, out, err) = run_to_end(&bin(), &["restore", "--from", "backup.db"], &restored_vars, work.path()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("restored backup.db as"), "{out}");
    let (code, _, err) = run_to_end(&bin(), &["restore", "--from", "backup.db"], &restored_vars, work.path()).await;
    assert_eq!(code, 1, "only into an empty data dir");
    assert!(err.contains("restore only into an empty data dir"), "{err}");

    // The restored node has every write acknowledged before the backup began, and nothing that was never written;
    // the token made before the backup works there too.
    let (mut node, platform) = serve(&restored_vars, work.path()).await;
    let names = auth_server_names(&http, &platform, &token).await;
    for name in &before_backup {
        assert!(names.contains(name), "{name} was acknowledged before the backup and is missing");
    }
    assert!(names.iter().all(|n| everything.contains(n)), "only written names: {names:?}");
    // One snapshot: the writer wrote in sequence, so the copy holds an unbroken run from the first write.
    let mut numbers: Vec<usize> = names.iter().map(|n| n["written-".len()..].parse().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..numbers.len()).collect::<Vec<_>>(), "a consistent copy");
    assert!(node.interrupt(Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn postgres_and_missing_nodes_get_clear_answers() {
    let work = TempDir::new("backup-pg");
    let pg = [
        ("GATEHOUSE_STORAGE__URL", "postgres://gatehouse:secret-pw@db.internal/gatehouse".to_owned()),
        ("GATEHOUSE_STORAGE__SCHEMA", "gh".to_owned()),
        ("GATEHOUSE_MASTER_KEY", MasterKey::generate().to_text().expose().to_owned()),
    ];
    let (code, _, err) = run_to_end(&bin(), &["backup", "--to", "b.db"], &pg, work.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("pg_dump --format=custom --file=gatehouse.dump --schema=gh"), "{err}");
    assert!(!err.contains("secret-pw"), "{err}");
    let (code, _, err) = run_to_end(&bin(), &["restore", "--from", "b.db"], &pg, work.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("pg_restore"), "{err}");

    let (code, _, err) = run_to_end(&bin(), &["backup", "--to", "b.db"], &[], work.path()).await;
    assert_eq!(code, 1);
    assert!(err.contains("no Gatehouse node's data here") && err.contains("gatehouse.db does not exist"), "{err}");
    assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "nothing was created");
    std::fs::write(work.path().join("not-a-backup.db"), b"hello").unwrap();
    let (code, _, err) = run_to_end(&bin(), &["restore", "--from", "not-a-backup.db"], &[], work.path()).await;
    assert_eq!(code, 1, "{err}");
    assert!(!work.path().join("gatehouse-data/gatehouse.db").exists());
}
