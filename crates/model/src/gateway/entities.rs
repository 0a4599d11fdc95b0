//! Services, routes, consumers, plugins and `acls` (the `acl` plugin's credentials): their schemas and Kong's
//! entity-level rules.

use serde_json::{Map, Value, json};

use super::plugins;
use super::schema::{Field, Kind, Violation, describe_fields, normalize};

pub const PROTOCOLS: &[&str] = &["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"];
const MAX_TIMEOUT: i64 = 2_147_483_646;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Service,
    Route,
    Consumer,
    Plugin,
    /// A consumer's membership of an `acl` group (Kong's `acls` entity, declared by the `acl` plugin).
    Acl,
    /// A consumer's API key (Kong's `keyauth_credentials`, declared by the `key-auth` plugin; `/key-auths`).
    KeyAuth,
    /// A consumer's JWT signing secret or public key (Kong's `jwt_secrets`, declared by the `jwt` plugin; `/jwts`).
    Jwt,
    /// A consumer's username and password (Kong's `basicauth_credentials`, declared by the `basic-auth` plugin;
    /// `/basic-auths`); the password is kept in Kong's hashed form.
    BasicAuth,
    /// A certificate and its private key (and optionally a second pair of another key type) the proxy's TLS
    /// listener serves for its SNIs.
    Certificate,
    /// A server name a certificate is served for (exact, or a wildcard `*.example.com` / `example.*`).
    Sni,
    /// A trusted CA certificate (`ca_certificates`), for services' `ca_certificates` and plugins to name.
    CaCertificate,
    /// A virtual host name services can name, balanced over its targets (`upstreams`).
    Upstream,
    /// One `host:port` an upstream balances over, with its weight (`targets`).
    Target,
}

impl EntityKind {
    pub const ALL: [EntityKind; 13] = [
        EntityKind::Service,
        EntityKind::Route,
        EntityKind::Consumer,
        EntityKind::Plugin,
        EntityKind::Acl,
        EntityKind::KeyAuth,
        EntityKind::Jwt,
        EntityKind::BasicAuth,
        EntityKind::Certificate,
        EntityKind::Sni,
        EntityKind::CaCertificate,
        EntityKind::Upstream,
        EntityKind::Target,
    ];

    /// The collection name in URLs and in Kong's schema endpoints.
    pub fn collection(self) -> &'static str {
        match self {
            EntityKind::Service => "services",
            EntityKind::Route => "routes",
            EntityKind::Consumer => "consumers",
            EntityKind::Plugin => "plugins",
            EntityKind::Acl => "acls",
            EntityKind::KeyAuth => "key-auths",
            EntityKind::Jwt => "jwts",
            EntityKind::BasicAuth => "basic-auths",
            EntityKind::Certificate => "certificates",
            EntityKind::Sni => "snis",
            EntityKind::CaCertificate => "ca_certificates",
            EntityKind::Upstream => "upstreams",
            EntityKind::Target => "targets",
        }
    }

    /// The singular name decK prints (`creating service example-service`).
    pub fn singular(self) -> &'static str {
        match self {
            EntityKind::Service => "service",
            EntityKind::Route => "route",
            EntityKind::Consumer => "consumer",
            EntityKind::Plugin => "plugin",
            EntityKind::Acl => "acl",
            EntityKind::KeyAuth => "keyauth_credential",
            EntityKind::Jwt => "jwt_secret",
            EntityKind::BasicAuth => "basicauth_credential",
            EntityKind::Certificate => "certificate",
            EntityKind::Sni => "sni",
            EntityKind::CaCertificate => "ca_certificate",
            EntityKind::Upstream => "upstream",
            EntityKind::Target => "target",
        }
    }

    pub fn from_collection(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.collection() == s)
    }

    /// The field besides `id` that an entity can be addressed by in URLs (`/services/{id or name}`). An acl's
    /// `group` is unique per consumer only, so it addresses an acl under its consumer
    /// (`/consumers/{consumer}/acls/{group}`) and is never stored as a unique endpoint key.
    pub fn endpoint_key(self) -> &'static str {
        match self {
            EntityKind::Service | EntityKind::Route | EntityKind::Sni | EntityKind::Upstream => "name",
            // Unique per upstream only, like an acl's group (`/upstreams/{u}/targets/{host:port}`).
            EntityKind::Target => "target",
            // Addressed by id only; `id` is never stored as an endpoint key (`StoredEntity::from_data`).
            EntityKind::Certificate | EntityKind::CaCertificate => "id",
            EntityKind::Consumer | EntityKind::BasicAuth => "username",
            EntityKind::Plugin => "instance_name",
            EntityKind::Acl => "group",
            EntityKind::KeyAuth | EntityKind::Jwt => "key",
        }
    }

    /// The collection's name under a consumer where Kong names it otherwise (`/consumers/{c}/key-auth`).
    pub fn nested_collection(self) -> &'static str {
        match self {
            EntityKind::KeyAuth => "key-auth",
            EntityKind::Jwt => "jwt",
            EntityKind::BasicAuth => "basic-auth",
            other => other.collection(),
        }
    }

    /// Whether the snapshot adds the entity to another one (an acl or key to its consumer, an SNI to its
    /// certificate), which must be added first.
    pub fn joins_another(self) -> bool {
        matches!(
            self,
            EntityKind::Acl
                | EntityKind::KeyAuth
                | EntityKind::Jwt
                | EntityKind::BasicAuth
                | EntityKind::Sni
                | EntityKind::Target
        )
    }

    /// Whether the entity has Kong's `updated_at` (acls and credentials have `created_at` only).
    pub fn has_updated_at(self) -> bool {
        !matches!(self, EntityKind::Acl | EntityKind::KeyAuth | EntityKind::Jwt | EntityKind::BasicAuth)
    }

    pub fn fields(self) -> Vec<Field> {
        match self {
            EntityKind::Service => service_fields(),
            EntityKind::Route => route_fields(),
            EntityKind::Consumer => consumer_fields(),
            EntityKind::Plugin => plugin_fields(None),
            EntityKind::Acl => acl_fields(),
            EntityKind::KeyAuth => keyauth_fields(),
            EntityKind::Jwt => jwt_secret_fields(),
            EntityKind::BasicAuth => basicauth_fields(),
            EntityKind::Certificate => certificate_fields(),
            EntityKind::Sni => sni_fields(),
            EntityKind::CaCertificate => ca_certificate_fields(),
            EntityKind::Upstream => super::upstreams::upstream_fields(base_fields(), tags()),
            EntityKind::Target => super::upstreams::target_fields(base_fields(), tags()),
        }
    }

    /// `GET /schemas/{collection}`.
    pub fn schema_document(self) -> Value {
        json!({ "fields": describe_fields(&self.fields()) })
    }
}

fn base_fields() -> Vec<Field> {
    vec![
        Field::string("id").auto().check(check_uuid),
        Field::integer("created_at").auto(),
        Field::integer("updated_at").auto(),
    ]
}

fn tags() -> Field {
    Field::set("tags", Field::string("tag").check(check_tag))
}

fn service_fields() -> Vec<Field> {
    let mut f = base_fields();
    f.extend([
        Field::string("name").unique().check(check_name),
        Field::integer("retries").default(json!(5)).between(0, 32767),
        Field::string("protocol").required().default(json!("http")).one_of(PROTOCOLS),
        Field::string("host").required().check(check_host),
        Field::integer("port").required().default(json!(80)).between(0, 65535),
        Field::string("path").check(check_service_path),
        Field::integer("connect_timeout").default(json!(60000)).between(1, MAX_TIMEOUT),
        Field::integer("write_timeout").default(json!(60000)).between(1, MAX_TIMEOUT),
        Field::integer("read_timeout").default(json!(60000)).between(1, MAX_TIMEOUT),
        tags(),
        Field::foreign("client_certificate", "certificates"),
        Field::boolean("tls_verify"),
        Field::integer("tls_verify_depth").between(0, 64),
        Field::array("ca_certificates", Field::string("ca_certificate").check(check_uuid)),
        Field::boolean("enabled").required().default(json!(true)),
        // Kong Enterprise and Konnect.
        Field::record(
            "tls_sans",
            vec![Field::array("dnsnames", Field::string("dnsname")), Field::array("uris", Field::string("uri"))],
        )
        .input_only(),
    ]);
    f
}

fn route_fields() -> Vec<Field> {
    let mut f = base_fields();
    f.extend([
        Field::string("name").unique().check(check_name),
        Field::set("protocols", Field::string("protocol").one_of(PROTOCOLS))
            .required()
            .default(json!(["http", "https"])),
        Field::set("methods", Field::string("method").check(check_method)),
        Field::array("hosts", Field::string("host").check(check_route_host)),
        Field::array("paths", Field::string("path").check(check_route_path)),
        Field::map(
            "headers",
            Field::string("name").check(check_header_name),
            Field::array("values", Field::string("value")),
        ),
        Field::integer("https_redirect_status_code").required().default(json!(426)).check(check_redirect_code),
        Field::integer("regex_priority").default(json!(0)),
        Field::boolean("strip_path").required().default(json!(true)),
        // The proxy builds upstream paths the `v0` way only (Kong deprecated `v1`).
        Field::string("path_handling").default(json!("v0")).one_of(&["v0", "v1"]).unsupported(),
        Field::boolean("preserve_host").required().default(json!(false)),
        Field::boolean("request_buffering").required().default(json!(true)),
        // Responses always stream, so both values are honoured as far as a client can tell.
        Field::boolean("response_buffering").required().default(json!(true)),
        Field::set("snis", Field::string("sni").check(check_wildcard_host)),
        // No stream listener: sources and destinations could never match.
        Field::set(
            "sources",
            Field::record("source", vec![Field::string("ip"), Field::integer("port").between(0, 65535)]),
        )
        .unsupported(),
        Field::set(
            "destinations",
            Field::record("destination", vec![Field::string("ip"), Field::integer("port").between(0, 65535)]),
        )
        .unsupported(),
        tags(),
        Field::foreign("service", "services"),
        // The `expressions` router flavor's fields; Gatehouse routes as `traditional_compatible`.
        Field::string("expression").input_only(),
        Field::integer("priority").default(json!(0)).between(0, (1 << 46) - 1).input_only(),
    ]);
    f
}

fn consumer_fields() -> Vec<Field> {
    let mut f = base_fields();
    f.extend([Field::string("username").unique(), Field::string("custom_id").unique(), tags()]);
    f
}

/// Kong's `acls` (`kong/plugins/acl/daos.lua`): no `updated_at`; unique per consumer and group (its cache key).
fn acl_fields() -> Vec<Field> {
    vec![
        Field::string("id").auto().check(check_uuid),
        Field::integer("created_at").auto(),
        Field::foreign("consumer", "consumers").required(),
        Field::string("group").required(),
        tags(),
    ]
}

/// Kong's `keyauth_credentials` (`kong/plugins/key-auth/daos.lua`): `key` is unique and made by the control plane
/// when absent. Kong's `ttl` is not supported (docs/compatibility.md).
fn keyauth_fields() -> Vec<Field> {
    vec![
        Field::string("id").auto().check(check_uuid),
        Field::integer("created_at").auto(),
        Field::foreign("consumer", "consumers").required(),
        Field::string("key").unique(),
        tags(),
    ]
}

/// The algorithms Kong's `jwt_secrets.algorithm` accepts (`kong/plugins/jwt/daos.lua`).
pub const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA",
];

/// The algorithms for which Kong requires `rsa_public_key` (its `conditional` entity check; ES* are not in it).
pub const JWT_PUBLIC_KEY_REQUIRED: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"];

/// Kong's `jwt_secrets` (`kong/plugins/jwt/daos.lua`): `key` is unique (what a token's `iss` claim names) and made
/// by the control plane when absent, as is `secret` (sealed at rest); `rsa_public_key` is a PEM public key, checked
/// by the control plane against the algorithm's key type.
fn jwt_secret_fields() -> Vec<Field> {
    vec![
        Field::string("id").auto().check(check_uuid),
        Field::integer("created_at").auto(),
        Field::foreign("consumer", "consumers").required(),
        Field::string("key").unique(),
        Field::string("secret"),
        Field::string("rsa_public_key"),
        Field::string("algorithm").default(json!("HS256")).one_of(JWT_ALGORITHMS),
        tags(),
    ]
}

/// Kong's `basicauth_credentials` (`kong/plugins/basic-auth/daos.lua`): `username` is unique; `password` is
/// stored in Kong's hashed form (the control plane hashes it, `plugins::basic_auth::kong_hash`) and sealed.
fn basicauth_fields() -> Vec<Field> {
    vec![
        Field::string("id").auto().check(check_uuid),
        Field::integer("created_at").auto(),
        Field::foreign("consumer", "consumers").required(),
        Field::string("username").required().unique(),
        Field::string("password").required(),
        tags(),
    ]
}

/// Kong's `certificates` (`kong/db/schema/entities/certificates.lua`). `key` and `key_alt` are sealed at rest;
/// `snis` is Kong's transient list: written as `snis` entities, read back from them. Whether a PEM parses and a
/// key matches its certificate needs a crypto library, which the control plane checks after these fields.
fn certificate_fields() -> Vec<Field> {
    let mut f = base_fields();
    f.extend([
        Field::string("cert").required().check(check_pem),
        Field::string("key").required().check(check_pem),
        Field::string("cert_alt").check(check_pem),
        Field::string("key_alt").check(check_pem),
        tags(),
        Field::array("snis", Field::string("sni").check(check_wildcard_host)),
    ]);
    f
}

/// Kong's `snis`: a unique server name, possibly a wildcard, and the certificate served for it.
fn sni_fields() -> Vec<Field> {
    let mut f = base_fields();
    f.extend([
        Field::string("name").required().unique().check(check_wildcard_host),
        tags(),
        Field::foreign("certificate", "certificates").required(),
    ]);
    f
}

/// Kong's `ca_certificates`: one CA certificate, unique by its SHA-256 digest (`cert_digest`, computed by the
/// control plane).
fn ca_certificate_fields() -> Vec<Field> {
    let mut f = base_fields();
    f.extend([Field::string("cert").required().check(check_pem), Field::string("cert_digest").unique(), tags()]);
    f
}

fn check_pem(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if s.contains("-----BEGIN ") => Ok(()),
        _ => Err("invalid PEM: no PEM block found".into()),
    }
}

/// Kong's `wildcard_host`: a host name, with at most one `*` as its whole first or last label; no port, no IP.
pub fn check_wildcard_host(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    // Kong's default SNI: served for a name nothing else matches.
    if s == "*" {
        return Ok(());
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Err("invalid wildcard: must not be an IP".into());
    }
    if s.rsplit_once(':').is_some_and(|(_, port)| port.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("invalid value: {s}"));
    }
    let stars = s.matches('*').count();
    if stars > 1 {
        return Err("invalid wildcard: only one wildcard must be specified".into());
    }
    if stars == 1 && !(s.starts_with("*.") || s.ends_with(".*")) {
        return Err("invalid wildcard: wildcard must be leftmost or rightmost character".into());
    }
    let bare = s.trim_start_matches("*.").trim_end_matches(".*");
    if is_hostname(bare) { Ok(()) } else { Err(format!("invalid value: {s}")) }
}

/// Plugin fields; with `config`, the named plugin's config record.
pub fn plugin_fields(config: Option<Vec<Field>>) -> Vec<Field> {
    let mut f = base_fields();
    f.extend([
        Field::string("name").required(),
        Field::string("instance_name").unique().check(check_name),
        Field::foreign("route", "routes"),
        Field::foreign("service", "services"),
        Field::foreign("consumer", "consumers"),
        match config {
            Some(fields) => Field::record("config", fields).required(),
            None => Field::new("config", Kind::Record(Vec::new())).required(),
        },
        Field::set("protocols", Field::string("protocol").one_of(PROTOCOLS))
            .required()
            .default(json!(["grpc", "grpcs", "http", "https"])),
        Field::boolean("enabled").required().default(json!(true)),
        tags(),
        // Plugins run in their fixed priority order.
        Field::record(
            "ordering",
            vec![
                Field::map("before", Field::string("phase"), Field::array("plugins", Field::string("plugin"))),
                Field::map("after", Field::string("phase"), Field::array("plugins", Field::string("plugin"))),
            ],
        )
        .unsupported(),
        // Kong Enterprise and Konnect.
        Field::foreign("consumer_group", "consumer_groups").input_only(),
        Field::array(
            "partials",
            Field::record("partial", vec![Field::string("id"), Field::string("name"), Field::string("path")]),
        )
        .input_only(),
        Field::string("condition").input_only(),
    ]);
    f
}

/// `GET /schemas/plugins/{name}`: the plugin entity with the named plugin's config, Gatehouse-only config fields
/// left out.
pub fn plugin_schema_document(name: &str) -> Option<Value> {
    let config = plugins::config_fields(name)?;
    let visible: Vec<Field> = config.into_iter().filter(|f| !f.gatehouse_only).collect();
    Some(json!({ "fields": describe_fields(&plugin_fields(Some(visible))) }))
}

/// A validated entity: every field present with Kong's defaults, `null` where unset.
pub type Normalized = Map<String, Value>;

/// An entity as stored: its data plus the keys storage enforces and indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntity {
    pub kind: EntityKind,
    pub id: uuid::Uuid,
    /// `name`, `username` or `instance_name`: the other way to address it in URLs; unique. `None` for acls. For
    /// keyauth credentials, the keyed hash of the key (hex), which only the control plane can compute: `from_data`
    /// leaves it `None` and the control plane sets it, so the key itself is never a column.
    pub endpoint_key: Option<String>,
    /// Consumers' `custom_id`; unique.
    pub custom_id: Option<String>,
    /// Plugins: one instance per name and scope (`name|route|service|consumer`); acls: one per consumer and group
    /// (`consumer|group`); unique.
    pub cache_key: Option<String>,
    pub service_id: Option<uuid::Uuid>,
    pub route_id: Option<uuid::Uuid>,
    pub consumer_id: Option<uuid::Uuid>,
    /// An SNI's certificate.
    pub certificate_id: Option<uuid::Uuid>,
    /// A target's upstream.
    pub upstream_id: Option<uuid::Uuid>,
    /// The plugin name (plugins only), for filters.
    pub name: Option<String>,
    pub tags: Vec<String>,
    /// The full entity as the APIs return it, including `id`, `created_at` and `updated_at` (epoch seconds).
    pub data: Normalized,
    pub created_at: i64,
    pub updated_at: i64,
}

fn foreign_id(data: &Normalized, field: &str) -> Option<uuid::Uuid> {
    data.get(field)?.get("id")?.as_str()?.parse().ok()
}

impl StoredEntity {
    /// Derives the keys from validated data that carries `id` and timestamps.
    pub fn from_data(kind: EntityKind, data: Normalized) -> Option<Self> {
        let id = data.get("id")?.as_str()?.parse().ok()?;
        let text = |f: &str| data.get(f).and_then(Value::as_str).map(str::to_owned);
        let (service_id, route_id, consumer_id) =
            (foreign_id(&data, "service"), foreign_id(&data, "route"), foreign_id(&data, "consumer"));
        let part = |id: Option<uuid::Uuid>| id.map(|u| u.to_string()).unwrap_or_default();
        let cache_key = match kind {
            EntityKind::Plugin => Some(format!(
                "{}|{}|{}|{}",
                text("name").unwrap_or_default(),
                part(route_id),
                part(service_id),
                part(consumer_id)
            )),
            EntityKind::Acl => Some(format!("{}|{}", part(consumer_id), text("group").unwrap_or_default())),
            // Kong's unique `cert_digest`.
            EntityKind::CaCertificate => text("cert_digest"),
            // Kong's `cache_key = { "upstream", "target" }`.
            EntityKind::Target => {
                Some(format!("{}|{}", part(foreign_id(&data, "upstream")), text("target").unwrap_or_default()))
            }
            _ => None,
        };
        Some(Self {
            kind,
            id,
            endpoint_key: if matches!(
                kind,
                EntityKind::Acl
                    | EntityKind::KeyAuth
                    | EntityKind::Certificate
                    | EntityKind::CaCertificate
                    | EntityKind::Target
            ) {
                None
            } else {
                text(kind.endpoint_key())
            },
            custom_id: if kind == EntityKind::Consumer { text("custom_id") } else { None },
            cache_key,
            service_id,
            route_id,
            consumer_id,
            certificate_id: foreign_id(&data, "certificate"),
            upstream_id: foreign_id(&data, "upstream"),
            name: if kind == EntityKind::Plugin { text("name") } else { None },
            tags: data
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            created_at: data.get("created_at").and_then(Value::as_i64).unwrap_or(0),
            updated_at: data.get("updated_at").and_then(Value::as_i64).unwrap_or(0),
            data,
        })
    }
}

/// Validates an input body for `kind` and returns the full entity (without `id` and timestamps if absent).
/// `url` is Kong's service shorthand; for plugins the config is checked against the named plugin's schema.
pub fn validate_entity(kind: EntityKind, input: &Map<String, Value>) -> Result<Normalized, Vec<Violation>> {
    let mut violations = Vec::new();
    let input = match kind {
        EntityKind::Service => expand_service_url(input, &mut violations),
        EntityKind::Upstream => {
            let mut input = input.clone();
            super::upstreams::apply_shorthands(&mut input);
            input
        }
        EntityKind::Plugin => expand_plugin_shorthands(input),
        _ => input.clone(),
    };
    let fields = match kind {
        EntityKind::Plugin => match input.get("name").and_then(Value::as_str) {
            Some(name) => match plugins::config_fields(name) {
                Some(config) => plugin_fields(Some(config)),
                None => {
                    violations.push(Violation::new(
                        "name",
                        format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property"),
                    ));
                    plugin_fields(None)
                }
            },
            None => plugin_fields(None),
        },
        other => other.fields(),
    };
    let mut normalized = normalize(&fields, &input, "", &mut violations);
    // Kong's targets DAO stores `host:port`, adding its default port.
    if kind == EntityKind::Target
        && let Some(formatted) =
            normalized.get("target").and_then(Value::as_str).and_then(super::upstreams::format_target)
    {
        normalized.insert("target".into(), Value::String(formatted));
    }
    if violations.is_empty() {
        entity_checks(kind, &normalized, &mut violations);
    }
    if violations.is_empty() { Ok(normalized) } else { Err(violations) }
}

/// Kong's plugin `shorthand_fields`: deprecated config fields that set another (`opentelemetry`'s `endpoint`).
fn expand_plugin_shorthands(input: &Map<String, Value>) -> Map<String, Value> {
    let mut input = input.clone();
    if input.get("name").and_then(Value::as_str) == Some(plugins::opentelemetry::NAME)
        && let Some(Value::Object(config)) = input.get_mut("config")
    {
        plugins::opentelemetry::expand_shorthands(config);
    }
    input
}

fn entity_checks(kind: EntityKind, e: &Normalized, out: &mut Vec<Violation>) {
    let set = |name: &str| {
        e.get(name).is_some_and(|v| {
            !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()) && v.as_object().is_none_or(|o| !o.is_empty())
        })
    };
    match kind {
        EntityKind::Route => {
            let protocols: Vec<&str> = e
                .get("protocols")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let http = protocols.iter().any(|p| matches!(*p, "http" | "https" | "grpc" | "grpcs" | "ws" | "wss"));
            // Kong's http subschema: over https an SNI alone can select the route.
            if protocols.contains(&"https") {
                if !["methods", "hosts", "headers", "paths", "snis"].iter().any(|f| set(f)) {
                    out.push(Violation::new(
                        "@entity",
                        "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'",
                    ));
                }
            } else if http && !["methods", "hosts", "headers", "paths"].iter().any(|f| set(f)) {
                out.push(Violation::new(
                    "@entity",
                    "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'",
                ));
            }
            if set("snis") && !protocols.iter().any(|p| matches!(*p, "grpcs" | "https" | "tls" | "tls_passthrough")) {
                out.push(Violation::new(
                    "snis",
                    "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'",
                ));
            }
            let groups: [&[&str]; 4] =
                [&["http", "https"], &["tcp", "tls", "udp"], &["tls_passthrough"], &["grpc", "grpcs"]];
            let group_of = |p: &str| groups.iter().position(|g| g.contains(&p));
            if let Some(first) = protocols.first()
                && protocols.iter().any(|p| group_of(p) != group_of(first) && !matches!(*p, "ws" | "wss"))
            {
                out.push(Violation::new(
                    "protocols",
                    "mixing protocols that belong to different subsystems is not allowed",
                ));
            }
            if protocols.iter().any(|p| p.starts_with("grpc"))
                && e.get("strip_path") == Some(&Value::Bool(true))
                && e.get("paths").is_some_and(|p| !p.is_null())
            {
                out.push(Violation::new("strip_path", "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"));
            }
        }
        EntityKind::Consumer => {
            if !set("username") && !set("custom_id") {
                out.push(Violation::new(
                    "@entity",
                    "at least one of these fields must be non-empty: 'custom_id', 'username'",
                ));
            }
        }
        EntityKind::Plugin => {
            if let Some(info) = e.get("name").and_then(Value::as_str).and_then(plugins::info)
                && let Some(config) = e.get("config").and_then(Value::as_object)
            {
                let mut checks = plugins::Checks::default();
                (info.check)(config, &mut checks);
                out.extend(checks.into_violations());
            }
            if let Some(name) = e.get("name").and_then(Value::as_str)
                && !plugins::allows_consumer_scope(name)
                && set("consumer")
            {
                out.push(Violation::new(
                    "consumer",
                    format!("value must be null; the {name} plugin cannot be applied to a consumer"),
                ));
            }
        }
        EntityKind::Acl
        | EntityKind::KeyAuth
        | EntityKind::BasicAuth
        | EntityKind::Sni
        | EntityKind::CaCertificate
        | EntityKind::Target => {}
        EntityKind::Jwt => {
            let algorithm = e.get("algorithm").and_then(Value::as_str).unwrap_or("HS256");
            // jsonwebtoken (and so the proxy) has no P-521 verifier: refused here rather than failing every token.
            if algorithm == "ES512" {
                out.push(Violation::new("algorithm", "not supported by Gatehouse: ES512 (P-521) cannot be verified"));
            }
            if JWT_PUBLIC_KEY_REQUIRED.contains(&algorithm) && !set("rsa_public_key") {
                out.push(Violation::new("rsa_public_key", "required field missing"));
                out.push(Violation::new("@entity", "failed conditional validation given value of field 'algorithm'"));
            }
        }
        EntityKind::Upstream => super::upstreams::upstream_checks(e, out),
        EntityKind::Certificate => {
            if set("cert_alt") != set("key_alt") {
                out.push(Violation::new("@entity", "all or none of these fields must be set: 'cert_alt', 'key_alt'"));
            }
        }
        EntityKind::Service => {
            let protocol = e.get("protocol").and_then(Value::as_str).unwrap_or("http");
            if set("path") && !matches!(protocol, "http" | "https" | "ws" | "wss") {
                out.push(Violation::new("path", format!("value must be null when 'protocol' is '{protocol}'")));
            }
            // Kong's conditionals: upstream TLS settings mean something only for a TLS upstream. (`tls_verify` is
            // accepted there with no effect, as it was before these; docs/compatibility.md.)
            if !matches!(protocol, "https" | "tls") {
                for field in ["client_certificate", "tls_verify_depth", "ca_certificates"] {
                    if set(field) {
                        out.push(Violation::new(field, format!("value must be null when 'protocol' is '{protocol}'")));
                    }
                }
            }
        }
    }
}

/// Kong's `url` shorthand: `url` sets protocol, host, port and path; explicit fields are not allowed beside it.
fn expand_service_url(input: &Map<String, Value>, out: &mut Vec<Violation>) -> Map<String, Value> {
    let mut input = input.clone();
    let Some(url) = input.remove("url") else { return input };
    if url.is_null() {
        return input;
    }
    let Some(raw) = url.as_str() else {
        out.push(Violation::new("url", "expected a string"));
        return input;
    };
    let Ok(parsed) = url::Url::parse(raw) else {
        out.push(Violation::new("url", "missing host in url"));
        return input;
    };
    let Some(host) = parsed.host_str() else {
        out.push(Violation::new("url", "missing host in url"));
        return input;
    };
    let scheme = parsed.scheme().to_owned();
    let port = parsed.port().map(i64::from).unwrap_or(if scheme == "https" { 443 } else { 80 });
    input.entry("protocol").or_insert(json!(scheme));
    input.entry("host").or_insert(json!(host.trim_start_matches('[').trim_end_matches(']')));
    input.entry("port").or_insert(json!(port));
    // `Url::path` is already percent-encoded (spaces become %20, as decK writes them).
    let path = parsed.path();
    if !(path.is_empty()
        || (path == "/" && !raw.trim_end_matches(parsed.query().unwrap_or("")).trim_end_matches('?').ends_with('/')))
    {
        input.entry("path").or_insert(json!(path));
    }
    input
}

fn check_uuid(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if super::is_uuid(s) => Ok(()),
        _ => Err("expected a valid UUID".into()),
    }
}

/// Kong's utf8 name: letters, digits, `.-_~` and any non-ASCII character.
fn check_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~') || !c.is_ascii());
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value '{s}': it must only contain alphanumeric and '., -, _, ~' characters"))
    }
}

fn check_tag(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if s.is_empty() || s.contains([',', '/']) || s.chars().any(|c| c.is_control() || c == ' ') {
        Err("invalid tag: it must be printable and must not contain ',', '/' or spaces".into())
    } else {
        Ok(())
    }
}

fn check_host(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if s.parse::<std::net::IpAddr>().is_ok() || is_hostname(s) { Ok(()) } else { Err(format!("invalid value: {s}")) }
}

pub(super) fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `hosts` entries: a hostname or address, with at most one `*` as the whole leftmost or rightmost label, and an
/// optional `:port`.
fn check_route_host(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(format!("invalid port number: {s}"));
    }
    let stars = host.matches('*').count();
    let wildcard_ok = stars == 0 || (stars == 1 && (host.starts_with("*.") || host.ends_with(".*")) && host.len() > 2);
    let bare = host.trim_start_matches("*.").trim_end_matches(".*");
    if wildcard_ok && (bare.parse::<std::net::IpAddr>().is_ok() || is_hostname(bare)) {
        Ok(())
    } else if !wildcard_ok {
        Err("invalid wildcard: must be placed at leftmost or rightmost label".into())
    } else {
        Err(format!("invalid hostname: {s}"))
    }
}

const PATH_CHARS: &str = "-._~!$&'()*+,;=:@/%";

fn check_service_path(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if !s.starts_with('/') {
        return Err("should start with: /".into());
    }
    check_plain_path(s)
}

fn check_plain_path(s: &str) -> Result<(), String> {
    if s.contains("//") {
        return Err("must not have empty segments".into());
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || PATH_CHARS.contains(*c))) {
        return Err(format!("invalid character '{c}' in path; percent-encode it"));
    }
    // Percent-escapes must be well formed.
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err("invalid percent-encoding in path".into());
        }
    }
    Ok(())
}

/// Route paths: a prefix (`/…`) or a regex (`~/…`) read as Kong's PCRE router reads it, that the linear-time
/// engine accepts (no backreferences or look-around: a path can never make the router take exponential time).
fn check_route_path(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if let Some(pattern) = s.strip_prefix('~') {
        if !pattern.starts_with('/') {
            return Err("should start with: / (fixed path) or ~/ (regex path)".into());
        }
        return super::route_regex::compile(pattern).map(|_| ());
    }
    if !s.starts_with('/') {
        return Err("should start with: / (fixed path) or ~/ (regex path)".into());
    }
    check_plain_path(s)
}

fn check_method(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase()) { Ok(()) } else { Err(format!("invalid value: {s}")) }
}

fn check_header_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if s.eq_ignore_ascii_case("host") {
        return Err("cannot contain 'host' header, which must be specified in the 'hosts' attribute".into());
    }
    if http::HeaderName::from_bytes(s.as_bytes()).is_err() {
        return Err(format!("invalid header name: {s}"));
    }
    Ok(())
}

fn check_redirect_code(v: &Value) -> Result<(), String> {
    match v.as_i64() {
        Some(426 | 301 | 302 | 307 | 308) => Ok(()),
        _ => Err("expected one of: 426, 301, 302, 307, 308".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: EntityKind, v: Value) -> Normalized {
        validate_entity(kind, v.as_object().unwrap()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn err(kind: EntityKind, v: Value) -> Vec<(String, String)> {
        validate_entity(kind, v.as_object().unwrap()).unwrap_err().into_iter().map(|v| (v.path, v.message)).collect()
    }

    #[test]
    fn service_url_shorthand_and_defaults() {
        let s =
            ok(EntityKind::Service, json!({"name": "example-service", "url": "http://httpbin.konghq.com/anything"}));
        assert_eq!(
            (s["protocol"].clone(), s["host"].clone(), s["port"].clone(), s["path"].clone()),
            (json!("http"), json!("httpbin.konghq.com"), json!(80), json!("/anything"))
        );
        assert_eq!(
            (s["retries"].clone(), s["connect_timeout"].clone(), s["enabled"].clone()),
            (json!(5), json!(60000), json!(true))
        );
        assert_eq!(s["tags"], Value::Null);
        let s = ok(EntityKind::Service, json!({"url": "https://api.example.com:8443"}));
        assert_eq!((s["port"].clone(), s["path"].clone()), (json!(8443), Value::Null));
        let s = ok(EntityKind::Service, json!({"url": "https://api.example.com"}));
        assert_eq!(s["port"], 443);
        let s = ok(EntityKind::Service, json!({"url": "http://h/a b"}));
        assert_eq!(s["path"], "/a%20b");
        assert_eq!(err(EntityKind::Service, json!({"url": "nothing"}))[0].0, "url");
        assert_eq!(
            err(EntityKind::Service, json!({"name": "x"})),
            vec![("host".to_owned(), "required field missing".to_owned())]
        );
        assert_eq!(
            err(EntityKind::Service, json!({"host": "h", "port": 70000}))[0].1,
            "value should be between 0 and 65535"
        );
        assert_eq!(err(EntityKind::Service, json!({"host": "h", "name": "a b"}))[0].0, "name");
        assert_eq!(err(EntityKind::Service, json!({"host": "h", "path": "x"}))[0].1, "should start with: /");
        assert_eq!(err(EntityKind::Service, json!({"host": "h", "protocol": "tcp", "path": "/x"}))[0].0, "path");
    }

    #[test]
    fn route_rules() {
        let r = ok(
            EntityKind::Route,
            json!({"name": "example-route", "paths": ["/anything"], "service": {"id": "0190a0a0-0000-7000-8000-000000000001"}}),
        );
        assert_eq!(
            (r["strip_path"].clone(), r["preserve_host"].clone(), r["protocols"].clone(), r["regex_priority"].clone()),
            (json!(true), json!(false), json!(["http", "https"]), json!(0))
        );
        assert_eq!(r["https_redirect_status_code"], 426);
        ok(EntityKind::Route, json!({"hosts": ["*.example.com", "api.*", "a.example.com:8080"]}));
        ok(EntityKind::Route, json!({"paths": ["~/v(\\d+)/users"]}));
        ok(EntityKind::Route, json!({"methods": ["GET"]}));
        ok(EntityKind::Route, json!({"headers": {"x-version": ["1", "~*^v\\d$"]}}));
        for (bad, path) in [
            (json!({}), "@entity"),
            (json!({"paths": ["nope"]}), "paths.1"),
            (json!({"paths": ["/a//b"]}), "paths.1"),
            (json!({"paths": ["~/(a"]}), "paths.1"),
            (json!({"paths": ["~/(a)\\1"]}), "paths.1"),
            (json!({"paths": ["~/(?=a)"]}), "paths.1"),
            (json!({"hosts": ["a.*.com"]}), "hosts.1"),
            (json!({"hosts": ["*.*.com"]}), "hosts.1"),
            (json!({"hosts": ["a.com:99999"]}), "hosts.1"),
            (json!({"methods": ["get"]}), "methods.1"),
            (json!({"headers": {"Host": ["x"]}}), "headers.Host"),
            (json!({"paths": ["/"], "https_redirect_status_code": 303}), "https_redirect_status_code"),
            (json!({"paths": ["/"], "protocols": ["http", "tcp"]}), "protocols"),
            (json!({"paths": ["/"], "service": {"id": "nope"}}), "service"),
            (json!({"paths": ["/"], "bogus": true}), "bogus"),
        ] {
            assert_eq!(err(EntityKind::Route, bad.clone())[0].0, path, "{bad}");
        }
    }

    #[test]
    fn consumers_need_a_username_or_custom_id() {
        ok(EntityKind::Consumer, json!({"custom_id": "abc"}));
        assert_eq!(err(EntityKind::Consumer, json!({"tags": ["a"]}))[0].0, "@entity");
        assert_eq!(err(EntityKind::Consumer, json!({"username": "u", "tags": ["a,b"]}))[0].0, "tags.1");
        // Kong: strings are at least one character unless a field says otherwise.
        for empty in [json!({"username": ""}), json!({"username": "u", "custom_id": ""})] {
            let e = err(EntityKind::Consumer, empty.clone());
            assert_eq!(e[0].1, "length must be at least 1", "{empty}");
        }
    }

    #[test]
    fn acls_need_a_consumer_and_a_group_and_are_unique_per_consumer_and_group() {
        let consumer = "0190a0a0-0000-7000-8000-000000000001";
        let mut acl = ok(EntityKind::Acl, json!({"consumer": {"id": consumer}, "group": "admins", "tags": ["t"]}));
        assert_eq!((acl["group"].clone(), acl["tags"].clone()), (json!("admins"), json!(["t"])));
        assert!(acl.get("updated_at").is_none() && !EntityKind::Acl.has_updated_at(), "Kong's acls have none");
        assert_eq!(err(EntityKind::Acl, json!({"group": "g"})), [("consumer".into(), "required field missing".into())]);
        assert_eq!(
            err(EntityKind::Acl, json!({"consumer": {"id": consumer}})),
            [("group".into(), "required field missing".into())]
        );
        assert_eq!(err(EntityKind::Acl, json!({"consumer": {"id": consumer}, "group": 1}))[0].1, "expected a string");
        assert_eq!(err(EntityKind::Acl, json!({"consumer": {"id": consumer}, "group": "g", "bogus": 1}))[0].0, "bogus");
        acl.insert("id".into(), json!("0190a0a0-0000-7000-8000-0000000000aa"));
        let stored = StoredEntity::from_data(EntityKind::Acl, acl).unwrap();
        assert_eq!(stored.cache_key.as_deref(), Some(format!("{consumer}|admins").as_str()));
        assert_eq!(stored.endpoint_key, None, "a group is unique per consumer only");
        assert_eq!(stored.consumer_id.map(|c| c.to_string()).as_deref(), Some(consumer));
        assert_eq!(EntityKind::from_collection("acls"), Some(EntityKind::Acl));
    }

    #[test]
    fn keyauth_credentials_need_a_consumer_and_leave_their_key_out_of_the_columns() {
        let consumer = "0190a0a0-0000-7000-8000-000000000001";
        let mut key = ok(EntityKind::KeyAuth, json!({"consumer": {"id": consumer}, "key": "k-123", "tags": ["t"]}));
        assert_eq!(key["key"], "k-123");
        assert!(key.get("updated_at").is_none() && !EntityKind::KeyAuth.has_updated_at(), "Kong's have none");
        assert_eq!(
            err(EntityKind::KeyAuth, json!({"key": "k"})),
            [("consumer".into(), "required field missing".into())]
        );
        assert_eq!(err(EntityKind::KeyAuth, json!({"consumer": {"id": consumer}, "key": 1}))[0].1, "expected a string");
        assert_eq!(err(EntityKind::KeyAuth, json!({"consumer": {"id": consumer}, "ttl": 5}))[0].0, "ttl");
        key.insert("id".into(), json!("0190a0a0-0000-7000-8000-0000000000aa"));
        let stored = StoredEntity::from_data(EntityKind::KeyAuth, key).unwrap();
        assert_eq!((stored.endpoint_key, stored.cache_key), (None, None), "the control plane sets the keyed hash");
        assert_eq!(EntityKind::from_collection("key-auths"), Some(EntityKind::KeyAuth));
        assert_eq!(EntityKind::KeyAuth.nested_collection(), "key-auth");
    }

    /// What Kong 3.x and Konnect send or return for fields Gatehouse does not implement goes through; a value
    /// that would change behaviour is refused by name.
    #[test]
    fn kong_fields_gatehouse_lacks_are_accepted_unset_and_refused_set() {
        let service = ok(
            EntityKind::Service,
            json!({"host": "h", "client_certificate": null, "tls_verify_depth": null, "ca_certificates": [],
                "tls_sans": null}),
        );
        assert!(service.get("tls_sans").is_none(), "Kong OSS does not return it");
        assert_eq!(service["ca_certificates"], json!([]), "an upstream TLS field, kept as sent");
        let route = ok(
            EntityKind::Route,
            json!({"paths": ["/"], "path_handling": "v0", "snis": [], "sources": null, "destinations": [],
                "response_buffering": false, "expression": null, "priority": 0}),
        );
        assert_eq!((route["response_buffering"].clone(), route.get("priority")), (json!(false), None));
        let plugin = ok(
            EntityKind::Plugin,
            json!({"name": "request-termination", "consumer_group": null, "partials": [], "ordering": null,
                "condition": null, "instance_name": "rt", "protocols": ["http"]}),
        );
        assert!(plugin.get("consumer_group").is_none() && plugin.get("partials").is_none());
        assert_eq!((plugin["instance_name"].clone(), plugin["protocols"].clone()), (json!("rt"), json!(["http"])));

        let uuid = "0190a0a0-0000-7000-8000-000000000001";
        // Upstream TLS settings are refused on a plain-HTTP service, as Kong's conditionals refuse them, and kept
        // on an HTTPS one.
        for (body, field) in [
            (json!({"tls_verify_depth": 3}), "tls_verify_depth"),
            (json!({"ca_certificates": [uuid]}), "ca_certificates"),
            (json!({"client_certificate": {"id": uuid}}), "client_certificate"),
        ] {
            let mut plain = body.as_object().unwrap().clone();
            plain.insert("host".into(), json!("h"));
            let e = validate_entity(EntityKind::Service, &plain).unwrap_err();
            assert_eq!(
                (e[0].path.as_str(), e[0].message.as_str()),
                (field, "value must be null when 'protocol' is 'http'")
            );
            plain.insert("protocol".into(), json!("https"));
            assert_eq!(validate_entity(EntityKind::Service, &plain).unwrap()[field], body[field]);
        }
        // Routes' `snis` need a TLS protocol (Kong's entity check).
        let plain = json!({"paths": ["/"], "protocols": ["http"], "snis": ["a.example"]});
        let e = validate_entity(EntityKind::Route, plain.as_object().unwrap()).unwrap_err();
        assert_eq!(e[0].path, "snis");
        let tls = json!({"protocols": ["https"], "snis": ["a.example", "*.example.org"]});
        assert_eq!(ok(EntityKind::Route, tls)["snis"], json!(["a.example", "*.example.org"]));
        for (kind, body, field) in [
            (EntityKind::Service, json!({"host": "h", "tls_sans": {"dnsnames": ["a"]}}), "tls_sans"),
            (EntityKind::Route, json!({"paths": ["/"], "path_handling": "v1"}), "path_handling"),
            (EntityKind::Route, json!({"paths": ["/"], "sources": [{"ip": "10.0.0.1"}]}), "sources"),
            (EntityKind::Route, json!({"paths": ["/"], "destinations": [{"port": 80}]}), "destinations"),
            (EntityKind::Route, json!({"expression": "http.path == \"/\""}), "expression"),
            (EntityKind::Route, json!({"paths": ["/"], "priority": 10}), "priority"),
            (
                EntityKind::Plugin,
                json!({"name": "request-termination", "consumer_group": {"id": uuid}}),
                "consumer_group",
            ),
            (EntityKind::Plugin, json!({"name": "request-termination", "partials": [{"id": uuid}]}), "partials"),
            (
                EntityKind::Plugin,
                json!({"name": "request-termination", "ordering": {"before": {"access": ["x"]}}}),
                "ordering",
            ),
            (EntityKind::Plugin, json!({"name": "request-termination", "condition": "true"}), "condition"),
        ] {
            let e = err(kind, body.clone());
            assert_eq!(e.len(), 1, "{body}: {e:?}");
            assert_eq!(e[0].0, field, "{body}");
            assert!(e[0].1.starts_with("not supported by Gatehouse"), "{body}: {}", e[0].1);
        }
        let doc = EntityKind::Route.schema_document().to_string();
        assert!(doc.contains("path_handling") && !doc.contains("expression"), "{doc}");
    }

    #[test]
    fn plugins_are_checked_against_their_schema() {
        let p = ok(
            EntityKind::Plugin,
            json!({"name": "oauth2-introspection", "config": {
            "introspection_url": "http://127.0.0.1:8003/abc/introspect", "authorization_value": "Basic eA==",
            "consumer_by": "client_id", "custom_claims_forward": ["Claim"]}}),
        );
        assert_eq!(p["config"]["ttl"], 30);
        assert_eq!(p["config"]["consumer_by"], "client_id");
        assert_eq!(p["config"]["custom_introspection_headers"], json!({}));
        assert_eq!(p["protocols"], json!(["grpc", "grpcs", "http", "https"]));
        assert_eq!(p["enabled"], true);
        assert_eq!(err(EntityKind::Plugin, json!({"name": "made-up", "config": {}}))[0].0, "name");
        let e = err(EntityKind::Plugin, json!({"name": "oauth2-introspection", "config": {"consumer_by": "email"}}));
        let paths: Vec<_> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(paths, vec!["config.introspection_url", "config.authorization_value", "config.consumer_by"]);
        let e = err(
            EntityKind::Plugin,
            json!({"name": "oauth2-introspection", "consumer": {"id": "0190a0a0-0000-7000-8000-000000000001"},
            "config": {"introspection_url": "http://i/x", "authorization_value": "v"}}),
        );
        assert_eq!(e[0].0, "consumer");
        // Without `config`, as Kong: the defaults are filled in and only the config's own required fields complain.
        let p = ok(EntityKind::Plugin, json!({"name": "request-termination"}));
        assert_eq!(p["config"]["status_code"], 503);
        let e = err(EntityKind::Plugin, json!({"name": "oauth2-introspection"}));
        let paths: Vec<_> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(paths, vec!["config.introspection_url", "config.authorization_value"]);
        assert_eq!(err(EntityKind::Plugin, json!({"name": "request-termination", "config": null}))[0].0, "config");
    }

    #[test]
    fn plugin_schema_documents_hide_gatehouse_only_fields() {
        let doc = plugin_schema_document(plugins::oauth2_introspection::NAME).unwrap().to_string();
        assert!(!doc.contains("negative_ttl"), "Gatehouse-only fields stay out of the schema decK reads");
        assert!(doc.contains("authorization_value"));
        assert!(plugin_schema_document("made-up").is_none());
    }

    #[test]
    fn schema_documents_carry_defaults() {
        let doc = EntityKind::Service.schema_document();
        let fields = doc["fields"].as_array().unwrap();
        let port = fields.iter().find_map(|f| f.get("port")).unwrap();
        assert_eq!(port["default"], 80);
        assert_eq!(EntityKind::from_collection("routes"), Some(EntityKind::Route));
    }

    /// `GET /schemas/plugins/{name}` describes every field, as Kong's schemas do.
    #[test]
    fn every_plugin_field_has_a_description() {
        for plugin in plugins::PLUGINS {
            for field in (plugin.config)() {
                let described = field.description.is_some_and(|d| !d.is_empty());
                assert!(described, "{}.{} has no description", plugin.name, field.name);
            }
            let document = plugin_schema_document(plugin.name).unwrap().to_string();
            assert!(document.contains("\"description\""), "{document}");
        }
    }

    /// A plugin's cross-field checks (its `PluginInfo::check`) run when the entity is validated.
    #[test]
    fn request_terminations_cross_field_checks_run_on_validation() {
        let refused = |config| {
            let body = json!({"name": "request-termination", "config": config});
            validate_entity(EntityKind::Plugin, body.as_object().unwrap()).unwrap_err()[0].message.clone()
        };
        assert_eq!(refused(json!({"message": "m", "body": "b"})), "message cannot be used with content_type or body");
        assert_eq!(refused(json!({"content_type": "text/plain"})), "content_type requires a body");
        assert_eq!(refused(json!({"echo": true, "body": "b"})), "echo cannot be used with content_type and body");
        let fine = json!({"name": "request-termination", "config": {"body": "b", "content_type": "text/plain"}});
        assert!(validate_entity(EntityKind::Plugin, fine.as_object().unwrap()).is_ok());
    }
}
