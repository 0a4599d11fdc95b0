//! Property tests: the parsers that read untrusted input (bodies, queries, labels, ids, issuer templates)
//! return a value or a typed error for any input, and never panic.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use gatehouse_model::body::parse_object;
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
