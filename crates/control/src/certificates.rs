//! What Kong checks in `certificates` and `ca_certificates` beyond their schema (`kong/db/schema/entities/…`):
//! the PEM parses, the key belongs to its certificate, an alternative pair is of another key type; a CA
//! certificate is one certificate, not expired, with the CA basic constraint, unique by its SHA-256 digest. The
//! messages are Kong's; the field is `@entity` where Kong's is an entity check.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use gatehouse_model::gateway::Normalized;
use gatehouse_model::gateway::schema::Violation;
use gatehouse_net::tls::{TlsError, certified_key, parse_certificates};

fn text<'a>(data: &'a Normalized, field: &str) -> Option<&'a str> {
    data.get(field).and_then(Value::as_str)
}

/// A certificate's fields as the TLS listener will load them. The key fields must be in clear.
pub(crate) fn check_certificate(data: &Normalized) -> Result<(), Vec<Violation>> {
    let mut out = Vec::new();
    let mut main = None;
    for (cert_field, key_field, mismatch) in [
        ("cert", "key", "certificate does not match key"),
        ("cert_alt", "key_alt", "alternative certificate does not match key"),
    ] {
        let (Some(cert), Some(key)) = (text(data, cert_field), text(data, key_field)) else { continue };
        match certified_key(cert.as_bytes(), key.as_bytes()) {
            Ok(pair) if cert_field == "cert" => main = Some(pair),
            Ok(alt) => {
                if main.as_ref().is_some_and(|m| m.key.algorithm() == alt.key.algorithm()) {
                    out.push(Violation::new(
                        "@entity",
                        "certificate and alternative certificate need to have different type (e.g. RSA and ECDSA), \
                         the provided certificates were both of the same type",
                    ));
                }
            }
            Err(TlsError::Certificate(e)) => out.push(Violation::new(cert_field, format!("invalid certificate: {e}"))),
            Err(TlsError::Key(e)) => out.push(Violation::new(key_field, format!("invalid key: {e}"))),
            Err(TlsError::Mismatch) => out.push(Violation::new("@entity", mismatch)),
            Err(e) => out.push(Violation::new(cert_field, e.to_string())),
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Checks a CA certificate at `now` (unix seconds) and sets its `cert_digest`.
pub(crate) fn prepare_ca_certificate(data: &mut Normalized, now: i64) -> Result<(), Vec<Violation>> {
    let one = |field: &str, message: String| Err(vec![Violation::new(field, message)]);
    let Some(pem) = text(data, "cert") else { return Ok(()) };
    let chain = match parse_certificates(pem.as_bytes()) {
        Ok(chain) => chain,
        Err(TlsError::Certificate(e)) => return one("cert", format!("invalid certificate: {e}")),
        Err(e) => return one("cert", e.to_string()),
    };
    if chain.len() > 1 {
        return one("@entity", "please submit only one certificate at a time".into());
    }
    let der = chain[0].as_ref();
    let parsed = match x509_parser::parse_x509_certificate(der) {
        Ok((_, parsed)) => parsed,
        Err(_) => return one("cert", "invalid certificate: unreadable X.509 certificate".into()),
    };
    if parsed.validity().not_after.timestamp() < now {
        return one("@entity", "certificate expired, \"Not After\" time is in the past".into());
    }
    if !parsed.is_ca() {
        return one(
            "@entity",
            "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint".into(),
        );
    }
    let digest: String = Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect();
    data.insert("cert_digest".into(), json!(digest));
    Ok(())
}
