//! `gatehouse identity dump|diff|apply|validate` run as a user runs them (the binary) against real nodes on
//! loopback with SQLite: round trips, decK's diff output and exit codes, client secrets from the environment, a
//! file or generated once, errors that name the field, and label selection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::Value;

use common::bin;
use common::deck::{lines, summary};
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{TestNode, run_to_end};

/// A directory of files and the environment that reaches a node's `/v1` API.
struct Id {
    dir: TempDir,
    env: Vec<(&'static str, String)>,
}

impl Id {
    fn new(node: &TestNode) -> Id {
        Id {
            dir: TempDir::new("identity"),
            env: vec![("DECK_KONNECT_ADDR", node.platform.clone()), ("DECK_KONNECT_TOKEN", node.token.clone())],
        }
    }

    /// Another node, the same directory.
    fn retarget(&mut self, node: &TestNode) {
        self.env.retain(|(k, _)| !k.starts_with("DECK_KONNECT"));
        self.env.push(("DECK_KONNECT_ADDR", node.platform.clone()));
        self.env.push(("DECK_KONNECT_TOKEN", node.token.clone()));
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        name.to_owned()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["identity"];
        all.extend_from_slice(args);
        run_to_end(&bin(), &all, &self.env, self.dir.path()).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args).await;
        assert_eq!(code, 0, "{args:?} failed\nstdout:\n{out}\nstderr:\n{err}");
        out
    }
}

const FILE: &str = r#"_format_version: "1.0"
auth_servers:
- name: Appointments Dev
  audience: http://myhttpbin.dev
  description: Auth server for the Appointment dev environment
  signing_algorithm: ES256
  trusted_origins: [https://app.example.com]
  labels: {team: blue}
  scopes:
  - name: my-scope
    description: Scope to test Kong Identity
  - name: orders:read
    default: true
    include_in_metadata: true
  claims:
  - name: test-claim
    value: test
    include_in_token: true
    include_in_scopes: [orders:read, my-scope]
  - name: everywhere
    value: '${{ env "DECK_CLAIM_VALUE" }}'
    include_in_all_scopes: true
  clients:
  - name: Client
    grant_types: [client_credentials]
    response_types: [id_token, token]
    allow_scopes: [my-scope]
    access_token_duration: 3600
    id_token_duration: 3600
    labels: {team: blue}
  - name: web
    grant_types: [implicit, client_credentials]
    redirect_uris: [https://app.example.com/cb]
    login_uri: https://app.example.com/login
    allow_all_scopes: true
- name: Billing
  audience: https://billing.example.com
"#;

fn node_env(id: &mut Id) {
    id.env.push(("DECK_CLAIM_VALUE", "claim-from-env".to_owned()));
}

/// The console lines of a run and the `client_id:`/`client_secret:` lines that follow a created client.
fn created_clients(out: &str) -> Vec<(String, String, Option<String>)> {
    let mut found = Vec::new();
    let all: Vec<&str> = out.lines().collect();
    for (i, l) in all.iter().enumerate() {
        if let Some(rest) = l.strip_prefix("creating client ") {
            let name = rest.split(" for auth_server ").next().unwrap().to_owned();
            let id = all[i + 1].strip_prefix("  client_id: ").expect(out).to_owned();
            let secret = all
                .get(i + 2)
                .and_then(|l| l.strip_prefix("  client_secret: "))
                .map(|s| s.split_whitespace().next().unwrap().to_owned());
            found.push((name, id, secret));
        }
    }
    found
}

async fn issuer(node: &TestNode, name: &str) -> String {
    let (_, list) = node.get("/v1/auth-servers").await;
    list["data"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["issuer"].as_str().unwrap().to_owned()
}

async fn count(node: &TestNode, path: &str) -> u64 {
    let (status, list) = node.get(path).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["meta"]["page"]["total"].as_u64().unwrap()
}

/// dump → apply to an empty node → dump gives the same bytes; the second node then has nothing to change, and no
/// dump holds a secret.
#[tokio::test]
async fn dump_apply_dump_round_trips() {
    let a = TestNode::start().await;
    let mut id = Id::new(&a);
    node_env(&mut id);
    id.write("id.yaml", FILE);
    let out = id.ok(&["apply", "id.yaml"]).await;
    assert_eq!(
        lines(&out).into_iter().filter(|l| !l.starts_with("  ")).collect::<Vec<_>>(),
        vec![
            "creating auth_server Appointments Dev",
            "creating scope my-scope for auth_server Appointments Dev",
            "creating scope orders:read for auth_server Appointments Dev",
            "creating claim everywhere for auth_server Appointments Dev",
            "creating claim test-claim for auth_server Appointments Dev",
            "creating client Client for auth_server Appointments Dev",
            "creating client web for auth_server Appointments Dev",
            "creating auth_server Billing",
        ],
        "{out}"
    );
    assert_eq!(summary(&out), (8, 0, 0));
    let secrets_a: Vec<String> = created_clients(&out).into_iter().filter_map(|(_, _, s)| s).collect();
    assert_eq!(secrets_a.len(), 2, "each generated secret is printed: {out}");

    id.ok(&["dump", "-o", "a"]).await;
    let dumped_a = id.read("a.yaml");
    assert!(dumped_a.starts_with("_format_version: \"1.0\""), "{dumped_a}");
    assert!(dumped_a.contains("claim-from-env"), "{dumped_a}");
    assert!(
        !dumped_a.contains("client_secret:")
            && !dumped_a.lines().any(|l| l.trim_start_matches([' ', '-']).starts_with("id:")),
        "no secrets, no ids: {dumped_a}"
    );
    for s in &secrets_a {
        assert!(!dumped_a.contains(s.as_str()), "{dumped_a}");
    }

    let b = TestNode::start().await;
    id.retarget(&b);
    let out = id.ok(&["apply", "a.yaml"]).await;
    assert_eq!(summary(&out), (8, 0, 0), "{out}");
    id.ok(&["dump", "-o", "b.yaml"]).await;
    assert_eq!(id.read("b.yaml"), dumped_a, "round trip");

    let (code, out, err) = id.run(&["diff", "--non-zero-exit-code", "a.yaml"]).await;
    assert_eq!((code, summary(&out)), (0, (0, 0, 0)), "{out}{err}");
    let out = id.ok(&["apply", "a.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 0), "{out}");
    assert!(!out.contains("client_secret"), "no secret without a created client: {out}");

    // The JSON form parses back and the tokens the applied clients get work.
    let json = id.ok(&["dump", "-o", "-", "--format", "json"]).await;
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["auth_servers"][0]["claims"][1]["include_in_scopes"], serde_json::json!(["my-scope", "orders:read"]));
    a.stop().await;
    b.stop().await;
}

/// decK's diff: the changes and a JSON diff per update, the summary, exit 0, or 2 with `--non-zero-exit-code`, and
/// nothing sent; `--no-delete` leaves leftovers; apply then makes the changes.
#[tokio::test]
async fn diff_prints_changes_and_exits_as_deck() {
    let node = TestNode::start().await;
    let mut id = Id::new(&node);
    node_env(&mut id);
    id.write("id.yaml", FILE);
    id.ok(&["apply", "id.yaml"]).await;
    let changed = FILE
        .replace("description: Scope to test Kong Identity", "description: Changed")
        .replace(
            "  - name: web\n    grant_types: [implicit, client_credentials]\n    redirect_uris: [https://app.example.com/cb]\n    login_uri: https://app.example.com/login\n    allow_all_scopes: true\n",
            "",
        )
        .replace("  - name: everywhere\n", "  - name: new-claim\n    value: v\n  - name: everywhere\n");
    id.write("changed.yaml", &changed);

    let (code, out, err) = id.run(&["diff", "changed.yaml"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines(&out),
        vec![
            "updating scope my-scope for auth_server Appointments Dev  {",
            "creating claim new-claim for auth_server Appointments Dev",
            "deleting client web for auth_server Appointments Dev",
        ],
        "{out}"
    );
    assert!(
        out.contains("-  \"description\": \"Scope to test Kong Identity\",\n+  \"description\": \"Changed\","),
        "{out}"
    );
    assert_eq!(summary(&out), (1, 1, 1));
    let (code, _, _) = id.run(&["diff", "--non-zero-exit-code", "changed.yaml"]).await;
    assert_eq!(code, 2);
    let (code, out, _) = id.run(&["diff", "--no-delete", "changed.yaml"]).await;
    assert_eq!((code, summary(&out)), (0, (1, 1, 0)), "{out}");
    let server = issuer(&node, "Appointments Dev").await;
    assert!(!server.is_empty());
    let (_, servers) = node.get("/v1/auth-servers?filter[name][eq]=Appointments%20Dev").await;
    let sid = servers["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(count(&node, &format!("/v1/auth-servers/{sid}/clients")).await, 2, "diff changes nothing");

    let out = id.ok(&["apply", "--no-delete", "changed.yaml"]).await;
    assert_eq!(summary(&out), (1, 1, 0), "{out}");
    assert_eq!(count(&node, &format!("/v1/auth-servers/{sid}/clients")).await, 2);
    let out = id.ok(&["apply", "changed.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 1), "{out}");
    assert_eq!(count(&node, &format!("/v1/auth-servers/{sid}/clients")).await, 1);
    let (code, out, _) = id.run(&["diff", "--non-zero-exit-code", "changed.yaml"]).await;
    assert_eq!((code, summary(&out)), (0, (0, 0, 0)), "{out}");

    // Removing auth servers deletes their children first; labels and login_uri that are gone are removed.
    let (code, out, err) = id.run(&["diff", "--non-zero-exit-code", "-"]).await;
    assert_eq!(code, 1, "an empty stdin is no identity file: {out}{err}");
    id.write("empty.yaml", "_format_version: \"1.0\"\nauth_servers: []\n");
    let out = id.ok(&["apply", "empty.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 8), "{out}");
    assert_eq!(count(&node, "/v1/auth-servers").await, 0);
    node.stop().await;
}

const SECRETS: &str = r#"_format_version: "1.0"
auth_servers:
- name: M2M
  audience: https://api.example.com
  clients:
  - name: from-env
    grant_types: [client_credentials]
    client_secret: {env: FROM_ENV_SECRET}
  - name: from-file
    grant_types: [client_credentials]
    client_secret: {file: secrets/from-file.txt}
  - name: generated
    grant_types: [client_credentials]
"#;

/// A new client's secret comes from an environment variable or a file (relative to the identity file), or is
/// generated and printed this once; every one of them gets tokens. A missing secret stops the run before any
/// change. Konnect mode here through the tutorial's `KONNECT_TOKEN` and `KONNECT_CONTROL_PLANE_URL`.
#[tokio::test]
async fn client_secrets_come_from_env_file_or_are_generated_once() {
    let node = TestNode::start().await;
    let mut id = Id::new(&node);
    id.env = vec![("KONNECT_CONTROL_PLANE_URL", node.platform.clone()), ("KONNECT_TOKEN", node.token.clone())];
    std::fs::create_dir_all(id.dir.path().join("conf/secrets")).unwrap();
    std::fs::write(id.dir.path().join("conf/secrets/from-file.txt"), "file-secret-0123456789-abcdef\n").unwrap();
    id.write("conf/id.yaml", SECRETS);

    let (code, out, err) = id.run(&["apply", "conf/id.yaml"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("conf/id.yaml:8:20: client_secret: environment variable 'FROM_ENV_SECRET' is not set"),
        "{err}"
    );
    assert_eq!(count(&node, "/v1/auth-servers").await, 0, "nothing was sent");

    id.env.push(("FROM_ENV_SECRET", "short".to_owned()));
    let (code, _, err) = id.run(&["apply", "conf/id.yaml"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("client_secret: must have at least 24 characters") && !err.contains("short"), "{err}");

    id.env.pop();
    id.env.push(("FROM_ENV_SECRET", "env-secret-0123456789-abcdef".to_owned()));
    let out = id.ok(&["apply", "conf/id.yaml"]).await;
    let created = created_clients(&out);
    assert_eq!(created.len(), 3, "{out}");
    assert_eq!(out.matches("client_secret:").count(), 1, "only the generated secret is printed: {out}");
    assert!(!out.contains("env-secret") && !out.contains("file-secret"), "{out}");
    let iss = issuer(&node, "M2M").await;
    for (name, client_id, printed) in &created {
        let secret = match name.as_str() {
            "from-env" => "env-secret-0123456789-abcdef".to_owned(),
            "from-file" => "file-secret-0123456789-abcdef".to_owned(),
            _ => printed.clone().expect("generated secret printed"),
        };
        let (status, body) = node.token(&iss, client_id, &secret, None).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        let (status, _) = node.token(&iss, client_id, "wrong-secret-0123456789-abcdef", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
    }
    // A client that exists keeps its secrets: the file's reference is only read for a new client.
    id.env.pop();
    let out = id.ok(&["apply", "conf/id.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 0), "{out}");
    let dumped = id.ok(&["dump", "-o", "-"]).await;
    assert!(!dumped.contains("client_secret:") && !dumped.contains("secret-0123456789"), "{dumped}");
    for (_, _, printed) in &created {
        if let Some(p) = printed {
            assert!(!dumped.contains(p.as_str()), "{dumped}");
        }
    }
    node.stop().await;
}

/// A bad file is refused with the place and the path of each bad field, offline and before anything is sent.
#[tokio::test]
async fn bad_files_name_the_field() {
    let node = TestNode::start().await;
    let id = Id::new(&node);
    let bad = SECRETS
        .replace("  - name: generated\n    grant_types: [client_credentials]\n", "  - name: generated\n    grant_types: [password]\n    allow_scopes: [nope]\n    access_token_duration: 5\n")
        .replace("audience: https://api.example.com", "audience: https://api.example.com\n  colour: red");
    id.write("bad.yaml", &bad);
    let offline = Id { dir: TempDir::new("identity-offline"), env: Vec::new() };
    offline.write("bad.yaml", &bad);
    let (code, out, err) = offline.run(&["validate", "bad.yaml"]).await;
    assert_eq!(code, 1, "{out}");
    for expected in [
        "bad.yaml:5:11: auth_servers[0].colour:",
        "bad.yaml:14:19: auth_servers[0].clients[2].grant_types[0]:",
        "bad.yaml:15:20: auth_servers[0].clients[2].allow_scopes[0]: no scope named 'nope' in this auth server",
        "bad.yaml:16:28: auth_servers[0].clients[2].access_token_duration:",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    let (code, _, err) = id.run(&["apply", "bad.yaml"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("auth_servers[0].clients[2].grant_types[0]"), "{err}");
    assert_eq!(count(&node, "/v1/auth-servers").await, 0);

    id.write("good.yaml", SECRETS);
    offline.write("good.yaml", SECRETS);
    let out = offline.ok(&["validate", "good.yaml"]).await;
    assert!(out.is_empty(), "{out}");
    let (code, _, err) = offline.run(&["diff", "good.yaml"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("personal access token"), "{err}");
    node.stop().await;
}

const TEAMS: &str = r#"_format_version: "1.0"
auth_servers:
- name: Team A
  audience: https://a.example.com
  labels: {team: a}
  scopes: [{name: read}]
  clients:
  - name: a-app
    grant_types: [client_credentials]
    labels: {team: a}
  - name: shared-unlabelled
    grant_types: [client_credentials]
- name: Team B
  audience: https://b.example.com
  labels: {team: b}
  clients:
  - name: b-app
    grant_types: [client_credentials]
"#;

/// `--select-tag team=a` manages only auth servers and clients labelled team=a: others are neither changed,
/// deleted nor dumped, and a file that names one of them is refused.
#[tokio::test]
async fn label_selection_leaves_the_rest_alone() {
    let node = TestNode::start().await;
    let id = Id::new(&node);
    id.write("all.yaml", TEAMS);
    id.ok(&["apply", "all.yaml"]).await;

    let dumped = id.ok(&["dump", "-o", "-", "--select-tag", "team=a"]).await;
    assert!(dumped.contains("_info:\n  select_labels:\n    team: a"), "{dumped}");
    assert!(
        dumped.contains("a-app") && !dumped.contains("shared-unlabelled") && !dumped.contains("Team B"),
        "{dumped}"
    );

    // Team A's file without a-app and with a new client: the new client gets the label, a-app goes, the rest stay.
    let only_a = "_format_version: \"1.0\"\n_info:\n  select_labels: {team: a}\nauth_servers:\n- name: Team A\n  \
                  audience: https://a.example.com\n  scopes: [{name: read}]\n  clients:\n  - name: a-new\n    \
                  grant_types: [client_credentials]\n";
    id.write("a.yaml", only_a);
    let (code, out, _) = id.run(&["diff", "a.yaml"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        lines(&out),
        vec!["creating client a-new for auth_server Team A", "deleting client a-app for auth_server Team A"],
        "{out}"
    );
    let (code, _, err) = id.run(&["diff", "--select-tag", "team=b", "a.yaml"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("differ from the file's _info.select_labels"), "{err}");
    id.ok(&["apply", "--select-tag", "team=a", "a.yaml"]).await;
    let all = id.ok(&["dump", "-o", "-"]).await;
    assert!(all.contains("shared-unlabelled") && all.contains("b-app") && all.contains("a-new"), "{all}");
    assert!(!all.contains("a-app"), "{all}");
    assert!(all.contains("  - name: a-new\n") && all.contains("    labels:\n      team: a\n  - name: shared"), "{all}");

    // An entity of the file that exists outside the selection is refused, naming it; nothing changes.
    let wrong = only_a.replace("Team A", "Team B").replace("https://a.example.com", "https://b.example.com");
    id.write("wrong.yaml", &wrong);
    let (code, _, err) = id.run(&["apply", "wrong.yaml"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("auth server 'Team B' exists without the selected labels (team=a)"), "{err}");
    assert_eq!(id.ok(&["dump", "-o", "-"]).await, all);

    // Deleting Team A under the selection would leave its unlabelled client behind: refused.
    id.write("none.yaml", "_format_version: \"1.0\"\n_info:\n  select_labels: {team: a}\nauth_servers: []\n");
    let (code, _, err) = id.run(&["apply", "none.yaml"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("clients shared-unlabelled are outside the selection"), "{err}");
    assert_eq!(id.ok(&["dump", "-o", "-"]).await, all);
    node.stop().await;
}

/// A change the server refuses stops the run there: what went before stays, the rest is listed as dropped, the
/// error carries the server's reason, and the exit code is 1; the corrected file then completes the work.
#[tokio::test]
async fn a_refused_change_stops_the_run_with_the_reason() {
    let node = TestNode::start().await;
    let id = Id::new(&node);
    let file = "_format_version: \"1.0\"\nauth_servers:\n- name: T\n  audience: https://t.example.com\n  scopes:\n  \
                - name: s\n  claims:\n  - name: bad\n    value: '${{ x }}'\n  clients:\n  - name: c\n    \
                grant_types: [client_credentials]\n";
    id.write("t.yaml", file);
    id.ok(&["validate", "t.yaml"]).await;
    let (code, out, err) = id.run(&["apply", "t.yaml"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        lines(&out),
        vec![
            "creating auth_server T",
            "creating scope s for auth_server T",
            "Dropped creation client c for auth_server T",
        ],
        "{out}"
    );
    assert_eq!(summary(&out), (2, 0, 0));
    assert!(err.starts_with("Error: failed to create claim bad for auth_server T: POST "), "{err}");
    assert!(err.contains("HTTP status 400") && err.contains("template error"), "{err}");

    id.write("t.yaml", &file.replace("'${{ x }}'", "fixed"));
    let out = id.ok(&["apply", "t.yaml"]).await;
    assert_eq!(
        lines(&out),
        vec!["creating claim bad for auth_server T", "creating client c for auth_server T"],
        "{out}"
    );
    node.stop().await;
}
