//! `gatehouse quickstart`: everything on one machine with embedded storage, and the `export` lines that point the
//! tutorial's commands at it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatehouse_model::SecretString;
use gatehouse_runtime::auth::{PatError, issue_pat};
use gatehouse_store::StoreError;

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

/// The quickstart's exports, kept in the data dir (mode 0600: it holds the token) for `gatehouse quickstart env`.
pub const ENV_FILE: &str = "quickstart.env";
/// A kept token with less than this left is replaced at start, so the printed exports last at least this long.
const TOKEN_MIN_LIFE_SECS: i64 = 86_400;

/// Why the quickstart could not print its exports.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error(transparent)]
    Token(#[from] PatError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The token the last quickstart in `data_dir` printed, when it still works for at least a day: pasted into other
/// terminals, it must survive a restart. Anything else (no file, a token revoked or expiring) gets a new token.
async fn kept_token(node: &RunningNode, data_dir: &Path) -> Result<Option<SecretString>, StoreError> {
    let Ok(text) = std::fs::read_to_string(data_dir.join(ENV_FILE)) else { return Ok(None) };
    let Some(token) = text.lines().find_map(|l| l.strip_prefix("export KONNECT_TOKEN=")).map(|v| v.trim_matches('\''))
    else {
        return Ok(None);
    };
    let services = &node.services;
    let Some(pat) = services.store.find_pat(&services.keys.hash_pat(token)).await? else { return Ok(None) };
    let lasts = pat.expires_at > services.clock.now().plus_secs(TOKEN_MIN_LIFE_SECS);
    Ok((pat.name == QUICKSTART_TOKEN_NAME && lasts).then(|| SecretString::new(token.to_owned())))
}

/// The `export` lines that point the tutorial's commands at `node`.
fn export_lines(node: &RunningNode, token: &SecretString, tls_ca: Option<&Path>) -> Vec<String> {
    let platform = node.platform_url();
    let mut lines = vec![
        format!("export KONNECT_TOKEN='{}'", token.expose()),
        "export DECK_KONNECT_TOKEN=$KONNECT_TOKEN".to_owned(),
        format!("export DECK_KONNECT_CONTROL_PLANE_NAME={}", node.control_plane.name),
        format!("export DECK_KONNECT_ADDR={platform}"),
        // decK without a token (`DECK_KONNECT_TOKEN` unset) talks to the Admin API here.
        format!("export DECK_KONG_ADDR={}", node.admin_url()),
        format!("export KONNECT_CONTROL_PLANE_URL={platform}"),
        format!("export KONNECT_PROXY_URL='{}'", node.proxy_url()),
    ];
    if let Some(tls) = node.proxy_tls_url() {
        lines.push(format!("export KONNECT_PROXY_URL_TLS='{tls}'"));
    }
    if let Some(ca) = tls_ca {
        // What `curl --cacert` (or Python's `requests`, `verify=`) needs to trust the proxy's certificate.
        lines.push(format!("export KONNECT_PROXY_CA_CERT='{}'", ca.display()));
    }
    lines.push(format!("export STATUS_URL={}", node.status_url()));
    if let Some(echo) = node.echo_url() {
        lines.push(format!("export ECHO_URL={echo}"));
    }
    lines
}

/// Every listener, by what it serves.
fn listener_lines(node: &RunningNode) -> Vec<String> {
    let mut rows = vec![
        ("platform API (Konnect: /v1, /v2)", node.platform_url()),
        ("web console (token: KONNECT_TOKEN)", format!("{}/console", node.platform_url())),
        ("issuer (OAuth endpoints)", node.issuer_listener_url()),
        ("Admin API (Kong)", node.admin_url()),
        ("proxy", node.proxy_url()),
    ];
    rows.extend(node.proxy_tls_url().map(|u| ("proxy (TLS)", u)));
    rows.push(("status and metrics", node.status_url()));
    rows.extend(node.echo_url().map(|u| ("echo upstream", u)));
    rows.into_iter().map(|(what, url)| format!("#   {what:<34} {url}")).collect()
}

/// Where `deck` can come from: this binary runs as decK under that name. Suggests a link in a directory that is on
/// `PATH`, and never one that would replace a `deck` already there.
fn deck_advice(exe: &Path, path_var: Option<&std::ffi::OsStr>, home: Option<&Path>) -> Vec<String> {
    let dirs: Vec<PathBuf> = path_var.map(|p| std::env::split_paths(p).collect()).unwrap_or_default();
    let same = |a: &Path| std::fs::canonicalize(a).ok() == std::fs::canonicalize(exe).ok();
    if let Some(found) = dirs.iter().map(|d| d.join("deck")).find(|d| d.exists()) {
        return if same(&found) {
            vec![format!("# decK: `deck` on your PATH ({}) is this Gatehouse", found.display())]
        } else {
            vec![
                format!("# decK: another `deck` is first on your PATH ({}); it is left alone.", found.display()),
                format!("#   Run the tutorial's `deck …` commands as `{} deck …` instead.", exe.display()),
            ]
        };
    }
    let writable = |d: &Path| std::fs::metadata(d).is_ok_and(|m| m.is_dir()) && tempfile_probe(d);
    let under_home = |d: &&PathBuf| home.is_some_and(|h| d.starts_with(h));
    let link = match dirs.iter().filter(under_home).find(|d| writable(d)) {
        Some(dir) => format!("ln -s '{}' '{}'", exe.display(), dir.join("deck").display()),
        None => format!(
            "mkdir -p ~/.local/bin && ln -s '{}' ~/.local/bin/deck && export PATH=\"$HOME/.local/bin:$PATH\"",
            exe.display()
        ),
    };
    vec![
        "# decK: the tutorial runs `deck`; this binary is decK under that name. Link it with".to_owned(),
        format!("#   {link}"),
    ]
}

/// Whether this process may create files in `dir` (permission bits alone miss read-only mounts).
fn tempfile_probe(dir: &Path) -> bool {
    let probe = dir.join(format!(".gatehouse-probe-{}", std::process::id()));
    let made = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).is_ok();
    if made {
        let _ = std::fs::remove_file(&probe);
    }
    made
}

/// The exports the quickstart last wrote in `data_dir` (`gatehouse quickstart env`).
pub fn saved_env(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(ENV_FILE);
    std::fs::read_to_string(&path).map_err(|e| {
        let shown = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        anyhow::anyhow!(
            "no quickstart exports in the data dir {} ({}: {e}); start `gatehouse quickstart` with this data dir \
             first, or give the one it uses with --data-dir",
            shown.display(),
            path.display()
        )
    })
}

/// Prints the listeners, the data dir, the exports (keeping the quickstart's token across restarts, writing them to
/// `<data_dir>/quickstart.env` too) and where `deck` comes from, then the ready line.
pub async fn announce(
    node: &RunningNode,
    data_dir: &Path,
    tls_ca: Option<&Path>,
    out: &mut impl Write,
) -> Result<(), AnnounceError> {
    let token = match kept_token(node, data_dir).await.map_err(PatError::from)? {
        Some(token) => token,
        None => issue_pat(&node.services, QUICKSTART_TOKEN_NAME, None, true).await?.token,
    };
    let exports = export_lines(node, &token, tls_ca);
    let env_file = data_dir.join(ENV_FILE);
    let mut text = String::from("# `gatehouse quickstart` exports; `gatehouse quickstart env` prints them again.\n");
    for line in &exports {
        text.push_str(line);
        text.push('\n');
    }
    write_private_atomically(&env_file, &text)
        .map_err(|source| AnnounceError::Write { path: env_file.clone(), source })?;
    let shown_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let _ = writeln!(out, "# Gatehouse quickstart, data dir {}", shown_dir.display());
    for line in listener_lines(node) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "# Paste these exports in other terminals; they stay valid across restarts (also in {}).",
        shown_dir.join(ENV_FILE).display()
    );
    for line in &exports {
        let _ = writeln!(out, "{line}");
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("gatehouse"));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    for line in deck_advice(&exe, std::env::var_os("PATH").as_deref(), home.as_deref()) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{READY_LINE}");
    let _ = out.flush();
    Ok(())
}

/// Replaces `path` with `text` in one step, readable by its owner only.
fn write_private_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = path.with_extension("env.tmp");
    let _ = std::fs::remove_file(&temp);
    write_private(&temp, text)?;
    std::fs::rename(&temp, path)
}
