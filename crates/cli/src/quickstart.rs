//! `gatehouse quickstart`: everything on one machine with embedded storage, and the `export` lines that point the
//! tutorial's commands at it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatehouse_runtime::auth::{PatError, issue_pat};

use crate::node::RunningNode;

pub const QUICKSTART_TOKEN_NAME: &str = "quickstart";
/// The control plane the quickstart serves, as Konnect's quickstart names it.
pub const QUICKSTART_CONTROL_PLANE: &str = "quickstart";
pub const READY_LINE: &str = "Gatehouse Ready";
/// Kong's `proxy_listen … ssl` port, where the quickstart serves TLS unless told otherwise.
pub const QUICKSTART_PROXY_TLS: &str = "127.0.0.1:8443";

/// Turns on the proxy's TLS listener for the quickstart: `proxy.listen_tls` (default 127.0.0.1:8443) and, unless
/// the configuration names certificate files, a test CA and a certificate it signs for `localhost`, 127.0.0.1 and
/// ::1, made once in `<data_dir>/tls/` and reused on later starts (so a client that trusts the CA keeps trusting
/// it). Returns the CA file a client should trust, when the quickstart made it.
pub fn ensure_tls(config: &mut gatehouse_runtime::config::Config) -> std::io::Result<Option<PathBuf>> {
    if config.proxy.listen_tls.is_none() {
        config.proxy.listen_tls = QUICKSTART_PROXY_TLS.parse::<SocketAddr>().ok();
    }
    if config.proxy.tls_cert.is_some() || config.proxy.tls_key.is_some() {
        return Ok(None);
    }
    let dir = config.data_dir.join("tls");
    let (ca, cert, key) = (dir.join("quickstart-ca.pem"), dir.join("proxy.crt"), dir.join("proxy.key"));
    if !(ca.exists() && cert.exists() && key.exists()) {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(&dir)?;
        let made = self_signed().map_err(std::io::Error::other)?;
        write_private(&key, &made.key)?;
        std::fs::write(&cert, &made.cert)?;
        std::fs::write(&ca, &made.ca)?;
    }
    config.proxy.tls_cert = Some(cert);
    config.proxy.tls_key = Some(key);
    // Printed for clients that run elsewhere than the data directory's parent.
    Ok(Some(std::fs::canonicalize(&ca).unwrap_or(ca)))
}

/// PEM texts of a new CA, and of a certificate for the local names it signs, with that certificate's key.
struct SelfSigned {
    ca: String,
    cert: String,
    key: String,
}

fn self_signed() -> Result<SelfSigned, rcgen::Error> {
    use gatehouse_net::tls::pem_encode;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Gatehouse quickstart CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let names = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).to_vec();
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer)?;
    Ok(SelfSigned {
        ca: pem_encode("CERTIFICATE", ca.der()),
        cert: pem_encode("CERTIFICATE", cert.der()),
        key: pem_encode("PRIVATE KEY", &key.serialize_der()),
    })
}

/// A private key file readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

/// Replaces the previous quickstart token (so the printed exports always work) and prints the exports.
pub async fn announce(node: &RunningNode, tls_ca: Option<&Path>, out: &mut impl Write) -> Result<(), PatError> {
    let issued = issue_pat(&node.services, QUICKSTART_TOKEN_NAME, None, true).await?;
    let platform = node.platform_url();
    let _ = writeln!(out, "export KONNECT_TOKEN='{}'", issued.token.expose());
    let _ = writeln!(out, "export DECK_KONNECT_TOKEN=$KONNECT_TOKEN");
    let _ = writeln!(out, "export DECK_KONNECT_CONTROL_PLANE_NAME={}", node.control_plane.name);
    let _ = writeln!(out, "export DECK_KONNECT_ADDR={platform}");
    let _ = writeln!(out, "export KONNECT_CONTROL_PLANE_URL={platform}");
    let _ = writeln!(out, "export KONNECT_PROXY_URL='{}'", node.proxy_url());
    if let Some(tls) = node.proxy_tls_url() {
        let _ = writeln!(out, "export KONNECT_PROXY_URL_TLS='{tls}'");
    }
    if let Some(ca) = tls_ca {
        // What `curl --cacert` (or Python's `requests`, `verify=`) needs to trust the proxy's certificate.
        let _ = writeln!(out, "export KONNECT_PROXY_CA_CERT='{}'", ca.display());
    }
    let _ = writeln!(out, "export STATUS_URL={}", node.status_url());
    if let Some(echo) = node.echo_url() {
        let _ = writeln!(out, "export ECHO_URL={echo}");
    }
    // The tutorial runs decK as `deck`: the binary behaves as decK under that name.
    let exe = std::env::current_exe().map_or_else(|_| "gatehouse".to_owned(), |p| p.display().to_string());
    let _ = writeln!(out, "# The tutorial's `deck` commands: put decK on the PATH with");
    let _ = writeln!(out, "#   mkdir -p ~/.local/bin && ln -sf '{exe}' ~/.local/bin/deck");
    let _ = writeln!(out, "{READY_LINE}");
    let _ = out.flush();
    Ok(())
}
