//! `file-log` (priority 9): each request's entry (Kong's serializer) appended to a file as one JSON line.
//!
//! As Kong's, the write is a plain `write(2)` on a file opened with `O_APPEND | O_CREAT` (mode 0644) and kept open
//! per instance (each worker's copy has its own descriptor; `O_APPEND` keeps lines whole between them); `reopen`
//! closes and reopens it for every entry, for rotation tools that move the file away. The write happens in the
//! `log` phase on the worker, as nginx's does: a local file's append is a copy into the page cache. A file that
//! cannot be opened or written is reported once until it works again, and the request is unaffected.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::logging::{FILE_LOG_INFO, FileLog as Config};

use super::{LogContext, Phases, Plugin, PluginDef};

pub static PLUGIN: PluginDef = PluginDef {
    info: &FILE_LOG_INFO,
    phases: Phases { rewrite: false, access: false, response: false, log: true },
    build: |config, shared| Ok(Arc::new(FileLog::new(config, shared)?)),
};

#[derive(Debug)]
pub struct FileLog {
    path: PathBuf,
    reopen: bool,
    file: Mutex<Option<File>>,
    /// A failure was reported and nothing has worked since.
    failing: AtomicBool,
    clock: gatehouse_model::SharedClock,
}

impl FileLog {
    pub fn new(config: &Map<String, Value>, shared: &super::Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        Ok(Self {
            path: config.path.into(),
            reopen: config.reopen,
            file: Mutex::new(None),
            failing: AtomicBool::new(false),
            clock: shared.clock.clone(),
        })
    }

    fn open(&self) -> std::io::Result<File> {
        std::fs::OpenOptions::new().append(true).create(true).mode(0o644).open(&self.path)
    }

    fn write(&self, line: &[u8]) -> std::io::Result<()> {
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if self.reopen {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let Some(file) = slot.as_mut() else { return Ok(()) };
        let written = file.write_all(line);
        if written.is_err() {
            // Opened again for the next entry (the file may have been removed or its disk replaced).
            *slot = None;
        }
        written
    }
}

#[async_trait]
impl Plugin for FileLog {
    fn log(&self, ctx: &LogContext<'_>) {
        let now = gatehouse_model::Clock::now(&self.clock).micros();
        let Some(mut line) = super::serializer::serialize(ctx, now) else { return };
        line.push(b'\n');
        match self.write(&line) {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(path = %self.path.display(), %error, "file-log: could not write to the file");
                }
            }
        }
    }
}
