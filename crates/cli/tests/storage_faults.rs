//! Storage faults through the real binary: a full disk under the SQLite data dir, PostgreSQL connections killed
//! under a running node. Writes answer 503 in each surface's format while they fail, `/health` says so, and both
//! recover by themselves once the fault is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{ProcessEnv, bin};
use gatehouse_store::testing::{TempDir, TestDatabase};
use gatehouse_testkit::{GatehouseProcess, run_to_end};

/// A size-limited tmpfs, unmounted when dropped (also when the test fails).
struct SmallFs {
    dir: TempDir,
}

impl SmallFs {
    /// `Err(reason)` where mounting is impossible (not Linux, not root, no tmpfs).
    fn mount(size: &str) -> Result<Self, String> {
        if !cfg!(target_os = "linux") {
            return Err("tmpfs mounts need Linux".to_owned());
        }
        let dir = TempDir::new("gatehouse-small-fs");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the file system refuses more; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        loop {
            if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
        // The last partial chunk may have found room for a few bytes; what is left is less than one page.
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount").arg(self.path()).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a child that has not exited yet): detach it now, the kernel frees it when unused.
            let _ = std::process::Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

fn skip(reason: &str) {
    let _ = std::io::stderr().write_all(format!("disk-full suite: SKIPPED ({reason})\n").as_bytes());
}

struct Node {
    process: GatehouseProcess,
    platform: String,
    issuer: String,
    admin: String,
    token: String,
    http: reqwest::Client,
}

impl Node {
    async fn start(vars: &[(&'static str, String)], dir: &Path) -> Node {
        // `token create` never sets a node up; the node's first start would, so do what it does first.
        common::set_up_node(vars).await;
        let (code, stdout, stderr) = run_to_end(&bin(), &["token", "create", "--name", "faults"], vars, dir).await;
        assert_eq!(code, 0, "token create failed: {stderr}");
        let token = stdout.lines().next().unwrap().to_owned();
        let mut process = GatehouseProcess::spawn(&bin(), &["serve", "--log-format", "json"], vars, dir);
        let platform = format!("http://{}", process.listener_address("platform").await);
        let issuer = format!("http://{}", process.listener_address("issuer").await);
        let admin = format!("http://{}", process.listener_address("admin").await);
        Node { process, platform, issuer, admin, token, http: reqwest::Client::new() }
    }

    async fn call(&self, method: reqwest::Method, url: String, body: Option<Value>) -> (StatusCode, String, Value) {
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let ctype = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let text = res.text().await.unwrap();
        (status, ctype, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn health(&self, base: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{base}/health")).send().await.unwrap();
        (res.status(), res.json().await.unwrap())
    }

    /// An auth server with one client; returns (issuer URL on the listener, client id, secret).
    async fn client(&self) -> (String, String, String) {
        let (status, _, server) = self
            .call(
                reqwest::Method::POST,
                format!("{}/v1/auth-servers", self.platform),
                Some(json!({"name": "faults", "audience": "a"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{server}");
        let sid = server["id"].as_str().unwrap();
        let (status, _, client) = self
            .call(
                reqwest::Method::POST,
                format!("{}/v1/auth-servers/{sid}/clients", self.platform),
                Some(json!({"name": "c", "grant_types": ["client_credentials"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{client}");
        let key = server["issuer"].as_str().unwrap().rsplit('/').next().unwrap();
        (
            format!("{}/{key}", self.issuer),
            client["id"].as_str().unwrap().to_owned(),
            client["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn mint(&self, (issuer, id, secret): &(String, String, String)) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{issuer}/oauth/token"))
            .form(&[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)])
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap())
    }

    async fn create_auth_server(&self, name: &str) -> (StatusCode, String, Value) {
        let url = format!("{}/v1/auth-servers", self.platform);
        self.call(reqwest::Method::POST, url, Some(json!({"name": name, "audience": "a"}))).await
    }

    async fn create_service(&self, name: &str) -> (StatusCode, String, Value) {
        let url = format!("{}/services", self.admin);
        self.call(reqwest::Method::POST, url, Some(json!({"name": name, "url": "http://127.0.0.1:9"}))).await
    }

    /// Polls both listeners' `/health` until they answer `want`; returns how long that took.
    async fn until_health(&self, want: StatusCode) -> Duration {
        let started = Instant::now();
        loop {
            let platform = self.health(&self.platform).await.0;
            let issuer = self.health(&self.issuer).await.0;
            if platform == want && issuer == want {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "health stayed {platform}/{issuer}, wanted {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything that writes works, several times over (a poisoned pooled connection shows up on a later call).
    async fn assert_writes_work(&self, client: &(String, String, String), round: &str) {
        for i in 0..12 {
            let (status, body) = self.mint(client).await;
            assert_eq!(status, StatusCode::OK, "{round}: mint {i}: {body}");
        }
        for i in 0..4 {
            let (status, _, body) = self.create_auth_server(&format!("{round}-{i}")).await;
            assert_eq!(status, StatusCode::CREATED, "{round}: auth server {i}: {body}");
            let (status, _, body) = self.create_service(&format!("{round}-{i}")).await;
            assert_eq!(status, StatusCode::CREATED, "{round}: service {i}: {body}");
        }
    }
}

#[tokio::test]
async fn sqlite_writes_recover_once_a_full_disk_has_room_again() {
    let fs = match SmallFs::mount("4m") {
        Ok(fs) => fs,
        Err(reason) => return skip(&reason),
    };
    let work = TempDir::new("gatehouse-disk-full");
    let data_dir = fs.path().join("data");
    let mut vars = common::ephemeral_listeners().to_vec();
    vars.push(("GATEHOUSE_DATA_DIR", data_dir.display().to_string()));
    let node = Node::start(&vars, work.path()).await;
    let client = node.client().await;
    node.assert_writes_work(&client, "before").await;
    assert_eq!(node.health(&node.platform).await, (StatusCode::OK, json!({"status": "ok"})));

    let filler = fs.fill();
    let (status, body) = node.mint(&client).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    let (status, ctype, body) = node.create_auth_server("while-full").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["status"], 503, "{body}");
    let (status, _, body) = node.create_service("while-full").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["message"].is_string(), "Kong's shape: {body}");
    for base in [&node.platform, &node.issuer] {
        let (status, body) = node.health(base).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{base}: {body}");
        assert_eq!(body["status"], "unavailable", "{body}");
        assert_eq!(body["storage"]["writes"], "failing", "{body}");
        assert_eq!(body["storage"]["reason"], "the disk is full", "{body}");
    }
    // Reads keep working.
    let (status, _, body) = node.call(reqwest::Method::GET, format!("{}/v1/auth-servers", node.platform), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    std::fs::remove_file(&filler).unwrap();
    // The first write after the space returns succeeds: no connection stays poisoned by the failed commits.
    let (status, body) = node.mint(&client).await;
    assert_eq!(status, StatusCode::OK, "first mint after freeing space: {body}");
    node.assert_writes_work(&client, "after").await;
    node.until_health(StatusCode::OK).await;

    // Fill again, and this time let readiness notice the recovery by itself (no write comes in).
    let filler = fs.fill();
    let (status, _, _) = node.create_auth_server("full-again").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    node.until_health(StatusCode::SERVICE_UNAVAILABLE).await;
    std::fs::remove_file(&filler).unwrap();
    let took = node.until_health(StatusCode::OK).await;
    assert_eq!(node.health(&node.issuer).await, (StatusCode::OK, json!({"status": "ok"})));
    node.assert_writes_work(&client, "again").await;
    eprintln!("readiness noticed the recovery after {took:?}");

    let mut process = node.process;
    process.kill_hard().await;
    let _ = process.child.wait().await;
    drop(fs);
}

/// The PIDs, on the server, of the PostgreSQL connections a child process holds (matched by client port).
async fn backends_of(child_pid: u32, admin: &sqlx::PgPool) -> Vec<i32> {
    let ports = tcp_client_ports(child_pid);
    if ports.is_empty() {
        return Vec::new();
    }
    let ports: Vec<i32> = ports.into_iter().map(i32::from).collect();
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1) AND application_name = 'gatehouse'",
    )
    .bind(ports)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// Local ports of the child's TCP connections to port 5432, read from /proc.
fn tcp_client_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().into_owned();
                    Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) = (cols.get(1), cols.get(2), cols.get(9)) else { continue };
            let port = |addr: &str| addr.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if port(remote) == Some(5432) && inodes.iter().any(|i| i == inode) {
                ports.extend(port(local));
            }
        }
    }
    ports
}

#[tokio::test]
async fn postgres_writes_recover_after_the_node_loses_its_connections() {
    let Some(db) = TestDatabase::postgres() else { return };
    let env = ProcessEnv::for_db(&db);
    let node = Node::start(&env.vars, env.path()).await;
    let client = node.client().await;
    node.assert_writes_work(&client, "before").await;
    let admin = sqlx::PgPool::connect(&gatehouse_store::testing::postgres_url().unwrap()).await.unwrap();
    let pid = node.process.child.id().unwrap();
    let backends = backends_of(pid, &admin).await;
    assert!(!backends.is_empty(), "the node holds PostgreSQL connections");
    for backend in &backends {
        sqlx::query("SELECT pg_terminate_backend($1)").bind(backend).execute(&admin).await.unwrap();
    }
    // Every connection the node had is gone; the next writes get fresh ones.
    node.assert_writes_work(&client, "after").await;
    assert_eq!(node.health(&node.platform).await, (StatusCode::OK, json!({"status": "ok"})));
    let fresh = backends_of(pid, &admin).await;
    assert!(fresh.iter().all(|b| !backends.contains(b)), "old {backends:?}, now {fresh:?}");
    let mut process = node.process;
    process.kill_hard().await;
    admin.close().await;
    db.cleanup().await;
}
