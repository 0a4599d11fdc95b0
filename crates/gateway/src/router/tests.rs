//! Kong's routing rules, table-driven.

use super::*;

struct R {
    name: &'static str,
    hosts: &'static [&'static str],
    methods: &'static [&'static str],
    headers: &'static [(&'static str, &'static [&'static str])],
    paths: &'static [&'static str],
    regex_priority: i64,
}

const fn r(name: &'static str, paths: &'static [&'static str]) -> R {
    R { name, hosts: &[], methods: &[], headers: &[], paths, regex_priority: 0 }
}

/// A route's settings with Kong's defaults, for `protocols`.
fn config(id: uuid::Uuid, name: Option<&str>, protocols: &[&str]) -> RouteConfig {
    RouteConfig {
        id,
        name: name.map(str::to_owned),
        service_id: None,
        protocols: protocols.iter().map(|p| p.to_string()).collect(),
        strip_path: true,
        preserve_host: false,
        https_redirect_status_code: 426,
        request_buffering: true,
        prometheus: Default::default(),
        entity: None,
    }
}

fn router(routes: &[R]) -> (Router, Vec<(uuid::Uuid, &'static str)>) {
    let mut names = Vec::new();
    let built = routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            // Ids in table order, so equal priorities resolve predictably.
            let id = uuid::Uuid::from_u128(i as u128 + 1);
            names.push((id, r.name));
            let config = config(id, Some(r.name), &["http", "https"]);
            let rules = RouteRules {
                hosts: r.hosts.iter().map(|s| s.to_string()).collect(),
                snis: Vec::new(),
                methods: r.methods.iter().map(|s| s.to_string()).collect(),
                headers: r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.iter().map(|s| s.to_string()).collect()))
                    .collect(),
                paths: r.paths.iter().map(|s| s.to_string()).collect(),
                regex_priority: r.regex_priority,
            };
            (Arc::new(config), rules)
        })
        .collect();
    (Router::new(built).unwrap(), names)
}

fn route(
    routes: &[R],
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(&'static str, Option<String>)> {
    let (router, names) = router(routes);
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().unwrap()),
        None => (host.to_owned(), 80),
    };
    let normalized = normalize_path(path).unwrap();
    let facts = RequestFacts { method, host: &host, port, path: &normalized, headers: &map, tls: false, sni: None };
    let m = router.find(&facts)?;
    let name = names.iter().find(|(id, _)| *id == m.route.id).map(|(_, n)| *n).unwrap();
    Some((name, m.matched.map(str::to_owned)))
}

fn winner(routes: &[R], method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Option<&'static str> {
    route(routes, method, host, path, headers).map(|(n, _)| n)
}

/// (case, routes, method, host, path, headers, expected route)
type Case = (
    &'static str,
    Vec<R>,
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Option<&'static str>,
);

#[test]
fn routing_table() {
    let cases: Vec<Case> = vec![
        // Prefix paths: string prefixes, the longest wins.
        ("prefix matches itself", vec![r("a", &["/foo"])], "GET", "x", "/foo", vec![], Some("a")),
        ("prefix matches below", vec![r("a", &["/foo"])], "GET", "x", "/foo/bar", vec![], Some("a")),
        ("prefix is a string prefix", vec![r("a", &["/foo"])], "GET", "x", "/foobar", vec![], Some("a")),
        ("prefix does not match elsewhere", vec![r("a", &["/foo"])], "GET", "x", "/bar/foo", vec![], None),
        (
            "longest prefix wins",
            vec![r("short", &["/a"]), r("long", &["/a/b"])],
            "GET",
            "x",
            "/a/b/c",
            vec![],
            Some("long"),
        ),
        (
            "shorter prefix when the longer misses",
            vec![r("short", &["/a"]), r("long", &["/a/b"])],
            "GET",
            "x",
            "/a/c",
            vec![],
            Some("short"),
        ),
        (
            "root catches everything",
            vec![r("root", &["/"]), r("api", &["/api"])],
            "GET",
            "x",
            "/other",
            vec![],
            Some("root"),
        ),
        (
            "root loses to a longer prefix",
            vec![r("root", &["/"]), r("api", &["/api"])],
            "GET",
            "x",
            "/api/v1",
            vec![],
            Some("api"),
        ),
        ("one route, several paths", vec![r("multi", &["/x", "/y"])], "GET", "x", "/y/z", vec![], Some("multi")),
        (
            "paths of one route compete by length",
            vec![r("multi", &["/a", "/a/b/c"]), r("mid", &["/a/b"])],
            "GET",
            "x",
            "/a/b/c/d",
            vec![],
            Some("multi"),
        ),
        // Regex paths: anchored at the start, above prefixes.
        ("regex matches", vec![r("re", &["~/users/\\d+"])], "GET", "x", "/users/42", vec![], Some("re")),
        ("regex is anchored at the start", vec![r("re", &["~/users/\\d+"])], "GET", "x", "/api/users/42", vec![], None),
        (
            "regex is not anchored at the end",
            vec![r("re", &["~/users/\\d+"])],
            "GET",
            "x",
            "/users/42/posts",
            vec![],
            Some("re"),
        ),
        ("regex does not match", vec![r("re", &["~/users/\\d+"])], "GET", "x", "/users/me", vec![], None),
        (
            "regex beats a longer prefix",
            vec![r("prefix", &["/users/42/posts"]), r("re", &["~/users/\\d+"])],
            "GET",
            "x",
            "/users/42/posts",
            vec![],
            Some("re"),
        ),
        (
            "regex_priority orders regexes",
            vec![
                R { regex_priority: 0, ..r("generic", &["~/status/\\d+"]) },
                R { regex_priority: 6, ..r("specific", &["~/version/\\d+/status/\\d+"]) },
            ],
            "GET",
            "x",
            "/version/1/status/2",
            vec![],
            Some("specific"),
        ),
        (
            "higher regex_priority wins even when shorter",
            vec![R { regex_priority: 1, ..r("short", &["~/a"]) }, R { regex_priority: 0, ..r("long", &["~/a/b/c"]) }],
            "GET",
            "x",
            "/a/b/c",
            vec![],
            Some("short"),
        ),
        (
            "regex_priority does nothing for prefixes",
            vec![R { regex_priority: 100, ..r("prefix", &["/a"]) }, r("longer", &["/a/b"])],
            "GET",
            "x",
            "/a/b",
            vec![],
            Some("longer"),
        ),
        (
            "Kong's docs example: prefix /version",
            vec![r("p", &["/version"]), r("any", &["/version/any/"])],
            "GET",
            "x",
            "/version/any/x",
            vec![],
            Some("any"),
        ),
        // Hosts.
        (
            "exact host",
            vec![R { hosts: &["api.example.com"], ..r("h", &[]) }],
            "GET",
            "api.example.com",
            "/",
            vec![],
            Some("h"),
        ),
        (
            "host is case-insensitive",
            vec![R { hosts: &["api.example.com"], ..r("h", &[]) }],
            "GET",
            "API.Example.COM",
            "/",
            vec![],
            Some("h"),
        ),
        (
            "other host misses",
            vec![R { hosts: &["api.example.com"], ..r("h", &[]) }],
            "GET",
            "www.example.com",
            "/",
            vec![],
            None,
        ),
        (
            "leading wildcard",
            vec![R { hosts: &["*.example.com"], ..r("w", &[]) }],
            "GET",
            "a.b.example.com",
            "/",
            vec![],
            Some("w"),
        ),
        (
            "leading wildcard needs a label",
            vec![R { hosts: &["*.example.com"], ..r("w", &[]) }],
            "GET",
            "example.com",
            "/",
            vec![],
            None,
        ),
        (
            "trailing wildcard",
            vec![R { hosts: &["api.*"], ..r("w", &[]) }],
            "GET",
            "api.example.org",
            "/",
            vec![],
            Some("w"),
        ),
        (
            "plain host beats wildcard",
            vec![R { hosts: &["*.example.com"], ..r("wild", &[]) }, R { hosts: &["a.example.com"], ..r("plain", &[]) }],
            "GET",
            "a.example.com",
            "/",
            vec![],
            Some("plain"),
        ),
        (
            "host with port",
            vec![R { hosts: &["a.example.com:8000"], ..r("p", &[]) }],
            "GET",
            "a.example.com:8000",
            "/",
            vec![],
            Some("p"),
        ),
        (
            "host with another port misses",
            vec![R { hosts: &["a.example.com:8000"], ..r("p", &[]) }],
            "GET",
            "a.example.com:9000",
            "/",
            vec![],
            None,
        ),
        (
            "any of several hosts",
            vec![R { hosts: &["a.com", "b.com"], ..r("two", &[]) }],
            "GET",
            "b.com",
            "/",
            vec![],
            Some("two"),
        ),
        // Methods.
        (
            "method matches",
            vec![R { methods: &["GET", "POST"], ..r("m", &["/"]) }],
            "POST",
            "x",
            "/",
            vec![],
            Some("m"),
        ),
        ("other method misses", vec![R { methods: &["GET"], ..r("m", &["/"]) }], "DELETE", "x", "/", vec![], None),
        (
            "more fields beat a longer path",
            vec![r("path", &["/a/b/c"]), R { methods: &["GET"], ..r("method+path", &["/a"]) }],
            "GET",
            "x",
            "/a/b/c",
            vec![],
            Some("method+path"),
        ),
        // Headers.
        (
            "header matches",
            vec![R { headers: &[("x-version", &["v1"])], ..r("hd", &[]) }],
            "GET",
            "x",
            "/",
            vec![("x-version", "v1")],
            Some("hd"),
        ),
        (
            "header value is case-insensitive",
            vec![R { headers: &[("x-version", &["v1"])], ..r("hd", &[]) }],
            "GET",
            "x",
            "/",
            vec![("X-Version", "V1")],
            Some("hd"),
        ),
        (
            "header value misses",
            vec![R { headers: &[("x-version", &["v1"])], ..r("hd", &[]) }],
            "GET",
            "x",
            "/",
            vec![("x-version", "v2")],
            None,
        ),
        (
            "header missing",
            vec![R { headers: &[("x-version", &["v1"])], ..r("hd", &[]) }],
            "GET",
            "x",
            "/",
            vec![],
            None,
        ),
        (
            "any header value",
            vec![R { headers: &[("x-version", &["v1", "v2"])], ..r("hd", &[]) }],
            "GET",
            "x",
            "/",
            vec![("x-version", "v2")],
            Some("hd"),
        ),
        (
            "every header name",
            vec![R { headers: &[("a", &["1"]), ("b", &["2"])], ..r("hd", &[]) }],
            "GET",
            "x",
            "/",
            vec![("a", "1")],
            None,
        ),
        (
            "regex header value",
            vec![R { headers: &[("x-version", &["~*^v\\d+$"])], ..r("hd", &[]) }],
            "GET",
            "x",
            "/",
            vec![("x-version", "V12")],
            Some("hd"),
        ),
        (
            "more headers win",
            vec![
                R { headers: &[("a", &["1"])], ..r("one", &["/"]) },
                R { headers: &[("a", &["1"]), ("b", &["2"])], ..r("two", &["/"]) },
            ],
            "GET",
            "x",
            "/",
            vec![("a", "1"), ("b", "2")],
            Some("two"),
        ),
        // Every field must match.
        (
            "host and path both needed",
            vec![R { hosts: &["a.com"], ..r("both", &["/x"]) }],
            "GET",
            "a.com",
            "/y",
            vec![],
            None,
        ),
        (
            "host, method and path",
            vec![R { hosts: &["a.com"], methods: &["PUT"], ..r("all", &["/x"]) }],
            "PUT",
            "a.com",
            "/x/1",
            vec![],
            Some("all"),
        ),
        // Normalization before matching.
        ("dot segments are resolved", vec![r("a", &["/a/b"])], "GET", "x", "/a/c/../b", vec![], Some("a")),
        ("double slashes are merged", vec![r("a", &["/a/b"])], "GET", "x", "//a//b", vec![], Some("a")),
        ("unreserved escapes are decoded", vec![r("a", &["/abc"])], "GET", "x", "/%61bc", vec![], Some("a")),
        (
            "dot segments cannot escape the root",
            vec![r("admin", &["/admin"])],
            "GET",
            "x",
            "/../../admin",
            vec![],
            Some("admin"),
        ),
        ("nothing matches", vec![r("a", &["/a"])], "GET", "x", "/b", vec![], None),
    ];
    assert!(cases.len() >= 40);
    for (name, routes, method, host, path, headers, expected) in cases {
        assert_eq!(winner(&routes, method, host, path, &headers), expected, "{name}");
    }
}

#[test]
fn matched_part_for_strip_path() {
    assert_eq!(route(&[r("a", &["/foo"])], "GET", "x", "/foo/bar", &[]).unwrap().1.as_deref(), Some("/foo"));
    assert_eq!(route(&[r("re", &["~/v\\d+"])], "GET", "x", "/v12/x", &[]).unwrap().1.as_deref(), Some("/v12"));
    assert_eq!(route(&[R { hosts: &["a"], ..r("h", &[]) }], "GET", "a", "/x", &[]).unwrap().1, None);
}

#[test]
fn upstream_path_table() {
    // (service.path, strip_path, matched, request path, upstream path): every row of reference §5.2.
    for (service, strip, matched, request, expected) in [
        (None, true, "/foo", "/foo/bar", "/bar"),
        (None, true, "/foo", "/foo", "/"),
        (None, true, "/foo", "/foo/", "/"),
        (None, true, "/foo", "/foobar", "/bar"),
        (Some("/api"), true, "/foo", "/foo/bar", "/api/bar"),
        (Some("/api"), true, "/foo", "/foo", "/api"),
        (Some("/api"), true, "/foo", "/foo/", "/api/"),
        (Some("/api/"), true, "/foo", "/foo", "/api"),
        (None, false, "/foo", "/foo/bar", "/foo/bar"),
        (Some("/api"), false, "/foo", "/foo/bar", "/api/foo/bar"),
        // And a few more.
        (Some("/anything"), true, "/anything", "/anything", "/anything"),
        (Some("/anything"), true, "/anything", "/anything/x", "/anything/x"),
        (Some("/api/"), false, "/", "/", "/api/"),
        (None, true, "/", "/x/y", "/x/y"),
    ] {
        let path = upstream_path(service, strip, Some(matched), request, None);
        assert_eq!(path, expected, "{service:?} {strip} {request}");
        assert_eq!(path.capacity(), path.len(), "one allocation of the exact size");
        let with_query = upstream_path(service, strip, Some(matched), request, Some("a=1&b"));
        assert_eq!(with_query, format!("{expected}?a=1&b"));
        assert_eq!(with_query.capacity(), with_query.len());
    }
}

#[test]
fn normalization() {
    for (raw, expected) in [
        ("/", Some("/")),
        ("/a/./b/../c", Some("/a/c")),
        ("/a//b///c/", Some("/a/b/c/")),
        ("/%7Euser", Some("/~user")),
        ("/a%2fb", Some("/a%2Fb")),
        ("/a%zz", None),
        ("/a%2", None),
        ("/..", Some("/")),
        ("/a/..", Some("/")),
        ("", Some("/")),
        ("*", Some("/*")),
        ("/a/.", Some("/a/")),
        ("/a/b/", Some("/a/b/")),
        ("/.well-known/x", Some("/.well-known/x")),
        ("/a/...", Some("/a/...")),
        ("//", Some("/")),
    ] {
        assert_eq!(normalize_path(raw).as_deref(), expected, "{raw}");
    }
}

#[test]
fn normal_paths_come_back_borrowed_and_unchanged() {
    // The fast path must agree with the full normalization wherever it applies.
    let segments = ["", ".", "..", "a", "b.c", "...", "%41", "x%2f"];
    let mut paths = vec![String::new()];
    for _ in 0..3 {
        paths = paths.iter().flat_map(|p| segments.iter().map(move |s| format!("{p}/{s}"))).collect();
        for path in &paths {
            let normalized = normalize_path(path).unwrap();
            let full = super::normalize_slowly(path).unwrap();
            assert_eq!(normalized, full, "{path}");
            // Every path without escapes that normalization leaves unchanged takes the fast path.
            let borrowed = matches!(normalized, Cow::Borrowed(_));
            assert_eq!(borrowed, !path.contains('%') && full == *path, "{path}");
        }
    }
}

#[test]
fn invalid_regexes_are_reported() {
    let config = Arc::new(config(uuid::Uuid::nil(), None, &[]));
    let rules = RouteRules {
        hosts: vec![],
        snis: vec![],
        methods: vec![],
        headers: vec![],
        paths: vec!["~/(".into()],
        regex_priority: 0,
    };
    assert!(Router::new(vec![(config, rules)]).is_err());
}

/// `normalize_path` on generated paths. Request targets reach it as ASCII (the `http` crate refuses other bytes in
/// a URI), so the properties beyond "never panics" are checked on ASCII paths.
mod normalize_path_properties {
    use super::*;
    use proptest::prelude::*;

    /// Paths made of the pieces normalization cares about: dot segments (plain and escaped), empty segments,
    /// escapes of unreserved and reserved characters, malformed escapes, and plain text.
    fn path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just(String::new()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("...".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E%2e".to_owned()),
            Just(".%2E".to_owned()),
            Just("%41%7e".to_owned()),
            Just("a%2fb".to_owned()),
            Just("%25".to_owned()),
            Just("%".to_owned()),
            Just("%4".to_owned()),
            Just("%zz".to_owned()),
            "[a-zA-Z0-9._~!$&'()*+,;=:@-]{1,6}",
        ];
        (any::<bool>(), prop::collection::vec(segment, 0..8), any::<bool>()).prop_map(|(lead, segments, trail)| {
            let mut path = if lead { "/".to_owned() } else { String::new() };
            path.push_str(&segments.join("/"));
            if trail {
                path.push('/');
            }
            path
        })
    }

    /// Whether `raw` has a `%` not followed by two hex digits.
    fn malformed_escape(raw: &str) -> bool {
        let bytes = raw.as_bytes();
        bytes.iter().enumerate().any(|(i, b)| {
            *b == b'%'
                && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_on_any_text(raw in any::<String>()) {
            let _ = normalize_path(&raw);
        }

        #[test]
        fn normal_paths_are_rooted_without_dot_or_empty_segments_and_stay_put(raw in path()) {
            let normal = normalize_path(&raw);
            prop_assert_eq!(normal.is_none(), malformed_escape(&raw), "{} → {:?}", raw, normal);
            let Some(normal) = normal else { return Ok(()) };
            prop_assert!(normal.starts_with('/'), "{raw} → {normal}");
            let inner = normal.strip_prefix('/').unwrap_or(&normal);
            let inner = inner.strip_suffix('/').unwrap_or(inner);
            for segment in inner.split('/').filter(|_| !inner.is_empty()) {
                prop_assert!(!matches!(segment, "" | "." | ".."), "{raw} → {normal}: segment {segment:?}");
                let decoded_dot = segment.eq_ignore_ascii_case("%2e") || segment.eq_ignore_ascii_case("%2e%2e");
                prop_assert!(!decoded_dot, "{raw} → {normal}: an escaped dot segment survived");
            }
            let again = normalize_path(&normal);
            prop_assert_eq!(again.as_deref(), Some(&*normal), "idempotent");
        }

        /// However many `..` a path starts with, it cannot climb above the root: they are as if not there.
        #[test]
        fn dot_dot_never_escapes_the_root(raw in path(), ups in 1usize..5, escaped in any::<bool>()) {
            let up = if escaped { "%2E%2E/" } else { "../" };
            let climbing = format!("/{}{}", up.repeat(ups), raw.trim_start_matches('/'));
            let plain = format!("/{}", raw.trim_start_matches('/'));
            prop_assert_eq!(normalize_path(&climbing), normalize_path(&plain), "{}", climbing);
        }
    }
}

/// Over TLS only routes with `https` (or `grpcs`) compete, and a route's SNIs must name the handshake's server
/// name; over plain HTTP SNIs are ignored and an `https`-only route still matches (it answers with a redirect).
#[test]
fn the_scheme_and_the_sni_select_among_routes() {
    let table: [(&str, &[&str], &[&str]); 4] = [
        ("plain-only", &["http"], &[]),
        ("tls-any", &["https"], &[]),
        ("tls-api", &["https"], &["api.example.com", "*.svc.example"]),
        ("tls-prefix", &["https"], &["www.example.*"]),
    ];
    let mut names = Vec::new();
    let routes = table
        .iter()
        .enumerate()
        .map(|(i, (name, protocols, snis))| {
            let id = uuid::Uuid::from_u128(i as u128 + 1);
            names.push((id, *name));
            let config = config(id, Some(name), protocols);
            // The plain-only route has more fields set, so it would win wherever it may compete.
            let rules = RouteRules {
                hosts: vec![],
                snis: snis.iter().map(|s| s.to_string()).collect(),
                methods: if *name == "plain-only" { vec!["GET".into()] } else { vec![] },
                headers: vec![],
                paths: vec!["/".into()],
                regex_priority: 0,
            };
            (Arc::new(config), rules)
        })
        .collect();
    let router = Router::new(routes).unwrap();
    let map = HeaderMap::new();
    let pick = |tls: bool, sni: Option<&str>| {
        let facts = RequestFacts { method: "GET", host: "h", port: 443, path: "/", headers: &map, tls, sni };
        let id = router.find(&facts).map(|m| m.route.id)?;
        names.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
    };
    assert_eq!(pick(false, None), Some("plain-only"));
    assert_eq!(pick(true, None), Some("tls-any"), "an http-only route is not a candidate over TLS");
    assert_eq!(pick(true, Some("api.example.com")), Some("tls-api"), "an SNI adds to a route's weight");
    assert_eq!(pick(true, Some("API.example.com.")), Some("tls-api"), "case and a final dot do not count");
    assert_eq!(pick(true, Some("a.b.svc.example")), Some("tls-api"), "a leading wildcard matches any depth");
    assert_eq!(pick(true, Some("www.example.org")), Some("tls-prefix"));
    assert_eq!(pick(true, Some("other.example.com")), Some("tls-any"));
}

/// With more routes than it scans, the router looks plain prefixes up by the request path's starts: it must find
/// what the scan of every candidate finds, whatever mix of overlapping prefixes (of lengths that fall inside a
/// two-byte character of some requests), regex paths, path-less routes, hosts and methods it holds.
#[test]
fn the_prefix_index_finds_what_the_scan_finds() {
    let mut rng = fastrand::Rng::with_seed(21);
    let segments = ["a", "ab", "api", "é", "v1", "v2", "users", "x"];
    let path = |rng: &mut fastrand::Rng| {
        let mut p = String::new();
        for _ in 0..rng.usize(0..4) {
            p.push('/');
            p.push_str(segments[rng.usize(..segments.len())]);
        }
        if p.is_empty() || rng.bool() {
            p.push('/');
        }
        if rng.u8(..8) == 0 {
            // A prefix that ends inside a segment (`/us` for `/users`).
            p.pop();
        }
        p
    };
    let mut built = Vec::new();
    for i in 0..400u128 {
        let paths = match rng.u8(..10) {
            0 => Vec::new(),
            1 => vec![format!("~/api/v{}/[a-z]+$", rng.u8(1..3))],
            _ => (0..rng.usize(1..3)).map(|_| path(&mut rng)).filter(|p| !p.is_empty()).collect(),
        };
        let hosts = if rng.u8(..4) == 0 { vec!["h1.test".to_owned()] } else { Vec::new() };
        let methods = if rng.u8(..4) == 0 { vec!["POST".to_owned()] } else { Vec::new() };
        if paths.is_empty() && hosts.is_empty() && methods.is_empty() {
            continue;
        }
        let rules =
            RouteRules { hosts, snis: Vec::new(), methods, headers: Vec::new(), paths, regex_priority: rng.i64(0..3) };
        built.push((Arc::new(config(uuid::Uuid::from_u128(i + 1), None, &["http", "https"])), rules));
    }
    let router = Router::new(built).unwrap();
    assert!(router.index.is_some());
    let headers = HeaderMap::new();
    let mut found = 0;
    for _ in 0..3000 {
        let p = format!("{}{}", path(&mut rng), if rng.bool() { "/users" } else { "" });
        let Some(p) = normalize_path(&p) else { continue };
        let host = if rng.bool() { "h1.test" } else { "other.test" };
        let method = if rng.bool() { "GET" } else { "POST" };
        let facts = RequestFacts { method, host, port: 80, path: &p, headers: &headers, tls: false, sni: None };
        let indexed = router.find(&facts).map(|m| (m.route.id, m.matched.map(str::to_owned)));
        let scanned = router.candidates.iter().find_map(|c| Router::check(c, &facts));
        let scanned = scanned.map(|m| (m.route.id, m.matched.map(str::to_owned)));
        assert_eq!(indexed, scanned, "{method} {host} {p}");
        found += usize::from(indexed.is_some());
    }
    assert!(found > 1000, "only {found} requests matched a route");
}
