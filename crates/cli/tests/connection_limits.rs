//! Idle and slow connections cannot take a node down: every listener caps its connections (making room by
//! closing its longest-idle one), closes connections that send nothing or stay idle past their deadlines, and
//! bounds the time a request body may take. Issue 15, item 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use tokio::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{closed_by_server, recording_upstream};
use gatehouse_testkit::TestNode;

/// A node with short deadlines (one second) on every listener.
async fn quick_node() -> TestNode {
    TestNode::builder()
        .configure(|c| {
            for listener in [&mut c.proxy, &mut c.admin, &mut c.platform, &mut c.issuer, &mut c.echo] {
                listener.client_header_timeout = Some(1.0);
                listener.keepalive_timeout = Some(1.0);
                listener.client_body_timeout = Some(1.0);
                listener.send_timeout = Some(1.0);
            }
        })
        .start()
        .await
        .unwrap()
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Reads one response (head and a `Content-Length` body) and returns its status.
async fn read_response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return common::status_of(&head);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a whole response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn kept_alive_connections_close_when_idle_but_not_while_busy() {
    let node = quick_node().await;
    let platform = addr_of(&node.platform);

    // HTTP/1: one request, then nothing; the server closes the connection after the keep-alive deadline.
    // Lower bounds are taken from before the request: the server's deadline can only start later.
    let mut h1 = TcpStream::connect(&platform).await.unwrap();
    let idle_from = Instant::now();
    h1.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut h1).await, 200);
    let closed = closed_by_server(h1, Duration::from_secs(15)).await.expect("an idle HTTP/1 connection is closed");
    assert!(closed - idle_from >= Duration::from_secs(1), "not before the deadline: {:?}", closed - idle_from);

    // HTTP/2 (cleartext, prior knowledge): one request, then idle; the server ends the connection.
    let stream = TcpStream::connect(&platform).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driven = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{platform}/health"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let idle_from = Instant::now();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    tokio::time::timeout(Duration::from_secs(15), driven)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .unwrap()
        .ok();
    assert!(idle_from.elapsed() >= Duration::from_secs(1));

    // A request in flight for five times the deadlines (the echo's /delay) keeps its connection.
    let echo = node.echo_url();
    let res = reqwest::get(format!("{echo}/delay/5")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "a slow answer is not taken for an idle connection");
    node.stop().await;
}

#[tokio::test]
async fn request_bodies_must_arrive_in_time() {
    let node = quick_node().await;
    // An API listener: the whole body within the body deadline, else 400 and the connection closed.
    let mut stalled = TcpStream::connect(addr_of(&node.platform)).await.unwrap();
    let head = format!(
        "POST /v1/auth-servers HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        node.token
    );
    let started = Instant::now();
    stalled.write_all(head.as_bytes()).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), read_response(&mut stalled)).await.unwrap();
    assert_eq!(status, 400);
    assert!(started.elapsed() >= Duration::from_secs(1));
    let (_, servers) = node.get("/v1/auth-servers").await;
    assert_eq!(servers["data"].as_array().unwrap().len(), 0, "nothing was created");

    // The proxy: a chunked body that stops is answered 408 once it has paused past the deadline, and nothing is
    // sent upstream.
    let (upstream, seen) = recording_upstream().await;
    node.admin_ok(Method::POST, "/services", json!({"name": "up", "url": upstream})).await;
    node.admin_ok(Method::POST, "/services/up/routes", json!({"paths": ["/up"]})).await;
    node.wait_config().await;
    let mut stalled = TcpStream::connect(addr_of(&node.proxy_url())).await.unwrap();
    stalled
        .write_all(b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), read_response(&mut stalled)).await.unwrap();
    assert_eq!(status, 408);
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent upstream");
    node.stop().await;
}

/// An upstream that answers every request with `size` bytes, streamed in 64 KiB pieces.
async fn large_upstream(size: usize) -> String {
    use http_body_util::StreamBody;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| async move {
                        let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
                        let frames =
                            futures_util::stream::iter((0..size / chunk.len()).map(move |_| {
                                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk.clone()))
                            }));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(StreamBody::new(frames)))
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A client that asks for a large answer and stops reading it holds its connection only until the send timeout:
/// the request is in flight all along, so before the send timeout nothing ever closed it.
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    const SIZE: usize = 32 << 20;
    let node = quick_node().await;
    let upstream = large_upstream(SIZE).await;
    node.admin_ok(Method::POST, "/services", json!({"name": "large", "url": upstream})).await;
    node.admin_ok(Method::POST, "/services/large/routes", json!({"paths": ["/large"]})).await;
    node.wait_config().await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window, so the answer backs up into the proxy at once.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(addr_of(&node.proxy_url()).parse().unwrap()).await.unwrap();
    client.write_all(b"GET /large HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    // Five times the send timeout without reading a byte.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the proxy closed the connection");
    assert!(received < SIZE, "the answer was cut off, not sent in full once the client read again: {received}");
    node.stop().await;
}
