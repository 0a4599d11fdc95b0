//! The body plugins on a real node: `request-size-limiting`, `request-transformer` and `response-transformer`
//! configured through the Admin API (Kong's 400s for bad configs) and run by the proxy in front of the echo
//! upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

#[tokio::test]
async fn bad_configs_get_kongs_400_naming_the_field() {
    let node = TestNode::start().await;
    let refused = |name: &'static str, config: Value| {
        let node = &node;
        async move {
            let (status, e) = node.admin(Method::POST, "/plugins", Some(json!({"name": name, "config": config}))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
            assert_eq!((e["code"].as_u64(), e["name"].as_str()), (Some(2), Some("schema violation")), "{e}");
            e
        }
    };
    let e = refused("request-size-limiting", json!({"size_unit": "gigabytes"})).await;
    assert_eq!(e["fields"]["config"]["size_unit"], "expected one of: megabytes, kilobytes, bytes");
    assert_eq!(e["message"], "schema violation (config.size_unit: expected one of: megabytes, kilobytes, bytes)");
    let e = refused("request-size-limiting", json!({"allowed_payload_size": "1MB"})).await;
    assert_eq!(e["fields"]["config"]["allowed_payload_size"], "expected an integer");

    let e = refused("request-transformer", json!({"http_method": "post"})).await;
    assert_eq!(e["fields"]["config"]["http_method"], "invalid value: post");
    let e = refused("request-transformer", json!({"add": {"headers": ["x bad:1"], "querystring": ["q"]}})).await;
    let text = e.to_string();
    assert!(text.contains("'x bad' is not a valid header") && text.contains("key 'q' has no value"), "{e}");
    let e = refused("request-transformer", json!({"replace": {"uri": "$(ngx.var.uri)"}})).await;
    assert!(e.to_string().contains("is not in supported format"), "{e}");

    let e = refused("response-transformer", json!({"add": {"json_types": ["integer"]}})).await;
    assert!(e.to_string().contains("expected one of: boolean, number, string"), "{e}");
    let e = refused("response-transformer", json!({"rename": {"headers": ["x-a"]}})).await;
    assert!(e.to_string().contains("invalid value: x-a"), "{e}");
    node.stop().await;
}

#[tokio::test]
async fn the_three_plugins_on_the_example_route() {
    let node = TestNode::start().await;
    node.example_service().await;
    let on_route = |name: &'static str, config: Value| {
        let node = &node;
        async move {
            node.admin_ok(Method::POST, "/routes/example-route/plugins", json!({"name": name, "config": config})).await;
        }
    };
    on_route("request-size-limiting", json!({"allowed_payload_size": 1, "size_unit": "kilobytes"})).await;
    on_route(
        "request-transformer",
        json!({"add": {"headers": ["x-user:$(query_params.user)"], "body": ["added:yes"]}, "remove": {"querystring": ["user"]}}),
    )
    .await;
    on_route(
        "response-transformer",
        json!({"add": {"headers": ["x-served:gatehouse"], "json": ["transformed:true"],
        "json_types": ["boolean"]}}),
    )
    .await;
    node.wait_config().await;
    let client = reqwest::Client::new();

    let res =
        client.post(format!("{}/anything?user=ada", node.proxy_url())).json(&json!({"a": 1})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-served"], "gatehouse");
    assert!(res.headers().get("content-length").is_none(), "the JSON body changed length");
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["transformed"], true);
    assert_eq!(echo["headers"]["X-User"], "ada");
    assert_eq!(echo["json"], json!({"a": 1, "added": "yes"}));
    assert!(echo["args"].get("user").is_none(), "{echo}");

    let res = client.post(format!("{}/anything", node.proxy_url())).body(vec![b'x'; 2048]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (headers, body): (_, Value) = (res.headers().clone(), res.json().await.unwrap());
    assert_eq!(body["message"], "Request size limit exceeded");
    assert_eq!(body["request_id"], headers["x-kong-request-id"].to_str().unwrap());
    node.stop().await;
}
