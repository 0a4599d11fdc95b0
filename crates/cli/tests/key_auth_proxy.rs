//! The `key-auth` plugin through a real node: keys made on the Admin API, requests over loopback to the proxy and
//! its echo upstream. Headers, query and body keys, `key_names`, `hide_credentials`, `anonymous`,
//! `run_on_preflight`, `realm`, Kong's 401 bodies and challenge, spoofed identity headers, and key-auth with acl
//! and rate-limiting (by credential) on one route.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

/// A node with the tutorial's route, consumers bob (two keys) and alice (one), and returns bob's first key's id.
async fn setup(node: &TestNode) -> String {
    node.example_service().await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "bob", "custom_id": "bob-cid"})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "alice"})).await;
    let key = node.admin_ok(Method::POST, "/consumers/bob/key-auth", json!({"key": "bob-key-1"})).await;
    node.admin_ok(Method::POST, "/consumers/bob/key-auth", json!({"key": "bob-key-2"})).await;
    node.admin_ok(Method::POST, "/consumers/alice/key-auth", json!({"key": "alice-key"})).await;
    key["id"].as_str().unwrap().to_owned()
}

async fn key_auth_on_route(node: &TestNode, config: Value) -> String {
    let plugin = node
        .admin_ok(Method::POST, "/routes/example-route/plugins", json!({"name": "key-auth", "config": config}))
        .await;
    node.wait_config().await;
    plugin["id"].as_str().unwrap().to_owned()
}

async fn reconfigure(node: &TestNode, id: &str, config: Value) {
    node.admin_ok(Method::PATCH, &format!("/plugins/{id}"), json!({"config": config})).await;
    node.wait_config().await;
}

/// The status, the `WWW-Authenticate` header, and the echo's view of the request (on 200) or the gateway's body.
async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Value) {
    let res = req.send().await.unwrap();
    let status = res.status();
    let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let request_id = res.headers().get("x-kong-request-id").map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let mut body: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    // The echo names headers as httpbin does (`X-Consumer-Id`); the tests read them in lower case.
    if let Some(headers) = body.get_mut("headers").and_then(Value::as_object_mut) {
        *headers = std::mem::take(headers).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    }
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(body["request_id"].as_str(), request_id.as_deref(), "{body}");
    }
    (status, challenge, body)
}

fn get(node: &TestNode, path_and_query: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().get(format!("{}{path_and_query}", node.proxy_url()))
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn keys_in_headers_and_queries_identify_the_consumer() {
    let node = TestNode::start().await;
    let bob_key_id = setup(&node).await;
    key_auth_on_route(&node, json!({})).await;

    let (status, _, echo) = send(get(&node, "/anything").header("apikey", "bob-key-1")).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let headers = &echo["headers"];
    assert_eq!(headers["x-consumer-username"], "bob");
    assert_eq!(headers["x-consumer-custom-id"], "bob-cid");
    assert_eq!(headers["x-credential-identifier"], bob_key_id.as_str());
    assert_eq!(headers["apikey"], "bob-key-1", "hide_credentials is off");
    assert!(headers.get("x-anonymous-consumer").is_none());

    let (status, _, echo) = send(get(&node, "/anything?a=1&apikey=alice-key")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["headers"]["x-consumer-username"], "alice");
    assert_eq!(echo["args"]["apikey"], "alice-key");
    assert!(echo["headers"].get("x-consumer-custom-id").is_none(), "alice has no custom id");

    // Kong's 401s, with `WWW-Authenticate: Key`.
    let (status, challenge, body) = send(get(&node, "/anything")).await;
    assert_eq!(
        (status, challenge.as_deref(), message(&body)),
        (StatusCode::UNAUTHORIZED, Some("Key"), "No API key found in request")
    );
    let (status, challenge, body) = send(get(&node, "/anything").header("apikey", "wrong")).await;
    assert_eq!((status, challenge.as_deref(), message(&body)), (StatusCode::UNAUTHORIZED, Some("Key"), "Unauthorized"));
    let (status, _, body) = send(get(&node, "/anything?apikey=")).await;
    assert_eq!((status, message(&body)), (StatusCode::UNAUTHORIZED, "No API key found in request"), "an empty key");
    let (status, _, body) = send(get(&node, "/anything?apikey=bob-key-1&apikey=bob-key-2")).await;
    assert_eq!((status, message(&body)), (StatusCode::UNAUTHORIZED, "Duplicate API key found"));
    let (status, _, body) = send(get(&node, "/anything").header("apikey", "bob-key-1").header("apikey", "x")).await;
    assert_eq!((status, message(&body)), (StatusCode::UNAUTHORIZED, "Duplicate API key found"));
    // The header is read before the query.
    let (status, _, _) = send(get(&node, "/anything?apikey=wrong").header("apikey", "bob-key-2")).await;
    assert_eq!(status, StatusCode::OK);

    // A client's own identity headers never reach the upstream.
    let (status, _, echo) = send(
        get(&node, "/anything")
            .header("apikey", "alice-key")
            .header("x-consumer-custom-id", "spoofed")
            .header("x-credential-identifier", "spoofed"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(echo["headers"].get("x-consumer-custom-id").is_none(), "{echo}");
    assert_ne!(echo["headers"]["x-credential-identifier"], "spoofed");

    // A deleted key stops working once the proxy has the change.
    node.admin(Method::DELETE, "/key-auths/alice-key", None).await;
    node.wait_config().await;
    let (status, _, body) = send(get(&node, "/anything").header("apikey", "alice-key")).await;
    assert_eq!((status, message(&body)), (StatusCode::UNAUTHORIZED, "Unauthorized"));
    node.stop().await;
}

#[tokio::test]
async fn key_names_sources_realm_and_hide_credentials() {
    let node = TestNode::start().await;
    setup(&node).await;
    let id = key_auth_on_route(
        &node,
        json!({"key_names": ["x_api_key", "token"], "key_in_header": false, "realm": "gatehouse"}),
    )
    .await;
    // Headers off: a header key is not looked at.
    let (status, challenge, body) = send(get(&node, "/anything").header("x-api-key", "bob-key-1")).await;
    assert_eq!(
        (status, challenge.as_deref(), message(&body)),
        (StatusCode::UNAUTHORIZED, Some("Key realm=\"gatehouse\""), "No API key found in request")
    );
    let (status, _, _) = send(get(&node, "/anything?token=bob-key-1")).await;
    assert_eq!(status, StatusCode::OK, "the second key name");
    // `?x_api_key` without a value is not a key: Kong goes on to the next name.
    let (status, _, _) = send(get(&node, "/anything?x_api_key&token=bob-key-1")).await;
    assert_eq!(status, StatusCode::OK);

    // Headers on: `x_api_key` reads the `X-Api-Key` header (Kong's header table ignores case and `_`/`-`).
    reconfigure(&node, &id, json!({"key_in_header": true, "key_in_query": false, "hide_credentials": true})).await;
    let (status, _, echo) = send(get(&node, "/anything?token=x&keep=1").header("X-Api-Key", "bob-key-1")).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert!(echo["headers"].get("x-api-key").is_none(), "hidden");
    assert_eq!(echo["args"], json!({"token": "x", "keep": "1"}), "only the name the key was found under goes");
    let (status, _, _) = send(get(&node, "/anything?token=bob-key-1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "queries are off");

    // Query keys hidden: the other arguments go on as they were.
    reconfigure(&node, &id, json!({"key_in_query": true, "key_in_header": false})).await;
    let (status, _, echo) = send(get(&node, "/anything?a=1&token=bob-key-2&b=%20x")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["args"], json!({"a": "1", "b": " x"}));
    assert_eq!(echo["url"].as_str().unwrap().split_once('?').unwrap().1, "a=1&b=%20x");

    // Body keys: form, JSON and multipart, hidden from each.
    reconfigure(&node, &id, json!({"key_in_body": true, "key_in_query": false})).await;
    let post = || reqwest::Client::new().post(format!("{}/anything", node.proxy_url()));
    let (status, _, echo) = send(post().form(&[("token", "bob-key-1"), ("other", "v")])).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(
        (echo["form"].clone(), echo["headers"]["x-consumer-username"].clone()),
        (json!({"other": "v"}), json!("bob"))
    );
    let (status, _, echo) = send(post().json(&json!({"token": "alice-key", "n": 1}))).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(
        (echo["json"].clone(), echo["headers"]["x-consumer-username"].clone()),
        (json!({"n": 1}), json!("alice"))
    );
    let boundary = "XyZ";
    let multipart = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"token\"\r\n\r\nbob-key-2\r\n--{boundary}\r\n\
         content-disposition: form-data; name=\"keep\"\r\n\r\nyes\r\n--{boundary}--\r\n"
    );
    let (status, _, echo) =
        send(post().header("content-type", format!("multipart/form-data; boundary={boundary}")).body(multipart)).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let data = echo["data"].as_str().unwrap();
    assert!(data.contains("keep") && !data.contains("bob-key-2"), "{data}");
    // A JSON key that is not a string is not a key; an array is Kong's duplicate.
    let (_, _, body) = send(post().json(&json!({"token": 5}))).await;
    assert_eq!(message(&body), "No API key found in request");
    let (_, _, body) = send(post().json(&json!({"token": ["a", "b"]}))).await;
    assert_eq!(message(&body), "Duplicate API key found");
    // A key found in a header is hidden from the body too, as Kong clears the name everywhere it may be.
    reconfigure(&node, &id, json!({"key_in_header": true})).await;
    let (status, _, echo) =
        send(post().header("x-api-key", "bob-key-1").json(&json!({"x_api_key": "another", "n": 2}))).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(echo["json"], json!({"n": 2}));
    assert!(echo["headers"].get("x-api-key").is_none());
    // Without `key_in_body` the body is not read.
    reconfigure(&node, &id, json!({"key_in_body": false, "key_in_header": false})).await;
    let (status, _, _) = send(post().form(&[("token", "bob-key-1")])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    node.stop().await;
}

#[tokio::test]
async fn anonymous_and_preflight() {
    let node = TestNode::start().await;
    setup(&node).await;
    let guest = node.admin_ok(Method::POST, "/consumers", json!({"username": "guest"})).await;
    let id = key_auth_on_route(&node, json!({"anonymous": "guest"})).await;

    let (status, _, echo) = send(get(&node, "/anything")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["headers"]["x-consumer-username"], "guest");
    assert_eq!(echo["headers"]["x-anonymous-consumer"], "true");
    assert_eq!(echo["headers"]["x-consumer-id"], guest["id"]);
    let (status, _, echo) = send(get(&node, "/anything").header("apikey", "wrong")).await;
    assert_eq!((status, echo["headers"]["x-consumer-username"].clone()), (StatusCode::OK, json!("guest")));
    let (status, _, echo) =
        send(get(&node, "/anything").header("apikey", "bob-key-1").header("x-anonymous-consumer", "true")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["headers"]["x-consumer-username"], "bob");
    assert!(echo["headers"].get("x-anonymous-consumer").is_none(), "a spoofed header goes");

    // An anonymous consumer that does not exist is Kong's 500.
    reconfigure(&node, &id, json!({"anonymous": "nobody"})).await;
    let (status, _, body) = send(get(&node, "/anything")).await;
    assert_eq!(
        (status, message(&body)),
        (StatusCode::INTERNAL_SERVER_ERROR, "anonymous consumer nobody is configured but doesn't exist")
    );

    // Preflight: authenticated by default, let through with `run_on_preflight: false`.
    reconfigure(&node, &id, json!({"anonymous": null})).await;
    let options = || reqwest::Client::new().request(Method::OPTIONS, format!("{}/anything", node.proxy_url()));
    let (status, _, body) = send(options()).await;
    assert_eq!((status, message(&body)), (StatusCode::UNAUTHORIZED, "No API key found in request"));
    reconfigure(&node, &id, json!({"run_on_preflight": false})).await;
    let (status, _, echo) = send(options().header("x-consumer-username", "spoofed")).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert!(
        echo["headers"].get("x-consumer-username").is_none(),
        "a let-through preflight carries no spoofed identity"
    );
    let (status, _, _) = send(get(&node, "/anything")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "only OPTIONS passes");
    node.stop().await;
}

/// key-auth identifies, acl allows by the consumer's groups, rate-limiting counts per credential: two keys of one
/// consumer have separate limits. The clock is frozen, so the minute window cannot roll over mid-test.
#[tokio::test]
async fn key_auth_acl_and_rate_limiting_by_credential() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    setup(&node).await;
    node.admin_ok(Method::POST, "/consumers/bob/acls", json!({"group": "paying"})).await;
    for (name, config) in [
        ("key-auth", json!({})),
        ("acl", json!({"allow": ["paying"]})),
        ("rate-limiting", json!({"minute": 2, "limit_by": "credential", "policy": "local"})),
    ] {
        node.admin_ok(Method::POST, "/routes/example-route/plugins", json!({"name": name, "config": config})).await;
    }
    node.wait_config().await;
    let call = |key: &'static str| send(get(&node, "/anything").header("apikey", key));

    assert_eq!(call("bob-key-1").await.0, StatusCode::OK);
    assert_eq!(call("bob-key-1").await.0, StatusCode::OK);
    let (status, _, body) = call("bob-key-1").await;
    assert_eq!((status, message(&body)), (StatusCode::TOO_MANY_REQUESTS, "API rate limit exceeded"));
    // The same consumer's other key is another credential: its own count.
    assert_eq!(call("bob-key-2").await.0, StatusCode::OK);
    // alice is identified but not in the group.
    let (status, _, body) = call("alice-key").await;
    assert_eq!((status, message(&body)), (StatusCode::FORBIDDEN, "You cannot consume this service"));
    let (status, _, body) = send(get(&node, "/anything")).await;
    assert_eq!((status, message(&body)), (StatusCode::UNAUTHORIZED, "No API key found in request"));
    node.stop().await;
}
