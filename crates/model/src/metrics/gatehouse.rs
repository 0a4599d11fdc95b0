//! Gatehouse's own metrics (`gatehouse_…`), always on: one [`GatehouseMetrics`] per node, shared by the store,
//! the issuer, the configuration publisher and the gateway, rendered by the status listener's `/metrics` after
//! Kong's families.
//!
//! Labels are bounded by configuration or by the code: an auth server's name (auth servers are few and made by
//! operators), a store operation's name, an outcome from a fixed list. Never a client id, a token or a path.

use super::{CounterVec, FixedCounters, HistogramVec};

/// Latency buckets in seconds, 0.5 ms to 10 s: store queries, group commits, IdP calls, configuration publishing.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Records per group commit (the recorder commits at most 1,024 at once).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// `gatehouse_introspection_cache_total`'s `result` values, by index ([`CacheResult`]).
pub const CACHE_RESULTS: &[&str] = &["hit", "miss", "coalesced", "uncached"];

/// How the `oauth2-introspection` plugin got an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// From the worker's recent answers or the node's cache.
    Hit = 0,
    /// Asked the IdP.
    Miss = 1,
    /// Waited for another request's call to the IdP for the same token.
    Coalesced = 2,
    /// `introspect_request` is on: the answer depends on the request, so it is never cached.
    Uncached = 3,
}

/// `gatehouse_introspection_idp_failures_total`'s `kind` values, by index.
pub const IDP_FAILURE_KINDS: &[&str] = &["unreachable", "timeout", "status", "not_json", "request"];

/// `gatehouse_proxy_configuration_loads_total`'s `outcome` values, by index.
pub const LOAD_OUTCOMES: &[&str] = &["installed", "refused"];
pub const LOAD_INSTALLED: usize = 0;
pub const LOAD_REFUSED: usize = 1;

#[derive(Debug)]
pub struct GatehouseMetrics {
    /// `auth_server`, `algorithm`, `outcome` (`issued`, `throttled`, or the OAuth error code).
    pub token_requests: CounterVec,
    /// `auth_server`, `reason` (`missing`, `rejected`).
    pub client_auth_failures: CounterVec,
    /// `auth_server`: refused by the brute-force limits, before or after the secret was checked.
    pub client_auth_throttled: CounterVec,
    /// `auth_server`, `outcome` (`active`, `inactive`, `throttled`, or the OAuth error code).
    pub introspections: CounterVec,
    /// `auth_server`, `outcome` (`revoked`, `ignored`, `throttled`, or the OAuth error code).
    pub revocations: CounterVec,
    pub token_record_batch: HistogramVec,
    /// `outcome` (`ok`, `error`).
    pub token_record_commit: HistogramVec,
    pub proxy_configuration_loads: FixedCounters,
    pub configuration_publish: HistogramVec,
    pub introspection_cache: FixedCounters,
    pub introspection_idp: HistogramVec,
    pub introspection_idp_failures: FixedCounters,
    /// `operation` (the store method), `outcome` (`ok`, `error`).
    pub store_queries: HistogramVec,
}

impl Default for GatehouseMetrics {
    fn default() -> Self {
        Self {
            token_requests: CounterVec::new(
                "gatehouse_token_requests_total",
                "Token endpoint requests per auth server, signing algorithm and outcome (issued, throttled, or the OAuth error code)",
                &["auth_server", "algorithm", "outcome"],
            ),
            client_auth_failures: CounterVec::new(
                "gatehouse_client_authentication_failures_total",
                "Failed client authentications at the token, introspection and revocation endpoints (missing: no credentials; rejected: unknown client or wrong secret)",
                &["auth_server", "reason"],
            ),
            client_auth_throttled: CounterVec::new(
                "gatehouse_client_authentication_throttled_total",
                "Client authentications refused with 429 by the brute-force limits",
                &["auth_server"],
            ),
            introspections: CounterVec::new(
                "gatehouse_introspections_total",
                "Introspection requests per auth server and outcome (active, inactive, throttled, or the OAuth error code)",
                &["auth_server", "outcome"],
            ),
            revocations: CounterVec::new(
                "gatehouse_revocations_total",
                "Revocation requests per auth server and outcome (revoked, ignored: not a live token of the caller, throttled, or the OAuth error code)",
                &["auth_server", "outcome"],
            ),
            token_record_batch: HistogramVec::new(
                "gatehouse_token_record_batch_size",
                "Token records per group commit",
                &[],
                BATCH_BUCKETS,
            ),
            token_record_commit: HistogramVec::new(
                "gatehouse_token_record_commit_seconds",
                "Time to commit one group of token records, per outcome",
                &["outcome"],
                SECONDS_BUCKETS,
            ),
            proxy_configuration_loads: FixedCounters::new(
                "gatehouse_proxy_configuration_loads_total",
                "Gateway configurations the proxy installed or refused (a refused one leaves the previous serving)",
                "outcome",
                LOAD_OUTCOMES,
            ),
            configuration_publish: HistogramVec::new(
                "gatehouse_configuration_publish_seconds",
                "Time from a gateway configuration change to the proxy serving it",
                &[],
                SECONDS_BUCKETS,
            ),
            introspection_cache: FixedCounters::new(
                "gatehouse_introspection_cache_total",
                "oauth2-introspection answers by source (hit: cached; miss: asked the IdP; coalesced: waited for another request's call; uncached: introspect_request)",
                "result",
                CACHE_RESULTS,
            ),
            introspection_idp: HistogramVec::new(
                "gatehouse_introspection_idp_seconds",
                "Duration of oauth2-introspection calls to the introspection endpoint, failed ones included",
                &[],
                SECONDS_BUCKETS,
            ),
            introspection_idp_failures: FixedCounters::new(
                "gatehouse_introspection_idp_failures_total",
                "oauth2-introspection calls that got no answer, per kind",
                "kind",
                IDP_FAILURE_KINDS,
            ),
            store_queries: HistogramVec::new(
                "gatehouse_store_query_seconds",
                "Duration of store operations (SQLite or PostgreSQL) per operation and outcome",
                &["operation", "outcome"],
                SECONDS_BUCKETS,
            ),
        }
    }
}

impl GatehouseMetrics {
    pub fn render(&self, out: &mut String) {
        self.token_requests.render(out);
        self.client_auth_failures.render(out);
        self.client_auth_throttled.render(out);
        self.introspections.render(out);
        self.revocations.render(out);
        self.token_record_batch.render(out);
        self.token_record_commit.render(out);
        self.proxy_configuration_loads.render(out);
        self.configuration_publish.render(out);
        self.introspection_cache.render(out);
        self.introspection_idp.render(out);
        self.introspection_idp_failures.render(out);
        self.store_queries.render(out);
    }

    pub fn record_cache(&self, result: CacheResult) {
        self.introspection_cache.add(result as usize, 1);
    }
}

/// `ok` or `error`, the outcome label of timed operations.
pub fn outcome<T, E>(result: &Result<T, E>) -> &'static str {
    if result.is_ok() { "ok" } else { "error" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_a_gatehouse_name() {
        let m = GatehouseMetrics::default();
        m.token_requests.add(&["a", "RS256", "issued"], 1);
        m.client_auth_failures.add(&["a", "rejected"], 1);
        m.client_auth_throttled.add(&["a"], 1);
        m.introspections.add(&["a", "active"], 1);
        m.revocations.add(&["a", "revoked"], 1);
        m.token_record_batch.observe(&[], 3.0);
        m.token_record_commit.observe(&["ok"], 0.002);
        m.proxy_configuration_loads.add(0, 1);
        m.configuration_publish.observe(&[], 0.01);
        m.record_cache(CacheResult::Coalesced);
        m.introspection_idp.observe(&[], 0.003);
        m.introspection_idp_failures.add(1, 1);
        m.store_queries.observe(&["get_meta", "ok"], 0.0001);
        let mut out = String::new();
        m.render(&mut out);
        let families: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("# HELP ")).collect();
        assert_eq!(families.len(), 13, "{out}");
        assert!(families.iter().all(|f| f.starts_with("gatehouse_") && f.split_once(' ').is_some()), "{out}");
        assert_eq!(m.introspection_cache.get("coalesced"), Some(1));
        assert_eq!(m.introspection_idp_failures.get("timeout"), Some(1));
        assert!(out.contains("gatehouse_token_record_batch_size_bucket{le=\"4\"} 1\n"), "{out}");
        assert!(out.contains("gatehouse_store_query_seconds_count{operation=\"get_meta\",outcome=\"ok\"} 1\n"));
    }

    #[test]
    fn cache_results_index_their_label_values() {
        for (result, name) in [
            (CacheResult::Hit, "hit"),
            (CacheResult::Miss, "miss"),
            (CacheResult::Coalesced, "coalesced"),
            (CacheResult::Uncached, "uncached"),
        ] {
            assert_eq!(CACHE_RESULTS[result as usize], name);
        }
    }
}
