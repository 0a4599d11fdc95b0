//! `cors`, `ip-restriction` and `correlation-id` through a real node's proxy: preflights answered before
//! authentication, CORS headers on answers the upstream, the gateway or another plugin made, client addresses
//! behind a trusted proxy, and Kong's id formats; plus the Admin API's 400s for bad configurations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

const ALL_METHODS: &str = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT";
const MISSING_TOKEN: &str = r#"{"error":"invalid_request","error_description":"The access token is missing"}"#;

/// A service on `upstream` and a route `path` to it, with `plugins` (name, config) on the route.
async fn route(node: &TestNode, name: &str, upstream: &str, path: &str, plugins: &[(&str, Value)]) {
    node.admin_ok(Method::POST, "/services", json!({"name": name, "url": upstream})).await;
    node.admin_ok(Method::POST, &format!("/services/{name}/routes"), json!({"name": name, "paths": [path]})).await;
    for (plugin, config) in plugins {
        node.admin_ok(Method::POST, &format!("/routes/{name}/plugins"), json!({"name": plugin, "config": config}))
            .await;
    }
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, String) {
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.unwrap())
}

fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn one<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

const CORS_HEADERS: [&str; 7] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-max-age",
    "access-control-expose-headers",
    "access-control-allow-private-network",
];

fn no_cors(headers: &HeaderMap) -> bool {
    CORS_HEADERS.iter().all(|h| !headers.contains_key(*h))
}

/// An upstream that sets CORS headers and `Vary` of its own, to see which the plugin replaces, removes or joins.
async fn opinionated_upstream() -> String {
    let app = axum::Router::new().fallback(|| async {
        (
            [
                ("vary", "Accept-Encoding"),
                ("access-control-allow-origin", "https://upstream.example"),
                ("access-control-expose-headers", "X-Upstream"),
            ],
            "from upstream",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn preflights_are_answered_before_authentication_and_401s_carry_cors_headers() {
    let node = TestNode::start().await;
    let echo = format!("{}/anything", node.echo_url());
    let cors = json!({"origins": ["https://app.example", "(.*)\\.example\\.org"], "credentials": true,
        "max_age": 3600, "headers": ["X-A", "X-B"], "methods": ["GET", "POST"], "exposed_headers": ["X-Total", "X-Page"],
        "private_network": true});
    // The IdP is never asked: preflights do not reach the plugin, other requests here carry no token.
    let introspection =
        json!({"introspection_url": "http://127.0.0.1:9/introspect", "authorization_value": "Basic eDp5"});
    route(&node, "api", &echo, "/api", &[("cors", cors), ("oauth2-introspection", introspection)]).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    let url = format!("{}/api", node.proxy_url());
    let preflight = |origin: &str| {
        http.request(Method::OPTIONS, &url).header("origin", origin).header("access-control-request-method", "POST")
    };

    let (status, h, body) =
        send(preflight("https://app.example").header("access-control-request-private-network", "true")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""), "answered by cors, without a token");
    assert_eq!(one(&h, "access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(all(&h, "vary"), ["Origin"]);
    assert_eq!(one(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(one(&h, "access-control-allow-headers"), Some("X-A,X-B"), "configured, not the request's");
    assert_eq!(one(&h, "access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(one(&h, "access-control-max-age"), Some("3600"));
    assert_eq!(one(&h, "access-control-allow-private-network"), Some("true"));
    assert_eq!(one(&h, "content-length"), Some("0"));
    assert!(!h.contains_key("access-control-expose-headers"), "not on preflights");
    assert!(!h.contains_key("www-authenticate"));
    assert_eq!(one(&h, "x-kong-request-id").unwrap().len(), 32);

    // A regex entry without `:` is matched against the host; the answer names the request's origin.
    let (status, h, _) = send(preflight("http://api.example.org:8080")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one(&h, "access-control-allow-origin"), Some("http://api.example.org:8080"));
    assert!(!h.contains_key("access-control-allow-private-network"), "only when the preflight asks");
    // Kong anchors regexes: a suffix after the match is another origin. Still answered, without an origin.
    let (status, h, _) = send(preflight("https://api.example.org.evil.example")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!h.contains_key("access-control-allow-origin"));
    assert_eq!(one(&h, "access-control-allow-credentials"), Some("true"), "Kong sends it whenever not `*`");

    // Not preflights: no `Access-Control-Request-Method`, or an empty `Origin` — authentication answers.
    let (status, h, body) = send(http.request(Method::OPTIONS, &url).header("origin", "https://app.example")).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, MISSING_TOKEN));
    assert_eq!(one(&h, "access-control-allow-origin"), Some("https://app.example"));
    let (status, _, _) =
        send(http.request(Method::OPTIONS, &url).header("origin", "").header("access-control-request-method", "GET"))
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The 401 authentication made gets the CORS headers, as Kong's header_filter runs after kong.response.exit.
    let (status, h, body) = send(http.get(&url).header("origin", "https://www.example.org")).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, MISSING_TOKEN));
    assert_eq!(one(&h, "www-authenticate"), Some(r#"Bearer realm="service""#));
    assert_eq!(one(&h, "access-control-allow-origin"), Some("https://www.example.org"));
    assert_eq!(one(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(one(&h, "access-control-expose-headers"), Some("X-Total,X-Page"));
    assert_eq!(all(&h, "vary"), ["Origin"]);
    assert!(!h.contains_key("access-control-allow-methods") && !h.contains_key("access-control-max-age"));

    // preflight_continue: the preflight goes on to authentication, and the plugin adds nothing to its answer.
    let (_, plugins) = node.admin(Method::GET, "/routes/api/plugins", None).await;
    let cors_id = plugins["data"].as_array().unwrap().iter().find(|p| p["name"] == "cors").unwrap()["id"].clone();
    let patch = json!({"config": {"preflight_continue": true}});
    node.admin_ok(Method::PATCH, &format!("/plugins/{}", cors_id.as_str().unwrap()), patch).await;
    node.wait_config().await;
    let (status, h, body) = send(preflight("https://app.example")).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, MISSING_TOKEN));
    assert!(no_cors(&h), "{h:?}");
    node.stop().await;
}

#[tokio::test]
async fn preflight_continue_reaches_the_upstream() {
    let node = TestNode::start().await;
    let echo = format!("{}/anything", node.echo_url());
    route(&node, "api", &echo, "/api", &[("cors", json!({"preflight_continue": true}))]).await;
    node.wait_config().await;
    let res = reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}/api", node.proxy_url()))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(no_cors(res.headers()), "the upstream's answer, untouched");
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["method"], "OPTIONS");
    assert_eq!(echo["headers"]["Access-Control-Request-Method"], "PUT");
    node.stop().await;
}

#[tokio::test]
async fn cors_defaults_and_what_the_upstream_sent() {
    let node = TestNode::start().await;
    let upstream = opinionated_upstream().await;
    let echo = format!("{}/anything", node.echo_url());
    route(&node, "defaults", &upstream, "/defaults", &[("cors", json!({}))]).await;
    route(&node, "credentials", &upstream, "/credentials", &[("cors", json!({"credentials": true}))]).await;
    route(&node, "fixed", &upstream, "/fixed", &[("cors", json!({"origins": ["https://fixed.example:8443"]}))]).await;
    let list = json!({"origins": ["https://a.example", "https://b.example:443"], "exposed_headers": ["X-Mine"]});
    route(&node, "list", &upstream, "/list", &[("cors", list)]).await;
    let star = json!({"origins": ["https://a.example", "*"], "allow_origin_absent": false});
    route(&node, "star", &upstream, "/star", &[("cors", star)]).await;
    route(&node, "age", &echo, "/age", &[("cors", json!({"max_age": 1.5, "methods": []}))]).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", node.proxy_url());

    // No origins: every origin, as `*`, replacing the upstream's; `Vary` stays the upstream's alone.
    for origin in [Some("https://any.example"), None] {
        let mut req = http.get(url("/defaults"));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        let (status, h, body) = send(req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "from upstream"));
        assert_eq!(one(&h, "access-control-allow-origin"), Some("*"), "allow_origin_absent defaults to true");
        assert_eq!(all(&h, "vary"), ["Accept-Encoding"]);
        assert_eq!(one(&h, "access-control-expose-headers"), Some("X-Upstream"), "none configured: left alone");
        assert!(!h.contains_key("access-control-allow-credentials"));
    }
    let (status, h, _) = send(
        http.request(Method::OPTIONS, url("/defaults"))
            .header("origin", "https://any.example")
            .header("access-control-request-method", "DELETE")
            .header("access-control-request-headers", "X-Custom, Content-Type")
            .header("access-control-request-private-network", "true"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one(&h, "access-control-allow-origin"), Some("*"));
    assert_eq!(one(&h, "access-control-allow-methods"), Some(ALL_METHODS));
    assert_eq!(one(&h, "access-control-allow-headers"), Some("X-Custom, Content-Type"), "the request's, echoed");
    assert!(!h.contains_key("access-control-max-age") && !h.contains_key("vary"));
    assert!(!h.contains_key("access-control-allow-private-network"), "private_network defaults to false");

    // Credentials may not go with `*`: the origin is echoed and `Vary: Origin` joins the upstream's.
    let (_, h, _) = send(http.get(url("/credentials")).header("origin", "https://any.example")).await;
    assert_eq!(one(&h, "access-control-allow-origin"), Some("https://any.example"));
    assert_eq!(one(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(all(&h, "vary"), ["Accept-Encoding", "Origin"]);
    let (_, h, _) = send(http.get(url("/credentials"))).await;
    assert_eq!(one(&h, "access-control-allow-origin"), Some("*"), "no origin to echo");
    assert!(!h.contains_key("access-control-allow-credentials"));

    // One plain origin is sent as configured, whatever the request's.
    let (_, h, _) = send(http.get(url("/fixed")).header("origin", "https://other.example")).await;
    assert_eq!(one(&h, "access-control-allow-origin"), Some("https://fixed.example:8443"));
    assert_eq!(all(&h, "vary"), ["Accept-Encoding", "Origin"]);

    // A list: the request's origin when it is in it (default ports ignored), else the upstream's header goes.
    let (_, h, _) = send(http.get(url("/list")).header("origin", "https://b.example")).await;
    assert_eq!(one(&h, "access-control-allow-origin"), Some("https://b.example"));
    assert_eq!(one(&h, "access-control-expose-headers"), Some("X-Mine"));
    let (_, h, _) = send(http.get(url("/list")).header("origin", "https://a.example:443")).await;
    assert_eq!(one(&h, "access-control-allow-origin"), Some("https://a.example"), "normalised");
    for origin in ["https://c.example", "http://a.example", "https://a.example.evil"] {
        let (status, h, _) = send(http.get(url("/list")).header("origin", origin)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!h.contains_key("access-control-allow-origin"), "{origin}: the upstream's is removed too");
        assert_eq!(all(&h, "vary"), ["Accept-Encoding", "Origin"]);
    }

    // `*` among others allows every origin; allow_origin_absent false leaves requests without one alone.
    let (_, h, _) = send(http.get(url("/star")).header("origin", "https://z.example")).await;
    assert_eq!(one(&h, "access-control-allow-origin"), Some("*"));
    let (_, h, _) = send(http.get(url("/star"))).await;
    assert_eq!(one(&h, "access-control-allow-origin"), Some("https://upstream.example"), "untouched");
    assert_eq!(all(&h, "vary"), ["Accept-Encoding"]);

    // max_age as Lua prints numbers; an empty method list is sent empty.
    let (status, h, _) = send(
        http.request(Method::OPTIONS, url("/age"))
            .header("origin", "https://any.example")
            .header("access-control-request-method", "GET"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one(&h, "access-control-max-age"), Some("1.5"));
    assert_eq!(one(&h, "access-control-allow-methods"), Some(""));
    assert!(!h.contains_key("access-control-allow-headers"), "nothing configured, nothing requested");
    node.stop().await;
}

#[tokio::test]
async fn global_cors_covers_answers_the_gateway_made() {
    let node = TestNode::start().await;
    // Two origins: the answer depends on the request's, which the response phase must still know.
    let config = json!({"origins": ["https://app.example", "https://other.example"]});
    node.admin_ok(Method::POST, "/plugins", json!({"name": "cors", "config": config})).await;
    // A route without a service: the gateway's 503 after the access phase.
    node.admin_ok(Method::POST, "/routes", json!({"name": "orphan", "paths": ["/orphan"]})).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    for (path, expected) in [("/nowhere", StatusCode::NOT_FOUND), ("/orphan", StatusCode::SERVICE_UNAVAILABLE)] {
        for origin in ["https://app.example", "https://other.example"] {
            let (status, h, body) =
                send(http.get(format!("{}{path}", node.proxy_url())).header("origin", origin)).await;
            assert_eq!(status, expected, "{body}");
            assert_eq!(one(&h, "access-control-allow-origin"), Some(origin), "{path}");
            assert_eq!(all(&h, "vary"), ["Origin"]);
        }
        let (_, h, _) =
            send(http.get(format!("{}{path}", node.proxy_url())).header("origin", "https://x.example")).await;
        assert!(!h.contains_key("access-control-allow-origin"), "{path}");
    }
    node.stop().await;
}

#[tokio::test]
async fn ip_restriction_allows_and_denies_by_the_client_address() {
    let node = TestNode::start().await;
    let echo = format!("{}/anything", node.echo_url());
    for (name, config) in [
        ("deny-local", json!({"deny": ["127.0.0.1"]})),
        ("deny-range", json!({"deny": ["127.0.0.0/8", "::1"]})),
        ("allow-other", json!({"allow": ["10.0.0.0/8", "2001:db8::/32"]})),
        ("allow-local", json!({"allow": ["127.0.0.1/32"], "deny": ["::1"]})),
        ("deny-wins", json!({"allow": ["127.0.0.1"], "deny": ["127.0.0.0/24"]})),
        ("custom", json!({"deny": ["127.0.0.1"], "status": 401, "message": "Forbidden"})),
        ("ipv6-only", json!({"deny": ["::/0"]})),
    ] {
        route(&node, name, &echo, &format!("/{name}"), &[("ip-restriction", config)]).await;
    }
    node.wait_config().await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        // Not a trusted proxy: the client's own X-Forwarded-For changes nothing.
        http.get(format!("{}/{path}", node.proxy_url())).header("x-forwarded-for", "10.1.2.3")
    };
    for path in ["deny-local", "deny-range", "allow-other", "deny-wins"] {
        let (status, h, body) = send(get(path)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let id = one(&h, "x-kong-request-id").unwrap();
        assert_eq!(body, json!({"message": "IP address not allowed: 127.0.0.1", "request_id": id}), "{path}");
        assert_eq!(one(&h, "content-type"), Some("application/json; charset=utf-8"));
    }
    for path in ["allow-local", "ipv6-only"] {
        let (status, _, body) = send(get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, _, body) = send(get("custom")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["message"], "Forbidden");
    node.stop().await;
}

#[tokio::test]
async fn ip_restriction_sees_the_client_behind_a_trusted_proxy() {
    let node = TestNode::builder()
        .configure(|c| c.proxy.trusted_ips = vec!["127.0.0.1/32".parse().unwrap()])
        .start()
        .await
        .unwrap();
    let echo = format!("{}/anything", node.echo_url());
    let allow = json!({"allow": ["203.0.113.0/24", "2001:db8::/32"], "deny": ["203.0.113.66", "2001:db8::bad"]});
    route(&node, "api", &echo, "/api", &[("ip-restriction", allow)]).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    let url = format!("{}/api", node.proxy_url());
    let from = |xff: &str| http.get(&url).header("x-forwarded-for", xff);
    for allowed in ["203.0.113.9", "2001:db8::7", "198.51.100.1, 203.0.113.9"] {
        let (status, _, body) = send(from(allowed)).await;
        assert_eq!(status, StatusCode::OK, "{allowed}: {body}");
        let echo: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["headers"]["X-Real-Ip"], allowed.rsplit(", ").next().unwrap());
    }
    for (refused, client) in [
        ("198.51.100.1", "198.51.100.1"),
        ("203.0.113.66", "203.0.113.66"),
        ("2001:db8::bad", "2001:db8::bad"),
        ("2001:db9::1", "2001:db9::1"),
    ] {
        let (status, _, body) = send(from(refused)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
        let message = serde_json::from_str::<Value>(&body).unwrap()["message"].clone();
        assert_eq!(message, format!("IP address not allowed: {client}"));
    }
    let (status, _, _) = send(http.get(&url)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no X-Forwarded-For: the proxy's own address, 127.0.0.1");
    node.stop().await;
}

#[tokio::test]
async fn correlation_ids_reach_the_upstream_and_echo_back() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let echo = format!("{}/anything", node.echo_url());
    route(&node, "counter", &echo, "/counter", &[("correlation-id", json!({"echo_downstream": true}))]).await;
    let uuid = json!({"generator": "uuid", "header_name": "X-Correlation", "echo_downstream": true});
    route(&node, "uuid", &echo, "/uuid", &[("correlation-id", uuid)]).await;
    route(&node, "tracker", &echo, "/tracker", &[("correlation-id", json!({"generator": "tracker"}))]).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", node.proxy_url());
    let through = |req: reqwest::RequestBuilder| async move {
        let (status, h, body) = send(req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (h, serde_json::from_str::<Value>(&body).unwrap()["headers"].clone())
    };

    // uuid#counter: one UUID per worker, counting; one keep-alive connection stays on one worker.
    let (h1, up1) = through(http.get(url("/counter"))).await;
    let (h2, up2) = through(http.get(url("/counter"))).await;
    let first = up1["Kong-Request-Id"].as_str().unwrap().to_owned();
    let second = up2["Kong-Request-Id"].as_str().unwrap().to_owned();
    assert_eq!(one(&h1, "kong-request-id"), Some(first.as_str()), "echoed: the id the upstream saw");
    assert_eq!(one(&h2, "kong-request-id"), Some(second.as_str()));
    let (uuid_1, count_1) = first.split_once('#').unwrap();
    let (uuid_2, count_2) = second.split_once('#').unwrap();
    assert!(uuid::Uuid::parse_str(uuid_1).is_ok(), "{first}");
    assert_eq!(uuid_1, uuid_2);
    assert_eq!(count_2.parse::<u64>().unwrap(), count_1.parse::<u64>().unwrap() + 1);
    assert_ne!(first, one(&h1, "x-kong-request-id").unwrap(), "not the gateway's own request id");

    // An id the client sent is kept, and echoed; an empty one is replaced.
    let (h, up) = through(http.get(url("/counter")).header("kong-request-id", "client-chose-this")).await;
    assert_eq!(
        (up["Kong-Request-Id"].as_str(), one(&h, "kong-request-id")),
        (Some("client-chose-this"), Some("client-chose-this"))
    );
    let (h, up) = through(http.get(url("/counter")).header("kong-request-id", "")).await;
    assert!(up["Kong-Request-Id"].as_str().unwrap().starts_with(uuid_1));
    assert_eq!(one(&h, "kong-request-id"), up["Kong-Request-Id"].as_str());

    let (h, up) = through(http.get(url("/uuid"))).await;
    let id = up["X-Correlation"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(one(&h, "x-correlation"), Some(id));
    assert!(up.get("Kong-Request-Id").is_none(), "header_name replaces the default");

    // tracker: server address and port, process, connection, request on it, and the node's clock to the ms.
    let tracker = reqwest::Client::new();
    let (h, up) = through(tracker.get(url("/tracker"))).await;
    assert!(!h.contains_key("kong-request-id"), "echo_downstream defaults to false");
    let id = up["Kong-Request-Id"].as_str().unwrap().to_owned();
    let port = node.proxy_url().rsplit(':').next().unwrap().to_owned();
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(parts.len(), 6, "{id}");
    assert_eq!((parts[0], parts[1], parts[2]), ("127.0.0.1", port.as_str(), std::process::id().to_string().as_str()));
    assert_eq!(parts[4], "1", "the connection's first request");
    assert_eq!(parts[5], "1800000000.000");
    node.clock.as_ref().unwrap().advance_micros(1_234_567);
    let (_, up) = through(tracker.get(url("/tracker"))).await;
    let again: Vec<String> = up["Kong-Request-Id"].as_str().unwrap().split('-').map(str::to_owned).collect();
    assert_eq!((again[3].as_str(), again[4].as_str()), (parts[3], "2"), "same connection, second request");
    assert_eq!(again[5], "1800000001.234");
    node.stop().await;
}

#[tokio::test]
async fn a_global_correlation_id_is_echoed_on_a_404() {
    let node = TestNode::start().await;
    let config = json!({"generator": "uuid", "echo_downstream": true});
    let plugin = node.admin_ok(Method::POST, "/plugins", json!({"name": "correlation-id", "config": config})).await;
    node.wait_config().await;
    let http = reqwest::Client::new();
    let url = format!("{}/nowhere", node.proxy_url());
    let (status, h, _) = send(http.get(&url)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(uuid::Uuid::parse_str(one(&h, "kong-request-id").unwrap()).is_ok());
    let (status, h, _) = send(http.get(&url).header("kong-request-id", "from-client")).await;
    assert_eq!((status, one(&h, "kong-request-id")), (StatusCode::NOT_FOUND, Some("from-client")));

    // A tracker id made for a 404 still names the connection: counted from the request's arrival, as nginx does.
    let tracker = json!({"config": {"generator": "tracker"}});
    node.admin_ok(Method::PATCH, &format!("/plugins/{}", plugin["id"].as_str().unwrap()), tracker).await;
    node.wait_config().await;
    let fresh = reqwest::Client::new();
    for request in ["1", "2"] {
        let (status, h, _) = send(fresh.get(&url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let id: Vec<&str> = one(&h, "kong-request-id").unwrap().split('-').collect();
        let port = node.proxy_url().rsplit(':').next().unwrap().to_owned();
        assert_eq!((id[0], id[1], id[4]), ("127.0.0.1", port.as_str(), request), "{id:?}");
    }
    node.stop().await;
}

#[tokio::test]
async fn bad_configurations_get_kongs_400() {
    let node = TestNode::start().await;
    let (status, e) = node
        .admin(Method::POST, "/plugins", Some(json!({"name": "ip-restriction", "config": {"allow": ["hello"]}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        e,
        json!({"code": 2, "name": "schema violation",
            "message": "schema violation (config.allow.1: invalid ip or cidr range: 'hello')",
            "fields": {"config": {"allow": ["invalid ip or cidr range: 'hello'"]}}})
    );
    let (status, e) =
        node.admin(Method::POST, "/plugins", Some(json!({"name": "ip-restriction", "config": {"allow": []}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = "at least one of these fields must be non-empty: 'config.allow', 'config.deny'";
    assert_eq!(
        e,
        json!({"code": 2, "name": "schema violation", "message": format!("schema violation ({message})"),
            "fields": {"@entity": [message]}})
    );
    let (status, e) = node
        .admin(
            Method::POST,
            "/plugins",
            Some(json!({"name": "cors", "config": {"origins": ["https://ok.example", "(x"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["fields"], json!({"config": {"origins": [null, "'(x' is not a valid regex"]}}));
    let (status, e) = node
        .admin(Method::POST, "/plugins", Some(json!({"name": "correlation-id", "config": {"generator": "counter"}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["fields"]["config"]["generator"], "expected one of: uuid, uuid#counter, tracker");
    let consumer = node.admin_ok(Method::POST, "/consumers", json!({"username": "alice"})).await;
    let (status, e) =
        node.admin(Method::POST, "/plugins", Some(json!({"name": "cors", "consumer": {"id": consumer["id"]}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["fields"]["consumer"], "value must be null; the cors plugin cannot be applied to a consumer");
    node.stop().await;
}
