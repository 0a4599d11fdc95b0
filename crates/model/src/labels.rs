//! Konnect labels: at most 50 string pairs with restricted keys and values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problem::{InvalidParameter, Rule};

pub const MAX_LABELS: usize = 50;
const MAX_LEN: usize = 63;
const RESERVED_KEY_PREFIXES: [&str; 5] = ["kong", "konnect", "mesh", "kic", "_"];

/// At most 50 `key: value` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Labels(pub BTreeMap<String, String>);

/// A PATCH of labels: a `None` value removes the key, others are set; keys not named are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelsPatch(pub BTreeMap<String, Option<String>>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Applies a patch; the result must again fit the 50-pair limit.
    pub fn patched(&self, patch: &LabelsPatch, field: &str) -> Result<Labels, InvalidParameter> {
        let mut out = self.0.clone();
        for (k, v) in &patch.0 {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        if out.len() > MAX_LABELS {
            return Err(too_many(field));
        }
        Ok(Labels(out))
    }

    /// Reads a `labels` object from a request body.
    pub fn from_json(field: &str, v: &Value) -> Result<Labels, Vec<InvalidParameter>> {
        let patch = read(field, v, false)?;
        Ok(Labels(patch.0.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()))
    }
}

impl LabelsPatch {
    pub fn from_json(field: &str, v: &Value) -> Result<LabelsPatch, Vec<InvalidParameter>> {
        read(field, v, true)
    }
}

fn read(field: &str, v: &Value, allow_null_values: bool) -> Result<LabelsPatch, Vec<InvalidParameter>> {
    let Value::Object(map) = v else {
        return Err(vec![InvalidParameter::new(field, Rule::IsObject, "must be an object").in_body()]);
    };
    if map.len() > MAX_LABELS {
        return Err(vec![too_many(field)]);
    }
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let f = format!("{field}.{k}");
        if let Err(reason) = check_key(k) {
            errors.push(InvalidParameter::new(&f, Rule::IsLabel, reason).in_body());
            continue;
        }
        match v {
            Value::Null if allow_null_values => {
                out.insert(k.clone(), None);
            }
            Value::String(s) => match check_value(s) {
                Ok(()) => {
                    out.insert(k.clone(), Some(s.clone()));
                }
                Err(reason) => errors.push(InvalidParameter::new(&f, Rule::IsLabel, reason).in_body()),
            },
            _ => errors.push(InvalidParameter::new(&f, Rule::IsString, "label values must be strings").in_body()),
        }
    }
    if errors.is_empty() { Ok(LabelsPatch(out)) } else { Err(errors) }
}

fn too_many(field: &str) -> InvalidParameter {
    InvalidParameter::new(field, Rule::MaxItems, format!("must have at most {MAX_LABELS} labels"))
        .with_maximum(MAX_LABELS as i64)
        .in_body()
}

/// Keys: 1–63 characters, letters and digits at both ends, `-._/` inside (the `/` admits `team.io/owner`
/// style keys); no reserved prefix; never a `:`, which separates key and value in `filter[labels][eq]=key:value`.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > MAX_LEN {
        return Err(format!("label keys must have 1 to {MAX_LEN} characters"));
    }
    let lower = key.to_ascii_lowercase();
    if let Some(p) = RESERVED_KEY_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
        return Err(format!("label keys must not start with [{p}]"));
    }
    if !shaped(key, |c| matches!(c, '-' | '.' | '_' | '/')) {
        return Err(
            "label keys must start and end with a letter or digit and contain only letters, digits and -._/".to_owned()
        );
    }
    Ok(())
}

/// Values: Konnect's `^[a-z0-9A-Z]{1}([a-z0-9A-Z-._]*[a-z0-9A-Z]+)?$`, 1–63 characters.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > MAX_LEN {
        return Err(format!("label values must have 1 to {MAX_LEN} characters"));
    }
    if !shaped(value, |c| matches!(c, '-' | '.' | '_')) {
        return Err("label values must start and end with a letter or digit and contain only letters, digits and -._"
            .to_owned());
    }
    Ok(())
}

fn shaped(s: &str, inner: impl Fn(char) -> bool) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let first_last_ok = s.chars().next().is_some_and(alnum) && s.chars().last().is_some_and(alnum);
    first_last_ok && s.chars().all(|c| alnum(c) || inner(c))
}

impl crate::body::BodyReader<'_> {
    /// An optional `labels` object for create and replace bodies.
    pub fn labels(&mut self, name: &str) -> Option<Labels> {
        match self.raw(name) {
            crate::body::Presence::Absent => None,
            crate::body::Presence::Null => {
                self.error(InvalidParameter::new(name, Rule::IsObject, "must be an object").in_body());
                None
            }
            crate::body::Presence::Value(v) => match Labels::from_json(name, v) {
                Ok(l) => Some(l),
                Err(errors) => {
                    errors.into_iter().for_each(|e| self.error(e));
                    None
                }
            },
        }
    }

    /// `labels` in a PATCH body: each value may be null (remove the key); `null` for the whole object removes
    /// every label.
    pub fn labels_patch(&mut self, name: &str) -> crate::body::Presence<LabelsPatch> {
        use crate::body::Presence;
        match self.raw(name) {
            Presence::Absent => Presence::Absent,
            Presence::Null => Presence::Null,
            Presence::Value(v) => match LabelsPatch::from_json(name, v) {
                Ok(p) => Presence::Value(p),
                Err(errors) => {
                    errors.into_iter().for_each(|e| self.error(e));
                    Presence::Absent
                }
            },
        }
    }
}

/// Applies a PATCH's `labels` to the current labels.
pub fn apply_labels_patch(
    current: &Labels,
    patch: &crate::body::Presence<LabelsPatch>,
) -> Result<Labels, InvalidParameter> {
    match patch {
        crate::body::Presence::Absent => Ok(current.clone()),
        crate::body::Presence::Null => Ok(Labels::default()),
        crate::body::Presence::Value(p) => current.patched(p, "labels"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_konnect_shaped_labels() {
        let l = Labels::from_json("labels", &json!({"env": "prod", "team.io/owner": "a-b_c.d", "x": "1"})).unwrap();
        assert_eq!(l.get("env"), Some("prod"));
    }

    #[test]
    fn refuses_bad_keys_and_values() {
        for (k, v) in [
            ("kong-x", json!("a")),
            ("Konnect", json!("a")),
            ("_x", json!("a")),
            ("a:b", json!("a")),
            ("", json!("a")),
            (&"k".repeat(64), json!("a")),
            ("ok", json!("-a")),
            ("ok", json!("a-")),
            ("ok", json!("")),
            ("ok", json!("a b")),
            ("ok", json!(1)),
            ("ok", json!(null)),
            ("ok", json!("[\"x\"]")),
        ] {
            let mut m = serde_json::Map::new();
            m.insert(k.to_owned(), v.clone());
            assert!(Labels::from_json("labels", &Value::Object(m)).is_err(), "{k}={v}");
        }
        let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(Labels::from_json("labels", &Value::Object(many)).unwrap_err()[0].rule, Some(Rule::MaxItems));
    }

    #[test]
    fn patch_merges_and_null_removes() {
        let base = Labels::from_json("labels", &json!({"a": "1", "b": "2"})).unwrap();
        let patch = LabelsPatch::from_json("labels", &json!({"a": null, "c": "3"})).unwrap();
        let out = base.patched(&patch, "labels").unwrap();
        assert_eq!(out.0.into_iter().collect::<Vec<_>>(), vec![("b".into(), "2".into()), ("c".into(), "3".into())]);
    }
}
