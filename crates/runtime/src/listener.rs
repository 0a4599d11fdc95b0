//! Binding listeners safely and serving routers on them.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::normalize_path::NormalizePath;

use gatehouse_net::tls::{self, TlsAcceptor};
use gatehouse_net::{AcceptErrors, DeadlineBody, Gate, Tracked};

/// The listeners of a node (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    Proxy,
    Admin,
    Platform,
    Issuer,
    Echo,
    /// Kong's `status_listen`: `/status`, `/status/ready` and `/metrics`.
    Status,
}

impl ListenerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Proxy => "proxy",
            ListenerKind::Admin => "admin",
            ListenerKind::Platform => "platform",
            ListenerKind::Issuer => "issuer",
            ListenerKind::Echo => "echo",
            ListenerKind::Status => "status",
        }
    }

    /// This listener's share of the node's file descriptors.
    pub fn share(self) -> gatehouse_net::ListenerShare {
        use gatehouse_net::ListenerShare as S;
        match self {
            ListenerKind::Proxy => S::Proxy,
            ListenerKind::Admin => S::Admin,
            ListenerKind::Platform => S::Platform,
            ListenerKind::Issuer => S::Issuer,
            ListenerKind::Echo => S::Echo,
            // Scrapers and probes: a handful of connections, like the admin API's.
            ListenerKind::Status => S::Admin,
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "the admin API has no authentication, so it only binds a loopback address (asked for {0}); reach it through \
         an SSH tunnel or a proxy that authenticates"
    )]
    AdminNotLoopback(SocketAddr),
    #[error(
        "{kind} would serve plain HTTP on the non-loopback address {addr}; serve TLS there (tls_cert and tls_key, or \
         proxy.listen_tls for the proxy), or set allow_plaintext_public = true to accept plain HTTP"
    )]
    PlaintextPublic { kind: ListenerKind, addr: SocketAddr },
    #[error("cannot bind the {kind} listener to {addr}: {source}")]
    Io { kind: ListenerKind, addr: SocketAddr, source: std::io::Error },
}

/// Every listener defaults to loopback. The admin API, which has no authentication, never binds anything else;
/// the others need TLS or `allow_plaintext_public` (`public_ok` is either) because credentials would otherwise
/// cross the network in clear text.
pub fn check_bind(kind: ListenerKind, addr: SocketAddr, public_ok: bool) -> Result<(), BindError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    match kind {
        ListenerKind::Admin => Err(BindError::AdminNotLoopback(addr)),
        _ if public_ok => Ok(()),
        _ => Err(BindError::PlaintextPublic { kind, addr }),
    }
}

/// Binds after the safety check (`public_ok`: TLS, or plain HTTP allowed in public) and logs the address actually
/// bound (port 0 picks a free one), with `"tls":true` on a TLS listener.
pub async fn bind(kind: ListenerKind, addr: SocketAddr, public_ok: bool) -> Result<TcpListener, BindError> {
    bind_tls(kind, addr, public_ok, false).await
}

/// [`bind`], saying whether the listener serves TLS.
pub async fn bind_tls(
    kind: ListenerKind,
    addr: SocketAddr,
    public_ok: bool,
    tls: bool,
) -> Result<TcpListener, BindError> {
    check_bind(kind, addr, public_ok)?;
    let listener = TcpListener::bind(addr).await.map_err(|source| BindError::Io { kind, addr, source })?;
    if let Ok(bound) = listener.local_addr() {
        log_listening(kind, bound, tls);
    }
    Ok(listener)
}

fn log_listening(kind: ListenerKind, bound: SocketAddr, tls: bool) {
    if tls {
        // The proxy's TLS listener is a second one beside `proxy` (Kong's 8443 beside 8000), so it has its own name.
        let name = if kind == ListenerKind::Proxy { "proxy_tls" } else { kind.as_str() };
        tracing::info!(listener = name, address = %bound, tls = true, "listening");
    } else {
        tracing::info!(listener = kind.as_str(), address = %bound, "listening");
    }
}

/// Like [`bind`], with `SO_REUSEPORT` set so that more sockets can bind the same address (the proxy's worker
/// threads each accept on their own). Linux lets only the same user join, so no other account can take a share
/// of the connections.
pub async fn bind_reusable(
    kind: ListenerKind,
    addr: SocketAddr,
    public_ok: bool,
    tls: bool,
) -> Result<TcpListener, BindError> {
    check_bind(kind, addr, public_ok)?;
    let io = |source| BindError::Io { kind, addr, source };
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(io)?;
    socket.set_reuseaddr(true).map_err(io)?;
    socket.set_reuseport(true).map_err(io)?;
    socket.bind(addr).map_err(io)?;
    let listener = socket.listen(1024).map_err(io)?;
    if let Ok(bound) = listener.local_addr() {
        log_listening(kind, bound, tls);
    }
    Ok(listener)
}

/// Serves a router until `shutdown` resolves, then lets in-flight requests finish. A trailing slash is ignored
/// (`…/plugins/` as Kong's docs write it reaches `…/plugins`); every request gets an access-log line.
///
/// Connections go through `gate` (its caps, and closing the longest-idle connection when full) and are closed
/// when they stay silent or idle past its deadlines; request bodies must arrive within its body timeout. With
/// `tls`, each connection's handshake runs in its own task under the same gate and deadlines. hyper
/// itself bounds HTTP/1 request heads by the header timeout.
pub async fn serve(
    kind: ListenerKind,
    listener: TcpListener,
    router: Router,
    gate: Arc<Gate>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router
        .layer(axum::middleware::from_fn(move |req, next| crate::request_log::access_log(kind.as_str(), req, next)));
    let service = NormalizePath::trim_trailing_slash(router);
    let limits = *gate.limits();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    tokio::spawn(gate.clone().sweep_until(stopping.clone().cancelled_owned()));
    let mut errors = AcceptErrors::new(kind.as_str());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    errors.failed(&e, &gate).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Refused: dropping the stream closes it at once, rather than leaving it to fill the backlog.
        let Some(admission) = gate.admit(peer.ip()) else { continue };
        let activity = admission.activity().clone();
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = activity.begin();
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout)));
            // What `axum::serve` would insert: handlers read the peer's address from it.
            request.extensions_mut().insert(ConnectInfo(peer));
            let call = tower::ServiceExt::oneshot(service.clone(), request);
            async move {
                let response = call.await?;
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked::new(body, guard))))
            }
        });
        match &tls {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), per_request).into_owned();
                connections.spawn(async move {
                    gatehouse_net::drive(connection, admission).await;
                });
            }
            Some(acceptor) => {
                let (acceptor, builder) = (acceptor.clone(), builder.clone());
                connections.spawn(async move {
                    // In the connection's task, under the gate: a stalled handshake holds up nobody else.
                    let Some(stream) = tls::handshake(&acceptor, stream, admission.activity()).await else { return };
                    let connection = builder.serve_connection(TokioIo::new(stream), per_request).into_owned();
                    gatehouse_net::drive(connection, admission).await;
                });
            }
        }
        // Let connection tasks run between accepts: under a flood, the ones evicted to make room close their
        // sockets before more are taken (see `Gate`).
        tokio::task::yield_now().await;
    }
    drop(listener);
    gate.shut_down();
    stopping.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_rules() {
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:1".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:1".parse().unwrap();
        assert!(check_bind(ListenerKind::Admin, "127.0.0.1:1".parse().unwrap(), false).is_ok());
        assert!(check_bind(ListenerKind::Admin, v6_loopback, false).is_ok());
        assert!(matches!(check_bind(ListenerKind::Admin, any, true), Err(BindError::AdminNotLoopback(_))));
        for kind in [ListenerKind::Proxy, ListenerKind::Issuer, ListenerKind::Platform, ListenerKind::Echo] {
            assert!(check_bind(kind, lan, false).is_err());
            assert!(check_bind(kind, lan, true).is_ok());
        }
    }

    #[tokio::test]
    async fn port_zero_picks_a_free_port() {
        let l = bind(ListenerKind::Platform, "127.0.0.1:0".parse().unwrap(), false).await.unwrap();
        assert_ne!(l.local_addr().unwrap().port(), 0);
    }
}
