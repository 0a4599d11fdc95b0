//! The plugins Gatehouse knows: their config schemas (with a default per field, as Kong's) and their traits.
//! Behaviour lives in the gateway crate, one folder per plugin; schemas live here so the control plane and the
//! CLI can validate configurations without the data plane. This module knows configs only: the plugin entity
//! around them (`name`, scopes, `protocols`, …) is `entities`' business, which depends on this module and not
//! the other way round.

pub mod acl;
pub mod basic_auth;
mod checks;
pub mod correlation_id;
pub mod cors;
pub mod ip_restriction;
pub mod jwt;
pub mod key_auth;
pub mod logging;
pub mod oauth2_introspection;
pub mod openid_connect;
pub mod opentelemetry;
pub mod prometheus;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_transformer;
pub mod upstream_oauth;

use serde_json::{Map, Value};

use super::schema::{Field, Kind, Violation};

/// What the control plane needs to know about a plugin: each plugin's module declares one (`INFO`), and the
/// gateway's registry pairs the same value with the plugin's handler.
#[derive(Debug, Clone, Copy)]
pub struct PluginInfo {
    pub name: &'static str,
    /// Kong's priority: plugins run in descending order.
    pub priority: i32,
    pub consumer_scope: bool,
    pub config: fn() -> Vec<Field>,
    /// Kong's checks across fields of the (normalised) config, run once every field is valid; each failure is
    /// pushed where Kong reports it (see [`Checks`]).
    pub check: fn(&Map<String, Value>, &mut Checks),
}

/// What a plugin's cross-field checks found, placed as Kong places them: its `entity_checks` messages
/// (`at_least_one_of`, `only_one_of`, `conditional`) under `@entity`, a `conditional`'s missing field at its own
/// path (`config.header_name: required field missing`), and a `custom_validator`'s message on `config`. Every
/// check runs, so one answer names every problem, as Kong's does.
#[derive(Debug, Default)]
pub struct Checks(Vec<Violation>);

impl Checks {
    pub fn into_violations(self) -> Vec<Violation> {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A Kong entity check's message, reported under `@entity`.
    pub fn entity(&mut self, message: impl Into<String>) {
        self.0.push(Violation::new("@entity", message));
    }

    /// A message at a field's own path (`config.claims_to_verify`), as a `conditional`'s `then_match` reports.
    pub fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation::new(path, message));
    }

    /// A `custom_validator`'s message on the config record.
    pub fn config(&mut self, message: impl Into<String>) {
        self.0.push(Violation::new("config", message));
    }

    /// Kong's `conditional` check: `field` (a path under `config`, `redis.host`) is required because of the value
    /// of `given`. Reported twice, as Kong does: on the field, and on the entity.
    pub fn required_given(&mut self, field: &str, given: &str) {
        self.0.push(Violation::new(format!("config.{field}"), "required field missing"));
        self.entity(format!("failed conditional validation given value of field 'config.{given}'"));
    }

    /// Kong's `at_least_one_of` entity check over config fields, with its message.
    pub fn at_least_one_of(&mut self, config: &Map<String, Value>, fields: &[&str]) {
        if !fields.iter().any(|f| non_empty(config, f)) {
            self.entity(format!("at least one of these fields must be non-empty: {}", quoted_config_fields(fields)));
        }
    }

    /// Kong's `only_one_of` entity check over config fields, with its message. Like Kong's, it does not run
    /// while one of the fields is missing (`run_with_missing_fields = false`): `at_least_one_of` covers that.
    pub fn only_one_of(&mut self, config: &Map<String, Value>, fields: &[&str]) {
        let missing = fields.iter().any(|f| config.get(*f).is_none_or(Value::is_null));
        let set = fields.iter().filter(|f| non_empty(config, f)).count();
        if set > 1 || (!missing && set == 0) {
            self.entity(format!("exactly one of these fields must be non-empty: {}", quoted_config_fields(fields)));
        }
    }
}

/// Kong's `is_nonempty`: not null, not an empty string, list or record.
fn non_empty(config: &Map<String, Value>, field: &str) -> bool {
    match config.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

fn quoted_config_fields(fields: &[&str]) -> String {
    fields.iter().map(|f| format!("'config.{f}'")).collect::<Vec<_>>().join(", ")
}

/// No checks across fields.
pub fn no_check(_: &Map<String, Value>, _: &mut Checks) {}

/// Every plugin the control plane accepts. The gateway's registry must hold the same set (a test there checks).
pub const PLUGINS: &[&PluginInfo] = &[
    &acl::INFO,
    &basic_auth::INFO,
    &correlation_id::INFO,
    &cors::INFO,
    &logging::FILE_LOG_INFO,
    &logging::HTTP_LOG_INFO,
    &ip_restriction::INFO,
    &jwt::INFO,
    &key_auth::INFO,
    &oauth2_introspection::INFO,
    &openid_connect::INFO,
    &opentelemetry::INFO,
    &prometheus::INFO,
    &rate_limiting::INFO,
    &request_size_limiting::INFO,
    &request_termination::INFO,
    &request_transformer::INFO,
    &response_transformer::INFO,
    &logging::SYSLOG_INFO,
    &logging::TCP_LOG_INFO,
    &logging::UDP_LOG_INFO,
    &upstream_oauth::INFO,
];

pub fn info(name: &str) -> Option<&'static PluginInfo> {
    PLUGINS.iter().copied().find(|p| p.name == name)
}

pub fn config_fields(name: &str) -> Option<Vec<Field>> {
    info(name).map(|p| (p.config)())
}

pub fn allows_consumer_scope(name: &str) -> bool {
    info(name).is_none_or(|p| p.consumer_scope)
}

/// The secret strings of a plugin's `config`, each with its path under `config`: the value of every field marked
/// encrypted (`authorization_value`), every element of an array that is (Kong's `openid-connect` `client_secret`,
/// `client_secret.0`), every value of a map whose values are (`custom_introspection_headers.<name>`), and the
/// encrypted fields of records, at any depth (`redis.password`, `cache.redis.password`).
/// Whatever is not a string (an unset field) is left out.
pub fn encrypted_values<'a>(name: &str, config: &'a Map<String, Value>) -> Vec<(String, &'a str)> {
    config_fields(name).map(|fields| secret_strings(&fields, config)).unwrap_or_default()
}

fn secret_strings<'a>(fields: &[Field], config: &'a Map<String, Value>) -> Vec<(String, &'a str)> {
    let mut found = Vec::new();
    collect_encrypted(fields, config, "", &mut found);
    found
}

fn collect_encrypted<'a>(
    fields: &[Field],
    config: &'a Map<String, Value>,
    prefix: &str,
    found: &mut Vec<(String, &'a str)>,
) {
    for field in fields {
        let Some(value) = config.get(field.name) else { continue };
        let path = format!("{prefix}{}", field.name);
        match (&field.kind, value) {
            (_, Value::String(text)) if field.encrypted => found.push((path, text.as_str())),
            // Each element is sealed on its own, bound to its index: Kong lists one secret per client.
            (Kind::Array(of) | Kind::Set(of), Value::Array(items)) if field.encrypted || of.encrypted => {
                found.extend(items.iter().enumerate().filter_map(|(i, v)| Some((format!("{path}.{i}"), v.as_str()?))))
            }
            (Kind::Map { values, .. }, Value::Object(map)) if values.encrypted => {
                found.extend(map.iter().filter_map(|(key, v)| Some((format!("{path}.{key}"), v.as_str()?))));
            }
            // `config_value_mut` reaches a record's fields by the same dotted path.
            (Kind::Record(inner), Value::Object(record)) => {
                collect_encrypted(inner, record, &format!("{path}."), found)
            }
            _ => {}
        }
    }
}

/// The value at a path [`encrypted_values`] gave: a field, `record.field` (at any depth), `field.key` for a map's
/// value or `field.index` for an array's element. Field names have no dot, so a map key (which may hold dots) is
/// whatever follows the map's name: a key present whole is taken before the path is split further.
pub fn config_value_mut<'a>(config: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    match path.split_once('.') {
        Some((field, rest)) => match config.get_mut(field)? {
            Value::Object(inner) => {
                if inner.contains_key(rest) {
                    inner.get_mut(rest)
                } else {
                    config_value_mut(inner, rest)
                }
            }
            Value::Array(items) => items.get_mut(rest.parse::<usize>().ok()?),
            _ => None,
        },
        None => config.get_mut(path),
    }
}

/// A `PATCH` of a plugin's `config`, as Kong's `Schema:merge_values` does it: each field of `patch` replaces the
/// current one, except a record (`oauth`, `redis`) given as an object, which merges field by field, at any depth.
/// Maps and arrays are replaced whole; a record set to null is replaced by null. An unknown plugin merges one level.
pub fn merge_config(name: &str, current: &mut Map<String, Value>, patch: Map<String, Value>) {
    merge_fields(&config_fields(name).unwrap_or_default(), current, patch);
}

fn merge_fields(fields: &[Field], current: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        let record = fields.iter().find(|f| f.name == key).and_then(|f| match &f.kind {
            Kind::Record(inner) => Some(inner),
            _ => None,
        });
        match (record, current.get_mut(&key), value) {
            (Some(inner), Some(Value::Object(now)), Value::Object(changes)) => merge_fields(inner, now, changes),
            (_, _, value) => {
                current.insert(key, value);
            }
        }
    }
}

/// Gatehouse-only config fields and their defaults (`negative_ttl`): dumps leave them out while they have them,
/// so a dump reads like Kong's.
pub fn gatehouse_only_defaults(name: &str) -> Vec<(&'static str, Value)> {
    config_fields(name)
        .map(|f| f.into_iter().filter(|f| f.gatehouse_only).filter_map(|f| Some((f.name, f.default?))).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Kong's `merge_values`: records merge at any depth, maps and arrays are replaced, null replaces.
    #[test]
    fn a_patch_merges_records_field_by_field() {
        let mut config = json!({"oauth": {"token_endpoint": "https://idp/token", "client_id": "c", "scopes": ["a"]},
            "cache": {"strategy": "redis", "redis": {"host": "r", "port": 6379}},
            "behavior": {"upstream_access_token_header_name": "Authorization"}})
        .as_object()
        .cloned()
        .unwrap();
        let patch = json!({"oauth": {"client_secret": "s", "scopes": ["b"]}, "cache": {"redis": {"port": 6380}},
            "behavior": null})
        .as_object()
        .cloned()
        .unwrap();
        merge_config("upstream-oauth", &mut config, patch);
        assert_eq!(
            Value::Object(config),
            json!({"oauth": {"token_endpoint": "https://idp/token", "client_id": "c", "scopes": ["b"],
                "client_secret": "s"},
                "cache": {"strategy": "redis", "redis": {"host": "r", "port": 6380}}, "behavior": null})
        );
        let mut headers = json!({"custom_introspection_headers": {"a": "1"}}).as_object().cloned().unwrap();
        let patch = json!({"custom_introspection_headers": {"b": "2"}}).as_object().cloned().unwrap();
        merge_config("oauth2-introspection", &mut headers, patch);
        assert_eq!(
            Value::Object(headers),
            json!({"custom_introspection_headers": {"b": "2"}}),
            "a map is replaced whole"
        );
    }

    /// `openid-connect`'s client credentials are arrays of secrets: each element is found, reachable by its path,
    /// and nothing else is.
    #[test]
    fn every_element_of_an_encrypted_array_is_a_secret() {
        let fields = vec![
            Field::array("client_secret", Field::string("client_secret")).encrypted(),
            Field::array("client_id", Field::string("client_id").encrypted()),
            Field::array("scopes", Field::string("scope")),
            Field::map("headers", Field::string("name"), Field::string("value").encrypted()),
            Field::record("redis", vec![Field::string("host"), Field::string("password").encrypted()]),
        ];
        let mut config = json!({"client_secret": ["s-1", null, "s-3"], "client_id": ["id-1"], "scopes": ["openid"],
            "headers": {"0": "h-0"}, "redis": {"host": "r", "password": "pw"}})
        .as_object()
        .cloned()
        .unwrap();
        let found: Vec<(String, String)> =
            secret_strings(&fields, &config).into_iter().map(|(p, v)| (p, v.to_owned())).collect();
        let expected = [
            ("client_secret.0", "s-1"),
            ("client_secret.2", "s-3"),
            ("client_id.0", "id-1"),
            ("headers.0", "h-0"),
            ("redis.password", "pw"),
        ];
        assert_eq!(found, expected.map(|(p, v)| (p.to_owned(), v.to_owned())));
        for (path, value) in &found {
            let at = config_value_mut(&mut config, path).unwrap();
            assert_eq!(at, value, "{path}");
            *at = json!("sealed");
        }
        assert_eq!(config["client_secret"], json!(["sealed", null, "sealed"]));
        assert_eq!(config["headers"], json!({"0": "sealed"}), "a map key that reads as an index is still a key");
        assert_eq!(config["scopes"], json!(["openid"]));
        assert!(config_value_mut(&mut config, "client_secret.3").is_none());
        assert!(config_value_mut(&mut config, "client_secret.x").is_none());
        assert!(config_value_mut(&mut config, "scopes.0.x").is_none());
    }
}
