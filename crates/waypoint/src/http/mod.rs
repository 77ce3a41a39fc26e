//! HTTP through the waypoint or gateway: each tunnel or client connection ([`conn`]) is
//! served by hyper (HTTP/1.1 with upgrades, or HTTP/2), every request goes through the one
//! [`pipeline`] (authorization, routing, filters,
//! backend choice, forwarding with timeouts and retries, telemetry), and upstream
//! connections are pooled per endpoint ([`client`]).

mod activity;
mod authz;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod conn;
mod forward;
pub(crate) mod headers;
pub(crate) mod local;
mod pipeline;
mod series;
mod target;

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::Waypoint;
use activity::Activity;
use conn::Conn;
use series::SeriesCache;

/// How long an HTTP/1.1 client may take to send a request head (the first or the next
/// one on a kept-alive connection) before the connection is closed.
pub(crate) const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest HTTP/2 header list taken from a client or a backend: about what Envoy (so
/// Istio's waypoint and gateway) takes by default, 60 KiB, where hyper's own default, 16
/// KiB, refused requests carrying a large token and cookies. A larger request gets 431.
pub(crate) const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// While draining, how long an HTTP/1.1 connection must have had no request before it is
/// closed.
pub(crate) const DRAIN_IDLE_CLOSE: Duration = Duration::from_millis(500);

/// How long an idle HTTP/2 connection's GOAWAY may wait for the client (with no request
/// in flight) before the connection is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Errors carried in bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the waypoint handles.
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Boxes any body.
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    boxed(http_body_util::Empty::<Bytes>::new())
}

/// A body of `text`.
pub(crate) fn full(text: impl Into<Bytes>) -> Body {
    boxed(http_body_util::Full::new(text.into()))
}

/// Serves the HTTP requests of one connection until the client closes it, or (HTTP/2)
/// until it has had no request in flight for the waypoint's `http_idle_timeout` (GOAWAY,
/// as for draining). Once `drain` is cancelled, HTTP/2 sends GOAWAY and finishes the
/// streams in flight; HTTP/1.1 answers each
/// further response with `Connection: close` (so a busy keep-alive client moves to a new
/// connection without losing a request) and closes the connection once it has been idle
/// for [`DRAIN_IDLE_CLOSE`] (a client is least likely to be sending on a quiet one).
pub(crate) async fn serve<IO>(
    waypoint: Waypoint,
    conn: Conn,
    io: IO,
    h2: bool,
    drain: Option<CancellationToken>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let idle_timeout = waypoint.options().http_idle_timeout;
    let series = Arc::new(SeriesCache::default());
    let service = {
        let (activity, drain) = (Arc::clone(&activity), drain.clone());
        service_fn(move |request| {
            let (waypoint, conn, series) = (waypoint.clone(), conn.clone(), Arc::clone(&series));
            let (activity, drain) = (Arc::clone(&activity), drain.clone());
            async move {
                // in flight until its answer's body ends or is dropped (a reset stream, a
                // cancelled request: the guard drops with whatever holds it)
                let in_flight = activity.started();
                let response = pipeline::handle(waypoint, conn, series, h2, request).await;
                let mut response = response.map(|body| in_flight.until_end_of(body));
                if !h2 && drain.as_ref().is_some_and(CancellationToken::is_cancelled) {
                    close_after(&mut response);
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let io = TokioIo::new(io);
    let drained = async move {
        match drain {
            Some(token) => token.cancelled_owned().await,
            None => std::future::pending().await,
        }
    };
    let mut drained = pin!(drained);
    // One select per protocol (not a generic helper): the connection futures stay concrete,
    // which the Send check of the upstream client's borrowed futures needs.
    let result = if h2 {
        let connection = http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .serve_connection(io, service);
        let mut connection = pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = drained.as_mut() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
            () = idle(&activity, idle_timeout) => {
                tracing::debug!(?idle_timeout, "closing an idle HTTP/2 connection");
                connection.as_mut().graceful_shutdown();
                // GOAWAY completes on the client's PING answer; one that vanished never
                // answers. Dropped once quiet for the grace period (a request the client
                // sent before it saw the GOAWAY is still answered).
                let vanished = async {
                    tokio::time::sleep(IDLE_CLOSE_GRACE).await;
                    activity.quiet_for(IDLE_CLOSE_GRACE).await;
                };
                tokio::select! {
                    result = connection.as_mut() => result,
                    () = vanished => Ok(()),
                }
            }
        }
    } else {
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(io, service)
            .with_upgrades();
        let mut connection = pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = drained.as_mut() => {
                tokio::select! {
                    result = connection.as_mut() => result,
                    () = activity.quiet_for(DRAIN_IDLE_CLOSE) => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}

/// Completes once the connection has had no request in flight for `timeout` (never for a
/// zero timeout).
async fn idle(activity: &Activity, timeout: Duration) {
    if timeout.is_zero() {
        std::future::pending::<()>().await;
    }
    activity.quiet_for(timeout).await;
}

/// Marks a response as the connection's last (HTTP/1.1 while draining); an upgrade keeps
/// its connection.
fn close_after(response: &mut hyper::Response<Body>) {
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
}
