//! `rate-limiting`'s config: Kong's OSS schema (`kong/plugins/rate-limiting/schema.lua`), its defaults, its
//! validators and its entity checks, which the control plane and decK run before the gateway sees a config.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::PluginInfo;
use crate::gateway::schema::Field;
use crate::secret::SecretString;

pub const NAME: &str = "rate-limiting";
pub const PRIORITY: i32 = 910;

/// Kong lets a consumer-scoped instance give one consumer its own limits.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check };

/// The period fields, shortest first: Kong's `ORDERED_PERIODS`, which its order check walks.
pub const PERIODS: [&str; 6] = ["second", "minute", "hour", "day", "month", "year"];

/// Kong's `sync_rate` for "count synchronously".
pub const SYNC_RATE_REALTIME: f64 = -1.0;

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::number("second").check(positive).describe_as("The number of HTTP requests that can be made per second."),
        Field::number("minute").check(positive).describe_as("The number of HTTP requests that can be made per minute."),
        Field::number("hour").check(positive).describe_as("The number of HTTP requests that can be made per hour."),
        Field::number("day").check(positive).describe_as("The number of HTTP requests that can be made per day."),
        Field::number("month").check(positive).describe_as("The number of HTTP requests that can be made per month."),
        Field::number("year").check(positive).describe_as("The number of HTTP requests that can be made per year."),
        Field::string("limit_by")
            .default(json!("consumer"))
            .one_of(&["consumer", "credential", "ip", "service", "header", "path"])
            .describe_as("The entity that is used when aggregating the limits."),
        Field::string("header_name")
            .check(header_name)
            .describe_as("The header whose value the limits are counted by when `limit_by` is `header`."),
        Field::string("path")
            .check(path)
            .describe_as("The request path the limits are counted by when `limit_by` is `path`."),
        Field::string("policy")
            .default(json!("local"))
            .len_min(0)
            .one_of(&["local", "cluster", "redis"])
            .describe_as("The rate-limiting policies to use for retrieving and incrementing the limits."),
        Field::boolean("fault_tolerant").required().default(json!(true)).describe_as(
            "Proxy requests even when the counters' store cannot be reached (the limits are then not enforced); \
             when false, clients get 500.",
        ),
        Field::record("redis", redis_fields()).describe_as("Redis configuration"),
        Field::boolean("hide_client_headers")
            .required()
            .default(json!(false))
            .describe_as("Optionally hide informative response headers."),
        Field::number("error_code")
            .default(json!(429))
            .check(error_status)
            .describe_as("Set a custom error code to return when the rate limit is exceeded."),
        Field::string("error_message")
            .default(json!("API rate limit exceeded"))
            .describe_as("Set a custom error message to return when the rate limit is exceeded."),
        Field::number("sync_rate").required().default(json!(-1)).describe_as(
            "How often to sync counter data to the central data store. A value of -1 results in synchronous behavior.",
        ),
    ]
}

/// Kong's shared Redis block (`kong/tools/redis/schema.lua`).
fn redis_fields() -> Vec<Field> {
    vec![
        Field::string("host").check(host).describe_as("A string representing a host name, such as example.com."),
        Field::integer("port")
            .default(json!(6379))
            .between(0, 65535)
            .describe_as("An integer representing a port number between 0 and 65535, inclusive."),
        Field::integer("timeout")
            .default(json!(2000))
            .between(0, (1 << 31) - 2)
            .describe_as("An integer representing a timeout in milliseconds. Must be between 0 and 2^31-2."),
        Field::string("username").describe_as("Username to use for Redis connections; unset sends no ACL username."),
        Field::string("password")
            .len_min(0)
            .encrypted()
            .describe_as("Password to use for Redis connections; unset sends no AUTH. Sealed at rest."),
        Field::integer("database")
            .default(json!(0))
            .describe_as("Database to use for the Redis connection when using the `redis` strategy"),
        Field::boolean("ssl").default(json!(false)).check(no_tls).describe_as(
            "If set to true, uses SSL to connect to Redis. Not supported by Gatehouse yet: must be false.",
        ),
        Field::boolean("ssl_verify")
            .default(json!(false))
            .describe_as("If set to true, verifies the validity of the server SSL certificate."),
        Field::string("server_name")
            .check(sni)
            .describe_as("A string representing an SNI (server name indication) value for TLS."),
    ]
}

/// The typed config the plugin runs with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub second: Option<f64>,
    pub minute: Option<f64>,
    pub hour: Option<f64>,
    pub day: Option<f64>,
    pub month: Option<f64>,
    pub year: Option<f64>,
    pub limit_by: LimitBy,
    pub header_name: Option<String>,
    pub path: Option<String>,
    pub policy: PolicyName,
    pub fault_tolerant: bool,
    pub redis: Redis,
    pub hide_client_headers: bool,
    pub error_code: f64,
    pub error_message: String,
    pub sync_rate: f64,
}

impl Config {
    /// The configured limits, in [`PERIODS`] order.
    pub fn limits(&self) -> [Option<f64>; 6] {
        [self.second, self.minute, self.hour, self.day, self.month, self.year]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitBy {
    Consumer,
    Credential,
    Ip,
    Service,
    Header,
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    Local,
    Cluster,
    Redis,
}

/// The `redis` block; its password's `Debug` is `[redacted]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Redis {
    pub host: Option<String>,
    pub port: u16,
    pub timeout: u64,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub database: i64,
    pub ssl: bool,
    pub ssl_verify: bool,
    pub server_name: Option<String>,
}

/// Kong's entity checks and its `custom_validator`, in Kong's order.
pub fn check(config: &Map<String, Value>, checks: &mut super::Checks) {
    let number = |f: &str| config.get(f).and_then(Value::as_f64);
    let text = |f: &str| config.get(f).and_then(Value::as_str);
    checks.at_least_one_of(config, &PERIODS);
    let redis_host = config.get("redis").and_then(|r| r.get("host")).and_then(Value::as_str);
    if text("policy") == Some("redis") && redis_host.is_none() {
        checks.required_given("redis.host", "policy");
    }
    if text("limit_by") == Some("header") && text("header_name").is_none() {
        checks.required_given("header_name", "limit_by");
    }
    if text("limit_by") == Some("path") && text("path").is_none() {
        checks.required_given("path", "limit_by");
    }
    if !checks.is_empty() {
        // Kong's record validator runs once the entity checks pass.
        return;
    }
    for (i, lower) in PERIODS.iter().enumerate() {
        let Some(v1) = number(lower) else { continue };
        for upper in &PERIODS[i + 1..] {
            if let Some(v2) = number(upper)
                && v2 < v1
            {
                return checks.config(format!(
                    "The limit for {upper}({v2:.1}) cannot be lower than the limit for {lower}({v1:.1})"
                ));
            }
        }
    }
    let sync_rate = number("sync_rate").unwrap_or(SYNC_RATE_REALTIME);
    // Kong batches `redis` only; Gatehouse's stores batch `cluster` the same way (the issue asks for it), so
    // only `local`, which has nothing to sync, refuses a sync rate.
    let shared_store = matches!(text("policy"), Some("redis" | "cluster"));
    if !shared_store && sync_rate != SYNC_RATE_REALTIME {
        checks.config("sync_rate can only be used with the redis or cluster policy");
    } else if shared_store && sync_rate != SYNC_RATE_REALTIME && sync_rate != 0.0 && sync_rate < 0.02 {
        checks.config("sync_rate must be greater than 0.02, or -1 to disable");
    }
}

/// The Redis client is built without TLS: refused where the mistake is made, naming the field, rather than when
/// the gateway compiles the configuration.
fn no_tls(v: &Value) -> Result<(), String> {
    if v.as_bool() == Some(true) {
        Err("TLS connections to Redis are not supported by this build; reach Redis over loopback or a TLS tunnel"
            .into())
    } else {
        Ok(())
    }
}

fn positive(v: &Value) -> Result<(), String> {
    if v.as_f64().is_some_and(|n| n > 0.0) { Ok(()) } else { Err("value must be greater than 0".into()) }
}

/// Kong accepts any positive number and then fails every limited request with a 500, because
/// `kong.response.error` takes 400–599 only: refused here instead, where the mistake is made.
fn error_status(v: &Value) -> Result<(), String> {
    match v.as_f64() {
        Some(n) if n <= 0.0 => Err("value must be greater than 0".into()),
        Some(n) if n.fract() == 0.0 && (400.0..=599.0).contains(&n) => Ok(()),
        _ => Err("value should be between 400 and 599 (an HTTP error status)".into()),
    }
}

/// Kong's `typedefs.header_name`.
fn header_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(format!("bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"))
    }
}

/// Kong's `typedefs.path`: starts with `/`, no empty segment, RFC 3986 characters, well-formed percent escapes.
fn path(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if !s.starts_with('/') {
        return Err("should start with: /".into());
    }
    if s.contains("//") {
        return Err("must not have empty segments".into());
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-~/%:@!$&'()*+,;=".contains(&b);
    if !s.bytes().all(allowed) {
        return Err(format!("invalid path: '{s}' (characters outside of the reserved list of RFC 3986 found)"));
    }
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        let escape = bytes.get(i + 1..i + 3);
        if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
            let end = (i + 3).min(s.len());
            return Err(format!("invalid url-encoded value: '{}'", &s[i..end]));
        }
    }
    Ok(())
}

/// Kong's `typedefs.host`: a name or an address, without a port.
fn host(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or("");
    if let Some((name, port)) = s.rsplit_once(':')
        && !name.contains(':')
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("must not have a port".into());
    }
    let bare = s.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(s);
    if bare.parse::<std::net::IpAddr>().is_ok() || url::Host::parse(s).is_ok_and(|h| matches!(h, url::Host::Domain(_)))
    {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

/// Kong's `typedefs.sni`: a host name, not an address, without a port.
pub(crate) fn sni(v: &Value) -> Result<(), String> {
    host(v)?;
    let s = v.as_str().unwrap_or("");
    let bare = s.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(s);
    if bare.parse::<std::net::IpAddr>().is_ok() { Err("must not be an IP".into()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::schema::{Violation, normalize};

    /// The config as the plugin entity's validation leaves it: fields, then the plugin's checks.
    fn validated(config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let mut violations: Vec<Violation> = Vec::new();
        let out = normalize(&config_fields(), config.as_object().unwrap(), "config", &mut violations);
        if violations.is_empty() {
            let mut checks = super::super::Checks::default();
            check(&out, &mut checks);
            let found = checks.into_violations();
            if found.is_empty() { Ok(out) } else { Err(found.into_iter().map(|v| (v.path, v.message)).collect()) }
        } else {
            Err(violations.into_iter().map(|v| (v.path, v.message)).collect())
        }
    }

    fn refused(config: Value) -> (String, String) {
        let mut errors = validated(config.clone()).expect_err(&config.to_string());
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    /// A `conditional` check's two reports: the missing field, and the condition on the entity.
    fn required_given(config: Value) -> (String, String) {
        let errors = validated(config.clone()).expect_err(&config.to_string());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].1, "required field missing");
        assert_eq!(errors[1].0, "@entity");
        (errors[0].0.clone(), errors[1].1.clone())
    }

    #[test]
    fn kongs_defaults_fill_a_minimal_config() {
        let config = validated(json!({"second": 5})).unwrap();
        let typed: Config = serde_json::from_value(Value::Object(config.clone())).unwrap();
        assert_eq!(typed.limits(), [Some(5.0), None, None, None, None, None]);
        assert_eq!((typed.limit_by, typed.policy), (LimitBy::Consumer, PolicyName::Local));
        assert!(typed.fault_tolerant && !typed.hide_client_headers);
        assert_eq!((typed.error_code, typed.error_message.as_str()), (429.0, "API rate limit exceeded"));
        assert_eq!(typed.sync_rate, -1.0);
        assert_eq!(
            config["redis"],
            json!({"host": null, "port": 6379, "timeout": 2000, "username": null, "password": null,
                "database": 0, "ssl": false, "ssl_verify": false, "server_name": null})
        );
        assert_eq!(config_fields().len(), 16, "Kong's OSS fields, no more");
        assert!(config_fields().iter().all(|f| f.description.is_some()));
    }

    #[test]
    fn at_least_one_limit_is_required() {
        assert_eq!(
            refused(json!({"limit_by": "ip"})),
            (
                "@entity".into(),
                "at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', \
                 'config.day', 'config.month', 'config.year'"
                    .into()
            )
        );
        // Every entity check runs, as Kong's do: one answer names every problem.
        assert_eq!(
            validated(json!({"policy": "redis"})).unwrap_err(),
            [
                (
                    "@entity".to_owned(),
                    "at least one of these fields must be non-empty: 'config.second', 'config.minute', \
                     'config.hour', 'config.day', 'config.month', 'config.year'"
                        .to_owned()
                ),
                ("config.redis.host".to_owned(), "required field missing".to_owned()),
                ("@entity".to_owned(), "failed conditional validation given value of field 'config.policy'".to_owned()),
            ]
        );
        assert_eq!(refused(json!({"minute": 0})), ("config.minute".into(), "value must be greater than 0".into()));
        assert_eq!(refused(json!({"hour": -1})).1, "value must be greater than 0");
        assert_eq!(refused(json!({"day": "10"})).1, "expected a number");
        assert!(validated(json!({"year": 0.5})).is_ok(), "a number, as in Kong: fractions are allowed");
    }

    #[test]
    fn longer_periods_may_not_have_lower_limits() {
        assert_eq!(
            refused(json!({"second": 10, "minute": 5})).1,
            "The limit for minute(5.0) cannot be lower than the limit for second(10.0)"
        );
        assert_eq!(
            refused(json!({"second": 1, "hour": 100, "year": 99.5})).1,
            "The limit for year(99.5) cannot be lower than the limit for hour(100.0)"
        );
        assert!(validated(json!({"second": 10, "minute": 10, "month": 100})).is_ok(), "equal is allowed");
    }

    #[test]
    fn header_and_path_are_required_by_their_limit_by() {
        let given_limit_by = "failed conditional validation given value of field 'config.limit_by'".to_owned();
        assert_eq!(
            required_given(json!({"second": 1, "limit_by": "header"})),
            ("config.header_name".to_owned(), given_limit_by.clone())
        );
        assert_eq!(
            required_given(json!({"second": 1, "limit_by": "path"})),
            ("config.path".to_owned(), given_limit_by)
        );
        assert!(validated(json!({"second": 1, "limit_by": "header", "header_name": "X-Api_Key"})).is_ok());
        assert!(validated(json!({"second": 1, "limit_by": "path", "path": "/a/b%2Fc"})).is_ok());
        // Set but unused: allowed, as in Kong.
        assert!(validated(json!({"second": 1, "limit_by": "ip", "header_name": "x-a", "path": "/p"})).is_ok());
        assert_eq!(
            refused(json!({"second": 1, "limit_by": "header", "header_name": "x a"})),
            (
                "config.header_name".into(),
                "bad header name 'x a', allowed characters are A-Z, a-z, 0-9, '_', and '-'".into()
            )
        );
        assert_eq!(refused(json!({"second": 1, "path": "p"})).1, "should start with: /");
        assert_eq!(refused(json!({"second": 1, "path": "/a//b"})).1, "must not have empty segments");
        assert_eq!(
            refused(json!({"second": 1, "path": "/a b"})).1,
            "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"
        );
        assert_eq!(refused(json!({"second": 1, "path": "/a%zz"})).1, "invalid url-encoded value: '%zz'");
        assert_eq!(
            refused(json!({"second": 1, "limit_by": "consumer-group"})),
            ("config.limit_by".into(), "expected one of: consumer, credential, ip, service, header, path".into())
        );
    }

    #[test]
    fn policies_their_redis_block_and_sync_rate() {
        assert_eq!(
            required_given(json!({"second": 1, "policy": "redis"})),
            (
                "config.redis.host".to_owned(),
                "failed conditional validation given value of field 'config.policy'".to_owned()
            )
        );
        let config =
            validated(json!({"second": 1, "policy": "redis", "redis": {"host": "127.0.0.1", "password": "pw"}}))
                .unwrap();
        let typed: Config = serde_json::from_value(Value::Object(config.clone())).unwrap();
        assert_eq!(typed.policy, PolicyName::Redis);
        assert_eq!(
            (typed.redis.host.as_deref(), typed.redis.port, typed.redis.timeout),
            (Some("127.0.0.1"), 6379, 2000)
        );
        assert_eq!(typed.redis.password.as_ref().map(SecretString::expose), Some("pw"));
        assert!(!format!("{typed:?}").contains("pw"), "the password is redacted");
        let secrets = super::super::encrypted_values(NAME, &config);
        assert_eq!(secrets, [("redis.password".to_owned(), "pw")], "the password is sealed at rest");

        assert_eq!(refused(json!({"second": 1, "policy": "memory"})).1, "expected one of: local, cluster, redis");
        assert_eq!(
            refused(json!({"second": 1, "sync_rate": 1})).1,
            "sync_rate can only be used with the redis or cluster policy"
        );
        assert!(validated(json!({"second": 1, "policy": "cluster", "sync_rate": 2})).is_ok(), "batched cluster");
        assert!(validated(json!({"second": 1, "policy": "cluster", "sync_rate": 0})).is_ok(), "0 is synchronous");
        assert_eq!(
            refused(json!({"second": 1, "policy": "redis", "redis": {"host": "r"}, "sync_rate": 0.01})).1,
            "sync_rate must be greater than 0.02, or -1 to disable"
        );
        assert!(validated(json!({"second": 1, "policy": "redis", "redis": {"host": "r"}, "sync_rate": 0.5})).is_ok());
        assert!(validated(json!({"second": 1, "policy": "cluster"})).is_ok());
        for (redis, path, message) in [
            (json!({"host": "r:6379"}), "config.redis.host", "must not have a port"),
            (json!({"host": "a b"}), "config.redis.host", "invalid value: a b"),
            (json!({"host": "r", "port": 70000}), "config.redis.port", "value should be between 0 and 65535"),
            (json!({"host": "r", "timeout": -1}), "config.redis.timeout", "value should be between 0 and 2147483646"),
            (json!({"host": "r", "server_name": "10.0.0.1"}), "config.redis.server_name", "must not be an IP"),
            (
                json!({"host": "r", "ssl": true}),
                "config.redis.ssl",
                "TLS connections to Redis are not supported by this build; reach Redis over loopback or a TLS tunnel",
            ),
        ] {
            assert_eq!(
                refused(json!({"second": 1, "policy": "redis", "redis": redis})),
                (path.to_owned(), message.to_owned())
            );
        }
        assert!(validated(json!({"second": 1, "policy": "redis", "redis": {"host": "::1"}})).is_ok());
    }

    #[test]
    fn error_code_is_an_error_status() {
        assert!(validated(json!({"second": 1, "error_code": 503, "error_message": "slow down"})).is_ok());
        assert_eq!(refused(json!({"second": 1, "error_code": 0})).1, "value must be greater than 0");
        for bad in [200.0, 429.5, 600.0] {
            assert_eq!(
                refused(json!({"second": 1, "error_code": bad})),
                ("config.error_code".into(), "value should be between 400 and 599 (an HTTP error status)".into())
            );
        }
    }
}
