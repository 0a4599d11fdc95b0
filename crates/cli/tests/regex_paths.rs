//! Regex route paths as Kong's PCRE router reads them, on a real node: the Admin API accepts literal braces and
//! `(?<name>…)` groups, refuses what the linear-time engine cannot do with a schema violation naming the path, and
//! the proxy routes on them (the named group reaching a plugin as `uri_captures`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::{Method, StatusCode};
use serde_json::json;

use common::{raw_exchange, recording_upstream, status_of};
use gatehouse_testkit::TestNode;

#[tokio::test]
async fn kong_style_regex_paths_route_and_unsupported_ones_are_named() {
    let node = TestNode::start().await;
    let (upstream, seen) = recording_upstream().await;
    node.admin_ok(Method::POST, "/services", json!({"name": "deposits", "url": upstream})).await;
    let path = r"~/api/deposits/{depositAccountId}/blocks/(?<blockId>\w+)$";
    let (status, route) = node
        .admin(
            Method::POST,
            "/services/deposits/routes",
            Some(json!({"name": "blocks", "paths": [path], "strip_path": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    assert_eq!(route["paths"], json!([path]), "stored as given");
    node.admin_ok(
        Method::POST,
        "/routes/blocks/plugins",
        json!({"name": "request-transformer", "config": {"add": {"headers": ["x-block:$(uri_captures.blockId)"]}}}),
    )
    .await;
    let (status, _) = node
        .admin(
            Method::POST,
            "/services/deposits/routes",
            Some(json!({"name": "versions", "paths": [r"~/api/v\d{1,2}/deposits$"], "strip_path": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // What the engine cannot do is refused by name, with the path.
    for (bad, what) in [
        (r"~/api/(?=internal)", "look-ahead"),
        (r"~/api/(?<!v1)/x", "look-behind"),
        (r"~/api/(\w+)/\1", "backreference"),
        (r"~/api/(?>a+)", "atomic group"),
    ] {
        let (status, body) = node.admin(Method::POST, "/services/deposits/routes", Some(json!({"paths": [bad]}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["name"], "schema violation", "{body}");
        let message = body["fields"]["paths"][0].as_str().unwrap_or_else(|| panic!("{body}"));
        assert!(message.contains(what) && message.contains(&bad[1..]), "{bad}: {message}");
    }

    node.wait_config().await;
    let proxy = node.proxy_url();
    let addr = proxy.trim_start_matches("http://");
    // Literal braces in the request line, as a client that does not percent-encode them sends them.
    let response = raw_exchange(
        addr,
        b"GET /api/deposits/{depositAccountId}/blocks/b42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    {
        let seen = seen.lock().unwrap();
        let last = seen.last().unwrap();
        assert_eq!(last.uri, "/api/deposits/{depositAccountId}/blocks/b42");
        assert_eq!(last.header("x-block"), ["b42"], "the named group reaches the plugin");
    }
    let client = reqwest::Client::new();
    for (path, status) in [
        ("/api/deposits/123/blocks/b42", 404),
        ("/api/deposits/{depositAccountId}/blocks/b42/more", 404),
        ("/api/v12/deposits", 200),
        ("/api/v123/deposits", 404),
    ] {
        let res =
            raw_exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(status_of(&res), status, "{path}: {res}");
    }
    // reqwest percent-encodes braces: `%7B` is not `{`, as in Kong (the path is not decoded for matching).
    let res = client.get(format!("{proxy}/api/deposits/{{depositAccountId}}/blocks/b42")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    node.stop().await;
}
