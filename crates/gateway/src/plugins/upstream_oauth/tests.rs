//! `upstream-oauth` through a real proxy on loopback: a scripted token endpoint, the echo upstream, and the proxy's
//! clock moved by the tests.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_model::gateway::snapshot::ConfigSnapshot;
use gatehouse_model::{Clock, ManualClock, SharedClock, Timestamp};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::plugins::token_client::stand_in::{Script, StandIn, parse};
use crate::proxy::harness::{echo_upstream, plugin, route, service};
use crate::proxy::{Proxy, ProxySettings, serve};

const START: i64 = 1_800_000_000;

struct Setup {
    base: String,
    proxy: Arc<Proxy>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Setup {
    async fn start(config: Value, clock: &ManualClock) -> Self {
        let up = echo_upstream().await;
        let settings = ProxySettings {
            workers: 2,
            // A thousand connections from one address (the default allows a quarter of 1,024).
            limits: gatehouse_net::ConnectionLimits::with_connections(4096),
            clock: SharedClock::new(Arc::new(clock.clone()) as Arc<dyn Clock>),
            ..Default::default()
        };
        let proxy = Proxy::new(settings);
        let snapshot = ConfigSnapshot {
            services: vec![service(1, up.port())],
            routes: vec![route(10, &["/api"])],
            plugins: vec![plugin("upstream-oauth", 10, config)],
            ..ConfigSnapshot::empty(None, 1)
        };
        proxy.install(&snapshot).unwrap();
        let listener =
            TcpListener::from_std(crate::proxy::reusable_listener("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(proxy.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Self { base, proxy, _stop: stop }
    }

    /// GET /api with `headers`: the status, and the `Authorization` the upstream saw (or the proxy's body).
    async fn get(&self, http: &reqwest::Client, headers: &[(&str, &str)]) -> (u16, Option<String>, String) {
        let mut req = http.get(format!("{}/api", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let body = res.text().await.unwrap();
        let seen = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|b| b["headers"]["authorization"].as_str().map(str::to_owned));
        (status, seen, content_type.map_or(body.clone(), |ct| format!("{ct}|{body}")))
    }
}

fn manual() -> ManualClock {
    ManualClock::new(Timestamp::from_secs(START))
}

fn config(idp: &StandIn) -> Value {
    json!({"oauth": {"token_endpoint": idp.url(), "client_id": "gateway", "client_secret": "s3cret",
        "scopes": ["upstream"]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_on_a_cold_cache_make_one_token_request() {
    let clock = manual();
    let idp = StandIn::start(Script::Token { expires_in: Some(300) }, SharedClock::new(Arc::new(clock.clone()))).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *idp.gate.lock().unwrap() = Some(gate.clone());
    let setup = Arc::new(Setup::start(config(&idp), &clock).await);
    let http = reqwest::Client::builder().pool_max_idle_per_host(1000).build().unwrap();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (setup, http) = (setup.clone(), http.clone());
        // The client's own Authorization is replaced, never forwarded.
        requests.spawn(async move { setup.get(&http, &[("authorization", "Bearer from-the-client")]).await });
    }
    // Hold the token endpoint's answer until every other request waits behind the one fetch.
    let tokens = setup.proxy.plugin_state().tokens.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokens.waiting() < 999 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(tokens.waiting(), 999, "every request but the fetching one is queued");
    gate.add_permits(1);
    let answers = requests.join_all().await;
    assert_eq!(idp.calls(), 1, "exactly one token request");
    for (status, seen, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(parse(seen.as_deref().unwrap()).0, 1, "{seen:?}");
    }
    let (_, form) = &idp.seen()[0];
    assert_eq!(form, "grant_type=client_credentials&client_id=gateway&client_secret=s3cret&scope=upstream");
}

#[tokio::test]
async fn the_token_is_renewed_before_it_lapses_and_no_request_carries_an_expired_one() {
    let clock = manual();
    let idp = StandIn::start(Script::Token { expires_in: Some(30) }, SharedClock::new(Arc::new(clock.clone()))).await;
    let mut config = config(&idp);
    config["cache"] = json!({"eagerly_expire": 2});
    config["behavior"] = json!({"upstream_access_token_header_name": "X-Upstream-Token"});
    let setup = Setup::start(config, &clock).await;
    let http = reqwest::Client::new();
    let mut used = Vec::new();
    // Half-second steps for five minutes.
    for _ in 0..600 {
        let res = http.get(format!("{}/api", setup.base)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let token = body["headers"]["x-upstream-token"].as_str().unwrap();
        let (n, exp) = parse(token);
        let now = clock.now();
        assert!(Timestamp::from_secs(exp) > now, "token {n} (exp {exp}) sent at {now:?}");
        assert!(exp * 1_000_000 - now.micros() > 2_000_000, "never within the margin");
        assert!(body["headers"].get("authorization").is_none());
        if used.last() != Some(&n) {
            used.push(n);
        }
        clock.advance_micros(500_000);
    }
    // A 30 s token used for 28 s: renewed 11 times in 300 s.
    assert_eq!(used, (1..=11).collect::<Vec<_>>());
    assert_eq!(idp.calls(), 11);
}

#[tokio::test]
async fn idp_failures_get_kongs_answer_without_the_idps_text() {
    let clock = manual();
    let idp = StandIn::start(
        Script::Fail(500, r#"{"error":"server_error","error_description":"pg password hunter2"}"#),
        SharedClock::new(Arc::new(clock.clone())),
    )
    .await;
    let setup = Setup::start(config(&idp), &clock).await;
    let http = reqwest::Client::new();
    let default_answer =
        r#"application/json; charset=utf-8|{ "code": "502", "message": "Failed to authenticate request to upstream" }"#;
    let (status, _, body) = setup.get(&http, &[]).await;
    assert_eq!((status, body.as_str()), (502, default_answer));

    idp.set(Script::Fail(401, r#"{"error":"invalid_client"}"#));
    assert_eq!(setup.get(&http, &[]).await.0, 502);
    assert_eq!(idp.calls(), 2, "failures are not cached");

    // Configured answer, and a token endpoint that never answers.
    idp.set(Script::Hang);
    let mut custom = config(&idp);
    custom["client"] = json!({"timeout": 100});
    custom["behavior"] = json!({"idp_error_response_status_code": 503,
        "idp_error_response_content_type": "text/plain", "idp_error_response_message": "try later",
        "idp_error_response_body_template": "{{status}}: {{message}}"});
    let slow = Setup::start(custom, &clock).await;
    let (status, _, body) = slow.get(&http, &[]).await;
    assert_eq!((status, body.as_str()), (503, "text/plain|503: try later"));

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let down = Setup::start(json!({"oauth": {"token_endpoint": format!("http://{closed}/token")}}), &clock).await;
    let (status, _, body) = down.get(&http, &[]).await;
    assert_eq!((status, body.as_str()), (502, default_answer));
    assert!(!body.contains("hunter2"));
}

#[tokio::test]
async fn an_upstream_401_purges_the_token_and_basic_auth_is_sent_as_configured() {
    let clock = manual();
    let idp = StandIn::start(Script::Token { expires_in: Some(600) }, SharedClock::new(Arc::new(clock.clone()))).await;
    let mut config = config(&idp);
    config["client"] = json!({"auth_method": "client_secret_basic"});
    config["oauth"]["audience"] = json!(["https://api"]);
    config["oauth"]["token_post_args"] = json!({"resource": "urn:api"});
    config["oauth"]["token_headers"] = json!({"X-Tenant": "t1"});
    let setup = Setup::start(config, &clock).await;
    let http = reqwest::Client::new();
    assert_eq!(parse(&setup.get(&http, &[]).await.1.unwrap()).0, 1);
    assert_eq!(parse(&setup.get(&http, &[]).await.1.unwrap()).0, 1, "cached");
    // The upstream refuses it: the next request gets a new token.
    let (status, ..) = setup.get(&http, &[("x-respond-status", "401"), ("x-respond-body", "{}")]).await;
    assert_eq!(status, 401);
    assert_eq!(parse(&setup.get(&http, &[]).await.1.unwrap()).0, 2);
    // A 403 is not in the list.
    setup.get(&http, &[("x-respond-status", "403"), ("x-respond-body", "{}")]).await;
    assert_eq!(parse(&setup.get(&http, &[]).await.1.unwrap()).0, 2);
    assert_eq!(idp.calls(), 2);

    let (headers, form) = &idp.seen()[0];
    assert_eq!(headers["authorization"], "Basic Z2F0ZXdheTpzM2NyZXQ=", "gateway:s3cret");
    assert_eq!(headers["x-tenant"], "t1");
    assert_eq!(form, "grant_type=client_credentials&scope=upstream&audience=https%3A%2F%2Fapi&resource=urn%3Aapi");
}

/// Redis's host and port from `GATEHOUSE_TEST_REDIS_URL`, or `None` (and the skip line) when it is unset.
fn redis_server() -> Option<(String, u16)> {
    let Some(url) = std::env::var("GATEHOUSE_TEST_REDIS_URL").ok().filter(|v| !v.is_empty()) else {
        eprintln!("Redis suite: SKIPPED (GATEHOUSE_TEST_REDIS_URL is not set)");
        return None;
    };
    let url = url::Url::parse(&url).unwrap();
    Some((url.host_str().unwrap().to_owned(), url.port().unwrap_or(6379)))
}

#[tokio::test]
async fn with_the_redis_strategy_nodes_share_tokens_and_a_failing_redis_falls_back_to_the_idp() {
    let Some((host, port)) = redis_server() else { return };
    let clock = manual();
    let idp = StandIn::start(Script::Token { expires_in: Some(60) }, SharedClock::new(Arc::new(clock.clone()))).await;
    let mut config = config(&idp);
    config["cache"] = json!({"strategy": "redis", "redis": {"host": host, "port": port}});
    // Two nodes: each its own proxy, token client and cache; Redis between them.
    let one = Setup::start(config.clone(), &clock).await;
    let two = Setup::start(config.clone(), &clock).await;
    let http = reqwest::Client::new();
    let first = one.get(&http, &[]).await.1.unwrap();
    assert_eq!(two.get(&http, &[]).await.1.unwrap(), first, "the second node takes the token from Redis");
    assert_eq!(idp.calls(), 1);
    // Past the renewal point, whichever node comes first fetches, and the other takes that one.
    clock.advance_secs(56);
    let renewed = two.get(&http, &[]).await.1.unwrap();
    assert_eq!(parse(&renewed).0, 2);
    assert_eq!(one.get(&http, &[]).await.1.unwrap(), renewed);
    assert_eq!(idp.calls(), 2);

    // Nothing answers where this block points: the IdP is asked, and the request goes through.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    config["cache"] = json!({"strategy": "redis", "redis": {"host": "127.0.0.1", "port": closed.port(),
        "connect_timeout": 200, "read_timeout": 200, "send_timeout": 200}});
    config["oauth"]["scopes"] = json!(["other"]);
    let lonely = Setup::start(config, &clock).await;
    let (status, seen, _) = lonely.get(&http, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(parse(&seen.unwrap()).0, 3);
}

#[tokio::test]
async fn a_zero_timeout_is_kongs_socket_default_not_an_instant_failure() {
    let clock = manual();
    let idp = StandIn::start(Script::Token { expires_in: Some(60) }, SharedClock::new(Arc::new(clock.clone()))).await;
    let mut config = config(&idp);
    config["client"] = json!({"timeout": 0});
    let setup = Setup::start(config, &clock).await;
    let (status, seen, body) = setup.get(&reqwest::Client::new(), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&seen.unwrap()).0, 1);
}
