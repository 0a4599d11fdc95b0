//! decK's command line: `gatehouse gateway …`, `gatehouse file validate`, the same under `gatehouse deck …`, and
//! as `deck …` when the binary is invoked under that name. Flags and `DECK_*` variables as decK reads them; the
//! work is done by the `gatehouse-deck` crate.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};

use gatehouse_deck::dump::DumpOptions;
use gatehouse_deck::run::{self, SyncKind, SyncOptions};
use gatehouse_deck::{Connection, Env, Konnect, Source};
use gatehouse_model::SecretString;

/// Where the platform API of a local Gatehouse listens; Konnect mode's default target (decK's is Kong's cloud,
/// which a Gatehouse token must never be sent to by accident).
pub const DEFAULT_KONNECT_ADDR: &str = "http://127.0.0.1:8002";

/// The command line when the binary runs as `deck`.
#[derive(Debug, Parser)]
#[command(name = "deck", version = crate::VERSION, about = "decK: declarative configuration of a Kong gateway (Gatehouse)")]
pub struct DeckCli {
    #[command(subcommand)]
    pub command: DeckCommand,
}

/// What decK does: `deck gateway …`, `deck file …`, `deck version`, `deck completion`.
#[derive(Debug, Subcommand)]
pub enum DeckCommand {
    /// Work with a gateway: Kong's Admin API, or a control plane in Konnect mode.
    Gateway(Box<GatewayArgs>),
    /// Work with state files offline.
    File(FileArgs),
    /// Print the version and the commit it was built from.
    Version,
    /// Print a shell completion script for `deck`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    flags: TargetFlags,
    #[command(subcommand)]
    command: GatewayCommand,
}

/// How to reach the target, as decK's global flags.
#[derive(Debug, Args)]
struct TargetFlags {
    /// The Kong Admin API.
    #[arg(long, env = "DECK_KONG_ADDR", default_value = "http://localhost:8001", global = true)]
    kong_addr: String,
    /// Extra header on every request, `name:value` (repeatable).
    #[arg(long = "headers", env = "DECK_HEADERS", value_delimiter = ',', global = true)]
    headers: Vec<String>,
    /// Do not verify the target's TLS certificate.
    #[arg(long, env = "DECK_TLS_SKIP_VERIFY", global = true)]
    tls_skip_verify: bool,
    /// A PEM CA certificate (its content) to trust for the target.
    #[arg(long, env = "DECK_CA_CERT", global = true)]
    ca_cert: Option<String>,
    /// A file holding a PEM CA certificate to trust for the target.
    #[arg(long, env = "DECK_CA_CERT_FILE", global = true)]
    ca_cert_file: Option<PathBuf>,
    /// Plain output even on a terminal.
    #[arg(long, env = "DECK_NO_COLOR", global = true)]
    no_color: bool,
    /// Request timeout in seconds.
    #[arg(long, env = "DECK_TIMEOUT", default_value_t = 10, global = true)]
    timeout: u64,
    /// The platform API (Konnect mode).
    #[arg(long, env = "DECK_KONNECT_ADDR", default_value = DEFAULT_KONNECT_ADDR, global = true)]
    konnect_addr: String,
    /// A personal access token: selects Konnect mode.
    #[arg(long, env = "DECK_KONNECT_TOKEN", hide_env_values = true, global = true)]
    konnect_token: Option<String>,
    /// A file holding the personal access token.
    #[arg(long, env = "DECK_KONNECT_TOKEN_FILE", global = true)]
    konnect_token_file: Option<PathBuf>,
    /// The control plane to work on (default: the file's `_konnect.control_plane_name`, else `default`).
    #[arg(long, env = "DECK_KONNECT_CONTROL_PLANE_NAME", global = true)]
    konnect_control_plane_name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Create and update what the files describe; never delete.
    Apply(SyncArgs),
    /// Make the gateway equal to the files: create, update and delete.
    Sync(SyncArgs),
    /// Show what sync would change, without changing anything.
    Diff(DiffArgs),
    /// Write the gateway's configuration as a state file.
    Dump(DumpArgs),
    /// Check the files against the gateway (references to its entities resolve); change nothing.
    Validate {
        /// State files (YAML or JSON), directories of them, or `-` for stdin (the default).
        files: Vec<String>,
    },
    /// Delete every entity (with --select-tag: those carrying the tags).
    Reset(ResetArgs),
    /// Check that the target answers: the Admin API (and its Kong version), or the control plane in Konnect mode.
    Ping,
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// State files (YAML or JSON), directories of them, or `-` for stdin (the default).
    files: Vec<String>,
    /// Only entities with these tags are managed (as `_info.select_tags`).
    #[arg(long = "select-tag")]
    select_tag: Vec<String>,
    /// Print the changes as one JSON document.
    #[arg(long)]
    json_output: bool,
    /// How many requests run at once within a stage.
    #[arg(long, default_value_t = 10)]
    parallelism: usize,
    /// Show the values of DECK_ variables in diffs (secret fields stay masked).
    #[arg(long)]
    no_mask_deck_env_vars_value: bool,
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
    #[arg(short = 'o', long = "output-file", default_value = "kong")]
    output_file: String,
    #[arg(long, value_enum, default_value = "yaml")]
    format: Format,
    /// Keep the ids of named entities.
    #[arg(long)]
    with_id: bool,
    /// Only entities with these tags.
    #[arg(long = "select-tag")]
    select_tag: Vec<String>,
    /// Accepted for decK compatibility: the file is overwritten without asking.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
struct ResetArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(long = "select-tag")]
    select_tag: Vec<String>,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    #[command(subcommand)]
    command: FileCommand,
}

#[derive(Debug, Subcommand)]
enum FileCommand {
    /// Check state files offline: format version, schemas, references within the files.
    Validate {
        /// State files (YAML or JSON), directories of them, or `-` for stdin (the default).
        files: Vec<String>,
    },
    /// Convert a state file from one format to another: kong-gateway-2.x to kong-gateway-3.x (or 2.8 to 3.4).
    Convert(ConvertArgs),
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// Format of the source file: kong-gateway-2.x or 2.8.
    #[arg(long)]
    from: String,
    /// Format to write: kong-gateway-3.x or 3.4.
    #[arg(long)]
    to: String,
    /// The file to convert (`-` for stdin).
    #[arg(long, default_value = "-")]
    input_file: String,
    /// Where to write the converted file (`-` for stdout).
    #[arg(short = 'o', long, default_value = "-")]
    output_file: String,
    #[arg(long, value_enum, default_value = "yaml")]
    format: Format,
    /// Accepted for decK compatibility: the output file is overwritten without asking.
    #[arg(long)]
    yes: bool,
    /// Keep `${{ env "DECK_X" }}` placeholders as they are instead of their values.
    #[arg(long)]
    no_expand_env_vars: bool,
}

/// The `DECK_*` variables a file's templates may read.
pub(crate) fn deck_env() -> Env {
    std::env::vars().filter(|(k, _)| k.starts_with("DECK_")).collect()
}

fn read_path(path: &Path, out: &mut Vec<Source>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
            .collect();
        entries.sort();
        for p in entries {
            read_path(&p, out)?;
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    out.push(Source { name: path.display().to_string(), text });
    Ok(())
}

/// The inputs: files, directories, or stdin for `-` or when none are given.
pub(crate) fn sources(files: &[String]) -> anyhow::Result<Vec<Source>> {
    let files = if files.is_empty() { vec!["-".to_owned()] } else { files.to_vec() };
    let mut out = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
            out.push(Source { name: "stdin".into(), text });
        } else {
            read_path(Path::new(&f), &mut out)?;
        }
    }
    Ok(out)
}

impl TargetFlags {
    fn connection(&self) -> anyhow::Result<Connection> {
        let mut headers = Vec::new();
        for h in &self.headers {
            let (k, v) = h.split_once(':').with_context(|| format!("--headers '{h}': expected name:value"))?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let ca_cert_pem = match (&self.ca_cert, &self.ca_cert_file) {
            (Some(pem), _) => Some(pem.clone()),
            (None, Some(path)) => {
                Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
            }
            (None, None) => None,
        };
        let token = match (&self.konnect_token, &self.konnect_token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_owned(),
            ),
            (None, None) => None,
        };
        let konnect = token.filter(|t| !t.is_empty()).map(|t| Konnect {
            addr: self.konnect_addr.clone(),
            token: SecretString::new(t),
            // Empty: the file's `_konnect.control_plane_name`, else `default`.
            control_plane_name: self.konnect_control_plane_name.clone().unwrap_or_default(),
        });
        Ok(Connection {
            kong_addr: self.kong_addr.clone(),
            konnect,
            headers,
            tls_skip_verify: self.tls_skip_verify,
            ca_cert_pem,
            timeout: Duration::from_secs(self.timeout.max(1)),
        })
    }

    /// Colour only on a terminal, and never against `NO_COLOR`, `CLICOLOR=0` or `TERM=dumb` (`CLICOLOR_FORCE`
    /// forces it), as anstream reads them.
    fn color(&self) -> bool {
        !self.no_color && anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
    }
}

fn sync_options(kind: SyncKind, args: &SyncArgs, flags: &TargetFlags) -> SyncOptions {
    SyncOptions {
        kind,
        select_tags: args.select_tag.clone(),
        json_output: args.json_output,
        parallelism: args.parallelism,
        no_mask: args.no_mask_deck_env_vars_value,
        color: flags.color(),
        progress: std::io::stderr().is_terminal(),
    }
}

/// `file convert`: one input to one output; decK's messages about what changed go to standard error.
fn convert(args: &ConvertArgs) -> anyhow::Result<()> {
    let conversion = gatehouse_deck::convert::Conversion::from_flags(&args.from, &args.to)?;
    let source = match args.input_file.as_str() {
        "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
            Source { name: "stdin".into(), text }
        }
        path => Source {
            name: path.to_owned(),
            text: std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        },
    };
    let json = matches!(args.format, Format::Json);
    let (text, messages) =
        gatehouse_deck::convert::convert(&source, &deck_env(), !args.no_expand_env_vars, conversion, json)?;
    for m in messages {
        eprintln!("{m}");
    }
    if args.output_file == "-" {
        std::io::stdout().write_all(text.as_bytes())?;
    } else {
        std::fs::write(&args.output_file, text).with_context(|| format!("writing {}", args.output_file))?;
    }
    Ok(())
}

/// Runs a decK command; returns the process exit code (`diff --non-zero-exit-code` gives 2 on changes).
pub async fn run(command: DeckCommand) -> anyhow::Result<u8> {
    let mut out = std::io::stdout();
    let (flags, command) = match command {
        DeckCommand::File(FileArgs { command: FileCommand::Validate { files } }) => {
            run::validate_offline(&sources(&files)?, &deck_env())?;
            return Ok(0);
        }
        DeckCommand::File(FileArgs { command: FileCommand::Convert(args) }) => {
            convert(&args)?;
            return Ok(0);
        }
        DeckCommand::Gateway(args) => {
            let GatewayArgs { flags, command } = *args;
            (flags, command)
        }
        DeckCommand::Version => {
            // decK's line (`decK v1.x (commit)`), with Gatehouse's version: this is Gatehouse's decK.
            writeln!(out, "decK {} (gatehouse)", crate::VERSION)?;
            return Ok(0);
        }
        DeckCommand::Completion { shell } => {
            clap_complete::generate(shell, &mut DeckCli::command(), "deck", &mut out);
            return Ok(0);
        }
    };
    let conn = flags.connection()?;
    match command {
        GatewayCommand::Apply(args) => {
            let opts = sync_options(SyncKind::Apply, &args, &flags);
            run::sync(&sources(&args.files)?, &deck_env(), &conn, &opts, &mut out).await?;
        }
        GatewayCommand::Sync(args) => {
            let opts = sync_options(SyncKind::Sync, &args, &flags);
            run::sync(&sources(&args.files)?, &deck_env(), &conn, &opts, &mut out).await?;
        }
        GatewayCommand::Diff(args) => {
            let opts = sync_options(SyncKind::Diff, &args.sync, &flags);
            let outcome = run::sync(&sources(&args.sync.files)?, &deck_env(), &conn, &opts, &mut out).await?;
            if args.non_zero_exit_code && outcome.summary.total() > 0 {
                return Ok(2);
            }
        }
        GatewayCommand::Validate { files } => run::validate_online(&sources(&files)?, &deck_env(), &conn).await?,
        GatewayCommand::Ping => run::ping(&conn, &mut out).await?,
        GatewayCommand::Dump(args) => {
            let json = matches!(args.format, Format::Json);
            let opts = DumpOptions { with_id: args.with_id, select_tags: args.select_tag, control_plane_name: None };
            let text = run::dump_text(&conn, &opts, json).await?;
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
        GatewayCommand::Reset(args) => {
            if !args.force {
                print!("This will delete all configuration from the gateway.\n> Are you sure? [y/N] ");
                out.flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                    println!("Nothing was deleted.");
                    return Ok(0);
                }
            }
            let opts = SyncOptions {
                kind: SyncKind::Sync,
                select_tags: args.select_tag,
                color: flags.color(),
                progress: std::io::stderr().is_terminal(),
                ..SyncOptions::default()
            };
            run::reset(&conn, &opts, &mut out).await?;
        }
    }
    Ok(0)
}
