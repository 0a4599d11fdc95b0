//! Request smuggling and oversized headers: ambiguous framing and heads beyond Kong's limits (32 KiB, 100 header
//! lines) are refused with 400, the connection is closed, and nothing reaches the upstream as a second request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use gatehouse_testkit::TestNode;

/// An HTTP/1.1 upstream that counts the requests it parses.
async fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                // Room for a client's hundred headers plus the ones the proxy adds.
                let _ = hyper::server::conn::http1::Builder::new()
                    .max_headers(200)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

/// Sends raw bytes and returns everything the proxy answers until it closes: every request here is one the proxy
/// closes after (an error, or `Connection: close`), so the 30 s bound is only a backstop. It was 2 s, which also
/// ended keep-alive answers, and cut off a slow answer on a loaded machine.
async fn raw(proxy: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    let node = TestNode::start().await;
    let (upstream, count) = counting_upstream().await;
    node.admin(Method::POST, "/services", Some(json!({"name": "up", "url": upstream}))).await;
    node.admin(Method::POST, "/services/up/routes", Some(json!({"paths": ["/"]}))).await;
    node.wait_config().await;
    let proxy = node.proxy_url().trim_start_matches("http://").to_owned();

    // A well-formed request is forwarded once: the harness works.
    let ok = raw(&proxy, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&ok), 200, "{ok}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100 * 1024));
    let many =
        format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", (0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>());
    let wide = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", format!("X-Wide: {}\r\n", "w".repeat(2000)).repeat(20));
    let hundred = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
        (0..98).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "CL.TE",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "TE.CL",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "conflicting Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\nhelloGET /x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "comma-joined Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 30\r\n\r\nhello".to_vec(),
            &[400],
        ),
        (
            "obfuscated Transfer-Encoding value",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "chunked not last",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "space before the colon",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "two Transfer-Encoding headers",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "bare LF line endings",
            b"GET / HTTP/1.1\nHost: x\nConnection: close\nContent-Length: 5\n\nhello".to_vec(),
            &[400, 200],
        ),
        ("oversized header", big.into_bytes(), &[400]),
        ("too many headers", many.into_bytes(), &[400]),
        ("oversized head of a few wide headers", wide.into_bytes(), &[400]),
        ("a hundred headers", hundred.into_bytes(), &[200]),
    ];
    for (name, request, allowed) in cases {
        let before = count.load(Ordering::SeqCst);
        let response = raw(&proxy, &request).await;
        let status = status_of(&response);
        assert!(allowed.contains(&status), "{name}: got {status}: {response}");
        let forwarded = count.load(Ordering::SeqCst) - before;
        if status == 200 {
            assert_eq!(forwarded, 1, "{name}: one request, once");
        } else {
            assert_eq!(forwarded, 0, "{name}: nothing reached the upstream");
            assert!(!response.contains("HTTP/1.1 200"), "{name}: no second response was smuggled: {response}");
        }
    }
    // A head trickled in small pieces is measured the same way.
    let before = count.load(Ordering::SeqCst);
    let mut s = TcpStream::connect(&proxy).await.unwrap();
    s.set_nodelay(true).unwrap();
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\n{}", "X-Slow: trickle\r\n".repeat(3000));
    let mut refused = false;
    for piece in head.as_bytes().chunks(512) {
        if s.write_all(piece).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(status_of(&out) == 400 || (refused && out.is_empty()), "trickled head: {out}");
    assert_eq!(count.load(Ordering::SeqCst), before, "the trickled head was not forwarded");

    // The proxy is still fine.
    let ok = raw(&proxy, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&ok), 200);
    node.stop().await;
}
