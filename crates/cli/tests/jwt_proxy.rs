//! The `jwt` plugin through a real node: `jwt_secrets` made on the Admin API, tokens signed here (HMAC, RSA, ECDSA,
//! RSA-PSS, Ed25519), requests over loopback to the proxy and its echo upstream. Where tokens are found (query,
//! cookie, `Bearer` header), Kong's 401 bodies and `Bearer` challenges, the algorithm pinned to the credential,
//! `exp`/`nbf`/`maximum_expiration` against the node's manual clock, `secret_is_base64`, `key_claim_name`,
//! `anonymous`, `run_on_preflight` and spoofed identity headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_model::{Clock, ManualClock};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::auth::send;
use gatehouse_testkit::TestNode;

async fn start() -> (TestNode, ManualClock) {
    let node = TestNode::builder().manual_clock().start().await.unwrap();
    let clock = node.clock.clone().unwrap();
    node.example_service().await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "bob", "custom_id": "bob-cid"})).await;
    node.admin_ok(Method::POST, "/consumers", json!({"username": "guest"})).await;
    (node, clock)
}

async fn jwt_on_route(node: &TestNode, config: Value) -> String {
    let plugin =
        node.admin_ok(Method::POST, "/routes/example-route/plugins", json!({"name": "jwt", "config": config})).await;
    node.wait_config().await;
    plugin["id"].as_str().unwrap().to_owned()
}

fn sign(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs256(claims: &Value, secret: &str) -> String {
    sign(Algorithm::HS256, claims, &EncodingKey::from_secret(secret.as_bytes()))
}

fn get(node: &TestNode, path_and_query: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().get(format!("{}{path_and_query}", node.proxy_url()))
}

fn bearer(node: &TestNode, token: &str) -> reqwest::RequestBuilder {
    get(node, "/anything").header("authorization", format!("Bearer {token}"))
}

const INVALID: &str = "Bearer error=\"invalid_token\"";

#[tokio::test]
async fn hmac_tokens_in_headers_queries_and_cookies_identify_the_consumer() {
    let (node, clock) = start().await;
    let cred = node
        .admin_ok(Method::POST, "/consumers/bob/jwt", json!({"key": "bob-issuer", "secret": "bob-hmac-secret"}))
        .await;
    node.admin_ok(
        Method::POST,
        "/consumers/bob/jwt",
        json!({"key": "bob-384", "secret": "s384", "algorithm": "HS384"}),
    )
    .await;
    assert_eq!(cred["algorithm"], "HS256");
    jwt_on_route(&node, json!({"cookie_names": ["session"], "claims_to_verify": ["exp"]})).await;
    let now = clock.now().secs();
    let token = hs256(&json!({"iss": "bob-issuer", "exp": now + 60}), "bob-hmac-secret");

    let (status, _, echo) = send(bearer(&node, &token)).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let headers = &echo["headers"];
    assert_eq!((&headers["x-consumer-username"], &headers["x-consumer-custom-id"]), (&json!("bob"), &json!("bob-cid")));
    assert_eq!(headers["x-credential-identifier"], "bob-issuer", "Kong sends the credential's key");
    assert!(headers.get("x-anonymous-consumer").is_none());
    assert_eq!(headers["authorization"], format!("Bearer {token}"), "the token goes upstream");
    let (status, _, _) = send(get(&node, &format!("/anything?jwt={token}"))).await;
    assert_eq!(status, StatusCode::OK, "in the query");
    let (status, _, _) = send(get(&node, "/anything").header("cookie", format!("a=1; session={token}"))).await;
    assert_eq!(status, StatusCode::OK, "in a cookie");
    // The same token in two places is one token.
    let (status, _, _) = send(bearer(&node, &token).query(&[("jwt", &token)])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(get(&node, "/anything").header("authorization", format!("x bearer   {token}"))).await;
    assert_eq!(status, StatusCode::OK, "Kong's unanchored `[Bb]earer\\s+`");

    // Kong's 401s: the message and the challenge.
    let (status, challenge, body) = send(get(&node, "/anything")).await;
    assert_eq!(
        (status, challenge.as_deref(), body),
        (StatusCode::UNAUTHORIZED, Some("Bearer"), json!({"message": "Unauthorized"}))
    );
    let other = hs256(&json!({"iss": "bob-issuer", "exp": now + 61}), "bob-hmac-secret");
    let refusals = [
        (bearer(&node, &token).query(&[("jwt", &other)]), "Multiple tokens provided"),
        (get(&node, "/anything?jwt"), "Unrecognizable token"),
        (bearer(&node, "not-a-token"), "Bad token; invalid JSON"),
        (
            bearer(
                &node,
                &format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode("{}")),
            ),
            "Bad token; invalid alg",
        ),
        (bearer(&node, &hs256(&json!({"sub": "x"}), "bob-hmac-secret")), "No mandatory 'iss' in claims"),
        (bearer(&node, &hs256(&json!({"iss": ""}), "bob-hmac-secret")), "Invalid 'iss' in claims"),
        (bearer(&node, &hs256(&json!({"iss": "nobody"}), "x")), "No credentials found for given 'iss'"),
        (bearer(&node, &hs256(&json!({"iss": "bob-issuer"}), "wrong-secret")), "Invalid signature"),
        // The credential's algorithm, not the token's, picks the verifier.
        (
            bearer(
                &node,
                &sign(Algorithm::HS384, &json!({"iss": "bob-issuer"}), &EncodingKey::from_secret(b"bob-hmac-secret")),
            ),
            "Invalid algorithm",
        ),
    ];
    for (request, expected) in refusals {
        let (status, challenge, body) = send(request).await;
        assert_eq!(
            (status, challenge.as_deref(), body),
            (StatusCode::UNAUTHORIZED, Some(INVALID), json!({"message": expected}))
        );
    }
    let hs384 = sign(Algorithm::HS384, &json!({"iss": "bob-384", "exp": now + 5}), &EncodingKey::from_secret(b"s384"));
    assert_eq!(send(bearer(&node, &hs384)).await.0, StatusCode::OK);

    // `claims_to_verify: [exp]`: Kong answers with the errors table.
    let (_, _, body) = send(bearer(&node, &hs256(&json!({"iss": "bob-issuer"}), "bob-hmac-secret"))).await;
    assert_eq!(body, json!({"exp": "must be a number"}));
    clock.advance_secs(60);
    let (status, challenge, body) = send(bearer(&node, &token)).await;
    assert_eq!(
        (status, challenge.as_deref(), body),
        (StatusCode::UNAUTHORIZED, Some(INVALID), json!({"exp": "token expired"}))
    );

    // A client's own identity headers never reach the upstream.
    let fresh = hs256(&json!({"iss": "bob-issuer", "exp": now + 600}), "bob-hmac-secret");
    let (status, _, echo) =
        send(bearer(&node, &fresh).header("x-anonymous-consumer", "true").header("x-consumer-groups", "admins")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        echo["headers"].get("x-anonymous-consumer").is_none() && echo["headers"].get("x-consumer-groups").is_none()
    );

    // A deleted credential stops working once the proxy has the change.
    node.admin(Method::DELETE, "/jwts/bob-issuer", None).await;
    node.wait_config().await;
    let (_, _, body) = send(bearer(&node, &fresh)).await;
    assert_eq!(body, json!({"message": "No credentials found for given 'iss'"}));
    node.stop().await;
}

/// A key pair made now: the signing key for jsonwebtoken and the public key PEM for the credential.
fn key_pair(alg: &'static rcgen::SignatureAlgorithm) -> (EncodingKey, String) {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    let pkcs8 = pair.serialize_der();
    let signing = if alg == &rcgen::PKCS_RSA_SHA256 {
        EncodingKey::from_rsa_der(&pkcs1_of(&pkcs8))
    } else if alg == &rcgen::PKCS_ED25519 {
        EncodingKey::from_ed_der(&pkcs8)
    } else {
        EncodingKey::from_ec_der(&pkcs8)
    };
    (signing, gatehouse_net::tls::pem_encode("PUBLIC KEY", &rcgen::PublicKeyData::subject_public_key_info(&pair)))
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (its last element, an OCTET STRING), which is the
/// form jsonwebtoken signs RSA with.
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    fn element(der: &[u8]) -> (&[u8], &[u8]) {
        let (len, at) = match der[1] {
            n if n < 0x80 => (usize::from(n), 2),
            n => {
                let k = usize::from(n & 0x7f);
                (der[2..2 + k].iter().fold(0, |acc, b| (acc << 8) | usize::from(*b)), 2 + k)
            }
        };
        (&der[at..at + len], &der[at + len..])
    }
    let (info, _) = element(pkcs8);
    let (_, rest) = element(info); // version
    let (_, rest) = element(rest); // algorithm
    element(rest).0.to_vec()
}

#[tokio::test]
async fn public_key_credentials_verify_with_their_algorithm() {
    let (node, clock) = start().await;
    let rsa = key_pair(&rcgen::PKCS_RSA_SHA256);
    let ec = key_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let ed = key_pair(&rcgen::PKCS_ED25519);
    let cases = [
        ("rs256", Algorithm::RS256, &rsa),
        ("ps512", Algorithm::PS512, &rsa),
        ("es256", Algorithm::ES256, &ec),
        ("eddsa", Algorithm::EdDSA, &ed),
    ];
    for (key, alg, pair) in &cases {
        let body = json!({"key": key, "algorithm": format!("{alg:?}"), "rsa_public_key": pair.1});
        node.admin_ok(Method::POST, "/consumers/bob/jwt", body).await;
    }
    jwt_on_route(&node, json!({"claims_to_verify": ["exp", "nbf"]})).await;
    let now = clock.now().secs();
    let stranger = key_pair(&rcgen::PKCS_ECDSA_P256_SHA256).0;
    for (key, alg, pair) in &cases {
        let token = sign(*alg, &json!({"iss": key, "exp": now + 60, "nbf": now}), &pair.0);
        let (status, _, echo) = send(bearer(&node, &token)).await;
        assert_eq!(status, StatusCode::OK, "{key}: {echo}");
        assert_eq!(echo["headers"]["x-credential-identifier"], *key);
    }
    // Signed by another key of the same kind: refused.
    let forged = sign(Algorithm::ES256, &json!({"iss": "es256"}), &stranger);
    assert_eq!(send(bearer(&node, &forged)).await.2, json!({"message": "Invalid signature"}));
    // An HMAC token signed with the public key as its secret (the classic confusion) is refused by algorithm.
    let confused = sign(Algorithm::HS256, &json!({"iss": "rs256"}), &EncodingKey::from_secret(rsa.1.as_bytes()));
    assert_eq!(send(bearer(&node, &confused)).await.2, json!({"message": "Invalid algorithm"}));
    let early = sign(Algorithm::ES256, &json!({"iss": "es256", "exp": now + 60, "nbf": now + 30}), &ec.0);
    assert_eq!(send(bearer(&node, &early)).await.2, json!({"nbf": "token not valid yet"}));

    // The Admin API refuses what could never verify.
    let refused = [
        (
            json!({"algorithm": "RS256"}),
            json!({"rsa_public_key": "required field missing",
            "@entity": ["failed conditional validation given value of field 'algorithm'"]}),
        ),
        (
            json!({"algorithm": "RS256", "rsa_public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}),
            json!({"rsa_public_key": "invalid key"}),
        ),
        (json!({"algorithm": "EdDSA", "rsa_public_key": rsa.1}), json!({"rsa_public_key": "invalid key"})),
        (
            json!({"algorithm": "HS1"}),
            json!({"algorithm": "expected one of: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA"}),
        ),
    ];
    for (body, fields) in refused {
        let (status, e) = node.admin(Method::POST, "/consumers/bob/jwt", Some(body.clone())).await;
        assert_eq!((status, &e["fields"]), (StatusCode::BAD_REQUEST, &fields), "{body}: {e}");
    }
    let (status, e) = node
        .admin(Method::POST, "/consumers/bob/jwt", Some(json!({"algorithm": "ES512", "rsa_public_key": ec.1})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["fields"]["algorithm"].as_str().unwrap().starts_with("not supported by Gatehouse"), "{e}");
    node.stop().await;
}

#[tokio::test]
async fn anonymous_preflight_realm_base64_secrets_claim_names_and_maximum_expiration() {
    let (node, clock) = start().await;
    // `secret_is_base64`: the stored secret is base64url; tokens are signed with the bytes it decodes to.
    let raw = b"\x00\x01binary-secret\xff";
    let encoded = URL_SAFE_NO_PAD.encode(raw);
    node.admin_ok(Method::POST, "/consumers/bob/jwt", json!({"key": "bob-kid", "secret": encoded})).await;
    let id = jwt_on_route(
        &node,
        json!({"secret_is_base64": true, "key_claim_name": "kid", "realm": "api", "uri_param_names": [],
            "claims_to_verify": ["exp"], "maximum_expiration": 3600}),
    )
    .await;
    let now = clock.now().secs();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("bob-kid".into());
    let signed =
        |exp: i64| jsonwebtoken::encode(&header, &json!({"exp": exp}), &EncodingKey::from_secret(raw)).unwrap();
    // The claim is read from the token's header when the claims lack it.
    let (status, _, echo) = send(bearer(&node, &signed(now + 600))).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let (status, challenge, body) = send(bearer(&node, &signed(now + 7200))).await;
    assert_eq!(
        (status, challenge.as_deref(), body),
        (
            StatusCode::UNAUTHORIZED,
            Some("Bearer realm=\"api\", error=\"invalid_token\""),
            json!({"exp": "exceeds maximum allowed expiration"})
        )
    );
    let (_, challenge, _) = send(get(&node, "/anything?jwt=x")).await;
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"api\""), "no query parameter is read: no token");

    // `anonymous` and `run_on_preflight: false`.
    node.admin_ok(
        Method::PATCH,
        &format!("/plugins/{id}"),
        json!({"config": {"anonymous": "guest", "run_on_preflight": false, "maximum_expiration": 0}}),
    )
    .await;
    node.wait_config().await;
    let (status, _, echo) = send(get(&node, "/anything").header("x-consumer-username", "spoofed")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&echo["headers"]["x-consumer-username"], &echo["headers"]["x-anonymous-consumer"]),
        (&json!("guest"), &json!("true"))
    );
    let (_, _, echo) = send(bearer(&node, &signed(now + 7200))).await;
    assert_eq!(echo["headers"]["x-consumer-username"], "bob", "no maximum any more");
    let preflight = reqwest::Client::new().request(Method::OPTIONS, format!("{}/anything", node.proxy_url()));
    let (status, _, echo) = send(preflight.header("x-consumer-id", "spoofed")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(echo["headers"].get("x-consumer-id").is_none() && echo["headers"].get("x-anonymous-consumer").is_none());
    node.stop().await;
}
