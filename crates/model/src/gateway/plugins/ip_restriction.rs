//! `ip-restriction`'s config (Kong's schema): addresses and CIDR ranges a request's client address must be in
//! (`allow`) or must not be in (`deny`), and the answer to the others.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::PluginInfo;
use crate::gateway::schema::Field;

pub const NAME: &str = "ip-restriction";
pub const PRIORITY: i32 = 990;

pub static INFO: PluginInfo =
    PluginInfo { name: NAME, priority: PRIORITY, consumer_scope: true, config: config_fields, check };

pub fn config_fields() -> Vec<Field> {
    vec![
        Field::array("allow", Field::string("address").check(ip_or_cidr))
            .describe_as("Addresses or CIDR ranges (IPv4 or IPv6) allowed; others are refused. One of `allow` or `deny` must be set."),
        Field::array("deny", Field::string("address").check(ip_or_cidr))
            .describe_as("Addresses or CIDR ranges (IPv4 or IPv6) refused, even when `allow` holds them."),
        Field::number("status").check(error_status)
            .describe_as("The status refused requests are answered with; unset: 403."),
        Field::string("message")
            .describe_as("The message refused requests are answered with; unset: `IP address not allowed: <address>`."),
    ]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub status: Option<f64>,
    pub message: Option<String>,
}

/// Kong's entity check: `at_least_one_of` allow, deny.
pub fn check(config: &Map<String, Value>, checks: &mut super::Checks) {
    checks.at_least_one_of(config, &["allow", "deny"]);
}

/// An address, or an address and a prefix length written as Kong's validator takes it (decimal, no sign, no
/// leading zero, at most 32 for IPv4 and 128 for IPv6). The address bits past the prefix may be set
/// (`127.0.0.1/8`), as Kong allows.
pub fn parse_ip_or_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0')) => p.parse().ok()?,
        Some(_) => return None,
    };
    (prefix <= max).then_some((address, prefix))
}

fn ip_or_cidr(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    match parse_ip_or_cidr(s) {
        Some(_) => Ok(()),
        None => Err(format!("invalid ip or cidr range: '{s}'")),
    }
}

/// Kong answers with `kong.response.error`, which takes 400 to 599 only and fails the request with a 500
/// otherwise; refusing such a status when the plugin is configured says so where it can be fixed.
fn error_status(v: &Value) -> Result<(), String> {
    match v.as_f64() {
        Some(n) if n.fract() == 0.0 && (400.0..=599.0).contains(&n) => Ok(()),
        _ => Err("value should be between 400 and 599".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::EntityKind;
    use crate::gateway::entities::validate_entity;
    use serde_json::json;

    fn plugin(config: Value) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let entity = json!({"name": NAME, "config": config});
        validate_entity(EntityKind::Plugin, entity.as_object().unwrap())
            .map_err(|v| v.into_iter().map(|v| (v.path, v.message)).collect())
    }

    #[test]
    fn kongs_valid_configs() {
        for ok in [
            json!({"allow": ["127.0.0.1/32", "127.0.0.2/32"]}),
            json!({"allow": ["127.0.0.1/32"], "status": 403, "message": "Forbidden"}),
            json!({"allow": ["127.0.0.1/8"]}),
            json!({"deny": ["127.0.0.1", "::1"]}),
            json!({"deny": ["127.0.0.2/32"], "allow": ["127.0.0.1/32"]}),
            json!({"allow": ["::/0", "::/1", "::/128", "2001:db8::/32", "0.0.0.0/0"]}),
        ] {
            let entity = plugin(ok.clone()).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
            let config: Config = serde_json::from_value(entity["config"].clone()).unwrap();
            assert!(config.allow.is_some() || config.deny.is_some());
        }
    }

    #[test]
    fn kongs_invalid_addresses_name_the_element() {
        let refused = plugin(json!({"allow": ["127.0.0.1/32", "127.0.0.2/32", "hello"]})).unwrap_err();
        assert_eq!(refused, [("config.allow.3".to_owned(), "invalid ip or cidr range: 'hello'".to_owned())]);
        let bad =
            ["0.0.0.0/a", "0.0.0.0/-1", "0.0.0.0/33", "::/a", "::/-1", "::/129", "::1/129", "1.2.3.4/08", "1.2.3"];
        let refused = plugin(json!({ "deny": bad })).unwrap_err();
        let expected: Vec<(String, String)> = bad
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("config.deny.{}", i + 1), format!("invalid ip or cidr range: '{b}'")))
            .collect();
        assert_eq!(refused, expected);
        assert_eq!(plugin(json!({"allow": 12})).unwrap_err()[0].1, "expected an array");
    }

    #[test]
    fn one_of_allow_or_deny_must_hold_something() {
        let message = "at least one of these fields must be non-empty: 'config.allow', 'config.deny'";
        for config in [json!({}), json!({"allow": [], "deny": []}), json!({"allow": null})] {
            assert_eq!(plugin(config).unwrap_err(), [("@entity".to_owned(), message.to_owned())]);
        }
    }

    #[test]
    fn the_status_is_an_error_status() {
        for bad in [json!(200), json!(403.5), json!(600)] {
            let refused = plugin(json!({"deny": ["::1"], "status": bad})).unwrap_err();
            assert_eq!(refused, [("config.status".to_owned(), "value should be between 400 and 599".to_owned())]);
        }
        assert!(plugin(json!({"deny": ["::1"], "status": 401.0})).is_ok());
    }

    #[test]
    fn prefixes_parse_like_kongs_validator() {
        assert_eq!(parse_ip_or_cidr("10.1.2.3"), Some(("10.1.2.3".parse().unwrap(), 32)));
        assert_eq!(parse_ip_or_cidr("10.0.0.0/8"), Some(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(parse_ip_or_cidr("fe80::/10"), Some(("fe80::".parse().unwrap(), 10)));
        assert_eq!(parse_ip_or_cidr("::1"), Some(("::1".parse().unwrap(), 128)));
        for bad in ["10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/8/8", "", "/8", "host.example"] {
            assert_eq!(parse_ip_or_cidr(bad), None, "{bad}");
        }
    }
}
