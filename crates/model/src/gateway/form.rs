//! Kong's form notation for entity bodies, as Kong's own docs use it throughout
//! (`curl --data name=s --data 'paths[]=/s' --data config.ttl=60`), turned into the JSON object that entity
//! validation reads.
//!
//! Kong decodes forms in `kong/api/arguments.lua`: names nest on `.` and `[…]` (`[]` appends, `[2]` is the
//! second element, `[key]` a map key), a name given several times collects its values, and values, all strings,
//! take their type from the entity's schema: numbers and integers are parsed, `true`/`false` become booleans, a
//! single value where an array is expected becomes a one-element array (`tags=a`), and an empty value is null
//! (`token_type_hint=`). What cannot be coerced stays a string, so validation names the field and the type it
//! expected. Here the same rules are a pure function of the pairs and the schema.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::entities::{EntityKind, plugin_fields};
use super::plugins;
use super::schema::{Field, Kind, Violation};

/// Kong's `max_post_args`: a form with more fields is refused.
pub const MAX_PAIRS: usize = 1000;

/// Segments in one name. The deepest entity field (`config.custom_introspection_headers.X-Foo`,
/// `sources[1].port`) has three; the bound keeps the recursion below shallow whatever a body holds.
pub const MAX_DEPTH: usize = 8;

/// The JSON object a form body stands for, typed by the schema of `kind`. A plugin's config is typed by the
/// schema of the plugin the form names, else `plugin` (a PATCH names the plugin in the stored entity, not in its
/// body).
pub fn entity_object(
    kind: EntityKind,
    pairs: &[(String, String)],
    plugin: Option<&str>,
) -> Result<Map<String, Value>, Vec<Violation>> {
    let mut fields = match kind {
        EntityKind::Plugin => {
            let named = pairs.iter().find(|(k, _)| k == "name").map(|(_, v)| v.as_str()).or(plugin);
            plugin_fields(named.and_then(plugins::config_fields))
        }
        other => other.fields(),
    };
    if kind == EntityKind::Service {
        // Kong's shorthand, not a field of the entity.
        fields.push(Field::string("url"));
    }
    form_to_object(&fields, pairs)
}

/// The JSON object for form `pairs` (decoded names and values, in body order), typed by `fields`. Problems
/// with the names themselves (too deep, a name given both as a value and with nested fields) are violations;
/// everything else is left to validation.
pub fn form_to_object(fields: &[Field], pairs: &[(String, String)]) -> Result<Map<String, Value>, Vec<Violation>> {
    if pairs.len() > MAX_PAIRS {
        return Err(vec![Violation::new("body", format!("too many form fields (at most {MAX_PAIRS})"))]);
    }
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    let mut violations = Vec::new();
    for (name, value) in pairs {
        let (first, segments) = parse_name(name).unwrap_or_else(|| (name.clone(), Vec::new()));
        if segments.len() >= MAX_DEPTH {
            violations.push(Violation::new(name, format!("nested too deeply (at most {MAX_DEPTH} levels)")));
            continue;
        }
        if insert(root.entry(first).or_default(), &segments, value.clone()).is_err() {
            violations.push(Violation::new(name, "given both as a value and with nested fields"));
        }
    }
    if violations.is_empty() { Ok(convert_record(root, fields)) } else { Err(violations) }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(u64),
    Append,
}

/// `a.b[c][1][]` → `a` and its segments; `None` for a plain name, or one Kong would take literally (a leading
/// or trailing dot) or that is not well formed (`a[b`, `a..b`, `a[b]c`), which then is a field name as given.
fn parse_name(name: &str) -> Option<(String, Vec<Segment>)> {
    if name.starts_with(['.', '[']) || name.ends_with('.') {
        return None;
    }
    let first_end = name.find(['.', '['])?;
    let (first, mut rest) = name.split_at(first_end);
    let mut segments = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return None;
            }
            segments.push(Segment::Key(after[..end].to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            if inner.contains('[') {
                return None;
            }
            segments.push(if inner.is_empty() {
                Segment::Append
            } else if inner.bytes().all(|b| b.is_ascii_digit()) {
                inner.parse().map_or_else(|_| Segment::Key(inner.to_owned()), Segment::Index)
            } else {
                Segment::Key(inner.to_owned())
            });
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some((first.to_owned(), segments))
}

/// What the pairs say about one name, before the schema gives it types.
#[derive(Debug, Default)]
enum Node {
    #[default]
    Empty,
    /// The values given for the name itself (`tags=a&tags=b`, or `tags[]=a`), in order.
    Values(Vec<String>),
    /// Nested by `.key` or `[key]`.
    Object(BTreeMap<String, Node>),
    /// Elements by index (`paths[2]`); values appended with `[]` or given plainly follow them. Indexes only
    /// order the elements, so `paths[99999999]` costs no more than `paths[1]`.
    Indexed(BTreeMap<u64, Node>, Vec<String>),
}

fn insert(node: &mut Node, segments: &[Segment], value: String) -> Result<(), ()> {
    match segments.split_first() {
        // `x[]=v` is `x=v`: a value of the name, which the schema turns into an array when it wants one.
        None | Some((Segment::Append, [])) => match node {
            Node::Empty => *node = Node::Values(vec![value]),
            Node::Values(values) | Node::Indexed(_, values) => values.push(value),
            Node::Object(_) => return Err(()),
        },
        Some((Segment::Key(key), rest)) => {
            if matches!(node, Node::Empty) {
                *node = Node::Object(BTreeMap::new());
            }
            let Node::Object(children) = node else { return Err(()) };
            insert(children.entry(key.clone()).or_default(), rest, value)?;
        }
        Some((segment @ (Segment::Index(_) | Segment::Append), rest)) => {
            match node {
                Node::Empty => *node = Node::Indexed(BTreeMap::new(), Vec::new()),
                Node::Values(values) => *node = Node::Indexed(BTreeMap::new(), std::mem::take(values)),
                Node::Indexed(..) => {}
                Node::Object(_) => return Err(()),
            }
            let Node::Indexed(elements, _) = node else { return Err(()) };
            // `a[].b=v`: Kong fills the first element, so `sources[].ip=…&sources[].port=…` make one source.
            let index = if let Segment::Index(i) = segment { *i } else { 1 };
            insert(elements.entry(index).or_default(), rest, value)?;
        }
    }
    Ok(())
}

fn convert_record(children: BTreeMap<String, Node>, fields: &[Field]) -> Map<String, Value> {
    children
        .into_iter()
        .map(|(name, child)| {
            let field = fields.iter().find(|f| f.name == name);
            let value = convert(child, field);
            (name, value)
        })
        .collect()
}

fn elements_of(field: Option<&Field>) -> Option<&Field> {
    match field.map(|f| &f.kind) {
        Some(Kind::Array(of) | Kind::Set(of)) => Some(of),
        _ => None,
    }
}

fn convert(node: Node, field: Option<&Field>) -> Value {
    match node {
        Node::Empty => Value::Null,
        Node::Values(mut values) => match elements_of(field) {
            // Kong: an empty value is null before it is an array (`tags=` unsets the tags).
            Some(_) if values.len() == 1 && values[0].is_empty() => Value::Null,
            Some(of) => Value::Array(values.into_iter().map(|v| scalar(v, Some(of))).collect()),
            None if values.len() == 1 => scalar(values.remove(0), field),
            None => Value::Array(values.into_iter().map(|v| scalar(v, field)).collect()),
        },
        Node::Object(children) => match field.map(|f| &f.kind) {
            Some(Kind::Record(inner)) => Value::Object(convert_record(children, inner)),
            Some(Kind::Map { values, .. }) => {
                let mut out = Map::new();
                for (key, child) in children {
                    map_entry(&mut out, key, child, values);
                }
                Value::Object(out)
            }
            _ => Value::Object(children.into_iter().map(|(k, child)| (k, convert(child, None))).collect()),
        },
        Node::Indexed(elements, tail) => {
            let of = elements_of(field);
            Value::Array(
                elements.into_values().map(|n| convert(n, of)).chain(tail.into_iter().map(|v| scalar(v, of))).collect(),
            )
        }
    }
}

/// A map's keys are data, not names: a header called `x.tenant` arrives as `headers.x.tenant=v`, which the
/// name split into `x` and `tenant`. Unless the map's values are themselves records or maps, such a split is
/// joined again.
fn map_entry(out: &mut Map<String, Value>, key: String, child: Node, values: &Field) {
    let nested_values = matches!(values.kind, Kind::Record(_) | Kind::Map { .. });
    match child {
        Node::Object(children) if !nested_values => {
            for (sub, grandchild) in children {
                map_entry(out, format!("{key}.{sub}"), grandchild, values);
            }
        }
        other => {
            out.insert(key, convert(other, Some(values)));
        }
    }
}

/// One form value, typed as `field` wants it when it can be.
fn scalar(text: String, field: Option<&Field>) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    match field.map(|f| &f.kind) {
        Some(Kind::Integer | Kind::Number) => number(&text).unwrap_or(Value::String(text)),
        Some(Kind::Boolean) => match text.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text),
        },
        _ => Value::String(text),
    }
}

/// Integers stay integers (`30`, not `30.0`); other finite numbers are floats, integral ones (`1e3`) integers.
fn number(text: &str) -> Option<Value> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f: f64 = text.parse().ok().filter(|f: &f64| f.is_finite())?;
    // Below 2^53, where every integer is exact.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return Some(Value::from(f as i64));
    }
    serde_json::Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::validate_entity;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn form(kind: EntityKind, list: &[(&str, &str)]) -> Value {
        Value::Object(entity_object(kind, &pairs(list), None).unwrap_or_else(|e| panic!("{e:?}")))
    }

    #[test]
    fn kongs_documented_examples() {
        assert_eq!(
            form(EntityKind::Service, &[("name", "s"), ("url", "http://127.0.0.1:8004/anything")]),
            json!({"name": "s", "url": "http://127.0.0.1:8004/anything"})
        );
        assert_eq!(form(EntityKind::Route, &[("paths[]", "/s")]), json!({"paths": ["/s"]}));
        let plugin = form(
            EntityKind::Plugin,
            &[
                ("name", "oauth2-introspection"),
                ("config.introspection_url", "http://127.0.0.1:8003/k/introspect"),
                ("config.authorization_value", "Basic dXNlcjpwYXNz"),
            ],
        );
        assert_eq!(
            plugin,
            json!({"name": "oauth2-introspection", "config": {"introspection_url": "http://127.0.0.1:8003/k/introspect",
                "authorization_value": "Basic dXNlcjpwYXNz"}})
        );
        validate_entity(EntityKind::Plugin, plugin.as_object().unwrap()).unwrap();
    }

    #[test]
    fn arrays_from_one_value_repeats_brackets_and_indexes() {
        let route = form(
            EntityKind::Route,
            &[
                ("methods", "GET"),
                ("hosts", "a.example"),
                ("hosts", "b.example"),
                ("paths[2]", "/b"),
                ("paths[1]", "/a"),
                ("tags[]", "x"),
                ("tags[]", "y"),
                ("headers.x-version", "1"),
                ("headers[x-tenant][]", "t"),
            ],
        );
        assert_eq!(
            route,
            json!({"methods": ["GET"], "hosts": ["a.example", "b.example"], "paths": ["/a", "/b"],
                "tags": ["x", "y"], "headers": {"x-version": ["1"], "x-tenant": ["t"]}})
        );
        // Indexes order elements; they are not positions to fill.
        assert_eq!(
            form(EntityKind::Route, &[("paths[99999999999]", "/z"), ("paths[3]", "/c"), ("paths[]", "/d")]),
            json!({"paths": ["/c", "/z", "/d"]})
        );
        assert_eq!(
            form(EntityKind::Route, &[("sources[].ip", "10.0.0.1"), ("sources[].port", "80")]),
            json!({"sources": [{"ip": "10.0.0.1", "port": 80}]})
        );
    }

    #[test]
    fn values_take_the_schemas_types() {
        let plugin = form(
            EntityKind::Plugin,
            &[
                ("name", "oauth2-introspection"),
                ("config.ttl", "60"),
                ("config.negative_ttl", "0.5"),
                ("config.timeout", "1e3"),
                ("config.hide_credentials", "true"),
                ("config.run_on_preflight", "false"),
                ("config.token_type_hint", ""),
                ("config.custom_claims_forward", "sub"),
                ("config.custom_introspection_headers.X-Foo", "v"),
                ("config.custom_introspection_headers.x.tenant", "t"),
                ("enabled", "false"),
                ("service.id", "0190a0a0-0000-7000-8000-000000000001"),
                ("route", ""),
            ],
        );
        assert_eq!(
            plugin,
            json!({"name": "oauth2-introspection", "enabled": false,
                "service": {"id": "0190a0a0-0000-7000-8000-000000000001"}, "route": null,
                "config": {"ttl": 60, "negative_ttl": 0.5, "timeout": 1000, "hide_credentials": true,
                    "run_on_preflight": false, "token_type_hint": null, "custom_claims_forward": ["sub"],
                    "custom_introspection_headers": {"X-Foo": "v", "x.tenant": "t"}}})
        );
        // What does not parse stays a string, for validation to name.
        let bad = form(EntityKind::Service, &[("port", "eighty"), ("enabled", "yes"), ("retries", "NaN")]);
        assert_eq!(bad, json!({"port": "eighty", "enabled": "yes", "retries": "NaN"}));
        let e = validate_entity(EntityKind::Service, bad.as_object().unwrap()).unwrap_err();
        assert!(e.iter().any(|v| v.path == "port" && v.message == "expected an integer"), "{e:?}");
        // A PATCH body names no plugin: the stored one's schema types its config.
        let patch = entity_object(EntityKind::Plugin, &pairs(&[("config.ttl", "5")]), Some("oauth2-introspection"));
        assert_eq!(patch.unwrap()["config"]["ttl"], 5);
        // Empty values unset; an empty array field is null as in Kong.
        assert_eq!(
            form(EntityKind::Consumer, &[("tags", ""), ("custom_id", "")]),
            json!({"tags": null, "custom_id": null})
        );
    }

    #[test]
    fn odd_names_are_fields_as_given_and_conflicts_are_named() {
        let odd = form(EntityKind::Service, &[(".x", "1"), ("y.", "2"), ("a[b", "3"), ("c..d", "4"), ("e[f]g", "5")]);
        assert_eq!(odd, json!({".x": "1", "y.": "2", "a[b": "3", "c..d": "4", "e[f]g": "5"}));
        let e = validate_entity(EntityKind::Service, odd.as_object().unwrap()).unwrap_err();
        assert!(e.iter().any(|v| v.path == "a[b" && v.message == "unknown field"), "{e:?}");

        let e = entity_object(EntityKind::Route, &pairs(&[("paths", "/a"), ("paths.x", "/b")]), None).unwrap_err();
        assert_eq!(e, vec![Violation::new("paths.x", "given both as a value and with nested fields")]);
        let deep = "a.b.c.d.e.f.g.h.i";
        let e = entity_object(EntityKind::Route, &pairs(&[(deep, "x")]), None).unwrap_err();
        assert_eq!(e[0].path, deep);
        let many: Vec<(String, String)> = (0..=MAX_PAIRS).map(|i| ("tags".to_owned(), format!("t{i}"))).collect();
        assert_eq!(entity_object(EntityKind::Consumer, &many, None).unwrap_err()[0].path, "body");
    }
}
