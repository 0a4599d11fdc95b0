//! Body wrappers: a response body that keeps its request counted as in flight, and a request body with a
//! deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::gate::RequestGuard;

/// A response body that holds its request's [`RequestGuard`] until it has been sent (hyper drops a body when it
/// is done with it), so a connection streaming a long response is never taken for an idle one; and that tells the
/// connection's [`crate::Activity`] when a frame waits on the client, so one that stops reading is found out.
#[derive(Debug)]
pub struct Tracked<B> {
    body: B,
    guard: RequestGuard,
    /// A frame was handed to hyper and it has not asked for the next one yet.
    handed_out: bool,
}

impl<B> Tracked<B> {
    pub fn new(body: B, guard: RequestGuard) -> Self {
        Self { body, guard, handed_out: false }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        if std::mem::take(&mut this.handed_out) {
            this.guard.activity().frame_sent();
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &frame {
            this.handed_out = true;
            this.guard.activity().frame_out();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if self.handed_out {
            self.guard.activity().frame_sent();
        }
    }
}

/// The client did not finish sending its request body in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that must arrive whole within a time from when the request was received: the API listeners'
/// bodies are small (64 KiB at most), so a client that drips one slowly is holding a connection, not sending.
/// The timer is armed only when a read has to wait.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
}

impl<B> std::fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        Self { inner, deadline: tokio::time::Instant::now() + limit, sleep: None, limit }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use http_body_util::channel::Channel;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_at_its_deadline() {
        let (mut sender, channel) = Channel::<Bytes, std::convert::Infallible>::new(4);
        let mut body = DeadlineBody::new(channel, Duration::from_secs(60));
        sender.send_data(Bytes::from_static(b"first")).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first");
        tokio::time::advance(Duration::from_secs(59)).await;
        sender.send_data(Bytes::from_static(b"second")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok(), "data within the deadline is read");
        // The deadline counts from the start, not from the last read.
        let started = tokio::time::Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<BodyTimeout>(), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        drop(sender);
    }

    #[tokio::test]
    async fn a_tracked_body_keeps_its_request_in_flight_until_dropped() {
        let gate = crate::Gate::new("test", crate::ConnectionLimits::default(), Vec::new());
        let admission = gate.admit(std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
        let zero = crate::ConnectionLimits {
            header_timeout: Duration::ZERO,
            keepalive_timeout: Duration::ZERO,
            ..crate::ConnectionLimits::default()
        };
        let body = Tracked::new(http_body_util::Full::new(Bytes::from_static(b"x")), admission.activity().begin());
        assert!(admission.activity().close_reason(&zero).is_ok());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "x");
        assert!(admission.activity().close_reason(&zero).is_err(), "the body is gone, so is the request");
    }
}
