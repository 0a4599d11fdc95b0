//! Logs: structured (`text` or `json`), and never carrying credentials. The API listeners' request lines are
//! `request_log`'s, the proxy's access log the gateway's own; both mask credential query parameters.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub use gatehouse_model::redact::REDACTED;

/// Installs the global subscriber (once per process; later calls are ignored so tests can share a process).
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.level).map_err(|e| format!("log.level [{}]: {e}", config.level))?;
    // Colour codes only for a person at a terminal: in a file or a log collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}
