//! `jwt_secrets`' public keys: Kong refuses an `rsa_public_key` OpenSSL cannot load ("invalid key"). Here the key
//! must also be of the kind its `algorithm` verifies with (RSA for RS*/PS*, EC on the algorithm's curve for ES*,
//! Ed25519 for EdDSA), the kind the proxy loads it as, so a key that could never verify a token is refused when it
//! is written rather than failing every request.

use serde_json::Value;

use gatehouse_model::gateway::Normalized;
use gatehouse_model::gateway::public_key;
use gatehouse_model::gateway::schema::Violation;

pub(crate) fn check_public_key(data: &Normalized) -> Result<(), Vec<Violation>> {
    let Some(pem) = data.get("rsa_public_key").and_then(Value::as_str) else { return Ok(()) };
    let algorithm = data.get("algorithm").and_then(Value::as_str).unwrap_or("HS256");
    // An HMAC credential never uses it, and Kong does not check it then.
    if algorithm.starts_with("HS") {
        return Ok(());
    }
    match public_key::parse(pem) {
        Some(key) if key.fits(algorithm) => Ok(()),
        _ => Err(vec![Violation::new("rsa_public_key", "invalid key")]),
    }
}
