//! TLS on a listener: rustls (aws-lc-rs) with TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, and a certificate
//! picked per handshake by the client's SNI from a table that can be swapped while connections stay open.
//!
//! The handshake runs in the connection's own task after [`crate::Gate::admit`], so the gate's limits and its
//! `client_header_timeout` sweep cover it: a client that opens a connection and never finishes the handshake has
//! sent no request, and is closed as silent ([`handshake`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::gate::Activity;

pub use rustls::ServerConfig;
pub use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::server::TlsStream;

/// Why a certificate or key was refused. The messages name what is wrong, never the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("invalid key: {0}")]
    Key(String),
    #[error("certificate does not match key")]
    Mismatch,
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot set up TLS: {0}")]
    Config(rustls::Error),
}

/// The crypto provider every listener and certificate uses: aws-lc-rs, as the rest of Gatehouse.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses a PEM chain (end-entity certificate first) and its PEM private key (PKCS#8, PKCS#1 or SEC1), and checks
/// that the key belongs to the certificate.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = parse_certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(pem_problem(&e)))?;
    let signing =
        provider().key_provider.load_private_key(key).map_err(|e| TlsError::Key(format!("unusable key ({e})")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(TlsError::Mismatch),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(TlsError::Certificate(e.to_string())),
    }
}

/// Every certificate in a PEM text, in order; at least one.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(pem_problem(&e)))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no PEM certificate found".to_owned()));
    }
    Ok(chain)
}

fn pem_problem(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::NoItemsFound => "no PEM block found".to_owned(),
        E::MissingSectionEnd { .. } | E::IllegalSectionStart { .. } => "malformed PEM".to_owned(),
        E::Base64Decode(_) => "malformed PEM (bad base64)".to_owned(),
        _ => "unreadable PEM".to_owned(),
    }
}

/// PEM text of one DER item (`CERTIFICATE`, `PRIVATE KEY`), 64 characters a line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A certificate to serve, with an optional second one of another key type (Kong's `cert_alt`/`key_alt`, say
/// ECDSA beside RSA): the first whose key can sign with a scheme the client offers is chosen.
#[derive(Debug, Clone)]
pub struct ServedCertificate {
    pub main: Arc<CertifiedKey>,
    pub alt: Option<Arc<CertifiedKey>>,
}

impl ServedCertificate {
    pub fn new(main: CertifiedKey) -> Self {
        Self { main: Arc::new(main), alt: None }
    }

    fn choose(&self, hello: &ClientHello<'_>) -> Arc<CertifiedKey> {
        let schemes = hello.signature_schemes();
        match &self.alt {
            Some(alt) if self.main.key.choose_scheme(schemes).is_none() && alt.key.choose_scheme(schemes).is_some() => {
                alt.clone()
            }
            _ => self.main.clone(),
        }
    }
}

/// Certificates by server name, looked up as Kong does (`kong/runloop/certificate.lua`): the exact name, then a
/// wildcard standing for its first label (`*.example.com`), then one standing for its last (`www.example.*`), then
/// the name `*`. Names are kept in lower case; a lookup lower-cases the client's.
#[derive(Debug, Default, Clone)]
pub struct SniTable {
    names: HashMap<String, ServedCertificate>,
}

impl SniTable {
    /// Adds `name` (an exact name, `*.` + domain, domain + `.*`, or `*`); a later entry for a name replaces an
    /// earlier one.
    pub fn insert(&mut self, name: &str, certificate: ServedCertificate) {
        self.names.insert(name.to_ascii_lowercase(), certificate);
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The certificate for a client's SNI; `None` when neither the name, its wildcards nor `*` is present.
    pub fn find(&self, sni: &str) -> Option<&ServedCertificate> {
        if self.names.is_empty() {
            return None;
        }
        let sni = sni.to_ascii_lowercase();
        if let Some(found) = self.names.get(&sni) {
            return Some(found);
        }
        // `*.rest` when at least two labels remain after the first (Kong's `([^.]+)(\.[^.]+\.\S+)`).
        if let Some((_, rest)) = sni.split_once('.')
            && rest.contains('.')
            && let Some(found) = self.names.get(&format!("*.{rest}"))
        {
            return Some(found);
        }
        if let Some((head, _)) = sni.rsplit_once('.')
            && let Some(found) = self.names.get(&format!("{head}.*"))
        {
            return Some(found);
        }
        self.names.get("*")
    }
}

/// Picks the certificate of each handshake: from the SNI table, else the fallback (a listener's certificate file:
/// Kong's `ssl_cert`). Both can be replaced at any time; handshakes under way keep what they picked, and open
/// connections are not touched.
#[derive(Debug, Default)]
pub struct CertificateResolver {
    table: ArcSwap<SniTable>,
    fallback: ArcSwapOption<ServedCertificate>,
}

impl CertificateResolver {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_table(&self, table: SniTable) {
        self.table.store(Arc::new(table));
    }

    pub fn set_fallback(&self, certificate: Option<ServedCertificate>) {
        self.fallback.store(certificate.map(Arc::new));
    }

    pub fn has_fallback(&self) -> bool {
        self.fallback.load().is_some()
    }

    fn pick(&self, hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Kong serves its default certificate to a client that sends no SNI.
        if let Some(sni) = hello.server_name() {
            let table = self.table.load();
            if let Some(found) = table.find(sni) {
                return Some(found.choose(hello));
            }
        }
        self.fallback.load().as_ref().map(|served| served.choose(hello))
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let picked = self.pick(&hello);
        if picked.is_none() {
            tracing::debug!(sni = hello.server_name(), "no certificate for this TLS handshake");
        }
        picked
    }
}

/// A listener's TLS settings: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, certificates from `resolver`, and
/// session tickets so a returning client can skip the full handshake.
pub fn server_config(resolver: Arc<CertificateResolver>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}

/// Runs the TLS handshake of an admitted connection. `None` when it failed (logged at debug: a scanner's broken
/// handshake is not worth a warning) or when the gate closed the connection meanwhile, which the sweep does to one
/// that has not finished it within `client_header_timeout` of the accept.
pub async fn handshake<IO>(acceptor: &TlsAcceptor, stream: IO, activity: &Activity) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let told = std::future::poll_fn(|cx| activity.poll_closed(cx));
    tokio::select! {
        biased;
        result = acceptor.accept(stream) => match result {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!(address = %activity.address(), error = %e, "TLS handshake failed");
                None
            }
        },
        reason = told => {
            tracing::debug!(address = %activity.address(), ?reason, "closing a connection during its TLS handshake");
            None
        }
    }
}

/// A certificate and key pair of files (a listener's `tls_cert`/`tls_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertificateFiles {
    pub fn load(&self) -> Result<ServedCertificate, TlsError> {
        let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source });
        let cert = read(&self.cert)?;
        let key = zeroize::Zeroizing::new(read(&self.key)?);
        Ok(ServedCertificate::new(certified_key(&cert, &key)?))
    }

    /// What tells a changed file from an unchanged one without reading it.
    fn stamp(&self) -> Option<[(SystemTime, u64); 2]> {
        let one = |path: &Path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        Some([one(&self.cert)?, one(&self.key)?])
    }
}

/// How often the files are checked for changes.
const FILE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Keeps `resolver`'s fallback certificate in step with `files`: reloaded when either file changes (checked every
/// second) and on `SIGHUP`, until `stop` resolves. A file that cannot be read or parsed is logged and the
/// certificate in use kept, so a half-written renewal never takes the listener down. Open connections keep the
/// certificate they were set up with.
pub async fn follow_files(
    listener: &'static str,
    files: CertificateFiles,
    resolver: Arc<CertificateResolver>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stamp = files.stamp();
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(listener, error = %e, "cannot listen for SIGHUP; certificate files are still checked");
            None
        }
    };
    let mut every = tokio::time::interval(FILE_CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        let forced = tokio::select! {
            () = &mut stop => return,
            _ = every.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = files.stamp();
        if !forced && now == stamp {
            continue;
        }
        stamp = now;
        match files.load() {
            Ok(served) => {
                resolver.set_fallback(Some(served));
                tracing::info!(listener, cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(listener, error = %e, "TLS certificate not reloaded; keeping the one in use"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pems(key: &rcgen::KeyPair) -> (String, String) {
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap().self_signed(key).unwrap();
        (pem_encode("CERTIFICATE", cert.der()), pem_encode("PRIVATE KEY", &key.serialize_der()))
    }

    fn served() -> ServedCertificate {
        let (cert, key) = pems(&rcgen::KeyPair::generate().unwrap());
        ServedCertificate::new(certified_key(cert.as_bytes(), key.as_bytes()).unwrap())
    }

    #[test]
    fn lookup_order_is_exact_then_prefix_then_suffix_then_star() {
        let (exact, prefix, suffix, star) = (served(), served(), served(), served());
        let mut table = SniTable::default();
        table.insert("api.example.com", exact.clone());
        table.insert("*.example.com", prefix.clone());
        table.insert("www.example.*", suffix.clone());
        let same = |a: Option<&ServedCertificate>, b: &ServedCertificate| Arc::ptr_eq(&a.unwrap().main, &b.main);
        assert!(same(table.find("API.example.com"), &exact));
        assert!(same(table.find("other.example.com"), &prefix));
        assert!(same(table.find("www.example.com"), &prefix), "the prefix wildcard comes before the suffix one");
        assert!(same(table.find("www.example.org"), &suffix));
        assert!(table.find("a.b.example.com").is_none(), "a wildcard stands for one label");
        assert!(table.find("example.com").is_none());
        table.insert("*", star.clone());
        assert!(same(table.find("example.com"), &star));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (pem, key) = pems(&rcgen::KeyPair::generate().unwrap());
        let (_, other) = pems(&rcgen::KeyPair::generate().unwrap());
        assert!(certified_key(pem.as_bytes(), key.as_bytes()).is_ok());
        assert!(matches!(certified_key(pem.as_bytes(), other.as_bytes()), Err(TlsError::Mismatch)));
        assert!(matches!(certified_key(b"nope", key.as_bytes()), Err(TlsError::Certificate(_))));
        assert!(matches!(certified_key(pem.as_bytes(), b"nope"), Err(TlsError::Key(_))));
    }
}
