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
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Proxied(body) => Pin::new(body).poll_frame(cx),
            Self::Local(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Proxied(body) => body.is_end_stream(),
            Self::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Proxied(body) => body.size_hint(),
            Self::Local(body) => body.size_hint(),
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

/// A request body streamed upstream: the bytes read ahead (while the proxy waited to see whether the body would
/// fit in memory), then the rest as it arrives, with at most `timeout` between two reads.
pub struct ClientBody {
    read_ahead: Option<Bytes>,
    rest: IdleTimeoutBody<hyper::body::Incoming>,
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody").finish_non_exhaustive()
    }
}

impl ClientBody {
    pub fn new(read_ahead: Bytes, rest: hyper::body::Incoming, timeout: Duration) -> Self {
        let read_ahead = (!read_ahead.is_empty()).then_some(read_ahead);
        Self { read_ahead, rest: IdleTimeoutBody::new(rest, timeout) }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(bytes) = self.read_ahead.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(|e| Box::new(ClientBodyError(e)) as BoxError)))
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

use std::future::Future as _;
