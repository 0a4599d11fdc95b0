//! `udp-log` (priority 8): each request's entry (Kong's serializer) sent to a UDP server as one datagram of
//! JSON, without a newline, as Kong sends it. The datagram goes from the logging queue's sender task
//! ([`super::log_queue`]), never from the request's path; an entry that cannot be sent is dropped and counted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use gatehouse_model::gateway::plugins::logging::{UDP_LOG_INFO, UdpLog as Config};

use super::log_queue::{Deliver, Queue, Settings};
use super::{LogContext, Phases, Plugin, PluginDef};

pub static PLUGIN: PluginDef = PluginDef {
    info: &UDP_LOG_INFO,
    phases: Phases { rewrite: false, access: false, response: false, log: true },
    build: |config, shared| Ok(Arc::new(UdpLog::new(config, shared)?)),
};

#[derive(Debug)]
pub struct UdpLog {
    queue: Arc<Queue>,
    clock: gatehouse_model::SharedClock,
}

impl UdpLog {
    pub fn new(config: &Map<String, Value>, shared: &super::Shared) -> Result<Self, String> {
        let config: Config = serde_json::from_value(Value::Object(config.clone())).map_err(|e| e.to_string())?;
        let key = format!("{config:?}");
        let sender = || Ok(Sender { config, socket: None });
        let queue = shared.log_queues.get(PLUGIN.info.name, key, Settings::one_at_a_time(), sender)?;
        Ok(Self { queue, clock: shared.clock.clone() })
    }
}

#[async_trait]
impl Plugin for UdpLog {
    fn log(&self, ctx: &LogContext<'_>) {
        self.queue.log(ctx, &self.clock);
    }
}

struct Sender {
    config: Config,
    /// Connected to the server's address, resolved once (again after a failure).
    socket: Option<tokio::net::UdpSocket>,
}

impl Sender {
    async fn socket(&self) -> std::io::Result<tokio::net::UdpSocket> {
        let address = tokio::net::lookup_host((self.config.host.as_str(), self.config.port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("the host has no address"))?;
        let local: std::net::SocketAddr =
            if address.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(address).await?;
        Ok(socket)
    }
}

#[async_trait]
impl Deliver for Sender {
    async fn deliver(&mut self, batch: &[Bytes]) -> Result<(), String> {
        let timeout = Duration::try_from_secs_f64(self.config.timeout.max(0.0) / 1000.0).unwrap_or(Duration::MAX);
        let destination = format!("{}:{}", self.config.host, self.config.port);
        let send = async {
            let socket = match self.socket.take() {
                Some(socket) => socket,
                None => self.socket().await?,
            };
            for entry in batch {
                socket.send(entry).await?;
            }
            self.socket = Some(socket);
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("could not send to {destination}: {e}")),
            Err(_) => Err(format!("could not send to {destination}: timed out")),
        }
    }
}
