//! The identity side of the tutorial end to end over real sockets: create the auth server, scope, claim and
//! client, get a token with `scope=my-scope`, introspect it with Basic credentials. The JWT is then verified
//! independently of our signing code (jsonwebtoken against the JWKS fetched over HTTP), and a standard OpenID
//! Connect client library does discovery, client_credentials and introspection on its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use gatehouse_testkit::{TestNode, Tutorial};

async fn tutorial_flow(node: &TestNode, t: &Tutorial) -> String {
    // curl -X POST "$ISSUER_URL/oauth/token" -d grant_type=client_credentials -d client_id -d client_secret -d scope=my-scope
    let (status, body) = node.token(&t.issuer, &t.client_id, &t.client_secret, Some("my-scope")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "my-scope");
    let access_token = body["access_token"].as_str().unwrap().to_owned();

    // The plugin's call: POST $ISSUER_URL/introspect with `Authorization: Basic $(echo -n "$ID:$SECRET" | base64)`.
    let encoded = STANDARD.encode(format!("{}:{}", t.client_id, t.client_secret));
    let res = reqwest::Client::new()
        .post(format!("{}/introspect", t.issuer))
        .header("authorization", format!("Basic {encoded}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={access_token}&token_type_hint=access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let introspection: Value = res.json().await.unwrap();
    assert_eq!(introspection["active"], true, "{introspection}");
    assert_eq!(introspection["test-claim"], "test");
    assert_eq!(introspection["client_id"], t.client_id.as_str());
    assert_eq!(introspection["scope"], "my-scope");
    assert_eq!(introspection["sub"], t.client_id.as_str());
    assert_eq!(introspection["iss"], t.issuer.as_str());
    assert_eq!(introspection["aud"], json!(["http://myhttpbin.dev"]));
    assert_eq!(introspection["token_type"], "Bearer");
    for field in ["exp", "iat", "nbf"] {
        assert!(introspection[field].is_i64(), "{field}");
    }
    assert!(introspection["jti"].is_string());
    access_token
}

/// Verifies the token with jsonwebtoken and keys fetched from the advertised `jwks_uri`, nothing of ours.
async fn verify_independently(t: &Tutorial, token: &str, alg: Algorithm) -> Map<String, Value> {
    let discovery: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", t.issuer)).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], t.issuer.as_str());
    let jwks: JwkSet = reqwest::get(discovery["jwks_uri"].as_str().unwrap()).await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, alg);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 access-token type");
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the token's kid is published");
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[&t.issuer]);
    validation.set_audience(&["http://myhttpbin.dev"]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap();
    let claims = data.claims;
    assert_eq!(claims["client_id"], t.client_id.as_str());
    assert_eq!(claims["sub"], t.client_id.as_str());
    assert_eq!(claims["scope"], "my-scope");
    assert_eq!(claims["test-claim"], "test");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert_eq!(claims["nbf"], claims["iat"]);
    let jti: uuid::Uuid = claims["jti"].as_str().unwrap().parse().unwrap();
    assert_eq!(jti.get_version_num(), 7);
    claims
}

#[tokio::test]
async fn tutorial_identity_steps_with_every_algorithm() {
    let node = TestNode::start().await;
    for (name, alg) in [
        ("RS256", Algorithm::RS256),
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
        ("PS256", Algorithm::PS256),
    ] {
        let t = node.tutorial_setup(name).await;
        let token = tutorial_flow(&node, &t).await;
        verify_independently(&t, &token, alg).await;
    }
    node.stop().await;
}

#[tokio::test]
async fn tutorial_identity_steps_on_postgres() {
    let Some(node) = TestNode::builder().postgres().start().await else { return };
    let t = node.tutorial_setup("RS256").await;
    let token = tutorial_flow(&node, &t).await;
    verify_independently(&t, &token, Algorithm::RS256).await;
    node.stop().await;
}

async fn http_client(request: openidconnect::HttpRequest) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let (parts, body) = request.into_parts();
    let res = client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let mut builder = http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        builder = builder.header(k, v);
    }
    Ok(builder.body(res.bytes().await?.to_vec()).expect("a response"))
}

#[tokio::test]
async fn a_standard_oidc_client_library_works() {
    use openidconnect::core::{CoreClient, CoreProviderMetadata};
    use openidconnect::{
        ClientId, ClientSecret, IntrospectionUrl, IssuerUrl, OAuth2TokenResponse, Scope, TokenIntrospectionResponse,
    };

    let node = TestNode::start().await;
    let t = node.tutorial_setup("ES256").await;
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(t.issuer.clone()).unwrap(), &http_client)
        .await
        .expect("discovery parses and the JWKS loads");
    assert_eq!(metadata.issuer().as_str(), t.issuer);
    assert!(!metadata.jwks().keys().is_empty());
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(t.client_id.clone()),
        Some(ClientSecret::new(t.client_secret.clone())),
    )
    .set_introspection_url(IntrospectionUrl::new(format!("{}/introspect", t.issuer)).unwrap());
    // The library authenticates with client_secret_basic.
    let token = client
        .exchange_client_credentials()
        .unwrap()
        .add_scope(Scope::new("my-scope".to_owned()))
        .request_async(&http_client)
        .await
        .expect("client_credentials");
    assert_eq!(token.scopes().map(|s| s.len()), Some(1));
    let introspection =
        client.introspect(token.access_token()).request_async(&http_client).await.expect("introspection");
    assert!(introspection.active());
    assert_eq!(introspection.client_id().map(|c| c.as_str()), Some(t.client_id.as_str()));
    assert_eq!(introspection.scopes().map(|s| s[0].as_str().to_owned()), Some("my-scope".to_owned()));
    node.stop().await;
}
