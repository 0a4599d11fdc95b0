//! Every error case of the token, introspection and revocation endpoints answers RFC 6749 / 7662 / 7009 JSON
//! with the right status, `Cache-Control: no-store`, and never a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gatehouse_testkit::{TestNode, Tutorial};

struct Sent {
    status: StatusCode,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

async fn send(req: reqwest::RequestBuilder) -> Sent {
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.bytes().await.unwrap();
    Sent { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers }
}

fn oauth_error(sent: &Sent, status: u16, error: &str) {
    assert_eq!((sent.status.as_u16(), sent.body["error"].as_str()), (status, Some(error)), "{}", sent.body);
    assert_eq!(sent.headers["cache-control"], "no-store");
    assert!(sent.body["error_description"].is_string());
}

async fn setup() -> (TestNode, Tutorial) {
    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    (node, t)
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

#[tokio::test]
async fn token_endpoint_errors() {
    let (node, t) = setup().await;
    let http = reqwest::Client::new();
    let url = format!("{}/oauth/token", t.issuer);
    let post = |body: String| http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body);
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", t.client_id.as_str()),
        ("client_secret", t.client_secret.as_str()),
    ];

    oauth_error(
        &send(http.post(&url).json(&json!({"grant_type": "client_credentials"}))).await,
        400,
        "invalid_request",
    );
    oauth_error(
        &send(post("grant_type=client_credentials&grant_type=client_credentials".into())).await,
        400,
        "invalid_request",
    );
    oauth_error(&send(post(form_body(&good[1..]))).await, 400, "invalid_request");
    oauth_error(
        &send(post(form_body(&[("grant_type", "password"), good[1], good[2]]))).await,
        400,
        "unsupported_grant_type",
    );
    oauth_error(
        &send(post(form_body(&[("grant_type", "authorization_code"), good[1], good[2]]))).await,
        400,
        "unsupported_grant_type",
    );

    let anonymous = send(post(form_body(&good[..1]))).await;
    oauth_error(&anonymous, 401, "invalid_client");
    assert!(anonymous.headers.contains_key("www-authenticate"));
    oauth_error(&send(post(form_body(&[good[0], ("client_id", "nobody"), good[2]]))).await, 401, "invalid_client");
    let wrong_post = send(post(form_body(&[good[0], good[1], ("client_secret", "wrong")]))).await;
    oauth_error(&wrong_post, 401, "invalid_client");
    assert!(!wrong_post.headers.contains_key("www-authenticate"), "no Basic challenge when Basic was not used");
    let wrong_basic = send(post(form_body(&good[..1])).basic_auth(&t.client_id, Some("wrong"))).await;
    oauth_error(&wrong_basic, 401, "invalid_client");
    assert_eq!(wrong_basic.headers["www-authenticate"], "Basic realm=\"gatehouse\"");
    oauth_error(
        &send(post(form_body(&[good[0], good[2]])).basic_auth(&t.client_id, Some(&t.client_secret))).await,
        400,
        "invalid_request",
    );
    oauth_error(&send(post(form_body(&[good[0], ("client_secret", "s")]))).await, 400, "invalid_request");
    // Basic works as well as the body.
    let basic = send(post(form_body(&good[..1])).basic_auth(&t.client_id, Some(&t.client_secret))).await;
    assert_eq!(basic.status, StatusCode::OK, "{}", basic.body);
    assert_eq!(basic.headers["cache-control"], "no-store");
    assert!(basic.body.get("scope").is_none(), "no scope granted, no scope member");

    // Scopes: unknown, malformed, not allowed, disabled.
    for scope in ["nope", "my-scope  my-scope", " my-scope"] {
        oauth_error(&send(post(form_body(&[good[0], good[1], good[2], ("scope", scope)]))).await, 400, "invalid_scope");
    }
    let (_, other) = node.post(&format!("/v1/auth-servers/{}/scopes", t.server_id), json!({"name": "other"})).await;
    oauth_error(&send(post(form_body(&[good[0], good[1], good[2], ("scope", "other")]))).await, 400, "invalid_scope");
    node.patch(&format!("/v1/auth-servers/{}/scopes/{}", t.server_id, t.scope_id), json!({"enabled": false})).await;
    oauth_error(
        &send(post(form_body(&[good[0], good[1], good[2], ("scope", "my-scope")]))).await,
        400,
        "invalid_scope",
    );
    assert!(other["id"].is_string());

    // A disabled secret no longer authenticates.
    let (_, secrets) = node.get(&format!("/v1/auth-servers/{}/clients/{}/secrets", t.server_id, t.client_id)).await;
    let secret_id = secrets["data"][0]["id"].as_str().unwrap();
    node.patch(
        &format!("/v1/auth-servers/{}/clients/{}/secrets/{secret_id}", t.server_id, t.client_id),
        json!({"enabled": false}),
    )
    .await;
    oauth_error(&send(post(form_body(&good))).await, 401, "invalid_client");

    // Clients that may not use this grant.
    let clients = format!("/v1/auth-servers/{}/clients", t.server_id);
    let secret = "S".repeat(30);
    node.put(
        &format!("{clients}/implicit-only"),
        json!({"name": "implicit", "grant_types": ["implicit"], "client_secret": secret}),
    )
    .await;
    oauth_error(
        &send(post(form_body(&[good[0], ("client_id", "implicit-only"), ("client_secret", &secret)]))).await,
        400,
        "unauthorized_client",
    );
    node.put(
        &format!("{clients}/public-client"),
        json!({"name": "public", "grant_types": ["client_credentials"], "client_secret": secret, "token_endpoint_auth_method": "none"}),
    )
    .await;
    oauth_error(
        &send(post(form_body(&[good[0], ("client_id", "public-client"), ("client_secret", &secret)]))).await,
        400,
        "unauthorized_client",
    );
    oauth_error(&send(post(form_body(&[good[0], ("client_id", "public-client")]))).await, 400, "unauthorized_client");

    // Size, method, unknown issuer.
    let big = send(post(format!("grant_type=client_credentials&x={}", "a".repeat(17 * 1024)))).await;
    oauth_error(&big, 413, "invalid_request");
    let get = send(http.get(&url)).await;
    assert_eq!((get.status, get.body["error"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("invalid_request")));
    let unknown = send(http.post(url.replace(&t.issuer[t.issuer.len() - 16..], "zzzzzzzzzzzzzzzz"))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    node.stop().await;
}

#[tokio::test]
async fn introspection_errors_and_inactive_tokens() {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let t = node.tutorial_setup("RS256").await;
    let other = node.tutorial_setup("ES256").await;
    let (_, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let url = format!("{}/introspect", t.issuer);
    let http = reqwest::Client::new();

    oauth_error(&send(http.post(&url).form(&[("token", token.as_str())])).await, 401, "invalid_client");
    oauth_error(
        &send(http.post(&url).basic_auth(&t.client_id, Some("nope")).form(&[("token", token.as_str())])).await,
        401,
        "invalid_client",
    );
    oauth_error(
        &send(http.post(&url).basic_auth(&t.client_id, Some(&t.client_secret)).form(&[("x", "y")])).await,
        400,
        "invalid_request",
    );
    // A client of another auth server is not a client here.
    oauth_error(
        &send(
            http.post(&url).basic_auth(&other.client_id, Some(&other.client_secret)).form(&[("token", token.as_str())]),
        )
        .await,
        401,
        "invalid_client",
    );
    // Credentials in the body work too, and any client of the same server may introspect.
    let clients = format!("/v1/auth-servers/{}/clients", t.server_id);
    node.put(
        &format!("{clients}/gateway"),
        json!({"name": "gateway", "grant_types": ["client_credentials"], "client_secret": "G".repeat(24)}),
    )
    .await;
    let by_other_client = send(http.post(&url).form(&[
        ("token", token.as_str()),
        ("client_id", "gateway"),
        ("client_secret", &"G".repeat(24)),
    ]))
    .await;
    assert_eq!(by_other_client.body["active"], true);

    let inactive = |v: &Value| assert_eq!(v, &json!({"active": false}), "{v}");
    let introspect = |tok: String| {
        let (id, secret) = (t.client_id.clone(), t.client_secret.clone());
        let http = http.clone();
        let url = url.clone();
        async move { send(http.post(url).basic_auth(id, Some(secret)).form(&[("token", tok)])).await.body }
    };
    // Malformed, tampered, foreign issuer, wrong algorithm, wrong type.
    inactive(&introspect("garbage".into()).await);
    inactive(&introspect(format!("{token}x")).await);
    let (_, foreign) = node.token(&other.issuer, &other.client_id, &other.client_secret, Some("my-scope")).await;
    inactive(&introspect(foreign["access_token"].as_str().unwrap().to_owned()).await);
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    for forged in [
        json!({"alg": "none", "kid": header["kid"], "typ": "at+jwt"}),
        json!({"alg": "HS256", "kid": header["kid"], "typ": "at+jwt"}),
        json!({"alg": "RS256", "kid": header["kid"], "typ": "JWT"}),
    ] {
        inactive(&introspect(format!("{}.{}.{}", b64.encode(forged.to_string()), parts[1], parts[2])).await);
    }
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!("admin");
    inactive(&introspect(format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2])).await);

    // Still active now; expired after exp plus the 30 s leeway.
    assert_eq!(introspect(token.clone()).await["active"], true);
    node.clock.as_ref().unwrap().advance_secs(3600 + 29);
    assert_eq!(introspect(token.clone()).await["active"], true, "within the leeway");
    node.clock.as_ref().unwrap().advance_secs(2);
    inactive(&introspect(token.clone()).await);
    node.stop().await;
}

#[tokio::test]
async fn revocation_endpoint() {
    let (node, t) = setup().await;
    let url = format!("{}/revoke", t.issuer);
    let http = reqwest::Client::new();
    let (_, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, None).await;
    let token = body["access_token"].as_str().unwrap().to_owned();

    oauth_error(&send(http.post(&url).form(&[("token", token.as_str())])).await, 401, "invalid_client");
    oauth_error(
        &send(http.post(&url).basic_auth(&t.client_id, Some(&t.client_secret)).form(&[("nope", "x")])).await,
        400,
        "invalid_request",
    );
    // Another client's revocation has no effect, and neither does an unknown token; both get 200.
    let clients = format!("/v1/auth-servers/{}/clients", t.server_id);
    node.put(
        &format!("{clients}/intruder"),
        json!({"name": "intruder", "grant_types": ["client_credentials"], "client_secret": "I".repeat(24)}),
    )
    .await;
    let foreign =
        send(http.post(&url).basic_auth("intruder", Some("I".repeat(24))).form(&[("token", token.as_str())])).await;
    assert_eq!(foreign.status, StatusCode::OK);
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &token).await["active"], true);
    let unknown =
        send(http.post(&url).basic_auth(&t.client_id, Some(&t.client_secret)).form(&[("token", "garbage")])).await;
    assert_eq!(unknown.status, StatusCode::OK);

    let own = send(
        http.post(&url)
            .basic_auth(&t.client_id, Some(&t.client_secret))
            .form(&[("token", token.as_str()), ("token_type_hint", "access_token")]),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(node.introspect(&t.issuer, &t.client_id, &t.client_secret, &token).await, json!({"active": false}));
    // Revoking twice is fine.
    assert_eq!(
        send(http.post(&url).basic_auth(&t.client_id, Some(&t.client_secret)).form(&[("token", token.as_str())]))
            .await
            .status,
        StatusCode::OK
    );
    node.stop().await;
}

#[tokio::test]
async fn userinfo_and_endpoints_not_offered() {
    let (node, t) = setup().await;
    let http = reqwest::Client::new();
    node.post(
        &format!("/v1/auth-servers/{}/claims", t.server_id),
        json!({"name": "email", "value": "svc@example.com", "include_in_token": false, "include_in_all_scopes": true}),
    )
    .await;
    node.post(
        &format!("/v1/auth-servers/{}/claims", t.server_id),
        json!({"name": "department", "value": "ops", "include_in_token": false, "include_in_scopes": [t.scope_id]}),
    )
    .await;
    let (_, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, None).await;
    let token = body["access_token"].as_str().unwrap();
    let claims: Value = {
        use base64::Engine;
        let p = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    };
    assert!(claims.get("email").is_none(), "include_in_token=false stays out of the token");
    let info = send(http.get(format!("{}/userinfo", t.issuer)).bearer_auth(token)).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.body, json!({"sub": t.client_id, "email": "svc@example.com"}), "department needs my-scope");
    let (_, scoped) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    let info =
        send(http.post(format!("{}/userinfo", t.issuer)).bearer_auth(scoped["access_token"].as_str().unwrap())).await;
    assert_eq!(info.body["department"], "ops");

    let missing = send(http.get(format!("{}/userinfo", t.issuer))).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers["www-authenticate"], "Bearer realm=\"gatehouse\"");
    let invalid = send(http.get(format!("{}/userinfo", t.issuer)).bearer_auth("garbage")).await;
    assert_eq!(invalid.status, StatusCode::UNAUTHORIZED);
    assert!(invalid.headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));

    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in [
        "authorize?response_type=code&client_id=x&redirect_uri=https://evil.example.com",
        "end_session",
        "device_authorization",
    ] {
        for method in [Method::GET, Method::POST] {
            let res = send(no_redirects.request(method.clone(), format!("{}/{path}", t.issuer))).await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
            assert!(!res.headers.contains_key("location"), "never a redirect");
            assert_eq!(res.body["error"], "invalid_request");
        }
    }
    node.stop().await;
}
