//! `gatehouse`: identity provider and API gateway in one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::Value;

use gatehouse::node::{self, NodeOptions};
use gatehouse::{quickstart, token};
use gatehouse_model::SystemClock;
use gatehouse_runtime::config::{self, Config, ConfigSources};

// The token and proxy paths allocate per request; mimalloc measured faster than glibc's allocator on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version = gatehouse::VERSION,
    about = "Self-hosted OAuth 2.0 authorization server and API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine with embedded storage and print the environment for the tutorial.
    Quickstart {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        action: Option<QuickstartAction>,
    },
    /// Run a node from configuration.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Validate the configuration (unknown keys are errors here) and exit.
        #[arg(long)]
        check_config: bool,
        /// Print the configuration in effect (file, `GATEHOUSE_*` variables and flags merged; secrets redacted)
        /// as TOML and exit.
        #[arg(long, conflicts_with = "check_config")]
        print_config: bool,
    },
    /// Run only the httpbin-compatible echo upstream (`/anything`, `/status/{code}`, `/delay/{s}`, `/headers`).
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8004")]
        listen: std::net::SocketAddr,
        /// Allow a non-loopback address.
        #[arg(long)]
        allow_plaintext_public: bool,
        /// Host names or addresses requests may name in `Host` besides localhost and loopback addresses
        /// (comma-separated or repeated), e.g. the name a gateway on another machine uses for this upstream.
        #[arg(long, value_delimiter = ',', value_parser = parse_allowed_host)]
        allowed_hosts: Vec<url::Host>,
    },
    /// Hybrid mode: control planes and data planes.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// decK: declarative configuration of a gateway (apply, sync, diff, dump, validate, reset).
    Gateway(Box<gatehouse::deck::GatewayArgs>),
    /// decK: state files offline (`file validate`).
    File(gatehouse::deck::FileArgs),
    /// decK's commands under their own name: `gatehouse deck gateway sync` is `deck gateway sync`.
    Deck {
        #[command(subcommand)]
        command: gatehouse::deck::DeckCommand,
    },
    /// Identity as code: Kong Identity's auth servers, scopes, claims and clients as a file (dump, diff, apply,
    /// validate), as decK does for a gateway.
    Identity(Box<gatehouse::identity::IdentityArgs>),
    /// Manage personal access tokens for the platform API of an existing node.
    Token {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Copy the node's SQLite database to a new file, consistent while the node runs (PostgreSQL: use pg_dump).
    Backup {
        #[command(flatten)]
        config: ConfigArgs,
        /// The backup file to write; it must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Put a backup in place as the database of an empty data dir, once the master key is shown to open it.
    Restore {
        #[command(flatten)]
        config: ConfigArgs,
        /// A file written by `gatehouse backup`.
        #[arg(long)]
        from: PathBuf,
    },
    /// Print a shell completion script: `gatehouse completion bash > ~/.local/share/bash-completion/completions/gatehouse`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum QuickstartAction {
    /// Print the exports of the quickstart that last ran with this data dir (they stay valid across restarts).
    Env,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token and print it (only this once).
    Create {
        #[arg(long)]
        name: String,
        /// Lifetime in days (`30` or `30d`); default 90, at most 365.
        #[arg(long, value_parser = token::parse_days)]
        expires_in: Option<i64>,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by id, or every token with a name.
    Revoke { id_or_name: String },
}

/// Settings every command shares; each flag overrides the file and `GATEHOUSE_*` variables. Global, so they may
/// come after a subcommand too (`gatehouse token list --data-dir /srv/gatehouse`).
#[derive(Debug, Args)]
struct ConfigArgs {
    /// A TOML or YAML configuration file.
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Where SQLite data and the generated master key live (default ./gatehouse-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`.
    #[arg(long, global = true)]
    storage_url: Option<String>,
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormatArg>,
    /// A tracing filter such as `info` or `debug`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Address of the platform API (Konnect-compatible management).
    #[arg(long, global = true)]
    platform_listen: Option<String>,
    /// Address of the issuer (OAuth endpoints).
    #[arg(long, global = true)]
    issuer_listen: Option<String>,
    /// Base of issuer URLs, e.g. https://id.example.com or https://{key}.id.example.com.
    #[arg(long, global = true)]
    identity_public_url: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl ConfigArgs {
    fn sources(&self) -> ConfigSources {
        let mut sources = ConfigSources::from_process_env(self.config.clone());
        let mut set = |path: &str, value: Option<Value>| {
            if let Some(v) = value {
                sources.overrides.push((path.to_owned(), v));
            }
        };
        set("data_dir", self.data_dir.as_ref().map(|p| Value::String(p.display().to_string())));
        set("storage.url", self.storage_url.clone().map(Value::String));
        set(
            "log.format",
            self.log_format.map(|f| {
                Value::String(match f {
                    LogFormatArg::Text => "text".into(),
                    LogFormatArg::Json => "json".into(),
                })
            }),
        );
        set("log.level", self.log_level.clone().map(Value::String));
        set("platform.listen", self.platform_listen.clone().map(Value::String));
        set("issuer.listen", self.issuer_listen.clone().map(Value::String));
        set("identity_public_url", self.identity_public_url.clone().map(Value::String));
        sources
    }
}

/// Loads configuration and sets up logging; unknown keys are warned about (or refused when `strict`).
fn load(args: &ConfigArgs, strict: bool, quiet_by_default: bool) -> anyhow::Result<Config> {
    let mut sources = args.sources();
    let level_given = args.log_level.is_some() || sources.env.iter().any(|(k, _)| k == "GATEHOUSE_LOG__LEVEL");
    if quiet_by_default && !level_given {
        sources.overrides.push(("log.level".to_owned(), Value::String("warn".to_owned())));
    }
    let loaded = config::load(&sources)?;
    gatehouse_runtime::logging::init(&loaded.config.log).map_err(anyhow::Error::msg)?;
    if !loaded.unknown_keys.is_empty() {
        if strict {
            return Err(config::ConfigError::UnknownKeys(loaded.unknown_keys).into());
        }
        for key in &loaded.unknown_keys {
            tracing::warn!(key, "unknown configuration key ignored");
        }
    }
    Ok(loaded.config)
}

fn parse_allowed_host(text: &str) -> Result<url::Host, String> {
    config::parse_host(text)
        .ok_or_else(|| format!("[{text}] is not a host name or IP address (give no scheme or port)"))
}

/// Ctrl-C (SIGINT) and SIGTERM. The handlers are installed when this is made, before anything starts serving: a
/// signal that arrives once the node answers, but before a task got around to listening for it, would otherwise
/// meet the default action and kill the process instead of stopping it cleanly.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn received(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Debug, Subcommand)]
enum ClusterAction {
    /// Generate a shared-mode cluster certificate and key (`cluster.mtls = "shared"`; Kong's `kong hybrid
    /// gen_cert`): ECDSA P-384, valid three years, both files written 0600. Copy both to every node.
    Cert {
        /// Where to write the certificate (PEM).
        #[arg(long, default_value = "cluster.crt")]
        cert: std::path::PathBuf,
        /// Where to write the private key (PEM).
        #[arg(long, default_value = "cluster.key")]
        key: std::path::PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

async fn run_until_signal(stop: tokio_util::sync::CancellationToken, signals: ShutdownSignals) {
    tokio::spawn(async move {
        signals.received().await;
        tracing::info!("shutting down");
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        stop.cancel();
    });
}

/// Tells a service manager that waits for it (systemd's `Type=notify`, `NOTIFY_SOCKET`) that the node is ready:
/// called once every listener is bound and serving, so whatever the unit orders after it finds them answering.
fn notify_ready(node: &node::RunningNode) {
    let status = format!(
        "serving: platform {}, issuer {}, admin {}, proxy {}, status {}",
        node.platform_url(),
        node.issuer_listener_url(),
        node.admin_url(),
        node.proxy_url(),
        node.status_url()
    );
    notify_systemd(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
}

/// Sends a notification when `NOTIFY_SOCKET` is set; does nothing otherwise.
fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Gateway(args) => return gatehouse::deck::run(gatehouse::deck::DeckCommand::Gateway(args)).await,
        Command::File(args) => return gatehouse::deck::run(gatehouse::deck::DeckCommand::File(args)).await,
        Command::Deck { command } => return gatehouse::deck::run(command).await,
        Command::Identity(args) => return gatehouse::identity::run(*args).await,
        Command::Serve { config, check_config, print_config } => {
            let cfg = load(&config, check_config, false)?;
            cfg.validate()?;
            if check_config {
                println!("configuration OK");
                return Ok(0);
            }
            if print_config {
                print!("{}", cfg.effective_toml().context("printing the configuration")?);
                return Ok(0);
            }
            let signals = ShutdownSignals::install()?;
            if cfg.role == config::Role::DataPlane {
                let node = gatehouse::cluster::start_data_plane(&cfg, NodeOptions::default()).await?;
                let status = format!("data plane: proxy {}, status {}", node.proxy_url(), node.status_url());
                notify_systemd(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
                run_until_signal(node.stop_handle(), signals).await;
                node.wait().await;
            } else {
                let node = node::start(&cfg, NodeOptions::default()).await?;
                notify_ready(&node);
                run_until_signal(node.stop_handle(), signals).await;
                node.wait().await;
            }
        }
        Command::Cluster { action: ClusterAction::Cert { cert, key, force } } => {
            gatehouse::cluster::generate_shared_cert(&cert, &key, force)?;
            println!(
                "wrote {} and {} (mode 0600); set cluster.cert and cluster.cert_key to them on the control plane and every data plane",
                cert.display(),
                key.display()
            );
        }
        Command::Quickstart { config, action: Some(QuickstartAction::Env) } => {
            let cfg = load(&config, false, true)?;
            print!("{}", quickstart::saved_env(&cfg.data_dir)?);
        }
        Command::Quickstart { config: args, action: None } => {
            let mut cfg = load(&args, false, true)?;
            cfg.validate()?;
            cfg.gateway.control_plane.get_or_insert_with(|| quickstart::QUICKSTART_CONTROL_PLANE.to_owned());
            let tls_ca = quickstart::ensure_tls(&mut cfg)
                .map_err(|e| anyhow::anyhow!("cannot make the quickstart's TLS certificate: {e}"))?;
            let signals = ShutdownSignals::install()?;
            let node = node::start(&cfg, NodeOptions { echo: true, ..NodeOptions::default() }).await?;
            quickstart::announce(&node, &cfg.data_dir, tls_ca.as_deref(), &mut std::io::stdout()).await?;
            notify_ready(&node);
            run_until_signal(node.stop_handle(), signals).await;
            node.wait().await;
        }
        Command::Echo { listen, allow_plaintext_public, allowed_hosts } => {
            gatehouse_runtime::logging::init(&config::LogConfig::default()).map_err(anyhow::Error::msg)?;
            let listener = gatehouse_runtime::listener::bind(
                gatehouse_runtime::listener::ListenerKind::Echo,
                listen,
                allow_plaintext_public,
            )
            .await?;
            // Alone in its process, the echo upstream may use every descriptor the budget has.
            let _ = gatehouse_net::raise_nofile_limit();
            let limits = gatehouse_net::ListenerShare::Echo.limits(gatehouse_net::FdBudget::current().whole());
            gatehouse_runtime::listener::serve(
                gatehouse_runtime::listener::ListenerKind::Echo,
                listener,
                gatehouse::echo::echo_router(gatehouse_control::LocalHosts::new(allowed_hosts, "--allowed-hosts")),
                gatehouse_net::Gate::new("echo", limits, Vec::new()),
                None,
                ShutdownSignals::install()?.received(),
            )
            .await?;
        }
        Command::Token { config, action } => {
            let cfg = load(&config, false, true)?;
            let location = node::NodeLocation::of(&cfg)?;
            // On stderr: stdout carries the token, which scripts capture.
            eprintln!("data dir {}, database {}", location.data_dir, location.database);
            let services = node::open_existing_services(&cfg, std::sync::Arc::new(SystemClock)).await?;
            match action {
                TokenAction::Create { name, expires_in } => {
                    token::create(&services, &name, expires_in, &mut std::io::stdout()).await?;
                }
                TokenAction::List => token::list(&services, &mut std::io::stdout()).await?,
                TokenAction::Revoke { id_or_name } => {
                    let n = token::revoke(&services, &id_or_name).await?;
                    if n == 0 {
                        anyhow::bail!("no token matches [{id_or_name}]");
                    }
                    println!("revoked {n} token(s)");
                }
            }
        }
        Command::Backup { config, to } => {
            let cfg = load(&config, false, true)?;
            let location = node::NodeLocation::of(&cfg)?;
            eprintln!("data dir {}, database {}", location.data_dir, location.database);
            let (bytes, database) = gatehouse::backup::backup(&cfg, &to).await?;
            println!("backed up {} to {} ({bytes} bytes)", database.display(), to.display());
            println!("# The master key is not in the backup: keep it with the backup, but not in the same place.");
        }
        Command::Restore { config, from } => {
            let cfg = load(&config, false, true)?;
            let location = node::NodeLocation::of(&cfg)?;
            eprintln!("data dir {}, database {}", location.data_dir, location.database);
            let database = gatehouse::backup::restore(&cfg, &from).await?;
            println!("restored {} as {}; start the node with the same master key", from.display(), database.display());
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "gatehouse", &mut std::io::stdout());
        }
    }
    Ok(0)
}

/// Whether the binary runs under the name `deck` (a link or a copy): then it is decK, with decK's help and usage.
fn invoked_as_deck() -> bool {
    let first = std::env::args_os().next();
    first.as_deref().map(std::path::Path::new).and_then(|p| p.file_stem()).is_some_and(|name| name == "deck")
}

fn main() -> ExitCode {
    let cli = if invoked_as_deck() {
        Cli { command: Command::Deck { command: gatehouse::deck::DeckCli::parse().command } }
    } else {
        Cli::parse()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.downcast_ref::<gatehouse_deck::DeckError>().is_some() => {
            // decK's wording.
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<config::ConfigError>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
