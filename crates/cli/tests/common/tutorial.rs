//! Kong's Kong Identity tutorial as steps against `gatehouse quickstart` on a fresh data dir: the seed tutorial's
//! test and the tests of the how-tos that share its steps (OIDC, Upstream OAuth) run them in order and differ only in
//! the plugin they enable. The only substitutions are the spec's: the platform URL for
//! `https://us.api.konghq.com`, the echo upstream for `http://httpbin.konghq.com`, and the token, control plane and
//! proxy from the quickstart's exports. The curl calls are made with an HTTP client (same methods, headers and
//! bodies); `deck gateway apply -` runs the built binary under the name `deck`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{GatehouseProcess, run_with_input};

/// The tutorial's YAML for `deck gateway apply -` (the how-tos' prerequisites are the same), read as Kong's docs
/// intend: a service with `url`, its route nested with `paths: ["/anything"]` and naming its service.
pub const TUTORIAL_YAML: &str = r#"
_format_version: "3.0"
services:
- name: example-service
  url: http://httpbin.konghq.com/anything
  routes:
  - name: example-route
    paths:
    - "/anything"
    service:
      name: example-service
"#;

/// `export K=V` lines, with `$VAR` references to earlier exports expanded as a shell would.
pub fn exports(stdout: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for line in stdout.lines().filter_map(|l| l.strip_prefix("export ")) {
        let Some((k, v)) = line.split_once('=') else { continue };
        let mut v = v.trim_matches('\'').to_owned();
        if let Some(name) = v.strip_prefix('$') {
            v = vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        }
        vars.push((k.to_owned(), v));
    }
    vars
}

pub fn var<'a>(vars: &'a [(String, String)], key: &str) -> &'a str {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no export {key}"))
}

/// The echo upstream's view of the request headers, names lowercased.
pub fn lowercase_headers(body: &Value) -> std::collections::HashMap<String, String> {
    body["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default()
}

/// Step 1: the quickstart, started on a fresh data dir, and what it exported.
#[derive(Debug)]
pub struct Quickstart {
    pub process: GatehouseProcess,
    /// Holds the data dir (`data`) for as long as the quickstart runs.
    pub dir: TempDir,
    pub stdout: String,
    pub vars: Vec<(String, String)>,
    /// `KONNECT_TOKEN`.
    pub token: String,
    /// `KONNECT_CONTROL_PLANE_URL`: the platform API.
    pub platform: String,
    /// `KONNECT_PROXY_URL`.
    pub proxy: String,
    /// `ECHO_URL`: the stand-in for `http://httpbin.konghq.com`.
    pub echo: String,
    pub http: reqwest::Client,
}

/// What step 3 made: the auth server, its scope and the client (whose secret the API shows only once).
#[derive(Debug, Clone)]
pub struct Identity {
    pub auth_server_id: String,
    pub issuer_url: String,
    pub scope_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl Quickstart {
    pub async fn start(name: &str) -> Self {
        Self::start_with_env(name, &[]).await
    }

    /// [`Self::start`] with more environment variables (`GATEHOUSE_LOG__LEVEL`, …).
    pub async fn start_with_env(name: &str, extra: &[(&str, String)]) -> Self {
        let dir = TempDir::new(name);
        let mut env = super::ephemeral_listeners().to_vec();
        env.extend(extra.iter().cloned());
        let mut process =
            GatehouseProcess::spawn(&super::bin(), &["quickstart", "--data-dir", "data"], &env, dir.path());
        process.wait_for_line(Duration::from_secs(30), |l| l == "Gatehouse Ready").await;
        let stdout = process.output.stdout_text();
        let vars = exports(&stdout);
        let token = var(&vars, "KONNECT_TOKEN").to_owned();
        let platform = var(&vars, "KONNECT_CONTROL_PLANE_URL").to_owned();
        let proxy = var(&vars, "KONNECT_PROXY_URL").to_owned();
        let echo = var(&vars, "ECHO_URL").to_owned();
        Self { process, dir, stdout, vars, token, platform, proxy, echo, http: reqwest::Client::new() }
    }

    /// `curl -X <method> URL -H "Authorization: Bearer $KONNECT_TOKEN" -H "Content-Type: application/json"
    /// --json BODY`, for a platform path.
    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.platform))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// Step 2: `echo '…' | deck gateway apply -` in Konnect mode from the exported variables; decK's exit code and
    /// output.
    pub async fn deck_apply_tutorial_yaml(&self) -> (i32, String, String) {
        let deck_dir = TempDir::new("tutorial-deck");
        let deck = deck_dir.path().join("deck");
        std::os::unix::fs::symlink(super::bin(), &deck).unwrap();
        let deck_env: Vec<(&str, String)> =
            ["DECK_KONNECT_TOKEN", "DECK_KONNECT_CONTROL_PLANE_NAME", "DECK_KONNECT_ADDR"]
                .into_iter()
                .map(|k| (k, var(&self.vars, k).to_owned()))
                .collect();
        let yaml = TUTORIAL_YAML.replace("http://httpbin.konghq.com", &self.echo);
        run_with_input(&deck, &["gateway", "apply", "-"], &deck_env, deck_dir.path(), Some(&yaml)).await
    }

    /// Step 3, the tutorial's bodies as written: an auth server, the `my-scope` scope, the `test-claim` claim and a
    /// client allowed the scope.
    pub async fn create_identity(&self) -> Identity {
        let (status, server) = self
            .post_json(
                "/v1/auth-servers",
                json!({"name": "Appointments Dev", "audience": "http://myhttpbin.dev",
                       "description": "Auth server for the Appointment dev environment"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{server}");
        let auth_server_id = server["id"].as_str().unwrap().to_owned();
        let issuer_url = server["issuer"].as_str().unwrap().to_owned();

        let (status, scope) = self
            .post_json(
                &format!("/v1/auth-servers/{auth_server_id}/scopes"),
                json!({"name": "my-scope", "description": "Scope to test Kong Identity", "default": false,
                       "include_in_metadata": false, "enabled": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{scope}");
        let scope_id = scope["id"].as_str().unwrap().to_owned();

        let (status, claim) = self
            .post_json(
                &format!("/v1/auth-servers/{auth_server_id}/claims"),
                json!({"name": "test-claim", "value": "test", "include_in_token": true,
                       "include_in_all_scopes": false, "include_in_scopes": [scope_id], "enabled": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{claim}");

        let (status, client) = self
            .post_json(
                &format!("/v1/auth-servers/{auth_server_id}/clients"),
                json!({"name": "Client", "grant_types": ["client_credentials"], "allow_all_scopes": false,
                       "allow_scopes": [scope_id], "access_token_duration": 3600, "id_token_duration": 3600,
                       "response_types": ["id_token", "token"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{client}");
        let client_id = client["id"].as_str().unwrap().to_owned();
        let client_secret = client["client_secret"].as_str().unwrap().to_owned();
        Identity { auth_server_id, issuer_url, scope_id, client_id, client_secret }
    }

    /// The tutorial's `GET /v2/control-planes?filter[name][contains]=quickstart`: the control plane's id.
    pub async fn control_plane_id(&self) -> String {
        let res = self
            .http
            .get(format!("{}/v2/control-planes?filter%5Bname%5D%5Bcontains%5D=quickstart", self.platform))
            .header("Authorization", format!("Bearer {}", self.token))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let planes: Value = res.json().await.unwrap();
        assert_eq!(planes["data"][0]["name"], "quickstart", "{planes}");
        planes["data"][0]["id"].as_str().unwrap().to_owned()
    }

    /// The tutorial's token request: `curl -X POST "$ISSUER_URL/oauth/token" -d grant_type=client_credentials
    /// -d client_id=… -d client_secret=… -d scope=my-scope`; the access token.
    pub async fn mint_token(&self, identity: &Identity) -> String {
        let res = self
            .http
            .post(format!("{}/oauth/token", identity.issuer_url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id={}&client_secret={}&scope=my-scope",
                identity.client_id, identity.client_secret
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let minted: Value = res.json().await.unwrap();
        minted["access_token"].as_str().unwrap().to_owned()
    }

    /// Ctrl-C, as the reader stops the quickstart: it must stop cleanly.
    pub async fn stop(mut self) {
        assert!(self.process.interrupt(Duration::from_secs(10)).await.success(), "Ctrl-C stops cleanly");
    }
}
