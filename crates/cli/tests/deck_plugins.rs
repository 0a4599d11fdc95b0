//! Every plugin's every field goes through decK and comes back: a state file setting each field of each plugin
//! to something other than its default syncs, the Admin API then holds exactly those values, `deck gateway dump`
//! writes them back, and syncing the dump (or diffing the original file) finds nothing to change.
//!
//! The file is JSON, which is YAML too, so the expected values are written once, here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::Method;
use serde_json::{Value, json};

use common::deck::{Deck, summary};
use gatehouse_testkit::TestNode;

/// Each plugin with every field of its config set away from its default (values Kong's schemas accept); a field
/// that excludes another one set here is set to `null` explicitly.
fn full_configs() -> Vec<(&'static str, Value)> {
    vec![
        (
            "oauth2-introspection",
            json!({"introspection_url": "http://127.0.0.1:9/introspect", "ttl": 5, "token_type_hint": "access_token",
                "authorization_value": "Basic c2VjcmV0", "timeout": 2500, "keepalive": 1000,
                "introspect_request": true, "hide_credentials": true, "run_on_preflight": false,
                "anonymous": "fallback", "consumer_by": "client_id",
                "custom_introspection_headers": {"x-api-key": "k-1"}, "custom_claims_forward": ["tenant"],
                "negative_ttl": 3}),
        ),
        (
            "request-termination",
            json!({"status_code": 418, "message": null, "body": "{\"down\":true}", "content_type": "application/json",
                "trigger": "x-stop", "echo": false}),
        ),
        (
            "cors",
            json!({"origins": ["http://a.example", "https://.*\\.b\\.example"], "headers": ["X-A"],
                "exposed_headers": ["X-B"], "methods": ["GET", "POST"], "max_age": 600, "credentials": true,
                "private_network": true, "preflight_continue": true, "allow_origin_absent": false}),
        ),
        (
            "ip-restriction",
            json!({"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.1.0.0/16"], "status": 401,
                "message": "go away"}),
        ),
        (
            "key-auth",
            json!({"key_names": ["x-key", "k_2"], "hide_credentials": true, "anonymous": "fallback",
                "key_in_header": false, "key_in_query": false, "key_in_body": true, "run_on_preflight": false,
                "realm": "gatehouse"}),
        ),
        ("correlation-id", json!({"header_name": "X-Trace", "generator": "tracker", "echo_downstream": true})),
        (
            "prometheus",
            json!({"per_consumer": true, "status_code_metrics": true, "ai_metrics": false, "latency_metrics": true,
                "bandwidth_metrics": true, "upstream_health_metrics": true, "wasm_metrics": false}),
        ),
        (
            "acl",
            json!({"allow": null, "deny": ["blocked"], "hide_groups_header": true, "always_use_authenticated_groups": true,
                "include_consumer_groups": false}),
        ),
        (
            "rate-limiting",
            json!({"second": 1, "minute": 5, "hour": 100, "day": 1000, "month": 10000, "year": 100000,
                "limit_by": "header", "header_name": "X-Tenant", "path": "/unused-by-header", "policy": "redis",
                "redis": {"host": "redis.internal", "port": 6380, "username": "gh", "password": "redis-pw-1",
                    "database": 2, "timeout": 500, "ssl": false, "ssl_verify": true, "server_name": "redis.internal"},
                "fault_tolerant": false, "hide_client_headers": true, "error_code": 430, "error_message": "slow down",
                "sync_rate": 1}),
        ),
        (
            "request-size-limiting",
            json!({"allowed_payload_size": 64, "size_unit": "kilobytes", "require_content_length": true}),
        ),
        (
            "request-transformer",
            json!({"http_method": "POST",
                "remove": {"body": ["secret"], "headers": ["x-drop"], "querystring": ["debug"]},
                "rename": {"body": ["old:new"], "headers": ["x-old:x-new"], "querystring": ["q:query"]},
                "replace": {"body": ["mode:live"], "headers": ["x-env:prod"], "querystring": ["v:2"],
                    "uri": "/v2$(uri_captures.rest)"},
                "add": {"body": ["source:gateway"], "headers": ["x-tenant:$(headers[\"x-org\"])"], "querystring": ["a:1"]},
                "append": {"body": ["tags:new"], "headers": ["x-via:gatehouse"], "querystring": ["b:2"]}}),
        ),
        (
            "response-transformer",
            json!({"remove": {"json": ["internal"], "headers": ["x-powered-by"]},
                "rename": {"json": ["id:uid"], "headers": ["x-old:x-new"]},
                "replace": {"json": ["status:ok"], "json_types": ["string"], "headers": ["cache-control:no-store"]},
                "add": {"json": ["count:3"], "json_types": ["number"], "headers": ["x-added:1"]},
                "append": {"json": ["flags:true"], "json_types": ["boolean"], "headers": ["vary:origin"]}}),
        ),
        (
            "upstream-oauth",
            json!({"oauth": {"token_endpoint": "http://127.0.0.1:9/token", "grant_type": "client_credentials",
                    "client_id": "gw-client", "client_secret": "gw-secret-1", "scopes": ["a", "b"],
                    "audience": ["https://api"], "token_headers": {"x-tenant": "t1"},
                    "token_post_args": {"resource": "urn:api"}},
                "client": {"auth_method": "client_secret_basic", "client_secret_jwt_alg": "HS256", "timeout": 2500,
                    "keep_alive": false, "ssl_verify": false},
                "behavior": {"upstream_access_token_header_name": "X-Upstream-Auth",
                    "purge_token_on_upstream_status_codes": [401, 403], "idp_error_response_status_code": 503,
                    "idp_error_response_content_type": "text/plain", "idp_error_response_message": "no token",
                    "idp_error_response_body_template": "{{message}}"},
                "cache": {"strategy": "memory", "default_ttl": 600, "eagerly_expire": 10}}),
        ),
    ]
}

fn state_file() -> String {
    let plugins: Vec<Value> =
        full_configs().into_iter().map(|(name, config)| json!({"name": name, "config": config})).collect();
    json!({"_format_version": "3.0",
        "consumers": [{"username": "fallback"}],
        "services": [{"name": "every-field", "url": "http://127.0.0.1:9/",
            "routes": [{"name": "every-field-route", "paths": ["/every-field"], "plugins": plugins}]}]})
    .to_string()
}

/// Every field set in `full_configs` holds the value set, as the Admin API returns it.
async fn assert_stored(node: &TestNode, when: &str) {
    let (_, list) = node.admin(Method::GET, "/plugins?size=100", None).await;
    let stored = list["data"].as_array().unwrap();
    for (name, config) in full_configs() {
        let plugin = stored.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{when}: no {name}"));
        for (field, value) in config.as_object().unwrap() {
            // Enterprise-only, accepted at its default and not returned, as Kong OSS does not know it.
            if field == "include_consumer_groups" {
                assert!(plugin["config"].get(field).is_none(), "{when}: {name}.config.{field}");
                continue;
            }
            let got = &plugin["config"][field];
            // Records (rate-limiting's `redis`, the transformers' lists) are compared field by field: fields this
            // test leaves out of one keep their defaults.
            match value {
                Value::Object(record) => {
                    for (inner, v) in record {
                        assert_eq!(&got[inner], v, "{when}: {name}.config.{field}.{inner}");
                    }
                }
                _ => assert_eq!(got, value, "{when}: {name}.config.{field}"),
            }
        }
    }
}

#[tokio::test]
async fn every_field_of_every_plugin_round_trips_through_deck() {
    let names: Vec<&str> = full_configs().iter().map(|(name, _)| *name).collect();
    for info in gatehouse_model::gateway::plugins::PLUGINS {
        assert!(names.contains(&info.name), "{} has no full config in this test", info.name);
        let fields = (info.config)();
        let (_, config) = full_configs().into_iter().find(|(name, _)| *name == info.name).unwrap();
        for field in fields {
            assert!(config.get(field.name).is_some(), "{}.config.{} is not set by this test", info.name, field.name);
        }
    }
    let node = TestNode::start().await;
    let deck = Deck::admin(&node);
    let file = deck.write("kong.yaml", &state_file());
    deck.ok(&["file", "validate", &file]).await;
    let out = deck.ok(&["sync", &file]).await;
    assert_eq!(summary(&out), (names.len() + 3, 0, 0), "{out}");
    assert_stored(&node, "after sync").await;

    deck.ok(&["dump", "-o", "dump"]).await;
    let dumped = deck.read("dump.yaml");
    for name in &names {
        assert!(dumped.contains(&format!("name: {name}")), "{name} missing from the dump:\n{dumped}");
    }
    let out = deck.ok(&["sync", "dump.yaml"]).await;
    assert_eq!(summary(&out), (0, 0, 0), "a dump syncs without changes:\n{out}");
    let out = deck.ok(&["diff", &file]).await;
    assert_eq!(summary(&out), (0, 0, 0), "the file and the node agree:\n{out}");
    assert_stored(&node, "after syncing the dump").await;
    node.stop().await;
}
