//! Requests in flight on one client connection, and how long it has had none: what closes
//! an idle HTTP/2 connection and a draining HTTP/1.1 one. A request is in flight from its
//! start until its answer's body has ended or was dropped (a finished stream, a reset, a
//! cancelled request), so a long streaming answer keeps its connection, as in Envoy.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::{Body, BoxError, boxed};

/// Requests in flight on one connection and when the last one started or finished.
pub(super) struct Activity {
    since: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `since` of the last start or finish.
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// A request starts; it is in flight until the guard is dropped.
    pub(super) fn started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(Arc::clone(self))
    }

    fn touch(&self) {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Release);
    }

    /// Completes once no request has been in flight for `quiet` (checked again `quiet`
    /// after a request was seen in flight, so at most about twice that after it ended).
    pub(super) async fn quiet_for(&self, quiet: Duration) {
        loop {
            // a request in flight now ends `quiet` from now at the earliest
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(quiet).await;
                continue;
            }
            let last = self.since + Duration::from_millis(self.last.load(Ordering::Acquire));
            let due = last.checked_add(quiet).unwrap_or(last);
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// One request in flight; dropping it ends it.
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    /// `body`, keeping the request in flight until it ends or is dropped.
    pub(super) fn until_end_of(self, body: Body) -> Body {
        boxed(Tracked {
            body,
            _in_flight: self,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body and the request it keeps in flight.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
