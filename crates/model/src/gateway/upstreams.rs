//! Kong's `upstreams` and `targets` (`kong/db/schema/entities/upstreams.lua`, `targets.lua`): a virtual host name a
//! service's `host` can name, its load-balancing algorithm and health checks, and the `host:port` targets it
//! balances over.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::schema::{Field, Violation};

pub const ALGORITHMS: &[&str] = &["consistent-hashing", "least-connections", "round-robin", "latency"];
pub const HASH_ON: &[&str] = &["none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"];
/// Kong's port for a target given without one (`kong/db/dao/targets.lua`).
pub const DEFAULT_TARGET_PORT: u16 = 8000;

fn statuses(name: &'static str, default: &[u16]) -> Field {
    Field::array(name, Field::integer("status").between(100, 999)).default(json!(default))
}

fn count(name: &'static str) -> Field {
    Field::integer(name).default(json!(0)).between(0, 255)
}

/// Kong's `healthchecks` record with its defaults: probing and circuit breaking are off until an interval or a
/// threshold is set.
fn healthchecks() -> Field {
    Field::record(
        "healthchecks",
        vec![
            Field::record(
                "active",
                vec![
                    Field::string("type").default(json!("http")).one_of(&["tcp", "http", "https", "grpc", "grpcs"]),
                    Field::number("timeout").default(json!(1)).between(0, 65535),
                    Field::integer("concurrency").default(json!(10)).between(1, 1 << 31),
                    Field::string("http_path").default(json!("/")).check(check_http_path),
                    // The server name HTTPS probes send (and verify); without it, the target's host.
                    Field::string("https_sni").check(super::plugins::rate_limiting::sni),
                    Field::boolean("https_verify_certificate").required().default(json!(true)),
                    Field::map("headers", Field::string("name"), Field::array("values", Field::string("value"))),
                    Field::record(
                        "healthy",
                        vec![
                            Field::number("interval").default(json!(0)).between(0, 65535),
                            statuses("http_statuses", &[200, 302]),
                            count("successes"),
                        ],
                    ),
                    Field::record(
                        "unhealthy",
                        vec![
                            Field::number("interval").default(json!(0)).between(0, 65535),
                            statuses("http_statuses", &[429, 404, 500, 501, 502, 503, 504, 505]),
                            count("tcp_failures"),
                            count("timeouts"),
                            count("http_failures"),
                        ],
                    ),
                ],
            ),
            Field::record(
                "passive",
                vec![
                    Field::string("type").default(json!("http")).one_of(&["tcp", "http", "https", "grpc", "grpcs"]),
                    Field::record(
                        "healthy",
                        vec![
                            statuses(
                                "http_statuses",
                                &[
                                    200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305,
                                    306, 307, 308,
                                ],
                            ),
                            count("successes"),
                        ],
                    ),
                    Field::record(
                        "unhealthy",
                        vec![
                            statuses("http_statuses", &[429, 500, 503]),
                            count("tcp_failures"),
                            count("timeouts"),
                            count("http_failures"),
                        ],
                    ),
                ],
            ),
            Field::number("threshold").default(json!(0)).between(0, 100),
        ],
    )
}

pub(super) fn upstream_fields(base: Vec<Field>, tags: Field) -> Vec<Field> {
    let mut f = base;
    f.extend([
        Field::string("name").required().unique().check(check_upstream_name),
        Field::string("algorithm").default(json!("round-robin")).one_of(ALGORITHMS),
        Field::string("hash_on").default(json!("none")).one_of(HASH_ON),
        Field::string("hash_fallback").default(json!("none")).one_of(HASH_ON),
        Field::string("hash_on_header").check(check_header_name),
        Field::string("hash_fallback_header").check(check_header_name),
        Field::string("hash_on_cookie").check(check_cookie_name),
        Field::string("hash_on_cookie_path").default(json!("/")).check(check_http_path),
        Field::string("hash_on_query_arg"),
        Field::string("hash_fallback_query_arg"),
        Field::string("hash_on_uri_capture"),
        Field::string("hash_fallback_uri_capture"),
        Field::integer("slots").default(json!(10000)).between(10, 1 << 16),
        healthchecks(),
        tags,
        Field::string("host_header").check(check_host_with_optional_port),
        // Upstream TLS client certificates are the services' (`client_certificate` there).
        Field::foreign("client_certificate", "certificates").unsupported(),
        // Targets are resolved with A/AAAA lookups; SRV records are not.
        Field::boolean("use_srv_name").default(json!(false)).unsupported(),
    ]);
    f
}

pub(super) fn target_fields(base: Vec<Field>, tags: Field) -> Vec<Field> {
    let mut f = base;
    f.extend([
        Field::foreign("upstream", "upstreams").required(),
        Field::string("target").required().check(check_target),
        Field::integer("weight").default(json!(100)).between(0, 65535),
        tags,
    ]);
    f
}

/// Kong's shorthands (`upstreams.lua`): `least-connections` and `latency` hash on nothing; a `hash_on` given sets
/// the algorithm (`none` → `round-robin`, anything else → `consistent-hashing`).
pub(super) fn apply_shorthands(input: &mut Map<String, Value>) {
    let algorithm = input.get("algorithm").and_then(Value::as_str).map(str::to_owned);
    if matches!(algorithm.as_deref(), Some("least-connections" | "latency")) {
        input.insert("hash_on".into(), Value::Null);
        return;
    }
    match input.get("hash_on") {
        Some(Value::String(h)) if h == "none" => {
            input.insert("algorithm".into(), json!("round-robin"));
        }
        Some(Value::String(_)) => {
            input.insert("algorithm".into(), json!("consistent-hashing"));
        }
        _ => {}
    }
}

/// Kong's entity checks of an upstream: what each `hash_on`/`hash_fallback` needs, and which fallbacks make sense.
pub(super) fn upstream_checks(e: &Map<String, Value>, out: &mut Vec<Violation>) {
    let text = |f: &str| e.get(f).and_then(Value::as_str);
    let (on, fallback) = (text("hash_on").unwrap_or("none"), text("hash_fallback").unwrap_or("none"));
    for (which, needed) in [
        (
            on,
            [
                ("header", "hash_on_header"),
                ("cookie", "hash_on_cookie"),
                ("query_arg", "hash_on_query_arg"),
                ("uri_capture", "hash_on_uri_capture"),
            ],
        ),
        (
            fallback,
            [
                ("header", "hash_fallback_header"),
                ("cookie", "hash_on_cookie"),
                ("query_arg", "hash_fallback_query_arg"),
                ("uri_capture", "hash_fallback_uri_capture"),
            ],
        ),
    ] {
        if let Some((_, field)) = needed.iter().find(|(v, _)| *v == which)
            && text(field).is_none()
        {
            out.push(Violation::new(*field, "required field missing"));
        }
    }
    let allowed: &[&str] = match on {
        "none" | "cookie" => &["none"],
        "consumer" => &["none", "ip", "header", "cookie", "path", "query_arg", "uri_capture"],
        "ip" => &["none", "consumer", "header", "cookie", "path", "query_arg", "uri_capture"],
        "path" => &["none", "consumer", "header", "cookie", "query_arg", "ip", "uri_capture"],
        _ => HASH_ON,
    };
    if !allowed.contains(&fallback) {
        out.push(Violation::new("hash_fallback", format!("expected one of: {}", allowed.join(", "))));
    }
    for (a, b) in [
        ("hash_on_header", "hash_fallback_header"),
        ("hash_on_query_arg", "hash_fallback_query_arg"),
        ("hash_on_uri_capture", "hash_fallback_uri_capture"),
    ] {
        if let (Some(x), Some(y)) = (text(a), text(b))
            && x.eq_ignore_ascii_case(y)
        {
            out.push(Violation::new("@entity", format!("values of these fields must be distinct: '{a}', '{b}'")));
        }
    }
    let checks = e.get("healthchecks");
    let active_type = checks.and_then(|c| c.pointer("/active/type")).and_then(Value::as_str);
    let passive_type = checks.and_then(|c| c.pointer("/passive/type")).and_then(Value::as_str);
    for (path, t) in [("healthchecks.active.type", active_type), ("healthchecks.passive.type", passive_type)] {
        if matches!(t, Some("grpc" | "grpcs")) {
            out.push(Violation::new(path, "not supported by Gatehouse: gRPC health checks (use http or https)"));
        }
    }
}

/// An upstream's `healthchecks`, typed (the schema filled every field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Healthchecks {
    pub active: ActiveChecks,
    pub passive: PassiveChecks,
    /// The percentage of the upstream's weight that must be healthy for it to take traffic at all.
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveChecks {
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds.
    pub timeout: f64,
    pub concurrency: u32,
    pub http_path: String,
    pub https_sni: Option<String>,
    pub https_verify_certificate: bool,
    pub headers: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub healthy: ActiveHealthy,
    pub unhealthy: ActiveUnhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveHealthy {
    /// Seconds between probes of a healthy target; 0 does not probe them.
    pub interval: f64,
    pub http_statuses: Vec<u16>,
    pub successes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of an unhealthy target; 0 does not probe them.
    pub interval: f64,
    pub http_statuses: Vec<u16>,
    pub tcp_failures: u32,
    pub timeouts: u32,
    pub http_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveChecks {
    #[serde(rename = "type")]
    pub kind: String,
    pub healthy: PassiveHealthy,
    pub unhealthy: PassiveUnhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveHealthy {
    pub http_statuses: Vec<u16>,
    pub successes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveUnhealthy {
    pub http_statuses: Vec<u16>,
    pub tcp_failures: u32,
    pub timeouts: u32,
    pub http_failures: u32,
}

impl Healthchecks {
    /// Whether active probing runs (an interval is set).
    pub fn active_on(&self) -> bool {
        self.active.healthy.interval > 0.0 || self.active.unhealthy.interval > 0.0
    }

    /// Whether passive checks can take a target out (a threshold is set).
    pub fn passive_on(&self) -> bool {
        let u = &self.passive.unhealthy;
        u.tcp_failures > 0 || u.timeouts > 0 || u.http_failures > 0
    }

    /// Whether any health check is configured (Kong's `HEALTHCHECKS_OFF` otherwise).
    pub fn any_on(&self) -> bool {
        let a = &self.active;
        self.active_on()
            || self.passive_on()
            || a.unhealthy.tcp_failures > 0
            || a.unhealthy.timeouts > 0
            || a.unhealthy.http_failures > 0
            || self.passive.healthy.successes > 0
    }
}

/// One target's health on this node, as `GET /upstreams/{u}/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// `host:port` as stored.
    pub target: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    /// `HEALTHY`, `UNHEALTHY`, `DNS_ERROR` or `HEALTHCHECKS_OFF`.
    pub health: &'static str,
    /// The addresses requests to it go to: its own for an IP address, what its name resolved to otherwise (none
    /// before the first answer, or when the name does not resolve).
    pub addresses: Vec<AddressHealth>,
    /// Kong's `dns` field: the record type the addresses came from (`A`, `AAAA`), the resolution error, or
    /// `unknown` before the first answer.
    pub dns: String,
}

/// One address of a target and its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressHealth {
    pub ip: std::net::IpAddr,
    /// As [`TargetHealth::health`], for this address.
    pub health: &'static str,
}

/// The node's balancers, as the Admin API reaches them (the admin listener and the proxy run in one process).
pub trait UpstreamHealth: Send + Sync + std::fmt::Debug {
    /// The upstream's targets and their health on this node; `None` when the node does not balance it (yet).
    fn targets_health(&self, upstream: uuid::Uuid) -> Option<Vec<TargetHealth>>;
    /// Kong's `PUT …/targets/{t}/healthy|unhealthy`: sets a target's health on this node until a health check
    /// changes it again. `false` when the node has no such target.
    fn set_target_health(&self, upstream: uuid::Uuid, target: &str, healthy: bool) -> bool;
    /// Kong's `PUT …/targets/{t}/{address}/healthy|unhealthy`: one address (`ip:port`) of a target. `false` when
    /// the target has no such address on this node.
    fn set_address_health(
        &self,
        upstream: uuid::Uuid,
        target: &str,
        address: std::net::SocketAddr,
        healthy: bool,
    ) -> bool;
}

/// A target as Kong stores it: `host:port`, the port 8000 when absent, IPv6 addresses in brackets.
pub fn format_target(target: &str) -> Option<String> {
    let (host, port) = split_target(target)?;
    let port = port.unwrap_or(DEFAULT_TARGET_PORT);
    Some(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// `host[:port]`, `[v6]:port` or a bare IPv6 address → (host without brackets, port).
pub fn split_target(target: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    if target.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some((target, None));
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
        None => (target, None),
    };
    if host.parse::<std::net::Ipv4Addr>().is_ok() || super::entities::is_hostname(host) {
        Some((host, port))
    } else {
        None
    }
}

fn check_target(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    match split_target(s) {
        Some(_) => Ok(()),
        None => Err(format!("Invalid target ('{s}'); not a valid hostname or ip address")),
    }
}

fn check_upstream_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    let Some((host, port)) = split_target(s) else {
        return Err(format!("Invalid name ('{s}'); must be a valid hostname"));
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("Invalid name ('{s}'); no ip addresses allowed"));
    }
    if port.is_some() {
        return Err(format!("Invalid name ('{s}'); no port allowed"));
    }
    Ok(())
}

fn check_host_with_optional_port(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if split_target(s).is_some() { Ok(()) } else { Err(format!("invalid value: {s}")) }
}

fn check_header_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if http::HeaderName::from_bytes(s.as_bytes()).is_ok() {
        Ok(())
    } else {
        Err(format!("bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"))
    }
}

fn check_cookie_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
    if !s.is_empty() && s.chars().all(token) {
        Ok(())
    } else {
        Err(format!("bad cookie name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"))
    }
}

fn check_http_path(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if s.starts_with('/') { Ok(()) } else { Err("should start with: /".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{EntityKind, validate_entity};

    fn ok(kind: EntityKind, v: Value) -> Map<String, Value> {
        validate_entity(kind, v.as_object().unwrap()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn err(kind: EntityKind, v: Value) -> Vec<(String, String)> {
        validate_entity(kind, v.as_object().unwrap()).unwrap_err().into_iter().map(|v| (v.path, v.message)).collect()
    }

    #[test]
    fn upstream_defaults_are_kongs() {
        let u = ok(EntityKind::Upstream, json!({"name": "service.v1.xyz"}));
        assert_eq!(u["algorithm"], "round-robin");
        assert_eq!(u["slots"], 10000);
        assert_eq!(u["hash_on"], "none");
        assert_eq!(u["hash_on_cookie_path"], "/");
        assert_eq!(u["healthchecks"]["active"]["http_path"], "/");
        assert_eq!(u["healthchecks"]["active"]["healthy"]["http_statuses"], json!([200, 302]));
        assert_eq!(u["healthchecks"]["passive"]["unhealthy"]["http_statuses"], json!([429, 500, 503]));
        assert_eq!(u["healthchecks"]["threshold"], 0);
        assert_eq!(u["use_srv_name"], false);
    }

    #[test]
    fn hash_on_sets_the_algorithm_and_needs_its_field() {
        let u = ok(EntityKind::Upstream, json!({"name": "u", "hash_on": "ip"}));
        assert_eq!(u["algorithm"], "consistent-hashing");
        let u = ok(EntityKind::Upstream, json!({"name": "u", "algorithm": "least-connections", "hash_on": "ip"}));
        assert_eq!((u["algorithm"].clone(), u["hash_on"].clone()), (json!("least-connections"), json!("none")));
        assert_eq!(
            err(EntityKind::Upstream, json!({"name": "u", "hash_on": "header"})),
            [("hash_on_header".into(), "required field missing".into())]
        );
        assert_eq!(
            err(
                EntityKind::Upstream,
                json!({"name": "u", "hash_on": "cookie", "hash_on_cookie": "c", "hash_fallback": "ip"})
            )[0]
            .0,
            "hash_fallback"
        );
        assert_eq!(
            err(EntityKind::Upstream, json!({"name": "u", "hash_on": "ip", "hash_fallback": "ip"}))[0].0,
            "hash_fallback"
        );
        let e = err(
            EntityKind::Upstream,
            json!({"name": "u", "hash_on": "header", "hash_on_header": "x-a", "hash_fallback": "header", "hash_fallback_header": "X-A"}),
        );
        assert_eq!(e[0].0, "@entity");
    }

    #[test]
    fn upstream_names_are_host_names() {
        for (bad, message) in [
            ("10.0.0.1", "Invalid name ('10.0.0.1'); no ip addresses allowed"),
            ("a.example:80", "Invalid name ('a.example:80'); no port allowed"),
            ("a b", "Invalid name ('a b'); must be a valid hostname"),
        ] {
            assert_eq!(err(EntityKind::Upstream, json!({"name": bad})), [("name".into(), message.into())]);
        }
        assert_eq!(
            err(EntityKind::Upstream, json!({"name": "u", "slots": 5}))[0].1,
            "value should be between 10 and 65536"
        );
        assert_eq!(err(EntityKind::Upstream, json!({"name": "u", "use_srv_name": true}))[0].0, "use_srv_name");
    }

    #[test]
    fn targets_get_kongs_default_port() {
        assert_eq!(format_target("10.0.0.1").as_deref(), Some("10.0.0.1:8000"));
        assert_eq!(format_target("a.example:81").as_deref(), Some("a.example:81"));
        assert_eq!(format_target("::1").as_deref(), Some("[::1]:8000"));
        assert_eq!(format_target("[::1]:9").as_deref(), Some("[::1]:9"));
        assert_eq!(format_target("a b"), None);
        assert_eq!(format_target("h:99999"), None);
        let t = ok(
            EntityKind::Target,
            json!({"target": "10.0.0.1", "upstream": {"id": "0190a0a0-0000-7000-8000-000000000001"}}),
        );
        assert_eq!((t["target"].clone(), t["weight"].clone()), (json!("10.0.0.1:8000"), json!(100)));
        let e = err(
            EntityKind::Target,
            json!({"target": "a b", "upstream": {"id": "0190a0a0-0000-7000-8000-000000000001"}}),
        );
        assert_eq!(e, [("target".into(), "Invalid target ('a b'); not a valid hostname or ip address".into())]);
        let e = err(
            EntityKind::Target,
            json!({"target": "h", "weight": 70000, "upstream": {"id": "0190a0a0-0000-7000-8000-000000000001"}}),
        );
        assert_eq!(e, [("weight".into(), "value should be between 0 and 65535".into())]);
    }
}
