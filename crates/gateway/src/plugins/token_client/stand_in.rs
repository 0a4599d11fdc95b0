//! A scripted token endpoint on loopback (tests only): it counts requests, keeps what each one carried, and
//! answers as told, including the failures a real issuer cannot produce on demand (a 500, no answer at all).
//!
//! Tokens it issues read `tok-<n>-exp-<unix seconds>`, `n` counting from 1 and the expiry computed with the test's
//! clock, so a test can tell from an upstream's view which token a request carried and whether it had lapsed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use gatehouse_model::{Clock, SharedClock};

/// What the endpoint answers.
#[derive(Debug, Clone)]
pub(crate) enum Script {
    /// A token valid for `expires_in` seconds (none: the field is left out).
    Token { expires_in: Option<i64> },
    /// This status and body.
    Fail(u16, &'static str),
    /// Never answers.
    Hang,
}

#[derive(Debug)]
pub(crate) struct StandIn {
    pub addr: SocketAddr,
    calls: AtomicUsize,
    seen: Mutex<Vec<(HeaderMap, String)>>,
    script: Mutex<Script>,
    clock: SharedClock,
    /// When set, answers wait until it is notified (one permit per answer).
    pub gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Notified on every request that arrives.
    pub arrived: tokio::sync::Notify,
}

impl StandIn {
    pub async fn start(script: Script, clock: SharedClock) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stand_in = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            calls: AtomicUsize::new(0),
            seen: Mutex::default(),
            script: Mutex::new(script),
            clock,
            gate: Mutex::default(),
            arrived: tokio::sync::Notify::new(),
        });
        let server = stand_in.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { server.answer(req).await }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        stand_in
    }

    pub fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    /// The headers and form body of every request so far.
    pub fn seen(&self) -> Vec<(HeaderMap, String)> {
        self.seen.lock().unwrap().clone()
    }

    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.seen.lock().unwrap().push((parts.headers, String::from_utf8_lossy(&body).into_owned()));
        self.arrived.notify_waiters();
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        let script = self.script.lock().unwrap().clone();
        let (status, body) = match script {
            Script::Token { expires_in } => {
                let exp = self.clock.now().secs() + expires_in.unwrap_or(3600);
                let mut answer = json!({"access_token": format!("tok-{n}-exp-{exp}"), "token_type": "Bearer"});
                if let Some(expires_in) = expires_in {
                    answer["expires_in"] = json!(expires_in);
                }
                (200, answer.to_string())
            }
            Script::Fail(status, body) => (status, body.to_owned()),
            Script::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert("content-type", "application/json".parse().unwrap());
        Ok(response)
    }
}

/// The issue number and expiry (unix seconds) of a stand-in token, from `Bearer tok-<n>-exp-<exp>`.
pub(crate) fn parse(bearer: &str) -> (usize, i64) {
    let token = bearer.strip_prefix("Bearer ").unwrap_or(bearer);
    let rest = token.strip_prefix("tok-").unwrap();
    let (n, exp) = rest.split_once("-exp-").unwrap();
    (n.parse().unwrap(), exp.parse().unwrap())
}
