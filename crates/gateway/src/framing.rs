//! Spotting requests that carry both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper frames such a request by `Transfer-Encoding`, drops `Content-Length` and closes the connection after
//! answering (RFC 9112 §6.1), so no request can be smuggled past it — but the handler can no longer tell that the
//! request was ambiguous, and the policy here is to refuse it. This watcher reads the same bytes as hyper, tracks
//! HTTP/1 message framing just far enough to find each request head, and records, per request in order, whether
//! its head had both headers. Anything it does not understand stops it; hyper answers those requests itself.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per connection: one entry per request head seen, `true` when it had both framing headers.
pub type Verdicts = Arc<Mutex<VecDeque<bool>>>;

const MAX_HEAD: usize = 128 * 1024;

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Fixed(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers(Vec<u8>),
    /// HTTP/2, or something hyper will refuse: stop watching.
    Off,
}

#[derive(Debug)]
pub struct FramingWatch {
    state: State,
    verdicts: Verdicts,
    started: bool,
}

impl FramingWatch {
    pub fn new(verdicts: Verdicts) -> Self {
        Self { state: State::Head(Vec::new()), verdicts, started: false }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        if !self.started && !bytes.is_empty() {
            self.started = true;
            if bytes.starts_with(b"PRI * HTTP/2.0") {
                self.state = State::Off;
            }
        }
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Head(buf) => {
                    // Leading empty lines before a request line are ignored by parsers.
                    if buf.is_empty() {
                        let skip = bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            return;
                        }
                    }
                    let before = buf.len();
                    buf.extend_from_slice(bytes);
                    match find_head_end(buf) {
                        Some(end) => {
                            let consumed = end - before;
                            let head = std::mem::take(buf);
                            bytes = &bytes[consumed..];
                            self.state = self.after_head(&head[..end]);
                        }
                        None if buf.len() > MAX_HEAD => self.state = State::Off,
                        None => return,
                    }
                }
                State::Fixed(left) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkSize(line) => match bytes.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&bytes[..i]);
                        bytes = &bytes[i + 1..];
                        let text = String::from_utf8_lossy(line);
                        let size = text.trim_end_matches('\r').split(';').next().unwrap_or("").trim();
                        self.state = match u64::from_str_radix(size, 16) {
                            Ok(0) => State::Trailers(Vec::new()),
                            Ok(n) => State::ChunkData(n),
                            Err(_) => State::Off,
                        };
                    }
                    None => {
                        line.extend_from_slice(bytes);
                        if line.len() > 1024 {
                            self.state = State::Off;
                        }
                        return;
                    }
                },
                State::ChunkData(left) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.state = State::ChunkDataEnd(0);
                    }
                }
                State::ChunkDataEnd(seen) => {
                    // The CRLF after a chunk's data.
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    if b == b'\n' {
                        self.state = State::ChunkSize(Vec::new());
                    } else if b != b'\r' || *seen > 0 {
                        self.state = State::Off;
                    } else {
                        *seen += 1;
                    }
                }
                State::Trailers(line) => match bytes.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&bytes[..i]);
                        bytes = &bytes[i + 1..];
                        let empty = line.iter().all(|b| *b == b'\r');
                        line.clear();
                        if empty {
                            self.state = State::Head(Vec::new());
                        }
                    }
                    None => {
                        line.extend_from_slice(bytes);
                        return;
                    }
                },
            }
        }
    }

    fn after_head(&mut self, head: &[u8]) -> State {
        let text = String::from_utf8_lossy(head);
        let mut content_length: Option<u64> = None;
        let mut transfer_encoding: Option<String> = None;
        let mut bad = false;
        for line in text.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else { continue };
            let (name, value) = (name.to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => match value.parse::<u64>() {
                    Ok(n) if content_length.is_none_or(|c| c == n) => content_length = Some(n),
                    _ => bad = true,
                },
                "transfer-encoding" => {
                    let joined = match transfer_encoding.take() {
                        Some(prev) => format!("{prev}, {value}"),
                        None => value.to_owned(),
                    };
                    transfer_encoding = Some(joined);
                }
                _ => {}
            }
        }
        let both = content_length.is_some() && transfer_encoding.is_some();
        if let Ok(mut v) = self.verdicts.lock() {
            v.push_back(both);
        }
        if bad {
            return State::Off;
        }
        match (transfer_encoding, content_length) {
            (Some(te), _) => {
                let last = te.rsplit(',').next().unwrap_or("").trim().to_ascii_lowercase();
                if last == "chunked" { State::ChunkSize(Vec::new()) } else { State::Off }
            }
            (None, Some(0) | None) => State::Head(Vec::new()),
            (None, Some(n)) => State::Fixed(n),
        }
    }
}

/// The end of a request head (after its blank line), accepting bare LF line ends as parsers do.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|b| *b == b'\n') {
        let at = i + p;
        let rest = &buf[at + 1..];
        if rest.starts_with(b"\r\n") {
            return Some(at + 3);
        }
        if rest.starts_with(b"\n") {
            return Some(at + 2);
        }
        i = at + 1;
    }
    None
}

/// A stream that shows hyper's reads to a [`FramingWatch`] on the way.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    watch: FramingWatch,
}

impl<S> Watched<S> {
    pub fn new(inner: S, verdicts: Verdicts) -> Self {
        Self { inner, watch: FramingWatch::new(verdicts) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            this.watch.feed(&buf.filled()[before..]);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts_for(chunks: &[&[u8]]) -> Vec<bool> {
        let verdicts: Verdicts = Arc::default();
        let mut w = FramingWatch::new(verdicts.clone());
        for c in chunks {
            w.feed(c);
        }
        verdicts.lock().unwrap().iter().copied().collect()
    }

    #[test]
    fn tracks_heads_across_bodies_and_chunks() {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n\
POST /d HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /e HTTP/1.1\r\n\r\n";
        assert_eq!(verdicts_for(&[stream]), vec![false, false, false, true, false]);
        // Byte by byte gives the same answer.
        let single: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(verdicts_for(&single), vec![false, false, false, true, false]);
    }

    #[test]
    fn stops_on_http2_and_on_what_hyper_refuses() {
        assert!(verdicts_for(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).is_empty());
        assert_eq!(
            verdicts_for(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nGET / HTTP/1.1\r\n\r\n"]),
            vec![false]
        );
        assert_eq!(verdicts_for(&[b"GET / HTTP/1.1\nHost: x\n\nGET /2 HTTP/1.1\n\n"]), vec![false, false]);
    }
}
