//! Keep-alive connections to services, over HTTP or HTTPS, owned by one proxy worker.
//!
//! TLS is verified against the web PKI roots unless a service sets `tls_verify: false`. Connections are HTTP/1.1
//! (hyper's `client::conn`), each driven by its own task on the worker's runtime.
//!
//! Reuse happens at two levels. A client connection keeps the upstream connection its last request used (see
//! `ClientConnection` in `proxy.rs`): an HTTP/1 client sends its next request only after the previous response
//! ended, so that connection is free again and no pool is consulted. Connections are parked in the worker's
//! [`Pool`] when their client connection goes away (or, for HTTP/2 clients, after each response), newest first,
//! at most [`MAX_IDLE_PER_TARGET`] per target and for at most [`IDLE_TIMEOUT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::Service;

use crate::body::ProxyBody;
use crate::error::{GatewayError, ProxyError, Side};

pub type Sender = SendRequest<ProxyBody>;

pub const MAX_IDLE_PER_TARGET: usize = 256;
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What makes two upstream connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub https: bool,
    pub authority: http::uri::Authority,
    pub verify: bool,
    pub connect_timeout_ms: u64,
}

impl Default for PoolKey {
    fn default() -> Self {
        Self {
            https: false,
            authority: http::uri::Authority::from_static("localhost"),
            verify: true,
            connect_timeout_ms: 60_000,
        }
    }
}

impl PoolKey {
    /// `tls_verify`: the service's setting (`None` verifies).
    pub fn new(
        scheme: &http::uri::Scheme,
        authority: &http::uri::Authority,
        tls_verify: Option<bool>,
        connect_timeout_ms: u64,
    ) -> Self {
        Self {
            https: *scheme == http::uri::Scheme::HTTPS,
            authority: authority.clone(),
            verify: tls_verify.unwrap_or(true),
            connect_timeout_ms,
        }
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
    connectors: Mutex<HashMap<(u64, bool), HttpsConnector<HttpConnector>>>,
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

    /// Opens a new connection to the service (within its connect timeout) and starts driving it.
    /// Every failure here is retry-safe: nothing of the request has been sent.
    pub async fn connect(&self, key: &PoolKey) -> Result<Sender, GatewayError> {
        let failed = |kind: ProxyError| GatewayError::new(kind, Side::Upstream).retry_safe();
        let mut connector = {
            let mut connectors = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
            connectors
                .entry((key.connect_timeout_ms, key.verify))
                .or_insert_with(|| connector(key.connect_timeout_ms, key.verify))
                .clone()
        };
        let scheme = if key.https { "https" } else { "http" };
        let uri = http::Uri::builder()
            .scheme(scheme)
            .authority(key.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| failed(ProxyError::BadGateway).caused_by(e))?;
        let stream = connector.call(uri).await.map_err(|e| {
            // The connector's own timer (its connect timeout) ends the attempt with an I/O `TimedOut`.
            let kind =
                if crate::error::is_timeout(e.as_ref()) { ProxyError::GatewayTimeout } else { ProxyError::BadGateway };
            failed(kind).caused_by(e)
        })?;
        // Flat writes, as the proxy's server side does (see `proxy::serve_worker`).
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(stream)
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

pub(crate) fn connector(connect_timeout_ms: u64, verify: bool) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_millis(connect_timeout_ms)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = if verify {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
    } else {
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map(|b| {
            b.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider))).with_no_client_auth()
        })
    }
    .unwrap_or_else(|e| panic!("rustls rejected its own default protocol versions: {e}"));
    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http)
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
