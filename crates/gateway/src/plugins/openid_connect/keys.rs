//! Issuers' metadata and signing keys, one set per issuer per node, kept across configuration changes.
//!
//! A set is fetched on first use (discovery document, then its `jwks_uri`) and refreshed when a token names a key
//! the set does not hold, or when it is older than `cache_ttl`. Refreshes are single-flight (one fetch however
//! many requests want it) and, once a set is known, at most one per `rediscovery_lifetime`: a stream of tokens with
//! made-up `kid`s costs the IdP one fetch per period, not one per token. A failed fetch changes nothing: the keys
//! known before stay in use, and with none known the request fails as "IdP unavailable", never as "no keys".

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use gatehouse_model::{Clock, SharedClock, Timestamp};

use super::http::{FetchError, IdpClient};

const DISCOVERY: &str = "/.well-known/openid-configuration";

/// A verification key and the algorithms a token signed with it may name: the key's own `alg`, or the family its
/// type allows. Symmetric keys are never used: with an HMAC key from a public JWKS anyone could sign.
pub struct Key {
    pub decoding: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("algorithms", &self.algorithms).finish_non_exhaustive()
    }
}

/// What one fetch of an issuer gave.
#[derive(Debug)]
pub struct KeySet {
    /// The discovery document's `issuer` (else the configured one, normalised).
    pub issuer: String,
    pub introspection_endpoint: Option<String>,
    /// Where the `client_credentials` method obtains tokens when `token_endpoint` is not configured.
    pub token_endpoint: Option<String>,
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys without a `kid`: tried for tokens without one.
    unnamed: Vec<Arc<Key>>,
    pub fetched: Timestamp,
}

impl KeySet {
    /// The key for a token's `kid`. A token without one may use the only key, or one of the keys without a `kid`.
    pub fn find(&self, kid: Option<&str>) -> Vec<Arc<Key>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned().into_iter().collect(),
            None if self.unnamed.is_empty() && self.by_kid.len() == 1 => self.by_kid.values().cloned().collect(),
            None => self.unnamed.clone(),
        }
    }

    fn knows(&self, kid: Option<&str>) -> bool {
        !self.find(kid).is_empty()
    }
}

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Nothing was ever fetched, and fetching failed now: the IdP is unavailable (Kong's 500).
    #[error("the issuer's keys are unavailable: {0}")]
    Unavailable(FetchError),
}

/// One issuer's keys on this node.
#[derive(Debug)]
pub struct IssuerKeys {
    discovery_url: String,
    configured_issuer: String,
    current: ArcSwapOption<KeySet>,
    refresh: tokio::sync::Mutex<()>,
    /// When the last fetch was attempted (node clock, microseconds; `i64::MIN` before the first).
    last_attempt: AtomicI64,
    /// Fetches attempted, whatever their outcome; bumped before each, so waiters see that one ran.
    attempts: AtomicU64,
}

/// The issuer as configured, without the discovery suffix or a trailing slash; and its discovery URL.
pub fn normalise(issuer: &str) -> (String, String) {
    let base = issuer.strip_suffix(DISCOVERY).unwrap_or(issuer).trim_end_matches('/').to_owned();
    let discovery = format!("{base}{DISCOVERY}");
    (base, discovery)
}

impl IssuerKeys {
    fn new(issuer: &str) -> Self {
        let (configured_issuer, discovery_url) = normalise(issuer);
        Self {
            discovery_url,
            configured_issuer,
            current: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(()),
            last_attempt: AtomicI64::new(i64::MIN),
            attempts: AtomicU64::new(0),
        }
    }

    /// The set to validate with, fetched on first use; `None` never: a failure is [`KeysError::Unavailable`].
    pub async fn set(
        &self,
        client: &IdpClient,
        clock: &SharedClock,
        policy: &Refresh,
    ) -> Result<Arc<KeySet>, KeysError> {
        if let Some(set) = self.current.load_full() {
            if !policy.stale(&set, clock.now()) {
                return Ok(set);
            }
            return Ok(self.refreshed(Some(set), client, clock, policy).await);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let _flight = self.refresh.lock().await;
        if let Some(set) = self.current.load_full() {
            return Ok(set);
        }
        if self.attempts.load(Ordering::Acquire) != seen {
            // Someone fetched while this request waited, and failed: the same answer, without another call.
            return Err(KeysError::Unavailable(FetchError::Unreachable("the issuer", "a fetch just failed".into())));
        }
        self.fetch_now(client, clock).await.map_err(KeysError::Unavailable)
    }

    /// The keys for `kid` in `set`, refreshing the set once (rate limited) when it does not know `kid`.
    pub async fn find(
        &self,
        set: Arc<KeySet>,
        kid: Option<&str>,
        client: &IdpClient,
        clock: &SharedClock,
        policy: &Refresh,
    ) -> Vec<Arc<Key>> {
        if set.knows(kid) {
            return set.find(kid);
        }
        self.refreshed(Some(set), client, clock, policy).await.find(kid)
    }

    /// A newer set than `seen` when the rate limit allows a fetch and it succeeds; `seen` otherwise.
    async fn refreshed(
        &self,
        seen: Option<Arc<KeySet>>,
        client: &IdpClient,
        clock: &SharedClock,
        policy: &Refresh,
    ) -> Arc<KeySet> {
        let fallback = |seen: Option<Arc<KeySet>>| seen.or_else(|| self.current.load_full());
        if !policy.may_fetch(self.last_attempt.load(Ordering::Acquire), clock.now()) {
            return fallback(seen).unwrap_or_else(empty);
        }
        let _flight = self.refresh.lock().await;
        let current = self.current.load_full();
        if let (Some(current), Some(seen)) = (&current, &seen)
            && !Arc::ptr_eq(current, seen)
        {
            return current.clone();
        }
        // Checked again under the lock: the requests that queued behind a fetch must not each make their own.
        if !policy.may_fetch(self.last_attempt.load(Ordering::Acquire), clock.now()) {
            return fallback(seen).unwrap_or_else(empty);
        }
        match self.fetch_now(client, clock).await {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(issuer = %self.configured_issuer, error = %e, "openid-connect: refreshing the issuer's keys failed; the known keys stay in use");
                fallback(seen).unwrap_or_else(empty)
            }
        }
    }

    /// Discovery, then the JWKS; stored when both succeed. Callers hold the `refresh` lock.
    async fn fetch_now(&self, client: &IdpClient, clock: &SharedClock) -> Result<Arc<KeySet>, FetchError> {
        self.attempts.fetch_add(1, Ordering::AcqRel);
        self.last_attempt.store(clock.now().micros(), Ordering::Release);
        let metadata = client.get_json("the discovery document", &self.discovery_url).await?;
        let jwks_uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or(FetchError::Url("the discovery document", "no jwks_uri".into()))?;
        let jwks = client.get_json("the JWKS", jwks_uri).await?;
        let (by_kid, unnamed) = parse_jwks(&jwks);
        let text = |f: &str| metadata.get(f).and_then(Value::as_str).map(str::to_owned);
        let set = Arc::new(KeySet {
            issuer: text("issuer").unwrap_or_else(|| self.configured_issuer.clone()),
            introspection_endpoint: text("introspection_endpoint"),
            token_endpoint: text("token_endpoint"),
            by_kid,
            unnamed,
            fetched: clock.now(),
        });
        self.current.store(Some(set.clone()));
        Ok(set)
    }

    #[cfg(test)]
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }
}

fn empty() -> Arc<KeySet> {
    Arc::new(KeySet {
        issuer: String::new(),
        introspection_endpoint: None,
        token_endpoint: None,
        by_kid: HashMap::new(),
        unnamed: Vec::new(),
        fetched: Timestamp::from_micros(0),
    })
}

/// How often a set may be fetched again: after `max_age` it is refreshed, and never twice within `min_interval`.
#[derive(Debug, Clone, Copy)]
pub struct Refresh {
    pub max_age: Duration,
    pub min_interval: Duration,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Refresh {
    fn stale(&self, set: &KeySet, now: Timestamp) -> bool {
        now.micros().saturating_sub(set.fetched.micros()) >= micros(self.max_age)
    }

    fn may_fetch(&self, last_attempt: i64, now: Timestamp) -> bool {
        last_attempt == i64::MIN || now.micros().saturating_sub(last_attempt) >= micros(self.min_interval)
    }
}

/// Keys by `kid` and keys without one; keys that cannot verify signatures (encryption keys, symmetric keys,
/// unknown types) are left out.
fn parse_jwks(jwks: &serde_json::Map<String, Value>) -> (HashMap<String, Arc<Key>>, Vec<Arc<Key>>) {
    let mut by_kid = HashMap::new();
    let mut unnamed = Vec::new();
    for value in jwks.get("keys").and_then(Value::as_array).into_iter().flatten() {
        if value.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else { continue };
        let Some(key) = verification_key(&jwk) else { continue };
        match jwk.common.key_id {
            Some(kid) => {
                by_kid.insert(kid, Arc::new(key));
            }
            None => unnamed.push(Arc::new(key)),
        }
    }
    (by_kid, unnamed)
}

/// The algorithms a key of this type can verify; the key's `alg`, when it has one, must be among them.
fn verification_key(jwk: &Jwk) -> Option<Key> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        Some(alg) => {
            let alg = pinned(alg)?;
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
        None => family,
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { decoding, algorithms })
}

fn pinned(alg: KeyAlgorithm) -> Option<Algorithm> {
    match alg {
        KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512 => None,
        other => Algorithm::try_from(other).ok(),
    }
}

/// Every issuer's keys on the node, by (issuer, TLS verification).
#[derive(Debug, Default)]
pub struct Issuers {
    by_issuer: Mutex<HashMap<(String, bool), Arc<IssuerKeys>>>,
}

impl Issuers {
    pub fn get(&self, issuer: &str, ssl_verify: bool) -> Arc<IssuerKeys> {
        let mut map = self.by_issuer.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((normalise(issuer).0, ssl_verify)).or_insert_with(|| Arc::new(IssuerKeys::new(issuer))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_signature_keys_of_known_types_are_kept_and_pinned() {
        let rsa = json!({"kty": "RSA", "kid": "r", "alg": "RS256", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        let no_alg = json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let hmac = json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        let hs_on_rsa = json!({"kty": "RSA", "kid": "x", "alg": "HS256", "n": rsa["n"], "e": "AQAB"});
        let enc = json!({"kty": "RSA", "kid": "e", "use": "enc", "n": rsa["n"], "e": "AQAB"});
        let jwks = json!({"keys": [rsa, no_alg, hmac, hs_on_rsa, enc, {"kty": "weird"}]});
        let (by_kid, unnamed) = parse_jwks(jwks.as_object().unwrap());
        assert_eq!(by_kid.keys().collect::<Vec<_>>(), ["r"]);
        assert_eq!(by_kid["r"].algorithms, [Algorithm::RS256], "pinned to the key's alg");
        assert_eq!(unnamed.len(), 1);
        assert_eq!(unnamed[0].algorithms, [Algorithm::ES256], "an EC P-256 key verifies ES256 only");
    }

    #[test]
    fn issuers_are_normalised() {
        assert_eq!(
            normalise("https://i.example/a/"),
            ("https://i.example/a".to_owned(), "https://i.example/a/.well-known/openid-configuration".to_owned())
        );
        assert_eq!(normalise("https://i.example/a/.well-known/openid-configuration").0, "https://i.example/a");
        let refresh = Refresh { max_age: Duration::from_secs(3600), min_interval: Duration::from_secs(30) };
        let t = Timestamp::from_secs(1_000);
        assert!(refresh.may_fetch(i64::MIN, t));
        assert!(!refresh.may_fetch(t.micros() - 29_999_999, t));
        assert!(refresh.may_fetch(t.micros() - 30_000_000, t));
    }

    /// What one signature check costs, per key type (RS256 on a 2048-bit key, ES256, EdDSA), measured with
    /// `cargo test --release -p gatehouse-gateway --lib verification_cost -- --ignored --nocapture`. Asserts that
    /// every check succeeds (and that a wrong signature fails), so the loop measures real verifications.
    #[test]
    #[ignore = "a measurement: run in release mode"]
    fn verification_cost() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let message = format!("{}.{}", b64(br#"{"alg":"X","typ":"at+jwt"}"#), b64(&[b'a'; 400]));
        let rng = SystemRandom::new();
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let mut rsa_sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut rsa_sig).unwrap();
        let public = rsa.public_key();
        let rsa_jwk = json!({"kty": "RSA", "kid": "r", "alg": "RS256",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero())});
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let ec_sig = ec.sign(&rng, message.as_bytes()).unwrap();
        let point = ec.public_key().as_ref();
        let ec_jwk = json!({"kty": "EC", "kid": "e", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])});
        let ed = Ed25519KeyPair::generate().unwrap();
        let ed_sig = ed.sign(message.as_bytes());
        let ed_jwk = json!({"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())});
        let (keys, _) = parse_jwks(json!({"keys": [rsa_jwk, ec_jwk, ed_jwk]}).as_object().unwrap());
        for (kid, alg, sig) in [
            ("r", Algorithm::RS256, b64(&rsa_sig)),
            ("e", Algorithm::ES256, b64(ec_sig.as_ref())),
            ("d", Algorithm::EdDSA, b64(ed_sig.as_ref())),
        ] {
            let key = &keys[kid].decoding;
            assert!(!jsonwebtoken::crypto::verify(&sig, b"other message", key, alg).unwrap_or(false));
            let n = 2_000u32;
            let started = tokio::time::Instant::now();
            for _ in 0..n {
                assert!(jsonwebtoken::crypto::verify(&sig, message.as_bytes(), key, alg).unwrap());
            }
            println!("{alg:?}: {:.1} us per verification", started.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        }
    }
}
