//! Property test: whatever entity validation accepts, the typed configuration snapshot converts. The snapshot
//! requires every field the schema defaults instead of defaulting it again, so a schema change that the
//! conversion did not follow fails here rather than on a gateway.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use gatehouse_model::gateway::snapshot::ConfigSnapshot;
use gatehouse_model::gateway::{EntityKind, validate_entity};

fn pick<T: Clone + std::fmt::Debug + 'static>(items: Vec<T>) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

/// A value for `field` that is often valid and sometimes not: validation decides, the test only follows it.
fn value_for(field: &'static str) -> BoxedStrategy<Value> {
    let plausible: Vec<Value> = match field {
        "name" | "username" | "custom_id" | "instance_name" => vec![json!("a-name"), json!("x"), json!(""), json!(7)],
        "url" => vec![json!("http://upstream.test"), json!("https://u.test:8443/p"), json!("ftp://x"), json!("nope")],
        "host" => vec![json!("upstream.test"), json!("10.0.0.1"), json!("")],
        "protocol" => vec![json!("http"), json!("https"), json!("grpc"), json!("tcp"), json!("bogus")],
        "port" => vec![json!(80), json!(8443), json!(0), json!(70000)],
        "path" => vec![json!("/"), json!("/base"), json!("nope"), Value::Null],
        "retries" | "connect_timeout" | "read_timeout" | "write_timeout" | "regex_priority" => {
            vec![json!(0), json!(5), json!(60000), json!(-1)]
        }
        "tls_verify" | "enabled" | "strip_path" | "preserve_host" | "request_buffering" | "response_buffering" => {
            vec![json!(true), json!(false), Value::Null]
        }
        "protocols" => vec![json!(["http", "https"]), json!(["https"]), json!(["grpc"]), json!(["tcp"]), json!([])],
        "methods" => vec![json!(["GET"]), json!(["GET", "POST"]), json!([])],
        "hosts" => vec![json!(["a.test"]), json!(["*.a.test"]), json!([])],
        "paths" => vec![json!(["/p"]), json!(["~/r/\\d+$"]), json!(["/"]), json!([])],
        "headers" => vec![json!({"x-a": ["1"]}), json!({}), Value::Null],
        "https_redirect_status_code" => vec![json!(426), json!(301), json!(200)],
        "service" | "route" | "consumer" => vec![json!({"id": "6d3c3c2a-8e51-4f0a-9c6b-1f0e8f5b8a11"}), Value::Null],
        "tags" => vec![json!(["t"]), json!([])],
        "tls_verify_depth" => vec![json!(0), json!(3), json!(65), Value::Null],
        "ca_certificates" => vec![json!(["6d3c3c2a-8e51-4f0a-9c6b-1f0e8f5b8a12"]), json!(["nope"]), json!([])],
        "client_certificate" => vec![json!({"id": "6d3c3c2a-8e51-4f0a-9c6b-1f0e8f5b8a13"}), Value::Null],
        "snis" => vec![json!(["a.test"]), json!(["*.a.test", "b.*"]), json!(["a.test:1"]), json!([])],
        "config" => vec![
            json!({}),
            json!({"status_code": 418, "message": "no"}),
            json!({"introspection_url": "https://idp.test/introspect", "authorization_value": "Basic eDp5"}),
            json!({"allow": ["admins"]}),
            json!({"deny": ["banned", "x"], "hide_groups_header": true}),
        ],
        "group" => vec![json!("admins"), json!("a b"), json!(""), json!(3)],
        _ => vec![Value::Null],
    };
    pick(plausible).boxed()
}

fn body(
    fields: &'static [&'static str],
    extra: Option<(&'static str, Vec<Value>)>,
) -> BoxedStrategy<Map<String, Value>> {
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> =
        fields.iter().map(|f| prop::option::of(value_for(f).prop_map(move |v| (f.to_string(), v))).boxed()).collect();
    let fixed = extra.map(|(k, values)| pick(values).prop_map(move |v| (k.to_owned(), v)).boxed());
    (entries, prop::option::of(fixed.unwrap_or_else(|| Just((String::new(), Value::Null)).boxed())))
        .prop_map(|(entries, fixed)| {
            let mut map: Map<String, Value> = entries.into_iter().flatten().collect();
            if let Some((k, v)) = fixed.filter(|(k, _)| !k.is_empty()) {
                map.insert(k, v);
            }
            map
        })
        .boxed()
}

fn converts(kind: EntityKind, input: &Map<String, Value>) -> Result<(), TestCaseError> {
    if let Ok(mut entity) = validate_entity(kind, input) {
        // Ids are assigned by the API when absent.
        if entity.get("id").is_none_or(Value::is_null) {
            entity.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
        let converted = ConfigSnapshot::from_entities(None, 1, [(kind, &entity)]);
        prop_assert!(converted.is_ok(), "{kind:?} {entity:?}: {converted:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn services_convert(input in body(&["name", "url", "host", "protocol", "port", "path", "retries",
        "connect_timeout", "read_timeout", "write_timeout", "tls_verify", "tls_verify_depth", "ca_certificates",
        "client_certificate", "enabled", "tags"], None)) {
        converts(EntityKind::Service, &input)?;
    }

    #[test]
    fn routes_convert(input in body(&["name", "protocols", "methods", "hosts", "paths", "headers",
        "https_redirect_status_code", "regex_priority", "strip_path", "preserve_host", "request_buffering",
        "response_buffering", "snis", "service", "tags"], None)) {
        converts(EntityKind::Route, &input)?;
    }

    #[test]
    fn consumers_convert(input in body(&["username", "custom_id", "tags"], None)) {
        converts(EntityKind::Consumer, &input)?;
    }

    #[test]
    fn plugins_convert(input in body(&["instance_name", "enabled", "protocols", "route", "service", "consumer",
        "config", "tags"],
        Some(("name", vec![json!("request-termination"), json!("oauth2-introspection"), json!("acl")])))) {
        converts(EntityKind::Plugin, &input)?;
    }

    /// An acl converts into its consumer's groups (which the snapshot needs to hold, whatever the order).
    #[test]
    fn acls_convert(input in body(&["consumer", "group", "tags"], None)) {
        if let Ok(mut acl) = validate_entity(EntityKind::Acl, &input) {
            acl.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
            let body = json!({"username": "c"});
            let mut consumer = validate_entity(EntityKind::Consumer, body.as_object().unwrap()).unwrap();
            consumer.insert("id".into(), acl["consumer"]["id"].clone());
            let converted =
                ConfigSnapshot::from_entities(None, 1, [(EntityKind::Acl, &acl), (EntityKind::Consumer, &consumer)]);
            prop_assert!(converted.is_ok(), "{acl:?}: {converted:?}");
            let groups = converted.unwrap().consumers[0].groups.clone();
            prop_assert_eq!(groups, vec![acl["group"].as_str().unwrap().to_owned()]);
        }
    }
}
