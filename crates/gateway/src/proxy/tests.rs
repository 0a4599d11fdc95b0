//! Unit tests of the proxy's stages.

use super::serve::reuse_port;
use super::*;

#[test]
fn hosts_are_reg_names_or_ip_literals() {
    for ok in ["example.com", "Example.COM:8000", "[::1]:9", "127.0.0.1", "", "a_b-c~d%41", "x!$&'()*+,;=y"] {
        assert!(valid_host(ok.as_bytes()), "{ok}");
    }
    for bad in ["a/b", "user@host", "a b", "a\tb", "h\u{7f}", "h\u{e9}", "a?b", "a#b", "a\\b", "<h>", "\"h\""] {
        assert!(!valid_host(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn hosts_ports_and_authorities() {
    assert_eq!(split_host_port("Example.com:8000", 80), ("example.com".into(), 8000));
    assert_eq!(split_host_port("example.com", 8000), ("example.com".into(), 8000));
    assert_eq!(split_host_port("[::1]:9", 80), ("::1".into(), 9));
    assert!(matches!(split_host_port("example.com:8000", 80).0, Cow::Borrowed(_)), "no copy when lower-case");
    let authority = |host, port, protocol| crate::service::authority(host, port, protocol);
    assert_eq!(authority("httpbin.konghq.com", 80, "http"), "httpbin.konghq.com");
    assert_eq!(authority("h", 8443, "https"), "h:8443");
    assert_eq!(authority("::1", 80, "http"), "[::1]");
}

#[test]
fn hop_by_hop_headers_go_including_those_named_in_connection() {
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("close, x-secret-hop"));
    h.insert("x-secret-hop", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("x-kept", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("x-kept"));

    let mut h = HeaderMap::new();
    h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
    h.append(header::CONNECTION, HeaderValue::from_static("close, Upgrade"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("close", HeaderValue::from_static("named by an option"));
    h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    h.insert(header::VIA, HeaderValue::from_static("1.1 a"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h.keys().collect::<Vec<_>>(), [header::VIA], "every Connection value, every option, the eight");

    // Only options that are among the eight (nginx's `Connection: keep-alive`): the eight go, the rest stays.
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive , TE"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h.keys().collect::<Vec<_>>(), [header::CONTENT_TYPE]);

    let mut h = HeaderMap::new();
    h.insert(header::VIA, HeaderValue::from_static("1.1 a"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1, "nothing to strip");

    // Framing and target stay whatever `Connection` says.
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("host, content-length, x-hop"));
    h.insert(header::HOST, HeaderValue::from_static("api.example"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
    h.insert("x-hop", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h);
    assert!(h.len() == 2 && h.contains_key(header::HOST) && h.contains_key(header::CONTENT_LENGTH), "{h:?}");
}

#[test]
fn request_ids_are_unique_and_kong_shaped() {
    let ids = RequestIds::new();
    let (a, b) = (ids.next(), ids.next());
    let (a, b) = (a.text().to_owned(), b.text().to_owned());
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    // Consecutive: the counter half counts up by one.
    let counter = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
    assert_eq!(counter(&b), counter(&a).wrapping_add(1));
    assert_eq!(a[..16], b[..16]);
}

#[test]
fn hex_digits_are_zero_padded() {
    let mut out = [0u8; 16];
    hex_digits(0xab, &mut out);
    assert_eq!(&out, b"00000000000000ab");
    hex_digits(u64::MAX, &mut out);
    assert_eq!(&out, b"ffffffffffffffff");
}

/// A one-worker proxy with no routes on a loopback port, until the returned sender is dropped.
async fn start_proxy(client_header_timeout: Duration) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let limits = ConnectionLimits { header_timeout: client_header_timeout, ..ConnectionLimits::default() };
    let settings = ProxySettings { workers: 1, limits, ..Default::default() };
    let listener = TcpListener::from_std(reuse_port(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(Proxy::new(settings), listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads one response with a `Content-Length` and returns its status line.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a content-length");
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head.lines().next().unwrap_or_default().to_owned()
}

/// hyper's header timer comes from the worker's reused timers (`timer.rs`): a kept-alive connection whose
/// pauses are each shorter than the timeout stays open however long it lives, and a head that stops half-way
/// is cut off once the timeout passes.
///
/// The proxy's workers run their own runtimes on their own threads, so tokio's paused time cannot reach their
/// timers: the margins are what keep this exact on a loaded machine. Each pause is a tenth of the timeout (a
/// stall would have to stretch one tenfold), and the lower bound is taken before connecting, since the
/// server's timer may start as soon as it accepts (before, it was taken after `connect` returned, which the
/// accept can precede).
#[tokio::test]
async fn the_client_header_timeout_counts_each_wait_on_its_own() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = Duration::from_secs(2);
    let pause = timeout / 10;
    let (addr, _stop) = start_proxy(timeout).await;

    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..12 {
        kept.write_all(b"GET /none HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
        assert!(read_response(&mut kept).await.starts_with("http/1.1 404"));
        tokio::time::sleep(pause).await;
    }
    // 12 waits of a tenth of the timeout: more than the timeout in all, and the connection still serves.
    kept.write_all(b"GET /none HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
    assert!(read_response(&mut kept).await.starts_with("http/1.1 404"));

    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /none HTTP/1.1\r\nHost: exa").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a half-sent head is cut off");
    let waited = started.elapsed();
    assert!(waited >= timeout, "not before the timeout: cut off after {waited:?}");
}

#[test]
fn latency_values() {
    assert_eq!(millis(Duration::from_micros(999)), "0");
    assert_eq!(millis(Duration::from_millis(7)), "7");
    assert_eq!(millis(Duration::from_millis(10)), "10");
    assert_eq!(millis(Duration::from_secs(3)), "3000");
}
