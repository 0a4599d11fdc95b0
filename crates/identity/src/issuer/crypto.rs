//! Signing access tokens with cached key pairs, and verifying them.
//!
//! Signing is hand-written JWS over aws-lc-rs keys parsed once per snapshot (jsonwebtoken re-parses the private
//! key on every call, 2.5× slower for RS256). Verification goes through jsonwebtoken with the algorithm pinned to
//! the key named by `kid`; `exp` and `nbf` are checked here against the injectable clock.
//!
//! An ECDSA signature (r, s) has a twin, (r, n − s), that verifies just as well, so one ES256 token would have two
//! spellings (a denylist or cache keyed by the token string could be sidestepped with the other). Tokens are signed
//! with the low S and only the low S is accepted.

use std::collections::HashMap;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa;
use aws_lc_rs::signature::RsaEncoding;
use aws_lc_rs::signature::{self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};

use gatehouse_model::identity::{SigningAlgorithm, SigningKey};
use gatehouse_model::{SigningKeyId, Timestamp};
use gatehouse_runtime::master_key::DerivedKeys;

use crate::keys::seal_context;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {0} cannot be opened with this master key")]
    Sealed(SigningKeyId),
    #[error("signing key {0} is not a valid {1:?} key")]
    Invalid(SigningKeyId, SigningAlgorithm),
    #[error("the signature could not be computed")]
    Sign,
}

enum PrivateKey {
    Rsa(rsa::KeyPair, &'static dyn RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// The current key of an auth server, ready to sign.
pub struct Signer {
    pub kid: SigningKeyId,
    pub algorithm: SigningAlgorithm,
    /// `base64url(header) + "."`, computed once.
    header_prefix: String,
    key: PrivateKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

fn rsa_encoding(alg: SigningAlgorithm) -> &'static dyn RsaEncoding {
    match alg {
        SigningAlgorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        SigningAlgorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        SigningAlgorithm::PS256 => &signature::RSA_PSS_SHA256,
        SigningAlgorithm::PS384 => &signature::RSA_PSS_SHA384,
        SigningAlgorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}

pub fn jwt_algorithm(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::RS256 => Algorithm::RS256,
        SigningAlgorithm::RS384 => Algorithm::RS384,
        SigningAlgorithm::RS512 => Algorithm::RS512,
        SigningAlgorithm::PS256 => Algorithm::PS256,
        SigningAlgorithm::PS384 => Algorithm::PS384,
        SigningAlgorithm::PS512 => Algorithm::PS512,
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

impl Signer {
    pub fn open(key: &SigningKey, keys: &DerivedKeys) -> Result<Self, KeyError> {
        use gatehouse_model::body::Choice;
        let pkcs8 =
            keys.open(&seal_context(key.id), &key.encrypted_private_key).map_err(|_| KeyError::Sealed(key.id))?;
        let invalid = || KeyError::Invalid(key.id, key.algorithm);
        let private = match key.algorithm {
            a if a.is_rsa() => {
                PrivateKey::Rsa(rsa::KeyPair::from_pkcs8(&pkcs8).map_err(|_| invalid())?, rsa_encoding(a))
            }
            SigningAlgorithm::ES256 => PrivateKey::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).map_err(|_| invalid())?,
            ),
            _ => PrivateKey::Ed25519(Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| invalid())?),
        };
        // RFC 9068 §2.1: access tokens say so in `typ`, so they cannot be confused with ID tokens.
        let header = json!({"alg": key.algorithm.as_str(), "kid": key.id.to_string(), "typ": "at+jwt"});
        let header_prefix = format!("{}.", URL_SAFE_NO_PAD.encode(header.to_string()));
        Ok(Self { kid: key.id, algorithm: key.algorithm, header_prefix, key: private, rng: SystemRandom::new() })
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
        let mut token = String::with_capacity(self.header_prefix.len() + payload.len() * 4 / 3 + 400);
        token.push_str(&self.header_prefix);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = match &self.key {
            PrivateKey::Rsa(pair, encoding) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(*encoding, &self.rng, token.as_bytes(), &mut sig).map_err(|_| KeyError::Sign)?;
                sig
            }
            PrivateKey::Ecdsa(pair) => {
                let signature = pair.sign(&self.rng, token.as_bytes()).map_err(|_| KeyError::Sign)?;
                let parsed = p256::ecdsa::Signature::from_slice(signature.as_ref()).map_err(|_| KeyError::Sign)?;
                parsed.normalize_s().to_bytes().to_vec()
            }
            PrivateKey::Ed25519(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// A public key that verifies tokens of one auth server.
pub struct Verifier {
    pub algorithm: SigningAlgorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn from_jwk(algorithm: SigningAlgorithm, jwk: &Value) -> Option<Self> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        let key = match jwk.get("kty").and_then(Value::as_str)? {
            "RSA" => DecodingKey::from_rsa_components(field("n")?, field("e")?).ok()?,
            "EC" => DecodingKey::from_ec_components(field("x")?, field("y")?).ok()?,
            "OKP" => DecodingKey::from_ed_components(field("x")?).ok()?,
            _ => return None,
        };
        Some(Self { algorithm, key })
    }
}

/// Why a token was not accepted. Callers answer `{"active": false}` (or 401) whatever the reason; the reason is
/// for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Malformed,
    UnknownKey,
    WrongAlgorithm,
    WrongType,
    BadSignatureOrClaims,
    /// An ES256 signature in its high-S form: the twin of a valid token, never one Gatehouse signed.
    HighS,
    Expired,
    NotYetValid,
}

/// Verifies signature, algorithm (pinned to the key), `typ`, `iss`, `aud`, `exp` and `nbf` (with leeway) and
/// returns the claims.
pub fn verify(
    token: &str,
    verifiers: &HashMap<String, Verifier>,
    issuer: &str,
    audience: &str,
    now: Timestamp,
) -> Result<Map<String, Value>, Rejected> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Malformed)?;
    let kid = header.kid.as_deref().ok_or(Rejected::UnknownKey)?;
    let verifier = verifiers.get(kid).ok_or(Rejected::UnknownKey)?;
    if header.alg != jwt_algorithm(verifier.algorithm) {
        return Err(Rejected::WrongAlgorithm);
    }
    if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("at+jwt")) {
        return Err(Rejected::WrongType);
    }
    if verifier.algorithm == SigningAlgorithm::ES256 && !has_low_s(token) {
        return Err(Rejected::HighS);
    }
    let mut validation = Validation::new(jwt_algorithm(verifier.algorithm));
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &verifier.key, &validation)
        .map_err(|_| Rejected::BadSignatureOrClaims)?;
    let claims = data.claims;
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let now = now.secs();
    if number("exp").is_none_or(|exp| now >= exp + LEEWAY_SECS) {
        return Err(Rejected::Expired);
    }
    if number("nbf").is_none_or(|nbf| now + LEEWAY_SECS < nbf) {
        return Err(Rejected::NotYetValid);
    }
    Ok(claims)
}

/// Whether a compact JWS carries a P-256 signature whose S is at most n/2. Anything unparsable is left for the
/// signature check to refuse.
fn has_low_s(token: &str) -> bool {
    let Some((_, encoded)) = token.rsplit_once('.') else { return true };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(encoded) else { return true };
    p256::ecdsa::Signature::from_slice(&bytes).map_or(true, |s| s.normalize_s() == s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_model::AuthServerId;
    use gatehouse_model::body::Choice;
    use gatehouse_runtime::master_key::MasterKey;

    fn claims(now: i64) -> Map<String, Value> {
        json!({"iss": "https://i", "aud": ["api"], "sub": "c", "iat": now, "nbf": now, "exp": now + 60})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        let keys = MasterKey::generate().derive();
        let now = Timestamp::from_secs(1_800_000_000);
        for alg in SigningAlgorithm::ALL {
            let key = crate::keys::generate(*alg, AuthServerId::new(), &keys, now).unwrap();
            let signer = Signer::open(&key, &keys).unwrap();
            let token = signer.sign(&claims(now.secs())).unwrap();
            let verifiers = HashMap::from([(key.id.to_string(), Verifier::from_jwk(*alg, &key.public_jwk).unwrap())]);
            let ok = verify(&token, &verifiers, "https://i", "api", now).unwrap();
            assert_eq!(ok["sub"], "c", "{alg:?}");
            assert_eq!(verify(&token, &verifiers, "https://other", "api", now), Err(Rejected::BadSignatureOrClaims));
            assert_eq!(verify(&token, &verifiers, "https://i", "other", now), Err(Rejected::BadSignatureOrClaims));
            assert_eq!(verify(&token, &verifiers, "https://i", "api", now.plus_secs(90)), Err(Rejected::Expired));
            assert!(verify(&token, &verifiers, "https://i", "api", now.plus_secs(89)).is_ok(), "30 s leeway");
            assert_eq!(verify(&token, &verifiers, "https://i", "api", now.plus_secs(-31)), Err(Rejected::NotYetValid));
            let parts: Vec<&str> = token.split('.').collect();
            let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(b"{\"sub\":\"admin\"}"), parts[2]);
            assert!(verify(&forged, &verifiers, "https://i", "api", now).is_err());
            assert_eq!(verify("not.a.jwt", &verifiers, "https://i", "api", now), Err(Rejected::Malformed));
        }
    }

    /// The same token with its signature's S replaced by n − S: still a valid ECDSA signature of the same bytes.
    fn malleated(token: &str) -> String {
        let (signed, encoded) = token.rsplit_once('.').unwrap();
        let signature = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        let twin = p256::ecdsa::Signature::from_scalars(signature.r(), -signature.s()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(twin.to_bytes()))
    }

    #[test]
    fn es256_tokens_have_one_form_only() {
        let keys = MasterKey::generate().derive();
        let now = Timestamp::from_secs(1_800_000_000);
        let key = crate::keys::generate(SigningAlgorithm::ES256, AuthServerId::new(), &keys, now).unwrap();
        let signer = Signer::open(&key, &keys).unwrap();
        let verifiers = HashMap::from([(
            key.id.to_string(),
            Verifier::from_jwk(SigningAlgorithm::ES256, &key.public_jwk).unwrap(),
        )]);
        // Unnormalised, half of all signatures would have a high S: 64 in a row low is no accident.
        for _ in 0..64 {
            let token = signer.sign(&claims(now.secs())).unwrap();
            assert!(has_low_s(&token));
            assert!(verify(&token, &verifiers, "https://i", "api", now).is_ok());
            let twin = malleated(&token);
            assert_ne!(twin, token);
            assert_eq!(verify(&twin, &verifiers, "https://i", "api", now), Err(Rejected::HighS));
        }
    }

    #[test]
    fn algorithm_and_type_are_pinned() {
        let keys = MasterKey::generate().derive();
        let now = Timestamp::from_secs(1_800_000_000);
        let key = crate::keys::generate(SigningAlgorithm::ES256, AuthServerId::new(), &keys, now).unwrap();
        let verifiers = HashMap::from([(
            key.id.to_string(),
            Verifier::from_jwk(SigningAlgorithm::ES256, &key.public_jwk).unwrap(),
        )]);
        // A token claiming HS256 with the same kid (the classic key-confusion attack) is refused before any check.
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": key.id.to_string(), "typ": "at+jwt"}).to_string());
        let body = URL_SAFE_NO_PAD.encode(Value::Object(claims(now.secs())).to_string());
        let confused = format!("{header}.{body}.c2ln");
        assert_eq!(verify(&confused, &verifiers, "https://i", "api", now), Err(Rejected::WrongAlgorithm));
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": key.id.to_string(), "typ": "JWT"}).to_string());
        assert_eq!(
            verify(&format!("{header}.{body}.c2ln"), &verifiers, "https://i", "api", now),
            Err(Rejected::WrongType)
        );
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "other", "typ": "at+jwt"}).to_string());
        assert_eq!(
            verify(&format!("{header}.{body}.c2ln"), &verifiers, "https://i", "api", now),
            Err(Rejected::UnknownKey)
        );
    }
}
