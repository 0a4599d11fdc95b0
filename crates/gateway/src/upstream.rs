//! Keep-alive connections to services, over HTTP or HTTPS, owned by one proxy worker.
//!
//! TLS to a service is verified unless it sets `tls_verify: false`: against the web PKI roots, or against its
//! `ca_certificates` when it names some, within its `tls_verify_depth`; it presents its `client_certificate`
//! when it has one. The server name sent (SNI) and verified is the service's host, or what [`PoolKey::server_name`]
//! says (a `preserve_host` route's). Connections are HTTP/1.1 (hyper's `client::conn`), each driven by its own
//! task on the worker's runtime.
//!
//! Reuse happens at two levels. A client connection keeps the upstream connection its last request used (see
//! `ClientConnection` in `proxy.rs`): an HTTP/1 client sends its next request only after the previous response
//! ended, so that connection is free again and no pool is consulted. Connections are parked in the worker's
//! [`Pool`] when their client connection goes away (or, for HTTP/2 clients, after each response), newest first,
//! at most [`MAX_IDLE_PER_TARGET`] per target and for at most [`IDLE_TIMEOUT`]. A connection is only ever reused
//! for a request whose [`PoolKey`] is equal to the one it was opened for, TLS settings and server name included.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_util::either::Either;
use tower::Service;

use crate::body::ProxyBody;
use crate::error::{GatewayError, ProxyError, Side};

pub type Sender = SendRequest<ProxyBody>;

pub const MAX_IDLE_PER_TARGET: usize = 256;
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What makes two upstream connections interchangeable.
#[derive(Debug, Clone)]
pub struct PoolKey {
    pub https: bool,
    pub authority: http::uri::Authority,
    pub connect_timeout_ms: u64,
    /// How to speak TLS (when `https`).
    pub tls: Arc<UpstreamTls>,
    /// The name sent as SNI and verified, when it is not the authority's host (a `preserve_host` route sends the
    /// client's `Host`, as Kong's `proxy_ssl_name $upstream_host` does).
    pub server_name: Option<Arc<str>>,
}

/// Cheapest comparisons first: a client connection compares its kept connections' keys on every request. The
/// authority is compared byte for byte (`Authority`'s own comparison ignores case, which costs more and only
/// merges keys that differ in case), which keeps equal keys' hashes equal.
impl PartialEq for PoolKey {
    fn eq(&self, other: &Self) -> bool {
        self.connect_timeout_ms == other.connect_timeout_ms
            && self.https == other.https
            && self.authority.as_str() == other.authority.as_str()
            && self.server_name == other.server_name
            && self.tls == other.tls
    }
}

impl Eq for PoolKey {}

impl std::hash::Hash for PoolKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.authority.as_str().hash(state);
        self.https.hash(state);
        self.connect_timeout_ms.hash(state);
        self.server_name.hash(state);
        self.tls.hash(state);
    }
}

impl Default for PoolKey {
    fn default() -> Self {
        Self {
            https: false,
            authority: http::uri::Authority::from_static("localhost"),
            connect_timeout_ms: 60_000,
            tls: UpstreamTls::default_for(true),
            server_name: None,
        }
    }
}

impl PoolKey {
    /// `tls_verify`: the service's setting (`None` verifies), with the web PKI roots and no client certificate;
    /// [`PoolKey::with_tls`] sets the rest.
    pub fn new(
        scheme: &http::uri::Scheme,
        authority: &http::uri::Authority,
        tls_verify: Option<bool>,
        connect_timeout_ms: u64,
    ) -> Self {
        Self {
            https: *scheme == http::uri::Scheme::HTTPS,
            authority: authority.clone(),
            connect_timeout_ms,
            tls: UpstreamTls::default_for(tls_verify.unwrap_or(true)),
            server_name: None,
        }
    }

    pub fn with_tls(mut self, tls: Arc<UpstreamTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The name TLS sends and verifies: [`PoolKey::server_name`], else the authority's host.
    fn tls_name(&self) -> Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
        let name = match &self.server_name {
            Some(name) => name.as_ref(),
            None => self.authority.host(),
        };
        let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
        ServerName::try_from(bare.to_owned())
    }
}

/// A service's upstream TLS settings as a `tls_verify`, `tls_verify_depth`, `ca_certificates` and
/// `client_certificate` describe them, with the certificates' PEM text.
#[derive(Debug, Clone, Copy)]
pub struct TlsSettings<'a> {
    pub verify: bool,
    pub depth: Option<u8>,
    /// The CA certificates to trust instead of the web PKI roots (none: the roots).
    pub roots: &'a [&'a str],
    /// A certificate chain and its key, presented when the upstream asks for one.
    pub client: Option<(&'a str, &'a str)>,
}

/// The rustls client settings of one set of [`TlsSettings`], built once per configuration. Two are equal when
/// built from equal settings and certificates (a SHA-256 digest of them), so pooled connections never cross from
/// one service's TLS settings to another's. Settings that cannot be built (a certificate that does not parse, a
/// reference to one the configuration lacks) keep the reason, and every connection attempt fails with it (502).
#[derive(Debug)]
pub struct UpstreamTls {
    config: Result<Arc<rustls::ClientConfig>, String>,
    digest: [u8; 32],
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other) || self.digest == other.digest
    }
}

impl Eq for UpstreamTls {}

impl std::hash::Hash for UpstreamTls {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

static VERIFYING: LazyLock<UpstreamTls> =
    LazyLock::new(|| UpstreamTls::new(&TlsSettings { verify: true, depth: None, roots: &[], client: None }));
static NOT_VERIFYING: LazyLock<UpstreamTls> =
    LazyLock::new(|| UpstreamTls::new(&TlsSettings { verify: false, depth: None, roots: &[], client: None }));

impl UpstreamTls {
    /// The web PKI roots (or no verification) and no client certificate: the rustls settings are built once and
    /// shared, each caller gets its own handle, so the pool keys of two workers never share a reference count.
    pub fn default_for(verify: bool) -> Arc<Self> {
        let shared: &Self = if verify { &VERIFYING } else { &NOT_VERIFYING };
        Arc::new(Self { config: shared.config.clone(), digest: shared.digest })
    }

    pub fn new(settings: &TlsSettings<'_>) -> Self {
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut add = |part: &[u8]| {
            digest.update(&(part.len() as u64).to_be_bytes());
            digest.update(part);
        };
        add(&[u8::from(settings.verify), settings.depth.map_or(0xff, |d| d)]);
        for root in settings.roots {
            add(root.as_bytes());
        }
        if let Some((cert, key)) = settings.client {
            add(cert.as_bytes());
            add(key.as_bytes());
        }
        let digest = digest.finish().as_ref().try_into().unwrap_or([0; 32]);
        Self { config: client_config(settings).map(Arc::new), digest }
    }

    /// Why these settings cannot be used, if they cannot.
    pub fn usable(&self) -> Result<(), &str> {
        self.config.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// Settings that refuse every connection, for the reason given (logged with each failure).
    pub fn unusable(reason: String) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, reason.as_bytes());
        Self { config: Err(reason), digest: digest.as_ref().try_into().unwrap_or([0; 32]) }
    }
}

fn client_config(settings: &TlsSettings<'_>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls rejected its own default protocol versions: {e}"))?;
    let builder = if !settings.verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if settings.roots.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for pem in settings.roots {
            for cert in gatehouse_net::tls::parse_certificates(pem.as_bytes()).map_err(|e| e.to_string())? {
                roots.add(cert).map_err(|e| format!("unusable CA certificate: {e}"))?;
            }
        }
        let roots = Arc::new(roots);
        match settings.depth {
            None => builder.with_root_certificates(roots),
            Some(depth) => {
                let verifier = DepthLimited::new(roots, depth, provider)?;
                builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
            }
        }
    };
    match settings.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            use rustls::pki_types::PrivateKeyDer;
            use rustls::pki_types::pem::PemObject;
            let chain = gatehouse_net::tls::parse_certificates(cert.as_bytes()).map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|_| "the client certificate's key is not a PEM private key".to_owned())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("unusable client certificate: {e}"))
        }
    }
}

/// The web PKI verifier, plus nginx's `proxy_ssl_verify_depth` (Kong's `tls_verify_depth`): at most `depth`
/// intermediate certificates between the upstream's certificate and a trusted one. The chain is built by
/// rustls-webpki, which tries another path when one is too long.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    roots: Arc<rustls::RootCertStore>,
    depth: usize,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl DepthLimited {
    fn new(
        roots: Arc<rustls::RootCertStore>,
        depth: u8,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, String> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| format!("cannot verify upstream certificates: {e}"))?;
        Ok(Self { inner, roots, depth: usize::from(depth), provider })
    }
}

impl rustls::client::danger::ServerCertVerifier for DepthLimited {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(e))))
        })?;
        let depth = self.depth;
        let within = |path: &webpki::VerifiedPath<'_>| {
            if path.intermediate_certificates().count() <= depth {
                Ok(())
            } else {
                Err(webpki::Error::MaximumPathDepthExceeded)
            }
        };
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&within),
        )
        .map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(e))))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections of one worker, by target.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    /// TCP connectors by connect timeout.
    connectors: Mutex<HashMap<u64, HttpConnector>>,
}

impl Pool {
    /// The newest idle connection to `key` that can take a request now; closed or expired ones are dropped.
    pub fn take(&self, key: &PoolKey) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let entry = &list[i];
            if entry.sender.is_closed() || now.duration_since(entry.since) > IDLE_TIMEOUT {
                list.remove(i);
            } else if entry.sender.is_ready() {
                return Some(list.remove(i).sender);
            }
        }
        // Keys come and go with the server names clients send (`preserve_host` to an HTTPS service): one with
        // nothing parked is dropped rather than kept empty.
        if list.is_empty() {
            idle.remove(key);
        }
        None
    }

    /// Parks a connection (one still finishing a response becomes usable when it is done).
    pub fn put(&self, key: PoolKey, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_TARGET {
            // The oldest goes; dropping its sender closes the connection.
            list.remove(0);
        }
        list.push(Idle { sender, since: Instant::now() });
    }

    /// Opens a new connection to the service (TCP, then TLS for `https`, each within its connect timeout) and
    /// starts driving it. Every failure here is retry-safe: nothing of the request has been sent.
    pub async fn connect(&self, key: &PoolKey) -> Result<Sender, GatewayError> {
        let failed = |kind: ProxyError| GatewayError::new(kind, Side::Upstream).retry_safe();
        let mut connector = {
            let mut connectors = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
            connectors.entry(key.connect_timeout_ms).or_insert_with(|| tcp_connector(key.connect_timeout_ms)).clone()
        };
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(key.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| failed(ProxyError::BadGateway).caused_by(e))?;
        let timed_out = |e: &(dyn std::error::Error + 'static)| {
            // The connector's own timer (its connect timeout) ends the attempt with an I/O `TimedOut`.
            if crate::error::is_timeout(e) { ProxyError::GatewayTimeout } else { ProxyError::BadGateway }
        };
        let tcp = connector.call(uri).await.map_err(|e| failed(timed_out(&e)).caused_by(e))?.into_inner();
        let stream = if key.https {
            let config = key.tls.config.clone().map_err(|reason| failed(ProxyError::BadGateway).caused_by(reason))?;
            let name = key.tls_name().map_err(|e| failed(ProxyError::BadGateway).caused_by(e))?;
            let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
            let limit = Duration::from_millis(key.connect_timeout_ms);
            match tokio::time::timeout(limit, handshake).await {
                Ok(Ok(stream)) => Either::Right(stream),
                Ok(Err(e)) => return Err(failed(ProxyError::BadGateway).caused_by(e)),
                Err(elapsed) => return Err(failed(ProxyError::GatewayTimeout).caused_by(elapsed)),
            }
        } else {
            Either::Left(tcp)
        };
        // Flat writes, as the proxy's server side does (see `proxy::serve_worker`).
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(ProxyError::BadGateway).caused_by(e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

fn tcp_connector(connect_timeout_ms: u64) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_millis(connect_timeout_ms)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

/// An HTTP(S) connector for the plugins' own calls (token endpoints, introspection, discovery): the web PKI roots,
/// or no verification.
pub(crate) fn connector(connect_timeout_ms: u64, verify: bool) -> HttpsConnector<HttpConnector> {
    let tls = match &UpstreamTls::default_for(verify).config {
        Ok(config) => config.as_ref().clone(),
        Err(reason) => panic!("the default upstream TLS settings do not build: {reason}"),
    };
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp_connector(connect_timeout_ms))
}

/// The TLS settings of active HTTPS health probes: the web PKI roots (`https_verify_certificate`), or no
/// verification.
pub(crate) fn probe_tls(verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    UpstreamTls::default_for(verify).config.clone()
}

/// For services that set `tls_verify: false`: signatures are still checked, certificates are not.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
