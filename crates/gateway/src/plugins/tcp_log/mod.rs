//! `tcp-log` (priority 7): each request's entry (Kong's serializer) written to a TCP server as one JSON line,
//! optionally over TLS. As Kong's, each entry is sent once (no retry); the connection is kept for the next entries
//! while it is used within `keepalive`. Entries wait in a bounded queue ([`super::log_queue`]) for the sender
//! task, so a server that is down or slow costs the proxy nothing but the entries dropped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use gatehouse_model::gateway::plugins::logging::{TCP_LOG_INFO, TcpLog as Config};

use super::log_queue::{Deliver, Queue, Settings};
use super::{LogContext, Phases, Plugin, PluginDef};

pub static PLUGIN: PluginDef = PluginDef {
    info: &TCP_LOG_INFO,
    phases: Phases { rewrite: false, access: false, response: false, log: true },
    build: |config, shared| Ok(Arc::new(TcpLog::new(config, shared)?)),
};

#[derive(Debug)]
pub struct TcpLog {
    queue: Arc<Queue>,
    clock: gatehouse_model::SharedClock,
}

impl TcpLog {
    pub fn new(config: &Map<String, Value>, shared: &super::Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let tls = if config.tls {
            let name = config.tls_sni.clone().unwrap_or_else(|| config.host.clone());
            let name = rustls::pki_types::ServerName::try_from(name).map_err(|e| format!("tls_sni: {e}"))?;
            Some((tokio_rustls::TlsConnector::from(crate::upstream::probe_tls(config.ssl_verify)?), name))
        } else {
            None
        };
        let key = format!("{config:?}");
        let sender = || Ok(Sender { config, tls, connection: None });
        let queue = shared.log_queues.get(PLUGIN.info.name, key, Settings::one_at_a_time(), sender)?;
        Ok(Self { queue, clock: shared.clock.clone() })
    }
}

#[async_trait]
impl Plugin for TcpLog {
    fn log(&self, ctx: &LogContext<'_>) {
        self.queue.log(ctx, &self.clock);
    }
}

trait Stream: AsyncWrite + Unpin + Send {}
impl<T: AsyncWrite + Unpin + Send> Stream for T {}

struct Sender {
    config: Config,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    /// The kept connection and when it was last used.
    connection: Option<(Box<dyn Stream>, Instant)>,
}

fn millis(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX)
}

/// A new connection to the server, with TLS when configured. A free function over owned parts, so the sender's
/// state is not borrowed across the wait.
async fn connect(
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
) -> Result<Box<dyn Stream>, String> {
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some((connector, name)) => {
            let tls = connector.connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
            Ok(Box::new(tls))
        }
    }
}

#[async_trait]
impl Deliver for Sender {
    async fn deliver(&mut self, batch: &[Bytes]) -> Result<(), String> {
        let timeout = millis(self.config.timeout);
        let keepalive = millis(self.config.keepalive);
        let kept = self.connection.take().filter(|(_, used)| used.elapsed() < keepalive);
        let mut stream = match kept {
            Some((stream, _)) => stream,
            None => {
                let connecting = connect(self.config.host.clone(), self.config.port, self.tls.clone());
                tokio::time::timeout(timeout, connecting).await.map_err(|_| "connect: timed out".to_owned())??
            }
        };
        let send = async {
            for entry in batch {
                stream.write_all(entry).await?;
                stream.write_all(b"\n").await?;
            }
            stream.flush().await
        };
        let sent = tokio::time::timeout(timeout, send).await;
        let destination = format!("{}:{}", self.config.host, self.config.port);
        match sent {
            Ok(Ok(())) => {
                self.connection = Some((stream, Instant::now()));
                Ok(())
            }
            Ok(Err(e)) => Err(format!("could not send to {destination}: {e}")),
            Err(_) => Err(format!("could not send to {destination}: timed out")),
        }
    }
}
