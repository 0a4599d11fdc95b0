#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use gatehouse_model::identity::client::{GrantType, ResponseType, TokenEndpointAuthMethod};
use gatehouse_model::identity::{AuthServer, Client, SigningAlgorithm};
use gatehouse_model::{AuthServerId, ClientId, Labels, Timestamp};

use super::*;

/// 2024-03-05T07:08:09.5Z
const NOW: Timestamp = Timestamp::from_micros(1_709_622_489_500_000);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>())
}

pub(crate) fn fixture(client_labels: &[(&str, &str)]) -> (AuthServer, Client) {
    let server = AuthServer {
        id: "5f7a3c1e-8e1f-4c2a-9a57-2f0b5a1d9c10".parse().unwrap(),
        issuer_key: "k".into(),
        name: "riot".into(),
        audience: "https://api.example.com".into(),
        description: "budgets".into(),
        signing_algorithm: SigningAlgorithm::RS256,
        labels: labels(&[("team", "core")]),
        trusted_origins: vec![],
        created_at: Timestamp::from_secs(1_700_000_000),
        updated_at: Timestamp::from_secs(1_700_000_100),
    };
    let client = Client {
        id: ClientId::parse("12yvvmecnlghhnfg").unwrap(),
        auth_server_id: AuthServerId::new(),
        name: "kong-openid-connect-plugin".into(),
        grant_types: vec![GrantType::ClientCredentials],
        response_types: vec![ResponseType::Token, ResponseType::IdToken],
        redirect_uris: vec!["https://app.example.com/cb".into()],
        login_uri: None,
        access_token_duration: 300,
        id_token_duration: 300,
        allow_all_scopes: true,
        allow_scopes: vec![],
        labels: labels(client_labels),
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        created_at: Timestamp::from_secs(1_709_000_000),
        updated_at: Timestamp::from_secs(1_709_000_000),
    };
    (server, client)
}

fn render_with(template: &str, client_labels: &[(&str, &str)]) -> Result<Json, String> {
    let (server, client) = fixture(client_labels);
    let value = ClaimValue::compile(template).map_err(|e| e.to_string())?;
    value.render(&TemplateContext::new(&server, &client), NOW).map_err(|e| e.to_string())
}

fn render(template: &str) -> Json {
    render_with(template, &[("env", "local"), ("groups", "suspended")]).unwrap_or_else(|e| panic!("{template}: {e}"))
}

fn check(cases: &[(&str, Json)]) {
    for (template, expected) in cases {
        assert_eq!(&render(template), expected, "{template}");
    }
}

fn fails(template: &str) -> String {
    match render_with(template, &[]) {
        Err(e) => e,
        Ok(v) => panic!("{template} rendered {v}"),
    }
}

#[test]
fn reference_examples() {
    let uuid = render("${ uuidv4 }");
    let uuid = uuid.as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
    assert_ne!(render("${ uuidv4 }"), render("${ uuidv4 }"), "a new value per token");
    assert_eq!(render("${ .Client.Name }"), json!("kong-openid-connect-plugin"));
    assert_eq!(render("${ now | date \"2006-01-02T15:04:05Z07:00\" }"), json!("2024-03-05T07:08:09Z"));
    assert_eq!(
        render_with("${ .Client.Labels.environment | default \"production\" }", &[]).unwrap(),
        json!("production")
    );
    assert_eq!(
        render_with("${ .Client.Labels.environment | default \"production\" }", &[("environment", "staging")]).unwrap(),
        json!("staging")
    );
    assert_eq!(render("${ upper .Client.Name }"), json!("KONG-OPENID-CONNECT-PLUGIN"));
    let random = render("${ randAlphaNum 16 }");
    let random = random.as_str().unwrap();
    assert_eq!(random.len(), 16);
    assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        render("${ uuidParse \"5F7A3C1E-8E1F-4C2A-9A57-2F0B5A1D9C10\" }"),
        json!("5f7a3c1e-8e1f-4c2a-9a57-2f0b5a1d9c10")
    );
    assert_eq!(render("${ uuidValidate \"nope\" }"), json!(false));
    assert_eq!(render("${ .AuthServer.Audience }-${ .Client.ID }"), json!("https://api.example.com-12yvvmecnlghhnfg"));
    // [RIOT]: a JSON array, empty or with the label's value.
    let groups = "${ list (.Client.Labels.groups | default \"\") | compact }";
    assert_eq!(render_with(groups, &[]).unwrap(), json!([]));
    assert_eq!(render_with(groups, &[("groups", "suspended")]).unwrap(), json!(["suspended"]));
}

#[test]
fn context_variables() {
    check(&[
        ("${ .AuthServer.ID }", json!("5f7a3c1e-8e1f-4c2a-9a57-2f0b5a1d9c10")),
        ("${ .AuthServer.Name }/${ .AuthServer.Description }", json!("riot/budgets")),
        ("${ .AuthServer.SigningAlgorithm }", json!("RS256")),
        ("${ .AuthServer.Labels.team }", json!("core")),
        ("${ .AuthServer.CreatedAt | date \"2006-01-02\" }", json!("2023-11-14")),
        ("${ .AuthServer.UpdatedAt | unixEpoch }", json!(1_700_000_100)),
        ("${ .Client.CreatedAt | unixEpoch }", json!(1_709_000_000)),
        ("${ .Client.UpdatedAt | htmlDate }", json!("2024-02-27")),
        ("${ .Client.GrantTypes }", json!(["client_credentials"])),
        ("${ .Client.ResponseTypes | join \" \" }", json!("token id_token")),
        ("${ .Client.RedirectURIs | first }", json!("https://app.example.com/cb")),
        ("x${ .Client.LoginURI }x", json!("xx")),
        ("${ .Client.AllowAllScopes }", json!(true)),
        ("${ .Client.Labels.missing }", json!("")),
    ]);
    assert!(fails("${ .Client.Nope }").contains("Nope"), "unknown fields are errors, as in Go");
}

#[test]
fn control_structures_and_literals() {
    check(&[
        ("${ if eq .Client.Labels.env \"local\" }dev${ else }prod${ end }", json!("dev")),
        ("${ if .Client.Labels.nope }a${ else if .Client.Labels.env }b${ end }", json!("b")),
        ("${ with .Client.Labels.env }<${ . }>${ end }", json!("<local>")),
        ("${ with .Client.Labels.nope }x${ else }none${ end }", json!("none")),
        ("${ range $i, $g := .Client.GrantTypes }${ $i }:${ $g }${ end }", json!("0:client_credentials")),
        ("${ range until 3 }${ . }${ end }", json!(12)),
        ("${ range (list) }x${ else }empty${ end }", json!("empty")),
        ("${ $x := .Client.Name | trunc 4 }${ $x }${ $x }", json!("kongkong")),
        ("${ /* comment */ }a", json!("a")),
        ("a {{ b }} ${ \"}\" }", json!("a {{ b }} }")),
        ("${- \"x\" -}", json!("x")),
        ("${ (printf \"%d-%s\" 3 \"a\") }", json!("3-a")),
        ("${ print 1 2 \"a\" \"b\" }", json!("1 2ab")),
        ("${ println \"a\" 1 }", json!("a 1\n")),
        ("${ len .Client.Name }", json!(26)),
        ("${ index .Client.GrantTypes 0 }", json!("client_credentials")),
        ("${ and true 1 }|${ or 0 \"x\" }|${ not false }", json!("1|x|true")),
        ("${ ne 1 2 }${ lt 1 2 }${ le 2 2 }${ gt 3 2 }${ ge 1 2 }", json!("truetruetruetruefalse")),
        ("${ urlquery \"a b&c\" }", json!("a%20b&c")),
    ]);
}

#[test]
fn type_inference() {
    assert_eq!(infer_type("42"), json!(42));
    assert_eq!(infer_type("-7"), json!(-7));
    assert_eq!(infer_type("1.5"), json!(1.5));
    assert_eq!(infer_type("1e+06"), json!(1_000_000));
    assert_eq!(infer_type("5.00"), json!(5));
    assert_eq!(infer_type("true"), json!(true));
    assert_eq!(infer_type("false"), json!(false));
    assert_eq!(infer_type("[1,\"a\"]"), json!([1, "a"]));
    assert_eq!(infer_type("{\"a\":[true]}"), json!({"a": [true]}));
    assert_eq!(infer_type("[not json"), json!("[not json"));
    assert_eq!(infer_type("null"), json!("null"));
    assert_eq!(infer_type("\"q\""), json!("\"q\""));
    assert_eq!(infer_type(" 42"), json!(" 42"));
    assert_eq!(infer_type(""), json!(""));
    assert_eq!(infer_type("NaN"), json!("NaN"));
    assert_eq!(infer_type("99999999999999999999"), json!(1e20));
    // Static values keep their JSON type too.
    assert_eq!(ClaimValue::compile("{\"a\":1}").unwrap().render(&ctx(), NOW).unwrap(), json!({"a": 1}));
    assert!(!ClaimValue::compile("plain").unwrap().is_template());
}

fn ctx() -> TemplateContext {
    let (server, client) = fixture(&[]);
    TemplateContext::new(&server, &client)
}

#[test]
fn parse_errors_have_positions() {
    let err = |s: &str| ClaimValue::compile(s).unwrap_err();
    assert_eq!(err("abc ${ nosuchfn 1 }").position, 5);
    assert!(err("abc ${ nosuchfn 1 }").message.contains("nosuchfn"), "{}", err("abc ${ nosuchfn 1 }").message);
    assert_eq!(err("${ .a }xx${ .b | }").position, 10);
    assert_eq!(err("${ if .a }${ .b ) }${ end }").position, 11);
    assert_eq!(err("${ $x }").position, 1);
    assert_eq!(err("${ $x := 1 }${ $x }${ $y }").position, 20);
    assert_eq!(err("${ if 1 }").position, 1);
    assert_eq!(err("${ end }").position, 1);
    assert_eq!(err("ab${ \"x }").position, 3);
    assert!(err("${ define \"t\" }x${ end }").message.contains("not supported"));
    assert_eq!(err("${ range $i := until 3 }${ $i }${ end }${ $i }").position, 40);
}

#[test]
fn render_errors() {
    assert!(fails("${ div 1 0 }").contains("divide by zero"));
    assert!(fails("${ mustFromJson \"{\" }").contains("fromJson"));
    assert!(fails("${ first 3 }").contains("not a list"));
    assert!(fails("${ mustToDate \"2006\" \"x\" }").contains("cannot parse"));
    assert!(fails("${ uuidParse \"x\" }").contains("uuidParse"));
    assert!(fails("${ range 3 }${ end }").contains("range"));
}

#[test]
fn bounds() {
    assert!(fails("${ repeat 100000 \"ab\" }").contains("longer than"));
    assert!(fails("${ until 100000 }").contains("longer than"));
    assert!(fails("${ untilStep 0 1000000000 1 }").contains("longer than"));
    assert!(fails("${ seq 1000000000 }").contains("longer than"));
    assert!(fails("${ randAlphaNum 1000000000 }").contains("longer than"));
    assert!(fails("${ printf \"%99999999d\" 1 }").contains("too large"));
    assert!(fails("${ indent 100000 \"a\" }").contains("longer than"));
    // Loops spend steps, nested or not, even with nothing in their bodies.
    assert!(fails("${ range until 1000 }${ range until 1000 }${ end }${ end }").contains("steps"));
    let m = "${ $l := until 1000 }${ range $l }${ range $l }${ range $l }${ end }${ end }${ end }";
    assert!(fails(m).contains("steps"));
    // Output is bounded even when each piece is small.
    assert!(fails("${ range until 1000 }${ repeat 100 \"x\" }${ end }").contains("output"));
    // Values cannot grow past the bound, however they are combined. (gtmpl has no `$x = …` reassignment, so
    // nothing accumulates across iterations.)
    let e = fails("${ $a := repeat 8000 \"x\" }${ cat $a $a $a }");
    assert!(e.contains("larger than"), "{e}");
    let nesting: String = (0..40).map(|i| format!("${{ $v{} := list $v{i} }}", i + 1)).collect();
    let e = fails(&format!("${{ $v0 := 1 }}{nesting}"));
    assert!(e.contains("nested"), "{e}");
    assert!(fails("${ $x := 1 }${ $x = 2 }").contains("unexpected ="));
    // A render after a failed one starts with a full budget.
    assert_eq!(render("${ len (until 999) }"), json!(999));
}

#[test]
fn date_functions() {
    check(&[
        ("${ now | date \"2006-01-02 15:04:05.000 MST\" }", json!("2024-03-05 07:08:09.500 UTC")),
        ("${ now | unixEpoch }", json!(1_709_622_489)),
        ("${ date \"Jan 2, 2006\" 0 }", json!("Jan 1, 1970")),
        ("${ dateInZone \"15:04 MST\" now \"Europe/Paris\" }", json!("08:08 CET")),
        ("${ dateInZone \"15:04 -07:00\" now \"Asia/Kolkata\" }", json!("12:38 +05:30")),
        ("${ now | htmlDate }", json!("2024-03-05")),
        ("${ htmlDateInZone now \"Pacific/Auckland\" }", json!("2024-03-05")),
        ("${ now | dateModify \"-1.5h\" | date \"15:04\" }", json!("05:38")),
        ("${ now | dateModify \"bogus\" | date \"15:04\" }", json!("07:08")),
        ("${ now | mustDateModify \"24h\" | htmlDate }", json!("2024-03-06")),
        ("${ duration 95 }", json!("1m35s")),
        ("${ duration \"3600\" }", json!("1h0m0s")),
        ("${ durationRound \"2h10m5s\" }", json!("2h")),
        ("${ durationRound \"800h\" }", json!("1mo")),
        ("${ durationRound \"9000h\" }", json!("1y")),
        ("${ .Client.CreatedAt | ago }", json!("172h54m50s")),
        ("${ toDate \"2006-01-02\" \"2017-12-31\" | date \"02/01/2006\" }", json!("31/12/2017")),
        ("${ toDate \"2006-01-02\" \"junk\" | date \"2006-01-02\" }", json!("0001-01-01")),
        (
            "${ mustToDate \"2006-01-02T15:04:05Z07:00\" \"2024-01-02T03:04:05+02:00\" | unixEpoch }",
            json!(1_704_157_445),
        ),
        ("${ now | toJson }", json!("\"2024-03-05T07:08:09.5Z\"")),
        ("${ now }", json!("2024-03-05 07:08:09.5 +0000 UTC")),
    ]);
}

#[test]
fn string_functions() {
    check(&[
        ("${ abbrev 5 \"hello world\" }", json!("he...")),
        ("${ abbrev 20 \"hello world\" }", json!("hello world")),
        ("${ abbrevboth 5 10 \"1234 5678 9123\" }", json!("...5678...")),
        ("${ trunc 5 \"hello world\" }", json!("hello")),
        ("${ trunc -5 \"hello world\" }", json!("world")),
        ("${ trim \"   hello    \" }", json!("hello")),
        ("${ upper \"hello\" }", json!("HELLO")),
        ("${ lower \"HELLO\" }", json!("hello")),
        ("${ title \"hello world\" }", json!("Hello World")),
        ("${ untitle \"Hello World\" }", json!("hello world")),
        ("${ substr 0 5 \"hello world\" }", json!("hello")),
        ("${ repeat 3 \"hello\" }", json!("hellohellohello")),
        ("${ trimAll \"$\" \"$5.00\" }", json!(5)),
        ("${ trimSuffix \"-\" \"hello-\" }", json!("hello")),
        ("${ trimPrefix \"-\" \"-hello\" }", json!("hello")),
        ("${ nospace \"hello w o r l d\" }", json!("helloworld")),
        ("${ initials \"First Try\" }", json!("FT")),
        ("${ swapcase \"This Is A.Test\" }", json!("tHIS iS a.tEST")),
        ("${ snakecase \"FirstName\" }", json!("first_name")),
        ("${ snakecase \"HTTPServer\" }", json!("http_server")),
        ("${ camelcase \"http_server\" }", json!("HttpServer")),
        ("${ kebabcase \"FirstName\" }", json!("first-name")),
        ("${ wrap 80 \"short\" }", json!("short")),
        ("${ wrap 5 \"Hello World\" }", json!("Hello\nWorld")),
        ("${ wrapWith 5 \"\\t\" \"Hello World\" }", json!("Hello\tWorld")),
        ("${ contains \"cat\" \"catch\" }", json!(true)),
        ("${ hasPrefix \"cat\" \"catch\" }", json!(true)),
        ("${ hasSuffix \"cat\" \"catch\" }", json!(false)),
        ("${ quote \"a\" \"b\\\"c\" }", json!("\"a\" \"b\\\"c\"")),
        ("${ squote \"a\" }", json!("'a'")),
        ("${ cat \"hello\" \"beautiful\" \"world\" }", json!("hello beautiful world")),
        ("${ indent 4 \"a\\nb\" }", json!("    a\n    b")),
        ("${ nindent 2 \"a\" }", json!("\n  a")),
        ("${ \"I Am Henry VIII\" | replace \" \" \"-\" }", json!("I-Am-Henry-VIII")),
        ("${ plural \"one anchovy\" \"many anchovies\" 2 }", json!("many anchovies")),
        ("${ plural \"one anchovy\" \"many anchovies\" 1 }", json!("one anchovy")),
        ("${ sha1sum \"Hello world!\" }", json!("d3486ae9136e7856bc42212385ea797094475802")),
        ("${ sha256sum \"Hello world!\" }", json!("c0535e4be2b79ffd93291305436bf889314e4a3faec05ecffcbb7df31ad9e51a")),
        ("${ adler32sum \"Hello world!\" }", json!(487_130_206)),
    ]);
    for (f, alphabet) in [
        ("randAlpha", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
        ("randNumeric", "0123456789"),
        (
            "randAscii",
            " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~",
        ),
    ] {
        let out = ClaimValue::compile(&format!("x${{ {f} 12 }}")).unwrap().render(&ctx(), NOW).unwrap();
        let out = out.as_str().unwrap().strip_prefix('x').unwrap().to_owned();
        assert_eq!(out.chars().count(), 12, "{f}");
        assert!(out.chars().all(|c| alphabet.contains(c)), "{f}: {out}");
    }
    let shuffled = render("${ shuffle \"hello\" }");
    let mut letters: Vec<char> = shuffled.as_str().unwrap().chars().collect();
    letters.sort_unstable();
    assert_eq!(letters.into_iter().collect::<String>(), "ehllo");
}

#[test]
fn conversion_functions() {
    check(&[
        ("${ toString 1 | printf \"%s!\" }", json!("1!")),
        ("${ atoi \"42\" }", json!(42)),
        ("${ atoi \"x\" }", json!(0)),
        ("${ int64 \"0x10\" }", json!(16)),
        ("${ int 3.9 }", json!(3)),
        ("${ float64 \"1.5\" }", json!(1.5)),
        ("${ seq 5 }", json!("1 2 3 4 5")),
        ("${ seq 2 5 }", json!("2 3 4 5")),
        ("${ seq 1 2 10 }", json!("1 3 5 7 9")),
        ("${ seq 5 -2 1 }", json!("5 3 1")),
        ("${ seq 0 }", json!("1 0")),
        ("${ toDecimal \"0777\" }", json!(511)),
        ("${ $s := split \"$\" \"foo$bar$baz\" }${ $s._0 }-${ $s._2 }", json!("foo-baz")),
        ("${ splitList \"$\" \"foo$bar$baz\" }", json!(["foo", "bar", "baz"])),
        ("${ $s := splitn \"$\" 2 \"foo$bar$baz\" }${ $s._1 }", json!("bar$baz")),
        ("${ list 1 2 3 | toStrings }", json!(["1", "2", "3"])),
        ("${ until 5 }", json!([0, 1, 2, 3, 4])),
        ("${ untilStep 3 6 2 }", json!([3, 5])),
        ("${ list \"a\" 1 | join \"-\" }", json!("a-1")),
        ("${ list \"b\" \"c\" \"a\" | sortAlpha }", json!(["a", "b", "c"])),
    ]);
}

#[test]
fn math_functions() {
    check(&[
        ("${ add1 1 }", json!(2)),
        ("${ add 1 2 3 }", json!(6)),
        ("${ sub 3 2 }", json!(1)),
        ("${ div 7 2 }", json!(3)),
        ("${ mod 7 2 }", json!(1)),
        ("${ mul 2 3 4 }", json!(24)),
        ("${ add1f 1.5 }", json!(2.5)),
        ("${ addf 1.1 2.2 }", json!(3.3)),
        ("${ subf 1.5 0.5 0.25 }", json!(0.75)),
        ("${ divf 1 4 }", json!(0.25)),
        ("${ mulf 1.5 2 }", json!(3)),
        ("${ biggest 1 5 3 }", json!(5)),
        ("${ max 1 5 3 }", json!(5)),
        ("${ min 4 2 9 }", json!(2)),
        ("${ maxf 1.5 2.5 }", json!(2.5)),
        ("${ minf 1.5 2.5 }", json!(1.5)),
        ("${ ceil 1.1 }", json!(2)),
        ("${ floor 1.9 }", json!(1)),
        ("${ round 123.555555 3 }", json!(123.556)),
        ("${ round 123.5 0 0.6 }", json!(123)),
        ("${ mulf 1000 1000 }", json!(1_000_000)),
        ("${ subf 1 1.5 }", json!(-0.5)),
        ("${ mulf 1e10 1e10 }", json!(1e20)),
    ]);
    for _ in 0..50 {
        let n = render("${ randInt 5 8 }").as_i64().unwrap();
        assert!((5..8).contains(&n));
    }
}

#[test]
fn default_functions() {
    check(&[
        ("${ default \"foo\" \"\" }", json!("foo")),
        ("${ default \"foo\" \"bar\" }", json!("bar")),
        ("${ 0 | default 7 }", json!(7)),
        ("${ empty \"\" }", json!(true)),
        ("${ empty (list 1) }", json!(false)),
        ("${ coalesce .Client.Labels.nope \"\" \"x\" }", json!("x")),
        ("${ all 1 \"a\" true }", json!(true)),
        ("${ all 1 \"\" }", json!(false)),
        ("${ any 0 \"\" \"a\" }", json!(true)),
        ("${ list 1 \"\" 0 \"a\" | compact }", json!([1, "a"])),
        ("${ list \"\" | mustCompact }", json!([])),
        ("${ (fromJson \"{\\\"a\\\":[1,2]}\").a }", json!([1, 2])),
        ("${ fromJson \"{\" }", json!("")),
        ("${ (mustFromJson \"{\\\"b\\\":true}\").b }", json!(true)),
        (
            "${ dict \"b\" 1 \"a\" \"<x>\" | toJson | quote }",
            json!("\"{\\\"a\\\":\\\"\\\\u003cx\\\\u003e\\\",\\\"b\\\":1}\""),
        ),
        ("${ dict \"a\" \"<x>\" | toRawJson }", json!({"a": "<x>"})),
        ("${ dict \"a\" 1 | toPrettyJson | nospace }", json!({"a": 1})),
        ("${ list 1 | toPrettyJson | quote }", json!("\"[\\n  1\\n]\"")),
        ("${ list 1 | mustToJson }", json!([1])),
        ("${ list 1 | mustToPrettyJson | nospace }", json!([1])),
        ("${ list \"&\" | mustToRawJson }", json!(["&"])),
        ("${ ternary \"foo\" \"bar\" true }", json!("foo")),
        ("${ false | ternary \"foo\" \"bar\" }", json!("bar")),
        ("${ dict \"a\" 1 | deepCopy }", json!({"a": 1})),
        ("${ list 2 | mustDeepCopy }", json!([2])),
    ]);
}

#[test]
fn path_and_encoding_functions() {
    check(&[
        ("${ base \"foo/bar/baz\" }", json!("baz")),
        ("${ dir \"foo/bar/baz\" }", json!("foo/bar")),
        ("${ clean \"foo/bar/../baz\" }", json!("foo/baz")),
        ("${ clean \"/../a//b/./c/\" }", json!("/a/b/c")),
        ("${ ext \"foo.bar\" }", json!(".bar")),
        ("${ isAbs \"/foo\" }", json!(true)),
        ("${ b64enc \"Hello\" }", json!("SGVsbG8=")),
        ("${ b64dec \"SGVsbG8=\" }", json!("Hello")),
        ("${ b32enc \"Hello\" }", json!("JBSWY3DP")),
        ("${ b32dec \"JBSWY3DP\" }", json!("Hello")),
        ("${ b32enc \"Hi\" }", json!("JBUQ====")),
        ("${ b32dec \"JBUQ====\" }", json!("Hi")),
    ]);
}

#[test]
fn data_structure_functions() {
    check(&[
        ("${ list 1 2 3 }", json!([1, 2, 3])),
        ("${ tuple \"a\" }", json!(["a"])),
        ("${ dict \"name1\" \"value1\" \"name2\" \"value2\" }", json!({"name1": "value1", "name2": "value2"})),
        ("${ get (dict \"a\" 1) \"a\" }|${ get (dict) \"x\" }", json!("1|")),
        ("${ set (dict \"a\" 1) \"b\" 2 }", json!({"a": 1, "b": 2})),
        ("${ unset (dict \"a\" 1 \"b\" 2) \"a\" }", json!({"b": 2})),
        ("${ hasKey (dict \"a\" 1) \"a\" }", json!(true)),
        ("${ pluck \"name\" (dict \"name\" \"a\") (dict \"x\" 1) (dict \"name\" \"b\") }", json!(["a", "b"])),
        ("${ keys (dict \"b\" 1 \"a\" 2) }", json!(["a", "b"])),
        ("${ pick (dict \"a\" 1 \"b\" 2 \"c\" 3) \"a\" \"c\" }", json!({"a": 1, "c": 3})),
        ("${ omit (dict \"a\" 1 \"b\" 2) \"a\" }", json!({"b": 2})),
        (
            "${ merge (dict \"a\" 1 \"n\" (dict \"x\" 1)) (dict \"a\" 2 \"b\" 3 \"n\" (dict \"y\" 2)) }",
            json!({"a": 1, "b": 3, "n": {"x": 1, "y": 2}}),
        ),
        ("${ mergeOverwrite (dict \"a\" 1) (dict \"a\" 2 \"b\" 3) }", json!({"a": 2, "b": 3})),
        ("${ mustMerge (dict \"a\" \"\") (dict \"a\" 2) }", json!({"a": 2})),
        ("${ mustMergeOverwrite (dict \"a\" 1) (dict \"a\" \"\") }", json!({"a": 1})),
        ("${ values (dict \"b\" 2 \"a\" 1) }", json!([1, 2])),
        ("${ append (list 1 2) 3 }", json!([1, 2, 3])),
        ("${ mustAppend (list) \"a\" }", json!(["a"])),
        ("${ prepend (list 1 2) 0 }", json!([0, 1, 2])),
        ("${ mustPrepend (list) 0 }", json!([0])),
        ("${ first (list 1 2 3) }", json!(1)),
        ("${ mustFirst (list \"a\") }", json!("a")),
        ("${ rest (list 1 2 3) }", json!([2, 3])),
        ("${ mustRest (list 1 2) }", json!([2])),
        ("${ last (list 1 2 3) }", json!(3)),
        ("${ mustLast (list 1 2) }", json!(2)),
        ("${ initial (list 1 2 3) }", json!([1, 2])),
        ("${ mustInitial (list 1 2) }", json!([1])),
        ("${ reverse (list 1 2 3) }", json!([3, 2, 1])),
        ("${ mustReverse (list 1 2) }", json!([2, 1])),
        ("${ uniq (list 1 1 2 1 3) }", json!([1, 2, 3])),
        ("${ mustUniq (list \"a\" \"a\") }", json!(["a"])),
        ("${ without (list 1 2 3 4) 1 3 }", json!([2, 4])),
        ("${ mustWithout (list 1 2) 2 }", json!([1])),
        ("${ has 4 (list 1 2 3 4) }", json!(true)),
        ("${ mustHas \"x\" (list \"a\") }", json!(false)),
        ("${ slice (list 1 2 3 4 5) 1 3 }", json!([2, 3])),
        ("${ mustSlice (list 1 2 3) 1 }", json!([2, 3])),
        ("${ concat (list 1 2) (list 3) (list) }", json!([1, 2, 3])),
        ("${ dig \"user\" \"role\" \"guest\" (dict \"user\" (dict \"role\" \"admin\")) }", json!("admin")),
        ("${ dig \"user\" \"name\" \"guest\" (dict \"user\" (dict \"role\" \"admin\")) }", json!("guest")),
        ("${ chunk 2 (list 1 2 3 4 5) }", json!([[1, 2], [3, 4], [5]])),
        ("${ mustChunk 3 (list 1 2) }", json!([[1, 2]])),
    ]);
}

#[test]
fn url_functions() {
    check(&[
        ("${ (urlParse \"https://user:pw@example.com:8443/a/b?x=1#frag\").host }", json!("example.com:8443")),
        (
            "${ $u := urlParse \"https://user:pw@example.com:8443/a/b?x=1#frag\" }${ $u.hostname } ${ $u.path } ${ $u.query } ${ $u.fragment } ${ $u.userinfo } ${ $u.scheme }",
            json!("example.com /a/b x=1 frag user:pw https"),
        ),
        ("${ (urlParse \"http://h\").path }", json!("")),
        (
            "${ urlJoin (dict \"scheme\" \"https\" \"host\" \"example.com\" \"path\" \"/p\" \"query\" \"q=1\") }",
            json!("https://example.com/p?q=1"),
        ),
        ("${ urlJoin (urlParse \"https://example.com:8443/a?b=c#d\") }", json!("https://example.com:8443/a?b=c#d")),
    ]);
}

#[test]
fn every_listed_function_is_registered() {
    // The lists of reference §5.2, verbatim.
    let listed = "ago date dateInZone dateModify duration durationRound htmlDate htmlDateInZone mustDateModify mustToDate now toDate unixEpoch \
        abbrev abbrevboth trunc trim upper lower title untitle substr repeat trimAll trimSuffix trimPrefix nospace initials randAlphaNum randAlpha randAscii randNumeric swapcase shuffle snakecase camelcase kebabcase wrap wrapWith contains hasPrefix hasSuffix quote squote cat indent nindent replace plural sha1sum sha256sum adler32sum toString atoi int64 int float64 seq toDecimal split splitList splitn toStrings until untilStep join sortAlpha \
        add1 add sub div mod mul randInt add1f addf subf divf mulf biggest max min maxf minf ceil floor round \
        default empty coalesce all any compact mustCompact fromJson toJson toPrettyJson toRawJson mustFromJson mustToJson mustToPrettyJson mustToRawJson ternary deepCopy mustDeepCopy \
        base dir clean ext isAbs b64enc b64dec b32enc b32dec \
        tuple list dict get set unset hasKey pluck keys pick omit merge mergeOverwrite mustMerge mustMergeOverwrite values append mustAppend prepend mustPrepend first mustFirst rest mustRest last mustLast initial mustInitial reverse mustReverse uniq mustUniq without mustWithout has mustHas slice mustSlice concat dig chunk mustChunk \
        uuidv4 uuidParse uuidValidate urlParse urlJoin";
    let registered: Vec<&str> = sprig::FUNCTIONS.iter().map(|(n, _)| *n).collect();
    for name in listed.split_whitespace() {
        assert!(registered.contains(&name), "{name} is not registered");
    }
}
