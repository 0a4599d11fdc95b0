//! PEM public keys as `jwt_secrets.rsa_public_key` holds them: `-----BEGIN PUBLIC KEY-----` (X.509
//! SubjectPublicKeyInfo) for RSA, EC and Ed25519 keys, or `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1). Read into
//! the form jsonwebtoken's `DecodingKey::from_*_der` takes (PKCS#1 for RSA, the point for EC, the raw key for
//! Ed25519), with the key type from the SPKI's algorithm identifier. Only the structure is read here: the
//! signature check itself proves the key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The key types a JWT credential can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    /// Its point is 65 bytes for P-256, 97 for P-384, 133 for P-521.
    Ec,
    Ed25519,
}

impl PublicKey {
    /// Whether the key verifies `algorithm`'s signatures (Kong's names: `RS256`, `PS384`, `ES256`, `EdDSA`).
    pub fn fits(&self, algorithm: &str) -> bool {
        match self.key_type {
            KeyType::Rsa => algorithm.starts_with("RS") || algorithm.starts_with("PS"),
            KeyType::Ec => matches!((algorithm, self.der.len()), ("ES256", 65) | ("ES384", 97) | ("ES512", 133)),
            KeyType::Ed25519 => algorithm == "EdDSA",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: KeyType,
    /// PKCS#1 `RSAPublicKey` DER, the EC point, or the 32 Ed25519 bytes.
    pub der: Vec<u8>,
}

const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The first PEM block of `pem`, read as a public key; `None` when it is not one.
pub fn parse(pem: &str) -> Option<PublicKey> {
    let begin = pem.find("-----BEGIN ")?;
    let rest = &pem[begin + 11..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let text: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(text).ok()?;
    match label {
        "RSA PUBLIC KEY" => {
            let (tag, _, rest) = element(&der)?;
            (tag == 0x30 && rest.is_empty()).then_some(PublicKey { key_type: KeyType::Rsa, der })
        }
        "PUBLIC KEY" => spki(&der),
        _ => None,
    }
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }`.
fn spki(der: &[u8]) -> Option<PublicKey> {
    let (tag, info, rest) = element(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tag, algorithm, rest) = element(info)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, bits, rest) = element(rest)?;
    if tag != 0x03 || !rest.is_empty() {
        return None;
    }
    // A BIT STRING's first byte counts the unused bits of its last byte: a key has none.
    let (&0, key) = bits.split_first()? else { return None };
    let (tag, oid, _) = element(algorithm)?;
    if tag != 0x06 {
        return None;
    }
    let key_type = match oid {
        RSA_ENCRYPTION => {
            let (tag, _, rest) = element(key)?;
            (tag == 0x30 && rest.is_empty()).then_some(KeyType::Rsa)?
        }
        EC_PUBLIC_KEY => (key.first() == Some(&0x04) && matches!(key.len(), 65 | 97 | 133)).then_some(KeyType::Ec)?,
        ED25519 => (key.len() == 32).then_some(KeyType::Ed25519)?,
        _ => return None,
    };
    Some(PublicKey { key_type, der: key.to_vec() })
}

/// One DER element: its tag, its contents and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RSA key and an Ed25519 key made with `openssl genpkey … | openssl pkey -pubout`.
    const RSA: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnCcqAX2nDtukTUF1RLiZ
lWnSUyCWAZajBbQqShKma4perI1BW7d0mTqDbb6F29s331JlLVooJtslg4g+74vM
LyCY06dxGmaDeLrTLKjMEF4vyOamqC7HonefoM0Oaq4h7XQfM4aySjc9Rvqsce53
hU4sCfxU40UXSEsc9/WZrWjvXj4mMUth/a359bSPqINsWY3HkvrlbasqanvPJRkC
JIn917Cm67qwnibiG6M6UIahG9d4ZC89B6qfEWigdmv//HQk9wx4gCbpGn1KkuL0
0G50B4pLHS6+VRgPf414Y4/LXTBseTYrdLtYnzx65g9eWt/Z5Sdyj29LYc/rDjaH
XQIDAQAB
-----END PUBLIC KEY-----
";
    const ED: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJpQeZcQzKoSaFMo6RJ01WI23StarhsYCl/4e76YdKV4=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn public_keys_are_read_by_type() {
        let rsa = parse(RSA).unwrap();
        assert_eq!(rsa.key_type, KeyType::Rsa);
        assert_eq!(rsa.der[0], 0x30, "PKCS#1 RSAPublicKey");
        let ed = parse(ED).unwrap();
        assert_eq!((ed.key_type, ed.der.len()), (KeyType::Ed25519, 32));
        assert!(rsa.fits("RS256") && rsa.fits("PS512") && !rsa.fits("ES256") && !rsa.fits("EdDSA"));
        assert!(ed.fits("EdDSA") && !ed.fits("RS256"));
        assert!(parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_none());
        assert!(parse("not a key").is_none());
        assert!(parse(&RSA.replace("PUBLIC KEY", "CERTIFICATE")).is_none());
    }
}
