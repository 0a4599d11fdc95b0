//! Serving the listener: one thread per core, each with its own runtime, accept loop, upstream pool and timers;
//! every connection through the listener's gate.

use super::*;
use gatehouse_net::tls::{self, TlsAcceptor};

/// Serves the proxy on `listener` until `shutdown` resolves, then lets open requests finish (30 s at most).
///
/// Like nginx's workers, the proxy runs one thread per core (`ProxySettings::workers`), each with a
/// single-threaded runtime, its own accept loop and its own upstream pools, so a request is read, routed,
/// forwarded and answered without changing threads. In a bare hyper proxy on two cores this took about a sixth less
/// CPU per request than tokio's work-stealing runtime (see `docs/architecture.md`). Worker 0 accepts on `listener`; the
/// others bind the same address with `SO_REUSEPORT` (the listener must have been bound with it, as
/// `runtime::listener::bind_reusable` does) and the kernel spreads new connections across them.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with_tls(proxy, listener, None, shutdown).await
}

/// The proxy's TLS listener (Kong's `proxy_listen … ssl`): a socket bound with `SO_REUSEPORT`, and the TLS
/// settings its handshakes use (certificates from [`Proxy::certificates`]).
#[derive(Debug)]
pub struct TlsListener {
    pub listener: TcpListener,
    pub config: Arc<rustls::ServerConfig>,
}

/// [`serve`], with the TLS listener too: each worker accepts on both, and both share the listener's gate (its
/// caps count the proxy's connections, whichever port they came to).
pub async fn serve_with_tls(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Option<TlsListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let workers = proxy.configs.len();
    let mut sockets = Vec::with_capacity(workers);
    sockets.push((listener.into_std()?, None));
    let tls_addr = tls.as_ref().map(|t| t.listener.local_addr()).transpose()?;
    if let Some(tls_addr) = tls_addr {
        proxy.tls_port.store(tls_addr.port(), Ordering::Relaxed);
    }
    let mut tls_sockets: Vec<Option<(std::net::TcpListener, TlsAcceptor)>> = Vec::with_capacity(workers);
    if let Some(TlsListener { listener, config }) = tls {
        let acceptor = TlsAcceptor::from(config);
        tls_sockets.push(Some((listener.into_std()?, acceptor.clone())));
        for _ in 1..workers {
            let addr = tls_addr.unwrap_or_else(|| unreachable!("set with tls"));
            tls_sockets.push(Some((reuse_port(addr)?, acceptor.clone())));
        }
    }
    for _ in 1..workers {
        sockets.push((reuse_port(addr)?, None));
    }
    for (slot, tls) in sockets.iter_mut().zip(tls_sockets) {
        slot.1 = tls;
    }
    let (stop, stopped) = watch::channel(false);
    let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
    // One gate for all workers: the caps are the listener's.
    let gate = Gate::new("proxy", proxy.settings.limits, proxy.settings.trusted_ips.clone());
    let sweeping = CancellationToken::new();
    tokio::spawn(gate.clone().sweep_until(sweeping.clone().cancelled_owned()));
    for (index, (socket, tls)) in sockets.into_iter().enumerate() {
        let (proxy, stopped, done, gate) = (proxy.clone(), stopped.clone(), done.clone(), gate.clone());
        std::thread::Builder::new().name(format!("gatehouse-proxy-{index}")).spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| runtime.block_on(serve_worker(proxy, index, socket, tls, gate, stopped)));
            let _ = done.send(result);
        })?;
    }
    drop(done);
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => {}
        // A worker that ends on its own failed to start.
        Some(result) = finished.recv() => {
            let _ = stop.send(true);
            result?;
        }
    }
    let _ = stop.send(true);
    while let Some(result) = finished.recv().await {
        result?;
    }
    sweeping.cancel();
    Ok(())
}

/// A listener bound with `SO_REUSEPORT`, as [`serve`] needs one for its other workers (tests).
#[cfg(test)]
pub(crate) fn reusable_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    reuse_port(addr)
}

pub(super) fn reuse_port(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// One worker: accepts on its socket and serves each connection on its own runtime until told to stop. Every
/// connection goes through the listener's gate and is closed when it stays silent or idle too long.
async fn serve_worker(
    proxy: Arc<Proxy>,
    index: usize,
    socket: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, TlsAcceptor)>,
    gate: Arc<Gate>,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(socket)?;
    let listening = listener.local_addr()?;
    let tls = match tls {
        Some((socket, acceptor)) => {
            let listener = TcpListener::from_std(socket)?;
            let listening = listener.local_addr()?;
            Some((listener, listening, acceptor))
        }
        None => None,
    };
    let sleeps = Sleeps::default();
    let worker = Arc::new(Worker {
        index,
        pool: Pool::default(),
        ids: RequestIds::new(),
        sleeps: sleeps.clone(),
        log: WorkerLog::default(),
        connections: AtomicU64::new(0),
    });
    // Buffered access-log lines go out at least once a second (nginx's `flush=1s`).
    let flushing = proxy.access_log.is_on().then(|| {
        let (proxy, worker) = (proxy.clone(), worker.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                worker.log.flush(&proxy.access_log);
            }
        })
    });
    let limits = proxy.settings.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // hyper asks for a new header-read timer for every request on a keep-alive connection: reused ones cost
        // less (see `timer.rs`).
        .timer(sleeps)
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        // One flat buffer per write rather than a vectored write of head and body: API responses are small, and
        // copying their body behind the head cost less than the second iovec (bench/README.md, "writev"). Large
        // bodies pay one copy into the buffer, in pieces of at most `max_buf_size`.
        .writev(false)
        .max_headers(crate::framing::MAX_HEADER_LINES + 28);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(64 * 1024);
    let connections = TaskTracker::new();
    let mut errors = AcceptErrors::new("proxy");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        errors.failed(&e, &gate).await;
                        continue;
                    }
                };
                proxy.count(worker.index, |s| &s.accepted);
                // Refused: dropping the stream closes it at once, rather than leaving it to fill the backlog.
                let Some(admission) = gate.admit(peer.ip()) else { continue };
                proxy.count(worker.index, |s| &s.handled);
                let conn = client_connection(&proxy, &worker, &stream, peer, listening, admission.activity(), None);
                let verdicts: Verdicts = Default::default();
                let stream = Watched::new(stream, verdicts.clone());
                let connection = builder.serve_connection(TokioIo::new(stream), connection_service(conn, verdicts));
                let connection = connection.into_owned();
                connections.spawn(async move {
                    gatehouse_net::drive(connection, admission).await;
                });
                // Let connection tasks run between accepts: under a flood, the ones evicted to make room close
                // their sockets before more are taken (see `Gate`).
                tokio::task::yield_now().await;
            }
            Some(accepted) = async {
                match &tls {
                    Some((listener, _, _)) => Some(listener.accept().await),
                    None => std::future::pending().await,
                }
            } => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        errors.failed(&e, &gate).await;
                        continue;
                    }
                };
                let Some((_, listening, acceptor)) = &tls else { continue };
                proxy.count(worker.index, |s| &s.accepted);
                let Some(admission) = gate.admit(peer.ip()) else { continue };
                proxy.count(worker.index, |s| &s.handled);
                let (acceptor, builder, listening) = (acceptor.clone(), builder.clone(), *listening);
                let (proxy, worker) = (proxy.clone(), worker.clone());
                connections.spawn(async move {
                    // In the connection's own task, under the gate's deadlines: a handshake that never ends is
                    // closed like a connection that never sends a request.
                    let Some(stream) = tls::handshake(&acceptor, stream, admission.activity()).await else { return };
                    let (tcp, session) = stream.get_ref();
                    let sni = session.server_name().map(Box::from);
                    let conn =
                        client_connection(&proxy, &worker, tcp, peer, listening, admission.activity(), Some(sni));
                    let verdicts: Verdicts = Default::default();
                    let stream = Watched::new(stream, verdicts.clone());
                    let service = connection_service(conn, verdicts);
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    gatehouse_net::drive(connection, admission).await;
                });
                tokio::task::yield_now().await;
            }
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    drop(tls);
    // The other workers share the gate: whichever stops first tells every connection; telling twice is harmless.
    gate.shut_down();
    connections.close();
    connections.wait().await;
    if let Some(flushing) = flushing {
        flushing.abort();
    }
    worker.log.flush(&proxy.access_log);
    Ok(())
}

/// A newly admitted client connection, with what its requests reuse.
fn client_connection(
    proxy: &Arc<Proxy>,
    worker: &Arc<Worker>,
    stream: &tokio::net::TcpStream,
    peer: SocketAddr,
    listening: SocketAddr,
    activity: &Arc<Activity>,
    tls: Option<Option<Box<str>>>,
) -> Arc<ClientConnection> {
    let _ = stream.set_nodelay(true);
    // A wildcard listener learns the connection's own address from the socket, once per connection.
    let local = if listening.ip().is_unspecified() { stream.local_addr().unwrap_or(listening) } else { listening };
    let local_port = local.port();
    // Taken back when the connection is dropped (`ClientConnection`'s `Drop`).
    proxy.count(worker.index, |s| &s.active);
    Arc::new(ClientConnection {
        local,
        serial: worker.connections.fetch_add(1, Ordering::Relaxed) + 1,
        requests: AtomicU64::new(0),
        proxy: proxy.clone(),
        worker: worker.clone(),
        local_port_value: HeaderValue::from(local_port),
        upstream: std::sync::Mutex::new(KeptUpstreams::new()),
        peer,
        local_port,
        peer_value: HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("")),
        trusted: proxy.trusted(peer.ip()),
        activity: activity.clone(),
        tls: tls.is_some(),
        sni: tls.flatten(),
    })
}

/// The service hyper calls for each request on `conn`. HTTP/1 requests on a connection are handled in order, so
/// the framing verdicts `Watched` records pair up with them.
fn connection_service(
    conn: Arc<ClientConnection>,
    verdicts: Verdicts,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Tracked<ResponseBody>>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |req: Request<Incoming>| {
        let conn = conn.clone();
        let ambiguous = req.version() < http::Version::HTTP_2
            && verdicts.lock().ok().and_then(|mut v| v.pop_front()).unwrap_or(false);
        async move {
            // In flight until its response body has been sent.
            let guard = conn.activity.begin();
            let response = conn.proxy.handle(req, &conn, ambiguous).await;
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guard)))
        }
    })
}

impl Proxy {
    /// Adds one to one of `worker`'s connection counts.
    fn count(&self, worker: usize, counter: impl Fn(&WorkerStats) -> &AtomicU64) {
        if let Some(stats) = self.stats.get(worker) {
            counter(stats).fetch_add(1, Ordering::Relaxed);
        }
    }
}
