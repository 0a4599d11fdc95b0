//! The token client against a scripted endpoint on loopback, with the clock moved by the tests.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_model::{Clock, ManualClock, SharedClock, Timestamp};
use serde_json::json;

use super::stand_in::{Script, StandIn, parse};
use super::*;

const START: i64 = 1_800_000_000;

fn clock() -> (ManualClock, SharedClock) {
    let manual = ManualClock::new(Timestamp::from_secs(START));
    (manual.clone(), SharedClock::new(Arc::new(manual)))
}

fn request(endpoint: String, auth: ClientAuth) -> TokenRequest {
    TokenRequest {
        token_endpoint: endpoint,
        grant: Grant::ClientCredentials,
        auth,
        client_id: Some(SecretString::from("client-1")),
        client_secret: Some(SecretString::from("s3cret:/&=")),
        scopes: vec!["a".into(), "b".into()],
        audience: vec!["https://api.one".into(), "https://api.two".into()],
        post_args: vec![("resource".into(), "urn:x".into())],
        headers: vec![("X-Tenant".into(), "t1".into()), ("Accept".into(), "application/jwt+json".into())],
        timeout: Duration::from_secs(5),
        keep_alive: true,
        verify_tls: true,
        default_lifetime: Duration::from_secs(3600),
        renew_margin: Duration::from_secs(5),
        shared_store: None,
        cache_salt: None,
    }
}

fn form(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

#[tokio::test]
async fn client_secret_post_and_basic_send_what_is_configured() {
    let (_, clock) = clock();
    let idp = StandIn::start(Script::Token { expires_in: Some(60) }, clock.clone()).await;
    let client = TokenClient::new(DEFAULT_CAPACITY, clock);

    let post = client.prepare(&request(idp.url(), ClientAuth::ClientSecretPost)).unwrap();
    client.token(&post).await.unwrap();
    let basic = client.prepare(&request(idp.url(), ClientAuth::ClientSecretBasic)).unwrap();
    client.token(&basic).await.unwrap();
    let mut none = request(idp.url(), ClientAuth::None);
    (none.scopes, none.audience, none.post_args, none.headers) = (vec![], vec![], vec![], vec![]);
    client.token(&client.prepare(&none).unwrap()).await.unwrap();

    let seen = idp.seen();
    assert_eq!(seen.len(), 3, "one request each: the three differ, so they share no cache entry");
    let (headers, body) = &seen[0];
    assert_eq!(
        form(body),
        [
            pair("grant_type", "client_credentials"),
            pair("client_id", "client-1"),
            pair("client_secret", "s3cret:/&="),
            pair("scope", "a b"),
            pair("audience", "https://api.one"),
            pair("audience", "https://api.two"),
            pair("resource", "urn:x"),
        ]
    );
    assert!(headers.get("authorization").is_none());
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(headers["x-tenant"], "t1");
    assert_eq!(headers["accept"], "application/jwt+json", "a configured header replaces the built-in one");
    assert_eq!(headers.get_all("accept").iter().count(), 1);

    let (headers, body) = &seen[1];
    // RFC 6749 §2.3.1: each part form-encoded, then base64.
    let expected = STANDARD.encode("client-1:s3cret%3A%2F%26%3D");
    assert_eq!(headers["authorization"], format!("Basic {expected}").as_str());
    let sent = form(body);
    assert!(!sent.iter().any(|(k, _)| k == "client_id" || k == "client_secret"), "{sent:?}");
    assert_eq!(sent[0], pair("grant_type", "client_credentials"));

    let (headers, body) = &seen[2];
    assert_eq!(form(body), [pair("grant_type", "client_credentials"), pair("client_id", "client-1")]);
    assert!(headers.get("authorization").is_none());
}

/// Waits until `n` callers queue behind the fetch in flight, so the test knows they all share it.
async fn queued(client: &TokenClient, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.waiting() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(client.waiting(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_request_and_share_its_outcome() {
    let (_, clock) = clock();
    let idp = StandIn::start(Script::Token { expires_in: Some(60) }, clock.clone()).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *idp.gate.lock().unwrap() = Some(gate.clone());
    let client = Arc::new(TokenClient::new(DEFAULT_CAPACITY, clock));
    let prepared = Arc::new(client.prepare(&request(idp.url(), ClientAuth::ClientSecretPost)).unwrap());

    let arrived = idp.arrived.notified();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (client, prepared) = (client.clone(), prepared.clone());
        tasks.spawn(async move { client.token(&prepared).await.map(|t| t.access_token().to_owned()) });
    }
    arrived.await;
    queued(&client, 999).await;
    gate.add_permits(1);
    let tokens: Vec<_> = tasks.join_all().await.into_iter().map(Result::unwrap).collect();
    assert_eq!(idp.calls(), 1);
    assert_eq!(client.fetches(), 1);
    assert!(tokens.iter().all(|t| parse(t).0 == 1), "everyone got the one token");

    // A failure is shared the same way, and not cached: the next wave asks again.
    idp.set(Script::Fail(500, r#"{"error":"server_error","error_description":"db password is hunter2"}"#));
    let fresh = client.prepare(&request(idp.url(), ClientAuth::ClientSecretBasic)).unwrap();
    let fresh = Arc::new(fresh);
    let arrived = idp.arrived.notified();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (client, fresh) = (client.clone(), fresh.clone());
        tasks.spawn(async move { client.token(&fresh).await.map(|t| t.access_token().to_owned()) });
    }
    arrived.await;
    queued(&client, 199).await;
    gate.add_permits(1);
    let errors: Vec<_> = tasks.join_all().await.into_iter().map(Result::unwrap_err).collect();
    assert_eq!(idp.calls(), 2, "one request for the whole wave");
    let logged = errors[0].to_string();
    assert!(logged.starts_with("the token endpoint answered 500 (error server_error, body of "), "{logged}");
    assert!(!logged.contains("hunter2") && !format!("{:?}", errors[0]).contains("hunter2"));
    gate.add_permits(1);
    assert!(client.token(&fresh).await.is_err());
    assert_eq!(idp.calls(), 3, "failures are not cached");
}

#[tokio::test]
async fn tokens_are_renewed_before_they_lapse() {
    let (manual, clock) = clock();
    let idp = StandIn::start(Script::Token { expires_in: Some(60) }, clock.clone()).await;
    let client = TokenClient::new(DEFAULT_CAPACITY, clock.clone());
    let prepared = client.prepare(&request(idp.url(), ClientAuth::ClientSecretPost)).unwrap();
    // Every second for ten minutes: the token in use always has more than the margin left.
    let mut issued = Vec::new();
    for _ in 0..600 {
        let token = client.token(&prepared).await.unwrap();
        let (n, exp) = parse(token.access_token());
        let now = clock.now().secs();
        assert!(exp - now > 5, "token {n} used at {now} expires at {exp}");
        assert_eq!(token.expires_at(), Timestamp::from_secs(exp));
        if issued.last() != Some(&n) {
            issued.push(n);
        }
        manual.advance_secs(1);
    }
    // Renewed 55 s after each fetch (60 s lifetime, 5 s margin): 600 / 55, rounded up.
    assert_eq!(issued, (1..=11).collect::<Vec<_>>());
    assert_eq!(idp.calls(), 11);

    // No `expires_in`: the default lifetime.
    idp.set(Script::Token { expires_in: None });
    let mut without = request(idp.url(), ClientAuth::None);
    without.default_lifetime = Duration::from_secs(100);
    let without = client.prepare(&without).unwrap();
    let token = client.token(&without).await.unwrap();
    assert_eq!(token.expires_at(), clock.now().plus_secs(100));
    manual.advance_secs(94);
    assert!(Arc::ptr_eq(&token, &client.token(&without).await.unwrap()));
    manual.advance_secs(1);
    assert!(!Arc::ptr_eq(&token, &client.token(&without).await.unwrap()), "renewed at 100 - 5 s");
}

#[tokio::test]
async fn an_invalidated_token_is_fetched_again_and_the_cache_is_shared_by_equal_requests() {
    let (_, clock) = clock();
    let idp = StandIn::start(Script::Token { expires_in: Some(600) }, clock.clone()).await;
    let client = TokenClient::new(DEFAULT_CAPACITY, clock);
    let one = client.prepare(&request(idp.url(), ClientAuth::ClientSecretPost)).unwrap();
    let same = client.prepare(&request(idp.url(), ClientAuth::ClientSecretPost)).unwrap();
    let first = client.token(&one).await.unwrap();
    assert!(Arc::ptr_eq(&first, &client.token(&same).await.unwrap()), "equal requests share a token");
    let mut other_secret = request(idp.url(), ClientAuth::ClientSecretPost);
    other_secret.client_secret = Some(SecretString::from("another"));
    client.token(&client.prepare(&other_secret).unwrap()).await.unwrap();
    assert_eq!(idp.calls(), 2, "another secret is another key");

    client.invalidate(&same, &first);
    let second = client.token(&one).await.unwrap();
    assert_eq!(parse(second.access_token()).0, 3);
    client.invalidate(&one, &first);
    assert!(Arc::ptr_eq(&second, &client.token(&one).await.unwrap()), "a stale invalidation drops nothing");
    assert_eq!(idp.calls(), 3);
}

#[tokio::test]
async fn failures_are_typed_and_never_carry_the_idps_text() {
    let (_, clock) = clock();
    let idp =
        StandIn::start(Script::Fail(401, r#"{"error":"invalid_client","detail":"secret s3cret"}"#), clock.clone())
            .await;
    let client = TokenClient::new(DEFAULT_CAPACITY, clock);
    let prepared = client.prepare(&request(idp.url(), ClientAuth::ClientSecretPost)).unwrap();
    let error = client.token(&prepared).await.unwrap_err();
    assert!(matches!(*error, TokenError::Refused { status: 401, ref error, .. } if error == "invalid_client"));
    assert!(!error.to_string().contains("s3cret"));

    // Not an OAuth error code: left out.
    idp.set(Script::Fail(400, r#"{"error":"Bad Thing: s3cret"}"#));
    let error = client.token(&prepared).await.unwrap_err();
    assert!(error.to_string().contains("(error -, body of"), "{error}");

    for answer in ["not json", r#"{"token_type":"Bearer"}"#, r#"{"access_token":""}"#, r#"{"access_token":"a\nb"}"#] {
        idp.set(Script::Fail(200, answer));
        let error = client.token(&prepared).await.unwrap_err();
        assert!(matches!(*error, TokenError::Malformed(_)), "{answer}: {error}");
    }

    idp.set(Script::Hang);
    let mut slow = request(idp.url(), ClientAuth::ClientSecretPost);
    slow.timeout = Duration::from_millis(100);
    let error = client.token(&client.prepare(&slow).unwrap()).await.unwrap_err();
    assert!(matches!(*error, TokenError::Timeout(_)), "{error}");

    // Nothing listens there any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let down = client.prepare(&request(format!("http://{closed}/token"), ClientAuth::ClientSecretPost)).unwrap();
    let error = client.token(&down).await.unwrap_err();
    assert!(matches!(*error, TokenError::Unreachable(_)), "{error}");

    assert_eq!(
        client.prepare(&request("ftp://idp/token".into(), ClientAuth::None)).unwrap_err(),
        PrepareError::Endpoint
    );
    let mut bad_header = request(idp.url(), ClientAuth::None);
    bad_header.headers = vec![("X Bad".into(), "v".into())];
    assert!(matches!(client.prepare(&bad_header), Err(PrepareError::Header(_))));
    let mut keyed = request(idp.url(), ClientAuth::ClientSecretPost);
    keyed.headers = vec![("x-api-key".into(), "api-key-123".into())];
    keyed.post_args = vec![("assertion".into(), "signed-456".into())];
    let printed = format!("{keyed:?} {:?}", client.prepare(&keyed).unwrap());
    assert!(printed.contains("x-api-key") && printed.contains("assertion"), "{printed}");
    for secret in ["api-key-123", "signed-456", "s3cret"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    let printed = format!("{prepared:?}");
    assert!(!printed.contains("s3cret") && !printed.contains("client-1"), "{printed}");
}

#[test]
fn a_jwt_access_tokens_exp_bounds_its_lifetime() {
    let payload = URL_SAFE_NO_PAD.encode(json!({"exp": START + 30, "sub": "x"}).to_string());
    assert_eq!(jwt_exp(&format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig")), Some(Timestamp::from_secs(START + 30)));
    assert_eq!(jwt_exp("opaque-token"), None);
    assert_eq!(jwt_exp("a.!!!.c"), None);
    let no_exp = URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#);
    assert_eq!(jwt_exp(&format!("a.{no_exp}.c")), None);
}

#[test]
fn the_cache_salt_changes_the_key_and_is_never_sent() {
    let base = request("http://127.0.0.1:9/token".into(), ClientAuth::ClientSecretPost);
    let salted = TokenRequest { cache_salt: Some(SecretString::new("pepper".into())), ..base.clone() };
    let other = TokenRequest { cache_salt: Some(SecretString::new("salt".into())), ..base.clone() };
    let key = |r: &TokenRequest| {
        let id = r.client_id.as_ref().map(SecretString::expose).unwrap_or_default().to_owned();
        let secret = r.client_secret.as_ref().map(SecretString::expose).unwrap_or_default().to_owned();
        cache_key(r, &id, &secret)
    };
    assert_ne!(key(&base), key(&salted));
    assert_ne!(key(&salted), key(&other));
    assert_eq!(key(&salted), key(&salted.clone()));
    let (_, shared) = clock();
    let prepared = TokenClient::new(10, shared).prepare(&salted).unwrap();
    assert!(!prepared.form.expose().contains("pepper"));
    assert!(!format!("{salted:?}").contains("pepper"));
}
