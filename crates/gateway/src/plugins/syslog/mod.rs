//! `syslog` (priority 4): each request's entry (Kong's serializer) written to the host's syslog, as Kong's
//! plugin does through `syslog(3)`: a datagram `<PRI>kong: {json}` to the local socket (`/dev/log`), with the
//! configured facility and the severity that the response's status class selects; entries less severe than
//! `log_level` are not written. The datagram goes from the logging queue's sender task; a host without a syslog
//! socket gets its entries dropped, counted and reported (the sender says so once per failure streak).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::logging::{SYSLOG_INFO, Syslog as Config, facility_code, severity_code};

use super::log_queue::{Deliver, Queue, Settings};
use super::{LogContext, Phases, Plugin, PluginDef};

pub static PLUGIN: PluginDef = PluginDef {
    info: &SYSLOG_INFO,
    phases: Phases { rewrite: false, access: false, response: false, log: true },
    build: |config, shared| Ok(Arc::new(Syslog::new(config, shared)?)),
};

/// Where glibc's `syslog(3)` writes.
pub const DEFAULT_SOCKET: &str = "/dev/log";

#[derive(Debug)]
pub struct Syslog {
    log_level: u8,
    successful: u8,
    client_errors: u8,
    server_errors: u8,
    facility: u8,
    queue: Arc<Queue>,
    clock: gatehouse_model::SharedClock,
}

impl Syslog {
    pub fn new(config: &Map<String, Value>, shared: &super::Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let path = shared.syslog_socket.clone();
        let key = path.display().to_string();
        let sender = || Ok(Sender { path, socket: None });
        let queue = shared.log_queues.get(PLUGIN.info.name, key, Settings::one_at_a_time(), sender)?;
        Ok(Self {
            log_level: severity_code(&config.log_level),
            successful: severity_code(&config.successful_severity),
            client_errors: severity_code(&config.client_errors_severity),
            server_errors: severity_code(&config.server_errors_severity),
            facility: facility_code(&config.facility),
            queue,
            clock: shared.clock.clone(),
        })
    }

    /// Kong's choice: 5xx, 4xx, anything else.
    fn severity(&self, status: http::StatusCode) -> u8 {
        if status.is_server_error() {
            self.server_errors
        } else if status.is_client_error() {
            self.client_errors
        } else {
            self.successful
        }
    }
}

#[async_trait]
impl Plugin for Syslog {
    fn log(&self, ctx: &LogContext<'_>) {
        let severity = self.severity(ctx.status);
        // Lower is more severe: written when at least as severe as `log_level`.
        if severity > self.log_level {
            return;
        }
        let now = gatehouse_model::Clock::now(&self.clock).micros();
        let Some(entry) = super::serializer::serialize(ctx, now) else { return };
        let mut datagram = format!("<{}>kong: ", u16::from(self.facility) * 8 + u16::from(severity)).into_bytes();
        datagram.extend_from_slice(&entry);
        self.queue.enqueue(datagram);
    }
}

struct Sender {
    path: PathBuf,
    socket: Option<tokio::net::UnixDatagram>,
}

#[async_trait]
impl Deliver for Sender {
    async fn deliver(&mut self, batch: &[Bytes]) -> Result<(), String> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => {
                let socket = tokio::net::UnixDatagram::unbound().map_err(|e| e.to_string())?;
                socket.connect(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
                socket
            }
        };
        for entry in batch {
            socket.send(entry).await.map_err(|e| format!("{}: {e}", self.path.display()))?;
        }
        self.socket = Some(socket);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, Method, StatusCode};
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::serializer::{RequestHead, SecretNames};
    use crate::plugins::{Latencies, Outcome, Slots};

    fn log(plugin: &Syslog, head: &RequestHead, status: u16) {
        let headers = HeaderMap::new();
        let ctx = LogContext {
            request_id: "0123456789abcdef0123456789abcdef",
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            method: &Method::GET,
            status: StatusCode::from_u16(status).unwrap(),
            route: None,
            service: None,
            consumer: None,
            latencies: Latencies::default(),
            outcome: Outcome::Proxied,
            slots: &Slots::default(),
            request_bytes: None,
            response_bytes: None,
            trace: None,
            request: Some(head),
            upstream_uri: None,
            response_headers: &headers,
        };
        plugin.log(&ctx);
    }

    /// Kong's `syslog`: the facility and the status class's severity in the priority, the serializer's entry after
    /// the tag; entries less severe than `log_level` are not written.
    #[tokio::test]
    async fn entries_reach_the_syslog_socket_with_their_priority() {
        let dir = temp_dir();
        let path = dir.join("log.sock");
        let server = tokio::net::UnixDatagram::bind(&path).unwrap();
        let shared = crate::plugins::Shared { syslog_socket: path.clone(), ..crate::plugins::Shared::default() };
        let config = |level: &str| {
            json!({"log_level": level, "successful_severity": "info", "client_errors_severity": "warning",
                "server_errors_severity": "crit", "facility": "local0"})
        };
        let head = RequestHead::capture(
            &Method::GET,
            &"/x?token=t1&page=2".parse().unwrap(),
            &HeaderMap::new(),
            false,
            8000,
            &SecretNames::new(Vec::new()),
        );
        let info = Syslog::new(config("info").as_object().unwrap(), &shared).unwrap();
        let warning = Syslog::new(config("warning").as_object().unwrap(), &shared).unwrap();
        log(&warning, &head, 200);
        for status in [200, 404, 503] {
            log(&info, &head, status);
        }
        log(&warning, &head, 500);
        let mut buf = vec![0u8; 65536];
        let mut received = Vec::new();
        for _ in 0..4 {
            let n = tokio::time::timeout(Duration::from_secs(30), server.recv(&mut buf)).await.unwrap().unwrap();
            received.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        let priorities: Vec<&str> = received.iter().map(|d| d.split_once("kong: ").unwrap().0).collect();
        // local0 is 16: 16 * 8 + info (6), warning (4), crit (2); the 200 under `warning` was not written.
        assert_eq!(priorities, ["<134>", "<132>", "<130>", "<130>"]);
        let entry: Value = serde_json::from_str(received[0].split_once("kong: ").unwrap().1).unwrap();
        assert_eq!(entry["request"]["uri"], "/x?token=REDACTED&page=2");
        assert_eq!(entry["response"]["status"], 200);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gatehouse-syslog-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
