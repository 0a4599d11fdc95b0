//! Body types of the proxy.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What the proxy sends upstream and to clients: a buffered body or a stream.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// What the proxy answers clients with: a proxied response under its idle timeout, or one the gateway made.
/// An enum rather than a box, so proxied responses cost no allocation for their body.
#[derive(Debug)]
pub enum ResponseBody {
    Proxied(IdleTimeoutBody<hyper::body::Incoming>),
    Local(ProxyBody),
    /// Either of the above, read whole and rewritten by plugins' body filters.
    Filtered(Box<FilteredBody>),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Proxied(body) => Pin::new(body).poll_frame(cx),
            Self::Local(body) => Pin::new(body).poll_frame(cx),
            Self::Filtered(body) => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Proxied(body) => body.is_end_stream(),
            Self::Local(body) => body.is_end_stream(),
            Self::Filtered(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Proxied(body) => body.size_hint(),
            Self::Local(body) => body.size_hint(),
            Self::Filtered(body) => body.size_hint(),
        }
    }
}

pub fn empty() -> ProxyBody {
    // Zero-sized, so boxing it allocates nothing.
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

#[derive(Debug, thiserror::Error)]
#[error("no data within {0:?}")]
pub struct IdleTimeout(pub Duration);

/// A body that fails when no frame arrives within `timeout` of the previous one (Kong's `read_timeout` is
/// between two reads, not for the whole body). The timer is armed only when a read has to wait, so a body that is
/// already there when it is read (most small responses) costs no timer at all.
pub struct IdleTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `sleep` times the current wait (it is kept between waits to be reset, not reallocated).
    waiting: bool,
}

impl<B> std::fmt::Debug for IdleTimeoutBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleTimeoutBody").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self { inner, timeout, sleep: None, waiting: false }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // The wait, if any, is over; the next one restarts the timer.
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if !this.waiting {
                    this.waiting = true;
                    sleep.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeout(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body failed while it was being sent upstream (malformed chunked framing, a reset, a
/// stall past the body timeout). Marked so that the proxy answers 400 for it instead of blaming the upstream.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

/// Whether `error`, or anything it was caused by, is a [`ClientBodyError`].
pub fn caused_by_client_body(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<ClientBodyError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A streamed request body grew past the limit a plugin set (`request-size-limiting`): the proxy answers Kong's
/// 413 when the upstream has not answered yet.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than {0} bytes")]
pub struct BodyLimitExceeded(pub u64);

/// Whether `error`, or anything it was caused by, is a [`BodyLimitExceeded`].
pub fn caused_by_body_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<BodyLimitExceeded>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A request body streamed upstream: the bytes read ahead (while the proxy waited to see whether the body would
/// fit in memory), then the rest as it arrives, with at most `timeout` between two reads; counted against `limit`
/// when a plugin set one.
pub struct ClientBody {
    read_ahead: Option<Bytes>,
    rest: IdleTimeoutBody<hyper::body::Incoming>,
    limit: Option<u64>,
    seen: u64,
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody").finish_non_exhaustive()
    }
}

impl ClientBody {
    pub fn new(read_ahead: Bytes, rest: hyper::body::Incoming, timeout: Duration) -> Self {
        let read_ahead = (!read_ahead.is_empty()).then_some(read_ahead);
        Self { read_ahead, rest: IdleTimeoutBody::new(rest, timeout), limit: None, seen: 0 }
    }

    /// Fails the body once more than `limit` bytes have come through (the read-ahead included).
    pub fn limit(&mut self, limit: u64) {
        self.limit = Some(self.limit.map_or(limit, |l| l.min(limit)));
    }

    fn count(&mut self, frame: &Frame<Bytes>) -> Result<(), BoxError> {
        if let (Some(limit), Some(data)) = (self.limit, frame.data_ref()) {
            self.seen += data.len() as u64;
            if self.seen > limit {
                return Err(Box::new(BodyLimitExceeded(limit)));
            }
        }
        Ok(())
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = match this.read_ahead.take() {
            Some(bytes) => Frame::data(bytes),
            None => match Pin::new(&mut this.rest).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(ClientBodyError(e))))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(Some(this.count(&frame).map(|()| frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.read_ahead.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.read_ahead.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + ahead);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}

/// A transformation of a whole response body, registered by a plugin during `response` (Kong's `body_filter`
/// that buffers the body). The proxy reads the body whole (up to a bound) only when one is registered, so other
/// responses stream untouched.
pub trait BodyFilter: Send + Sync + std::fmt::Debug {
    /// The new body, or `None` to keep this one (a body the filter cannot parse).
    fn filter(&self, body: &[u8]) -> Option<Bytes>;
}

/// The most a response body is read for body filters: past it, what was read and the rest go to the client
/// untouched (with a log line), so a large download never sits in memory whole.
pub const FILTERED_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// A response body read whole, rewritten by the filters, and sent as one frame; trailers follow it. One past
/// [`FILTERED_BODY_LIMIT`] streams through as it came.
pub struct FilteredBody {
    inner: ResponseBody,
    filters: Vec<std::sync::Arc<dyn BodyFilter>>,
    read: Vec<Bytes>,
    len: usize,
    limit: usize,
    state: Filtering,
    trailers: Option<http::HeaderMap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filtering {
    Reading,
    /// Over the limit: what was read goes out first, then the rest as it comes.
    Passing,
    /// The filtered body went out; the trailers, if any, are left.
    Done,
}

impl std::fmt::Debug for FilteredBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilteredBody").field("filters", &self.filters).field("len", &self.len).finish_non_exhaustive()
    }
}

impl FilteredBody {
    pub fn new(inner: ResponseBody, filters: Vec<std::sync::Arc<dyn BodyFilter>>) -> Self {
        Self::with_limit(inner, filters, FILTERED_BODY_LIMIT)
    }

    pub fn with_limit(inner: ResponseBody, filters: Vec<std::sync::Arc<dyn BodyFilter>>, limit: usize) -> Self {
        Self { inner, filters, read: Vec::new(), len: 0, limit, state: Filtering::Reading, trailers: None }
    }

    fn filtered(&mut self) -> Bytes {
        let mut body = match self.read.len() {
            1 => self.read.pop().unwrap_or_default(),
            _ => {
                let mut whole = Vec::with_capacity(self.len);
                self.read.drain(..).for_each(|chunk| whole.extend_from_slice(&chunk));
                Bytes::from(whole)
            }
        };
        for filter in &self.filters {
            if let Some(changed) = filter.filter(&body) {
                body = changed;
            }
        }
        body
    }
}

impl Body for FilteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match this.state {
                Filtering::Done => return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t)))),
                Filtering::Passing if !this.read.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(this.read.remove(0)))));
                }
                Filtering::Passing => return Pin::new(&mut this.inner).poll_frame(cx),
                Filtering::Reading => {}
            }
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.len += data.len();
                        this.read.push(data);
                        if this.len > this.limit {
                            tracing::info!(
                                limit = this.limit,
                                "response body too large to transform; sent as the upstream sent it"
                            );
                            this.state = Filtering::Passing;
                        }
                    }
                    // Trailers end the data: the filtered body goes first, the trailers after it.
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        this.state = Filtering::Done;
                        return Poll::Ready(Some(Ok(Frame::data(this.filtered()))));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.state = Filtering::Done;
                    return Poll::Ready(Some(Ok(Frame::data(this.filtered()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.state {
            Filtering::Done => self.trailers.is_none(),
            Filtering::Passing => self.read.is_empty() && self.inner.is_end_stream(),
            Filtering::Reading => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

use std::future::Future as _;
