//! The plugins teams pair with authentication, together on one route of a real node: the tutorial's
//! `oauth2-introspection` against the node's own issuer, `acl` allowing a group the mapped consumer has, and
//! `rate-limiting` counting in a real Redis. Every answer a caller can get comes out right in one test: 200, 401
//! without a token, 403 for a consumer outside the group, 429 past the limit, and 200 again in the next window.
//! Needs Redis at `GATEHOUSE_TEST_REDIS_URL` (`redis://127.0.0.1:6379`); skipped with a printed line without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::TestNode;

/// Redis's host and port from `GATEHOUSE_TEST_REDIS_URL`, or `None` (and the skip line) when it is unset.
fn redis() -> Option<(String, u16)> {
    let Ok(url) = std::env::var("GATEHOUSE_TEST_REDIS_URL") else {
        println!("Redis suite: SKIPPED (set GATEHOUSE_TEST_REDIS_URL=redis://127.0.0.1:6379 to run it)");
        return None;
    };
    let url = url::Url::parse(&url).expect("GATEHOUSE_TEST_REDIS_URL is a redis:// URL");
    Some((url.host_str().expect("a host").to_owned(), url.port().unwrap_or(6379)))
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

async fn token(node: &TestNode, issuer: &str, id: &str, secret: &str) -> String {
    let (status, body) = node.token(issuer, id, secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn introspection_acl_and_redis_rate_limiting_answer_200_401_403_and_429() {
    let Some((redis_host, redis_port)) = redis() else { return };
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    let t = node.tutorial_setup("ES256").await;
    node.example_service().await;

    // A second client of the same auth server, mapped to a consumer outside the allowed group.
    let (status, outsider) = node
        .post(
            &format!("/v1/auth-servers/{}/clients", t.server_id),
            json!({"name": "Outsider", "grant_types": ["client_credentials"], "allow_scopes": [t.scope_id],
                "access_token_duration": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{outsider}");
    let (outsider_id, outsider_secret) =
        (outsider["id"].as_str().unwrap().to_owned(), outsider["client_secret"].as_str().unwrap().to_owned());

    node.admin_ok(Method::POST, "/consumers", json!({"username": "app", "custom_id": t.client_id})).await;
    node.admin_ok(Method::POST, "/consumers/app/acls", json!({"group": "callers"})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "outsider", "custom_id": outsider_id})).await;
    node.admin_ok(Method::POST, "/consumers/outsider/acls", json!({"group": "others"})).await;

    let introspection = json!({"name": "oauth2-introspection", "config": {
        "introspection_url": format!("{}/introspect", t.issuer),
        "authorization_value": basic(&t.client_id, &t.client_secret),
        "consumer_by": "client_id", "custom_claims_forward": ["Claim"]}});
    node.admin_ok(Method::POST, "/routes/example-route/plugins", introspection).await;
    node.admin_ok(
        Method::POST,
        "/routes/example-route/plugins",
        json!({"name": "acl", "config": {"allow": ["callers"]}}),
    )
    .await;
    node.admin_ok(
        Method::POST,
        "/routes/example-route/plugins",
        json!({"name": "rate-limiting", "config": {"minute": 3, "limit_by": "consumer", "policy": "redis",
            "fault_tolerant": false, "redis": {"host": redis_host, "port": redis_port, "timeout": 2000}}}),
    )
    .await;
    node.wait_config().await;

    let http = reqwest::Client::new();
    let url = format!("{}/anything", node.proxy_url());
    let app = token(&node, &t.issuer, &t.client_id, &t.client_secret).await;
    let other = token(&node, &t.issuer, &outsider_id, &outsider_secret).await;

    // No token: the introspection plugin's 401, before acl or rate-limiting run.
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get("x-ratelimit-remaining-minute").is_none(), "nothing was counted");

    // A consumer outside the group: acl's 403, and it is not counted against anyone.
    let res = http.get(&url).bearer_auth(&other).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "You cannot consume this service");

    // The allowed consumer: three requests, each counted in Redis, the upstream seeing its group.
    for remaining in ["2", "1", "0"] {
        let res = http.get(&url).bearer_auth(&app).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-ratelimit-limit-minute"], "3");
        assert_eq!(res.headers()["x-ratelimit-remaining-minute"], remaining);
        let echo: Value = res.json().await.unwrap();
        assert_eq!(echo["headers"]["X-Consumer-Groups"], "callers", "{echo}");
        assert_eq!(echo["headers"]["X-Consumer-Username"], "app");
    }
    // The fourth: Kong's 429, with the time to the window's end.
    let res = http.get(&url).bearer_auth(&app).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "API rate limit exceeded");
    // The outsider is still refused by acl, not by the limit it never reached.
    assert_eq!(http.get(&url).bearer_auth(&other).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // The next window starts from zero.
    clock.advance_secs(retry_after);
    let res = http.get(&url).bearer_auth(&app).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-ratelimit-remaining-minute"], "2");
    node.stop().await;
}

/// Two real nodes on one PostgreSQL database, each with its own proxy, enforce one `cluster` limit exactly when
/// counting synchronously (`sync_rate` -1, Kong's default, and 0): 40 concurrent requests spread over both proxies,
/// a limit of 15 per minute, exactly 15 pass. Both nodes' clocks are the same manual clock value, so the window is
/// fixed for the whole test.
#[tokio::test]
async fn two_nodes_on_one_postgres_enforce_one_cluster_limit_exactly() {
    const LIMIT: usize = 15;
    const SENT: usize = 40;
    let Some(a) = TestNode::builder().postgres().manual_clock().start().await else {
        return;
    };
    let key = a.master_key.clone();
    let b = TestNode::builder()
        .database(a.db.shared().unwrap())
        .manual_clock()
        .configure(move |c| c.master_key = Some(key))
        .start()
        .await
        .unwrap();
    let upstream = format!("{}/anything", a.echo_url());
    a.admin_ok(Method::POST, "/services", json!({"name": "shared", "url": upstream})).await;
    a.admin_ok(Method::POST, "/services/shared/routes", json!({"name": "limited", "paths": ["/limited"]})).await;
    let http = reqwest::Client::new();
    let urls = [format!("{}/limited", a.proxy_url()), format!("{}/limited", b.proxy_url())];
    for (round, sync_rate) in [-1, 0].into_iter().enumerate() {
        let plugin = a
            .admin_ok(
                Method::POST,
                "/routes/limited/plugins",
                json!({"name": "rate-limiting", "config": {"minute": LIMIT, "policy": "cluster", "sync_rate": sync_rate}}),
            )
            .await;
        // Both proxies run the plugin once the first counted request shows its header on each.
        for url in &urls {
            let started = tokio::time::Instant::now();
            while !http.get(url).send().await.is_ok_and(|r| r.headers().contains_key("x-ratelimit-limit-minute")) {
                assert!(started.elapsed() < std::time::Duration::from_secs(30), "{url} never ran the plugin");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        // The probes counted too: what is left of the window is shared by both nodes.
        let probe = http.get(&urls[0]).send().await.unwrap();
        let left: usize = probe.headers()["x-ratelimit-remaining-minute"].to_str().unwrap().parse().unwrap();
        let requests = (0..SENT).map(|i| {
            let (http, url) = (http.clone(), urls[i % 2].clone());
            tokio::spawn(async move { http.get(&url).send().await.unwrap().status() })
        });
        let mut passed = 0;
        for request in requests.collect::<Vec<_>>() {
            match request.await.unwrap() {
                StatusCode::OK => passed += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("round {round}: unexpected {other}"),
            }
        }
        assert_eq!(passed, left, "round {round} (sync_rate {sync_rate}): exactly what was left of {LIMIT} passed");
        let id = plugin["id"].as_str().unwrap();
        assert_eq!(a.admin(Method::DELETE, &format!("/plugins/{id}"), None).await.0, StatusCode::NO_CONTENT);
        // Next round: a new window, so both rounds start from the full limit.
        for node in [&a, &b] {
            node.clock.as_ref().unwrap().advance_secs(60);
        }
    }
    b.node.shutdown().await;
    a.stop().await;
}

/// `rate-limiting` with its Redis unreachable (a closed loopback port), through a real node: with `fault_tolerant`
/// requests pass without rate-limiting headers; without it they get Kong's 500, and the upstream never sees them.
#[tokio::test]
async fn an_unreachable_redis_lets_requests_through_only_when_fault_tolerant() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let node = TestNode::start().await;
    node.example_service().await;
    let upstream = format!("{}/anything", node.echo_url());
    node.admin_ok(Method::POST, "/services", json!({"name": "strict", "url": upstream})).await;
    node.admin_ok(Method::POST, "/services/strict/routes", json!({"name": "strict-route", "paths": ["/strict"]})).await;
    for (route, fault_tolerant) in [("example-route", true), ("strict-route", false)] {
        node.admin_ok(
            Method::POST,
            &format!("/routes/{route}/plugins"),
            json!({"name": "rate-limiting", "config": {"minute": 5, "policy": "redis", "fault_tolerant": fault_tolerant,
                "redis": {"host": "127.0.0.1", "port": closed, "timeout": 500}}}),
        )
        .await;
    }
    node.wait_config().await;
    let http = reqwest::Client::new();

    for _ in 0..7 {
        let res = http.get(format!("{}/anything", node.proxy_url())).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "fault tolerant: passes, more often than the limit too");
        assert!(res.headers().get("x-ratelimit-limit-minute").is_none(), "nothing was counted, nothing is shown");
    }
    let res = http.get(format!("{}/strict", node.proxy_url())).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "An unexpected error occurred");
    assert!(body["request_id"].is_string(), "{body}");
    node.stop().await;
}
