use std::collections::HashMap;
use std::time::Duration;

use gatehouse_model::gateway::snapshot::{Target, Upstream};
use gatehouse_model::gateway::upstreams::Healthchecks;
use gatehouse_model::gateway::{EntityKind, validate_entity};
use serde_json::json;

use super::*;

fn upstream(algorithm: &str, targets: &[(&str, u32)], extra: serde_json::Value) -> Upstream {
    let mut body = json!({"name": "u.example", "algorithm": algorithm});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let e = validate_entity(EntityKind::Upstream, body.as_object().unwrap()).unwrap();
    let healthchecks: Healthchecks = serde_json::from_value(e["healthchecks"].clone()).unwrap();
    Upstream {
        id: uuid::Uuid::from_u128(1),
        name: "u.example".into(),
        algorithm: e["algorithm"].as_str().unwrap().into(),
        hash_on: e["hash_on"].as_str().unwrap().into(),
        hash_fallback: e["hash_fallback"].as_str().unwrap().into(),
        hash_on_header: e["hash_on_header"].as_str().map(Into::into),
        hash_fallback_header: None,
        hash_on_cookie: e["hash_on_cookie"].as_str().map(Into::into),
        hash_on_cookie_path: e["hash_on_cookie_path"].as_str().unwrap().into(),
        hash_on_query_arg: None,
        hash_fallback_query_arg: None,
        hash_on_uri_capture: None,
        hash_fallback_uri_capture: None,
        slots: 10000,
        host_header: None,
        healthchecks,
        targets: targets
            .iter()
            .enumerate()
            .map(|(i, (t, w))| Target { id: uuid::Uuid::from_u128(100 + i as u128), target: (*t).into(), weight: *w })
            .collect(),
    }
}

fn counts(b: &Balancer, n: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let i = b.pick(None, &[]).unwrap();
        *out.entry(b.targets[i].target.clone()).or_default() += 1;
    }
    out
}

#[test]
fn round_robin_follows_the_weights_exactly_over_a_cycle() {
    let b = Balancer::new(upstream("round-robin", &[("a:1", 100), ("b:1", 50), ("c:1", 25)], json!({})));
    assert_eq!(b.schedule().len(), 7, "weights divided by their common divisor");
    let c = counts(&b, 7000);
    assert_eq!((c["a:1"], c["b:1"], c["c:1"]), (4000, 2000, 1000));
    // Smooth: the heaviest target never gets more than two picks in a row in this cycle.
    let picks: Vec<u16> = b.schedule();
    assert!(picks.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])), "{picks:?}");
}

#[test]
fn weight_zero_is_never_picked() {
    let b = Balancer::new(upstream("round-robin", &[("a:1", 100), ("b:1", 0)], json!({})));
    assert_eq!(counts(&b, 100).get("b:1"), None);
    let b = Balancer::new(upstream("least-connections", &[("a:1", 0)], json!({})));
    assert_eq!(b.pick(None, &[]), None);
}

#[test]
fn retries_move_to_another_target() {
    let b = Balancer::new(upstream("round-robin", &[("a:1", 1), ("b:1", 1)], json!({})));
    let first = b.pick(None, &[]).unwrap();
    let second = b.pick(None, &[first]).unwrap();
    assert_ne!(first, second);
    assert_eq!(b.pick(None, &[first, second]), None);
}

#[test]
fn consistent_hashing_moves_only_the_keys_a_new_target_takes() {
    let three = Balancer::new(upstream("consistent-hashing", &[("a:1", 100), ("b:1", 100), ("c:1", 100)], json!({})));
    let four = Balancer::new(upstream(
        "consistent-hashing",
        &[("a:1", 100), ("b:1", 100), ("c:1", 100), ("d:1", 100)],
        json!({}),
    ));
    let (mut kept, mut to_new, n) = (0, 0, 10_000);
    for k in 0..n {
        let h = hash64(format!("key-{k}").as_bytes());
        let before = &three.targets[three.pick(Some(h), &[]).unwrap()].target;
        let after = &four.targets[four.pick(Some(h), &[]).unwrap()].target;
        if after == "d:1" {
            to_new += 1;
        } else if after == before {
            kept += 1;
        }
    }
    assert_eq!(kept + to_new, n, "a key moves only to the new target");
    assert!((2000..3000).contains(&to_new), "the new target takes about a quarter: {to_new}");
}

#[test]
fn least_connections_prefers_the_idle_target() {
    let b = Balancer::new(upstream("least-connections", &[("a:1", 1), ("b:1", 1)], json!({})));
    let busy = b.pick(None, &[]).unwrap();
    b.begin(busy);
    for _ in 0..10 {
        assert_ne!(b.pick(None, &[]), Some(busy));
    }
    b.finish(busy, Outcome::Status(200), Duration::from_millis(1));
    assert_eq!(b.targets[busy].active.load(Ordering::Relaxed), 0);
}

#[test]
fn latency_prefers_the_faster_target() {
    let b = Balancer::new(upstream("latency", &[("a:1", 1), ("b:1", 1)], json!({})));
    b.begin(0);
    b.finish(0, Outcome::Status(200), Duration::from_millis(50));
    b.begin(1);
    b.finish(1, Outcome::Status(200), Duration::from_millis(2));
    for _ in 0..10 {
        assert_eq!(b.pick(None, &[]), Some(1));
    }
}

#[test]
fn passive_checks_take_a_target_out_after_the_configured_failures() {
    let checks = json!({"healthchecks": {"passive": {"unhealthy": {"tcp_failures": 2, "http_failures": 3}}}});
    let b = Balancer::new(upstream("round-robin", &[("a:1", 1), ("b:1", 1)], checks));
    b.finish(0, Outcome::TcpFailure, Duration::ZERO);
    assert!(b.targets[0].is_healthy());
    b.finish(0, Outcome::TcpFailure, Duration::ZERO);
    assert!(!b.targets[0].is_healthy());
    assert_eq!(b.health_of(0), "UNHEALTHY");
    assert_eq!(counts(&b, 10).get("a:1"), None);
    // A success in between starts the count again.
    b.finish(1, Outcome::Status(500), Duration::ZERO);
    b.finish(1, Outcome::Status(500), Duration::ZERO);
    b.finish(1, Outcome::Status(200), Duration::ZERO);
    b.finish(1, Outcome::Status(500), Duration::ZERO);
    assert!(b.targets[1].is_healthy());
    b.finish(1, Outcome::Status(503), Duration::ZERO);
    b.finish(1, Outcome::Status(429), Duration::ZERO);
    assert!(!b.targets[1].is_healthy());
    assert_eq!(b.pick(None, &[]), None, "no target left");
}

#[test]
fn without_checks_targets_report_healthchecks_off() {
    let b = Balancer::new(upstream("round-robin", &[("a:1", 1)], json!({})));
    assert_eq!(b.health_of(0), "HEALTHCHECKS_OFF");
}

#[test]
fn the_threshold_takes_the_whole_upstream_out() {
    let checks = json!({"healthchecks": {"threshold": 60, "passive": {"unhealthy": {"tcp_failures": 1}}}});
    let b = Balancer::new(upstream("round-robin", &[("a:1", 1), ("b:1", 1)], checks));
    assert!(b.pick(None, &[]).is_some());
    b.finish(0, Outcome::TcpFailure, Duration::ZERO);
    assert_eq!(b.pick(None, &[]), None, "50 % healthy is under the 60 % threshold");
}

/// A request from 10.0.0.1 for `/` with `headers`.
fn hash_input<'a>(headers: &'a http::HeaderMap, captures: &'a dyn Fn(&str) -> Option<String>) -> HashInput<'a> {
    HashInput {
        consumer: None,
        client_ip: "10.0.0.1".parse().unwrap(),
        headers,
        path: "/",
        query: None,
        captures,
        chosen_cookie: None,
    }
}

#[test]
fn hash_inputs_follow_hash_on_then_the_fallback() {
    let b = Balancer::new(upstream(
        "consistent-hashing",
        &[("a:1", 1)],
        json!({"hash_on": "header", "hash_on_header": "x-user", "hash_fallback": "ip"}),
    ));
    let mut headers = http::HeaderMap::new();
    let none = |_: &str| None;
    let input = |headers: &http::HeaderMap| b.hash_value(&hash_input(headers, &none));
    let by_ip = input(&headers);
    assert_eq!(by_ip, Some(hash64(b"10.0.0.1")));
    headers.insert("x-user", http::HeaderValue::from_static("alice"));
    assert_eq!(input(&headers), Some(hash64(b"alice")));
}

#[test]
fn a_cookie_is_set_when_the_request_has_none() {
    let b = Balancer::new(upstream(
        "consistent-hashing",
        &[("a:1", 1)],
        json!({"hash_on": "cookie", "hash_on_cookie": "sticky", "hash_on_cookie_path": "/app"}),
    ));
    let none = |_: &str| None;
    let empty = http::HeaderMap::new();
    let (value, header) = b.cookie_to_set(&hash_input(&empty, &none)).unwrap();
    assert_eq!(header.to_str().unwrap(), format!("sticky={value}; Path=/app"));
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::COOKIE, http::HeaderValue::from_static("a=b; sticky=xyz"));
    assert!(b.cookie_to_set(&hash_input(&headers, &none)).is_none());
    assert_eq!(b.hash_value(&hash_input(&headers, &none)), Some(hash64(b"xyz")));
}

#[tokio::test]
async fn balancers_keep_health_across_a_change_of_targets() {
    let checks = json!({"healthchecks": {"passive": {"unhealthy": {"tcp_failures": 1}}}});
    let balancers = Balancers::default();
    let first = upstream("round-robin", &[("a:1", 1), ("b:1", 1)], checks.clone());
    let by_name = balancers.install(std::slice::from_ref(&first));
    let b = by_name["u.example"].clone();
    b.finish(0, Outcome::TcpFailure, Duration::ZERO);
    let same = balancers.install(std::slice::from_ref(&first));
    assert!(Arc::ptr_eq(&same["u.example"], &b), "an unchanged upstream keeps its balancer");
    let second = upstream("round-robin", &[("a:1", 1), ("b:1", 1), ("c:1", 1)], checks);
    let changed = balancers.install(&[second]);
    assert!(!changed["u.example"].targets[0].is_healthy(), "a:1 stays unhealthy");
    let health = balancers.targets_health(uuid::Uuid::from_u128(1)).unwrap();
    assert_eq!(health.iter().map(|h| h.health).collect::<Vec<_>>(), ["UNHEALTHY", "HEALTHY", "HEALTHY"]);
    assert!(balancers.set_target_health(uuid::Uuid::from_u128(1), "a:1", true));
    assert!(changed["u.example"].targets[0].is_healthy());
    assert!(!balancers.set_target_health(uuid::Uuid::from_u128(1), "z:1", true));
}

#[tokio::test]
async fn a_staged_set_changes_nothing_until_committed() {
    let balancers = Balancers::default();
    let first = upstream("round-robin", &[("a:1", 1)], json!({}));
    balancers.install(std::slice::from_ref(&first));
    let refused = balancers.stage(&[upstream("round-robin", &[("a:1", 1), ("b:1", 1)], json!({}))]);
    assert_eq!(refused.by_name()["u.example"].targets.len(), 2);
    drop(refused);
    let health = balancers.targets_health(uuid::Uuid::from_u128(1)).unwrap();
    assert_eq!(health.iter().map(|h| h.target.as_str()).collect::<Vec<_>>(), ["a:1"], "the installed set stays");
}

#[test]
fn an_address_hashes_as_its_text() {
    for ip in ["10.0.0.1", "::1", "2001:db8::7", "255.255.255.255"] {
        let parsed: std::net::IpAddr = ip.parse().unwrap();
        assert_eq!(HashKey::Ip(parsed).hash(), hash64(ip.as_bytes()), "{ip}");
    }
}

/// Where one request goes: the target, then for a host name one of its addresses.
fn destination(b: &Balancer, hash: Option<u64>) -> String {
    let i = b.pick(hash, &[]).unwrap();
    match &b.targets[i].name {
        Some(name) => name.next_address(hash).unwrap().unwrap().to_string(),
        None => b.targets[i].authority.to_string(),
    }
}

fn answer(b: &Balancer, i: usize, ips: &[&str]) {
    let ips: Vec<std::net::IpAddr> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
    b.targets[i].name.as_ref().unwrap().answer(&ips, 80);
    b.addresses_changed();
}

/// Kong's rule (`balancers.lua`, `addAddress`): each address of a host-name target carries the target's full
/// weight, so a name with two addresses beside an IP target of the same weight gets two thirds of the requests,
/// a third per address; a third address makes it three quarters.
#[test]
fn every_address_of_a_name_carries_the_targets_weight() {
    let b = Balancer::new(upstream("round-robin", &[("app.test:80", 100), ("10.0.0.9:80", 100)], json!({})));
    answer(&b, 0, &["10.0.0.1", "10.0.0.2"]);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..3000 {
        *seen.entry(destination(&b, None)).or_default() += 1;
    }
    assert_eq!((seen["10.0.0.1:80"], seen["10.0.0.2:80"], seen["10.0.0.9:80"]), (1000, 1000, 1000), "{seen:?}");
    answer(&b, 0, &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    let c = counts(&b, 4000);
    assert_eq!((c["app.test:80"], c["10.0.0.9:80"]), (3000, 1000));
    // The threshold counts weight per address too: one of the name's three set unhealthy leaves 300 of 400.
    let checks = json!({"healthchecks": {"threshold": 80}});
    let b = Balancer::new(upstream("round-robin", &[("app.test:80", 100), ("10.0.0.9:80", 100)], checks));
    answer(&b, 0, &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert!(b.pick(None, &[]).is_some());
    b.targets[0].name.as_ref().unwrap().set_one("10.0.0.1".parse().unwrap(), false);
    assert_eq!(b.pick(None, &[]), None, "75 % of the weight is under the 80 % threshold");
}

/// Consistent hashing spreads keys over addresses by the same rule, and a key keeps its address: a name's new
/// address takes keys only from the others (its own new share), never swaps keys between the old ones.
#[test]
fn consistent_hashing_weighs_addresses_and_keeps_keys_on_theirs() {
    let b = Balancer::new(upstream("consistent-hashing", &[("app.test:80", 100), ("10.0.0.9:80", 100)], json!({})));
    answer(&b, 0, &["10.0.0.1", "10.0.0.2"]);
    let keys: Vec<u64> = (0..30_000).map(|k| hash64(format!("key-{k}").as_bytes())).collect();
    let before: Vec<String> = keys.iter().map(|&h| destination(&b, Some(h))).collect();
    assert!(keys.iter().zip(&before).all(|(&h, d)| destination(&b, Some(h)) == *d), "the same key, the same address");
    let share = |list: &[String], address: &str| list.iter().filter(|d| *d == address).count() as f64 / 30_000.0;
    for address in ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.9:80"] {
        let got = share(&before, address);
        assert!((0.28..0.39).contains(&got), "{address} took {got} of the keys, not about a third");
    }
    answer(&b, 0, &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    let after: Vec<String> = keys.iter().map(|&h| destination(&b, Some(h))).collect();
    for (old, new) in before.iter().zip(&after) {
        let moved_within = old != new && old != "10.0.0.9:80" && new != "10.0.0.3:80";
        assert!(!moved_within, "a key moved from {old} to {new}");
    }
    let got = share(&after, "10.0.0.9:80");
    assert!((0.20..0.30).contains(&got), "the IP target keeps about a quarter: {got}");
}
