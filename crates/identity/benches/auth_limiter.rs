//! What the brute-force limiter adds to a successful client authentication (the token, introspection and revocation
//! endpoints all authenticate this way), next to what the limiter before issue 15 did on the same path — a
//! `"{server}/{client}"` string key and two moka lookups keyed by strings and addresses — and next to the secret's
//! HMAC check, for scale. Each case runs `attempt` → `admit` → (secret verifies) → `succeeded`:
//!
//! - quiet: no wrong secret anywhere within a window, so `admit` reads one atomic;
//! - busy: other clients are failing right now, so `admit` looks the pair and the client up;
//! - guessed: this client's own limit is spent and its address is spared as trusted (three lookups).
//!
//! Also for ES256 tokens: a whole signature (now normalised to the low S) and the normalisation step alone, which
//! is also about what verification adds to check the S.
//!
//! `cargo bench -p gatehouse-identity --bench auth_limiter` (release profile; figures in bench/README.md).

// A benchmark measures wall time on purpose: the clock rule (clippy.toml) is for code under test.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gatehouse_identity::issuer::crypto::Signer;
use gatehouse_identity::issuer::limiter::{AuthLimiter, Limits};
use gatehouse_model::identity::SigningAlgorithm;
use gatehouse_model::{AuthServerId, Clock, SecretHash, SystemClock};
use gatehouse_runtime::master_key::MasterKey;
use moka::sync::Cache;

const CLIENT: &str = "12yvvmecnlghhnfg";

/// A case: its name, calls per sample, and one call.
type Case<'a> = (&'static str, u32, Box<dyn Fn() + 'a>);

/// Median ns per call over `rounds` rounds of `batch` calls.
fn measure(rounds: usize, batch: u32, f: &dyn Fn()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The limiter's success path before issue 15, rebuilt as the baseline.
struct Before {
    pairs: Cache<(String, IpAddr), Arc<AtomicU32>>,
    addresses: Cache<IpAddr, Arc<AtomicU32>>,
}

impl Before {
    fn check(&self, server: AuthServerId, client: &str, address: IpAddr) -> bool {
        let key = format!("{server}/{client}");
        let over = |w: Option<Arc<AtomicU32>>, limit| w.is_some_and(|w| w.load(Ordering::Relaxed) >= limit);
        !over(self.addresses.get(&address), 100) && !over(self.pairs.get(&(key, address)), 10)
    }
}

/// Fills the tables as a round needs them, with windows open from now: the baseline's as the old limiter would be
/// after failures of other clients; `busy` with other clients' failures; `guessed` with this client's secret
/// guessed from 1,000 addresses, its own address trusted.
fn prime(before: &Before, busy: &AuthLimiter, guessed: &AuthLimiter, server: AuthServerId, home: IpAddr) {
    let now = SystemClock.now();
    guessed.succeeded(&guessed.attempt(server, CLIENT, home), now);
    for n in 0..1000u32 {
        let ip = IpAddr::from(n.to_be_bytes());
        before.addresses.insert(ip, Arc::new(AtomicU32::new(1)));
        before.pairs.insert((format!("{server}/other-{n}"), ip), Arc::new(AtomicU32::new(1)));
        let wrong = SecretHash([(n % 251) as u8; 32]);
        busy.failed(&busy.attempt(server, &format!("other-{n}"), ip), &wrong, now);
        guessed.failed(&guessed.attempt(server, CLIENT, ip), &SecretHash([(n % 199) as u8; 32]), now);
    }
    assert!(guessed.admit(&guessed.attempt(server, CLIENT, "203.0.113.1".parse().unwrap()), now).is_err());
}

fn main() {
    let server = AuthServerId::new();
    let home: IpAddr = "192.0.2.10".parse().unwrap();
    let window = Duration::from_secs(60);
    let before = Before {
        pairs: Cache::builder().max_capacity(100_000).time_to_live(window).build(),
        addresses: Cache::builder().max_capacity(100_000).time_to_live(window).build(),
    };
    let (quiet, busy, guessed) =
        (AuthLimiter::new(Limits::default()), AuthLimiter::new(Limits::default()), AuthLimiter::new(Limits::default()));

    let keys = MasterKey::generate().derive();
    let secret = "0123456789abcdefghijklmnopqrstuv";
    let key = gatehouse_identity::keys::generate(SigningAlgorithm::ES256, server, &keys, SystemClock.now()).unwrap();
    let signer = Signer::open(&key, &keys).unwrap();
    let claims = serde_json::json!({"iss": "https://id.example.com/a", "sub": CLIENT, "aud": ["api"], "iat": 1,
        "nbf": 1, "exp": 2, "scope": "my-scope", "jti": "01a24fe7-489d-74cc-b062-c37924be35a4"});
    let claims = claims.as_object().unwrap().clone();
    let token = signer.sign(&claims).unwrap();
    let signature =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token.rsplit_once('.').unwrap().1)
            .unwrap();
    let limited = |limiter: &AuthLimiter| {
        let now = SystemClock.now();
        let attempt = limiter.attempt(server, black_box(CLIENT), home);
        assert!(limiter.admit(&attempt, now).is_ok());
        limiter.succeeded(&attempt, now);
    };
    let cases: Vec<Case> = vec![
        ("before", 10_000, Box::new(|| assert!(before.check(server, black_box(CLIENT), home)))),
        ("quiet", 10_000, Box::new(|| limited(&quiet))),
        ("busy", 10_000, Box::new(|| limited(&busy))),
        ("guessed", 10_000, Box::new(|| limited(&guessed))),
        (
            "secret HMAC",
            10_000,
            Box::new(|| {
                black_box(keys.hash_client_secret(black_box(secret)));
            }),
        ),
        ("ES256 sign", 100, Box::new(|| drop(black_box(signer.sign(black_box(&claims)).unwrap())))),
        (
            "low-S step",
            10_000,
            Box::new(|| {
                let parsed = p256::ecdsa::Signature::from_slice(black_box(&signature)).unwrap();
                black_box(parsed.normalize_s().to_bytes());
            }),
        ),
    ];
    const ROUNDS: usize = 5;
    let mut table: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, batch, f)) in cases.iter().enumerate() {
            prime(&before, &busy, &guessed, server, home);
            measure(10, *batch, f); // warm-up
            table[i].push(measure(50, *batch, f));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Cases are timed round by round next to the baseline, so the ratio is taken per round, then its median.
    println!("{:<12} {:>10} {:>12}", "case", "median ns", "÷ before");
    for ((name, _, _), row) in cases.iter().zip(&table) {
        let ratios: Vec<f64> = row.iter().zip(&table[0]).map(|(ns, base)| ns / base).collect();
        println!("{name:<12} {:>10.0} {:>12.2}", median(row.clone()), median(ratios));
    }
}
