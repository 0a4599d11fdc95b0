//! decK's commands run as a user runs them (the binary, as `gatehouse gateway …` and as `deck …`) against a real
//! node over loopback: the Kong Admin API and Konnect mode, on SQLite and, when enabled, PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::Method;
use serde_json::Value;

use common::bin;
use common::deck::{Deck, lines, summary};
use gatehouse_store::testing::TempDir;
use gatehouse_testkit::{TestNode, run_with_input};

async fn names(node: &TestNode, collection: &str) -> Vec<String> {
    let (_, list) = node.admin(Method::GET, &format!("/{collection}"), None).await;
    let mut names: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().or_else(|| e["username"].as_str()).or_else(|| e["id"].as_str()).unwrap().to_owned())
        .collect();
    names.sort();
    names
}

const BASE: &str = r#"_format_version: "3.0"
services:
- name: orders
  url: http://127.0.0.1:9/orders
  routes:
  - name: orders-route
    paths: ["/orders"]
    plugins:
    - name: request-termination
      config: {status_code: 418}
- name: billing
  host: billing.internal
  tags: [team-b]
routes:
- name: billing-route
  service: {name: billing}
  paths: ["/billing"]
consumers:
- username: alice
  custom_id: c-1
plugins:
- name: oauth2-introspection
  config:
    introspection_url: http://127.0.0.1:9/introspect
    authorization_value: ${{ env "DECK_AUTH" }}
    consumer_by: client_id
"#;

/// dump → sync of the dump changes nothing; diff of a changed file lists exactly the changes (exit 2 with
/// `--non-zero-exit-code`), masks secrets, and sends nothing; sync applies them.
async fn dump_diff_sync(node: &TestNode, deck: &mut Deck) {
    deck.env.push(("DECK_AUTH", "Basic c2VjcmV0LXZhbHVl".to_owned()));
    let file = deck.write("kong.yaml", BASE);
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(
        lines(&out),
        vec![
            "creating consumer alice",
            "creating service orders",
            "creating service billing",
            "creating route orders-route",
            "creating route billing-route",
            "creating plugin request-termination for route orders-route",
            "creating plugin oauth2-introspection (global)",
        ],
        "{out}"
    );
    assert_eq!(summary(&out), (7, 0, 0));

    deck.ok(&["dump", "-o", "dump"]).await;
    let dumped = deck.read("dump.yaml");
    assert!(dumped.starts_with("_format_version: \"3.0\""), "{dumped}");
    assert!(!dumped.contains("negative_ttl"), "Gatehouse-only fields at their defaults stay out of dumps");
    assert!(!dumped.contains("created_at") && !dumped.contains("\nid:"), "{dumped}");
    let out = deck.ok(&["sync", "dump.yaml"]).await;
    assert_eq!((lines(&out), summary(&out)), (vec![], (0, 0, 0)), "a dump syncs without changes:\n{out}");
    let (code, out, _) = deck.run(&["diff", "--non-zero-exit-code", &file]).await;
    assert_eq!((code, summary(&out)), (0, (0, 0, 0)), "{out}");

    let changed = BASE
        .replace("host: billing.internal", "host: billing.internal\n  retries: 2")
        .replace("consumer_by: client_id", "consumer_by: username")
        .replace("consumers:\n- username: alice\n  custom_id: c-1\n", "")
        .replace(
            "routes:\n- name: billing-route",
            "routes:\n- name: billing-admin\n  service: billing\n  paths: [\"/admin\"]\n- name: billing-route",
        );
    let changed_file = deck.write("changed.yaml", &changed);
    let (code, out, err) = deck.run(&["diff", "--non-zero-exit-code", &changed_file]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        lines(&out),
        vec![
            "updating service billing  {",
            "creating route billing-admin",
            "updating plugin oauth2-introspection (global)  {",
            "deleting consumer alice",
        ],
        "{out}"
    );
    assert!(out.contains("-  \"retries\": 5,\n+  \"retries\": 2,"), "{out}");
    assert!(out.contains("\"authorization_value\": \"[masked]\""), "{out}");
    assert!(!out.contains("c2VjcmV0LXZhbHVl"), "secrets never printed:\n{out}");
    assert_eq!(summary(&out), (1, 2, 1));
    let (code, json, _) = deck.run(&["diff", "--json-output", &changed_file]).await;
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["summary"], serde_json::json!({"creating": 1, "updating": 2, "deleting": 1, "total": 4}));
    assert_eq!(json["changes"]["deleting"][0]["name"], "alice");
    assert!(!json.to_string().contains("c2VjcmV0LXZhbHVl"));
    assert_eq!(names(node, "consumers").await, vec!["alice"], "diff changes nothing");

    let out = deck.ok(&["sync", &changed_file]).await;
    assert_eq!(summary(&out), (1, 2, 1), "{out}");
    assert_eq!(names(node, "consumers").await, Vec::<String>::new());
    assert_eq!(names(node, "routes").await, vec!["billing-admin", "billing-route", "orders-route"]);
    let (_, plugins) = node.admin(Method::GET, "/plugins?size=10", None).await;
    let global = plugins["data"].as_array().unwrap().iter().find(|p| p["name"] == "oauth2-introspection").unwrap();
    assert_eq!(global["config"]["authorization_value"], "Basic c2VjcmV0LXZhbHVl");
    assert_eq!(global["config"]["consumer_by"], "username");
}

#[tokio::test]
async fn dump_diff_and_sync_against_the_admin_api() {
    let node = TestNode::start().await;
    dump_diff_sync(&node, &mut Deck::admin(&node)).await;
    node.stop().await;
}

#[tokio::test]
async fn dump_diff_and_sync_in_konnect_mode_on_postgres() {
    let Some(node) = TestNode::builder().postgres().start().await else {
        eprintln!("PostgreSQL suite: SKIPPED");
        return;
    };
    let mut deck = Deck::konnect(&node);
    dump_diff_sync(&node, &mut deck).await;
    let dumped = deck.read("dump.yaml");
    assert!(dumped.contains("_konnect:\n  control_plane_name: default"), "{dumped}");
    node.stop().await;
}

#[tokio::test]
async fn konnect_mode_on_sqlite_and_the_deck_name() {
    let node = TestNode::start().await;
    let deck = Deck::konnect(&node);
    // The binary under the name `deck`, as the tutorial runs it.
    let link = deck.dir.path().join("deck");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let yaml = "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:9/x\n";
    let (code, out, err) =
        run_with_input(&link, &["gateway", "apply", "-"], &deck.env, deck.dir.path(), Some(yaml)).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lines(&out), vec!["creating service s"]);
    // No file argument reads stdin too; `gatehouse deck gateway …` is the same command.
    let (code, out, _) =
        run_with_input(&bin(), &["deck", "gateway", "diff"], &deck.env, deck.dir.path(), Some(yaml)).await;
    assert_eq!((code, summary(&out)), (0, (0, 0, 0)));
    assert_eq!(names(&node, "services").await, vec!["s"]);
    // A wrong token is refused before anything is read.
    let mut bad = Deck::konnect(&node);
    bad.env[1].1 = "gpat_wrong".into();
    let (code, _, err) = bad.run_input(&["sync"], Some(yaml)).await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    node.stop().await;
}

#[tokio::test]
async fn sync_deletes_what_is_gone_and_apply_never_deletes() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let two = "_format_version: \"3.0\"\nservices:\n- name: a\n  host: a.internal\n  routes:\n  - name: ra\n    paths: [/a]\n- name: b\n  host: b.internal\n";
    let one = "_format_version: \"3.0\"\nservices:\n- name: b\n  host: b.internal\n  port: 8080\n";
    deck.ok(&["apply", &deck.write("two.yaml", two)]).await;
    let out = deck.ok(&["apply", &deck.write("one.yaml", one)]).await;
    assert_eq!((lines(&out), summary(&out)), (vec!["updating service b  {"], (0, 1, 0)), "{out}");
    assert_eq!(names(&node, "services").await, vec!["a", "b"], "apply never deletes");
    let out = deck.ok(&["sync", "one.yaml"]).await;
    assert_eq!(lines(&out), vec!["deleting route ra", "deleting service a"], "routes go before their service");
    assert_eq!(names(&node, "services").await, vec!["b"]);
    // An apply file may refer to what the server already has.
    let route = "_format_version: \"3.0\"\nroutes:\n- name: rb\n  service: {name: b}\n  paths: [/b]\n";
    deck.ok(&["apply", &deck.write("route.yaml", route)]).await;
    assert_eq!(names(&node, "routes").await, vec!["rb"]);
    // Reset asks first; `-f` does not.
    let (code, out, _) = deck.run_input(&["reset"], Some("no\n")).await;
    assert_eq!(code, 0);
    assert!(out.contains("Are you sure?"), "{out}");
    assert_eq!(names(&node, "services").await, vec!["b"]);
    let out = deck.ok(&["reset", "-f"]).await;
    assert_eq!(summary(&out), (0, 0, 2), "{out}");
    assert!(names(&node, "services").await.is_empty());
    node.stop().await;
}

#[tokio::test]
async fn select_tags_limit_what_sync_touches() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let unmanaged = "_format_version: \"3.0\"\nservices:\n- name: other\n  host: o.internal\n";
    deck.ok(&["sync", &deck.write("other.yaml", unmanaged)]).await;
    let team = "_format_version: \"3.0\"\n_info:\n  select_tags: [team-a]\nservices:\n- name: mine\n  host: m.internal\n  routes:\n  - name: mine-route\n    paths: [/m]\n    service: {name: other}\n";
    let out = deck.ok(&["sync", &deck.write("team.yaml", team)]).await;
    assert_eq!(summary(&out), (2, 0, 0), "nothing untagged is deleted:\n{out}");
    assert_eq!(names(&node, "services").await, vec!["mine", "other"]);
    let (_, mine) = node.admin(Method::GET, "/services/mine", None).await;
    assert_eq!(mine["tags"], serde_json::json!(["team-a"]), "select tags are added to the file's entities");
    // The same selection from the flag, and an empty file for the team: only its entities go.
    let empty = "_format_version: \"3.0\"\n";
    let out = deck.ok(&["sync", "--select-tag", "team-a", &deck.write("empty.yaml", empty)]).await;
    assert_eq!(lines(&out), vec!["deleting route mine-route", "deleting service mine"], "{out}");
    assert_eq!(names(&node, "services").await, vec!["other"]);
    // A name taken by an entity outside the selection is an error before anything changes.
    let clash = team.replace("name: mine\n", "name: other\n");
    let (code, _, err) = deck.run(&["sync", &deck.write("clash.yaml", &clash)]).await;
    assert_eq!(code, 1);
    assert!(err.contains("clash.yaml:5:3") && err.contains("without the select_tags team-a"), "{err}");
    assert_eq!(names(&node, "services").await, vec!["other"]);
    node.stop().await;
}

#[tokio::test]
async fn renamed_entities_sync_without_conflicts() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let before = "_format_version: \"3.0\"\nservices:\n- name: old-name\n  host: s.internal\n  routes:\n  - name: r\n    paths: [/r]\n    plugins:\n    - name: request-termination\n      instance_name: stop\n      config: {}\nconsumers:\n- username: bob\n  custom_id: id-1\n";
    deck.ok(&["sync", &deck.write("before.yaml", before)]).await;
    let (_, consumer) = node.admin(Method::GET, "/consumers/bob", None).await;
    // The service gets a new name, the consumer a new username (its custom_id, unique, stays).
    let after = before.replace("old-name", "new-name").replace("username: bob", "username: robert");
    let out = deck.ok(&["sync", &deck.write("after.yaml", &after)]).await;
    assert_eq!(
        lines(&out),
        vec![
            "updating consumer robert  {",
            "creating service new-name",
            "updating route r  {",
            "deleting service old-name"
        ],
        "{out}"
    );
    assert_eq!(names(&node, "services").await, vec!["new-name"]);
    let (_, renamed) = node.admin(Method::GET, "/consumers/robert", None).await;
    assert_eq!(renamed["id"], consumer["id"], "the consumer keeps its id");
    let out = deck.ok(&["sync", "after.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 0));
    node.stop().await;
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_names_the_place() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let bad = "_format_version: \"3.0\"\nservices:\n- name: fine\n  host: f.internal\n- name: broken\n  host: b.internal\n  routes:\n  - name: bad-route\n    paths: [\"no-slash\"]\n    methods: [get]\n";
    let file = deck.write("bad.yaml", bad);
    for cmd in ["sync", "apply", "diff", "validate"] {
        let (code, out, err) = deck.run(&[cmd, &file]).await;
        assert_eq!(code, 1, "{cmd}: {out}");
        assert!(err.contains("bad.yaml:9:13: route paths.1: should start with: /"), "{cmd}: {err}");
        assert!(err.contains("bad.yaml:10:15: route methods.1"), "{err}");
    }
    let (code, _, err) = deck.run(&["file", "validate", &file]).await;
    assert_eq!(code, 1);
    assert!(err.contains("bad.yaml:9:13"), "{err}");
    assert!(names(&node, "services").await.is_empty(), "nothing was sent");

    for (text, expect) in [
        ("services:\n- name: x\n  host: h\n", "cannot apply '1.1' config format version"),
        ("_format_version: \"3.0\"\nservices:\n- name: x\n  host: ${{ env \"DECK_MISSING\" }}\n", "bad2.yaml:4:9"),
        ("_format_version: \"3.0\"\nservices:\n- name: x\n  host: [\n", "bad2.yaml:"),
        ("_format_version: \"3.0\"\nroutes:\n- name: r\n  paths: [/r]\n  service: {name: nowhere}\n", "bad2.yaml:5:12"),
        ("_format_version: \"3.0\"\nvaults:\n- name: v\n", "not supported"),
        ("_format_version: \"3.0\"\nservices:\n- name: x\n  host: h\n- name: x\n  host: h\n", "appears twice"),
    ] {
        let (code, _, err) = deck.run(&["sync", &deck.write("bad2.yaml", text)]).await;
        assert_eq!(code, 1, "{text}");
        assert!(err.contains(expect), "{text}\n{err}");
    }
    assert!(names(&node, "services").await.is_empty());
    // Offline validation of a good file needs no server.
    let offline = Deck { dir: TempDir::new("deck"), env: vec![("DECK_KONG_ADDR", "http://127.0.0.1:9".into())] };
    let good = "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://h/x\n";
    let (code, _, err) = offline.run(&["file", "validate", &offline.write("good.yaml", good)]).await;
    assert_eq!(code, 0, "{err}");
    node.stop().await;
}

/// A dump as decK writes it from Kong 3.x: every field Kong returns, including ones Gatehouse does not implement
/// (at their defaults or empty), and Konnect's `consumer_group: null` and `partials: []` on plugins.
const KONG_3_DUMP: &str = r#"_format_version: "3.0"
services:
- connect_timeout: 60000
  enabled: true
  host: httpbin.konghq.com
  name: example-service
  path: /anything
  port: 80
  protocol: http
  read_timeout: 60000
  retries: 5
  write_timeout: 60000
  ca_certificates: null
  client_certificate: null
  tls_verify_depth: null
  routes:
  - https_redirect_status_code: 426
    name: example-route
    path_handling: v0
    paths:
    - /anything
    preserve_host: false
    protocols:
    - http
    - https
    regex_priority: 0
    request_buffering: true
    response_buffering: true
    snis: []
    sources: null
    destinations: null
    strip_path: true
    plugins:
    - config:
        body: null
        content_type: null
        echo: false
        message: maintenance
        status_code: 503
        trigger: null
      enabled: true
      name: request-termination
      consumer_group: null
      partials: []
      ordering: null
      protocols:
      - grpc
      - grpcs
      - http
      - https
consumers:
- username: alice
  custom_id: c-1
plugins:
- config:
    anonymous: ""
    authorization_value: Basic dXNlcjpwYXNz
    consumer_by: username
    custom_claims_forward: []
    custom_introspection_headers: {}
    hide_credentials: false
    introspect_request: false
    introspection_url: http://127.0.0.1:9/introspect
    keepalive: 60000
    run_on_preflight: true
    timeout: 10000
    token_type_hint: null
    ttl: 30
  enabled: true
  name: oauth2-introspection
  instance_name: intro
  consumer_group: null
  partials: []
  protocols:
  - http
  - https
"#;

#[tokio::test]
async fn a_kong_3_dump_validates_and_syncs() {
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let file = deck.write("kong.yaml", KONG_3_DUMP);
    let (code, _, err) = deck.run(&["file", "validate", &file]).await;
    assert_eq!(code, 0, "{err}");
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (5, 0, 0), "{out}");
    assert_eq!(names(&node, "plugins").await.len(), 2);
    let (_, plugin) = node.admin(Method::GET, "/plugins/intro", None).await;
    assert_eq!(plugin["protocols"], serde_json::json!(["http", "https"]), "{plugin}");
    // What was synced is what the file says: nothing left to change.
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (0, 0, 0), "{out}");
    // A value Gatehouse would ignore is refused, naming the place and the field.
    let grouped = KONG_3_DUMP.replacen(
        "  consumer_group: null\n  partials: []\n  protocols:",
        "  consumer_group: {id: 0190a0a0-0000-7000-8000-000000000001}\n  partials: []\n  protocols:",
        1,
    );
    assert_ne!(grouped, KONG_3_DUMP);
    let (code, _, err) = deck.run(&["sync", &deck.write("grouped.yaml", &grouped)]).await;
    assert_eq!(code, 1);
    assert!(err.contains("plugin consumer_group: not supported by Gatehouse"), "{err}");
    node.stop().await;
}

/// Under its own name the binary is decK: decK's usage line, `version`, `gateway ping` in both modes, completions;
/// colour only when asked for (never into a pipe, never against NO_COLOR); no progress counter into a pipe.
#[tokio::test]
async fn deck_under_its_own_name() {
    let node = TestNode::start().await;
    let admin = Deck::admin(&node);
    let link = admin.dir.path().join("deck");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let run = |args: &'static [&'static str], env: Vec<(&'static str, String)>| {
        let (link, dir) = (link.clone(), admin.dir.path().to_owned());
        async move { run_with_input(&link, args, &env, &dir, None).await }
    };
    let (code, out, _) = run(&["--help"], vec![]).await;
    assert_eq!(code, 0);
    assert!(out.contains("Usage: deck <COMMAND>") && !out.contains("deck deck"), "{out}");
    let (code, out, _) = run(&["version"], vec![]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("decK {} (commit ", env!("CARGO_PKG_VERSION"))), "{out}");

    let (code, out, err) = run(&["gateway", "ping"], admin.env.clone()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim_end(), "Successfully connected to Kong!\nKong version:  3.10.0");
    let konnect = Deck::konnect(&node);
    let (code, out, err) = run(&["gateway", "ping"], konnect.env.clone()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Successfully Konnected to control plane 'default'"), "{out}");
    let mut wrong = konnect.env.clone();
    wrong[1].1 = "gpat_wrong".into();
    let (code, _, err) = run(&["gateway", "ping"], wrong).await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = run(&["gateway", "ping"], vec![("DECK_KONG_ADDR", "http://127.0.0.1:9".into())]).await;
    assert_eq!(code, 1, "nothing listens there: {err}");

    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = run_with_input(&link, &["completion", shell], &[], admin.dir.path(), None).await;
        assert_eq!(code, 0);
        assert!(out.contains("deck") && out.contains("gateway") && out.contains("ping"), "{shell}");
        assert!(!out.contains("quickstart"), "{shell}: decK's commands only");
    }

    // Colour: forced with CLICOLOR_FORCE, then NO_COLOR wins; into a pipe alone, none and no counter.
    let yaml = |n: usize| {
        let services: String = (0..n).map(|i| format!("- name: s{i}\n  host: h{i}.internal\n")).collect();
        format!("_format_version: \"3.0\"\nservices:\n{services}")
    };
    let sync = |file: String, extra: Vec<(&'static str, String)>| {
        let mut env = admin.env.clone();
        env.extend(extra);
        let (link, dir) = (link.clone(), admin.dir.path().to_owned());
        async move { run_with_input(&link, &["gateway", "sync", &file], &env, &dir, None).await }
    };
    let (code, out, err) = sync(admin.write("a.yaml", &yaml(3)), vec![]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\x1b') && !err.contains("sending changes"), "{out}{err}");
    assert_eq!(summary(&out), (3, 0, 0));
    let (_, out, _) = sync(admin.write("b.yaml", &yaml(4)), vec![("CLICOLOR_FORCE", "1".into())]).await;
    assert!(out.contains("\x1b[32mcreating service s3\x1b[0m"), "{out:?}");
    let forced_but_no = vec![("CLICOLOR_FORCE", "1".into()), ("NO_COLOR", "1".into())];
    let (_, out, _) = sync(admin.write("c.yaml", &yaml(5)), forced_but_no).await;
    assert!(out.contains("creating service s4") && !out.contains('\x1b'), "{out:?}");
    node.stop().await;
}
