//! [`Observed`]: a body wrapper that counts the bytes going through, picks the gRPC status
//! out of trailers, and reports once when the body ends (or is dropped unfinished). Bodies
//! stream through it chunk by chunk; nothing is buffered. [`Deadline`]: a response body
//! that fails with [`Expired`] once the rule's `timeouts.request` has passed.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::{Body, BoxError};

/// How a body ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyEnd {
    /// Bytes that went through.
    pub bytes: u64,
    /// False when it failed or was dropped before its end.
    pub complete: bool,
    /// `grpc-status` found in trailers.
    pub grpc_status: Option<String>,
    /// It failed because the request's deadline passed ([`Expired`]).
    pub timed_out: bool,
}

type OnEnd = Box<dyn FnOnce(BodyEnd) + Send>;

/// A counted body.
pub(crate) struct Observed {
    inner: Body,
    /// Bytes that went through.
    bytes: u64,
    /// Where they are also counted for others to read, if anywhere.
    counter: Option<Arc<AtomicU64>>,
    grpc_status: Option<String>,
    timed_out: bool,
    on_end: Option<OnEnd>,
}

impl Observed {
    /// Counts `inner`'s bytes into `counter`.
    pub fn counting(inner: Body, counter: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            bytes: 0,
            counter: Some(counter),
            grpc_status: None,
            timed_out: false,
            on_end: None,
        }
    }

    /// Calls `on_end` once `inner` ends.
    pub fn on_end(inner: Body, on_end: impl FnOnce(BodyEnd) + Send + 'static) -> Self {
        Self {
            inner,
            bytes: 0,
            counter: None,
            grpc_status: None,
            timed_out: false,
            on_end: Some(Box::new(on_end)),
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(on_end) = self.on_end.take() {
            on_end(BodyEnd {
                bytes: self.bytes,
                complete,
                grpc_status: self.grpc_status.take(),
                timed_out: self.timed_out,
            });
        }
    }

    fn observe(&mut self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            self.bytes += len;
            if let Some(counter) = &self.counter {
                counter.fetch_add(len, Ordering::Relaxed);
            }
        } else if let Some(trailers) = frame.trailers_ref()
            && let Some(status) = trailers.get("grpc-status").and_then(|v| v.to_str().ok())
        {
            self.grpc_status = Some(status.to_owned());
        }
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.observe(frame);
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(error))) => {
                this.timed_out = error.is::<Expired>();
                this.finish(false);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

/// The request's deadline (`timeouts.request`) passed while the response body was still
/// coming.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expired;

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream request timeout")
    }
}

impl std::error::Error for Expired {}

/// A response body bounded by the request's deadline: once it passes, the next poll fails
/// with [`Expired`] (hyper then resets the HTTP/2 stream or closes the HTTP/1.1
/// connection, so the client sees a cut response, never a complete-looking one).
pub(crate) struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    /// `inner`, failing at `deadline`.
    pub fn new(inner: Body, deadline: tokio::time::Instant) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(Expired))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
