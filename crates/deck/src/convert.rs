//! `file convert`: a state file for Kong 2.x rewritten for Kong 3.x, as decK's `file convert` does it.
//!
//! `--from kong-gateway-2.x --to kong-gateway-3.x`: every route path that looks like a regex (decK's heuristic: a
//! character other than letters, digits and `._~/%-`) and has no `~` yet gets one, and `_format_version` becomes
//! 3.0. `--from 2.8 --to 3.4` also renames the plugin fields Kong 3.0 removed (`blacklist`/`whitelist` to
//! `deny`/`allow`, the serverless functions' `functions` to `access`, aws-lambda's `proxy_scheme` dropped).
//! decK also invents a `namespace` for `rate-limiting-advanced` plugins, an Enterprise plugin Gatehouse does not
//! have, so that step is left out.

use serde_json::{Map, Value};

use crate::DeckError;
use crate::file::{Env, Source, parse, render};

/// The conversions `file convert` offers (decK's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// `kong-gateway-2.x` to `kong-gateway-3.x`.
    Gateway2xTo3x,
    /// `2.8` to `3.4`: the above and the plugin field renames.
    Lts28To34,
}

impl Conversion {
    /// decK's `--from` and `--to` values; anything else is refused with the pairs that exist.
    pub fn from_flags(from: &str, to: &str) -> Result<Conversion, DeckError> {
        match (from.to_ascii_lowercase().as_str(), to.to_ascii_lowercase().as_str()) {
            ("kong-gateway-2.x", "kong-gateway-3.x") => Ok(Conversion::Gateway2xTo3x),
            ("2.8", "3.4") => Ok(Conversion::Lts28To34),
            _ => Err(DeckError::Other(format!(
                "cannot convert from '{from}' to '{to}' format: Gatehouse converts --from kong-gateway-2.x \
                 --to kong-gateway-3.x, and --from 2.8 --to 3.4"
            ))),
        }
    }
}

/// decK's `IsPathRegexLike`: a path with a character other than letters, digits and `._~/%-` is a regex to Kong 2.x.
pub fn is_regex_like(path: &str) -> bool {
    path.chars().any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '/' | '%' | '-')))
}

/// Adds the `~` to a route's regex-looking paths that lack it; whether any changed.
pub fn prefix_regex_paths(route: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    if let Some(Value::Array(paths)) = route.get_mut("paths") {
        for path in paths.iter_mut() {
            if let Value::String(p) = path
                && !p.starts_with("~/")
                && is_regex_like(p)
            {
                p.insert(0, '~');
                changed = true;
            }
        }
    }
    changed
}

/// How decK names a route in its messages: its id, else its name (a path when it has neither).
pub fn route_label(route: &Map<String, Value>) -> String {
    ["id", "name"]
        .iter()
        .find_map(|f| route.get(*f).and_then(Value::as_str))
        .map(str::to_owned)
        .or_else(|| route.get("paths").and_then(|p| p.get(0)).and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "(unnamed route)".into())
}

fn objects(v: Option<&mut Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    v.and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

/// Converts a parsed file in place; returns decK's messages about what changed, for standard error.
pub fn convert_value(root: &mut Map<String, Value>, name: &str, conversion: Conversion) -> Result<Vec<String>, String> {
    let mut messages = Vec::new();
    let mut changed = Vec::new();
    for service in objects(root.get_mut("services")) {
        for route in objects(service.get_mut("routes")) {
            if prefix_regex_paths(route) {
                changed.push(route_label(route));
            }
        }
    }
    // decK converts the routes nested in services only; Kong's DB-less loader does top-level routes too.
    for route in objects(root.get_mut("routes")) {
        if prefix_regex_paths(route) {
            changed.push(route_label(route));
        }
    }
    if !changed.is_empty() {
        let count = changed.len();
        changed.truncate(10);
        messages.push(format!(
            "From the '{name}' config file,\n{count} unsupported routes' paths format with Kong version 3.0\n\
             or above were detected. Some of these routes are (not an exhaustive list):\n\n{}\n\n\
             Kong gateway versions 3.0 and above require that regular expressions\n\
             start with a '~' character to distinguish from simple prefix match.\n\
             In order to make these paths compatible with 3.x, a '~' prefix has been added.\n",
            changed.join("\n")
        ));
    }
    if conversion == Conversion::Lts28To34 {
        update_plugins(root, &mut messages)?;
    }
    let before = root.get("_format_version").and_then(Value::as_str).unwrap_or("1.1").to_owned();
    messages.push(format!(
        "From the '{name}' config file,\nthe _format_version field has been migrated from '{before}' to '3.0'.\n"
    ));
    root.insert("_format_version".into(), Value::String("3.0".into()));
    messages.push(
        "These automatic changes may not be correct or exhaustive enough, please\n\
         perform a manual audit of the config file.\n"
            .into(),
    );
    Ok(messages)
}

/// Every plugin of the file, wherever it is nested.
fn all_plugins(root: &mut Map<String, Value>) -> Vec<&mut Map<String, Value>> {
    let mut out = Vec::new();
    let mut plugin_lists: Vec<&mut Value> = Vec::new();
    for (key, value) in root.iter_mut() {
        match key.as_str() {
            "plugins" => plugin_lists.push(value),
            "services" => {
                for service in value.as_array_mut().into_iter().flatten().filter_map(Value::as_object_mut) {
                    for (k, v) in service.iter_mut() {
                        match k.as_str() {
                            "plugins" => plugin_lists.push(v),
                            "routes" => {
                                for route in v.as_array_mut().into_iter().flatten().filter_map(Value::as_object_mut) {
                                    if let Some(p) = route.get_mut("plugins") {
                                        plugin_lists.push(p);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            "routes" | "consumers" | "consumer_groups" => {
                for parent in value.as_array_mut().into_iter().flatten().filter_map(Value::as_object_mut) {
                    if let Some(p) = parent.get_mut("plugins") {
                        plugin_lists.push(p);
                    }
                }
            }
            _ => {}
        }
    }
    for list in plugin_lists {
        out.extend(list.as_array_mut().into_iter().flatten().filter_map(Value::as_object_mut));
    }
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// decK's `updateLegacyPluginConfig` for 2.8 to 3.4.
fn update_plugins(root: &mut Map<String, Value>, messages: &mut Vec<String>) -> Result<(), String> {
    for plugin in all_plugins(root) {
        let name = plugin.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
        let Some(Value::Object(config)) = plugin.get_mut("config") else { continue };
        let mut renames = vec![("blacklist", "deny"), ("whitelist", "allow")];
        if matches!(name.as_str(), "pre-function" | "post-function") {
            renames.push(("functions", "access"));
        }
        for (old, new) in renames {
            let Some(value) = config.remove(old) else { continue };
            match config.get(new) {
                Some(existing) if !is_empty(existing) && !is_empty(&value) => {
                    return Err(format!(
                        "conflicting fields: both legacy field \"{old}\" and new field \"{new}\" have values in plugin {name}"
                    ));
                }
                Some(existing) if !is_empty(existing) || is_empty(&value) => {}
                _ => {
                    config.insert(new.to_owned(), value);
                    messages.push(format!(
                        "Automatically converted legacy configuration field \"{old}\" to the new field \"{new}\" in plugin {name}"
                    ));
                }
            }
        }
        if name == "aws-lambda" && config.remove("proxy_scheme").is_some() {
            messages.push(format!("Automatically removed deprecated config field \"proxy_scheme\" from plugin {name}"));
        }
    }
    Ok(())
}

/// `file convert` on one input: rendered (unless `expand_env` is off, when `${{ env … }}` stays as text),
/// parsed, converted and written as YAML or JSON. Returns the output text and the messages for standard error.
pub fn convert(
    source: &Source,
    env: &Env,
    expand_env: bool,
    conversion: Conversion,
    json: bool,
) -> Result<(String, Vec<String>), DeckError> {
    let text = if expand_env { render(source, env).map_err(DeckError::Files)?.0 } else { source.text.clone() };
    let doc = parse(&source.name, &text).map_err(|e| DeckError::Files(vec![e]))?;
    let Value::Object(mut root) = doc.value else {
        return Err(DeckError::Other(format!("{}: the file must hold a mapping", source.name)));
    };
    let messages = convert_value(&mut root, &source.name, conversion).map_err(DeckError::Other)?;
    let out = crate::dump::render(&Value::Object(root), json)
        .map_err(|e| DeckError::Other(format!("writing the converted file: {e}")))?;
    Ok((out, messages))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(text: &str, conversion: Conversion) -> (Value, Vec<String>) {
        let source = Source { name: "kong.yaml".into(), text: text.into() };
        let (out, messages) = convert(&source, &Env::new(), true, conversion, true).unwrap();
        (serde_json::from_str(&out).unwrap(), messages)
    }

    #[test]
    fn regex_paths_get_their_tilde_and_the_version_becomes_3() {
        let (out, messages) = run(
            "_format_version: \"1.1\"\nservices:\n- name: s\n  host: h\n  routes:\n  - name: r\n    paths: [/users/\\d+, /plain, ~/done/\\d+, /a-b_c.d~e%20]\nroutes:\n- name: top\n  paths: [\"/v(1|2)/x\"]\n",
            Conversion::Gateway2xTo3x,
        );
        assert_eq!(out["_format_version"], "3.0");
        assert_eq!(
            out["services"][0]["routes"][0]["paths"],
            serde_json::json!(["~/users/\\d+", "/plain", "~/done/\\d+", "/a-b_c.d~e%20"])
        );
        assert_eq!(out["routes"][0]["paths"][0], "~/v(1|2)/x");
        assert!(
            messages[0].contains("2 unsupported routes' paths") && messages[0].contains("\nr\ntop\n"),
            "{messages:?}"
        );
        assert!(messages[1].contains("migrated from '1.1' to '3.0'"));
    }

    #[test]
    fn lts_conversion_renames_plugin_fields() {
        let (out, _) = run(
            "_format_version: \"2.1\"\nplugins:\n- name: ip-restriction\n  config: {whitelist: [10.0.0.1]}\n\
             services:\n- name: s\n  host: h\n  plugins:\n  - name: acl\n    config: {blacklist: [bad], deny: []}\n",
            Conversion::Lts28To34,
        );
        assert_eq!(out["plugins"][0]["config"], serde_json::json!({"allow": ["10.0.0.1"]}));
        assert_eq!(out["services"][0]["plugins"][0]["config"], serde_json::json!({"deny": ["bad"]}));
        let source = Source {
            name: "k.yaml".into(),
            text: "plugins:\n- name: acl\n  config: {blacklist: [a], deny: [b]}\n".into(),
        };
        let e = convert(&source, &Env::new(), true, Conversion::Lts28To34, false).unwrap_err();
        assert!(e.to_string().contains("conflicting fields"), "{e}");
        assert!(Conversion::from_flags("kong-gateway", "konnect").is_err());
    }
}
