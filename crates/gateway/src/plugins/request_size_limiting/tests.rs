//! `request-size-limiting` through the proxy: declared lengths in each unit, `Expect: 100-continue`,
//! `require_content_length`, chunked bodies read whole and streamed, and HTTP/2 bodies without a length.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::harness::{Harness, plugin, route};

const NAME: &str = "request-size-limiting";

async fn limited() -> Harness {
    Harness::start(
        vec![
            route(10, &["/bytes"]),
            route(11, &["/kb"]),
            route(12, &["/mb"]),
            route(13, &["/strict"]),
            route(14, &["/big"]),
        ],
        vec![
            plugin(NAME, 10, json!({"allowed_payload_size": 10, "size_unit": "bytes"})),
            plugin(NAME, 11, json!({"allowed_payload_size": 1, "size_unit": "kilobytes"})),
            plugin(NAME, 12, json!({})),
            plugin(NAME, 13, json!({"allowed_payload_size": 10, "size_unit": "bytes", "require_content_length": true})),
            plugin(NAME, 14, json!({"allowed_payload_size": 100, "size_unit": "kilobytes"})),
        ],
    )
    .await
}

async fn post(h: &Harness, path: &str, body: Vec<u8>) -> (u16, Value) {
    let res = reqwest::Client::new().post(h.url(path)).body(body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Sends a raw HTTP/1.1 request and reads until the connection closes or a whole response with a length is in.
async fn raw(h: &Harness, head: &str, body_parts: &[&[u8]]) -> String {
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for part in body_parts {
        // The proxy may answer and close before everything is written.
        if stream.write_all(part).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && let Some(len) =
                head.lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|n| n.parse::<usize>().ok())
            && body.len() >= len
        {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn declared_lengths_are_judged_in_each_unit_with_kongs_413() {
    let h = limited().await;
    assert_eq!(post(&h, "/bytes", vec![b'a'; 10]).await.0, 200, "at the limit");
    let (status, body) = post(&h, "/bytes", vec![b'a'; 11]).await;
    assert_eq!(status, 413);
    assert_eq!(body["message"], "Request size limit exceeded");
    assert_eq!(body["request_id"].as_str().unwrap().len(), 32);
    assert_eq!(post(&h, "/kb", vec![b'a'; 1024]).await.0, 200, "1 kilobyte is 1024 bytes");
    assert_eq!(post(&h, "/kb", vec![b'a'; 1025]).await.0, 413);
    let (status, echo) = post(&h, "/mb", vec![b'a'; 200 * 1024]).await;
    assert_eq!((status, echo["body"].as_str().unwrap().len()), (200, 200 * 1024), "128 megabytes by default");
    // A client that waits for `100 Continue` is told 417 and never sends the body.
    let res = reqwest::Client::new()
        .post(h.url("/bytes"))
        .header("expect", "100-continue")
        .body(vec![b'a'; 11])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 417);
    assert_eq!(res.json::<Value>().await.unwrap()["message"], "Request size limit exceeded");
}

#[tokio::test]
async fn require_content_length_answers_411_unless_chunked() {
    let h = limited().await;
    let host = format!("Host: {}\r\n", h.addr);
    let no_length = raw(&h, &format!("GET /strict HTTP/1.1\r\n{host}Connection: close\r\n\r\n"), &[]).await;
    assert!(no_length.starts_with("HTTP/1.1 411"), "{no_length}");
    assert!(no_length.contains(r#""message":"A valid Content-Length header is required""#), "{no_length}");
    let chunked = raw(
        &h,
        &format!("POST /strict HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"),
        &[b"5\r\nhello\r\n0\r\n\r\n"],
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 200"), "chunked bodies are judged by their size: {chunked}");
    let too_big = raw(
        &h,
        &format!("POST /strict HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"),
        &[b"b\r\nhello world\r\n0\r\n\r\n"],
    )
    .await;
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    assert_eq!(post(&h, "/strict", b"hello".to_vec()).await.0, 200, "with a Content-Length");
    // Without the option, a request without a body passes.
    assert_eq!(reqwest::get(h.url("/bytes")).await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn a_chunked_body_past_the_limit_is_cut_off_mid_stream() {
    let h = limited().await;
    let host = format!("Host: {}\r\n", h.addr);
    let chunk = vec![b'x'; 16 * 1024];
    let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk, b"\r\n".to_vec()].concat();
    // 160 KiB in 16 KiB chunks against a 100 KiB limit: past the 64 KiB the proxy reads ahead, so the upstream
    // request has started when the limit is crossed.
    let mut parts: Vec<&[u8]> = vec![&framed; 10];
    parts.push(b"0\r\n\r\n");
    let answer = raw(&h, &format!("POST /big HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n"), &parts).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""message":"Request size limit exceeded""#), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "the rest of the body is never read: {answer}");
    // Under the limit, the same framing streams through whole.
    let mut parts: Vec<&[u8]> = vec![&framed; 5];
    parts.push(b"0\r\n\r\n");
    let answer = raw(
        &h,
        &format!("POST /big HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"),
        &parts,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&"x".repeat(80 * 1024)), "the whole body reached the upstream");
}

/// An HTTP/2 request body in frames, without `content-length`.
async fn h2_post(h: &Harness, path: &str, chunks: usize, chunk: usize) -> (u16, Bytes) {
    let stream = TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
        (0..chunks).map(|_| Ok(Frame::data(Bytes::from(vec![b'y'; chunk])))).collect();
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let req = http::Request::post(format!("http://{}{path}", h.addr)).body(body).unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default())
}

#[tokio::test]
async fn http2_bodies_without_a_length_are_counted() {
    let h = limited().await;
    let (status, body) = h2_post(&h, "/bytes", 3, 4).await;
    assert_eq!(status, 413, "read whole, 12 bytes over 10");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["message"], "Request size limit exceeded");
    assert_eq!(h2_post(&h, "/bytes", 2, 5).await.0, 200);
    assert_eq!(h2_post(&h, "/big", 10, 16 * 1024).await.0, 413, "streamed, 160 KiB over 100 KiB");
    let (status, echo) = h2_post(&h, "/big", 5, 16 * 1024).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&echo).unwrap()["body"].as_str().unwrap().len(), 80 * 1024);
    // HTTP/2 has no chunked coding: without a length, `require_content_length` refuses it.
    assert_eq!(h2_post(&h, "/strict", 1, 5).await.0, 411);
}
