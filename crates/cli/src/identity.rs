//! `gatehouse identity dump|diff|apply|validate`: Kong Identity's auth servers, scopes, claims and clients as a
//! file, with decK's flags, output and exit codes. The work is done by `gatehouse_deck::identity`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use gatehouse_deck::identity::{self, SyncOptions, file::parse_selector};
use gatehouse_deck::{Connection, Konnect};
use gatehouse_model::SecretString;

use crate::deck::{DEFAULT_KONNECT_ADDR, deck_env, sources};

#[derive(Debug, Args)]
pub struct IdentityArgs {
    #[command(flatten)]
    flags: IdentityFlags,
    #[command(subcommand)]
    command: IdentityCommand,
}

/// How to reach the `/v1` API: Konnect mode always (the identity API takes a personal access token).
#[derive(Debug, Args)]
struct IdentityFlags {
    /// The platform API [env: DECK_KONNECT_ADDR, else KONNECT_CONTROL_PLANE_URL; default http://127.0.0.1:8002].
    #[arg(long, global = true)]
    konnect_addr: Option<String>,
    /// A personal access token [env: DECK_KONNECT_TOKEN, else KONNECT_TOKEN].
    #[arg(long, global = true)]
    konnect_token: Option<String>,
    /// A file holding the personal access token.
    #[arg(long, env = "DECK_KONNECT_TOKEN_FILE", global = true)]
    konnect_token_file: Option<PathBuf>,
    /// Extra header on every request, `name:value` (repeatable).
    #[arg(long = "headers", env = "DECK_HEADERS", value_delimiter = ',', global = true)]
    headers: Vec<String>,
    /// Do not verify the API's TLS certificate.
    #[arg(long, env = "DECK_TLS_SKIP_VERIFY", global = true)]
    tls_skip_verify: bool,
    /// A file holding a PEM CA certificate to trust for the API.
    #[arg(long, env = "DECK_CA_CERT_FILE", global = true)]
    ca_cert_file: Option<PathBuf>,
    /// Plain output even on a terminal.
    #[arg(long, env = "DECK_NO_COLOR", global = true)]
    no_color: bool,
    /// Request timeout in seconds.
    #[arg(long, env = "DECK_TIMEOUT", default_value_t = 10, global = true)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Make the identity API equal to the files: create, update and (unless --no-delete) delete.
    Apply(SyncArgs),
    /// Show what apply would change, without changing anything.
    Diff(DiffArgs),
    /// Write the auth servers, scopes, claims and clients as a file (never a secret).
    Dump(DumpArgs),
    /// Check files offline: format, every field as the server checks it, scope names.
    Validate {
        /// Identity files (YAML or JSON), directories of them, or `-` for stdin (the default).
        files: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// Identity files (YAML or JSON), directories of them, or `-` for stdin (the default).
    files: Vec<String>,
    /// Only auth servers and clients carrying this label are managed, `LABEL=VALUE` (repeatable; as the file's
    /// `_info.select_labels`).
    #[arg(long = "select-tag", visible_alias = "select-label")]
    select_tag: Vec<String>,
    /// Create and update only; delete nothing.
    #[arg(long)]
    no_delete: bool,
}

#[derive(Debug, Args)]
struct DiffArgs {
    #[command(flatten)]
    sync: SyncArgs,
    /// Exit with 2 when there are changes.
    #[arg(long)]
    non_zero_exit_code: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// Where to write (`-` for stdout); `.yaml` or `.json` is added when the name has no extension.
    #[arg(short = 'o', long = "output-file", default_value = "identity")]
    output_file: String,
    #[arg(long, value_enum, default_value = "yaml")]
    format: Format,
    /// Only auth servers and clients carrying this label, `LABEL=VALUE` (repeatable).
    #[arg(long = "select-tag", visible_alias = "select-label")]
    select_tag: Vec<String>,
}

fn env_fallback(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

impl IdentityFlags {
    fn connection(&self) -> anyhow::Result<Connection> {
        let mut headers = Vec::new();
        for h in &self.headers {
            let (k, v) = h.split_once(':').with_context(|| format!("--headers '{h}': expected name:value"))?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let ca_cert_pem = match &self.ca_cert_file {
            Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?),
            None => None,
        };
        let token = match (&self.konnect_token, &self.konnect_token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_owned(),
            ),
            (None, None) => env_fallback(&["DECK_KONNECT_TOKEN", "KONNECT_TOKEN"]),
        };
        let addr = self
            .konnect_addr
            .clone()
            .or_else(|| env_fallback(&["DECK_KONNECT_ADDR", "KONNECT_CONTROL_PLANE_URL"]))
            .unwrap_or_else(|| DEFAULT_KONNECT_ADDR.to_owned());
        let konnect = token.filter(|t| !t.is_empty()).map(|t| Konnect {
            addr,
            token: SecretString::new(t),
            control_plane_name: String::new(),
        });
        Ok(Connection {
            konnect,
            headers,
            tls_skip_verify: self.tls_skip_verify,
            ca_cert_pem,
            timeout: Duration::from_secs(self.timeout.max(1)),
            ..Connection::default()
        })
    }

    fn color(&self) -> bool {
        !self.no_color && anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
    }
}

fn options(args: &SyncArgs, flags: &IdentityFlags, diff: bool) -> anyhow::Result<SyncOptions> {
    Ok(SyncOptions {
        diff,
        select: parse_selector(&args.select_tag).map_err(anyhow::Error::msg)?,
        no_delete: args.no_delete,
        color: flags.color(),
    })
}

/// Runs an identity command; returns the exit code (`diff --non-zero-exit-code` gives 2 on changes).
pub async fn run(args: IdentityArgs) -> anyhow::Result<u8> {
    let IdentityArgs { flags, command } = args;
    let mut out = std::io::stdout();
    match command {
        IdentityCommand::Validate { files } => identity::validate(&sources(&files)?, &deck_env())?,
        IdentityCommand::Apply(args) => {
            let opts = options(&args, &flags, false)?;
            identity::sync(&sources(&args.files)?, &deck_env(), &flags.connection()?, &opts, &mut out).await?;
        }
        IdentityCommand::Diff(args) => {
            let opts = options(&args.sync, &flags, true)?;
            let summary =
                identity::sync(&sources(&args.sync.files)?, &deck_env(), &flags.connection()?, &opts, &mut out).await?;
            if args.non_zero_exit_code && summary.total() > 0 {
                return Ok(2);
            }
        }
        IdentityCommand::Dump(args) => {
            let json = matches!(args.format, Format::Json);
            let select = parse_selector(&args.select_tag).map_err(anyhow::Error::msg)?;
            let text = identity::dump_text(&flags.connection()?, &select, json).await?;
            if args.output_file == "-" {
                out.write_all(text.as_bytes())?;
            } else {
                let mut path = PathBuf::from(&args.output_file);
                if path.extension().is_none() {
                    path.set_extension(if json { "json" } else { "yaml" });
                }
                std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(0)
}
