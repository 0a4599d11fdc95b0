//! `acl`'s config (Kong's schema): allow or deny a request by the groups (`acls`) of the consumer an
//! authentication plugin identified.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Checks, PluginInfo};
use crate::gateway::schema::Field;

pub const NAME: &str = "acl";
/// After every authentication plugin (oauth2-introspection is 1700), so the consumer is known.
pub const PRIORITY: i32 = 950;

/// Kong's schema sets `consumer = typedefs.no_consumer`: the groups being checked are the consumer's own.
pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: false, config: config_fields, check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::array("allow", Field::string("group")).describe_as(
            "Group names allowed to consume the service or route. One of `config.allow` or `config.deny` must be \
             specified.",
        ),
        Field::array("deny", Field::string("group")).describe_as(
            "Group names not allowed to consume the service or route. One of `config.allow` or `config.deny` must \
             be specified.",
        ),
        Field::boolean("hide_groups_header")
            .required()
            .default(json!(false))
            .describe_as("When `true`, the `X-Consumer-Groups` header is not sent to the upstream service."),
        Field::boolean("always_use_authenticated_groups").required().default(json!(false)).describe_as(
            "When `true`, the groups an authentication plugin reports are used even when a consumer was \
             identified; no Gatehouse authentication plugin reports groups, so the consumer's are used.",
        ),
        // Kong Enterprise's consumer groups, which Gatehouse does not have.
        Field::boolean("include_consumer_groups")
            .default(json!(false))
            .input_only()
            .describe_as("Kong Enterprise: also match the consumer's consumer groups. Not supported."),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub hide_groups_header: bool,
    pub always_use_authenticated_groups: bool,
}

/// Kong's entity checks: `at_least_one_of` and `only_one_of` over `config.allow` and `config.deny`.
pub fn check(config: &Map<String, Value>, checks: &mut Checks) {
    checks.at_least_one_of(config, &["allow", "deny"]);
    checks.only_one_of(config, &["allow", "deny"]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{EntityKind, validate_entity};

    fn validate(config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let body = json!({"name": "acl", "config": config});
        validate_entity(EntityKind::Plugin, body.as_object().unwrap())
            .map_err(|e| e.into_iter().map(|v| (v.path, v.message)).collect())
    }

    #[test]
    fn defaults_fill_in_and_either_list_alone_is_accepted() {
        let plugin = validate(json!({"allow": ["admins"]})).unwrap();
        assert_eq!(
            plugin["config"],
            json!({"allow": ["admins"], "deny": null, "hide_groups_header": false,
                "always_use_authenticated_groups": false})
        );
        let plugin = validate(json!({"deny": ["banned"], "hide_groups_header": true})).unwrap();
        assert_eq!(plugin["config"]["hide_groups_header"], true);
        // What decK and Kong write for the list left out.
        validate(json!({"allow": ["a"], "deny": []})).unwrap();
        validate(json!({"allow": null, "deny": ["a"]})).unwrap();
        let config: Config = serde_json::from_value(plugin["config"].clone()).unwrap();
        assert_eq!(config.deny.as_deref(), Some(&["banned".to_owned()][..]));
    }

    #[test]
    fn kongs_entity_checks_report_under_at_entity() {
        let neither = "at least one of these fields must be non-empty: 'config.allow', 'config.deny'";
        let both = "exactly one of these fields must be non-empty: 'config.allow', 'config.deny'";
        // Kong's `only_one_of` runs only when both fields are given (`run_with_missing_fields = false`), so two
        // empty lists fail both checks.
        for (config, messages) in [
            (json!({}), vec![neither]),
            (json!({"allow": [], "deny": []}), vec![neither, both]),
            (json!({"hide_groups_header": true}), vec![neither]),
            (json!({"allow": ["a"], "deny": ["b"]}), vec![both]),
        ] {
            let expected: Vec<(String, String)> =
                messages.into_iter().map(|m| ("@entity".to_owned(), m.to_owned())).collect();
            assert_eq!(validate(config.clone()).unwrap_err(), expected, "{config}");
        }
    }

    #[test]
    fn fields_are_typed_and_the_plugin_cannot_be_scoped_to_a_consumer() {
        let e = validate(json!({"allow": "admins"})).unwrap_err();
        assert_eq!(e[0].0, "config.allow");
        let e = validate(json!({"allow": ["a"], "hide_groups_header": "yes"})).unwrap_err();
        assert_eq!(e[0], ("config.hide_groups_header".to_owned(), "expected a boolean".to_owned()));
        let e = validate(json!({"allow": [""]})).unwrap_err();
        assert_eq!(e[0].0, "config.allow.1");
        let body = json!({"name": "acl", "consumer": {"id": "0190a0a0-0000-7000-8000-000000000001"},
            "config": {"allow": ["a"]}});
        let e = validate_entity(EntityKind::Plugin, body.as_object().unwrap()).unwrap_err();
        assert_eq!(e[0].path, "consumer");
        assert_eq!(e[0].message, "value must be null; the acl plugin cannot be applied to a consumer");
    }

    #[test]
    fn enterprise_consumer_groups_are_accepted_off_and_refused_on() {
        let plugin = validate(json!({"allow": ["a"], "include_consumer_groups": false})).unwrap();
        assert!(plugin["config"].get("include_consumer_groups").is_none(), "Kong OSS does not return it");
        let e = validate(json!({"allow": ["a"], "include_consumer_groups": true})).unwrap_err();
        assert_eq!(e[0].0, "config.include_consumer_groups");
        assert!(e[0].1.starts_with("not supported by Gatehouse"), "{}", e[0].1);
    }
}
