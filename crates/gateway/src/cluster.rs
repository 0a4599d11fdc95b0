//! Hybrid mode, the data plane's side: one HTTP/2 stream to the control plane (TLS 1.3, mutual), configurations
//! installed as they arrive and acknowledged by hash (or reported when they cannot be applied, the previous one
//! still serving), heartbeats both ways, and the last applied configuration kept in the data dir, sealed, so a
//! data plane that starts while its control plane is away serves what it had.
//!
//! The cache file: `GHDPC001` (8 bytes), the configuration's hash (32 ASCII hex digits), a 12-byte nonce, then the
//! snapshot's JSON sealed with AES-256-GCM (the first 40 bytes as associated data). The key is derived with
//! HKDF-SHA256 from the data plane's cluster private key, so the file alone opens nothing. On load the tag proves
//! the file whole and the hash is checked against the content again; anything else is refused and not served.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::{aead, hkdf};
use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::sync::watch;
use zeroize::Zeroizing;

use gatehouse_model::gateway::cluster::Message;
use gatehouse_model::gateway::snapshot::ConfigSnapshot;
use gatehouse_net::cluster::{self as wire, FrameReader, KIND_CONFIG, KIND_MESSAGE};

use crate::Proxy;

const MAGIC: &[u8; 8] = b"GHDPC001";
const HEADER: usize = 8 + 32;
const NONCE: usize = 12;
/// The first reconnection delay; it doubles up to the settings' cap, each wait drawn at random from its upper half.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The key the cache file is sealed with.
pub struct CacheKey(aead::LessSafeKey);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey([redacted])")
    }
}

impl CacheKey {
    /// Derived from the data plane's cluster private key (its DER bytes).
    pub fn derive(cluster_key_der: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gatehouse data plane cache v1").extract(cluster_key_der);
        let info = [b"gatehouse/v1/dp-cache".as_slice()];
        let okm = prk.expand(&info, &aead::AES_256_GCM).unwrap_or_else(|_| unreachable!("32-byte output"));
        Self(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a configuration cache (bad header)")]
    Header { path: PathBuf },
    #[error("{path} does not open with this node's cluster key: corrupted, tampered with, or sealed by another key")]
    Seal { path: PathBuf },
    #[error("{path} holds a configuration whose content does not match its hash")]
    Hash { path: PathBuf },
    #[error("{path} holds an unreadable configuration: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Seals `json` (a snapshot with content hash `hash`) into the cache file format.
pub fn seal_cache(key: &CacheKey, hash: &str, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + NONCE + json.len() + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(hash.as_bytes());
    let mut nonce = [0u8; NONCE];
    // The system's random source failing is not something to carry on from.
    aws_lc_rs::rand::fill(&mut nonce).unwrap_or_else(|_| unreachable!("system randomness"));
    out.extend_from_slice(&nonce);
    let mut sealed = json.to_vec();
    key.0
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(&out[..HEADER]),
            &mut sealed,
        )
        .unwrap_or_else(|_| unreachable!("AES-GCM input within limits"));
    out.extend_from_slice(&sealed);
    out
}

/// Opens a cache file's bytes: the configuration, checked against the hash it was stored with.
pub fn open_cache(key: &CacheKey, path: &Path, bytes: &[u8]) -> Result<ConfigSnapshot, CacheError> {
    let path = || path.to_owned();
    if bytes.len() < HEADER + NONCE + 16 || &bytes[..8] != MAGIC {
        return Err(CacheError::Header { path: path() });
    }
    let hash = std::str::from_utf8(&bytes[8..HEADER]).map_err(|_| CacheError::Header { path: path() })?;
    let nonce = aead::Nonce::try_assume_unique_for_key(&bytes[HEADER..HEADER + NONCE])
        .map_err(|_| CacheError::Header { path: path() })?;
    let mut buffer = Zeroizing::new(bytes[HEADER + NONCE..].to_vec());
    let json = key
        .0
        .open_in_place(nonce, aead::Aad::from(&bytes[..HEADER]), &mut buffer[..])
        .map_err(|_| CacheError::Seal { path: path() })?;
    let snapshot: ConfigSnapshot =
        serde_json::from_slice(json).map_err(|e| CacheError::Parse { path: path(), message: e.to_string() })?;
    if snapshot.hash() != hash {
        return Err(CacheError::Hash { path: path() });
    }
    Ok(snapshot)
}

/// Writes the cache so that a crash leaves either the old file or the new one: a temporary file in the same
/// directory, written and synced, renamed over the old, then the directory synced so the rename itself lasts.
pub fn write_cache(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    use std::io::Write;
    let failed = |source| CacheError::Write { path: path.to_owned(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(failed)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed)?;
    Ok(())
}

/// Everything a data plane needs to follow its control plane.
#[derive(Debug)]
pub struct DataPlaneSettings {
    /// `host:port` of the control plane's cluster listener.
    pub control_plane: String,
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    /// Where the last applied configuration is kept.
    pub cache_path: PathBuf,
    pub cache_key: CacheKey,
    pub node_id: uuid::Uuid,
    pub hostname: String,
    pub version: String,
    /// Heartbeats; also the cap of the reconnection delay.
    pub ping_interval: Duration,
}

/// What a running data plane reports about its link (tests and logs read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    /// The control plane refused this data plane; the reason as it gave it. It keeps retrying.
    Refused(String),
    Disconnected(String),
}

/// Loads the cached configuration into `proxy`, when there is one that opens and checks. A cache that does not
/// is logged and left alone (the next applied configuration replaces it); the proxy then serves nothing and the
/// node is not ready until the control plane sends one.
pub fn load_cache(proxy: &Proxy, settings: &DataPlaneSettings) -> Option<String> {
    let bytes = match std::fs::read(&settings.cache_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %settings.cache_path.display(), "no cached configuration; waiting for the control plane");
            return None;
        }
        Err(source) => {
            let error = CacheError::Read { path: settings.cache_path.clone(), source };
            tracing::error!(error = %error, "cannot read the cached configuration; not serving it");
            return None;
        }
    };
    let snapshot = match open_cache(&settings.cache_key, &settings.cache_path, &bytes) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::error!(error = %error, "the cached configuration is refused and not served; waiting for the control plane");
            return None;
        }
    };
    let hash = snapshot.hash();
    match proxy.install(&snapshot) {
        Ok(()) => {
            tracing::info!(hash = %hash, version = snapshot.version, "serving the cached configuration");
            Some(hash)
        }
        Err(e) => {
            tracing::error!(error = %e, "the cached configuration does not compile; not serving it");
            None
        }
    }
}

/// Follows the control plane until `stop` resolves: connects, and reconnects forever with capped exponential
/// backoff and jitter. `state` tells how the link is.
pub async fn follow(
    proxy: Arc<Proxy>,
    settings: Arc<DataPlaneSettings>,
    mut serving: Option<String>,
    state: watch::Sender<LinkState>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut delay = FIRST_RETRY;
    loop {
        state.send_replace(LinkState::Connecting);
        let outcome = tokio::select! {
            _ = &mut stop => return,
            outcome = session(&proxy, &settings, &mut serving, &state) => outcome,
        };
        let connected = matches!(outcome, Ok(true));
        match outcome {
            Ok(_) => {
                tracing::warn!(control_plane = %settings.control_plane, "the control plane closed the stream; reconnecting");
                state.send_replace(LinkState::Disconnected("closed by the control plane".to_owned()));
            }
            Err(SessionError::Refused(reason)) => {
                tracing::error!(control_plane = %settings.control_plane, reason = %reason, "the control plane refused this data plane");
                state.send_replace(LinkState::Refused(reason));
            }
            Err(e) => {
                tracing::warn!(control_plane = %settings.control_plane, error = %e, "cannot reach the control plane; serving the configuration held");
                state.send_replace(LinkState::Disconnected(e.to_string()));
            }
        }
        if connected {
            delay = FIRST_RETRY;
        }
        // Full jitter over the upper half: data planes that lost the same control plane do not return in step.
        let wait = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
        delay = (delay * 2).min(settings.ping_interval.max(FIRST_RETRY));
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// With TLS 1.3 a control plane that refuses the client certificate says so after the client's handshake
    /// has finished, so that refusal surfaces here, as the alert in the error's sources.
    #[error("HTTP/2: {}", chain(.0))]
    Http(hyper::Error),
    #[error("control plane answered {0}")]
    Status(hyper::StatusCode),
    #[error("{0}")]
    Read(#[from] wire::ReadError),
    #[error("the control plane was silent for three heartbeats")]
    Silent,
    #[error("refused: {0}")]
    Refused(String),
    #[error("timed out")]
    Timeout,
}

/// An error with its sources, `: `-separated (hyper's own message hides the TLS alert in a source).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn message_frame(message: &Message) -> Bytes {
    wire::frame(KIND_MESSAGE, &serde_json::to_vec(message).unwrap_or_default())
}

/// One connection; `Ok(true)` when it got as far as a stream and then ended.
async fn session(
    proxy: &Proxy,
    settings: &DataPlaneSettings,
    serving: &mut Option<String>,
    state: &watch::Sender<LinkState>,
) -> Result<bool, SessionError> {
    let timeout = Duration::from_secs(10);
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&settings.control_plane))
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(SessionError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(settings.tls.clone());
    let tls = tokio::time::timeout(timeout, connector.connect(settings.server_name.clone(), tcp))
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(SessionError::Tls)?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .map_err(SessionError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "cluster connection ended");
        }
    });
    let (mut out, body): (Sender<Bytes, Infallible>, Channel<Bytes, Infallible>) = Channel::new(8);
    let request = Request::post(format!("https://cluster{}", wire::STREAM_PATH))
        .body(body)
        .unwrap_or_else(|_| unreachable!("a constant request"));
    let hello = Message::Hello {
        node_id: settings.node_id,
        hostname: settings.hostname.clone(),
        version: settings.version.clone(),
        config_hash: serving.clone(),
    };
    // The channel holds the hello until hyper sends the request.
    let _ = out.send_data(message_frame(&hello)).await;
    let response = tokio::time::timeout(timeout, sender.send_request(request))
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(SessionError::Http)?;
    if !response.status().is_success() {
        return Err(SessionError::Status(response.status()));
    }
    let mut incoming = response.into_body();
    let mut reader = FrameReader::default();
    let mut ping = tokio::time::interval(settings.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = settings.ping_interval * 3;
    let mut heard = tokio::time::Instant::now();
    let mut announced = false;
    loop {
        let frame = tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() > silence {
                    return Err(SessionError::Silent);
                }
                if out.send_data(message_frame(&Message::Ping { config_hash: serving.clone() })).await.is_err() {
                    return Ok(true);
                }
                continue;
            }
            frame = wire::next_frame(&mut incoming, &mut reader) => frame?,
        };
        let Some((kind, payload)) = frame else { return Ok(announced) };
        heard = tokio::time::Instant::now();
        if !announced {
            announced = true;
            tracing::info!(control_plane = %settings.control_plane, "connected to the control plane");
            state.send_replace(LinkState::Connected);
        }
        let reply = match kind {
            KIND_CONFIG => Some(apply(proxy, settings, serving, &payload).await),
            KIND_MESSAGE => match serde_json::from_slice::<Message>(&payload) {
                Ok(Message::Refused { reason }) => return Err(SessionError::Refused(reason)),
                Ok(Message::Ping { .. }) => Some(Message::Pong),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable message from the control plane");
                    None
                }
            },
            other => {
                tracing::warn!(kind = other, "unknown frame from the control plane; ignored");
                None
            }
        };
        if let Some(reply) = reply
            && out.send_data(message_frame(&reply)).await.is_err()
        {
            return Ok(true);
        }
    }
}

/// Installs a configuration frame; the answer for the control plane.
async fn apply(proxy: &Proxy, settings: &DataPlaneSettings, serving: &mut Option<String>, payload: &[u8]) -> Message {
    let failed = |hash: String, version: u64, error: String| {
        tracing::error!(hash = %hash, version, error = %error, "configuration from the control plane refused; the previous one keeps serving");
        Message::ApplyFailed { hash, version, error }
    };
    let received = match wire::read_config(payload) {
        Ok(received) => received,
        Err(e) => return failed(String::new(), 0, e.to_string()),
    };
    let (hash, version) = (received.hash, received.version);
    if serving.as_deref() == Some(hash.as_str()) {
        return Message::Applied { hash, version };
    }
    let mut snapshot: ConfigSnapshot = match serde_json::from_slice(&received.json) {
        Ok(snapshot) => snapshot,
        Err(e) => return failed(hash, version, format!("unreadable configuration: {e}")),
    };
    snapshot.version = version;
    if snapshot.hash() != hash {
        return failed(hash, version, "the configuration does not match its hash".to_owned());
    }
    if let Err(e) = proxy.install(&snapshot) {
        return failed(hash, version, e.to_string());
    }
    *serving = Some(hash.clone());
    tracing::info!(hash = %hash, version, "configuration from the control plane installed");
    let sealed = seal_cache(&settings.cache_key, &hash, &received.json);
    let path = settings.cache_path.clone();
    match tokio::task::spawn_blocking(move || write_cache(&path, &sealed)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot keep the configuration on disk; a restart without the control plane would serve none")
        }
        Err(e) => tracing::error!(error = %e, "the cache writer failed"),
    }
    Message::Applied { hash, version }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_cache_opens_only_whole_and_with_its_key() {
        let key = CacheKey::derive(b"a cluster key's DER");
        let snapshot = ConfigSnapshot::empty(None, 4);
        let json = serde_json::to_vec(&snapshot).unwrap();
        let hash = snapshot.hash();
        let sealed = seal_cache(&key, &hash, &json);
        let path = Path::new("cache");
        assert_eq!(open_cache(&key, path, &sealed).unwrap().hash(), hash);
        assert!(!sealed.windows(8).any(|w| w == b"services"), "nothing readable");
        let other = CacheKey::derive(b"another key");
        assert!(matches!(open_cache(&other, path, &sealed), Err(CacheError::Seal { .. })));
        for at in [0, 9, HEADER + 1, sealed.len() - 1] {
            let mut flipped = sealed.clone();
            flipped[at] ^= 1;
            assert!(open_cache(&key, path, &flipped).is_err(), "byte {at}");
        }
        assert!(matches!(open_cache(&key, path, &sealed[..sealed.len() - 3]), Err(CacheError::Seal { .. })));
        assert!(matches!(open_cache(&key, path, b"short"), Err(CacheError::Header { .. })));
        // A hash that is not the content's, sealed properly, is still refused.
        let lying = seal_cache(&key, &"0".repeat(32), &json);
        assert!(matches!(open_cache(&key, path, &lying), Err(CacheError::Hash { .. })));
    }
}
