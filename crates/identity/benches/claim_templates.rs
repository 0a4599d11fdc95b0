//! What a template claim adds to a mint: the render of one compiled claim value against a client's prebuilt
//! context, which is all the token endpoint does per template claim (compiling and building the context happen
//! when the snapshot loads). A static claim is measured alongside as the baseline.
//!
//! `cargo bench -p gatehouse-identity --bench claim_templates` (release profile; figures in bench/README.md).

// A benchmark measures wall time on purpose: the clock rule (clippy.toml) is for code under test.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use gatehouse_identity::template::{ClaimValue, TemplateContext};
use gatehouse_model::identity::client::{GrantType, ResponseType, TokenEndpointAuthMethod};
use gatehouse_model::identity::{AuthServer, Client, SigningAlgorithm};
use gatehouse_model::{AuthServerId, ClientId, Labels, Timestamp};

const CASES: &[(&str, &str)] = &[
    ("static", "test"),
    ("uuidv4", "${ uuidv4 }"),
    ("client name", "${ .Client.Name }"),
    ("now | date", "${ now | date \"2006-01-02T15:04:05Z07:00\" }"),
    ("label | default", "${ .Client.Labels.environment | default \"production\" }"),
    ("upper", "${ upper .Client.Name }"),
    ("randAlphaNum 16", "${ randAlphaNum 16 }"),
    ("two blocks", "${ .AuthServer.Audience }-${ .Client.ID }"),
    ("list | compact", "${ list (.Client.Labels.groups | default \"\") | compact }"),
    ("if/else", "${ if eq .Client.Labels.env \"prod\" }live${ else }test${ end }"),
];

fn context() -> TemplateContext {
    let labels: BTreeMap<String, String> =
        [("env", "prod"), ("groups", "suspended"), ("team", "payments")].map(|(k, v)| (k.into(), v.into())).into();
    let server = AuthServer {
        id: AuthServerId::new(),
        issuer_key: "k".into(),
        name: "riot".into(),
        audience: "https://api.example.com".into(),
        description: "budgets".into(),
        signing_algorithm: SigningAlgorithm::ES256,
        labels: Labels(labels.clone()),
        trusted_origins: vec![],
        created_at: Timestamp::from_secs(1_700_000_000),
        updated_at: Timestamp::from_secs(1_700_000_000),
    };
    let client = Client {
        id: ClientId::parse("12yvvmecnlghhnfg").unwrap(),
        auth_server_id: server.id,
        name: "kong-openid-connect-plugin".into(),
        grant_types: vec![GrantType::ClientCredentials],
        response_types: vec![ResponseType::Token],
        redirect_uris: vec![],
        login_uri: None,
        access_token_duration: 300,
        id_token_duration: 300,
        allow_all_scopes: true,
        allow_scopes: vec![],
        labels: Labels(labels),
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        created_at: Timestamp::from_secs(1_700_000_000),
        updated_at: Timestamp::from_secs(1_700_000_000),
    };
    TemplateContext::new(&server, &client)
}

/// Median and 99th percentile of per-render time in µs over `rounds` rounds of `batch` renders.
fn measure(value: &ClaimValue, context: &TemplateContext, rounds: usize, batch: u32) -> (f64, f64) {
    let now = Timestamp::from_secs(1_750_000_000);
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                black_box(value.render(black_box(context), now).unwrap());
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

fn main() {
    let context = context();
    println!("{:<18} {:>10} {:>10}", "claim", "median µs", "p99 µs");
    for (name, value) in CASES {
        let compiled = ClaimValue::compile(value).unwrap();
        measure(&compiled, &context, 20, 200); // warm-up
        let (median, p99) = measure(&compiled, &context, 200, 200);
        println!("{name:<18} {median:>10.2} {p99:>10.2}");
    }
}
