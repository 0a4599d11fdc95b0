//! Consumers as the proxy uses them, and the lookups authentication plugins make (by id, username, custom id).
//! A consumer also carries its `acls` groups and their `X-Consumer-Groups` value, made once per configuration so
//! the `acl` plugin neither allocates nor formats per request. Consumers' API keys (`keyauth_credentials`) are
//! indexed by their keyed hash, the only form the snapshot carries them in; their `jwt_secrets` by `key`.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_model::SecretString;
use gatehouse_model::gateway::snapshot;

#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub id: uuid::Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// Made when the configuration is compiled, so an authenticated request clones them instead of formatting.
    pub headers: ConsumerHeaders,
    /// The consumer's `acls` groups, sorted and distinct (binary-searched by the `acl` plugin).
    pub groups: Box<[String]>,
    /// `X-Consumer-Groups`: the groups joined by `", "`, as Kong joins them; `None` when the joined text cannot be
    /// a header value (a group with a control character), in which case the plugin sends no header.
    pub groups_header: Option<http::HeaderValue>,
}

impl Consumer {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.binary_search_by(|g| g.as_str().cmp(group)).is_ok()
    }
}

/// A consumer's `X-Consumer-Id`, `X-Consumer-Custom-Id` and `X-Consumer-Username` values; `None` for a field the
/// consumer does not have or that cannot be a header value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerHeaders {
    pub id: Option<http::HeaderValue>,
    pub custom_id: Option<http::HeaderValue>,
    pub username: Option<http::HeaderValue>,
}

impl ConsumerHeaders {
    pub(crate) fn of(consumer: &snapshot::Consumer) -> Self {
        let value = |text: Option<&str>| text.and_then(|t| http::HeaderValue::from_str(t).ok());
        Self {
            id: value(Some(&consumer.id.to_string())),
            custom_id: value(consumer.custom_id.as_deref()),
            username: value(consumer.username.as_deref()),
        }
    }
}

/// One API key's owner, found by the key's keyed hash.
#[derive(Debug, Clone)]
pub struct KeyAuthEntry {
    pub consumer: Arc<Consumer>,
    /// The credential's id as a header value (`X-Credential-Identifier`, and the credential rate limiting keys
    /// on): made once, so an authenticated request shares its bytes instead of formatting them.
    pub credential_id: http::HeaderValue,
}

/// One `jwt_secrets` credential, found by its `key`: what verifies a token it names. Public keys are loaded when
/// the configuration is compiled; an HMAC secret is kept as the bytes the credential holds (the plugin's
/// `secret_is_base64` decides per instance how to read it).
#[derive(Debug, Clone)]
pub struct JwtEntry {
    pub consumer: Arc<Consumer>,
    /// The credential's id (what rate limiting by credential counts).
    pub credential_id: http::HeaderValue,
    /// The credential's `key` as `X-Credential-Identifier` (Kong sends the key for jwt); `None` when it cannot be a
    /// header value.
    pub key_header: Option<http::HeaderValue>,
    /// Kong's exact spelling (`HS256`, `EdDSA`), compared with the token's `alg`.
    pub algorithm_name: Box<str>,
    pub algorithm: Option<jsonwebtoken::Algorithm>,
    pub secret: Option<SecretString>,
    /// The loaded `rsa_public_key`; `None` when absent or not loadable for the algorithm (Kong's "Invalid
    /// key/secret").
    pub public_key: Option<jsonwebtoken::DecodingKey>,
}

/// One `basicauth_credentials` credential, found by its username: Kong's hash of its password, as bytes.
#[derive(Debug, Clone)]
pub struct BasicAuthEntry {
    pub consumer: Arc<Consumer>,
    /// The credential's id (what rate limiting by credential counts).
    pub credential_id: http::HeaderValue,
    /// The username as `X-Credential-Identifier` (Kong sends the username for basic-auth).
    pub username_header: Option<http::HeaderValue>,
    /// The salt of Kong's hash: the consumer's id as text.
    consumer_id: String,
    hash: [u8; 20],
}

impl BasicAuthEntry {
    /// Whether `password` hashes, as Kong hashes passwords, to the stored hash (compared in constant time).
    pub fn verifies(&self, password: &str) -> bool {
        let presented = gatehouse_model::gateway::plugins::basic_auth::kong_digest(&self.consumer_id, password);
        aws_lc_rs::constant_time::verify_slices_are_equal(&presented, &self.hash).is_ok()
    }
}

/// Every consumer of a configuration, indexed the ways plugins look them up.
#[derive(Debug, Default)]
pub struct Consumers {
    by_id: HashMap<uuid::Uuid, Arc<Consumer>>,
    by_username: HashMap<String, Arc<Consumer>>,
    by_custom_id: HashMap<String, Arc<Consumer>>,
    by_key_hash: HashMap<[u8; 32], KeyAuthEntry>,
    by_jwt_key: HashMap<String, JwtEntry>,
    by_basic_username: HashMap<String, BasicAuthEntry>,
}

impl Consumers {
    pub fn new(consumers: &[snapshot::Consumer]) -> Self {
        let mut index = Self::default();
        for c in consumers {
            let mut groups = c.groups.clone();
            // The snapshot sorts them; a snapshot from elsewhere might not.
            groups.sort_unstable();
            groups.dedup();
            let consumer = Arc::new(Consumer {
                id: c.id,
                username: c.username.clone(),
                custom_id: c.custom_id.clone(),
                headers: ConsumerHeaders::of(c),
                groups_header: http::HeaderValue::from_str(&groups.join(", ")).ok(),
                groups: groups.into_boxed_slice(),
            });
            if let Some(username) = &consumer.username {
                index.by_username.insert(username.clone(), consumer.clone());
            }
            if let Some(custom_id) = &consumer.custom_id {
                index.by_custom_id.insert(custom_id.clone(), consumer.clone());
            }
            index.by_id.insert(consumer.id, consumer);
        }
        index
    }

    /// Indexes `keys` by their hash; a key whose consumer is not in the configuration, or whose hash is not 32
    /// bytes of hex, is left out (it could never authenticate anyone).
    pub fn with_key_auths(mut self, keys: &[snapshot::KeyAuthCredential]) -> Self {
        for key in keys {
            let (Some(consumer), Some(hash)) = (self.by_id.get(&key.consumer), decode_hash(&key.key_hash)) else {
                tracing::warn!(credential = %key.id, "a keyauth credential without its consumer or hash is ignored");
                continue;
            };
            let credential_id =
                http::HeaderValue::from_str(&key.id.to_string()).unwrap_or_else(|_| http::HeaderValue::from_static(""));
            self.by_key_hash.insert(hash, KeyAuthEntry { consumer: consumer.clone(), credential_id });
        }
        self
    }

    /// Indexes `jwt_secrets` by their `key`, loading public keys; one whose consumer is not in the configuration is
    /// left out.
    pub fn with_jwt_secrets(mut self, secrets: &[snapshot::JwtSecret]) -> Self {
        use jsonwebtoken::{Algorithm, DecodingKey};
        for secret in secrets {
            let Some(consumer) = self.by_id.get(&secret.consumer) else {
                tracing::warn!(credential = %secret.id, "a jwt credential without its consumer is ignored");
                continue;
            };
            let algorithm: Option<Algorithm> = secret.algorithm.parse().ok();
            let public_key = secret.rsa_public_key.as_deref().and_then(|pem| {
                use gatehouse_model::gateway::public_key::{self, KeyType};
                let key = public_key::parse(pem).filter(|k| k.fits(&secret.algorithm));
                if key.is_none() {
                    tracing::warn!(credential = %secret.id, "a jwt public key does not load for its algorithm");
                }
                let key = key?;
                Some(match key.key_type {
                    KeyType::Rsa => DecodingKey::from_rsa_der(&key.der),
                    KeyType::Ec => DecodingKey::from_ec_der(&key.der),
                    KeyType::Ed25519 => DecodingKey::from_ed_der(&key.der),
                })
            });
            let header = |text: &str| http::HeaderValue::from_str(text).ok();
            let entry = JwtEntry {
                consumer: consumer.clone(),
                credential_id: header(&secret.id.to_string()).unwrap_or_else(|| http::HeaderValue::from_static("")),
                key_header: header(&secret.key),
                algorithm_name: secret.algorithm.clone().into_boxed_str(),
                algorithm,
                secret: secret.secret.clone(),
                public_key,
            };
            self.by_jwt_key.insert(secret.key.clone(), entry);
        }
        self
    }

    /// Indexes `basicauth_credentials` by username; one whose consumer is not in the configuration, or whose hash
    /// is not Kong's 40 hex digits, is left out (it could never authenticate anyone).
    pub fn with_basic_auths(mut self, credentials: &[snapshot::BasicAuthCredential]) -> Self {
        for credential in credentials {
            let hash = decode_hex::<20>(credential.password.expose());
            let (Some(consumer), Some(hash)) = (self.by_id.get(&credential.consumer), hash) else {
                tracing::warn!(credential = %credential.id, "a basic-auth credential without its consumer or hash is ignored");
                continue;
            };
            let entry = BasicAuthEntry {
                consumer: consumer.clone(),
                credential_id: http::HeaderValue::from_str(&credential.id.to_string())
                    .unwrap_or_else(|_| http::HeaderValue::from_static("")),
                username_header: http::HeaderValue::from_str(&credential.username).ok(),
                consumer_id: credential.consumer.to_string(),
                hash,
            };
            self.by_basic_username.insert(credential.username.clone(), entry);
        }
        self
    }

    /// The `basicauth_credentials` credential whose username is `username`.
    pub fn by_basic_username(&self, username: &str) -> Option<&BasicAuthEntry> {
        self.by_basic_username.get(username)
    }

    /// The `jwt_secrets` credential whose `key` is `key`.
    pub fn by_jwt_key(&self, key: &str) -> Option<&JwtEntry> {
        self.by_jwt_key.get(key)
    }

    /// The key whose keyed hash is `hash`.
    pub fn by_key_hash(&self, hash: &[u8]) -> Option<&KeyAuthEntry> {
        let hash: &[u8; 32] = hash.try_into().ok()?;
        self.by_key_hash.get(hash)
    }

    pub fn by_id(&self, id: &uuid::Uuid) -> Option<&Arc<Consumer>> {
        self.by_id.get(id)
    }

    pub fn by_username(&self, username: &str) -> Option<&Arc<Consumer>> {
        self.by_username.get(username)
    }

    /// A username in any case (`openid-connect`'s `by_username_ignore_case`): a scan, made only once the exact
    /// lookup failed.
    pub fn by_username_ignore_case(&self, username: &str) -> Option<&Arc<Consumer>> {
        self.by_username.iter().find(|(name, _)| name.eq_ignore_ascii_case(username)).map(|(_, c)| c)
    }

    pub fn by_custom_id(&self, custom_id: &str) -> Option<&Arc<Consumer>> {
        self.by_custom_id.get(custom_id)
    }

    /// Kong's anonymous lookup: by id, else by username.
    pub fn by_id_or_username(&self, key: &str) -> Option<&Arc<Consumer>> {
        key.parse::<uuid::Uuid>().ok().and_then(|id| self.by_id.get(&id)).or_else(|| self.by_username(key))
    }
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    decode_hex::<32>(hex)
}

fn decode_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_sorted_searchable_and_joined_once() {
        let consumers = Consumers::new(&[snapshot::Consumer {
            id: uuid::Uuid::from_u128(1),
            username: Some("alice".into()),
            custom_id: None,
            groups: vec!["users".into(), "admins".into(), "users".into()],
        }]);
        let alice = consumers.by_username("alice").unwrap();
        assert_eq!(&*alice.groups, ["admins", "users"]);
        assert!(alice.in_group("users") && alice.in_group("admins") && !alice.in_group("user"));
        assert_eq!(alice.groups_header.as_ref().unwrap(), "admins, users");
        let none = Consumers::new(&[snapshot::Consumer {
            id: uuid::Uuid::from_u128(2),
            username: Some("bob".into()),
            custom_id: None,
            groups: Vec::new(),
        }]);
        let bob = none.by_username("bob").unwrap();
        assert!(bob.groups.is_empty() && !bob.in_group(""));
        assert_eq!(bob.groups_header.as_ref().unwrap(), "", "Kong sends an empty header for no groups");
    }

    #[test]
    fn keys_are_found_by_their_hash_only_for_known_consumers() {
        let consumers = Consumers::new(&[snapshot::Consumer {
            id: uuid::Uuid::from_u128(1),
            username: Some("alice".into()),
            custom_id: None,
            groups: Vec::new(),
        }])
        .with_key_auths(&[
            snapshot::KeyAuthCredential {
                id: uuid::Uuid::from_u128(10),
                consumer: uuid::Uuid::from_u128(1),
                key_hash: "ab".repeat(32),
            },
            // Its consumer is not in the configuration.
            snapshot::KeyAuthCredential {
                id: uuid::Uuid::from_u128(11),
                consumer: uuid::Uuid::from_u128(2),
                key_hash: "cd".repeat(32),
            },
            // Not a 32-byte hash.
            snapshot::KeyAuthCredential {
                id: uuid::Uuid::from_u128(12),
                consumer: uuid::Uuid::from_u128(1),
                key_hash: "zz".repeat(32),
            },
        ]);
        let found = consumers.by_key_hash(&[0xab; 32]).unwrap();
        assert_eq!(found.consumer.username.as_deref(), Some("alice"));
        assert_eq!(found.credential_id, uuid::Uuid::from_u128(10).to_string().as_str());
        assert!(consumers.by_key_hash(&[0xcd; 32]).is_none());
        assert!(consumers.by_key_hash(&[0xab; 31]).is_none(), "a tag of another length finds nothing");
        assert_eq!(consumers.by_key_hash.len(), 1);
    }
}
