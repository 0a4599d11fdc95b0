//! Spotting requests that carry both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper frames such a request by `Transfer-Encoding`, drops `Content-Length` and closes the connection after
//! answering (RFC 9112 §6.1), so no request can be smuggled past it — but the handler can no longer tell that the
//! request was ambiguous, and the policy here is to refuse it. This watcher reads the same bytes as hyper, tracks
//! HTTP/1 message framing just far enough to find each request head, and records, per request in order, whether
//! its head had both headers. Anything it does not understand stops it; hyper answers those requests itself.
//!
//! It also bounds request heads as Kong's nginx does (32 KiB, 100 header lines) and answers oversized ones with
//! 400 like Kong, where hyper alone would answer 431: at the first byte past a limit the stream hyper reads is cut
//! and ends in a byte no header may contain, so hyper's own parser refuses the head with 400 and closes the
//! connection. Nothing past the limit is ever parsed or forwarded.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per connection: one entry per request head seen, `true` when it had both framing headers.
pub type Verdicts = Arc<Mutex<VecDeque<bool>>>;

/// The largest request head accepted (request line and headers), as Kong's `large_client_header_buffers 4 8k`.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// The most header lines a request head may carry; hyper's own limit must be above this one.
pub const MAX_HEADER_LINES: usize = 100;
/// What hyper reads after the cut: a control character is invalid anywhere in a request line or header, so the
/// parser fails with its 400 "bad request" answer.
const POISON: &[u8] = b"\x01\r\n\r\n";

#[derive(Debug)]
enum State {
    /// Reading a request head into [`FramingWatch::head`].
    Head,
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
    /// The head being read; its buffer is reused from one request to the next.
    head: HeadScan,
    verdicts: Verdicts,
    started: bool,
}

impl FramingWatch {
    pub fn new(verdicts: Verdicts) -> Self {
        Self { state: State::Head, head: HeadScan::default(), verdicts, started: false }
    }

    /// Watches one chunk of bytes; returns the offset in `chunk` of the first byte past the head limits, if any
    /// (the watcher stops there).
    pub fn feed(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut bytes = chunk;
        if !self.started && !bytes.is_empty() {
            self.started = true;
            if bytes.starts_with(b"PRI * HTTP/2.0") {
                self.state = State::Off;
            }
        }
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return None,
                State::Head => {
                    // Leading empty lines before a request line are ignored by parsers.
                    if self.head.buf.is_empty() {
                        let skip = bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            return None;
                        }
                    }
                    let offset = chunk.len() - bytes.len();
                    match self.head.advance(bytes) {
                        Scan::Incomplete => return None,
                        Scan::PastLimits(at) => {
                            self.state = State::Off;
                            return Some(offset + at);
                        }
                        Scan::Complete(at) => {
                            bytes = &bytes[at..];
                            self.state = self.after_head();
                            self.head.buf.clear();
                            self.head.line_ends = 0;
                        }
                    }
                }
                State::Fixed(left) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkSize(line) => match memchr::memchr(b'\n', bytes) {
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
                        return None;
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
                State::Trailers(line) => match memchr::memchr(b'\n', bytes) {
                    Some(i) => {
                        line.extend_from_slice(&bytes[..i]);
                        bytes = &bytes[i + 1..];
                        let empty = line.iter().all(|b| *b == b'\r');
                        line.clear();
                        if empty {
                            self.state = State::Head;
                        }
                    }
                    None => {
                        line.extend_from_slice(bytes);
                        return None;
                    }
                },
            }
        }
        None
    }

    /// Reads the framing headers of the complete head in `self.head` and records the verdict.
    fn after_head(&mut self) -> State {
        let mut content_length: Option<u64> = None;
        // Any `Content-Length` line counts towards "both", readable or not: hyper skips a length after a
        // `Transfer-Encoding` line without reading it, so a garbled one would otherwise pass as no length at all.
        let mut saw_length = false;
        let mut conflicting_lengths = false;
        // The last coding of the last Transfer-Encoding line: what frames the body.
        let mut last_coding: Option<&[u8]> = None;
        let buf = &self.head.buf;
        // Header lines: between the newlines after the request line (found with memchr: heads with bearer tokens
        // run to a kilobyte, and every request head passes through here).
        let mut rest = memchr::memchr(b'\n', buf).map_or(&buf[buf.len()..], |i| &buf[i + 1..]);
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let line = &rest[..end];
            rest = &rest[end + 1..];
            let Some(colon) = memchr::memchr(b':', line) else { continue };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                saw_length = true;
                match std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok()) {
                    Some(n) if content_length.is_none_or(|c| c == n) => content_length = Some(n),
                    _ => conflicting_lengths = true,
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                last_coding = value.rsplit(|b| *b == b',').next().map(<[u8]>::trim_ascii);
            }
        }
        let both = saw_length && last_coding.is_some();
        if let Ok(mut v) = self.verdicts.lock() {
            v.push_back(both);
        }
        if conflicting_lengths {
            return State::Off;
        }
        match (last_coding, content_length) {
            (Some(coding), _) if coding.eq_ignore_ascii_case(b"chunked") => State::ChunkSize(Vec::new()),
            (Some(_), _) => State::Off,
            (None, Some(0) | None) => State::Head,
            (None, Some(n)) => State::Fixed(n),
        }
    }
}

/// A request head read so far. Bytes are looked at once each, so a client trickling a head byte by byte costs
/// no more than one sending it whole.
#[derive(Debug, Default)]
struct HeadScan {
    buf: Vec<u8>,
    line_ends: usize,
}

enum Scan {
    Incomplete,
    /// The head ended after this many of the given bytes.
    Complete(usize),
    /// This byte of the given ones is the first past [`MAX_HEAD_BYTES`] or starts a header line past
    /// [`MAX_HEADER_LINES`].
    PastLimits(usize),
}

impl HeadScan {
    fn advance(&mut self, bytes: &[u8]) -> Scan {
        let mut from = 0;
        while from < bytes.len() {
            let newline = memchr::memchr(b'\n', &bytes[from..]);
            let end = newline.map_or(bytes.len(), |p| from + p + 1);
            let starts_a_line_too_many = self.line_ends > MAX_HEADER_LINES
                && self.buf.last() == Some(&b'\n')
                && !matches!(bytes[from], b'\r' | b'\n');
            if starts_a_line_too_many {
                return Scan::PastLimits(from);
            }
            if self.buf.len() + (end - from) > MAX_HEAD_BYTES {
                return Scan::PastLimits(from + (MAX_HEAD_BYTES - self.buf.len()));
            }
            self.buf.extend_from_slice(&bytes[from..end]);
            from = end;
            if newline.is_some() {
                // A blank line (CRLF or a bare LF, which parsers accept) ends the head.
                let n = self.buf.len();
                let blank = n >= 2
                    && (self.buf[n - 2] == b'\n' || (n >= 3 && self.buf[n - 2] == b'\r' && self.buf[n - 3] == b'\n'));
                if blank {
                    return Scan::Complete(from);
                }
                self.line_ends += 1;
            }
        }
        Scan::Incomplete
    }
}

/// A stream that shows hyper's reads to a [`FramingWatch`] on the way.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    watch: FramingWatch,
    /// After a head went past the limits: what is left of [`POISON`] to hand to hyper before the stream ends.
    cut: Option<&'static [u8]>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, verdicts: Verdicts) -> Self {
        Self { inner, watch: FramingWatch::new(verdicts), cut: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.cut {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.cut = Some(&rest[n..]);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll
            && let Some(limit) = this.watch.feed(&buf.filled()[before..])
        {
            buf.set_filled(before + limit);
            let n = POISON.len().min(buf.remaining());
            buf.put_slice(&POISON[..n]);
            this.cut = Some(&POISON[n..]);
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
            assert_eq!(w.feed(c), None);
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

    /// Found by the property test below: `Transfer-Encoding` then a `Content-Length` hyper never reads (it skips
    /// lengths after a coding) used to count as no length, so the request was proxied.
    #[test]
    fn an_unreadable_length_beside_a_coding_is_still_both() {
        let garbled = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(verdicts_for(&[garbled]), vec![true]);
        assert_eq!(verdicts_for(&[b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\nGET / HTTP/1.1\r\n\r\n"]), vec![false]);
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

    fn head_with(headers: usize, value_len: usize) -> Vec<u8> {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..headers {
            head.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(value_len)).as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    fn cut_at(stream: &[u8], chunk: usize) -> Option<usize> {
        let mut w = FramingWatch::new(Verdicts::default());
        let mut seen = 0;
        for c in stream.chunks(chunk) {
            if let Some(at) = w.feed(c) {
                return Some(seen + at);
            }
            seen += c.len();
        }
        None
    }

    #[test]
    fn heads_within_the_limits_pass() {
        let most_lines = head_with(MAX_HEADER_LINES, 1);
        let request_line = b"GET / HTTP/1.1\r\n".len();
        let most_bytes = head_with(1, MAX_HEAD_BYTES - request_line - b"X-H0: \r\n\r\n".len());
        assert_eq!(most_bytes.len(), MAX_HEAD_BYTES);
        for head in [most_lines, most_bytes] {
            for chunk in [1, 7, 4096, head.len()] {
                assert_eq!(cut_at(&head, chunk), None);
            }
        }
    }

    #[test]
    fn heads_past_the_limits_are_cut_at_the_first_byte_past() {
        let too_many = head_with(MAX_HEADER_LINES + 1, 1);
        let line_101 = too_many.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(MAX_HEADER_LINES).unwrap().0 + 1;
        let too_big = head_with(1, MAX_HEAD_BYTES);
        let after_a_body = [b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".as_slice(), &too_big].concat();
        for chunk in [1, 7, 4096, 1 << 20] {
            assert_eq!(cut_at(&too_many, chunk), Some(line_101), "chunks of {chunk}");
            assert_eq!(cut_at(&too_big, chunk), Some(MAX_HEAD_BYTES), "chunks of {chunk}");
            assert_eq!(cut_at(&after_a_body, chunk), Some(after_a_body.len() - too_big.len() + MAX_HEAD_BYTES));
        }
    }
}

/// The watcher against `httparse` (hyper's own head parser): on generated streams of HTTP/1 requests it records
/// the verdict httparse's reading of each head gives, stops where that reading says framing is beyond it, and
/// gives the same verdicts however the stream is cut into reads. On arbitrary bytes it never panics.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A header line's name, in any case, and its value, with optional whitespace around it.
    fn header() -> impl Strategy<Value = (String, String)> {
        let name = prop_oneof![
            Just("Content-Length"),
            Just("Transfer-Encoding"),
            Just("Host"),
            Just("X-Other"),
            Just("Content-Lengthy"),
        ];
        let value = prop_oneof![
            (0u64..40).prop_map(|n| n.to_string()),
            Just("chunked".to_owned()),
            Just("gzip, chunked".to_owned()),
            Just("chunked, gzip".to_owned()),
            Just("gzip".to_owned()),
            Just("5, 5".to_owned()),
            Just(String::new()),
            "[a-z0-9]{1,8}",
        ];
        (name, any::<u32>(), value, prop_oneof![Just(""), Just(" "), Just("\t ")], prop_oneof![Just(""), Just(" ")])
            .prop_map(|(name, case, value, before, after)| {
                // Each letter upper or lower case by a bit of `case`.
                let name: String = name
                    .chars()
                    .enumerate()
                    .map(
                        |(i, c)| {
                            if case >> (i % 32) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
                        },
                    )
                    .collect();
                (name, format!("{before}{value}{after}"))
            })
    }

    /// A request head, and what its body is made of once httparse has read how the head frames it: chunk sizes
    /// for a chunked body, filler bytes for one with a length.
    #[derive(Debug, Clone)]
    struct Generated {
        head: Vec<u8>,
        chunks: Vec<usize>,
        filler: Vec<u8>,
    }

    fn request() -> impl Strategy<Value = Generated> {
        let method = prop_oneof![Just("GET"), Just("POST"), Just("PUT")];
        let eol = prop_oneof![4 => Just("\r\n"), 1 => Just("\n")];
        (
            method,
            "/[a-z0-9/]{0,12}",
            prop::collection::vec(header(), 0..6),
            eol,
            prop::collection::vec(1usize..40, 0..4),
            prop::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(method, path, headers, eol, chunks, filler)| {
                let mut head = format!("{method} {path} HTTP/1.1{eol}").into_bytes();
                for (name, value) in &headers {
                    head.extend_from_slice(format!("{name}:{value}{eol}").as_bytes());
                }
                head.extend_from_slice(eol.as_bytes());
                Generated { head, chunks, filler }
            })
    }

    /// What httparse reads from a head: `None` when it does not parse (the watcher's verdict is then not
    /// checked), else the framing verdict and how the body is framed.
    #[derive(Debug, PartialEq)]
    enum Framing {
        /// The watcher stops here (conflicting lengths, or a last coding other than `chunked`).
        Beyond,
        Chunked,
        Length(u64),
    }

    fn read_with_httparse(head: &[u8]) -> Option<(bool, Framing)> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(len) = request.parse(head).ok()? else { return None };
        assert_eq!(len, head.len(), "the generated head is one head");
        let mut lengths = Vec::new();
        let mut last_coding: Option<String> = None;
        for h in request.headers.iter() {
            let value = String::from_utf8_lossy(h.value).trim().to_owned();
            if h.name.eq_ignore_ascii_case("content-length") {
                lengths.push(value.parse::<u64>().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                last_coding = value.rsplit(',').next().map(|c| c.trim().to_ascii_lowercase());
            }
        }
        let both = !lengths.is_empty() && last_coding.is_some();
        let conflicting = lengths.iter().any(Option::is_none) || lengths.windows(2).any(|w| w[0] != w[1]);
        let framing = match (conflicting, last_coding.as_deref(), lengths.first().copied().flatten()) {
            (true, _, _) => Framing::Beyond,
            (false, Some("chunked"), _) => Framing::Chunked,
            (false, Some(_), _) => Framing::Beyond,
            (false, None, n) => Framing::Length(n.unwrap_or(0)),
        };
        Some((both, framing))
    }

    fn chunked_body(sizes: &[usize], trailer: bool) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            // Upper- and lower-case hex digits, and an extension now and then.
            let digits = if i % 2 == 0 { format!("{size:x}") } else { format!("{size:X};ext=1") };
            body.extend_from_slice(format!("{digits}\r\n").as_bytes());
            body.extend(std::iter::repeat_n(b'x', *size));
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        if trailer {
            body.extend_from_slice(b"X-Trailer: 1\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body
    }

    /// The stream made of `requests` and the verdicts httparse's reading of it gives, up to where the watcher
    /// must stop.
    fn stream_of(requests: &[Generated]) -> (Vec<u8>, Vec<bool>) {
        let mut stream = Vec::new();
        let mut verdicts = Vec::new();
        for (i, Generated { head, chunks, filler }) in requests.iter().enumerate() {
            stream.extend_from_slice(head);
            let Some((both, framing)) = read_with_httparse(head) else {
                // Not a request hyper would read: nothing after it is checked.
                return (stream, verdicts);
            };
            verdicts.push(both);
            match framing {
                Framing::Beyond => return (stream, verdicts),
                Framing::Chunked => stream.extend(chunked_body(chunks, i % 2 == 1)),
                Framing::Length(n) => {
                    // Any bytes at all, a head's included: the watcher must skip them by the length.
                    let n = usize::try_from(n).unwrap();
                    let filler = if filler.is_empty() { b"GET / HTTP/1.1\r\n\r\n".to_vec() } else { filler.clone() };
                    stream.extend(filler.iter().copied().cycle().take(n));
                }
            }
        }
        (stream, verdicts)
    }

    fn watch(stream: &[u8], cuts: &[usize]) -> Vec<bool> {
        let verdicts: Verdicts = Arc::default();
        let mut w = FramingWatch::new(verdicts.clone());
        let mut rest = stream;
        for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
            let (now, later) = rest.split_at((*cut).min(rest.len()));
            assert_eq!(w.feed(now), None, "small heads are never cut");
            rest = later;
        }
        verdicts.lock().unwrap().iter().copied().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn verdicts_are_httparses_however_the_stream_is_read(
            requests in prop::collection::vec(request(), 1..5),
            cuts in prop::collection::vec(0usize..64, 0..12),
        ) {
            let (stream, expected) = stream_of(&requests);
            // Whole, then in reads of the generated sizes: the same verdicts, and httparse's.
            let whole = watch(&stream, &[]);
            prop_assert_eq!(&whole[..expected.len().min(whole.len())], &expected[..], "{}", String::from_utf8_lossy(&stream));
            prop_assert_eq!(whole.len(), expected.len(), "{}", String::from_utf8_lossy(&stream));
            prop_assert_eq!(watch(&stream, &cuts), whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_cuts_fall_inside_the_read(
            reads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..8),
            prefix in prop_oneof![Just(&b""[..]), Just(&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..])],
        ) {
            let mut w = FramingWatch::new(Verdicts::default());
            let _ = w.feed(prefix);
            for read in &reads {
                if let Some(at) = w.feed(read) {
                    prop_assert!(at <= read.len());
                }
            }
        }
    }
}
