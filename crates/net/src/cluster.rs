//! Hybrid mode's wire, shared by the control plane (`control::cluster`) and the data plane
//! (`gateway::cluster`): TLS 1.3 with mutual authentication under Kong's two trust modes, and the frames the two
//! exchange on their one HTTP/2 stream.
//!
//! A frame is `[length: u32 BE][kind: u8][payload]`, the length counting kind and payload. Control messages are
//! JSON (`model::gateway::cluster::Message`); a configuration is binary: its content hash (32 ASCII hex digits),
//! its version (u64 BE), then the snapshot's JSON gzipped.

use std::io::{Read, Write};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::tls::{TlsError, parse_certificates, provider};

/// The ALPN protocol of the cluster stream: HTTP/2, nothing else.
const ALPN: &[u8] = b"h2";
/// The path of the one stream a data plane opens.
pub const STREAM_PATH: &str = "/v1/gatehouse/cluster";
/// A compressed configuration larger than this is refused before it is read whole.
pub const MAX_FRAME: usize = 256 << 20;
/// A configuration that inflates past this is refused (a compression bomb would otherwise take the memory).
pub const MAX_INFLATED: u64 = 1 << 30;

/// Frame kinds.
pub const KIND_MESSAGE: u8 = 1;
pub const KIND_CONFIG: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("cannot inflate the configuration: {0}")]
    Inflate(std::io::Error),
}

/// A node's cluster certificate and key (`cluster.cert`, `cluster.cert_key`).
pub struct ClusterIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Zeroizing<Vec<u8>>,
    certified: Arc<rustls::sign::CertifiedKey>,
}

impl std::fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterIdentity").field("key", &"[redacted]").finish_non_exhaustive()
    }
}

impl ClusterIdentity {
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certified = crate::tls::certified_key(cert_pem, key_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::Key("unreadable PEM".to_owned()))?;
        let chain = parse_certificates(cert_pem)?;
        Ok(Self { chain, key: Zeroizing::new(key.secret_der().to_vec()), certified: Arc::new(certified) })
    }

    /// The end-entity certificate, DER.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The private key's DER bytes: the data plane derives its cache key from them.
    pub fn key_der(&self) -> &[u8] {
        &self.key
    }
}

/// How a control plane decides which data planes to accept.
#[derive(Debug, Clone)]
pub enum ClientTrust {
    /// `shared`: the data plane presents the control plane's own certificate.
    Shared,
    /// `pki`: a certificate that chains to one of `roots` (when given), or one of the pinned certificates (the
    /// control plane's `dp-client-certificates`, swapped whole when they change).
    Pki { roots: Option<Arc<RootCertStore>>, pinned: Arc<ArcSwap<Vec<CertificateDer<'static>>>> },
}

/// How a data plane decides whether it reached its control plane.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// `shared`: the control plane presents the data plane's own certificate.
    Shared,
    /// `pki`: a certificate for the server name that chains to one of `roots`.
    Pki { roots: Arc<RootCertStore> },
}

/// A PEM bundle of CA certificates as a root store.
pub fn root_store(pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certificates(pem)? {
        roots.add(cert).map_err(|e| TlsError::Certificate(format!("not a usable CA certificate ({e})")))?;
    }
    Ok(Arc::new(roots))
}

/// TLS 1.3 only: both ends are Gatehouse, so nothing older needs to be spoken.
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The control plane's cluster listener: TLS 1.3, HTTP/2, a client certificate required and checked by `trust`.
pub fn server_config(identity: &ClusterIdentity, trust: ClientTrust) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(ClientVerifier {
        own: identity.certificate().clone(),
        trust: match trust {
            ClientTrust::Shared => VerifierTrust::Shared,
            ClientTrust::Pki { roots, pinned } => {
                let webpki = match roots {
                    Some(roots) => Some(
                        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                            .build()
                            .map_err(|e| TlsError::Certificate(format!("cluster.ca_cert: {e}")))?,
                    ),
                    None => None,
                };
                VerifierTrust::Pki { webpki, pinned }
            }
        },
        provider: provider.clone(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(TLS13)
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(identity.certified.clone())));
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A data plane's connection to its control plane: TLS 1.3, HTTP/2, its certificate presented, the control
/// plane's checked by `trust`.
pub fn client_config(identity: &ClusterIdentity, trust: ServerTrust) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(ServerVerifier {
        own: identity.certificate().clone(),
        webpki: match trust {
            ServerTrust::Shared => None,
            ServerTrust::Pki { roots } => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| TlsError::Certificate(format!("cluster.ca_cert: {e}")))?,
            ),
        },
        provider: provider.clone(),
    });
    let key = PrivateKeyDer::try_from(identity.key.to_vec()).map_err(|e| TlsError::Key(e.to_owned()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(TLS13)
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain.clone(), key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Certificates compared in constant time (their lengths are not secret).
fn same_certificate(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[derive(Debug)]
enum VerifierTrust {
    Shared,
    Pki { webpki: Option<Arc<dyn ClientCertVerifier>>, pinned: Arc<ArcSwap<Vec<CertificateDer<'static>>>> },
}

#[derive(Debug)]
struct ClientVerifier {
    own: CertificateDer<'static>,
    trust: VerifierTrust,
    provider: Arc<CryptoProvider>,
}

fn refused(reason: &str) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
        std::io::Error::other(reason.to_owned()),
    ))))
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.trust {
            VerifierTrust::Shared if same_certificate(end_entity, &self.own) => Ok(ClientCertVerified::assertion()),
            VerifierTrust::Shared => Err(refused("not the cluster certificate (cluster.mtls = shared pins it)")),
            VerifierTrust::Pki { webpki, pinned } => {
                if pinned.load().iter().any(|p| same_certificate(end_entity, p)) {
                    return Ok(ClientCertVerified::assertion());
                }
                match webpki {
                    Some(webpki) => webpki.verify_client_cert(end_entity, intermediates, now),
                    None => Err(refused("not a pinned dp-client-certificate and no cluster.ca_cert is set")),
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Possession of the certificate's key: what makes pinning a certificate mean anything.
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct ServerVerifier {
    own: CertificateDer<'static>,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.webpki {
            None if same_certificate(end_entity, &self.own) => Ok(ServerCertVerified::assertion()),
            None => Err(refused("the control plane does not present the cluster certificate (cluster.mtls = shared)")),
            Some(webpki) => webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// One frame, ready to send.
pub fn frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u32(u32::try_from(payload.len() + 1).unwrap_or(u32::MAX));
    out.put_u8(kind);
    out.put_slice(payload);
    out.freeze()
}

/// A configuration frame: hash, version, the snapshot's JSON gzipped.
pub fn config_frame(hash: &str, version: u64, json: &[u8]) -> Bytes {
    let mut payload = Vec::with_capacity(40 + json.len() / 8);
    payload.extend_from_slice(hash.as_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    let mut encoder = flate2::write::GzEncoder::new(payload, flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(json);
    let payload = encoder.finish().unwrap_or_default();
    frame(KIND_CONFIG, &payload)
}

/// A received configuration, inflated (hash and version as the sender stated them; the receiver checks the hash).
#[derive(Debug)]
pub struct ConfigPayload {
    pub hash: String,
    pub version: u64,
    pub json: Vec<u8>,
}

pub fn read_config(payload: &[u8]) -> Result<ConfigPayload, WireError> {
    if payload.len() < 40 {
        return Err(WireError::Malformed("configuration frame too short"));
    }
    let hash = std::str::from_utf8(&payload[..32])
        .ok()
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(WireError::Malformed("configuration hash is not hex"))?
        .to_owned();
    let version = u64::from_be_bytes(payload[32..40].try_into().unwrap_or_default());
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&payload[40..])
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut json)
        .map_err(WireError::Inflate)?;
    if json.len() as u64 > MAX_INFLATED {
        return Err(WireError::TooLarge(json.len()));
    }
    Ok(ConfigPayload { hash, version, json })
}

/// Collects frames from the data of an HTTP/2 stream, whatever its DATA frames' boundaries.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: BytesMut,
}

impl FrameReader {
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next whole frame (kind, payload), if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Bytes)>, WireError> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([self.buffer[0], self.buffer[1], self.buffer[2], self.buffer[3]]) as usize;
        if length > MAX_FRAME {
            return Err(WireError::TooLarge(length));
        }
        if length == 0 {
            return Err(WireError::Malformed("empty frame"));
        }
        if self.buffer.len() < 4 + length {
            self.buffer.reserve(4 + length - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(4);
        let mut body = self.buffer.split_to(length).freeze();
        let kind = body.get_u8();
        Ok(Some((kind, body)))
    }
}

/// Reads the next frame from an HTTP/2 body; `Ok(None)` when the peer ended the stream.
pub async fn next_frame<B>(body: &mut B, reader: &mut FrameReader) -> Result<Option<(u8, Bytes)>, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    loop {
        if let Some(frame) = reader.next_frame()? {
            return Ok(Some(frame));
        }
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await;
        match next {
            None => return Ok(None),
            Some(Err(e)) => return Err(ReadError::Stream(e.to_string())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    reader.push(&data);
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("stream failed: {0}")]
    Stream(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let one = frame(KIND_MESSAGE, br#"{"type":"ping"}"#);
        let two = config_frame(&"ab".repeat(16), 7, br#"{"services":[]}"#);
        let all = [one.as_ref(), two.as_ref()].concat();
        for split in 0..all.len() {
            let mut reader = FrameReader::default();
            let mut got = Vec::new();
            for part in [&all[..split], &all[split..]] {
                reader.push(part);
                while let Some(f) = reader.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!((got[0].0, got[0].1.as_ref()), (KIND_MESSAGE, &br#"{"type":"ping"}"#[..]));
            let config = read_config(&got[1].1).unwrap();
            assert_eq!((config.hash.as_str(), config.version), ("ab".repeat(16).as_str(), 7));
            assert_eq!(config.json, br#"{"services":[]}"#);
        }
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let mut reader = FrameReader::default();
        reader.push(&u32::MAX.to_be_bytes());
        assert!(matches!(reader.next_frame(), Err(WireError::TooLarge(_))));
        assert!(read_config(b"short").is_err());
        let mut bad = frame(KIND_CONFIG, &[b'z'; 40]).to_vec();
        bad.drain(..5);
        assert!(matches!(read_config(&bad), Err(WireError::Malformed(_))));
        let mut not_gzip = "ab".repeat(16).into_bytes();
        not_gzip.extend_from_slice(&1u64.to_be_bytes());
        not_gzip.extend_from_slice(b"plain text");
        assert!(matches!(read_config(&not_gzip), Err(WireError::Inflate(_))));
    }
}
