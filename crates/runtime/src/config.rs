//! Configuration: defaults, overlaid by a file (TOML or YAML), overlaid by `GATEHOUSE_SECTION__KEY` environment
//! variables, overlaid by command-line flags. Unknown keys are reported (warnings, or errors under
//! `--check-config`) with their full path, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use gatehouse_model::SecretString;
use gatehouse_model::issuer_url::IssuerUrlTemplate;
use gatehouse_net::{ConnectionLimits, FdBudget, ListenerShare};
use gatehouse_store::{StorageUrl, StoreError};

pub const ENV_PREFIX: &str = "GATEHOUSE_";
/// Variables the test suites read; they are not configuration.
const ENV_IGNORED_PREFIX: &str = "GATEHOUSE_TEST_";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// Kong's `role`: `traditional` (everything on one node, the default), `control_plane` (everything but the
    /// proxy, plus the cluster listener) or `data_plane` (the proxy and the status listener only, configured by a
    /// control plane; no storage).
    pub role: Role,
    /// Where the SQLite database and the generated master key live; on a data plane, where the last configuration
    /// received is kept.
    pub data_dir: PathBuf,
    /// The master key itself (base64 or hex of 32 bytes); prefer `GATEHOUSE_MASTER_KEY` to a file entry.
    #[serde(serialize_with = "redacted")]
    pub master_key: Option<SecretString>,
    /// A file holding the master key. With SQLite it defaults to `<data_dir>/master.key`, created on first start.
    pub master_key_file: Option<PathBuf>,
    /// Base of every issuer URL: `https://id.example.com` (path-based) or `https://{key}.id.example.com`
    /// (host-based). Defaults to `http://<issuer listen address>`.
    pub identity_public_url: Option<String>,
    /// Lets the proxy, platform, issuer and echo listeners bind a non-loopback address over plain HTTP.
    #[serde(deserialize_with = "bool_or_string")]
    pub allow_plaintext_public: bool,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub proxy: ListenerConfig,
    pub admin: ListenerConfig,
    pub platform: ListenerConfig,
    pub issuer: ListenerConfig,
    pub echo: ListenerConfig,
    /// Kong's `status_listen`: health, readiness and Prometheus metrics.
    pub status: ListenerConfig,
    pub gateway: GatewayConfig,
    /// Hybrid mode: how control planes and data planes reach and trust each other.
    pub cluster: ClusterConfig,
}

/// A node's part in a deployment (Kong's `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Traditional,
    ControlPlane,
    DataPlane,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Traditional => "traditional",
            Role::ControlPlane => "control_plane",
            Role::DataPlane => "data_plane",
        }
    }
}

/// How a data plane's certificate is trusted (Kong's `cluster_mtls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMtls {
    /// One certificate and key on every node; each side pins it.
    #[default]
    Shared,
    /// Certificates signed by `cluster.ca_cert`, or pinned through `/v2/control-planes/{id}/dp-client-certificates`.
    Pki,
}

/// Kong's `cluster_*` settings, without the prefix.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// Kong's `cluster_listen`: where a control plane accepts data planes (TLS 1.3 with client certificates only).
    pub listen: SocketAddr,
    /// Kong's `cluster_control_plane`: `host:port` of the control plane a data plane connects to.
    pub control_plane: Option<String>,
    /// Kong's `cluster_mtls`: `shared` (default) or `pki`.
    pub mtls: ClusterMtls,
    /// Kong's `cluster_cert` and `cluster_cert_key`: this node's cluster certificate (PEM) and its key.
    pub cert: Option<PathBuf>,
    pub cert_key: Option<PathBuf>,
    /// Kong's `cluster_ca_cert`: with `pki`, the CA that signs data planes' certificates (on the control plane)
    /// and the control plane's (on a data plane).
    pub ca_cert: Option<PathBuf>,
    /// Kong's `cluster_server_name`: with `pki`, the name a data plane expects in the control plane's
    /// certificate; default the host of `control_plane`.
    pub server_name: Option<String>,
    /// Seconds between heartbeats, both ways; default 30 (Kong's `PING_INTERVAL`). A peer silent for three
    /// intervals is taken as gone.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub ping_interval: Option<f64>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            listen: loopback(8005),
            control_plane: None,
            mtls: ClusterMtls::Shared,
            cert: None,
            cert_key: None,
            ca_cert: None,
            server_name: None,
            ping_interval: None,
        }
    }
}

impl ClusterConfig {
    /// The heartbeat interval.
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval.and_then(|s| Duration::try_from_secs_f64(s).ok()).unwrap_or(Duration::from_secs(30))
    }

    fn validate(&self, role: Role) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid { path: format!("cluster.{key}"), message };
        if role == Role::Traditional {
            return Ok(());
        }
        if self.ping_interval.is_some_and(|s| !(s > 0.0 && s <= 3600.0)) {
            return Err(invalid("ping_interval", "must be more than 0 and at most 3600 seconds".into()));
        }
        for (key, value) in [("cert", &self.cert), ("cert_key", &self.cert_key)] {
            if value.is_none() {
                let message = format!(
                    "a {} needs its cluster certificate and key (`gatehouse cluster cert` makes a shared pair)",
                    role.as_str()
                );
                return Err(invalid(key, message));
            }
        }
        if self.mtls == ClusterMtls::Pki && self.ca_cert.is_none() && role == Role::DataPlane {
            return Err(invalid(
                "ca_cert",
                "with mtls = \"pki\", a data plane checks the control plane's certificate against this CA".into(),
            ));
        }
        if self.mtls == ClusterMtls::Shared && self.ca_cert.is_some() {
            return Err(invalid("ca_cert", "only used with mtls = \"pki\"".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StorageConfig {
    /// `sqlite://PATH` or `postgres://…`; defaults to `sqlite://<data_dir>/gatehouse.db`.
    #[serde(serialize_with = "storage_url_redacted")]
    pub url: Option<String>,
    /// PostgreSQL schema to create if missing and use.
    pub schema: Option<String>,
    #[serde(deserialize_with = "opt_number_or_string")]
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `gatehouse_identity=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".to_owned() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    /// Proxies in front of this listener whose `X-Forwarded-For` is believed (the proxy's forwarded headers, the
    /// issuer's brute-force limits): CIDRs, a list or a comma-separated string.
    #[serde(
        default,
        deserialize_with = "nets_or_string",
        serialize_with = "as_texts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trusted_ips: Vec<ipnet::IpNet>,
    /// Connections kept open at once; default: this listener's share of the file-descriptor limit.
    #[serde(default, deserialize_with = "opt_number_or_string")]
    pub max_connections: Option<usize>,
    /// Connections kept open at once from one address; default: a quarter of `max_connections` (all of them on
    /// the loopback-only admin and echo listeners).
    #[serde(default, deserialize_with = "opt_number_or_string")]
    pub max_connections_per_address: Option<usize>,
    /// Seconds within which a connection's first request, and every HTTP/1 request head, must arrive; default 30.
    #[serde(default, deserialize_with = "opt_number_or_string")]
    pub client_header_timeout: Option<f64>,
    /// Seconds a connection with no request in flight stays open; default 60.
    #[serde(default, deserialize_with = "opt_number_or_string")]
    pub keepalive_timeout: Option<f64>,
    /// Seconds: the longest pause in a proxied request body, or the time an API request body may take; default 60.
    #[serde(default, deserialize_with = "opt_number_or_string")]
    pub client_body_timeout: Option<f64>,
    /// Seconds a client may leave a response unread before its connection is closed; default 60.
    #[serde(default, deserialize_with = "opt_number_or_string")]
    pub send_timeout: Option<f64>,
    /// Host names and addresses a request's `Host` may name besides `localhost`, `*.localhost` and loopback
    /// addresses. Only the admin and echo listeners check `Host` (a web page using DNS rebinding reaches them under
    /// its own name); on the others this is a configuration error. A list or a comma-separated string.
    #[serde(
        default,
        deserialize_with = "hosts_or_string",
        serialize_with = "as_texts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_hosts: Vec<url::Host>,
    /// The issuer's limits on guessing client secrets; refused on the other listeners.
    #[serde(default, skip_serializing_if = "BruteForceConfig::is_unset")]
    pub brute_force: BruteForceConfig,
    /// The proxy's TLS listener (Kong's `proxy_listen … ssl`, 8443); off unless set. Refused on the other
    /// listeners, which serve TLS on `listen` itself when given `tls_cert`/`tls_key`.
    #[serde(default)]
    pub listen_tls: Option<SocketAddr>,
    /// A PEM certificate chain (end-entity certificate first) and its PEM private key. On the platform and issuer
    /// listeners, `listen` then serves TLS only; on the proxy, they are the certificate of `listen_tls` for a
    /// client whose SNI no `certificates` entity matches (Kong's `ssl_cert`/`ssl_cert_key`). Reloaded when the
    /// files change and on SIGHUP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl ListenerConfig {
    fn on(listen: SocketAddr) -> Self {
        Self {
            listen,
            trusted_ips: Vec::new(),
            max_connections: None,
            max_connections_per_address: None,
            client_header_timeout: None,
            keepalive_timeout: None,
            client_body_timeout: None,
            send_timeout: None,
            allowed_hosts: Vec::new(),
            brute_force: BruteForceConfig::default(),
            listen_tls: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// This listener's certificate files, when both are set.
    pub fn tls_files(&self) -> Option<gatehouse_net::tls::CertificateFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(gatehouse_net::tls::CertificateFiles { cert: cert.clone(), key: key.clone() })
            }
            _ => None,
        }
    }

    /// Whether `listen` serves TLS (the platform and issuer listeners with certificate files).
    pub fn listen_is_tls(&self, kind: crate::listener::ListenerKind) -> bool {
        use crate::listener::ListenerKind as K;
        matches!(kind, K::Platform | K::Issuer) && self.tls_files().is_some()
    }

    /// This listener's connection limits: what is configured, else its share of `budget` and the defaults.
    pub fn connection_limits(&self, share: ListenerShare, budget: FdBudget) -> ConnectionLimits {
        let mut limits = share.limits(self.max_connections.unwrap_or(budget.connections(share)));
        if let Some(n) = self.max_connections_per_address {
            limits.max_connections_per_address = n;
        }
        let seconds =
            |value: Option<f64>, default| value.and_then(|s| Duration::try_from_secs_f64(s).ok()).unwrap_or(default);
        limits.header_timeout = seconds(self.client_header_timeout, limits.header_timeout);
        limits.keepalive_timeout = seconds(self.keepalive_timeout, limits.keepalive_timeout);
        limits.body_timeout = seconds(self.client_body_timeout, limits.body_timeout);
        limits.send_timeout = seconds(self.send_timeout, limits.send_timeout);
        limits
    }

    /// Checks the connection settings; `section` names the listener in errors.
    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        use crate::listener::ListenerKind;
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: format!("{section}.{key}"),
            message: message.to_owned(),
        };
        for (key, value) in [
            ("client_header_timeout", self.client_header_timeout),
            ("keepalive_timeout", self.keepalive_timeout),
            ("client_body_timeout", self.client_body_timeout),
            ("send_timeout", self.send_timeout),
        ] {
            if let Some(seconds) = value
                && !(seconds > 0.0 && seconds <= 86_400.0)
            {
                return Err(invalid(key, "must be more than 0 and at most 86400 seconds"));
            }
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            ("max_connections_per_address", self.max_connections_per_address),
        ] {
            if value == Some(0) {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let checks_host = [ListenerKind::Admin, ListenerKind::Echo].iter().any(|kind| kind.as_str() == section);
        if !checks_host && !self.allowed_hosts.is_empty() {
            return Err(invalid("allowed_hosts", "only the admin and echo listeners check Host"));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let missing = if self.tls_cert.is_some() { "tls_key" } else { "tls_cert" };
            return Err(invalid(missing, "tls_cert and tls_key go together"));
        }
        let proxy = section == ListenerKind::Proxy.as_str();
        if !proxy && self.listen_tls.is_some() {
            return Err(invalid("listen_tls", "only the proxy has a second, TLS listener"));
        }
        let takes_files = proxy || [ListenerKind::Platform, ListenerKind::Issuer].iter().any(|k| k.as_str() == section);
        if !takes_files && self.tls_cert.is_some() {
            return Err(invalid("tls_cert", "only the proxy, platform and issuer listeners serve TLS"));
        }
        if section == ListenerKind::Issuer.as_str() {
            self.brute_force.validate(section)
        } else if self.brute_force != BruteForceConfig::default() {
            Err(invalid("brute_force", "only the issuer listener has brute-force limits"))
        } else {
            Ok(())
        }
    }
}

/// Limits on guessing client secrets (docs/operations.md, "Brute-force limits on the issuer"); what is counted is
/// distinct wrong secrets, per auth server. Unset fields keep their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct BruteForceConfig {
    /// Length of the counting window; default 60.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub window_secs: Option<u64>,
    /// Wrong secrets for one client from one address before that address's attempts for it are refused unchecked;
    /// default 10.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub per_client_and_address: Option<u32>,
    /// Wrong secrets for one client from all addresses before its attempts are refused unchecked, except from
    /// addresses it authenticated from within `trust_secs`; default 50.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub per_client: Option<u32>,
    /// Wrong secrets from one address before its further wrong secrets are answered 429; default 100.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub per_address: Option<u32>,
    /// How long the answer to a new wrong secret waits; default 1000; 0 answers at once.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub failure_delay_ms: Option<u64>,
    /// How long a successful authentication exempts its address from the client's limit; default 86400.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub trust_secs: Option<u64>,
    /// Keys (clients, addresses, pairs) each table tracks at most; default 100,000.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub max_tracked: Option<u64>,
}

impl BruteForceConfig {
    fn is_unset(&self) -> bool {
        *self == Self::default()
    }

    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let positive = [
            ("window_secs", self.window_secs),
            ("per_client_and_address", self.per_client_and_address.map(u64::from)),
            ("per_client", self.per_client.map(u64::from)),
            ("per_address", self.per_address.map(u64::from)),
            ("max_tracked", self.max_tracked),
        ];
        for (name, value) in positive {
            if value == Some(0) {
                return Err(ConfigError::Invalid {
                    path: format!("{section}.brute_force.{name}"),
                    message: "must be at least 1".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// A host as `allowed_hosts` holds it and as a request's `Host` is compared with it: parsed as browsers parse
/// hosts (lower case, IDNA, `127.1` is `127.0.0.1`), an absolute name's trailing dot dropped, an IPv6 address with
/// or without brackets. `None` for anything else (a port, a scheme, a wildcard).
pub fn parse_host(text: &str) -> Option<url::Host> {
    if let Ok(ip) = text.parse::<std::net::Ipv6Addr>() {
        return Some(url::Host::Ipv6(ip));
    }
    match url::Host::parse(text).ok()? {
        url::Host::Domain(name) => {
            let name = name.strip_suffix('.').unwrap_or(&name);
            let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            (!name.is_empty() && name.bytes().all(plain)).then(|| url::Host::Domain(name.to_owned()))
        }
        ip => Some(ip),
    }
}

fn hosts_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<url::Host>, D::Error> {
    list_or_string(d)?
        .iter()
        .map(|s| {
            parse_host(s).ok_or_else(|| {
                serde::de::Error::custom(format!("[{s}] is not a host name or IP address (give no scheme or port)"))
            })
        })
        .collect()
}

/// A list, or the comma-separated text an environment variable holds.
fn list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum L {
        List(Vec<String>),
        Text(String),
    }
    Ok(match L::deserialize(d)? {
        L::List(v) => v,
        L::Text(t) => t.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
    })
}

fn nets_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    list_or_string(d)?
        .iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("[{s}] is not an IP address or CIDR")))
        })
        .collect()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// The control plane whose configuration this node serves (created when missing); default `default`.
    pub control_plane: Option<String>,
    /// How many `oauth2-introspection` answers the node caches at most; default 100,000; 0 keeps none.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub introspection_cache_entries: Option<u64>,
    /// Forward request header names containing `_` (nginx's `underscores_in_headers`); by default the proxy
    /// drops them, as Kong does. Names the gateway owns (`X_Consumer_ID`, …) are dropped either way.
    #[serde(deserialize_with = "bool_or_string")]
    pub underscores_in_headers: bool,
    /// How many bytes those answers may take at most; default 64 MiB; 0 keeps none.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub introspection_cache_bytes: Option<u64>,
    /// The proxy's access log (Kong's `proxy_access_log`): `stderr` (the default, with the node's logs, in
    /// `log.format`), `off`, or a file path to append to.
    pub access_log: Option<String>,
    /// Kong's `dns_resolver`: the name servers that upstream targets' host names are resolved with, `ip` or
    /// `ip:port` (port 53 when absent), a list or a comma-separated string. Empty (the default): the system's,
    /// from `/etc/resolv.conf`. `/etc/hosts` is read either way.
    #[serde(
        deserialize_with = "resolvers_or_string",
        serialize_with = "as_texts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns_resolver: Vec<SocketAddr>,
    /// Kong's `dns_stale_ttl`: seconds a name's addresses are still used past their TTL while it cannot be
    /// resolved again; default 3600.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub dns_stale_ttl: Option<f64>,
    /// Kong's `dns_not_found_ttl`: seconds before a name that did not resolve is asked about again; default 30.
    #[serde(deserialize_with = "opt_number_or_string")]
    pub dns_not_found_ttl: Option<f64>,
}

fn resolvers_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    list_or_string(d)?
        .iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| serde::de::Error::custom(format!("[{s}] is not an IP address or address:port")))
        })
        .collect()
}

/// `host:port` (`[v6]:port` for IPv6) split in two; `None` without a port.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./gatehouse-data"),
            master_key: None,
            master_key_file: None,
            identity_public_url: None,
            allow_plaintext_public: false,
            storage: StorageConfig::default(),
            log: LogConfig::default(),
            proxy: ListenerConfig::on(loopback(8000)),
            admin: ListenerConfig::on(loopback(8001)),
            platform: ListenerConfig::on(loopback(8002)),
            issuer: ListenerConfig::on(loopback(8003)),
            echo: ListenerConfig::on(loopback(8004)),
            status: ListenerConfig::on(loopback(8100)),
            gateway: GatewayConfig::default(),
            cluster: ClusterConfig::default(),
            role: Role::Traditional,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {0} must end in .toml, .yaml or .yml")]
    UnknownFormat(PathBuf),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("unknown configuration keys: {}", .0.join(", "))]
    UnknownKeys(Vec<String>),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Where configuration comes from, lowest precedence first. Tests build this directly instead of touching the
/// process environment.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    /// Environment variables (only `GATEHOUSE_*` ones are read).
    pub env: Vec<(String, String)>,
    /// Values from flags, by dotted path (`storage.url`).
    pub overrides: Vec<(String, Value)>,
}

impl ConfigSources {
    pub fn from_process_env(file: Option<PathBuf>) -> Self {
        Self { file, env: std::env::vars().collect(), overrides: Vec::new() }
    }

    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        self.overrides.push((path.to_owned(), value.into()));
        self
    }
}

#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// Keys nobody reads, by dotted path and with where they came from.
    pub unknown_keys: Vec<String>,
}

pub fn load(sources: &ConfigSources) -> Result<LoadedConfig, ConfigError> {
    // Listener sections start from their own defaults, so a section that sets something else keeps its address.
    let mut tree = Value::Object(
        Config::default()
            .listeners()
            .iter()
            .map(|(kind, addr)| (kind.as_str().to_owned(), serde_json::json!({ "listen": addr.to_string() })))
            .collect(),
    );
    if let Some(path) = &sources.file {
        merge(&mut tree, read_file(path)?);
    }
    let mut env: Vec<_> = sources.env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    env.sort();
    for (key, value) in env {
        if key.starts_with(ENV_IGNORED_PREFIX) {
            continue;
        }
        let path: Vec<String> = key[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut tree, &path, Value::String(value.clone()));
    }
    for (path, value) in &sources.overrides {
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        set_path(&mut tree, &path, value.clone());
    }

    let mut unknown_keys = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(tree, &mut track);
    let config = serde_ignored::deserialize(de, |path| unknown_keys.push(path.to_string())).map_err(
        |e: serde_json::Error| ConfigError::Invalid { path: track.path().to_string(), message: e.to_string() },
    )?;
    Ok(LoadedConfig { config, unknown_keys })
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let parse_error = |message: String| ConfigError::Parse { path: path.to_owned(), message };
    let value: Value = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?,
        Some("yaml" | "yml") => serde_saphyr::from_str(&text).map_err(|e| parse_error(e.to_string()))?,
        _ => return Err(ConfigError::UnknownFormat(path.to_owned())),
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(parse_error("the top level must be a table of settings".to_owned())),
    }
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let mut node = tree;
    for key in &path[..path.len() - 1] {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node = node
            .as_object_mut()
            .map(|m| m.entry(key.clone()).or_insert(Value::Object(Map::new())))
            .unwrap_or_else(|| unreachable!("just made an object"));
    }
    if let (Some(last), Value::Object(map)) = (path.last(), node) {
        map.insert(last.clone(), value);
    }
}

/// `--print-config`: a secret is shown as set, never its value.
fn redacted<S: serde::Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

/// `--print-config`: a storage URL without its password.
fn storage_url_redacted<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(url) => match StorageUrl::parse(url) {
            Ok(parsed) => s.serialize_some(&parsed.redacted()),
            Err(_) => s.serialize_some("[unparseable]"),
        },
        None => s.serialize_none(),
    }
}

/// Addresses, networks and host names as they are written in a file.
fn as_texts<S: serde::Serializer, T: std::fmt::Display>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(ToString::to_string))
}

/// Environment variables are strings; booleans and numbers accept their text form too.
fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Text(String),
    }
    match B::deserialize(d)? {
        B::Bool(b) => Ok(b),
        B::Text(t) => match t.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("expected true or false, got [{t}]"))),
        },
    }
}

/// A number from a file, or its text from an environment variable.
fn opt_number_or_string<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N<T> {
        Num(T),
        Text(String),
    }
    match Option::<N<T>>::deserialize(d)? {
        None => Ok(None),
        Some(N::Num(n)) => Ok(Some(n)),
        Some(N::Text(t)) => {
            t.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("expected a number, got [{t}]")))
        }
    }
}

impl Config {
    pub fn storage_url(&self) -> Result<StorageUrl, ConfigError> {
        let raw = match &self.storage.url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("gatehouse.db").display()),
        };
        let mut url = StorageUrl::parse(&raw)
            .map_err(|e| ConfigError::Invalid { path: "storage.url".into(), message: e.to_string() })?;
        if let StorageUrl::Postgres(settings) = &mut url {
            settings.schema = self.storage.schema.clone();
            if let Some(n) = self.storage.max_connections {
                settings.max_connections = n;
            }
        }
        Ok(url)
    }

    /// The issuer URL template; without `identity_public_url`, the issuer listener's actual address (`https` when
    /// it serves TLS).
    pub fn issuer_url_template(&self, issuer_bound: SocketAddr) -> Result<IssuerUrlTemplate, ConfigError> {
        let scheme = if self.issuer.listen_is_tls(crate::listener::ListenerKind::Issuer) { "https" } else { "http" };
        let raw = self.identity_public_url.clone().unwrap_or_else(|| format!("{scheme}://{issuer_bound}"));
        IssuerUrlTemplate::parse(&raw)
            .map_err(|e| ConfigError::Invalid { path: "identity_public_url".into(), message: e.to_string() })
    }

    /// The configuration in effect, as a TOML file would give it, with secrets redacted (`serve --print-config`);
    /// settings without a value (their default is computed at start, e.g. connection limits) are left out.
    pub fn effective_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Checks everything that can be checked without binding or connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.validate(self.role)?;
        if self.role == Role::DataPlane {
            return self.validate_data_plane();
        }
        self.storage_url()?;
        if let Some(url) = &self.identity_public_url {
            IssuerUrlTemplate::parse(url)
                .map_err(|e| ConfigError::Invalid { path: "identity_public_url".into(), message: e.to_string() })?;
        }
        for (name, addr) in self.listeners() {
            let tls = self.listener(name).listen_is_tls(name);
            crate::listener::check_bind(name, addr, self.allow_plaintext_public || tls).map_err(|e| {
                ConfigError::Invalid { path: format!("{}.listen", name.as_str()), message: e.to_string() }
            })?;
            self.listener(name).validate(name.as_str())?;
        }
        for (key, value) in
            [("dns_stale_ttl", self.gateway.dns_stale_ttl), ("dns_not_found_ttl", self.gateway.dns_not_found_ttl)]
        {
            if value.is_some_and(|s| !(0.0..=86_400.0 * 365.0).contains(&s)) {
                return Err(ConfigError::Invalid {
                    path: format!("gateway.{key}"),
                    message: "must be a number of seconds, 0 or more".into(),
                });
            }
        }
        if let Some(addr) = self.proxy.listen_tls {
            crate::listener::check_bind(crate::listener::ListenerKind::Proxy, addr, true)
                .map_err(|e| ConfigError::Invalid { path: "proxy.listen_tls".into(), message: e.to_string() })?;
        }
        Ok(())
    }

    /// A data plane opens no storage and holds no master key: settings that only make sense with them are refused
    /// rather than ignored, so an operator who meant to give an edge proxy database credentials learns it does not
    /// take them.
    fn validate_data_plane(&self) -> Result<(), ConfigError> {
        let store_only = [
            ("storage.url", self.storage.url.is_some()),
            ("storage.schema", self.storage.schema.is_some()),
            ("storage.max_connections", self.storage.max_connections.is_some()),
            ("master_key", self.master_key.is_some()),
            ("master_key_file", self.master_key_file.is_some()),
            ("identity_public_url", self.identity_public_url.is_some()),
            ("gateway.control_plane", self.gateway.control_plane.is_some()),
        ];
        if let Some((key, _)) = store_only.iter().find(|(_, set)| *set) {
            return Err(ConfigError::Invalid {
                path: (*key).to_owned(),
                message: "a data plane has no storage and takes its configuration from cluster.control_plane; \
                          set this on the control plane"
                    .to_owned(),
            });
        }
        let Some(control_plane) = &self.cluster.control_plane else {
            return Err(ConfigError::Invalid {
                path: "cluster.control_plane".to_owned(),
                message: "a data plane needs the control plane's host:port".to_owned(),
            });
        };
        crate::config::split_host_port(control_plane).ok_or_else(|| ConfigError::Invalid {
            path: "cluster.control_plane".to_owned(),
            message: format!("[{control_plane}] is not host:port"),
        })?;
        use crate::listener::ListenerKind as K;
        for name in [K::Proxy, K::Status] {
            let addr = self.listener(name).listen;
            crate::listener::check_bind(name, addr, self.allow_plaintext_public).map_err(|e| ConfigError::Invalid {
                path: format!("{}.listen", name.as_str()),
                message: e.to_string(),
            })?;
            self.listener(name).validate(name.as_str())?;
        }
        if let Some(addr) = self.proxy.listen_tls {
            crate::listener::check_bind(K::Proxy, addr, true)
                .map_err(|e| ConfigError::Invalid { path: "proxy.listen_tls".into(), message: e.to_string() })?;
        }
        Ok(())
    }

    pub fn listener(&self, kind: crate::listener::ListenerKind) -> &ListenerConfig {
        use crate::listener::ListenerKind as K;
        match kind {
            K::Proxy => &self.proxy,
            K::Admin => &self.admin,
            K::Platform => &self.platform,
            K::Issuer => &self.issuer,
            K::Echo => &self.echo,
            K::Status => &self.status,
        }
    }

    pub fn listeners(&self) -> [(crate::listener::ListenerKind, SocketAddr); 6] {
        use crate::listener::ListenerKind as K;
        [
            (K::Proxy, self.proxy.listen),
            (K::Admin, self.admin.listen),
            (K::Platform, self.platform.listen),
            (K::Issuer, self.issuer.listen),
            (K::Echo, self.echo.listen),
            (K::Status, self.status.listen),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_are_loopback_and_sqlite() {
        let c = load(&ConfigSources::default()).unwrap().config;
        assert_eq!(c.platform.listen, "127.0.0.1:8002".parse().unwrap());
        assert_eq!(c.admin.listen.port(), 8001);
        assert!(matches!(c.storage_url().unwrap(), StorageUrl::Sqlite(p) if p.ends_with("gatehouse.db")));
        c.validate().unwrap();
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = gatehouse_store::testing::TempDir::new("cfg");
        let file = dir.path().join("gatehouse.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/a\"\n[platform]\nlisten = \"127.0.0.1:9002\"\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        let sources = ConfigSources {
            file: Some(file),
            env: env(&[
                ("GATEHOUSE_PLATFORM__LISTEN", "127.0.0.1:9102"),
                ("GATEHOUSE_ALLOW_PLAINTEXT_PUBLIC", "true"),
                ("GATEHOUSE_STORAGE__MAX_CONNECTIONS", "7"),
                ("GATEHOUSE_GATEWAY__INTROSPECTION_CACHE_ENTRIES", "5000"),
                ("GATEHOUSE_GATEWAY__INTROSPECTION_CACHE_BYTES", "8388608"),
                ("GATEHOUSE_TEST_DATABASE_URL", "ignored"),
                ("HOME", "/root"),
            ]),
            overrides: vec![],
        }
        .set("log.level", "warn");
        let loaded = load(&sources).unwrap();
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
        let c = loaded.config;
        assert_eq!(c.data_dir, PathBuf::from("/srv/a"));
        assert_eq!(c.platform.listen.port(), 9102, "env beats file");
        assert_eq!(c.log.level, "warn", "flags beat env and file");
        assert!(c.allow_plaintext_public);
        assert_eq!(c.storage.max_connections, Some(7));
        assert_eq!(c.gateway.introspection_cache_entries, Some(5000));
        assert_eq!(c.gateway.introspection_cache_bytes, Some(8 << 20));
        let nets = load(&ConfigSources {
            env: env(&[("GATEHOUSE_ISSUER__TRUSTED_IPS", "10.0.0.0/8, 192.168.1.1")]),
            ..Default::default()
        })
        .unwrap()
        .config
        .issuer
        .trusted_ips;
        assert_eq!(nets.len(), 2);
        assert!(nets[1].contains(&"192.168.1.1".parse::<std::net::IpAddr>().unwrap()));
    }

    #[test]
    fn brute_force_limits_live_under_the_issuer() {
        let loaded = load(&ConfigSources {
            env: env(&[
                ("GATEHOUSE_ISSUER__BRUTE_FORCE__PER_CLIENT", "20"),
                ("GATEHOUSE_ISSUER__LISTEN", "127.0.0.1:9"),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
        let c = loaded.config;
        assert_eq!((c.issuer.brute_force.per_client, c.issuer.listen.port()), (Some(20), 9));
        assert_eq!(c.issuer.brute_force.window_secs, None);
        let typo = load(&ConfigSources::default().set("issuer.brute_force.per_clent", 5)).unwrap();
        assert_eq!(typo.unknown_keys, vec!["issuer.brute_force.per_clent"]);
        let zero = load(&ConfigSources::default().set("issuer.brute_force.per_address", 0)).unwrap().config;
        assert!(zero.validate().unwrap_err().to_string().starts_with("issuer.brute_force.per_address:"));
        let elsewhere = load(&ConfigSources::default().set("proxy.brute_force.per_client", 5)).unwrap().config;
        assert!(elsewhere.validate().unwrap_err().to_string().starts_with("proxy.brute_force:"));
    }

    #[test]
    fn yaml_files_work_too() {
        let dir = gatehouse_store::testing::TempDir::new("cfg");
        let file = dir.path().join("gatehouse.yaml");
        std::fs::write(&file, "log:\n  format: json\nstorage:\n  url: postgres://u@h/db\n  schema: tenant_a\n")
            .unwrap();
        let c = load(&ConfigSources { file: Some(file), ..Default::default() }).unwrap().config;
        assert_eq!(c.log.format, LogFormat::Json);
        match c.storage_url().unwrap() {
            StorageUrl::Postgres(s) => assert_eq!(s.schema.as_deref(), Some("tenant_a")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_reported_with_their_path() {
        let sources = ConfigSources { env: env(&[("GATEHOUSE_PLATFORM__LISEN", "x")]), ..Default::default() }
            .set("stroage.url", json!("sqlite://x"));
        let loaded = load(&sources).unwrap();
        let mut keys = loaded.unknown_keys;
        keys.sort();
        assert_eq!(keys, vec!["platform.lisen", "stroage"]);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load(&ConfigSources { env: env(&[("GATEHOUSE_ISSUER__LISTEN", "nowhere")]), ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().starts_with("issuer.listen:"), "{e}");
        let e =
            load(&ConfigSources { env: env(&[("GATEHOUSE_ALLOW_PLAINTEXT_PUBLIC", "maybe")]), ..Default::default() })
                .unwrap_err();
        assert!(e.to_string().contains("allow_plaintext_public"), "{e}");
    }

    #[test]
    fn allowed_hosts_are_parsed_as_browsers_send_them() {
        let c = load(
            &ConfigSources {
                env: env(&[("GATEHOUSE_ADMIN__ALLOWED_HOSTS", "Gatehouse.Internal., 10.0.0.5,::1")]),
                ..Default::default()
            }
            .set("echo.allowed_hosts", json!(["[fd00::1]", "echo"])),
        )
        .unwrap()
        .config;
        let names = |hosts: &[url::Host]| hosts.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(names(&c.admin.allowed_hosts), ["gatehouse.internal", "10.0.0.5", "[::1]"]);
        assert_eq!(names(&c.echo.allowed_hosts), ["[fd00::1]", "echo"]);
        c.validate().unwrap();
        for bad in ["admin.internal:8001", "http://admin.internal", "*.example", "a b"] {
            let e = load(&ConfigSources::default().set("admin.allowed_hosts", json!([bad]))).unwrap_err();
            assert!(e.to_string().starts_with("admin.allowed_hosts"), "{bad}: {e}");
        }
        // Only the admin and echo listeners read it; elsewhere it would be a setting that does nothing.
        let proxy = load(&ConfigSources::default().set("proxy.allowed_hosts", "api.example")).unwrap().config;
        assert!(proxy.validate().unwrap_err().to_string().starts_with("proxy.allowed_hosts:"));
    }

    #[test]
    fn tls_lets_listeners_bind_publicly_and_its_settings_are_checked() {
        let validate = |sources: ConfigSources| load(&sources).unwrap().config.validate();
        let files = |s: ConfigSources, section: &str| {
            s.set(&format!("{section}.tls_cert"), "/c.pem").set(&format!("{section}.tls_key"), "/k.pem")
        };
        // Plain HTTP in public needs the explicit opt-in; TLS does not.
        assert!(validate(ConfigSources::default().set("platform.listen", "0.0.0.0:8002")).is_err());
        validate(files(ConfigSources::default().set("platform.listen", "0.0.0.0:8002"), "platform")).unwrap();
        validate(files(ConfigSources::default().set("issuer.listen", "0.0.0.0:8003"), "issuer")).unwrap();
        validate(ConfigSources::default().set("proxy.listen_tls", "0.0.0.0:8443")).unwrap();
        // The proxy's files are for its TLS listener: its plain one stays plain.
        assert!(validate(files(ConfigSources::default().set("proxy.listen", "0.0.0.0:8000"), "proxy")).is_err());
        let message = |sources: ConfigSources| validate(sources).unwrap_err().to_string();
        assert!(message(ConfigSources::default().set("platform.tls_cert", "/c.pem")).starts_with("platform.tls_key:"));
        assert!(message(ConfigSources::default().set("issuer.tls_key", "/k.pem")).starts_with("issuer.tls_cert:"));
        assert!(message(files(ConfigSources::default(), "echo")).starts_with("echo.tls_cert:"));
        assert!(
            message(ConfigSources::default().set("admin.listen_tls", "127.0.0.1:1")).starts_with("admin.listen_tls:")
        );
        assert!(message(ConfigSources::default().set("admin.listen_tls", "127.0.0.1:1")).contains("only the proxy"));
        // The admin API stays loopback-only, TLS or not.
        assert!(validate(files(ConfigSources::default().set("admin.listen", "0.0.0.0:8001"), "admin")).is_err());
    }

    #[test]
    fn connection_limits_come_from_the_budget_unless_set() {
        let budget = FdBudget::from_limit(1024);
        let c = load(&ConfigSources {
            env: env(&[("GATEHOUSE_PROXY__MAX_CONNECTIONS", "500"), ("GATEHOUSE_ISSUER__KEEPALIVE_TIMEOUT", "2.5")]),
            ..Default::default()
        })
        .unwrap()
        .config;
        c.validate().unwrap();
        let proxy = c.proxy.connection_limits(ListenerShare::Proxy, budget);
        assert_eq!((proxy.max_connections, proxy.max_connections_per_address), (500, 125));
        let issuer = c.issuer.connection_limits(ListenerShare::Issuer, budget);
        assert_eq!(issuer.max_connections, 179);
        assert_eq!(issuer.keepalive_timeout, Duration::from_millis(2500));
        assert_eq!(issuer.header_timeout, Duration::from_secs(30));
        for (key, value) in [("platform.client_body_timeout", json!(0)), ("admin.max_connections", json!(0))] {
            let bad = load(&ConfigSources::default().set(key, value)).unwrap().config;
            assert!(bad.validate().unwrap_err().to_string().starts_with(key), "{key}");
        }
    }

    #[test]
    fn hybrid_roles_take_kongs_names_and_check_their_settings() {
        let with_pair = |s: ConfigSources| s.set("cluster.cert", "/c.pem").set("cluster.cert_key", "/k.pem");
        let config = |s: ConfigSources| load(&s).unwrap().config;
        let dp = with_pair(ConfigSources::default().set("role", "data_plane").set("cluster.control_plane", "cp:8005"));
        let c = config(dp.clone());
        assert_eq!((c.role, c.cluster.mtls, c.cluster.listen.port()), (Role::DataPlane, ClusterMtls::Shared, 8005));
        assert_eq!(c.cluster.ping_interval(), Duration::from_secs(30));
        c.validate().unwrap();
        // What only a store-holding node uses is refused by name, not ignored.
        for (key, value) in [
            ("storage.url", json!("postgres://u@db/g")),
            ("master_key", json!("x")),
            ("gateway.control_plane", json!("default")),
        ] {
            let message = config(dp.clone().set(key, value)).validate().unwrap_err().to_string();
            assert!(message.starts_with(key) && message.contains("data plane has no storage"), "{message}");
        }
        let no_cp = config(with_pair(ConfigSources::default().set("role", "data_plane"))).validate().unwrap_err();
        assert!(no_cp.to_string().starts_with("cluster.control_plane:"), "{no_cp}");
        let bad_cp = config(dp.clone().set("cluster.control_plane", "no-port")).validate().unwrap_err();
        assert!(bad_cp.to_string().contains("is not host:port"), "{bad_cp}");
        let unpaired = config(ConfigSources::default().set("role", "control_plane")).validate().unwrap_err();
        assert!(unpaired.to_string().starts_with("cluster.cert:"), "{unpaired}");
        config(with_pair(ConfigSources::default().set("role", "control_plane"))).validate().unwrap();
        let pki_without_ca = config(dp.clone().set("cluster.mtls", "pki")).validate().unwrap_err();
        assert!(pki_without_ca.to_string().starts_with("cluster.ca_cert:"), "{pki_without_ca}");
        let zero = config(dp.set("cluster.ping_interval", 0)).validate().unwrap_err();
        assert!(zero.to_string().starts_with("cluster.ping_interval:"), "{zero}");
        assert!(load(&ConfigSources::default().set("role", "edge")).is_err(), "only Kong's three roles");
        assert_eq!(split_host_port("[::1]:8005"), Some(("::1".to_owned(), 8005)));
    }

    #[test]
    fn validation_catches_public_binds_and_bad_urls() {
        let public = load(&ConfigSources::default().set("admin.listen", "0.0.0.0:8001")).unwrap().config;
        assert!(public.validate().unwrap_err().to_string().contains("admin.listen"));
        let allowed =
            load(&ConfigSources::default().set("proxy.listen", "0.0.0.0:8000").set("allow_plaintext_public", true))
                .unwrap()
                .config;
        allowed.validate().unwrap();
        let bad_url = load(&ConfigSources::default().set("identity_public_url", "ftp://x")).unwrap().config;
        assert!(bad_url.validate().is_err());
        let bad_storage = load(&ConfigSources::default().set("storage.url", "mysql://x")).unwrap().config;
        assert!(bad_storage.validate().is_err());
    }
}
