//! `response-transformer` (priority 800): changes response headers, and the top-level fields of JSON response
//! bodies, in Kong's order: remove, rename, replace, add, append.
//!
//! Headers change in `response`. A body is only touched when the config has JSON transformations and the response
//! says it is JSON: then `Content-Length` goes (as in Kong, the body is sent chunked) and a body filter rewrites it
//! once it has been read whole (`body::FilteredBody`, bounded). A body that does not parse as a JSON object goes
//! out as it came.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::request_transformer::split_pair;
use gatehouse_model::gateway::plugins::response_transformer::{Config, INFO, JsonType, Typed};

use super::{BodyFilter, Phases, Plugin, PluginDef, ResponseContext, Shared};

pub static PLUGIN: PluginDef = PluginDef {
    info: &INFO,
    phases: Phases { access: false, rewrite: false, response: true, log: false },
    build: |config, _shared: &Shared| Ok(Arc::new(ResponseTransformer::new(config)?)),
};

/// The config with header names and values parsed once, at build time.
#[derive(Debug)]
pub struct ResponseTransformer {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    replace: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
    /// `None` without JSON transformations.
    json: Option<Arc<JsonTransforms>>,
}

/// `name:value` pairs whose name is a header name and whose value a header value; Kong's schema checks only the
/// colon, so an entry no header could carry is left out (Kong would fail on it at run time).
fn header_pairs(entries: &[String]) -> Vec<(HeaderName, HeaderValue)> {
    entries
        .iter()
        .filter_map(|entry| {
            let (name, value) = split_pair(entry)?;
            // Kong skips entries without a value.
            if value.is_empty() {
                return None;
            }
            Some((HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?))
        })
        .collect()
}

impl ResponseTransformer {
    pub fn new(config: &Map<String, Value>) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let remove = config.remove.headers.iter().filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok()).collect();
        let rename = config
            .rename
            .headers
            .iter()
            .filter_map(|entry| {
                let (old, new) = split_pair(entry)?;
                Some((HeaderName::from_bytes(old.as_bytes()).ok()?, HeaderName::from_bytes(new.as_bytes()).ok()?))
            })
            .collect();
        let json = config.transforms_json().then(|| Arc::new(JsonTransforms::new(&config)));
        Ok(Self {
            remove,
            rename,
            replace: header_pairs(&config.replace.headers),
            add: header_pairs(&config.add.headers),
            append: header_pairs(&config.append.headers),
            json,
        })
    }

    fn transform_headers(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (old, new) in &self.rename {
            if let header::Entry::Occupied(entry) = headers.entry(old) {
                let values: Vec<HeaderValue> = entry.remove_entry_mult().1.collect();
                headers.remove(new);
                for value in values {
                    headers.append(new, value);
                }
            }
        }
        for (name, value) in &self.replace {
            if headers.contains_key(name) {
                headers.insert(name, value.clone());
            }
        }
        for (name, value) in &self.add {
            if !headers.contains_key(name) {
                headers.insert(name, value.clone());
            }
        }
        for (name, value) in &self.append {
            headers.append(name, value.clone());
        }
    }
}

/// Kong's `is_json_body`: any of the comma-separated media types is `application/json` (parameters ignored).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_TYPE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
    })
}

impl Plugin for ResponseTransformer {
    fn response(&self, ctx: &mut ResponseContext<'_>) {
        self.transform_headers(ctx.headers);
        // 204 and 304 carry no body to transform, and must keep their headers as they are.
        let bodiless = matches!(ctx.status, http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED);
        if let Some(json) = &self.json
            && !bodiless
            && is_json(ctx.headers)
        {
            // The body is about to change length; the head goes out before it is read.
            ctx.headers.remove(header::CONTENT_LENGTH);
            ctx.body_filters.push(json.clone());
        }
    }
}

/// The JSON transformations, each value already converted to its JSON type.
#[derive(Debug)]
pub struct JsonTransforms {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    replace: Vec<(String, Value)>,
    add: Vec<(String, Value)>,
    append: Vec<(String, Value)>,
}

/// Kong's `json_value`: the text, cast to the type at the same position in `json_types` (a string when there is
/// none). A number that does not parse is left out, as Kong's `tonumber` gives nil; a boolean is `true` only for
/// `"true"`.
fn typed(value: &str, kind: Option<JsonType>) -> Option<Value> {
    match kind {
        Some(JsonType::Number) => {
            let trimmed = value.trim();
            match trimmed.parse::<i64>() {
                Ok(n) => Some(Value::from(n)),
                Err(_) => trimmed.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number),
            }
        }
        Some(JsonType::Boolean) => Some(Value::Bool(value == "true")),
        Some(JsonType::String) | None => Some(Value::String(value.to_owned())),
    }
}

fn typed_pairs(typed_list: &Typed) -> Vec<(String, Value)> {
    typed_list
        .json
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let (name, value) = split_pair(entry)?;
            if value.is_empty() {
                return None;
            }
            Some((name.to_owned(), typed(value, typed_list.json_types.get(i).copied())?))
        })
        .collect()
}

/// Lua's truthiness, which Kong's `if json_body[name]` tests: absent and `false` are false, JSON null is not.
fn truthy(value: Option<&Value>) -> bool {
    !matches!(value, None | Some(Value::Bool(false)))
}

impl JsonTransforms {
    fn new(config: &Config) -> Self {
        let names = |entries: &[String]| -> Vec<String> {
            entries.iter().filter_map(|e| split_pair(e).map(|(name, _)| name.to_owned())).collect()
        };
        let rename = config
            .rename
            .json
            .iter()
            .filter_map(|e| split_pair(e).filter(|(_, new)| !new.is_empty()))
            .map(|(old, new)| (old.to_owned(), new.to_owned()))
            .collect();
        Self {
            remove: names(&config.remove.json),
            rename,
            replace: typed_pairs(&config.replace),
            add: typed_pairs(&config.add),
            append: typed_pairs(&config.append),
        }
    }

    /// Kong's `transform_json_body` on a decoded object.
    pub fn apply(&self, body: &mut Map<String, Value>) {
        for name in &self.remove {
            body.remove(name);
        }
        for (old, new) in &self.rename {
            if let Some(value) = body.remove(old) {
                body.insert(new.clone(), value);
            }
        }
        for (name, value) in &self.replace {
            if truthy(body.get(name)) {
                body.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.add {
            if !truthy(body.get(name)) {
                body.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.append {
            let appended = match body.remove(name) {
                Some(Value::String(old)) => Value::Array(vec![Value::String(old), value.clone()]),
                Some(Value::Array(mut items)) => {
                    items.push(value.clone());
                    Value::Array(items)
                }
                // Kong appends to a table whatever it holds: an object gets the value under the next index.
                Some(Value::Object(mut map)) => {
                    map.insert((map.len() + 1).to_string(), value.clone());
                    Value::Object(map)
                }
                _ => Value::Array(vec![value.clone()]),
            };
            body.insert(name.clone(), appended);
        }
    }
}

impl BodyFilter for JsonTransforms {
    fn filter(&self, body: &[u8]) -> Option<Bytes> {
        let mut object = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => object,
            // A `HEAD` answer: nothing to transform, nothing worth a warning.
            _ if body.is_empty() => return None,
            _ => {
                tracing::warn!("response-transformer: body transform failed: the body is not a JSON object");
                return None;
            }
        };
        self.apply(&mut object);
        serde_json::to_vec(&object).ok().map(Bytes::from)
    }
}

#[cfg(test)]
mod tests;
