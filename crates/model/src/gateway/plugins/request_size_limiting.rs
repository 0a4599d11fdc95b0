//! `request-size-limiting`'s config (Kong's schema): refuse request bodies larger than a size, counted in a unit.

use serde::Deserialize;
use serde_json::json;

use super::PluginInfo;
use crate::gateway::schema::Field;

pub const NAME: &str = "request-size-limiting";
pub const PRIORITY: i32 = 951;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check: super::no_check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::integer("allowed_payload_size")
            .default(json!(128))
            .describe_as("The largest request body allowed, in `size_unit`s; a larger one is answered 413."),
        Field::string("size_unit")
            .required()
            .default(json!("megabytes"))
            .one_of(&["megabytes", "kilobytes", "bytes"])
            .describe_as("The unit of `allowed_payload_size`: `bytes`, `kilobytes` (1024) or `megabytes` (1048576)."),
        Field::boolean("require_content_length")
            .required()
            .default(json!(false))
            .describe_as("Answer 411 to a request without a valid `Content-Length` that is not chunked."),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeUnit {
    Megabytes,
    Kilobytes,
    Bytes,
}

impl SizeUnit {
    pub fn bytes(self) -> u64 {
        match self {
            SizeUnit::Megabytes => 1 << 20,
            SizeUnit::Kilobytes => 1 << 10,
            SizeUnit::Bytes => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub allowed_payload_size: i64,
    pub size_unit: SizeUnit,
    pub require_content_length: bool,
}

impl Config {
    /// The limit in bytes; `None` when Kong's comparison (`length > allowed`) refuses every body, even an empty
    /// one (a negative size).
    pub fn limit(&self) -> Option<u64> {
        u64::try_from(self.allowed_payload_size).ok().map(|n| n.saturating_mul(self.size_unit.bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::schema::normalize;

    fn validate(input: serde_json::Value) -> (serde_json::Map<String, serde_json::Value>, Vec<(String, String)>) {
        let mut v = Vec::new();
        let out = normalize(&config_fields(), input.as_object().unwrap(), "config", &mut v);
        (out, v.into_iter().map(|x| (x.path, x.message)).collect())
    }

    #[test]
    fn kongs_defaults_and_units() {
        let (out, errors) = validate(json!({}));
        assert!(errors.is_empty());
        assert_eq!(
            serde_json::Value::Object(out.clone()),
            json!({"allowed_payload_size": 128, "size_unit": "megabytes", "require_content_length": false})
        );
        let config: Config = serde_json::from_value(serde_json::Value::Object(out)).unwrap();
        assert_eq!(config.limit(), Some(128 * 1024 * 1024));
        let kb = Config { allowed_payload_size: 3, size_unit: SizeUnit::Kilobytes, require_content_length: false };
        assert_eq!(kb.limit(), Some(3072));
        assert_eq!(Config { allowed_payload_size: -1, ..kb.clone() }.limit(), None);
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let (_, errors) = validate(json!({"allowed_payload_size": "big", "size_unit": "gigabytes",
            "require_content_length": "yes"}));
        assert_eq!(
            errors,
            [
                ("config.allowed_payload_size".into(), "expected an integer".into()),
                ("config.size_unit".into(), "expected one of: megabytes, kilobytes, bytes".into()),
                ("config.require_content_length".into(), "expected a boolean".into()),
            ]
        );
        let (_, errors) = validate(json!({"allowed_payload_size": 1.5}));
        assert_eq!(errors, [("config.allowed_payload_size".into(), "expected an integer".into())]);
    }
}
