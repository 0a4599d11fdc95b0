//! `dump`: the target's entities as a decK 3.0 file. Routes and single-scope plugins are nested under their
//! service, route or consumer, and acls under their consumer (`acls:`, as decK writes them); global and
//! multi-scope plugins stay at the top level with name references. Ids of named entities (and of acls, which their
//! consumer and group identify) are left out unless asked for, and so are Gatehouse-only fields at their defaults,
//! so a dump reads like Kong's and syncs back without changes.

use serde_json::{Map, Value, json};

use gatehouse_model::gateway::EntityKind;
use gatehouse_model::gateway::plugins::gatehouse_only_defaults;

use crate::target::{Current, has_tags, id_of};

#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    pub with_id: bool,
    pub select_tags: Vec<String>,
    /// Konnect mode: recorded as `_konnect.control_plane_name`.
    pub control_plane_name: Option<String>,
}

fn reference(e: &Map<String, Value>, field: &str) -> Option<String> {
    e.get(field).and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_owned)
}

/// An entity as a file shows it: no timestamps, no nulls at its top level, no id when its name identifies it.
fn clean(kind: EntityKind, e: &Map<String, Value>, with_id: bool) -> Map<String, Value> {
    let named = match kind {
        EntityKind::Service | EntityKind::Route => e.get("name").is_some_and(Value::is_string),
        EntityKind::Consumer => e.get("username").is_some_and(Value::is_string),
        // decK matches plugins by name and scope, acls by consumer and group.
        EntityKind::Plugin | EntityKind::Acl => true,
        // decK writes a credential's id; its key matches it too.
        EntityKind::KeyAuth | EntityKind::Jwt | EntityKind::BasicAuth => false,
        // decK writes certificates' ids (nothing else names them); an SNI's name names it.
        EntityKind::Certificate | EntityKind::CaCertificate => false,
        EntityKind::Sni => true,
        // An upstream's name names it; a target is matched by its upstream and `host:port`.
        EntityKind::Upstream => e.get("name").is_some_and(Value::is_string),
        EntityKind::Target => true,
    };
    let mut out: Map<String, Value> = e
        .iter()
        .filter(|(k, v)| !v.is_null() && !matches!(k.as_str(), "created_at" | "updated_at"))
        .filter(|(k, v)| !(k.as_str() == "tags" && v.as_array().is_some_and(Vec::is_empty)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if named && !with_id {
        out.remove("id");
    }
    if kind == EntityKind::Plugin
        && let Some(name) = e.get("name").and_then(Value::as_str)
        && let Some(Value::Object(config)) = out.get_mut("config")
    {
        for (field, default) in gatehouse_only_defaults(name) {
            if config
                .get(field)
                .is_some_and(|v| *v == default || v.as_f64().is_some() && v.as_f64() == default.as_f64())
            {
                config.remove(field);
            }
        }
    }
    out
}

fn sort_key(e: &Map<String, Value>) -> (String, String) {
    let name =
        ["name", "username", "custom_id", "group"].iter().find_map(|f| e.get(*f).and_then(Value::as_str)).unwrap_or("");
    (name.to_owned(), id_of(e).to_owned())
}

/// The file content for `current`.
pub fn dump(current: &Current, opts: &DumpOptions) -> Value {
    let pick = |kind: EntityKind| -> Vec<Map<String, Value>> {
        let mut v: Vec<_> = current.of(kind).iter().filter(|e| has_tags(e, &opts.select_tags)).cloned().collect();
        v.sort_by_key(sort_key);
        v
    };
    let (services, routes, consumers, plugins) =
        (pick(EntityKind::Service), pick(EntityKind::Route), pick(EntityKind::Consumer), pick(EntityKind::Plugin));
    let (acls, keys, jwts) = (pick(EntityKind::Acl), pick(EntityKind::KeyAuth), pick(EntityKind::Jwt));
    let basics = pick(EntityKind::BasicAuth);
    let children = |kind: EntityKind, list: &[Map<String, Value>], consumer: &str| -> Vec<Value> {
        list.iter()
            .filter(|a| reference(a, "consumer").as_deref() == Some(consumer))
            .map(|a| {
                let mut a = clean(kind, a, opts.with_id);
                a.remove("consumer");
                Value::Object(a)
            })
            .collect()
    };
    let nested_acls = |consumer: &str| children(EntityKind::Acl, &acls, consumer);
    let nested_keys = |consumer: &str| children(EntityKind::KeyAuth, &keys, consumer);
    let nested_jwts = |consumer: &str| children(EntityKind::Jwt, &jwts, consumer);
    let nested_basics = |consumer: &str| children(EntityKind::BasicAuth, &basics, consumer);
    let name_of = |kind: EntityKind, id: &str| -> String {
        let field = if kind == EntityKind::Consumer { "username" } else { "name" };
        current
            .of(kind)
            .iter()
            .find(|e| id_of(e) == id)
            .and_then(|e| e.get(field).and_then(Value::as_str))
            .unwrap_or(id)
            .to_owned()
    };
    // A plugin nests under its only scope; global and multi-scope plugins stay at the top.
    let single_scope = |p: &Map<String, Value>| -> Option<(&'static str, String)> {
        let scopes: Vec<(&'static str, String)> =
            ["service", "route", "consumer"].into_iter().filter_map(|f| reference(p, f).map(|id| (f, id))).collect();
        match scopes.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    };
    let nested_plugins = |field: &str, id: &str| -> Vec<Value> {
        plugins
            .iter()
            .filter(|p| single_scope(p).is_some_and(|(f, pid)| f == field && pid == id))
            .map(|p| {
                let mut p = clean(EntityKind::Plugin, p, opts.with_id);
                p.remove(field);
                Value::Object(p)
            })
            .collect()
    };
    let with_children = |mut e: Map<String, Value>, key: &str, children: Vec<Value>| {
        if !children.is_empty() {
            e.insert(key.to_owned(), Value::Array(children));
        }
        e
    };
    let route_value = |r: &Map<String, Value>, keep_service: bool| -> Value {
        let mut out = clean(EntityKind::Route, r, opts.with_id);
        if !keep_service {
            out.remove("service");
        } else if let Some(id) = reference(r, "service") {
            out.insert("service".into(), json!({ "name": name_of(EntityKind::Service, &id) }));
        }
        Value::Object(with_children(out, "plugins", nested_plugins("route", id_of(r))))
    };
    let mut file = Map::new();
    file.insert("_format_version".into(), json!("3.0"));
    // Passwords come back as Kong stores them (hashed): the file says so, as `kong config db_export` does.
    if !basics.is_empty() {
        file.insert("_transform".into(), json!(false));
    }
    if !opts.select_tags.is_empty() {
        file.insert("_info".into(), json!({ "select_tags": opts.select_tags }));
    }
    if let Some(name) = &opts.control_plane_name {
        file.insert("_konnect".into(), json!({ "control_plane_name": name }));
    }
    let services: Vec<Value> = services
        .iter()
        .map(|s| {
            let id = id_of(s);
            let nested_routes: Vec<Value> = routes
                .iter()
                .filter(|r| reference(r, "service").as_deref() == Some(id))
                .map(|r| route_value(r, false))
                .collect();
            let out = with_children(clean(EntityKind::Service, s, opts.with_id), "routes", nested_routes);
            Value::Object(with_children(out, "plugins", nested_plugins("service", id)))
        })
        .collect();
    // Routes whose service is not dumped (none, or outside the selected tags) stay at the top level.
    let dumped_service = |r: &Map<String, Value>| {
        reference(r, "service").is_some_and(|id| kept(current.of(EntityKind::Service), &opts.select_tags, &id))
    };
    let top_routes: Vec<Value> = routes.iter().filter(|r| !dumped_service(r)).map(|r| route_value(r, true)).collect();
    let consumers: Vec<Value> = consumers
        .iter()
        .map(|c| {
            let out = with_children(clean(EntityKind::Consumer, c, opts.with_id), "acls", nested_acls(id_of(c)));
            let out = with_children(out, "keyauth_credentials", nested_keys(id_of(c)));
            let out = with_children(out, "jwt_secrets", nested_jwts(id_of(c)));
            let out = with_children(out, "basicauth_credentials", nested_basics(id_of(c)));
            Value::Object(with_children(out, "plugins", nested_plugins("consumer", id_of(c))))
        })
        .collect();
    let top_plugins: Vec<Value> = plugins
        .iter()
        .filter(|p| {
            // Nested only when its parent is dumped too.
            match single_scope(p) {
                None => true,
                Some((field, id)) => {
                    let kind = match field {
                        "service" => EntityKind::Service,
                        "route" => EntityKind::Route,
                        _ => EntityKind::Consumer,
                    };
                    !kept(current.of(kind), &opts.select_tags, &id)
                }
            }
        })
        .map(|p| {
            let mut out = clean(EntityKind::Plugin, p, opts.with_id);
            for (field, kind) in
                [("service", EntityKind::Service), ("route", EntityKind::Route), ("consumer", EntityKind::Consumer)]
            {
                if let Some(id) = reference(p, field) {
                    out.insert(field.into(), json!(name_of(kind, &id)));
                }
            }
            Value::Object(out)
        })
        .collect();
    let snis = pick(EntityKind::Sni);
    let certificates: Vec<Value> = pick(EntityKind::Certificate)
        .iter()
        .map(|c| {
            let mut out = clean(EntityKind::Certificate, c, opts.with_id);
            out.remove("snis");
            let nested: Vec<Value> = snis
                .iter()
                .filter(|s| reference(s, "certificate").as_deref() == Some(id_of(c)))
                .map(|s| {
                    let mut s = clean(EntityKind::Sni, s, opts.with_id);
                    s.remove("certificate");
                    Value::Object(s)
                })
                .collect();
            Value::Object(with_children(out, "snis", nested))
        })
        .collect();
    let targets = pick(EntityKind::Target);
    let upstreams: Vec<Value> = pick(EntityKind::Upstream)
        .iter()
        .map(|u| {
            let nested: Vec<Value> = targets
                .iter()
                .filter(|t| reference(t, "upstream").as_deref() == Some(id_of(u)))
                .map(|t| {
                    let mut t = clean(EntityKind::Target, t, opts.with_id);
                    t.remove("upstream");
                    Value::Object(t)
                })
                .collect();
            Value::Object(with_children(clean(EntityKind::Upstream, u, opts.with_id), "targets", nested))
        })
        .collect();
    let ca_certificates: Vec<Value> = pick(EntityKind::CaCertificate)
        .iter()
        .map(|c| {
            let mut out = clean(EntityKind::CaCertificate, c, opts.with_id);
            out.remove("cert_digest");
            Value::Object(out)
        })
        .collect();
    for (key, list) in [
        ("ca_certificates", ca_certificates),
        ("certificates", certificates),
        ("consumers", consumers),
        ("plugins", top_plugins),
        ("routes", top_routes),
        ("services", services),
        ("upstreams", upstreams),
    ] {
        if !list.is_empty() {
            file.insert(key.into(), Value::Array(list));
        }
    }
    Value::Object(file)
}

fn kept(list: &[Map<String, Value>], tags: &[String], id: &str) -> bool {
    list.iter().any(|e| id_of(e) == id && has_tags(e, tags))
}

/// The file as YAML or JSON text.
pub fn render(file: &Value, json: bool) -> Result<String, String> {
    if json {
        serde_json::to_string_pretty(file).map(|s| s + "\n").map_err(|e| e.to_string())
    } else {
        serde_saphyr::to_string(file).map_err(|e| e.to_string())
    }
}
