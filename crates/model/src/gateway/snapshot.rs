//! The configuration a gateway runs, typed: what the control plane publishes and what a data plane will receive
//! over the network and keep on disk.
//!
//! Entities become snapshot types only through [`ConfigSnapshot::from_entities`], from entities that
//! [`super::validate_entity`] produced: every field the schema defaults is present by then, so the conversion
//! requires it rather than defaulting it again, and the schema stays the one place a default is written. A field
//! missing here means an entity was stored without validation, which is reported, not papered over.
//!
//! The serialised form (serde, JSON) is the stable one; [`ConfigSnapshot::FORMAT`] numbers it. The content hash
//! covers everything but the version, so two nodes holding the same entities agree on it whatever order the
//! store listed them in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::entities::{EntityKind, Normalized};
use crate::SecretString;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: uuid::Uuid,
    pub name: Option<String>,
    pub protocol: String,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
    pub retries: u32,
    pub connect_timeout: u64,
    pub write_timeout: u64,
    pub read_timeout: u64,
    /// `None`: the node's default (verify).
    pub tls_verify: Option<bool>,
    /// The longest chain of intermediate certificates accepted between the upstream's certificate and a trusted
    /// one; `None`: no limit beyond the verifier's. The TLS fields are left out of the serialised form when unset,
    /// so a snapshot without them hashes as it did before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify_depth: Option<u8>,
    /// `ca_certificates` ids: when set, the only roots an upstream certificate may chain to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates: Vec<uuid::Uuid>,
    /// A `certificates` id presented to the upstream (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<uuid::Uuid>,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub id: uuid::Uuid,
    pub name: Option<String>,
    pub service: Option<uuid::Uuid>,
    pub protocols: Vec<String>,
    pub methods: Vec<String>,
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    /// Header name → the values any one of which matches.
    pub headers: BTreeMap<String, Vec<String>>,
    pub https_redirect_status_code: u16,
    pub regex_priority: i64,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub request_buffering: bool,
    pub response_buffering: bool,
    /// Server names the route is for over TLS (exact, `*.example.com` or `example.*`); ignored over plain HTTP,
    /// as Kong ignores them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snis: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub id: uuid::Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// The consumer's `acls` groups, sorted (one per group: Kong's cache key is consumer and group). Left out when
    /// empty, so a snapshot without acls serialises, and hashes, as it did before acls existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// One API key of a consumer, as the proxy needs it: the HMAC (with the node's key-auth key, derived from the
/// master key) of the key, hex-encoded. The control plane hashes; the proxy hashes what a request presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAuthCredential {
    pub id: uuid::Uuid,
    pub consumer: uuid::Uuid,
    pub key_hash: String,
}

/// One `jwt_secrets` credential, as the `jwt` plugin needs it: found by `key` (what a token's `iss` names), with
/// the HMAC secret in clear (sealed in the store; `Debug` redacts it) or the PEM public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSecret {
    pub id: uuid::Uuid,
    pub consumer: uuid::Uuid,
    pub key: String,
    pub algorithm: String,
    #[serde(serialize_with = "expose_opt")]
    pub secret: Option<SecretString>,
    pub rsa_public_key: Option<String>,
}

/// One `basicauth_credentials` credential: its username and Kong's hash of its password (`sha1(password ..
/// consumer_id)`, hex), never the password. Sealed in the store; `Debug` redacts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuthCredential {
    pub id: uuid::Uuid,
    pub consumer: uuid::Uuid,
    pub username: String,
    #[serde(serialize_with = "expose")]
    pub password: SecretString,
}

/// A certificate the proxy's TLS listener serves, with its SNIs. The keys are in clear here, as plugins'
/// secrets are: the snapshot is what a data plane runs on; they are sealed in the store, and `Debug` redacts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCertificate {
    pub id: uuid::Uuid,
    pub cert: String,
    #[serde(serialize_with = "expose")]
    pub key: SecretString,
    pub cert_alt: Option<String>,
    #[serde(serialize_with = "expose_opt")]
    pub key_alt: Option<SecretString>,
    /// The names of its `snis`, sorted.
    pub snis: Vec<String>,
}

/// A trusted CA certificate (`ca_certificates`), PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaCertificate {
    pub id: uuid::Uuid,
    pub cert: String,
}

fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

fn expose_opt<S: serde::Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_some(secret.expose()),
        None => s.serialize_none(),
    }
}

/// An upstream with its targets (those of weight 0 included: they are listed by the health endpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    pub id: uuid::Uuid,
    pub name: String,
    pub algorithm: String,
    pub hash_on: String,
    pub hash_fallback: String,
    pub hash_on_header: Option<String>,
    pub hash_fallback_header: Option<String>,
    pub hash_on_cookie: Option<String>,
    pub hash_on_cookie_path: String,
    pub hash_on_query_arg: Option<String>,
    pub hash_fallback_query_arg: Option<String>,
    pub hash_on_uri_capture: Option<String>,
    pub hash_fallback_uri_capture: Option<String>,
    pub slots: u32,
    pub host_header: Option<String>,
    pub healthchecks: super::upstreams::Healthchecks,
    pub targets: Vec<Target>,
}

/// One `host:port` of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub id: uuid::Uuid,
    pub target: String,
    pub weight: u32,
}

/// One configured plugin. `config` is the validated configuration (every field present, secrets in clear); each
/// plugin reads it into its own typed config when the gateway compiles the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInstance {
    pub id: uuid::Uuid,
    pub name: String,
    pub instance_name: Option<String>,
    pub enabled: bool,
    pub route: Option<uuid::Uuid>,
    pub service: Option<uuid::Uuid>,
    pub consumer: Option<uuid::Uuid>,
    pub protocols: Vec<String>,
    pub config: Map<String, Value>,
}

impl PluginInstance {
    /// Whether the instance applies to HTTP traffic (the proxy's only kind today).
    pub fn serves_http(&self) -> bool {
        self.protocols.iter().any(|p| matches!(p.as_str(), "http" | "https"))
    }
}

/// Every entity of one control plane. Equality is over what the snapshot says, not when it was announced: see the
/// `PartialEq` impl.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    /// The serialised form's version ([`Self::FORMAT`]).
    pub format: u32,
    pub control_plane_id: Option<uuid::Uuid>,
    /// Increases with every published change (per node); not part of the content hash.
    pub version: u64,
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub consumers: Vec<Consumer>,
    pub plugins: Vec<PluginInstance>,
    /// Consumers' `keyauth_credentials` as keyed hashes of their keys (the snapshot never carries a key). Left
    /// out when empty, so a snapshot without them serialises, and hashes, as it did before they existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_auths: Vec<KeyAuthCredential>,
    /// Consumers' `jwt_secrets`; left out when empty, like `key_auths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_secrets: Vec<JwtSecret>,
    /// Consumers' `basicauth_credentials` (password hashes); left out when empty, like `key_auths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basic_auths: Vec<BasicAuthCredential>,
    /// `certificates` with their `snis`, and `ca_certificates`; left out when empty, like `key_auths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<TlsCertificate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates: Vec<CaCertificate>,
    /// `upstreams` with their `targets`; left out when empty, like `key_auths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    /// When the first change this configuration publishes was announced (`None` for the first configuration and
    /// one read back from a file): the proxy reports how long the change took to serve. Not part of the content.
    #[serde(skip)]
    pub changed_at: Option<std::time::Instant>,
}

/// Every field but `changed_at`, a timing stamp the publisher sets (two publishes of one configuration differ in
/// it and nothing else). The destructuring names every field, so a field added later must be placed on one side
/// or the other here before the crate compiles.
impl PartialEq for ConfigSnapshot {
    fn eq(&self, other: &Self) -> bool {
        let Self {
            format,
            control_plane_id,
            version,
            services,
            routes,
            consumers,
            plugins,
            key_auths,
            jwt_secrets,
            basic_auths,
            certificates,
            ca_certificates,
            upstreams,
            changed_at: _,
        } = self;
        *format == other.format
            && *control_plane_id == other.control_plane_id
            && *version == other.version
            && *services == other.services
            && *routes == other.routes
            && *consumers == other.consumers
            && *plugins == other.plugins
            && *key_auths == other.key_auths
            && *jwt_secrets == other.jwt_secrets
            && *basic_auths == other.basic_auths
            && *certificates == other.certificates
            && *ca_certificates == other.ca_certificates
            && *upstreams == other.upstreams
    }
}

/// An entity that did not have the shape validation gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {id}: field '{field}' {problem}")]
pub struct SnapshotError {
    pub kind: &'static str,
    pub id: String,
    pub field: String,
    pub problem: &'static str,
}

impl ConfigSnapshot {
    pub const FORMAT: u32 = 1;

    pub fn empty(control_plane_id: Option<uuid::Uuid>, version: u64) -> Self {
        Self { format: Self::FORMAT, control_plane_id, version, ..Self::default() }
    }

    /// Adds a validated entity. An acl or a keyauth credential joins its consumer, so its consumer must have been
    /// added first.
    pub fn add(&mut self, kind: EntityKind, entity: &Normalized) -> Result<(), SnapshotError> {
        let e = Reader::new(kind, entity);
        match kind {
            EntityKind::Service => self.services.push(Service {
                id: e.id()?,
                name: e.opt_string("name")?,
                protocol: e.string("protocol")?,
                host: e.string("host")?,
                port: e.int("port")?,
                path: e.opt_string("path")?,
                retries: e.int("retries")?,
                connect_timeout: e.int("connect_timeout")?,
                write_timeout: e.int("write_timeout")?,
                read_timeout: e.int("read_timeout")?,
                tls_verify: e.opt_bool("tls_verify")?,
                tls_verify_depth: e.opt_int("tls_verify_depth")?,
                ca_certificates: e.uuids("ca_certificates")?,
                client_certificate: e.foreign("client_certificate")?,
                enabled: e.bool("enabled")?,
            }),
            EntityKind::Route => self.routes.push(Route {
                id: e.id()?,
                name: e.opt_string("name")?,
                service: e.foreign("service")?,
                protocols: e.strings("protocols")?,
                methods: e.strings("methods")?,
                hosts: e.strings("hosts")?,
                paths: e.strings("paths")?,
                headers: e.header_map("headers")?,
                https_redirect_status_code: e.int("https_redirect_status_code")?,
                regex_priority: e.int("regex_priority")?,
                strip_path: e.bool("strip_path")?,
                preserve_host: e.bool("preserve_host")?,
                request_buffering: e.bool("request_buffering")?,
                response_buffering: e.bool("response_buffering")?,
                snis: e.strings("snis")?,
            }),
            EntityKind::Consumer => self.consumers.push(Consumer {
                id: e.id()?,
                username: e.opt_string("username")?,
                custom_id: e.opt_string("custom_id")?,
                groups: Vec::new(),
            }),
            EntityKind::Acl => {
                let consumer = e.foreign("consumer")?.ok_or_else(|| e.fail("consumer", "is missing"))?;
                let group = e.string("group")?;
                let owner = self
                    .consumers
                    .iter_mut()
                    .find(|c| c.id == consumer)
                    .ok_or_else(|| e.fail("consumer", "names a consumer not added before it"))?;
                owner.groups.push(group);
            }
            // The publisher puts the key's hash in `key_hash` in place of the sealed key.
            EntityKind::KeyAuth => {
                let consumer = self.joined_consumer(&e)?;
                self.key_auths.push(KeyAuthCredential { id: e.id()?, consumer, key_hash: e.string("key_hash")? });
            }
            EntityKind::Jwt => {
                let consumer = self.joined_consumer(&e)?;
                self.jwt_secrets.push(JwtSecret {
                    id: e.id()?,
                    consumer,
                    key: e.string("key")?,
                    algorithm: e.string("algorithm")?,
                    secret: e.opt_string("secret")?.map(SecretString::new),
                    rsa_public_key: e.opt_string("rsa_public_key")?,
                });
            }
            EntityKind::BasicAuth => {
                let consumer = self.joined_consumer(&e)?;
                self.basic_auths.push(BasicAuthCredential {
                    id: e.id()?,
                    consumer,
                    username: e.string("username")?,
                    password: SecretString::new(e.string("password")?),
                });
            }
            EntityKind::Certificate => self.certificates.push(TlsCertificate {
                id: e.id()?,
                cert: e.string("cert")?,
                key: SecretString::new(e.string("key")?),
                cert_alt: e.opt_string("cert_alt")?,
                key_alt: e.opt_string("key_alt")?.map(SecretString::new),
                snis: Vec::new(),
            }),
            EntityKind::Sni => {
                let certificate = e.foreign("certificate")?.ok_or_else(|| e.fail("certificate", "is missing"))?;
                let name = e.string("name")?;
                let owner = self
                    .certificates
                    .iter_mut()
                    .find(|c| c.id == certificate)
                    .ok_or_else(|| e.fail("certificate", "names a certificate not added before it"))?;
                owner.snis.push(name);
            }
            EntityKind::CaCertificate => {
                self.ca_certificates.push(CaCertificate { id: e.id()?, cert: e.string("cert")? })
            }
            EntityKind::Upstream => {
                let healthchecks = serde_json::from_value(Value::Object(e.object("healthchecks")?))
                    .map_err(|_| e.fail("healthchecks", "does not have the schema's shape"))?;
                self.upstreams.push(Upstream {
                    id: e.id()?,
                    name: e.string("name")?,
                    algorithm: e.string("algorithm")?,
                    hash_on: e.string("hash_on")?,
                    hash_fallback: e.string("hash_fallback")?,
                    hash_on_header: e.opt_string("hash_on_header")?,
                    hash_fallback_header: e.opt_string("hash_fallback_header")?,
                    hash_on_cookie: e.opt_string("hash_on_cookie")?,
                    hash_on_cookie_path: e.string("hash_on_cookie_path")?,
                    hash_on_query_arg: e.opt_string("hash_on_query_arg")?,
                    hash_fallback_query_arg: e.opt_string("hash_fallback_query_arg")?,
                    hash_on_uri_capture: e.opt_string("hash_on_uri_capture")?,
                    hash_fallback_uri_capture: e.opt_string("hash_fallback_uri_capture")?,
                    slots: e.int("slots")?,
                    host_header: e.opt_string("host_header")?,
                    healthchecks,
                    targets: Vec::new(),
                })
            }
            EntityKind::Target => {
                let upstream = e.foreign("upstream")?.ok_or_else(|| e.fail("upstream", "is missing"))?;
                let target = Target { id: e.id()?, target: e.string("target")?, weight: e.int("weight")? };
                let owner = self
                    .upstreams
                    .iter_mut()
                    .find(|u| u.id == upstream)
                    .ok_or_else(|| e.fail("upstream", "names an upstream not added before it"))?;
                owner.targets.push(target);
            }
            EntityKind::Plugin => self.plugins.push(PluginInstance {
                id: e.id()?,
                name: e.string("name")?,
                instance_name: e.opt_string("instance_name")?,
                enabled: e.bool("enabled")?,
                route: e.foreign("route")?,
                service: e.foreign("service")?,
                consumer: e.foreign("consumer")?,
                protocols: e.strings("protocols")?,
                config: e.object("config")?,
            }),
        }
        Ok(())
    }

    /// The consumer a credential names, which must have been added before it.
    fn joined_consumer(&self, e: &Reader<'_>) -> Result<uuid::Uuid, SnapshotError> {
        let consumer = e.foreign("consumer")?.ok_or_else(|| e.fail("consumer", "is missing"))?;
        if !self.consumers.iter().any(|c| c.id == consumer) {
            return Err(e.fail("consumer", "names a consumer not added before it"));
        }
        Ok(consumer)
    }

    /// A snapshot of `entities`, ordered by id so that equal contents serialise (and hash) equally.
    pub fn from_entities<'a>(
        control_plane_id: Option<uuid::Uuid>,
        version: u64,
        entities: impl IntoIterator<Item = (EntityKind, &'a Normalized)>,
    ) -> Result<Self, SnapshotError> {
        let mut snapshot = Self::empty(control_plane_id, version);
        let mut acls = Vec::new();
        for (kind, entity) in entities {
            if kind.joins_another() {
                acls.push((kind, entity));
            } else {
                snapshot.add(kind, entity)?;
            }
        }
        for (kind, entity) in acls {
            snapshot.add(kind, entity)?;
        }
        snapshot.sort();
        Ok(snapshot)
    }

    /// Orders every list by id, and each consumer's groups by name (what [`Self::from_entities`] does once all
    /// are added).
    pub fn sort(&mut self) {
        self.services.sort_by_key(|e| e.id);
        self.routes.sort_by_key(|e| e.id);
        self.consumers.sort_by_key(|e| e.id);
        for consumer in &mut self.consumers {
            consumer.groups.sort_unstable();
            consumer.groups.dedup();
        }
        self.key_auths.sort_by_key(|k| k.id);
        self.jwt_secrets.sort_by_key(|k| k.id);
        self.basic_auths.sort_by_key(|k| k.id);
        self.certificates.sort_by_key(|c| c.id);
        for certificate in &mut self.certificates {
            certificate.snis.sort_unstable();
        }
        self.ca_certificates.sort_by_key(|c| c.id);
        self.upstreams.sort_by_key(|u| u.id);
        for upstream in &mut self.upstreams {
            upstream.targets.sort_by_key(|t| t.id);
        }
        self.plugins.sort_by_key(|e| e.id);
    }

    /// The content hash: 32 hex digits (128 bits of SHA-256, the length of Kong's `config_hash`) over the
    /// serialised snapshot without its version. Object keys serialise sorted (serde_json's map is ordered), so
    /// the hash depends only on the contents.
    pub fn hash(&self) -> String {
        let unversioned = Unversioned::from(self);
        // Serialising plain data (strings, numbers, maps with string keys) cannot fail.
        let bytes = serde_json::to_vec(&unversioned).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The serialised form of a snapshot with version 0, borrowed: what [`ConfigSnapshot::hash`] digests, without
/// cloning every entity to zero one number (20,000 plugins' configs at size). The fields and their attributes are
/// `ConfigSnapshot`'s, in its order (a test holds the two forms equal).
#[derive(Serialize)]
struct Unversioned<'a> {
    format: u32,
    control_plane_id: Option<uuid::Uuid>,
    version: u64,
    services: &'a [Service],
    routes: &'a [Route],
    consumers: &'a [Consumer],
    plugins: &'a [PluginInstance],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    key_auths: &'a [KeyAuthCredential],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    jwt_secrets: &'a [JwtSecret],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    basic_auths: &'a [BasicAuthCredential],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    certificates: &'a [TlsCertificate],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ca_certificates: &'a [CaCertificate],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    upstreams: &'a [Upstream],
}

impl<'a> From<&'a ConfigSnapshot> for Unversioned<'a> {
    fn from(s: &'a ConfigSnapshot) -> Self {
        // Destructured so that a field added to the snapshot must be placed here too.
        let ConfigSnapshot {
            format,
            control_plane_id,
            version: _,
            services,
            routes,
            consumers,
            plugins,
            key_auths,
            jwt_secrets,
            basic_auths,
            certificates,
            ca_certificates,
            upstreams,
            changed_at: _,
        } = s;
        Self {
            format: *format,
            control_plane_id: *control_plane_id,
            version: 0,
            services,
            routes,
            consumers,
            plugins,
            key_auths,
            jwt_secrets,
            basic_auths,
            certificates,
            ca_certificates,
            upstreams,
        }
    }
}

/// Reads one validated entity's fields, requiring what validation always sets.
struct Reader<'a> {
    kind: EntityKind,
    entity: &'a Normalized,
}

impl<'a> Reader<'a> {
    fn new(kind: EntityKind, entity: &'a Normalized) -> Self {
        Self { kind, entity }
    }

    fn fail(&self, field: &str, problem: &'static str) -> SnapshotError {
        let id = self.entity.get("id").and_then(Value::as_str).unwrap_or("(no id)").to_owned();
        SnapshotError { kind: self.kind.singular(), id, field: field.to_owned(), problem }
    }

    fn value(&self, field: &str) -> Option<&'a Value> {
        self.entity.get(field).filter(|v| !v.is_null())
    }

    fn id(&self) -> Result<uuid::Uuid, SnapshotError> {
        let text = self.string("id")?;
        text.parse().map_err(|_| self.fail("id", "is not a UUID"))
    }

    fn string(&self, field: &str) -> Result<String, SnapshotError> {
        self.opt_string(field)?.ok_or_else(|| self.fail(field, "is missing"))
    }

    fn opt_string(&self, field: &str) -> Result<Option<String>, SnapshotError> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.fail(field, "is not a string")),
        }
    }

    fn bool(&self, field: &str) -> Result<bool, SnapshotError> {
        self.opt_bool(field)?.ok_or_else(|| self.fail(field, "is missing"))
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, SnapshotError> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.fail(field, "is not a boolean")),
        }
    }

    fn int<T: TryFrom<i64> + TryFrom<u64>>(&self, field: &str) -> Result<T, SnapshotError> {
        let value = self.value(field).ok_or_else(|| self.fail(field, "is missing"))?;
        let converted = match (value.as_u64(), value.as_i64()) {
            (Some(u), _) => T::try_from(u).ok(),
            (None, Some(i)) => T::try_from(i).ok(),
            _ => None,
        };
        converted.ok_or_else(|| self.fail(field, "is not an integer in range"))
    }

    fn opt_int<T: TryFrom<i64> + TryFrom<u64>>(&self, field: &str) -> Result<Option<T>, SnapshotError> {
        match self.value(field) {
            None => Ok(None),
            Some(_) => self.int(field).map(Some),
        }
    }

    /// A list of UUIDs; unset (null) is empty.
    fn uuids(&self, field: &str) -> Result<Vec<uuid::Uuid>, SnapshotError> {
        self.strings(field)?.iter().map(|s| s.parse().map_err(|_| self.fail(field, "holds a non-UUID"))).collect()
    }

    /// A list of strings; unset (null) is empty.
    fn strings(&self, field: &str) -> Result<Vec<String>, SnapshotError> {
        match self.value(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| self.fail(field, "holds a non-string")))
                .collect(),
            Some(_) => Err(self.fail(field, "is not a list")),
        }
    }

    /// A foreign key, `{"id": "…"}`; unset (null) is `None`.
    fn foreign(&self, field: &str) -> Result<Option<uuid::Uuid>, SnapshotError> {
        match self.value(field) {
            None => Ok(None),
            Some(v) => v
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| self.fail(field, "is not a reference {\"id\": UUID}")),
        }
    }

    fn object(&self, field: &str) -> Result<Map<String, Value>, SnapshotError> {
        match self.value(field) {
            Some(Value::Object(map)) => Ok(map.clone()),
            Some(_) => Err(self.fail(field, "is not an object")),
            None => Err(self.fail(field, "is missing")),
        }
    }

    fn header_map(&self, field: &str) -> Result<BTreeMap<String, Vec<String>>, SnapshotError> {
        let Some(value) = self.value(field) else { return Ok(BTreeMap::new()) };
        let map = value.as_object().ok_or_else(|| self.fail(field, "is not an object"))?;
        map.iter()
            .map(|(name, values)| {
                let values = values
                    .as_array()
                    .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| self.fail(field, "has a value that is not a list of strings"))?;
                Ok((name.clone(), values))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::validate_entity;
    use serde_json::json;

    fn valid(kind: EntityKind, body: Value) -> Normalized {
        let mut entity = validate_entity(kind, body.as_object().unwrap()).unwrap();
        if entity.get("id").is_none_or(Value::is_null) {
            entity.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
        entity
    }

    #[test]
    fn validated_entities_convert_with_the_schemas_defaults() {
        let service = valid(EntityKind::Service, json!({"name": "s", "url": "http://upstream.test/base"}));
        let route = valid(EntityKind::Route, json!({"paths": ["/p"], "service": {"id": service["id"]}}));
        let consumer = valid(EntityKind::Consumer, json!({"username": "alice"}));
        let plugin = valid(EntityKind::Plugin, json!({"name": "request-termination", "config": {}}));
        let snapshot = ConfigSnapshot::from_entities(
            None,
            7,
            [
                (EntityKind::Service, &service),
                (EntityKind::Route, &route),
                (EntityKind::Consumer, &consumer),
                (EntityKind::Plugin, &plugin),
            ],
        )
        .unwrap();
        let s = &snapshot.services[0];
        assert_eq!((s.host.as_str(), s.port, s.path.as_deref(), s.retries), ("upstream.test", 80, Some("/base"), 5));
        let r = &snapshot.routes[0];
        assert!(r.strip_path && !r.preserve_host && r.request_buffering);
        assert_eq!(r.https_redirect_status_code, 426);
        assert_eq!(r.service.map(|id| id.to_string()), service["id"].as_str().map(str::to_owned));
        assert_eq!(r.protocols, ["http", "https"]);
        assert_eq!(snapshot.consumers[0].username.as_deref(), Some("alice"));
        let p = &snapshot.plugins[0];
        assert!(p.enabled && p.serves_http() && p.route.is_none());
        assert_eq!(p.config["status_code"], 503);
    }

    #[test]
    fn an_entity_that_skipped_validation_is_reported_not_defaulted() {
        let route = json!({"id": uuid::Uuid::new_v4().to_string(), "paths": ["/p"]});
        let error =
            ConfigSnapshot::from_entities(None, 1, [(EntityKind::Route, route.as_object().unwrap())]).unwrap_err();
        assert_eq!(error.kind, "route");
        assert_eq!(error.problem, "is missing");
    }

    #[test]
    fn the_hash_follows_contents_not_order_or_version() {
        let a = valid(EntityKind::Consumer, json!({"username": "a"}));
        let b = valid(EntityKind::Consumer, json!({"username": "b"}));
        let one =
            ConfigSnapshot::from_entities(None, 1, [(EntityKind::Consumer, &a), (EntityKind::Consumer, &b)]).unwrap();
        let two =
            ConfigSnapshot::from_entities(None, 9, [(EntityKind::Consumer, &b), (EntityKind::Consumer, &a)]).unwrap();
        assert_eq!(one.hash(), two.hash());
        assert_eq!(one.hash().len(), 32);
        let fewer = ConfigSnapshot::from_entities(None, 1, [(EntityKind::Consumer, &a)]).unwrap();
        assert_ne!(one.hash(), fewer.hash());
    }

    /// The hash digests the borrowed form; it must serialise exactly as the snapshot with version 0 does, with
    /// every optional list both empty and filled.
    #[test]
    fn the_hashed_form_is_the_snapshot_with_version_zero() {
        let service = valid(EntityKind::Service, json!({"url": "http://upstream.test/"}));
        let plugin = valid(EntityKind::Plugin, json!({"name": "request-termination", "config": {}}));
        let consumer = valid(EntityKind::Consumer, json!({"username": "alice"}));
        let upstream = valid(EntityKind::Upstream, json!({"name": "u.test"}));
        let mut snapshot = ConfigSnapshot::from_entities(
            Some(uuid::Uuid::from_u128(5)),
            9,
            [(EntityKind::Service, &service), (EntityKind::Plugin, &plugin)],
        )
        .unwrap();
        let plain = |s: &ConfigSnapshot| serde_json::to_vec(&ConfigSnapshot { version: 0, ..s.clone() }).unwrap();
        assert_eq!(serde_json::to_vec(&Unversioned::from(&snapshot)).unwrap(), plain(&snapshot));
        for (kind, entity) in [(EntityKind::Consumer, &consumer), (EntityKind::Upstream, &upstream)] {
            snapshot.add(kind, entity).unwrap();
        }
        snapshot.ca_certificates.push(CaCertificate { id: uuid::Uuid::from_u128(7), cert: "pem".into() });
        snapshot.certificates.push(TlsCertificate {
            id: uuid::Uuid::from_u128(8),
            cert: "pem".into(),
            key: SecretString::new("key".into()),
            cert_alt: None,
            key_alt: None,
            snis: vec!["a.test".into()],
        });
        snapshot.key_auths.push(KeyAuthCredential {
            id: uuid::Uuid::from_u128(6),
            consumer: snapshot.consumers[0].id,
            key_hash: "ab".into(),
        });
        assert!(!snapshot.upstreams.is_empty() && !snapshot.key_auths.is_empty());
        assert_eq!(serde_json::to_vec(&Unversioned::from(&snapshot)).unwrap(), plain(&snapshot));
    }

    #[test]
    fn consumers_carry_their_acl_groups_sorted_whatever_the_order_of_entities() {
        let alice = valid(EntityKind::Consumer, json!({"username": "alice"}));
        let bob = valid(EntityKind::Consumer, json!({"username": "bob"}));
        let acl = |consumer: &Normalized, group: &str| {
            valid(EntityKind::Acl, json!({"consumer": {"id": consumer["id"]}, "group": group}))
        };
        let (a1, a2, b1) = (acl(&alice, "zeta"), acl(&alice, "admins"), acl(&bob, "users"));
        // The store lists `acls` before `consumers`.
        let snapshot = ConfigSnapshot::from_entities(
            None,
            1,
            [
                (EntityKind::Acl, &a1),
                (EntityKind::Acl, &b1),
                (EntityKind::Consumer, &alice),
                (EntityKind::Acl, &a2),
                (EntityKind::Consumer, &bob),
            ],
        )
        .unwrap();
        let groups = |name: &str| {
            snapshot.consumers.iter().find(|c| c.username.as_deref() == Some(name)).unwrap().groups.clone()
        };
        assert_eq!(groups("alice"), ["admins", "zeta"]);
        assert_eq!(groups("bob"), ["users"]);

        let without = ConfigSnapshot::from_entities(None, 1, [(EntityKind::Consumer, &alice)]).unwrap();
        assert!(!serde_json::to_string(&without).unwrap().contains("groups"), "absent when empty");
        let fewer = ConfigSnapshot::from_entities(
            None,
            1,
            [(EntityKind::Consumer, &alice), (EntityKind::Consumer, &bob), (EntityKind::Acl, &b1)],
        )
        .unwrap();
        assert_ne!(snapshot.hash(), fewer.hash(), "groups are part of the content");
        let back: ConfigSnapshot = serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap();
        assert_eq!(back, snapshot);

        let orphan = acl(&valid(EntityKind::Consumer, json!({"username": "gone"})), "x");
        let error = ConfigSnapshot::from_entities(None, 1, [(EntityKind::Acl, &orphan)]).unwrap_err();
        assert_eq!((error.kind, error.field.as_str()), ("acl", "consumer"));
    }

    #[test]
    fn keyauth_credentials_join_as_hashes_after_their_consumer() {
        let alice = valid(EntityKind::Consumer, json!({"username": "alice"}));
        // What the publisher hands over: the stored hash in place of the sealed key.
        let key = |consumer: &Normalized, hash: &str| {
            let mut k = valid(EntityKind::KeyAuth, json!({"consumer": {"id": consumer["id"]}, "key": "sealed"}));
            k.remove("key");
            k.insert("key_hash".into(), json!(hash));
            k
        };
        let (k1, k2) = (key(&alice, "aa"), key(&alice, "bb"));
        let snapshot = ConfigSnapshot::from_entities(
            None,
            1,
            [(EntityKind::KeyAuth, &k1), (EntityKind::Consumer, &alice), (EntityKind::KeyAuth, &k2)],
        )
        .unwrap();
        let mut hashes: Vec<&str> = snapshot.key_auths.iter().map(|k| k.key_hash.as_str()).collect();
        hashes.sort_unstable();
        assert_eq!(hashes, ["aa", "bb"]);
        assert!(snapshot.key_auths.iter().all(|k| k.consumer.to_string() == alice["id"]));
        assert!(snapshot.key_auths.windows(2).all(|w| w[0].id < w[1].id), "ordered by id");
        let text = serde_json::to_string(&snapshot).unwrap();
        assert!(!text.contains("sealed"), "no key in the snapshot");
        let back: ConfigSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, snapshot);
        let without = ConfigSnapshot::from_entities(None, 1, [(EntityKind::Consumer, &alice)]).unwrap();
        assert!(!serde_json::to_string(&without).unwrap().contains("key_auths"), "absent when empty");
        assert_ne!(without.hash(), snapshot.hash());

        let orphan = key(&valid(EntityKind::Consumer, json!({"username": "gone"})), "cc");
        let error = ConfigSnapshot::from_entities(None, 1, [(EntityKind::KeyAuth, &orphan)]).unwrap_err();
        assert_eq!((error.kind, error.field.as_str()), ("keyauth_credential", "consumer"));
        let unhashed = valid(EntityKind::KeyAuth, json!({"consumer": {"id": alice["id"]}, "key": "k"}));
        let error =
            ConfigSnapshot::from_entities(None, 1, [(EntityKind::Consumer, &alice), (EntityKind::KeyAuth, &unhashed)])
                .unwrap_err();
        assert_eq!(error.field, "key_hash", "a key the publisher did not hash is refused, not served");
    }

    #[test]
    fn the_serialised_form_round_trips() {
        let service = valid(EntityKind::Service, json!({"url": "https://upstream.test:8443"}));
        let snapshot = ConfigSnapshot::from_entities(None, 3, [(EntityKind::Service, &service)]).unwrap();
        let text = serde_json::to_string(&snapshot).unwrap();
        let back: ConfigSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(back.hash(), snapshot.hash());
        assert_eq!(back.format, ConfigSnapshot::FORMAT);
    }

    #[test]
    // Any instant will do: the test is that its value does not count (`model` has no tokio clock).
    #[allow(clippy::disallowed_methods)]
    fn equality_ignores_when_a_change_was_announced() {
        let service = valid(EntityKind::Service, json!({"url": "https://upstream.test:8443"}));
        let snapshot = ConfigSnapshot::from_entities(None, 3, [(EntityKind::Service, &service)]).unwrap();
        let announced = ConfigSnapshot { changed_at: Some(std::time::Instant::now()), ..snapshot.clone() };
        assert_eq!(announced, snapshot, "the stamp is not content");
        let mut renamed = announced.clone();
        renamed.services[0].name = Some("other".into());
        assert_ne!(renamed, announced, "content still counts");
        assert_ne!(ConfigSnapshot { version: 4, ..snapshot.clone() }, snapshot, "so does the version");
    }
}
