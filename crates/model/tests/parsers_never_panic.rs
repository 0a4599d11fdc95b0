//! Property tests: the parsers that read untrusted input (bodies, queries, labels, ids, issuer templates, Kong
//! form bodies) return a value or a typed error for any input, and never panic.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use gatehouse_model::body::parse_object;
use gatehouse_model::gateway::form::entity_object;
use gatehouse_model::gateway::{EntityKind, validate_entity};
use gatehouse_model::identity::{
    AuthServerPatch, ClaimPatch, ClientInput, ClientPatch, NewAuthServer, NewClaim, NewScope,
};
use gatehouse_model::issuer_url::IssuerUrlTemplate;
use gatehouse_model::listing::parse_list_query;
use gatehouse_model::{ClientId, Labels};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec!["client_credentials", "RS256", "https://a.example.com", "kong", "a b", ""])
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects whose keys are mostly the API's real field names, so validation paths beyond "unknown property" run.
fn body_object() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop::sample::select(vec![
        "name",
        "audience",
        "description",
        "signing_algorithm",
        "labels",
        "trusted_origins",
        "value",
        "include_in_token",
        "include_in_all_scopes",
        "include_in_scopes",
        "enabled",
        "default",
        "grant_types",
        "response_types",
        "redirect_uris",
        "login_uri",
        "access_token_duration",
        "id_token_duration",
        "allow_all_scopes",
        "allow_scopes",
        "token_endpoint_auth_method",
        "client_secret",
        "id",
        "other",
    ]);
    prop::collection::btree_map(key, json_value(), 0..10)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Form field names built from real field names and Kong's notation, plus noise.
fn form_name() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        prop::sample::select(vec![
            "name",
            "url",
            "paths",
            "tags",
            "methods",
            "hosts",
            "headers",
            "config",
            "service",
            "id",
            "ttl",
            "custom_introspection_headers",
            "custom_claims_forward",
            "sources",
            "ip",
            "port",
            "status_code",
            "enabled",
            "protocols",
            "consumer_group",
            "partials",
            "x",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9_-]{0,4}",
    ];
    let sep = prop::sample::select(vec![".", "[]", "[1]", "[2]", "[", "]", "..", "[x]", "[99999999999999999999]"]);
    (part.clone(), prop::collection::vec((sep, part), 0..10)).prop_map(|(first, rest)| {
        let mut name = first;
        for (sep, part) in rest {
            name.push_str(sep);
            name.push_str(&part);
        }
        name
    })
}

fn form_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "true",
            "false",
            "0",
            "-1",
            "1e3",
            "NaN",
            "inf",
            "1.5",
            "/a",
            "GET",
            "oauth2-introspection",
            "request-termination",
            "0190a0a0-0000-7000-8000-000000000001",
            "http://127.0.0.1:1/x",
        ])
        .prop_map(str::to_owned),
        ".{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn form_bodies_become_objects_or_violations(pairs in prop::collection::vec((form_name(), form_value()), 0..24)) {
        for kind in EntityKind::ALL {
            match entity_object(kind, &pairs, Some("oauth2-introspection")) {
                Ok(object) => {
                    let _ = validate_entity(kind, &object);
                }
                Err(violations) => prop_assert!(!violations.is_empty()),
            }
        }
    }

    /// A body written in Kong's notation reads back as the JSON it encodes.
    #[test]
    fn form_notation_round_trips(
        name in "[a-z][a-z0-9_-]{0,15}",
        retries in 0i64..32767,
        enabled in any::<bool>(),
        tags in prop::collection::vec("[a-z0-9]{1,8}", 1..5),
        status in 100i64..600,
        message in "[ -~]{1,20}",
        indexed in any::<bool>(),
    ) {
        let mut pairs = vec![
            ("name".to_owned(), name.clone()),
            ("retries".to_owned(), retries.to_string()),
            ("enabled".to_owned(), enabled.to_string()),
        ];
        for (i, tag) in tags.iter().enumerate() {
            let key = if indexed { format!("tags[{}]", i + 1) } else { "tags[]".to_owned() };
            pairs.push((key, tag.clone()));
        }
        let service = entity_object(EntityKind::Service, &pairs, None).unwrap();
        prop_assert_eq!(
            Value::Object(service),
            json!({"name": name, "retries": retries, "enabled": enabled, "tags": tags})
        );
        let plugin = vec![
            ("name".to_owned(), "request-termination".to_owned()),
            ("config.status_code".to_owned(), status.to_string()),
            ("config.message".to_owned(), message.clone()),
        ];
        let plugin = entity_object(EntityKind::Plugin, &plugin, None).unwrap();
        prop_assert_eq!(
            Value::Object(plugin),
            json!({"name": "request-termination", "config": {"status_code": status, "message": message}})
        );
    }

    #[test]
    fn bodies_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_object(&bytes);
    }

    #[test]
    fn json_text_parses_or_fails_cleanly(text in "[\\[\\]{}\":,a-z0-9 .-]{0,80}") {
        let _ = parse_object(text.as_bytes());
    }

    #[test]
    fn every_body_reader_handles_any_object(obj in body_object()) {
        let _ = NewAuthServer::from_body(&obj);
        let _ = AuthServerPatch::from_body(&obj);
        let _ = NewScope::from_body(&obj);
        let _ = NewClaim::from_body(&obj);
        let _ = ClaimPatch::from_body(&obj);
        let _ = ClientInput::from_create_body(&obj);
        let _ = ClientInput::from_replace_body(&obj);
        let _ = ClientPatch::from_body(&obj);
    }

    #[test]
    fn list_queries_parse_or_fail_cleanly(q in "[a-z\\[\\]%=&+ ,:_0-9A-F-]{0,80}") {
        for spec in [
            gatehouse_model::identity::auth_server::COLLECTION,
            gatehouse_model::identity::client::COLLECTION,
            gatehouse_model::identity::secret::COLLECTION,
        ] {
            if let Ok(parsed) = parse_list_query(Some(&q), &spec) {
                prop_assert!((1..=1000).contains(&parsed.page_size));
                prop_assert!(parsed.page_number >= 1);
            }
        }
    }

    #[test]
    fn labels_and_ids_and_templates(v in json_value(), s in ".{0,64}") {
        let _ = Labels::from_json("labels", &v);
        if let Ok(id) = ClientId::parse(&s) {
            prop_assert!(id.as_str().len() <= 36);
        }
        let _ = IssuerUrlTemplate::parse(&s);
        let _ = IssuerUrlTemplate::parse(&format!("https://{s}"));
    }
}
