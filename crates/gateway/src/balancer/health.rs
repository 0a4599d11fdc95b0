//! Active health checks: each target probed at the upstream's intervals (`healthy.interval` for healthy targets,
//! `unhealthy.interval` for unhealthy ones), up to `concurrency` probes at once, each within `timeout`.

use std::sync::Weak;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio_util::either::Either;

use super::{Balancer, Outcome, Thresholds};

/// Probes the balancer's targets until the balancer is replaced (the configuration changed) or dropped.
pub async fn probe_loop(balancer: Weak<Balancer>) {
    let (healthy_every, unhealthy_every) = match balancer.upgrade() {
        Some(b) => {
            let a = &b.spec.healthchecks.active;
            (seconds(a.healthy.interval), seconds(a.unhealthy.interval))
        }
        None => return,
    };
    // The loop ticks at the shorter interval; each target is probed when its own interval has passed.
    let tick = [healthy_every, unhealthy_every].into_iter().flatten().min().unwrap_or(Duration::from_secs(1));
    let mut last: Vec<Option<tokio::time::Instant>> = Vec::new();
    loop {
        tokio::time::sleep(tick).await;
        let Some(b) = balancer.upgrade() else { return };
        if last.len() != b.targets.len() {
            last = vec![None; b.targets.len()];
        }
        let now = tokio::time::Instant::now();
        let due: Vec<usize> = (0..b.targets.len())
            .filter(|&i| {
                let every = if b.targets[i].is_healthy() { healthy_every } else { unhealthy_every };
                every.is_some_and(|every| last[i].is_none_or(|at| now.duration_since(at) + tick / 2 >= every))
            })
            .collect();
        let concurrency = b.spec.healthchecks.active.concurrency.max(1) as usize;
        for chunk in due.chunks(concurrency) {
            let probes = chunk.iter().map(|&i| probe(&b, i));
            let results = futures_util::future::join_all(probes).await;
            let a = &b.spec.healthchecks.active;
            let thresholds = Thresholds {
                healthy_statuses: &a.healthy.http_statuses,
                successes: a.healthy.successes,
                unhealthy_statuses: &a.unhealthy.http_statuses,
                tcp_failures: a.unhealthy.tcp_failures,
                timeouts: a.unhealthy.timeouts,
                http_failures: a.unhealthy.http_failures,
            };
            for (&i, outcome) in chunk.iter().zip(results) {
                last[i] = Some(now);
                if let Some(verdict) = thresholds.verdict(&b.targets[i], outcome) {
                    b.count(i, verdict, "active");
                }
            }
        }
        drop(b);
    }
}

fn seconds(s: f64) -> Option<Duration> {
    (s > 0.0).then(|| Duration::from_secs_f64(s))
}

/// One probe: a TCP connection (`type: tcp`), or a GET of `http_path` over HTTP or HTTPS.
async fn probe(b: &Balancer, i: usize) -> Outcome {
    let a = &b.spec.healthchecks.active;
    let t = &b.targets[i];
    // A host-name target is probed at one of its addresses, in turn.
    let address = match t.name.as_ref().map(|name| name.next_address(None)) {
        Some(Ok(Some(found))) => found,
        Some(Err(())) => return Outcome::TcpFailure,
        _ => t.authority.clone(),
    };
    let timeout = Duration::from_secs_f64(a.timeout.max(0.001));
    let attempt = async {
        if a.kind == "tcp" {
            return match tokio::net::TcpStream::connect(address.as_str()).await {
                Ok(_) => Outcome::Status(200),
                Err(_) => Outcome::TcpFailure,
            };
        }
        let Ok(tcp) = tokio::net::TcpStream::connect(address.as_str()).await else { return Outcome::TcpFailure };
        let _ = tcp.set_nodelay(true);
        let stream = if a.kind == "https" {
            // Kong's `https_sni`, else the target's host (a name, or an address, which sends no SNI).
            let name = a.https_sni.as_deref().unwrap_or(t.host());
            let Ok(name) = rustls::pki_types::ServerName::try_from(name.to_owned()) else {
                return Outcome::TcpFailure;
            };
            let Ok(config) = crate::upstream::probe_tls(a.https_verify_certificate) else {
                return Outcome::TcpFailure;
            };
            match tokio_rustls::TlsConnector::from(config).connect(name, tcp).await {
                Ok(tls) => Either::Right(tls),
                Err(_) => return Outcome::TcpFailure,
            }
        } else {
            Either::Left(tcp)
        };
        let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
            return Outcome::TcpFailure;
        };
        tokio::spawn(connection);
        let mut request = http::Request::get(a.http_path.as_str()).header(http::header::HOST, t.authority.as_str());
        for (name, values) in a.headers.iter().flatten() {
            for value in values {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        let Ok(request) = request.body(Empty::<Bytes>::new()) else { return Outcome::TcpFailure };
        match sender.send_request(request).await {
            Ok(response) => Outcome::Status(response.status().as_u16()),
            Err(_) => Outcome::TcpFailure,
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or(Outcome::Timeout)
}
