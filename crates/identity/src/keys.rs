//! Signing key pairs: generated per auth server in its algorithm, stored with the private half sealed by the
//! master key and the public half as a JWK.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use gatehouse_model::body::Choice;
use gatehouse_model::identity::{SigningAlgorithm, SigningKey};
use gatehouse_model::{AuthServerId, SigningKeyId, Timestamp};
use gatehouse_runtime::master_key::DerivedKeys;

#[derive(Debug, thiserror::Error)]
#[error("key generation failed")]
pub struct KeyGenError;

/// What the master key's seal is bound to for a signing key: the sealed bytes only open for this key id.
pub fn seal_context(id: SigningKeyId) -> String {
    format!("signing-key:{id}")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Generates a key pair. RSA generation takes tens of milliseconds, so callers on the runtime use
/// [`generate_blocking`].
pub fn generate(
    algorithm: SigningAlgorithm,
    auth_server_id: AuthServerId,
    keys: &DerivedKeys,
    now: Timestamp,
) -> Result<SigningKey, KeyGenError> {
    let id = SigningKeyId::new();
    let (pkcs8, mut jwk): (Vec<u8>, Value) = if algorithm.is_rsa() {
        let pair = rsa::KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyGenError)?;
        let der = pair.as_der().map_err(|_| KeyGenError)?;
        let public = pair.public_key();
        let jwk = json!({
            "kty": "RSA",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        });
        (der.as_ref().to_vec(), jwk)
    } else if algorithm == SigningAlgorithm::ES256 {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| KeyGenError)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).map_err(|_| KeyGenError)?;
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return Err(KeyGenError);
        }
        (doc.as_ref().to_vec(), json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}))
    } else {
        // PKCS#8 v1: what aws-lc-rs and jsonwebtoken both read for Ed25519.
        let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).map_err(|_| KeyGenError)?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| KeyGenError)?;
        (doc.as_ref().to_vec(), json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}))
    };
    jwk["kid"] = Value::String(id.to_string());
    jwk["use"] = Value::String("sig".to_owned());
    jwk["alg"] = Value::String(algorithm.as_str().to_owned());
    let sealed = keys.seal(&seal_context(id), &pkcs8);
    Ok(SigningKey {
        id,
        auth_server_id,
        algorithm,
        encrypted_private_key: sealed,
        public_jwk: jwk,
        created_at: now,
        retired_at: None,
    })
}

pub async fn generate_blocking(
    algorithm: SigningAlgorithm,
    auth_server_id: AuthServerId,
    keys: std::sync::Arc<DerivedKeys>,
    now: Timestamp,
) -> Result<SigningKey, KeyGenError> {
    tokio::task::spawn_blocking(move || generate(algorithm, auth_server_id, &keys, now))
        .await
        .map_err(|_| KeyGenError)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_runtime::master_key::MasterKey;

    #[test]
    fn every_algorithm_yields_a_sealed_key_and_a_jwk() {
        let keys = MasterKey::generate().derive();
        for alg in SigningAlgorithm::ALL {
            let k = generate(*alg, AuthServerId::new(), &keys, Timestamp::from_secs(1)).unwrap();
            assert_eq!(k.public_jwk["alg"], alg.as_str());
            assert_eq!(k.public_jwk["kid"], k.id.to_string());
            let pkcs8 = keys.open(&seal_context(k.id), &k.encrypted_private_key).unwrap();
            let reloads = match alg {
                a if a.is_rsa() => rsa::KeyPair::from_pkcs8(&pkcs8).is_ok(),
                SigningAlgorithm::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).is_ok(),
                _ => Ed25519KeyPair::from_pkcs8(&pkcs8).is_ok(),
            };
            assert!(reloads, "{alg:?}");
            assert!(!format!("{k:?}").contains(&format!("{:?}", k.encrypted_private_key)));
        }
    }

    #[test]
    fn rsa_keys_are_2048_bits() {
        let keys = MasterKey::generate().derive();
        let k = generate(SigningAlgorithm::RS256, AuthServerId::new(), &keys, Timestamp::from_secs(1)).unwrap();
        let n = URL_SAFE_NO_PAD.decode(k.public_jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        assert_eq!(k.public_jwk["e"], "AQAB");
    }
}
