//! Property tests: claim templates built from random pieces, random function calls with random arguments, and
//! random client labels compile to a value or a typed error, and render to a value or a typed error, without
//! panicking and within the render bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use gatehouse_identity::template::{ClaimValue, MAX_OUTPUT, TemplateContext, function_names};
use gatehouse_model::identity::client::{GrantType, TokenEndpointAuthMethod};
use gatehouse_model::identity::{AuthServer, Client, SigningAlgorithm};
use gatehouse_model::{AuthServerId, ClientId, Labels, Timestamp};

fn context(labels: BTreeMap<String, String>) -> TemplateContext {
    let server = AuthServer {
        id: AuthServerId::new(),
        issuer_key: "k".into(),
        name: "server".into(),
        audience: "https://api.example.com".into(),
        description: String::new(),
        signing_algorithm: SigningAlgorithm::ES256,
        labels: Labels(labels.clone()),
        trusted_origins: vec![],
        created_at: Timestamp::from_secs(1_700_000_000),
        updated_at: Timestamp::from_secs(1_700_000_000),
    };
    let client = Client {
        id: ClientId::parse("client").unwrap(),
        auth_server_id: server.id,
        name: "client".into(),
        grant_types: vec![GrantType::ClientCredentials],
        response_types: vec![],
        redirect_uris: vec!["https://app.example.com/cb".into()],
        login_uri: Some("https://app.example.com/login".into()),
        access_token_duration: 300,
        id_token_duration: 300,
        allow_all_scopes: false,
        allow_scopes: vec![],
        labels: Labels(labels),
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        created_at: Timestamp::from_secs(1_700_000_000),
        updated_at: Timestamp::from_secs(1_700_000_000),
    };
    TemplateContext::new(&server, &client)
}

fn names() -> Vec<&'static str> {
    function_names().collect()
}

/// An argument of any type a template can write: numbers (huge, negative, fractional), strings (layouts,
/// durations, JSON, URLs, UUIDs), booleans, context values, nested calls.
fn argument() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-5i64..40).prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        prop::sample::select(vec![
            "\"\"",
            "\"a\"",
            "\"2006-01-02T15:04:05Z07:00\"",
            "\"-1.5h\"",
            "\"{\\\"a\\\":[1]}\"",
            "\"https://u:p@h:1/p?q#f\"",
            "\"5f7a3c1e-8e1f-4c2a-9a57-2f0b5a1d9c10\"",
            "\"Europe/Paris\"",
            "\"a,b,c\"",
            "\",\"",
            "\"é😀\"",
            "true",
            "false",
            "nil",
            ".",
            "$",
            ".Client",
            ".Client.Name",
            ".Client.Labels",
            ".Client.Labels.x",
            ".Client.GrantTypes",
            ".AuthServer.CreatedAt",
            "now",
            "(list 1 \"a\" (list 2))",
            "(dict \"a\" 1 \"b\" (dict))",
            "(until 5)",
            "\"%v %d %s\"",
            "\"%999999d\"",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9 _./:-]{0,12}".prop_map(|s| format!("{s:?}")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        (prop::sample::select(names()), prop::collection::vec(inner, 0..4))
            .prop_map(|(f, args)| format!("({f} {})", args.join(" ")))
    })
}

/// Pieces of template text, well-formed or not.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "${",
            "}",
            " ",
            "|",
            "(",
            ")",
            "if",
            "else",
            "end",
            "range",
            "with",
            "$x",
            ":=",
            "=",
            ",",
            "\"",
            "'",
            "`",
            "/*",
            "*/",
            "-",
            "\n",
            "{{",
            "}}",
            "${ end }",
            "${ else }",
            "define",
            "template",
            "block",
            ".Client.Labels.groups",
            "default",
            "\"x\"",
            "1",
            "-1",
            "1.5",
            "$x := 1",
            "${ if 1 }",
            "${ range until 3 }",
            "${ with .Client }",
            "é",
            "\\",
            "nil",
            "$",
            ".",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(names()).prop_map(str::to_owned),
        ".{0,6}",
    ]
}

// Wall time is the point here: a backstop for work the step budget would fail to count. A budgeted render takes
// milliseconds; the bound is what only an unbudgeted blow-up reaches, not a loaded machine (it was 2 s).
#[allow(clippy::disallowed_methods)]
fn check(value: &str, labels: BTreeMap<String, String>) {
    let Ok(compiled) = ClaimValue::compile(value) else { return };
    let started = Instant::now();
    if let Ok(rendered) = compiled.render(&context(labels), Timestamp::from_secs(1_750_000_000)) {
        assert!(rendered.to_string().len() <= 2 * MAX_OUTPUT + 16, "{value}");
    }
    assert!(started.elapsed() < Duration::from_secs(20), "{value} took {:?}", started.elapsed());
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["x", "groups", "env", "a"]).prop_map(str::to_owned),
        ".{0,10}",
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(value in ".{0,80}", labels in labels()) {
        check(&value, labels);
    }

    #[test]
    fn random_pieces_never_panic(pieces in prop::collection::vec(piece(), 0..24), labels in labels()) {
        check(&pieces.concat(), labels);
    }

    #[test]
    fn random_calls_never_panic(
        calls in prop::collection::vec((prop::sample::select(names()), prop::collection::vec(argument(), 0..4)), 1..4),
        labels in labels(),
    ) {
        let value: String = calls.iter().map(|(f, args)| format!("${{ {f} {} }}", args.join(" "))).collect();
        check(&value, labels);
    }

    #[test]
    fn random_pipelines_and_blocks_never_panic(
        head in argument(),
        pipe in prop::collection::vec(prop::sample::select(names()), 0..3),
        block in prop::sample::select(vec!["if", "with", "range"]),
        labels in labels(),
    ) {
        let pipeline = std::iter::once(head).chain(pipe.into_iter().map(str::to_owned)).collect::<Vec<_>>().join(" | ");
        check(&format!("${{ {block} {pipeline} }}[${{ . }}]${{ else }}none${{ end }}"), labels.clone());
        check(&format!("${{ $v := {pipeline} }}${{ $v }}"), labels);
    }
}
