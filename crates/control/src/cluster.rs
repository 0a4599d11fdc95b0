//! Hybrid mode, the control plane's side: the cluster listener (Kong's `cluster_listen`) that data planes hold one
//! HTTP/2 stream open to. Each stream gets the served control plane's configuration at once and again on every
//! change, as the publisher makes it; heartbeats go both ways; what each data plane reports (version, hostname,
//! the hash it serves, a configuration it could not apply) is kept in the store (`ClusterStore`), so `…/nodes`
//! survives a restart. The wire format and the trust rules are `gatehouse_net::cluster`'s.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use gatehouse_model::Timestamp;
use gatehouse_model::gateway::cluster::{DataPlaneNode, Message, check_compatibility};
use gatehouse_model::gateway::snapshot::ConfigSnapshot;
use gatehouse_net::cluster::{self as wire, FrameReader, KIND_MESSAGE};
use gatehouse_runtime::Services;
use gatehouse_store::{Invalidation, StoreError};

/// A configuration as every data plane receives it, encoded once per change.
#[derive(Debug)]
pub struct Published {
    pub hash: String,
    pub version: u64,
    pub frame: Bytes,
    /// When the control plane published it (Konnect's `expected-config-hash` `updated_at`).
    pub at: Timestamp,
}

/// Follows the publisher and encodes each configuration once, for every data plane to send. Runs until the
/// publisher stops.
pub fn encode_published(
    services: &Services,
    mut configs: watch::Receiver<Arc<ConfigSnapshot>>,
) -> watch::Receiver<Arc<Published>> {
    let encode = |config: &ConfigSnapshot, at: Timestamp| {
        let hash = config.hash();
        // Serialising plain data cannot fail.
        let json = serde_json::to_vec(config).unwrap_or_default();
        Arc::new(Published {
            frame: wire::config_frame(&hash, config.version, &json),
            hash,
            version: config.version,
            at,
        })
    };
    let first = encode(&configs.borrow_and_update(), services.clock.now());
    let (sender, receiver) = watch::channel(first);
    let clock = services.clock.clone();
    tokio::spawn(async move {
        while configs.changed().await.is_ok() {
            let config = configs.borrow_and_update().clone();
            if sender.send(encode(&config, clock.now())).is_err() {
                return;
            }
        }
    });
    receiver
}

/// What every data-plane session needs.
#[derive(Debug, Clone)]
pub struct ClusterState {
    pub services: Services,
    pub control_plane_id: uuid::Uuid,
    pub published: watch::Receiver<Arc<Published>>,
    pub ping_interval: Duration,
    /// This control plane's version, which data planes are checked against.
    pub version: String,
}

/// Keeps the pinned `dp-client-certificates` of `control_plane_id` in `pinned` (pki mode): loaded now, reloaded
/// whenever the bus says they changed, so a new certificate is accepted, and a deleted one refused, from the next
/// handshake on.
pub async fn follow_pinned(
    services: &Services,
    control_plane_id: uuid::Uuid,
    pinned: Arc<ArcSwap<Vec<rustls::pki_types::CertificateDer<'static>>>>,
) -> Result<(), StoreError> {
    let load = {
        let services = services.clone();
        move || {
            let services = services.clone();
            let pinned = pinned.clone();
            async move {
                let certs = services.store.list_dp_certificates(control_plane_id).await?;
                let ders = certs
                    .iter()
                    .filter_map(|c| gatehouse_net::tls::parse_certificates(c.cert.as_bytes()).ok())
                    .filter_map(|chain| chain.into_iter().next())
                    .collect();
                pinned.store(Arc::new(ders));
                Ok::<(), StoreError>(())
            }
        }
    };
    load().await?;
    let mut events = services.store.bus().subscribe();
    tokio::spawn(async move {
        loop {
            let reload = match events.recv().await {
                Ok(Invalidation::DpClientCertificates { control_plane_id: cp }) => cp == control_plane_id,
                Ok(Invalidation::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Ok(_) => false,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if reload && let Err(e) = load().await {
                tracing::error!(error = %e, "cannot reload the pinned dp-client-certificates");
            }
        }
    });
    Ok(())
}

/// Accepts data planes until `stop` resolves. A handshake that fails (a foreign certificate, no certificate, not
/// TLS 1.3) is logged with the peer's address and the reason; the data plane logs its side.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: ClusterState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stop = std::pin::pin!(stop);
    let mut stop = stop;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!(peer = %peer, reason = %e, "data plane refused: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(peer = %peer, "data plane refused: TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(stream_response(state, peer, request)) }
            });
            if let Err(e) = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(peer = %peer, error = %e, "cluster connection ended");
            }
        });
    }
}

type StreamBody = Channel<Bytes, Infallible>;

fn stream_response(state: ClusterState, peer: SocketAddr, request: Request<Incoming>) -> Response<StreamBody> {
    let (sender, body) = Channel::new(8);
    if request.method() != hyper::Method::POST || request.uri().path() != wire::STREAM_PATH {
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    tokio::spawn(session(state, peer, request.into_body(), sender));
    Response::new(body)
}

fn message_frame(message: &Message) -> Bytes {
    // Plain data serialises.
    wire::frame(KIND_MESSAGE, &serde_json::to_vec(message).unwrap_or_default())
}

/// One data plane's stream, from its hello to its end.
async fn session(state: ClusterState, peer: SocketAddr, mut incoming: Incoming, mut out: Sender<Bytes, Infallible>) {
    let mut reader = FrameReader::default();
    let hello = tokio::time::timeout(Duration::from_secs(10), wire::next_frame(&mut incoming, &mut reader)).await;
    let hello = match hello {
        Ok(Ok(Some((KIND_MESSAGE, payload)))) => serde_json::from_slice::<Message>(&payload).ok(),
        _ => None,
    };
    let Some(Message::Hello { node_id, hostname, version, config_hash }) = hello else {
        tracing::warn!(peer = %peer, "data plane refused: it did not start with a hello");
        return;
    };
    if let Err(reason) = check_compatibility(&state.version, &version) {
        tracing::warn!(peer = %peer, node_id = %node_id, hostname = %hostname, version = %version, reason = %reason, "data plane refused");
        let _ = out.send_data(message_frame(&Message::Refused { reason })).await;
        return;
    }
    let now = state.services.clock.now();
    let mut node = match state.services.store.get_data_plane(state.control_plane_id, node_id).await {
        Ok(Some(known)) => known,
        Ok(None) => DataPlaneNode {
            id: node_id,
            control_plane_id: state.control_plane_id,
            hostname: String::new(),
            version: String::new(),
            config_hash: String::new(),
            last_error: None,
            last_ping: now,
            created_at: now,
            updated_at: now,
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot read the data plane's record; closing its stream for it to retry");
            return;
        }
    };
    node.hostname = hostname;
    node.version = version;
    node.config_hash = config_hash.unwrap_or_default();
    tracing::info!(peer = %peer, node_id = %node_id, hostname = %node.hostname, version = %node.version, "data plane connected");
    record(&state, &mut node).await;

    let mut published = state.published.clone();
    let mut ping = tokio::time::interval(state.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Three silent intervals and the data plane is taken as gone (it reconnects if it is not).
    let silence = state.ping_interval * 3;
    let mut heard = tokio::time::Instant::now();
    let mut send_config = true;
    loop {
        if send_config {
            send_config = false;
            let current = published.borrow_and_update().clone();
            if out.send_data(current.frame.clone()).await.is_err() {
                break;
            }
        }
        tokio::select! {
            changed = published.changed() => {
                if changed.is_err() {
                    break;
                }
                send_config = true;
            }
            _ = ping.tick() => {
                if heard.elapsed() > silence {
                    tracing::warn!(node_id = %node_id, "data plane silent for three heartbeats; closing its stream");
                    break;
                }
                if out.send_data(message_frame(&Message::Ping { config_hash: None })).await.is_err() {
                    break;
                }
            }
            frame = wire::next_frame(&mut incoming, &mut reader) => {
                let message = match frame {
                    Ok(Some((KIND_MESSAGE, payload))) => serde_json::from_slice::<Message>(&payload),
                    Ok(Some((kind, _))) => {
                        tracing::warn!(node_id = %node_id, kind, "data plane sent an unknown frame; closing its stream");
                        break;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(node_id = %node_id, error = %e, "data plane stream ended");
                        break;
                    }
                };
                heard = tokio::time::Instant::now();
                match message {
                    Ok(Message::Applied { hash, version }) => {
                        tracing::debug!(node_id = %node_id, hash = %hash, version, "data plane applied a configuration");
                        node.config_hash = hash;
                        node.last_error = None;
                    }
                    Ok(Message::ApplyFailed { hash, version, error }) => {
                        tracing::error!(node_id = %node_id, hash = %hash, version, error = %error, "a data plane could not apply the configuration; it keeps serving its previous one");
                        node.last_error = Some(format!("configuration {hash} (version {version}): {error}"));
                    }
                    Ok(Message::Ping { config_hash }) => {
                        if let Some(hash) = config_hash {
                            node.config_hash = hash;
                        }
                        if out.send_data(message_frame(&Message::Pong)).await.is_err() {
                            break;
                        }
                    }
                    Ok(Message::Pong) => {}
                    Ok(other) => tracing::debug!(node_id = %node_id, message = ?other, "unexpected message from a data plane"),
                    Err(e) => {
                        tracing::warn!(node_id = %node_id, error = %e, "data plane sent an unreadable message; closing its stream");
                        break;
                    }
                }
                record(&state, &mut node).await;
            }
        }
    }
    tracing::info!(node_id = %node_id, "data plane disconnected");
}

/// Saves what the data plane last reported, stamped now; a store that fails is logged, never the session's end.
async fn record(state: &ClusterState, node: &mut DataPlaneNode) {
    let now = state.services.clock.now();
    node.last_ping = now;
    node.updated_at = now;
    if let Err(e) = state.services.store.upsert_data_plane(node).await {
        tracing::warn!(node_id = %node.id, error = %e, "cannot record the data plane's report");
    }
}
