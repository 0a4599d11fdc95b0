//! Strict reading of JSON request bodies into typed inputs, collecting every problem at once so a caller can
//! fix a request in one round trip. Shapes follow Konnect's `invalid_parameters` entries.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::problem::{InvalidParameter, Rule};

/// A field that may be absent, explicitly `null`, or set (PATCH bodies and nullable fields need all three).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Presence<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

/// Parses a request body as a JSON object. Duplicate keys are refused: two parsers disagreeing on which of two
/// values counts is a classic way to slip a field past validation.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, InvalidParameter> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InvalidParameter::new("body", Rule::Required, "request body is required").in_body());
    }
    let StrictValue(value) = serde_json::from_slice(bytes).map_err(|e| {
        let reason = if e.to_string().contains("duplicate key") {
            format!("request format is invalid: {e}")
        } else {
            format!("request format is invalid: JSON syntax error at line {} column {}", e.line(), e.column())
        };
        InvalidParameter::new("body", Rule::Invalid, reason).in_body()
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(InvalidParameter::new("body", Rule::IsObject, "request body must be a JSON object").in_body()),
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key [{key}]")));
            }
            let StrictValue(v) = access.next_value()?;
            map.insert(key, v);
        }
        Ok(Value::Object(map))
    }
}

/// An enum that the API accepts as one of a fixed set of strings.
pub trait Choice: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|c| c.as_str()).collect()
    }
}

/// Inclusive length bounds in characters.
#[derive(Debug, Clone, Copy)]
pub struct Len {
    pub min: usize,
    pub max: usize,
}

impl Len {
    pub const fn new(min: usize, max: usize) -> Self {
        Self { min, max }
    }
}

/// Reads fields of one JSON object, recording every invalid parameter it meets.
#[derive(Debug)]
pub struct BodyReader<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<InvalidParameter>,
}

impl<'a> BodyReader<'a> {
    /// `known` are the properties the operation accepts; `ignored` are read-only properties that are accepted and
    /// dropped (a PUT may send back what a GET returned). Anything else is an `unknown_property`.
    pub fn new(obj: &'a Map<String, Value>, known: &[&str], ignored: &[&str]) -> Self {
        let known: HashSet<&str> = known.iter().chain(ignored).copied().collect();
        let errors = obj.keys().filter(|k| !known.contains(k.as_str())).map(|k| unknown_property(k)).collect();
        Self { obj, errors }
    }

    pub fn error(&mut self, e: InvalidParameter) {
        self.errors.push(e);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn finish(self) -> Result<(), Vec<InvalidParameter>> {
        if self.errors.is_empty() { Ok(()) } else { Err(self.errors) }
    }

    fn get(&self, name: &str) -> Presence<&'a Value> {
        match self.obj.get(name) {
            None => Presence::Absent,
            Some(Value::Null) => Presence::Null,
            Some(v) => Presence::Value(v),
        }
    }

    /// Records `required` when absent or null.
    pub fn required<T>(&mut self, name: &str, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.obj.contains_key(name) {
            self.errors.push(required(name));
        }
        value
    }

    pub fn required_string(&mut self, name: &str, len: Len) -> Option<String> {
        let v = self.string(name, len);
        self.required(name, v)
    }

    /// An optional string; `null` is refused (use [`Self::nullable_string`] where null means something).
    pub fn string(&mut self, name: &str, len: Len) -> Option<String> {
        match self.get(name) {
            Presence::Absent => None,
            Presence::Null => {
                self.errors.push(type_error(name, Rule::IsString, "must be a string"));
                None
            }
            Presence::Value(v) => self.check_string(name, v, len),
        }
    }

    pub fn nullable_string(&mut self, name: &str, len: Len) -> Presence<String> {
        match self.get(name) {
            Presence::Absent => Presence::Absent,
            Presence::Null => Presence::Null,
            Presence::Value(v) => self.check_string(name, v, len).map_or(Presence::Absent, Presence::Value),
        }
    }

    fn check_string(&mut self, field: &str, v: &Value, len: Len) -> Option<String> {
        match string_within(field, v, len) {
            Ok(s) => Some(s),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.get(name) {
            Presence::Absent => None,
            Presence::Value(Value::Bool(b)) => Some(*b),
            _ => {
                self.errors.push(type_error(name, Rule::IsBoolean, "must be a boolean"));
                None
            }
        }
    }

    pub fn integer(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        match self.get(name) {
            Presence::Absent => None,
            Presence::Value(Value::Number(n)) if n.is_i64() || n.is_u64() => match n.as_i64() {
                Some(i) if i < min => {
                    self.errors.push(
                        InvalidParameter::new(name, Rule::Min, format!("must be at least {min}"))
                            .with_minimum(min)
                            .in_body(),
                    );
                    None
                }
                Some(i) if i > max => {
                    self.errors.push(
                        InvalidParameter::new(name, Rule::Max, format!("must be at most {max}"))
                            .with_maximum(max)
                            .in_body(),
                    );
                    None
                }
                Some(i) => Some(i),
                None => {
                    self.errors.push(
                        InvalidParameter::new(name, Rule::Max, format!("must be at most {max}"))
                            .with_maximum(max)
                            .in_body(),
                    );
                    None
                }
            },
            _ => {
                self.errors.push(type_error(name, Rule::IsInteger, "must be an integer"));
                None
            }
        }
    }

    pub fn choice<C: Choice>(&mut self, name: &str) -> Option<C> {
        let v = self.get(name);
        match v {
            Presence::Absent => None,
            Presence::Value(v) => match choice_of::<C>(name, v) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.errors.push(e);
                    None
                }
            },
            Presence::Null => {
                self.errors.push(choice_error::<C>(name));
                None
            }
        }
    }

    /// An optional array whose items are checked by `item` (given the item's field name, e.g. `allow_scopes[2]`).
    /// With `unique`, repeated items are refused, as the API's sets (`uniqueItems`) require.
    pub fn array<T: PartialEq>(
        &mut self,
        name: &str,
        max_items: usize,
        unique: bool,
        mut item: impl FnMut(&str, &Value) -> Result<T, InvalidParameter>,
    ) -> Option<Vec<T>> {
        let items = match self.get(name) {
            Presence::Absent => return None,
            Presence::Value(Value::Array(items)) => items,
            _ => {
                self.errors.push(type_error(name, Rule::IsArray, "must be an array"));
                return None;
            }
        };
        if items.len() > max_items {
            self.errors.push(
                InvalidParameter::new(name, Rule::MaxItems, format!("must have at most {max_items} items"))
                    .with_maximum(max_items as i64)
                    .in_body(),
            );
            return None;
        }
        let mut out: Vec<T> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, v) in items.iter().enumerate() {
            let field = format!("{name}[{i}]");
            match item(&field, v) {
                Ok(t) if unique && out.contains(&t) => {
                    ok = false;
                    self.errors.push(InvalidParameter::new(field, Rule::Invalid, "items must be unique").in_body());
                }
                Ok(t) => out.push(t),
                Err(e) => {
                    ok = false;
                    self.errors.push(e);
                }
            }
        }
        ok.then_some(out)
    }

    /// The raw JSON value of a field that has its own reader (labels).
    pub fn raw(&self, name: &str) -> Presence<&'a Value> {
        self.get(name)
    }
}

/// A string item of an array or a field, with length bounds in characters.
pub fn string_within(field: &str, v: &Value, len: Len) -> Result<String, InvalidParameter> {
    let Value::String(s) = v else {
        return Err(type_error(field, Rule::IsString, "must be a string"));
    };
    let n = s.chars().count();
    if n < len.min {
        let reason = if len.min == 1 {
            "must not be empty".to_owned()
        } else {
            format!("must have at least {} characters", len.min)
        };
        return Err(InvalidParameter::new(field, Rule::MinLength, reason).with_minimum(len.min as i64).in_body());
    }
    if n > len.max {
        return Err(InvalidParameter::new(field, Rule::MaxLength, format!("must have at most {} characters", len.max))
            .with_maximum(len.max as i64)
            .in_body());
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(InvalidParameter::new(field, Rule::Invalid, "must not contain control characters").in_body());
    }
    Ok(s.clone())
}

pub fn choice_of<C: Choice>(field: &str, v: &Value) -> Result<C, InvalidParameter> {
    v.as_str().and_then(C::parse).ok_or_else(|| choice_error::<C>(field))
}

fn choice_error<C: Choice>(field: &str) -> InvalidParameter {
    let names = C::names();
    InvalidParameter::new(field, Rule::Enum, format!("must be one of [{}]", names.join(", ")))
        .with_choices(&names)
        .in_body()
}

pub fn type_error(field: &str, rule: Rule, reason: &str) -> InvalidParameter {
    InvalidParameter::new(field, rule, reason).in_body()
}

pub fn required(field: &str) -> InvalidParameter {
    InvalidParameter::new(field, Rule::Required, "is required").in_body()
}

pub fn unknown_property(field: &str) -> InvalidParameter {
    InvalidParameter::new(field, Rule::UnknownProperty, format!("property {field} should not exist")).in_body()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn refuses_duplicate_keys_and_non_objects() {
        assert!(parse_object(br#"{"a":1,"a":2}"#).unwrap_err().reason.contains("duplicate key [a]"));
        assert!(parse_object(br#"{"x":{"a":1,"a":2}}"#).is_err());
        assert_eq!(parse_object(b"[1]").unwrap_err().rule, Some(Rule::IsObject));
        assert_eq!(parse_object(b"  ").unwrap_err().rule, Some(Rule::Required));
        assert_eq!(parse_object(b"{").unwrap_err().rule, Some(Rule::Invalid));
        assert_eq!(parse_object(br#"{"a":1}"#).unwrap().len(), 1);
    }

    #[test]
    fn collects_every_problem() {
        let body = obj(json!({"name": 5, "extra": true, "n": 3, "flag": "yes", "list": ["a", "a"]}));
        let mut r = BodyReader::new(&body, &["name", "n", "flag", "list", "missing"], &[]);
        assert_eq!(r.required_string("name", Len::new(1, 10)), None);
        assert_eq!(r.integer("n", 5, 10), None);
        assert_eq!(r.boolean("flag"), None);
        assert_eq!(r.array("list", 5, true, |f, v| string_within(f, v, Len::new(1, 5))), None);
        assert_eq!(r.required_string("missing", Len::new(1, 10)), None);
        let errors = r.finish().unwrap_err();
        let rules: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.rule.unwrap())).collect();
        assert_eq!(
            rules,
            vec![
                ("extra", Rule::UnknownProperty),
                ("name", Rule::IsString),
                ("n", Rule::Min),
                ("flag", Rule::IsBoolean),
                ("list[1]", Rule::Invalid),
                ("missing", Rule::Required),
            ]
        );
    }

    #[test]
    fn string_bounds_count_characters() {
        assert!(string_within("f", &json!("ééé"), Len::new(1, 3)).is_ok());
        assert_eq!(string_within("f", &json!("éééé"), Len::new(1, 3)).unwrap_err().rule, Some(Rule::MaxLength));
        assert_eq!(string_within("f", &json!(""), Len::new(1, 3)).unwrap_err().rule, Some(Rule::MinLength));
        assert_eq!(string_within("f", &json!("a\u{0}b"), Len::new(1, 3)).unwrap_err().rule, Some(Rule::Invalid));
    }
}
