//! Targets named by a host name rather than an IP address: resolved with hickory (Kong's `dns_resolver`, else the
//! system's `/etc/resolv.conf`; `/etc/hosts` either way), their addresses used until the answer's TTL runs out,
//! then resolved again by the upstream's refresh task. A name that does not resolve has no address (Kong's
//! `DNS_ERROR`) and is asked about again after `dns_not_found_ttl`; one that resolved before keeps its last
//! addresses for `dns_stale_ttl` past their TTL while it cannot be resolved again.
//!
//! A request picks the target first (by the upstream's algorithm and the targets' weights), then one of the
//! target's addresses: in turn, or for `consistent-hashing` by the request's hash. As in Kong, every address
//! carries the target's full weight, so a name that resolves to three addresses weighs three times its weight in
//! the balancer (whose tables are rebuilt when that number changes).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::time::Instant;

use super::Balancer;

/// The node's DNS settings (Kong's `dns_resolver`, `dns_stale_ttl`, `dns_not_found_ttl`).
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// Name servers to ask; empty: the system's.
    pub resolvers: Vec<SocketAddr>,
    pub stale_ttl: Duration,
    pub not_found_ttl: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self { resolvers: Vec::new(), stale_ttl: Duration::from_secs(3600), not_found_ttl: Duration::from_secs(30) }
    }
}

/// The shortest time between two resolutions of one name: a TTL of 0 (or a name server that answers with
/// already-expired records) would otherwise have the refresh task ask without pause.
const MIN_TTL: Duration = Duration::from_secs(1);

/// The node's resolver, built on first use (a node whose targets are all IP addresses never reads the system's
/// resolver configuration).
#[derive(Debug, Default)]
pub struct Dns {
    pub settings: DnsSettings,
    resolver: OnceLock<Result<TokioResolver, String>>,
}

impl Dns {
    pub fn new(settings: DnsSettings) -> Self {
        Self { settings, resolver: OnceLock::new() }
    }

    fn resolver(&self) -> Result<&TokioResolver, &str> {
        self.resolver.get_or_init(|| build(&self.settings.resolvers)).as_ref().map_err(String::as_str)
    }

    /// The addresses of `host` and when they expire.
    async fn lookup(&self, host: &str) -> Result<(Vec<IpAddr>, Instant), String> {
        let resolver = self.resolver()?;
        // A trailing dot: the name is absolute, so no search domain is tried before it.
        let absolute = if host.ends_with('.') || !host.contains('.') { host.to_owned() } else { format!("{host}.") };
        let found = resolver.lookup_ip(absolute.as_str()).await.map_err(|e| e.to_string())?;
        let ips: Vec<IpAddr> = found.iter().collect();
        if ips.is_empty() {
            return Err(format!("{host} has no A or AAAA record"));
        }
        Ok((ips, Instant::from_std(found.valid_until())))
    }
}

fn build(resolvers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if resolvers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| format!("the system's resolver configuration: {e}"))?
    } else {
        let servers = resolvers
            .iter()
            .flat_map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                [NameServerConfig::new(addr.ip(), true, vec![udp, tcp])]
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    // A records, and AAAA only for a name that has none (Kong's default `dns_order` asks for A, not AAAA): a
    // service that listens on IPv4 alone is not sent half its requests at an IPv6 address that refuses them.
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    builder.build().map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

/// What a name resolved to, last time it was asked.
#[derive(Debug)]
pub struct Resolved {
    /// `ip:port` of each address (the target's port), to connect to.
    pub addresses: Box<[http::uri::Authority]>,
    pub ips: Box<[IpAddr]>,
    /// Each address's hash, which a request's hash is mixed with to pick its address (`consistent-hashing`).
    seeds: Box<[u64]>,
    /// Each address's health as set through Kong's `PUT …/targets/{t}/{address}/healthy|unhealthy` (the health
    /// checks count per target); kept across resolutions for the addresses that stay.
    pub healthy: Box<[AtomicBool]>,
    /// When to ask again.
    pub refresh_at: Instant,
    /// Until when `addresses` may still be used if the name cannot be resolved again.
    stale_until: Instant,
    /// Why the last resolution failed, if it did.
    pub error: Option<String>,
}

/// A host-name target's DNS state.
#[derive(Debug, Default)]
pub struct NameState {
    /// `None` until first resolved.
    pub resolved: ArcSwapOption<Resolved>,
    /// Which address the next request to this target takes.
    cursor: AtomicUsize,
}

impl NameState {
    /// The address for the next request to this target: `Ok(None)` when the name was never resolved yet,
    /// `Err(())` when it resolved to nothing (Kong's `DNS_ERROR`).
    /// `Err(())` too when every address was set unhealthy.
    ///
    /// With a request's `hash` (`consistent-hashing`), the healthy address whose seed mixed with it scores
    /// highest (rendezvous hashing): a key keeps its address while the name's answer keeps it, and an address
    /// that comes or goes moves only the keys that go to or came from it. Otherwise the addresses take turns.
    pub fn next_address(&self, hash: Option<u64>) -> Result<Option<http::uri::Authority>, ()> {
        let guard = self.resolved.load();
        let Some(resolved) = guard.as_deref() else { return Ok(None) };
        let healthy = |at: &usize| resolved.healthy[*at].load(Ordering::Relaxed);
        if let Some(hash) = hash {
            return (0..resolved.addresses.len())
                .filter(healthy)
                .max_by_key(|&at| mix(hash ^ resolved.seeds[at]))
                .map(|at| Some(resolved.addresses[at].clone()))
                .ok_or(());
        }
        let n = resolved.addresses.len();
        let start = if n <= 1 { 0 } else { self.cursor.fetch_add(1, Ordering::Relaxed) };
        (0..n).map(|k| (start + k) % n).find(healthy).map(|at| Some(resolved.addresses[at].clone())).ok_or(())
    }

    /// Whether the name resolved to nothing last time (and has no stale addresses left).
    pub fn failed(&self) -> bool {
        self.resolved.load().as_deref().is_some_and(|r| r.addresses.is_empty())
    }

    /// Whether a request can go to one of its addresses (or to the name, never resolved yet).
    pub fn usable(&self) -> bool {
        self.resolved.load().as_deref().is_none_or(|r| r.healthy.iter().any(|h| h.load(Ordering::Relaxed)))
    }

    /// Sets the health of every address (Kong's target-wide `PUT …/healthy|unhealthy`).
    pub fn set_all(&self, healthy: bool) {
        if let Some(r) = self.resolved.load().as_deref() {
            for h in r.healthy.iter() {
                h.store(healthy, Ordering::Relaxed);
            }
        }
    }

    /// What a resolution answering `ips` (all healthy) would record, on `port`, without a name server.
    #[cfg(test)]
    pub(super) fn answer(&self, ips: &[IpAddr], port: u16) {
        let now = Instant::now();
        self.resolved.store(Some(std::sync::Arc::new(Resolved {
            addresses: ips.iter().map(|ip| SocketAddr::new(*ip, port).to_string().parse().unwrap()).collect(),
            healthy: ips.iter().map(|_| AtomicBool::new(true)).collect(),
            seeds: ips.iter().map(seed).collect(),
            ips: ips.into(),
            refresh_at: now + Duration::from_secs(60),
            stale_until: now + Duration::from_secs(60),
            error: None,
        })));
    }

    /// Sets the health of one address; `false` when the name has no such address now.
    pub fn set_one(&self, ip: IpAddr, healthy: bool) -> bool {
        let guard = self.resolved.load();
        let Some(r) = guard.as_deref() else { return false };
        let Some(at) = r.ips.iter().position(|a| *a == ip) else { return false };
        r.healthy[at].store(healthy, Ordering::Relaxed);
        true
    }
}

impl Balancer {
    /// Resolves the name of target `i` now and records the result.
    pub async fn resolve(&self, i: usize) {
        let t = &self.targets[i];
        let (Some(state), Some(dns)) = (&t.name, &self.dns) else { return };
        let port = t.authority.port_u16().unwrap_or(gatehouse_model::gateway::upstreams::DEFAULT_TARGET_PORT);
        let now = Instant::now();
        let next = match dns.lookup(t.host()).await {
            Ok((ips, valid_until)) => {
                let addresses = ips
                    .iter()
                    .filter_map(|ip| SocketAddr::new(*ip, port).to_string().parse().ok())
                    .collect::<Box<[http::uri::Authority]>>();
                let refresh_at = valid_until.max(now + MIN_TTL);
                let previous = state.resolved.load();
                let healthy = ips
                    .iter()
                    .map(|ip| {
                        let before = previous.as_deref().and_then(|p| {
                            let at = p.ips.iter().position(|a| a == ip)?;
                            Some(p.healthy[at].load(Ordering::Relaxed))
                        });
                        AtomicBool::new(before.unwrap_or(true))
                    })
                    .collect();
                Resolved {
                    addresses,
                    healthy,
                    seeds: ips.iter().map(seed).collect(),
                    ips: ips.into_boxed_slice(),
                    refresh_at,
                    stale_until: refresh_at + dns.settings.stale_ttl,
                    error: None,
                }
            }
            Err(error) => {
                let retry_at = now + dns.settings.not_found_ttl.max(MIN_TTL);
                let previous = state.resolved.load_full();
                match previous.filter(|p| !p.addresses.is_empty() && p.stale_until > now) {
                    Some(stale) => {
                        tracing::warn!(upstream = %self.spec.name, target = %t.target, %error, "DNS resolution failed; the last addresses are used");
                        Resolved {
                            addresses: stale.addresses.clone(),
                            healthy: stale.healthy.iter().map(|h| AtomicBool::new(h.load(Ordering::Relaxed))).collect(),
                            ips: stale.ips.clone(),
                            seeds: stale.seeds.clone(),
                            refresh_at: retry_at.min(stale.stale_until),
                            stale_until: stale.stale_until,
                            error: Some(error),
                        }
                    }
                    None => {
                        tracing::warn!(upstream = %self.spec.name, target = %t.target, %error, "DNS resolution failed");
                        Resolved {
                            addresses: Box::default(),
                            healthy: Box::default(),
                            ips: Box::default(),
                            seeds: Box::default(),
                            refresh_at: retry_at,
                            stale_until: now,
                            error: Some(error),
                        }
                    }
                }
            }
        };
        let before = state.resolved.load_full();
        if let Some(old) = before.as_deref()
            && old.ips != next.ips
        {
            tracing::info!(upstream = %self.spec.name, target = %t.target, addresses = ?next.ips, "target's addresses changed");
        }
        // Before its first answer a name counts as one address (`TargetState::address_count`).
        let counted = |r: Option<&Resolved>| r.map_or(1, |r| r.addresses.len());
        let recount = counted(before.as_deref()) != counted(Some(&next));
        state.resolved.store(Some(std::sync::Arc::new(next)));
        if recount {
            self.addresses_changed();
        }
    }

    /// Whether any target is a host name.
    pub fn has_names(&self) -> bool {
        self.targets.iter().any(|t| t.name.is_some())
    }
}

/// An address's seed for [`NameState::next_address`]: the hash of its text, the same on every node.
fn seed(ip: &IpAddr) -> u64 {
    super::hash64(ip.to_string().as_bytes())
}

/// SplitMix64's finalizer: spreads a request's hash mixed with a seed over all 64 bits, so that which address
/// scores highest does not follow the seeds' order.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Resolves the balancer's host-name targets, each again when its answer expires, until the balancer is replaced
/// (the configuration changed) or dropped.
pub async fn refresh_loop(balancer: Weak<Balancer>) {
    loop {
        let Some(b) = balancer.upgrade() else { return };
        let now = Instant::now();
        let due: Vec<usize> = (0..b.targets.len())
            .filter(|&i| {
                b.targets[i]
                    .name
                    .as_ref()
                    .is_some_and(|n| n.resolved.load().as_deref().is_none_or(|r| r.refresh_at <= now))
            })
            .collect();
        futures_util::future::join_all(due.iter().map(|&i| b.resolve(i))).await;
        let next = b
            .targets
            .iter()
            .filter_map(|t| t.name.as_ref()?.resolved.load().as_deref().map(|r| r.refresh_at))
            .min()
            .unwrap_or(now + MIN_TTL);
        drop(b);
        // Wakes at least once a minute, so a replaced balancer's task ends soon after.
        tokio::time::sleep_until(
            next.max(Instant::now() + Duration::from_millis(50)).min(now + Duration::from_secs(60)),
        )
        .await;
    }
}
