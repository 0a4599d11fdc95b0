//! Reading a token's claims the way Kong's plugin does: claims by path (`["realm_access", "roles"]`), audiences
//! and scopes as a space-separated string or an array, and Kong's `*_required` lists, where each entry is a
//! space-separated set that must all be present and any one entry suffices.

use http::HeaderValue;
use serde_json::{Map, Value};

/// The claim at `path` (each element a key into the next object).
pub fn at<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// A claim's values: a string split on spaces, or an array's strings.
pub fn values(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Any of the `required` entries is wholly in `granted`.
pub fn satisfies(granted: &[&str], required: &[String]) -> bool {
    required.iter().any(|entry| entry.split(' ').filter(|s| !s.is_empty()).all(|want| granted.contains(&want)))
}

/// A claim as a header value: strings as they are, numbers and booleans as text, arrays of those joined with
/// `, `, anything else as JSON. `None` when it cannot be a header value (control characters).
pub fn header_value(value: &Value) -> Option<HeaderValue> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let text = match value {
        Value::Null => return None,
        Value::Array(items) if items.iter().all(|v| scalar(v).is_some()) => {
            items.iter().filter_map(scalar).collect::<Vec<_>>().join(", ")
        }
        Value::Array(_) | Value::Object(_) => value.to_string(),
        other => scalar(other)?,
    };
    HeaderValue::from_str(&text).ok()
}

/// A claim as text for lookups (consumer, credential): strings, and numbers as text.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_lists_and_required_sets() {
        let claims = json!({"sub": "u", "scope": "a b  c", "realm": {"roles": ["x", "y"]}, "n": 5});
        let claims = claims.as_object().unwrap();
        let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(at(claims, &path(&["realm", "roles"])), Some(&json!(["x", "y"])));
        assert_eq!(at(claims, &path(&["sub", "x"])), None);
        assert_eq!(at(claims, &[]), None);
        assert_eq!(values(at(claims, &path(&["scope"]))), ["a", "b", "c"]);
        assert_eq!(values(at(claims, &path(&["realm", "roles"]))), ["x", "y"]);
        let granted = ["a", "b"];
        assert!(satisfies(&granted, &["a b".into()]));
        assert!(satisfies(&granted, &["z".into(), "b".into()]), "any entry");
        assert!(!satisfies(&granted, &["a z".into()]), "every scope of an entry");
        assert!(!satisfies(&granted, &[]));
        assert_eq!(header_value(&json!(["x", 1, true])).unwrap(), "x, 1, true");
        assert_eq!(header_value(&json!({"k": 1})).unwrap(), r#"{"k":1}"#);
        assert!(header_value(&json!("a\r\nb")).is_none());
        assert_eq!(text(&json!(5)).as_deref(), Some("5"));
    }
}
